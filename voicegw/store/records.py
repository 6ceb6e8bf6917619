"""How one timeline entry changes the records (runs on the writer thread).

An :class:`Entry` is what the engine listener enqueues: the wall time, the call and
the typed event (:mod:`voicegw.engine.events`). :func:`apply_entry` turns it into SQL
on the writer's connection, inside the batch's transaction, by the event's type:

- every entry adds a row to ``events`` (the event's ``name`` and ``detail()``) and
  makes sure its call row exists (a call whose CallStarted was lost still gets a
  row: no event is ever orphaned);
- CallStarted fills the call row (its flow and channel too); CallDisposed sets the
  ``disposition`` (and ``transfer_method``); CallConnected sets ``answered_at`` and status 200;
  CallEnded sets the end, the cause, the reason, the outcome and, for a call that was
  never answered, the status the caller got (``CallEnded.status``);
- a LegEvent merges ``{<what>_at, ...detail}`` into ``legs[role]``;
- TransferStarted creates the transfer row (pending), TransferProgress and
  TransferAccepted (REFER 202) append a code to ``progress``, TransferSucceeded and
  TransferFailed set the outcome; LegDialing with a transfer id gives the transfer
  its resolved URI; TransferRefused (a bot's REFER off the allow-list, no Transfer
  object) becomes a failed ``refer`` attempt ``refused-<event row>``;
- FallbackDecided (the fallback machine's decision: status, rule, action, why) and
  FallbackPromptPlayed append ``{at, action, ...detail}`` to the transfer's
  ``fallback`` list (the one named by ``transfer_id``, else the call's latest).

The writer applies a whole batch with :func:`apply_batch`: the same changes as
:func:`apply_entry` on each entry in turn, made with a few statements per batch (one
upsert per call, executemany per kind of change, each call's leg fields folded into one
merge) instead of three statements per entry: this was most of the writer thread's
Python, and its GIL time is taken from the event loop.

Outcomes: ``completed`` (answered, then ended), ``failed`` (setup failed),
``cancelled`` (caller CANCEL), ``hung up`` (ended during setup otherwise),
``restart`` (cut by a crash, closed at the next start), ``shutdown`` (still up at a
clean stop).
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

from ..engine.events import (
    CallConnected,
    CallDisposed,
    CallEnded,
    CallEvent,
    CallStarted,
    FallbackDecided,
    FallbackPromptPlayed,
    LegAnswered,
    LegDialing,
    LegEvent,
    TransferAccepted,
    TransferEvent,
    TransferFailed,
    TransferProgress,
    TransferRefused,
    TransferStarted,
    TransferSucceeded,
)
from .dialect import dialect_of


@dataclass(frozen=True, slots=True)
class Ladder:
    """A call's SIP messages as they crossed the wire (the API's trace), saved when the
    call has ended: each a dict of at (wall seconds), direction, peer, sip_call_id,
    first_line and message (text, already cut by the trace)."""

    name: ClassVar[str] = "ladder"
    """What the writer's log lines call it (a call event's name, for a CallEvent)."""
    messages: tuple[dict[str, Any], ...]
    packed: bytes | None = None
    """The messages already packed (:func:`pack_ladder`, by packer.py): stored as is."""


@dataclass(frozen=True, slots=True)
class DeskSessionOpened:
    """An agent signed in at the desk (desk/sessions.py): the session's row. Expired
    rows, revoked or not, are deleted as the next one is written."""

    name: ClassVar[str] = "desk.session_opened"
    token_hash: str
    agent: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class DeskSessionRevoked:
    """The agent signed out: the session is refused from now on, by every process."""

    name: ClassVar[str] = "desk.session_revoked"
    token_hash: str


#: A saved ladder keeps at most this many messages and bytes of them (the first ones:
#: the set-up and the transfer are what an operator reads a ladder for); compressed
#: with zlib, a typical call's ladder is a few KiB in the database.
LADDER_MAX_MESSAGES = 200
LADDER_MAX_BYTES = 256 * 1024


class Entry(NamedTuple):
    at: float
    """Wall-clock UTC, Unix seconds."""
    call_key: str
    call_id: str
    event: CallEvent | Ladder | DeskSessionOpened | DeskSessionRevoked


_ROLE_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_OUTCOME = {"failed": "failed", "cancelled": "cancelled"}


def pack_ladder(messages: tuple[dict[str, Any], ...]) -> bytes:
    """The bounded, compressed form a ladder is stored in."""
    kept: list[dict[str, Any]] = []
    size = 0
    for message in messages[:LADDER_MAX_MESSAGES]:
        size += len(message.get("message") or "") + len(message.get("first_line") or "")
        if size > LADDER_MAX_BYTES:
            break
        kept.append(message)
    return zlib.compress(dumps(kept).encode())


def _packed(ladder: Ladder) -> bytes:
    return ladder.packed if ladder.packed is not None else pack_ladder(ladder.messages)


def unpack_ladder(blob: bytes) -> list[dict[str, Any]]:
    return json.loads(zlib.decompress(blob))


def dumps(value: Any) -> str:
    """JSON for a detail: anything not JSON (a SipUri, an enum) as its str()."""
    return json.dumps(value, default=_plain, separators=(",", ":"), ensure_ascii=False)


def _plain(value: Any) -> Any:
    enum_value = getattr(value, "value", None)
    return enum_value if isinstance(enum_value, (str, int)) else str(value)


# ---------------------------------------------------------------------- a batch
_UPSERT_CALLS = (
    "INSERT INTO calls (key, call_id, run_id, worker, state, created_at, last_event_at, event_count,"
    " source, uri, caller, flow, channel) VALUES (?, ?, ?, ?, 'setup', ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (key) DO UPDATE SET event_count = calls.event_count + excluded.event_count,"
    " last_event_at = CASE WHEN excluded.last_event_at > calls.last_event_at"
    " THEN excluded.last_event_at ELSE calls.last_event_at END,"
    # a CallStarted in the batch (its source is never NULL) sets what its UPDATE would
    " created_at = CASE WHEN excluded.source IS NULL THEN calls.created_at ELSE excluded.created_at END,"
    " source = coalesce(excluded.source, calls.source), uri = coalesce(excluded.uri, calls.uri),"
    " caller = coalesce(excluded.caller, calls.caller),"
    " flow = CASE WHEN excluded.source IS NULL THEN calls.flow ELSE excluded.flow END,"
    " channel = CASE WHEN excluded.source IS NULL THEN calls.channel ELSE excluded.channel END")
_INSERT_EVENT = "INSERT INTO events (call_key, at, event, detail) VALUES (?, ?, ?, ?)"
_CONNECTED = ("UPDATE calls SET state = 'connected', answered_at = ?, status = 200"
              " WHERE key = ? AND state = 'setup'")
_ENDED = ("UPDATE calls SET state = 'ended', ended_at = ?, end_cause = ?, end_reason = ?,"
          " outcome = CASE WHEN answered_at IS NOT NULL THEN 'completed' ELSE ? END,"
          " status = CASE WHEN answered_at IS NOT NULL THEN status ELSE ? END"
          " WHERE key = ? AND state != 'ended'")
_DISPOSED = ("UPDATE calls SET disposition = ?, transfer_method = ?, flow = coalesce(flow, ?),"
             " channel = coalesce(channel, ?) WHERE key = ?")
_LADDER = ("INSERT INTO ladders (call_key, call_id, saved_at, messages) VALUES (?, ?, ?, ?)"
           " ON CONFLICT (call_key) DO UPDATE SET call_id = excluded.call_id,"
           " saved_at = excluded.saved_at, messages = excluded.messages")

#: The order a call's row changes come in (CallStarted, CallConnected, CallEnded,
#: CallDisposed): a batch applies CallStarted in the upsert and each other kind with one
#: executemany, in this order, which is the entries' order as long as every call's
#: entries keep it (else the batch goes entry by entry, :func:`apply_entry`).
_PHASE: dict[type[Any], int] = {CallStarted: 1, CallConnected: 2, CallEnded: 3, CallDisposed: 4}


def apply_batch(conn: Any, run_id: int, entries: list[Entry], worker: str | None = None) -> None:
    """What :func:`apply_entry` does to each of ``entries`` in turn, with a few statements
    per batch instead of three per entry: one upsert per call (its event count, times
    and CallStarted's fields), the events and each kind of row update by executemany,
    one merge of each call's legs (the batch's leg fields folded, RFC 7396 order kept).
    Transfer entries (rare) go one by one, in order; they touch other tables only."""
    if not _in_order(entries):  # keep every entry's own order (never seen from the engine)
        for entry in entries:
            apply_entry(conn, run_id, entry, worker)
        return
    calls: dict[str, list[Any]] = {}
    events: list[tuple[str, float, str, str]] = []
    connected: list[tuple[Any, ...]] = []
    ended: list[tuple[Any, ...]] = []
    disposed: list[tuple[Any, ...]] = []
    legs: dict[str, dict[str, dict[str, Any]]] = {}
    ladders: list[tuple[str, str, float, bytes]] = []
    # No yield to the loop in here (a time.sleep(0) every 64 entries was): the
    # interpreter already makes this thread drop the GIL after sys.getswitchinterval()
    # (5 ms) when the loop asks for it, and every voluntary drop made the writer wait up
    # to that long for the GIL back while the loop was busy (packer.py says the same of zlib).
    for entry in entries:
        at, key, call_id, event = entry
        if isinstance(event, Ladder):
            ladders.append((key, call_id, at, _packed(event)))
            continue
        if isinstance(event, (DeskSessionOpened, DeskSessionRevoked)):  # no call: its own table, in order
            apply_entry(conn, run_id, entry, worker)
            continue
        row = calls.get(key)
        if row is None:
            row = calls[key] = [key, call_id, run_id, worker, at, at, 0, None, None, None, None, None]
        row[6] += 1
        row[5] = max(row[5], at)
        detail = event.detail()
        if isinstance(event, TransferRefused):  # its row id names the attempt (rare)
            if events:  # the timeline keeps the entries' order
                conn.executemany(_INSERT_EVENT, events)
                events = []
            row_id = conn.execute(_INSERT_EVENT + " RETURNING id", (key, at, event.name, dumps(detail))).fetchone()[0]
            transfer_id = f"refused-{row_id}"
            _transfer_row(conn, at, key, transfer_id, "refer", event.target, "bot")
            _outcome(conn, at, key, transfer_id, "failed", event.status, None)
            continue
        events.append((key, at, event.name, dumps(detail)))
        match event:
            case CallStarted():
                row[4] = at
                row[7:] = [event.source, event.uri, event.caller, event.flow, event.channel]
            case CallConnected():
                connected.append((at, key))
            case CallEnded():
                cause = event.cause
                ended.append((at, cause, event.reason or cause, _OUTCOME.get(cause, cause or "ended"),
                              event.status, key))
            case CallDisposed():
                disposed.append((event.disposition, event.method, event.flow, event.channel, key))
            case LegEvent():
                if _fold_leg(legs, at, key, event, detail) and isinstance(event, LegDialing) and event.transfer_id:
                    conn.execute("UPDATE transfers SET uri = ? WHERE call_key = ? AND transfer_id = ?",
                                 (event.uri, key, event.transfer_id))
            case TransferEvent():
                _transfer(conn, at, key, event, detail)
            case FallbackPromptPlayed():
                _fallback(conn, at, key, None, {"at": at, "action": "prompt", **detail})
    if calls:
        conn.executemany(_UPSERT_CALLS, list(calls.values()))
    for sql, params in ((_CONNECTED, connected), (_ENDED, ended), (_DISPOSED, disposed)):
        if params:
            conn.executemany(sql, params)
    if legs:
        conn.executemany(dialect_of(conn).merge_legs, [(dumps(patch), key) for key, patch in legs.items()])
    if events:
        conn.executemany(_INSERT_EVENT, events)
    if ladders:
        conn.executemany(_LADDER, ladders)


def _fold_leg(legs: dict[str, dict[str, dict[str, Any]]], at: float, key: str, event: LegEvent,
              detail: dict[str, Any]) -> bool:
    """``legs[key][role]`` updated with the fields :func:`_leg` would merge (False when it
    would merge nothing): folding flat RFC 7396 patches in order is a dict update, a
    None still removing the field when the fold is merged."""
    role, what = event.role, event.what
    if not _ROLE_RE.match(role) or not what:
        return False
    fields = legs.setdefault(key, {}).setdefault(role, {})
    fields[f"{what}_at"] = at
    fields.update((k, v) for k, v in detail.items() if isinstance(v, (str, int, float, bool)) or v is None)
    if isinstance(event, LegAnswered) and "status" not in detail:
        fields["status"] = 200
    return True


def _in_order(entries: list[Entry]) -> bool:
    """Every call's row changes come in :data:`_PHASE` order in ``entries``."""
    phase: dict[str, int] = {}
    for _, key, _, event in entries:
        rank = _PHASE.get(type(event))
        if rank is not None:
            if phase.get(key, 0) > rank:
                return False
            phase[key] = rank
    return True


def apply_entry(conn: Any, run_id: int, entry: Entry, worker: str | None = None) -> None:
    """``conn``: a sqlite3 connection or a dialect.PgConnection, in a transaction;
    ``worker``: the store's worker id, given to the call row it creates."""
    at, key, call_id, event = entry
    if isinstance(event, Ladder):
        conn.execute("INSERT INTO ladders (call_key, call_id, saved_at, messages) VALUES (?, ?, ?, ?)"
                     " ON CONFLICT (call_key) DO UPDATE SET call_id = excluded.call_id,"
                     " saved_at = excluded.saved_at, messages = excluded.messages",
                     (key, call_id, at, _packed(event)))
        return
    if isinstance(event, DeskSessionOpened):
        conn.execute("DELETE FROM desk_sessions WHERE expires_at <= ?", (at,))
        conn.execute("INSERT INTO desk_sessions (token_hash, agent, created_at, expires_at) VALUES (?, ?, ?, ?)",
                     (event.token_hash, event.agent, at, event.expires_at))
        return
    if isinstance(event, DeskSessionRevoked):
        conn.execute("UPDATE desk_sessions SET revoked_at = ? WHERE token_hash = ? AND revoked_at IS NULL",
                     (at, event.token_hash))
        return
    conn.execute(
        "INSERT INTO calls (key, call_id, run_id, worker, state, created_at, last_event_at, event_count)"
        " VALUES (?, ?, ?, ?, 'setup', ?, ?, 1)"
        " ON CONFLICT (key) DO UPDATE SET event_count = calls.event_count + 1,"
        " last_event_at = CASE WHEN excluded.last_event_at > calls.last_event_at"
        " THEN excluded.last_event_at ELSE calls.last_event_at END",
        (key, call_id, run_id, worker, at, at))
    detail = event.detail()
    insert = "INSERT INTO events (call_key, at, event, detail) VALUES (?, ?, ?, ?)"
    if isinstance(event, TransferRefused):  # its row id names the attempt (a round trip: rare)
        row = conn.execute(insert + " RETURNING id", (key, at, event.name, dumps(detail))).fetchone()[0]
    else:
        conn.execute(insert, (key, at, event.name, dumps(detail)))
    match event:
        case CallStarted():
            conn.execute("UPDATE calls SET source = ?, uri = ?, caller = ?, created_at = ?, flow = ?,"
                         " channel = ? WHERE key = ?",
                         (event.source, event.uri, event.caller, at, event.flow, event.channel, key))
        case CallDisposed():
            conn.execute("UPDATE calls SET disposition = ?, transfer_method = ?, flow = coalesce(flow, ?),"
                         " channel = coalesce(channel, ?) WHERE key = ?",
                         (event.disposition, event.method, event.flow, event.channel, key))
        case CallConnected():
            conn.execute("UPDATE calls SET state = 'connected', answered_at = ?, status = 200"
                         " WHERE key = ? AND state = 'setup'", (at, key))
        case CallEnded():
            _call_ended(conn, at, key, event)
        case LegEvent():
            _leg(conn, at, key, event, detail)
        case TransferRefused():
            # a bot's REFER refused before any Transfer exists (allow-list): still an attempt
            transfer_id = f"refused-{row}"
            _transfer_row(conn, at, key, transfer_id, "refer", event.target, "bot")
            _outcome(conn, at, key, transfer_id, "failed", event.status, None)
        case TransferEvent():
            _transfer(conn, at, key, event, detail)
        case FallbackPromptPlayed():
            _fallback(conn, at, key, None, {"at": at, "action": "prompt", **detail})


def _call_ended(conn: Any, at: float, key: str, event: CallEnded) -> None:
    cause = event.cause
    reason = event.reason or cause
    conn.execute(
        "UPDATE calls SET state = 'ended', ended_at = ?, end_cause = ?, end_reason = ?,"
        " outcome = CASE WHEN answered_at IS NOT NULL THEN 'completed' ELSE ? END,"
        " status = CASE WHEN answered_at IS NOT NULL THEN status ELSE ? END"
        " WHERE key = ? AND state != 'ended'",
        (at, cause, reason, _OUTCOME.get(cause, cause or "ended"), event.status, key))


def _leg(conn: Any, at: float, key: str, event: LegEvent, detail: dict[str, Any]) -> None:
    role, what = event.role, event.what
    if not _ROLE_RE.match(role) or not what:
        return
    fields: dict[str, Any] = {f"{what}_at": at}
    # a None removes the field (RFC 7396 merge, dialect.merge_leg)
    fields.update((k, v) for k, v in detail.items() if isinstance(v, (str, int, float, bool)) or v is None)
    if isinstance(event, LegAnswered):
        fields.setdefault("status", 200)
    conn.execute(dialect_of(conn).merge_leg, (role, role, dumps(fields), key))
    if isinstance(event, LegDialing) and event.transfer_id:
        conn.execute("UPDATE transfers SET uri = ? WHERE call_key = ? AND transfer_id = ?",
                     (event.uri, key, event.transfer_id))


def _transfer(conn: Any, at: float, key: str, event: TransferEvent,
              detail: dict[str, Any]) -> None:
    transfer_id = event.transfer_id
    # started creates the row; a later entry whose TransferStarted was lost still gets one
    if isinstance(event, TransferStarted):
        _transfer_row(conn, at, key, transfer_id, event.method, event.target, event.trigger)
    else:
        _transfer_row(conn, at, key, transfer_id, "", "", None)
    match event:
        case TransferProgress() | TransferAccepted():
            conn.execute(dialect_of(conn).append_progress, (event.status, key, transfer_id))
        case FallbackDecided():  # the fallback machine's decision after a failed attempt
            decision = {k: v for k, v in detail.items() if k != "transfer_id"}
            _append_fallback(conn, key, transfer_id, {"at": at, **decision})
        case TransferSucceeded():
            _outcome(conn, at, key, transfer_id, "succeeded", event.status, event.reason)
        case TransferFailed():
            _outcome(conn, at, key, transfer_id, "failed", event.status, event.reason)


def _transfer_row(conn: Any, at: float, key: str, transfer_id: str, method: str,
                  target: str, trigger: str | None) -> None:
    conn.execute(
        "INSERT INTO transfers (call_key, transfer_id, method, target, trigger, state,"
        " started_at) VALUES (?, ?, ?, ?, ?, 'pending', ?) ON CONFLICT DO NOTHING",
        (key, transfer_id, method, target, trigger, at))


def _outcome(conn: Any, at: float, key: str, transfer_id: str, state: str,
             status: int | str, reason: str | None) -> None:
    """``status`` is the column as text ("486", "policy"); ``sip_status`` the SIP code alone."""
    sip_status = status if isinstance(status, int) and not isinstance(status, bool) else None
    conn.execute(
        "UPDATE transfers SET state = ?, status = ?, sip_status = ?, reason = ?, ended_at = ?"
        " WHERE call_key = ? AND transfer_id = ? AND state = 'pending'",
        (state, str(status), sip_status, reason, at, key, transfer_id))


def _fallback(conn: Any, at: float, key: str, transfer_id: str | None,
              item: dict[str, Any]) -> None:
    """Append to the fallback list of ``transfer_id``, else of the call's latest transfer."""
    if transfer_id is None:
        row = conn.execute("SELECT transfer_id FROM transfers WHERE call_key = ? ORDER BY id DESC LIMIT 1",
                           (key,)).fetchone()
        if row is None:
            return  # the event row keeps it on the timeline
        transfer_id = row[0]
    _append_fallback(conn, key, str(transfer_id), item)


def _append_fallback(conn: Any, key: str, transfer_id: str, item: dict[str, Any]) -> None:
    conn.execute(dialect_of(conn).append_fallback, (dumps(item), key, transfer_id))
