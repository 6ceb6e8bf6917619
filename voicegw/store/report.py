"""Containment and transfer outcomes per flow and channel, from the records.

What ``GET /report`` and ``voicegw report`` show. Calls are those created in the
window and already disposed (``calls.disposition``, engine/disposition.py): calls
still up, and calls a crash cut (recovered as ``restart``), have none and are left
out. Transfer attempts are those of the same calls, by method and state.

The containment rate is ``contained / reached``, where ``reached`` is every disposed
call but ``failed`` (the calls that reached the bot or the flow); None when none did.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from ..engine.disposition import Disposition, containment_rate

Read = Callable[[str, Sequence[Any]], list[sqlite3.Row]]

DISPOSITIONS = tuple(d.value for d in Disposition)


def _group() -> dict[str, Any]:
    return {"calls": 0, "reached": 0, "containment_rate": None,
            "dispositions": dict.fromkeys(DISPOSITIONS, 0), "transferred_by_method": {}, "transfers": {}}


def build(read: Read, where: list[str], args: list[Any]) -> dict[str, Any]:
    """``where``/``args``: the window on ``c.created_at`` (sqlite._window)."""
    clauses = " AND ".join(["c.disposition IS NOT NULL", *where])
    calls = read("SELECT c.flow, c.channel, c.disposition, c.transfer_method, count(*) AS n FROM calls c"
                 f" WHERE {clauses} GROUP BY c.flow, c.channel, c.disposition, c.transfer_method", args)
    transfers = read("SELECT c.flow, c.channel, t.method, t.state, t.status, count(*) AS n FROM transfers t"
                     f" JOIN calls c ON c.key = t.call_key WHERE {clauses}"
                     " GROUP BY c.flow, c.channel, t.method, t.state, t.status", args)
    groups: dict[tuple[str | None, str | None], dict[str, Any]] = {}
    total = _group()
    for row in calls:
        for group in (groups.setdefault((row["flow"], row["channel"]), _group()), total):
            n = row["n"]
            group["calls"] += n
            group["dispositions"][row["disposition"]] = group["dispositions"].get(row["disposition"], 0) + n
            if row["disposition"] == Disposition.TRANSFERRED.value:
                method = row["transfer_method"] or "unknown"
                group["transferred_by_method"][method] = group["transferred_by_method"].get(method, 0) + n
    for row in transfers:
        for group in (groups.setdefault((row["flow"], row["channel"]), _group()), total):
            method = group["transfers"].setdefault(
                row["method"] or "unknown", {"started": 0, "succeeded": 0, "failed": 0, "pending": 0,
                                             "failed_by_status": {}})
            method["started"] += row["n"]
            method[row["state"]] += row["n"]
            if row["state"] == "failed":
                statuses = method["failed_by_status"]
                statuses[str(row["status"])] = statuses.get(str(row["status"]), 0) + row["n"]
    for group in (*groups.values(), total):
        rate = containment_rate(group["dispositions"])
        group["reached"] = group["calls"] - group["dispositions"][Disposition.FAILED.value]
        group["containment_rate"] = None if rate is None else round(rate, 4)
    ordered = sorted(groups.items(), key=lambda item: (item[0][0] or "", item[0][1] or ""))
    return {"groups": [{"flow": flow, "channel": channel, **group} for (flow, channel), group in ordered],
            "total": total}
