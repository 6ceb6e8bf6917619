"""``voicegw report``: containment and transfer outcomes per flow and channel.

Read through the control API (``GET /report``), never the database itself: the
daemon owns the records. Tables for people, ``--json`` for scripts (the API's body
as it is).
"""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from .client import ApiClient
from .commands import api_command, dump, out, parse_when

DISPOSITION_COLUMNS = (("contained", "contained"), ("transferred", "transferred"),
                       ("transfer_failed_contained", "transfer failed, contained"),
                       ("abandoned", "abandoned"), ("failed", "failed"))


def rate(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def register(cli: click.Group) -> None:
    @api_command(cli, "report", help="Containment and transfer outcomes per flow and channel.")
    @click.option("--since", default="24h", show_default=True, help="Start: 30m, 2h, 7d, or an ISO date/time.")
    @click.option("--until", help="End, same forms as --since (default: now).")
    def report(client: ApiClient, as_json: bool, since: str, until: str | None) -> None:
        params = {"since": parse_when(since, "--since")}
        if until:
            params["until"] = parse_when(until, "--until")
        data = client.request("GET", "/report", params=params)
        if as_json:
            return dump(data)
        if not data["groups"]:
            out.print("no ended calls in that window", markup=False)
            return
        calls = Table(title="calls by disposition", title_justify="left")
        for column in ("flow", "channel", "calls", *(title for _, title in DISPOSITION_COLUMNS), "containment"):
            calls.add_column(column, overflow="fold")
        for group in [*data["groups"], {"flow": "all", "channel": "", **data["total"]}]:
            cells = [group["flow"] or "-", group["channel"] or "-", str(group["calls"])]
            for key, _ in DISPOSITION_COLUMNS:
                cell = str(group["dispositions"].get(key, 0))
                if key == "transferred" and group["transferred_by_method"]:
                    cell += " (" + ", ".join(f"{m} {n}" for m, n in group["transferred_by_method"].items()) + ")"
                cells.append(cell)
            cells.append(rate(group["containment_rate"]))
            calls.add_row(*cells)
        out.print(calls)
        transfers = Table(title="transfer attempts", title_justify="left")
        for column in ("flow", "channel", "method", "started", "succeeded", "failed", "pending", "failures"):
            transfers.add_column(column, overflow="fold")
        for group in data["groups"]:
            for method, row in group["transfers"].items():
                transfers.add_row(group["flow"] or "-", group["channel"] or "-", method, *(
                    str(row[k]) for k in ("started", "succeeded", "failed", "pending")), _failures(row))
        if transfers.row_count:
            out.print(transfers)


def _failures(row: dict[str, Any]) -> str:
    return ", ".join(f"{status}: {n}" for status, n in row["failed_by_status"].items())
