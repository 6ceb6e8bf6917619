"""The writer's batched apply (records.apply_batch) against the entry-by-entry rules
(records.apply_entry): any sequence of timeline entries, cut into batches anywhere,
leaves the same calls, transfers, events, ladders and desk_sessions rows, on SQLite and PostgreSQL.

Sequences interleave a few calls; half of them keep each call's row changes in the
engine's order (started, connected, ended, disposed: the batched path), the others
any order (the batch falls back to entry by entry). Rows are compared column by
column, JSON columns parsed.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import nullcontext
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voicegw.engine.events import (
    CallConnected,
    CallDisposed,
    CallEnded,
    CallStarted,
    FallbackDecided,
    FallbackPromptPlayed,
    FlowDtmfReceived,
    LegAcked,
    LegAnswered,
    LegDialing,
    LegFailed,
    LegProgress,
    LegRequestReceived,
    TransferAccepted,
    TransferFailed,
    TransferProgress,
    TransferRefused,
    TransferStarted,
    TransferSucceeded,
)
from voicegw.store.dialect import dialect_of
from voicegw.store.records import DeskSessionOpened, DeskSessionRevoked, Entry, Ladder, apply_batch, apply_entry
from voicegw.store.schema import migrate

KEYS = ("a;1", "b;2", "c;3")
ROLES = st.sampled_from(["caller", "bot", "agent"])
TIDS = st.sampled_from(["t1", "t2"])
TEXT = st.sampled_from(["x", "sip:agent@pbx", "Busy Here"])

EVENTS = st.one_of(
    st.builds(CallStarted, TEXT, TEXT, TEXT, st.none() | TEXT, st.none() | TEXT),
    st.builds(CallConnected, st.just("answered")),
    st.builds(CallEnded, st.sampled_from(["hung up", "failed", "cancelled", ""]), TEXT | st.just(""),
              st.none() | st.sampled_from([486, 487])),
    st.builds(CallDisposed, st.sampled_from(["contained", "transferred"]), st.none() | TEXT,
              st.none() | TEXT, st.none() | TEXT),
    st.builds(LegDialing, ROLES, TEXT, st.none() | TIDS),
    st.builds(LegProgress, ROLES, st.sampled_from([180, 183])),
    st.builds(LegAnswered, ROLES),
    st.builds(LegAcked, ROLES),
    st.builds(LegFailed, ROLES, st.sampled_from([486, "timeout"]), TEXT),
    st.builds(LegRequestReceived, ROLES, st.sampled_from(["OPTIONS", "INFO"]),
              st.none() | st.just("application/dtmf-relay")),
    st.builds(TransferStarted, TIDS, st.sampled_from(["invite", "refer"]), TEXT, st.just("api")),
    st.builds(TransferProgress, TIDS, st.sampled_from([100, 180])),
    st.builds(TransferAccepted, TIDS, st.just(202), st.booleans()),
    st.builds(TransferSucceeded, TIDS, st.just(200), TEXT),
    st.builds(TransferFailed, TIDS, st.sampled_from([486, "timeout"]), TEXT),
    st.builds(FallbackDecided, TIDS, st.just(486), st.just("4xx"), st.just("next"), TEXT),
    st.builds(FallbackPromptPlayed, st.none() | TEXT, st.none()),
    st.builds(TransferRefused, TEXT, st.just("policy")),
    st.builds(FlowDtmfReceived, st.just("1")),
    st.just(Ladder(({"at": 1.0, "direction": "in", "message": "INVITE"},))),
    st.builds(DeskSessionOpened, st.sampled_from(["h1", "h2"]), TEXT, st.floats(1000, 1010)),
    st.builds(DeskSessionRevoked, st.sampled_from(["h1", "h2", "h5"])),
)
RANK = {CallStarted: 1, CallConnected: 2, CallEnded: 3, CallDisposed: 4}


@st.composite
def timelines(draw: st.DrawFn) -> tuple[list[Entry], list[int]]:
    """Entries of a few calls, and where the batches are cut."""
    items = draw(st.lists(st.tuples(st.sampled_from(KEYS), EVENTS, st.integers(0, 5)), min_size=1, max_size=40))
    if draw(st.booleans()):  # each call's row changes in the engine's order
        for key in KEYS:
            at = [i for i, (k, e, _) in enumerate(items) if k == key and type(e) in RANK]
            ordered = sorted((items[i] for i in at), key=lambda item: RANK[type(item[1])])
            for i, item in zip(at, ordered, strict=True):
                items[i] = item
    # a desk session's token is its row's key: each sign-in has its own (h<index>)
    items = [(k, DeskSessionOpened(f"h{n}", e.agent, e.expires_at) if isinstance(e, DeskSessionOpened) else e, dt)
             for n, (k, e, dt) in enumerate(items)]
    entries = [Entry(1000.0 + n + dt / 10, key, key.split(";")[0], event) for n, (key, event, dt) in enumerate(items)]
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(entries) - 1)), max_size=4)))
    return entries, cuts


def transaction(conn: Any, apply: Any) -> None:
    """As the writer runs one (PostgreSQL: in pipeline mode)."""
    batch = getattr(conn, "batch", None)
    with batch() if batch is not None else nullcontext():
        conn.execute(dialect_of(conn).begin)
        apply()
        conn.execute("COMMIT")


def written(conn: Any, entries: list[Entry], cuts: list[int], batched: bool) -> dict[str, list[tuple]]:
    if batched:
        for low, high in zip([0, *cuts], [*cuts, len(entries)], strict=True):
            transaction(conn, lambda low=low, high=high: apply_batch(conn, 7, entries[low:high], "w1"))
    else:
        transaction(conn, lambda: [apply_entry(conn, 7, entry, "w1") for entry in entries])
    return {table: [tuple(_plain(column, value) for column, value in zip(names, row, strict=True))
                    for row in conn.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()]
            for table, order, names in _tables(conn)}


def _tables(conn: Any) -> list[tuple[str, str, list[str]]]:
    out = []
    for table, order in (("calls", "key"), ("transfers", "id"), ("events", "id"), ("ladders", "call_key"),
                         ("desk_sessions", "token_hash")):
        cursor = conn.execute(f"SELECT * FROM {table} LIMIT 0")
        out.append((table, order, [d[0] for d in cursor.description]))
    return out


def _plain(column: str, value: Any) -> Any:
    if column in ("legs", "progress", "fallback", "detail"):
        return json.loads(value)
    return bytes(value) if isinstance(value, memoryview) else value


def sqlite_db() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    migrate(conn)
    return conn


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(timelines())
def test_sqlite_batches_leave_the_rows_entries_one_by_one_leave(timeline: tuple[list[Entry], list[int]]) -> None:
    entries, cuts = timeline
    assert written(sqlite_db(), entries, cuts, True) == written(sqlite_db(), entries, cuts, False)


class Counting:
    """A sqlite3 connection that counts the statements it is handed from Python."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.calls: list[str] = []

    def execute(self, sql: str, args: Any = ()) -> Any:
        self.calls.append(sql.split(" ")[0])
        return self.conn.execute(sql, args)

    def executemany(self, sql: str, rows: Any) -> Any:
        self.calls.append("many " + sql.split(" ")[0])
        return self.conn.executemany(sql, rows)


def test_ordinary_calls_in_one_batch_take_one_statement_per_kind_of_change() -> None:
    """The point of batching: 20 calls' 180 entries are six statements, not 540."""
    conn = Counting(sqlite_db())
    call = [CallStarted("udp:127.0.0.1:5062", "sip:demo@h", "alice"), LegDialing("bot", "sip:bot@h"),
            LegProgress("bot", 180), LegAnswered("bot"), CallConnected("answered"), LegAcked("caller"),
            LegAcked("bot"), CallEnded("hung up", "caller hung up"), CallDisposed("contained")]
    entries = [Entry(1000.0 + i, f"k{n};t", f"k{n}", event) for n in range(20) for i, event in enumerate(call)]
    apply_batch(conn, 1, entries)
    # the calls upsert, connected, ended, disposed, the legs' merge, the events
    assert conn.calls == ["many INSERT", "many UPDATE", "many UPDATE", "many UPDATE", "many UPDATE", "many INSERT"]
    db = conn.conn
    assert db.execute("SELECT count(*) FROM events").fetchone() == (180,)
    assert db.execute("SELECT DISTINCT state, outcome, event_count, json_extract(legs, '$.bot.status'),"
                      " json_extract(legs, '$.caller.ack_at') IS NOT NULL FROM calls").fetchall() == [
        ("ended", "completed", 9, 200, 1)]


@pytest.mark.timeout(300)
@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(timeline=timelines())
def test_postgres_batches_leave_the_rows_entries_one_by_one_leave(pg_dsn: str,
                                                                  timeline: tuple[list[Entry], list[int]]) -> None:
    from voicegw.store.postgres import connect

    entries, cuts = timeline
    conn = connect(pg_dsn)
    try:
        migrate(conn)
        reset = "TRUNCATE calls, transfers, events, ladders, desk_sessions RESTART IDENTITY"
        conn.execute(reset)
        batched = written(conn, entries, cuts, True)
        conn.execute(reset)
        assert batched == written(conn, entries, cuts, False)
    finally:
        conn.close()
