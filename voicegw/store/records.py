"""How one timeline entry changes the records (runs on the writer thread).

An :class:`Entry` is what the engine listener enqueues: the wall time, the call, the
event name and its detail. :func:`apply_entry` turns it into SQL on the writer's
connection, inside the batch's transaction:

- every entry adds a row to ``events`` and makes sure its call row exists (a call
  whose ``call.incoming`` was lost still gets a row: no event is ever orphaned);
- ``call.incoming`` fills the call row; ``call.connected`` sets ``answered_at`` and
  status 200; ``call.ended`` sets the end, the cause, the reason and the outcome;
- ``leg.<role>.<what>`` merges ``{<what>_at, ...detail}`` into ``legs[role]``;
- ``transfer.started`` creates the transfer row (pending), ``transfer.progress`` and
  ``transfer.accepted`` (REFER 202) append a code to ``progress``,
  ``transfer.succeeded``/``failed`` set the outcome; ``leg.agent.dialing`` gives the
  transfer its resolved URI; ``transfer.refused`` (a bot's REFER off the allow-list,
  no Transfer object) becomes a failed ``refer`` attempt ``refused-<event row>``;
- ``transfer.fallback`` (the fallback machine's decision: status, rule, action, why)
  and ``fallback.<what>`` (e.g. ``fallback.prompt``) append ``{at, ...detail}`` to the
  transfer's ``fallback`` list (the one named by ``transfer_id``, else the call's
  latest), as does a ``fallback``/``action`` key on ``transfer.failed``.

Outcomes: ``completed`` (answered, then ended), ``failed`` (setup failed),
``cancelled`` (caller CANCEL), ``hung up`` (ended during setup otherwise),
``restart`` (cut by a crash, closed at the next start), ``shutdown`` (still up at a
clean stop).
"""

from __future__ import annotations

import json
import re
import sqlite3
from typing import Any, NamedTuple

from ..sip.build import REASON_PHRASES


class Entry(NamedTuple):
    at: float
    """Wall-clock UTC, Unix seconds."""
    call_key: str
    call_id: str
    event: str
    detail: dict[str, Any]


#: Entries that make up the records themselves (not only the timeline): kept in the
#: queue's reserve when it is full (see writer.py).
ESSENTIAL_EVENTS = frozenset({"call.incoming", "call.connected", "call.ended"})
ESSENTIAL_PREFIXES = ("transfer.", "fallback.")

_PHRASE_STATUS = {phrase.lower(): status for status, phrase in REASON_PHRASES.items()}
_ROLE_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_OUTCOME = {"failed": "failed", "cancelled": "cancelled"}


def is_essential(event: str) -> bool:
    return event in ESSENTIAL_EVENTS or event.startswith(ESSENTIAL_PREFIXES)


def dumps(value: Any) -> str:
    """JSON for a detail: anything not JSON (a SipUri, an enum) as its str()."""
    return json.dumps(value, default=_plain, separators=(",", ":"), ensure_ascii=False)


def _plain(value: Any) -> Any:
    enum_value = getattr(value, "value", None)
    return enum_value if isinstance(enum_value, (str, int)) else str(value)


def status_of(reason: str, cause: str, detail: dict[str, Any]) -> int | None:
    """The final status the caller was given, from a call.ended entry: its ``status``
    when the engine says, 487 for a CANCEL, else the reason's leading phrase
    ("Busy Here (bot: 486)" -> 486)."""
    status = detail.get("status")
    if isinstance(status, int) and not isinstance(status, bool):
        return status
    if cause == "cancelled":
        return 487
    phrase = reason.split(" (", 1)[0].strip().lower()
    return _PHRASE_STATUS.get(phrase)


def apply_entry(conn: sqlite3.Connection, run_id: int, entry: Entry) -> None:
    at, key, call_id, event, detail = entry
    conn.execute(
        "INSERT INTO calls (key, call_id, run_id, state, created_at, last_event_at, event_count)"
        " VALUES (?, ?, ?, 'setup', ?, ?, 1)"
        " ON CONFLICT (key) DO UPDATE SET event_count = event_count + 1,"
        " last_event_at = max(last_event_at, excluded.last_event_at)",
        (key, call_id, run_id, at, at))
    row = conn.execute("INSERT INTO events (call_key, at, event, detail) VALUES (?, ?, ?, ?)",
                       (key, at, event, dumps(detail))).lastrowid
    kind, _, rest = event.partition(".")
    if event == "transfer.refused" and "transfer_id" not in detail:
        # a bot's REFER refused before any Transfer exists (allow-list): still an attempt
        detail = {"transfer_id": f"refused-{row}", "method": "refer", "trigger": "bot", **detail}
        rest = "failed"
    if kind == "call":
        _call(conn, at, key, rest, detail)
    elif kind == "leg":
        _leg(conn, at, key, rest, detail)
    elif kind == "transfer":
        _transfer(conn, at, key, rest, detail)
    elif kind == "fallback":
        _fallback(conn, at, key, rest, detail)


def _call(conn: sqlite3.Connection, at: float, key: str, what: str, detail: dict[str, Any]) -> None:
    if what == "incoming":
        conn.execute("UPDATE calls SET source = ?, uri = ?, caller = ?, created_at = ? WHERE key = ?",
                     (_text(detail.get("source")), _text(detail.get("uri")),
                      _text(detail.get("caller")), at, key))
    elif what == "connected":
        conn.execute("UPDATE calls SET state = 'connected', answered_at = ?, status = 200"
                     " WHERE key = ? AND state = 'setup'", (at, key))
    elif what == "ended":
        cause = str(detail.get("cause") or "")
        reason = str(detail.get("reason") or cause)
        conn.execute(
            "UPDATE calls SET state = 'ended', ended_at = ?, end_cause = ?, end_reason = ?,"
            " outcome = CASE WHEN answered_at IS NOT NULL THEN 'completed' ELSE ? END,"
            " status = CASE WHEN answered_at IS NOT NULL THEN status ELSE ? END"
            " WHERE key = ? AND state != 'ended'",
            (at, cause, reason, _OUTCOME.get(cause, cause or "ended"),
             status_of(reason, cause, detail), key))


def _leg(conn: sqlite3.Connection, at: float, key: str, rest: str, detail: dict[str, Any]) -> None:
    role, _, what = rest.partition(".")
    if not _ROLE_RE.match(role) or not what:
        return
    fields: dict[str, Any] = {f"{what}_at": at}
    fields.update((k, v) for k, v in detail.items() if isinstance(v, (str, int, float, bool)) or v is None)
    if "uri" in detail:
        fields["uri"] = _text(detail["uri"])
    if what == "answered":
        fields.setdefault("status", 200)
    conn.execute("UPDATE calls SET legs = json_patch(legs, ?) WHERE key = ?",
                 (dumps({role: fields}), key))
    if what == "dialing" and detail.get("transfer_id"):
        conn.execute("UPDATE transfers SET uri = ? WHERE call_key = ? AND transfer_id = ?",
                     (_text(detail.get("uri")), key, str(detail["transfer_id"])))


def _transfer(conn: sqlite3.Connection, at: float, key: str, what: str, detail: dict[str, Any]) -> None:
    transfer_id = detail.get("transfer_id")
    if transfer_id is None:
        return
    transfer_id = str(transfer_id)
    # started creates the row; a later entry whose "started" was lost still gets one
    conn.execute(
        "INSERT OR IGNORE INTO transfers (call_key, transfer_id, method, target, trigger, state,"
        " started_at) VALUES (?, ?, ?, ?, ?, 'pending', ?)",
        (key, transfer_id, _text(detail.get("method")) or "", _text(detail.get("target")) or "",
         _text(detail.get("trigger")), at))
    if what in ("progress", "accepted"):
        conn.execute("UPDATE transfers SET progress = json_insert(progress, '$[#]', ?)"
                     " WHERE call_key = ? AND transfer_id = ?", (detail.get("status"), key, transfer_id))
    elif what == "fallback":  # the fallback machine's decision after a failed attempt
        decision = {k: v for k, v in detail.items() if k != "transfer_id"}
        _append_fallback(conn, key, transfer_id, {"at": at, **decision})
    elif what in ("succeeded", "failed"):
        status = detail.get("status")
        sip_status = status if isinstance(status, int) and not isinstance(status, bool) else None
        conn.execute(
            "UPDATE transfers SET state = ?, status = ?, sip_status = ?, reason = ?, ended_at = ?"
            " WHERE call_key = ? AND transfer_id = ? AND state = 'pending'",
            (what, None if status is None else str(status), sip_status,
             _text(detail.get("reason")), at, key, transfer_id))
        action = detail.get("fallback") or detail.get("action")
        if action:
            _append_fallback(conn, key, transfer_id, {"at": at, "action": action})


def _fallback(conn: sqlite3.Connection, at: float, key: str, action: str, detail: dict[str, Any]) -> None:
    transfer_id = detail.get("transfer_id")
    if transfer_id is None:
        row = conn.execute("SELECT transfer_id FROM transfers WHERE call_key = ? ORDER BY id DESC LIMIT 1",
                           (key,)).fetchone()
        if row is None:
            return  # the event row keeps it on the timeline
        transfer_id = row[0]
    _append_fallback(conn, key, str(transfer_id), {"at": at, "action": action, **detail})


def _append_fallback(conn: sqlite3.Connection, key: str, transfer_id: str, item: dict[str, Any]) -> None:
    conn.execute("UPDATE transfers SET fallback = json_insert(fallback, '$[#]', json(?))"
                 " WHERE call_key = ? AND transfer_id = ?", (dumps(item), key, transfer_id))


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
