"""The records store: migrations, the off-loop writer, crash recovery rules, queries.

The contract tests (records, queries, ladders, the durable barrier, close, crash
recovery, live runs sharing a database) run on both backends: SQLite (a file) and
PostgreSQL (a new database in a throwaway cluster, peers/postgres.py). PostgreSQL's own
(outage, start-up errors, workers) are in test_postgres_store.py.

The crash itself (kill -9 of a real daemon with sipp calls) is tests/wire/test_store_crash.py;
here a "crash" is a child process that records and then SIGKILLs itself.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from voicegw.engine.events import (
    CallConnected,
    CallEnded,
    CallStarted,
    FallbackDecided,
    FallbackPromptPlayed,
    LegAcked,
    LegAnswered,
    LegByeSent,
    LegConsulting,
    LegDialing,
    LegHungUp,
    LegProgress,
    LegReinvited,
    LegRequestReceived,
    TransferAccepted,
    TransferFailed,
    TransferProgress,
    TransferRefused,
    TransferStarted,
    TransferSucceeded,
    WarmTransferMoved,
)
from voicegw.store import SCHEMA_VERSION, Entry, PgStore, RecordStore, Store, store_path
from voicegw.store.records import Ladder, apply_entry
from voicegw.store.schema import MIGRATIONS, SchemaError, current_version, migrate
from voicegw.store.writer import Writer

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class FakeCall:
    id: str
    key: str


class Clock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float = 1.0) -> float:
        self.now += seconds
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


BACKENDS = ["sqlite", "postgres"]


def target(request: pytest.FixtureRequest, tmp_path: Path, name: str = "voicegw.db") -> str:
    """Where a store of the test's backend lives: a file, or a new PostgreSQL database."""
    if request.param == "postgres":
        return request.getfixturevalue("pg_dsn")
    return str(tmp_path / "var" / name)


def open_at(where: str, **options) -> RecordStore:
    return PgStore.open(where, **options) if where.startswith("host=") else Store.open(where, **options)


@pytest.fixture(params=BACKENDS)
def where(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return target(request, tmp_path)


@pytest.fixture
def store(where: str, clock: Clock):
    s = open_at(where, clock=clock)
    yield s
    s.close()


def raw(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    return db


def rows(where: str, sql: str) -> list[tuple]:
    """What another connection sees (committed rows), on either backend."""
    if where.startswith("host="):
        import psycopg

        with psycopg.connect(where) as conn:
            return [tuple(r) for r in conn.execute(sql).fetchall()]
    with sqlite3.connect(where) as conn:
        return [tuple(r) for r in conn.execute(sql).fetchall()]


def answered_call(store: RecordStore, clock: Clock, call_id: str = "c1", tag: str = "x") -> FakeCall:
    call = FakeCall(call_id, f"{call_id};{tag}")
    listen = store.listener
    listen(call, 0.0, CallStarted("udp:127.0.0.1:5062", "sip:demo@127.0.0.1", "alice"))
    clock.tick()
    listen(call, 0.0, LegDialing("bot", "sip:bot@127.0.0.1:5070"))
    listen(call, 0.0, LegProgress("bot", 180))
    clock.tick()
    listen(call, 0.0, LegAnswered("bot"))
    listen(call, 0.0, CallConnected("answered", ""))
    return call


# ---------------------------------------------------------------------- schema
def test_open_creates_directory_wal_and_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "var" / "voicegw.db"
    s = Store.open(path)
    try:
        db = raw(path)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        versions = [r[0] for r in db.execute("SELECT version FROM schema_version ORDER BY version")]
        assert versions == list(range(1, SCHEMA_VERSION + 1))
        assert s.schema_version == SCHEMA_VERSION
        assert s.writer.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL (WAL: crash-safe)
        # checkpoints are the Checkpointer thread's, never a commit's
        assert s.writer.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    finally:
        s.close()
    # reopening applies nothing twice
    Store.open(path).close()
    assert [r[0] for r in raw(path).execute("SELECT version FROM schema_version")] == list(
        range(1, SCHEMA_VERSION + 1))


def test_store_synchronous_comes_from_the_config_and_is_sqlite_only(tmp_path: Path) -> None:
    from voicegw.config.errors import ConfigError
    from voicegw.config.load import load_runtime
    from voicegw.store import open_store

    config = tmp_path / "voicegw.yaml"
    config.write_text(f"store:\n  path: {tmp_path / 'full.db'}\n  synchronous: full\n", encoding="utf-8")
    s = open_store(load_runtime(config))
    try:
        assert s.writer.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        s.close()
    config.write_text("store:\n  synchronous: sometimes\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="synchronous"):
        load_runtime(config)
    config.write_text("store:\n  backend: postgres\n  dsn: host=db1 dbname=v\n  synchronous: full\n",
                      encoding="utf-8")
    with pytest.raises(ConfigError, match="synchronous is for backend: sqlite"):
        load_runtime(config)


def test_checkpoints_run_on_their_own_thread_and_keep_the_wal_short(tmp_path: Path) -> None:
    """The writer never checkpoints (wal_autocheckpoint 0); after commits the
    Checkpointer copies the WAL into the database, so its frames are reused."""
    path = tmp_path / "voicegw.db"
    s = Store.open(path)
    try:
        assert s.checkpointer is not None
        s.checkpointer.every = 0.05
        for n in range(200):
            s.record(f"k{n};t", f"k{n}", CallStarted("udp:127.0.0.1:5062", "sip:demo@127.0.0.1", f"c{n}"))
        assert s.flush(10)

        def in_the_file() -> int:  # what a reader of the database file alone sees
            copy = tmp_path / "copy.db"
            copy.write_bytes(path.read_bytes())
            db = sqlite3.connect(copy)
            try:
                return int(db.execute("SELECT count(*) FROM calls").fetchone()[0])
            except sqlite3.DatabaseError:  # no table yet (still in the WAL only), or a copy torn mid-checkpoint
                return 0
            finally:
                db.close()
                copy.unlink()

        def checkpointed() -> bool:  # the count is the thread's, bumped once the checkpoint returned
            return s.statistics()["checkpoint"]["checkpoints"] >= 1 and in_the_file() == 200

        deadline = time.monotonic() + 10
        while not checkpointed() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert in_the_file() == 200  # the WAL was copied into the database by a checkpoint
        stats = s.statistics()["checkpoint"]
        assert stats["checkpoints"] >= 1 and stats["failed"] == 0 and stats["wal_frames"] > 0
        assert any(t.name == "voicegw-store-checkpoint" for t in threading.enumerate())
    finally:
        s.close()
    assert not any(t.name == "voicegw-store-checkpoint" for t in threading.enumerate())


def test_migrations_apply_in_order_and_a_failing_one_leaves_the_previous_version(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    assert migrate(conn) == len(MIGRATIONS)
    extra = [*MIGRATIONS, ["ALTER TABLE calls ADD COLUMN tenant TEXT"], ["CREATE TABLE broken (", "nope"]]
    with pytest.raises(sqlite3.Error):
        migrate(conn, extra)
    # migration N+1 committed alone; N+2 rolled back entirely
    assert current_version(conn) == len(MIGRATIONS) + 1
    assert "tenant" in [r[1] for r in conn.execute("PRAGMA table_info(calls)")]
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'broken'").fetchone()[0] == 0


def test_a_database_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    Store.open(path).close()
    db = sqlite3.connect(path)
    db.execute("INSERT INTO schema_version VALUES (?, 0)", (SCHEMA_VERSION + 5,))
    db.commit()
    with pytest.raises(SchemaError, match="upgrade voicegw"):
        Store.open(path)


def test_store_path_env_then_config_then_default(monkeypatch: pytest.MonkeyPatch) -> None:
    @dataclass
    class Section:
        path: str

    @dataclass
    class Config:
        store: Section

    @dataclass
    class WithRecordsDir:
        records_dir: str

    monkeypatch.delenv("VOICEGW_DB", raising=False)
    assert store_path(None) == Path("var/voicegw.db")
    assert store_path(Config(Section("/srv/records.db"))) == Path("/srv/records.db")
    assert store_path(WithRecordsDir("/var/lib/voicegw")) == Path("/var/lib/voicegw/voicegw.db")
    monkeypatch.setenv("VOICEGW_DB", "/tmp/x.db")
    assert store_path(Config(Section("/srv/records.db"))) == Path("/tmp/x.db")


# ---------------------------------------------------------------------- records
def test_answered_call_record_with_legs_timings_and_timeline(store: RecordStore, clock: Clock) -> None:
    call = answered_call(store, clock)
    clock.tick(30)
    store.listener(call, 0.0, LegHungUp("caller"))
    store.listener(call, 0.0, CallEnded("hung up", "caller hung up"))
    store.listener(call, 0.0, LegByeSent("bot"))
    assert store.flush(5)
    record = store.call("c1")
    assert record is not None and record["key"] == "c1;x"
    assert (record["state"], record["outcome"], record["status"]) == ("ended", "completed", 200)
    assert record["caller"] == "alice" and record["source"] == "udp:127.0.0.1:5062"
    assert record["answered_at"] - record["created_at"] == 2
    assert record["duration"] == 30
    assert record["end_reason"] == "caller hung up"
    bot = record["legs"]["bot"]
    assert bot["uri"] == "sip:bot@127.0.0.1:5070" and bot["status"] == 200
    assert bot["answered_at"] == record["answered_at"] and "bye_sent_at" in bot
    assert [e["event"] for e in record["events"]] == [
        "call.incoming", "leg.bot.dialing", "leg.bot.progress", "leg.bot.answered", "call.connected",
        "leg.caller.bye", "call.ended", "leg.bot.bye_sent"]
    assert record["events"][2]["detail"] == {"status": 180}
    assert store.call("c1;x")["key"] == "c1;x" and store.call("nope") is None


@pytest.mark.parametrize(("cause", "reason", "status", "outcome"), [
    ("failed", "Busy Here (bot: 486)", 486, "failed"),
    ("failed", "Temporarily Unavailable (bot: timeout)", 480, "failed"),
    ("failed", "Service Unavailable (no media ports)", 503, "failed"),
    ("cancelled", "caller cancelled", 487, "cancelled"),
    ("failed", "Busy Here (bot: 486)", None, "failed"),  # the status is the field, never the text
])
def test_failed_setup_keeps_the_status_the_caller_got(store: RecordStore, cause: str, reason: str,
                                                      status: int | None, outcome: str) -> None:
    call = FakeCall("f", "f;1")
    store.listener(call, 0.0, CallStarted("udp:1.2.3.4:5060", "sip:x@y", "b"))
    store.listener(call, 0.0, CallEnded(cause, reason, status))
    assert store.flush(5)
    record = store.call("f")
    assert (record["state"], record["status"], record["outcome"], record["answered_at"]) == (
        "ended", status, outcome, None)
    assert record["end_reason"] == reason and record["events"][-1]["detail"] == (
        {"cause": cause, "reason": reason} if status is None else {"cause": cause, "reason": reason, "status": status})


def test_transfer_attempts_their_outcomes_and_fallback_actions(store: RecordStore, clock: Clock) -> None:
    call = answered_call(store, clock)
    listen = store.listener
    listen(call, 0.0, TransferStarted("t1", "invite", "sip:agent@pbx", "flow"))
    listen(call, 0.0, LegDialing("agent", "sip:agent@10.0.0.1", "t1"))
    listen(call, 0.0, TransferProgress("t1", 180))
    clock.tick(3)
    listen(call, 0.0, TransferFailed("t1", 486, "Busy Here"))
    listen(call, 0.0, FallbackDecided("t1", 486, "486", "next", "busy: try REFER"))
    listen(call, 0.0, FallbackPromptPlayed("Please hold", None))
    listen(call, 0.0, TransferStarted("t2", "refer", "+4930123", "flow"))
    listen(call, 0.0, TransferAccepted("t2", 202, True))
    clock.tick(2)
    listen(call, 0.0, TransferSucceeded("t2", 200, "connected"))
    listen(call, 0.0, TransferStarted("t3", "invite", "sip:x@evil", "api"))
    listen(call, 0.0, TransferFailed("t3", "policy", "not allowed"))
    listen(call, 0.0, TransferRefused("sip:y@evil", "policy"))
    assert store.flush(5)
    t1, t2, t3, refused = store.call("c1")["transfers"]
    assert (t1["state"], t1["status"], t1["sip_status"], t1["method"]) == ("failed", "486", 486, "invite")
    assert t1["uri"] == "sip:agent@10.0.0.1" and t1["progress"] == [180] and t1["trigger"] == "flow"
    assert t1["ended_at"] - t1["started_at"] == 3
    assert [f.get("action") for f in t1["fallback"]] == ["next", "prompt"]
    assert t1["fallback"][0]["why"] == "busy: try REFER" and t1["fallback"][1]["text"] == "Please hold"
    assert (t2["state"], t2["sip_status"], t2["progress"]) == ("succeeded", 200, [202])
    assert (t3["state"], t3["status"], t3["sip_status"]) == ("failed", "policy", None)
    assert (refused["method"], refused["state"], refused["status"], refused["target"]) == (
        "refer", "failed", "policy", "sip:y@evil")
    assert refused["transfer_id"].startswith("refused-")
    assert [t["transfer_id"] for t in store.transfers(state="failed")] == [refused["transfer_id"], "t3", "t1"]
    assert [t["transfer_id"] for t in store.transfers(method="refer", call_id="c1")] == [
        refused["transfer_id"], "t2"]


def test_leg_events_by_type_land_in_the_call_legs_and_warm_steps_in_the_transfer(store: RecordStore, clock: Clock) -> None:
    call = answered_call(store, clock)
    listen = store.listener
    listen(call, 0.0, LegRequestReceived("bot", "INFO", "application/dtmf-relay"))
    listen(call, 0.0, LegReinvited("caller", True))
    listen(call, 0.0, LegConsulting("agent", "sip:agent@pbx", "w1"))  # a leg, not an attempt
    listen(call, 0.0, WarmTransferMoved("w2", "briefing", "agent answered"))  # its TransferStarted was lost
    assert store.flush(5)
    record = store.call("c1")
    legs = record["legs"]
    assert legs["bot"]["content_type"] == "application/dtmf-relay" and "info_at" in legs["bot"]
    assert legs["caller"]["hold"] is True and "reinvite_at" in legs["caller"]
    assert legs["agent"]["uri"] == "sip:agent@pbx" and legs["agent"]["transfer_id"] == "w1"
    assert [(t["transfer_id"], t["state"], t["method"]) for t in record["transfers"]] == [("w2", "pending", "")]
    assert [e["event"] for e in record["events"][-4:]] == [
        "leg.bot.info", "leg.caller.reinvite", "leg.agent.consulting", "transfer.warm"]


def test_entries_for_a_call_whose_incoming_was_lost_still_make_a_row(store: RecordStore) -> None:
    store.record("lost;1", "lost", TransferFailed("t9", 408, "timeout"))
    assert store.flush(5)
    record = store.call("lost")
    assert record["state"] == "setup" and record["transfers"][0]["state"] == "failed"


def test_transfer_ids_that_restart_with_the_process_do_not_collide(store: RecordStore, clock: Clock) -> None:
    for key in ("a;1", "b;2"):
        store.record(key, key[0], TransferStarted("t1", "invite", "sip:a@b", "api"))
    assert store.flush(5)
    assert len(store.transfers()) == 2


# ---------------------------------------------------------------------- writer
def test_listener_only_enqueues_and_the_writer_batches_what_piles_up(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "w.db", isolation_level=None, check_same_thread=False)
    migrate(conn)
    gate = threading.Event()
    applied: list[str] = []

    def slow_apply(c: sqlite3.Connection, run_id: int, entry: Entry) -> None:
        gate.wait(60)  # the disk is slow (bounded): the loop must not notice
        applied.append(entry.event.name)
        apply_entry(c, run_id, entry)

    writer = Writer(conn, 1, apply=slow_apply, batch_max=100)
    writer.start()
    for i in range(250):
        assert writer.put(Entry(float(i), f"k{i % 5};x", f"k{i % 5}", LegAcked("caller")))
    # put() never waited for the disk: all 250 were taken while nothing could be written
    assert applied == [] and not gate.is_set()
    gate.set()
    assert writer.flush(10)
    stats = writer.statistics()
    assert (stats.written, stats.dropped, stats.failed, stats.queued) == (250, 0, 0, 0)
    assert stats.largest_batch == 100 and stats.batches <= 4  # 1 + 100 + 100 + 49
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 250
    assert writer.close(5)


def test_a_queue_past_its_mark_drops_nothing_and_is_backlogged_until_under_half(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "q.db", isolation_level=None, check_same_thread=False)
    migrate(conn)
    writer = Writer(conn, 1, max_queue=10)  # not started: nothing drains
    leg = Entry(0.0, "k;1", "k", LegAcked("caller"))
    with capture_logs() as logs:
        assert all(writer.put(leg) for _ in range(9)) and not writer.backlogged()
        assert all(writer.put(leg) for _ in range(16))  # a burst: every entry kept
        assert writer.backlogged() and writer.backlogged()  # one episode, logged once
    stats = writer.statistics()
    assert (stats.enqueued, stats.dropped, stats.queued, stats.peak_queued, stats.backlogs) == (25, 0, 25, 25, 1)
    assert [e["event"] for e in logs if e["event"].startswith("store.")] == ["store.backlog"]
    writer.start()
    assert writer.flush(5) and writer.written == 25
    with capture_logs() as logs:
        assert not writer.backlogged()  # drained under half: new calls come in again
    assert [e["event"] for e in logs] == ["store.backlog_cleared"]
    assert conn.execute("SELECT count(*), max(event_count) FROM events, calls").fetchone() == (25, 25)
    assert writer.close(5)


def test_new_calls_are_refused_while_the_store_is_backlogged_and_taken_again_after(tmp_path: Path) -> None:
    """The daemon's admission asks the writer first (store_backlog), then the guard."""
    from types import SimpleNamespace

    from voicegw.daemon import Daemon
    from voicegw.sip.events import Address
    from voicegw.sip.parser import parse_message
    from voicegw.sip.refusal import Cause

    conn = sqlite3.connect(tmp_path / "a.db", isolation_level=None, check_same_thread=False)
    migrate(conn)
    writer = Writer(conn, 1, max_queue=4)  # not started yet: the disk is "slow"
    daemon = Daemon()
    daemon.store = SimpleNamespace(writer=writer)  # what _admit reads of the store
    invite = parse_message(b"INVITE sip:demo@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1\r\n"
                           b"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:demo@127.0.0.1>\r\nCall-ID: n1\r\n"
                           b"CSeq: 1 INVITE\r\nContact: <sip:a@127.0.0.1:5062>\r\nContent-Length: 0\r\n\r\n")
    source = Address("udp", "127.0.0.1", 5062)
    assert daemon._admit(invite, source, 0.0) is None
    for n in range(4):
        writer.put(Entry(0.0, "k;1", "k", LegAcked("caller")))
    refused = daemon._admit(invite, source, 0.0)
    assert refused is not None and refused.cause is Cause.STORE_BACKLOG and refused.status == 503
    writer.start()
    assert writer.flush(5)
    assert daemon._admit(invite, source, 0.0) is None and writer.written == 4
    assert writer.close(5)


def test_a_bad_entry_costs_only_itself(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "b.db", isolation_level=None, check_same_thread=False)
    migrate(conn)

    def picky(c: sqlite3.Connection, run_id: int, entry: Entry) -> None:
        if isinstance(entry.event, LegAcked):
            raise ValueError("poison")  # noqa: TRY004 - any error the writer meets
        apply_entry(c, run_id, entry)

    writer = Writer(conn, 1, apply=picky)
    for event in (CallStarted("s", "u", "c"), LegAcked("caller"), CallConnected("answered")):
        writer.put(Entry(1.0, "k;1", "k", event))
    with capture_logs() as logs:
        writer.start()
        assert writer.flush(5)
    assert (writer.written, writer.failed) == (2, 1)
    assert conn.execute("SELECT state FROM calls").fetchone()[0] == "connected"
    assert {e["event"] for e in logs} >= {"store.batch_failed", "store.entry_failed"}
    writer.close(5)


async def test_durable_returns_once_the_entry_is_committed(store: RecordStore, where: str) -> None:
    store.record("d;1", "d", CallStarted("udp:1.1.1.1:5060", "sip:x@y", "a"))
    await asyncio.wait_for(store.durable(), 5)
    # another connection sees it: committed, not only queued
    assert rows(where, "SELECT count(*) FROM calls WHERE key = 'd;1'") == [(1,)]


def test_close_flushes_and_closes_what_is_still_open_as_shutdown(where: str, clock: Clock) -> None:
    s = open_at(where, clock=clock, worker="w1")
    call = answered_call(s, clock)
    s.listener(call, 0.0, TransferStarted("t1", "invite", "sip:a@b", "api"))
    assert s.close()
    assert rows(where, "SELECT state, outcome, answered_at IS NOT NULL, worker FROM calls") == [
        ("ended", "shutdown", True, "w1")]
    assert rows(where, "SELECT state, status FROM transfers") == [("failed", "shutdown")]
    assert rows(where, "SELECT stopped_at, dropped, worker FROM runs") == [(clock.now, 0, "w1")]
    if not where.startswith("host="):
        assert not Path(where + "-runs/1.lock").exists()
    assert not s.writer.put(Entry(0.0, call.key, call.id, Ladder(())))  # after close: dropped (and logged),
    assert not s.listener(call, 0.0, LegAcked("caller"))  # not raised
    with pytest.raises(RuntimeError):
        s.calls()


# ---------------------------------------------------------------------- recovery
CRASHER = """
import os, signal, sys
from voicegw.engine.events import CallConnected, CallEnded, CallStarted, TransferProgress, TransferStarted
from voicegw.store import Store
from voicegw.store import PgStore
where = sys.argv[1]
s = PgStore.open(where, worker='w1') if where.startswith('host=') else Store.open(where, worker='w1')
rec = s.record
rec("up;1", "up", CallStarted("udp:1.1.1.1:5060", "sip:x@y", "a"), at=1000.0)
rec("up;1", "up", CallConnected("answered", ""), at=1001.0)
rec("up;1", "up", TransferStarted("t1", "invite", "sip:agent@pbx", "api"), at=1002.0)
rec("up;1", "up", TransferProgress("t1", 180), at=1003.0)
rec("ringing;2", "ringing", CallStarted("udp:1.1.1.1:5060", "sip:x@y", "b"), at=1001.0)
rec("done;3", "done", CallStarted("udp:1.1.1.1:5060", "sip:x@y", "c"), at=1001.0)
rec("done;3", "done", CallConnected("answered", ""), at=1002.0)
rec("done;3", "done", CallEnded("hung up", "caller hung up"), at=1005.0)
assert s.flush(10)
os.kill(os.getpid(), signal.SIGKILL)
"""


def crash_child(path: Path | str) -> None:
    proc = subprocess.run([sys.executable, "-c", CRASHER, str(path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=30, check=False)
    assert proc.returncode == -9, proc.stderr


def test_recovery_closes_cut_calls_and_pending_transfers_of_a_killed_run(where: str) -> None:
    path = where
    crash_child(path)
    s = open_at(path, clock=lambda: 5000.0, worker="w1")  # the worker, restarted
    try:
        assert (s.recovery.runs, s.recovery.calls, s.recovery.transfers) == ((1,), 2, 1)
        up = s.call("up")
        assert (up["state"], up["outcome"], up["end_reason"], up["end_cause"]) == (
            "ended", "restart", "restart", "restart")
        assert up["answered_at"] == 1001.0
        assert up["ended_at"] == 1003.0  # its last event, not "now" (5000)
        assert up["events"][-1]["event"] == "call.ended" and up["events"][-1]["detail"]["recovered"] is True
        transfer = up["transfers"][0]
        assert (transfer["state"], transfer["status"], transfer["ended_at"]) == ("failed", "restart", 1003.0)
        assert any(e["event"] == "transfer.failed" and e["detail"]["recovered"] for e in up["events"])
        ringing = s.call("ringing")
        assert (ringing["outcome"], ringing["answered_at"], ringing["ended_at"]) == ("restart", None, 1001.0)
        done = s.call("done")  # closed before the crash: untouched
        assert (done["outcome"], done["end_reason"], done["ended_at"]) == ("completed", "caller hung up", 1005.0)
        assert s.totals()["calls"]["by_outcome"] == {"restart": 2, "completed": 1}
        assert s.totals()["transfers"]["by_status"] == {"restart": 1}
    finally:
        s.close()
    assert rows(path, "SELECT id, worker, recovered_by FROM runs ORDER BY id") == [(1, "w1", 2), (2, "w1", None)]
    # the worker that owned each call
    assert rows(path, "SELECT key, worker FROM calls ORDER BY key") == [
        ("done;3", "w1"), ("ringing;2", "w1"), ("up;1", "w1")]
    # a second restart finds nothing more to do and changes nothing
    again = open_at(path)
    assert again.recovery.runs == ()
    again.close()
    assert rows(path, "SELECT count(*) FROM events WHERE event = 'call.ended'") == [(3,)]


def test_a_live_run_sharing_the_file_is_not_recovered(where: str, clock: Clock) -> None:
    path = where
    first = open_at(path, clock=clock)
    try:
        answered_call(first, clock)
        assert first.flush(5)
        second = open_at(path, clock=clock)  # another worker on the same file
        try:
            assert second.recovery.runs == ()
            assert second.call("c1")["state"] == "connected"
        finally:
            second.close()
    finally:
        first.close()


# ---------------------------------------------------------------------- queries
def test_queries_filter_by_time_state_and_outcome_and_totals_count(store: RecordStore, clock: Clock) -> None:
    base = clock.now
    for n in range(5):
        call = FakeCall(f"q{n}", f"q{n};t")
        store.listener(call, 0.0, CallStarted("s", "u", "c"))
        if n % 2 == 0:
            store.listener(call, 0.0, CallConnected("answered", ""))
        if n < 4:
            store.listener(call, 0.0, CallEnded("hung up", "caller hung up") if n % 2 == 0
                           else CallEnded("failed", "Busy Here (bot: 486)", 486))
        clock.tick(10)
    assert store.flush(5)
    assert [c["call_id"] for c in store.calls()] == ["q4", "q3", "q2", "q1", "q0"]
    assert [c["call_id"] for c in store.calls(limit=2)] == ["q4", "q3"]
    assert [c["call_id"] for c in store.calls(since=base + 10, until=base + 30)] == ["q2", "q1"]
    assert [c["call_id"] for c in store.calls(state="connected")] == ["q4"]
    assert [c["call_id"] for c in store.calls(outcome="failed")] == ["q3", "q1"]
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(base + 35))
    assert [c["call_id"] for c in store.calls(since=iso)] == ["q4"]
    totals = store.totals()
    assert totals["calls"] == {"total": 5, "active": 1,
                               "by_outcome": {"completed": 2, "failed": 2, "active": 1},
                               "by_status": {"200": 3, "486": 2}}
    assert store.totals(since=base + 35)["calls"]["total"] == 1


def test_reads_do_not_wait_for_a_slow_writer(where: str) -> None:
    """WAL (SQLite), MVCC (PostgreSQL): a reader sees the last commit while a writer
    holds its transaction open."""
    path = where
    s = open_at(path)
    try:
        s.record("a;1", "a", CallStarted("s", "u", "c"))
        assert s.flush(5)
        if path.startswith("host="):
            import psycopg

            blocker = psycopg.connect(path, autocommit=True)
            blocker.execute("BEGIN")
            blocker.execute("LOCK TABLE runs IN EXCLUSIVE MODE")  # blocks writers, not readers
        else:
            blocker = sqlite3.connect(path, isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
        blocker.execute("INSERT INTO runs (pid, host, started_at) VALUES (0, 'x', 0)")
        # the blocker holds its lock until after the read: a read that waited for it
        # could only fail (SQLite: "database is locked" after READ_BUSY_MS; PostgreSQL:
        # the readers' statement_timeout), so an answer is the proof (no timing asserted)
        assert [c["call_id"] for c in s.calls()] == ["a"]
        blocker.execute("ROLLBACK")
    finally:
        s.close()


# ---------------------------------------------------------------------- ladders
def test_a_saved_ladder_comes_back_with_the_call_bounded_and_compressed(store: RecordStore, clock: Clock) -> None:
    from voicegw.store.records import (
        LADDER_MAX_BYTES,
        LADDER_MAX_MESSAGES,
        pack_ladder,
        unpack_ladder,
    )

    store.record("c1;t", "c1", CallStarted(source="udp:127.0.0.1:5062", uri="sip:x@h", caller="alice"))
    invite = "INVITE sip:x@h SIP/2.0\r\nCall-ID: c1\r\n\r\n"
    messages = [{"at": 1000.0 + i, "direction": "in" if i % 2 else "out", "peer": "udp:127.0.0.1:5062",
                 "sip_call_id": "c1", "first_line": invite.split("\r\n")[0], "message": invite}
                for i in range(LADDER_MAX_MESSAGES + 50)]
    store.save_ladder("c1;t", "c1", messages)
    assert store.flush()
    saved = store.call("c1")["ladder"]  # type: ignore[index]
    assert saved == messages[:LADDER_MAX_MESSAGES]  # the first ones: set-up and transfer
    big = [{**messages[0], "message": "x" * 4096}] * 100
    assert len(unpack_ladder(pack_ladder(tuple(big)))) == LADDER_MAX_BYTES // 4096 - 1
    assert len(pack_ladder(tuple(messages))) < len(invite) * 20  # repetitive SIP compresses well
    assert store.call("nope") is None


def test_ladders_are_packed_off_the_writer_thread_and_a_close_writes_those_queued(where: str) -> None:
    """save_ladder hands the ladder to the packer's thread (zlib off the writer's,
    store/packer.py); the writer is given it packed; close() writes every ladder queued
    before it, even those not packed yet."""
    s = open_at(where)
    seen: list[tuple[str, bytes | None]] = []
    put = s.writer.put

    def spy(entry: Entry) -> bool:
        if isinstance(entry.event, Ladder):
            seen.append((threading.current_thread().name, entry.event.packed))
        return put(entry)

    s.writer.put = spy  # type: ignore[method-assign]
    s._packer._put = spy
    message = {"at": 1.0, "direction": "in", "peer": "udp:127.0.0.1:5062", "sip_call_id": "c",
               "first_line": "BYE sip:x@h SIP/2.0", "message": "BYE sip:x@h SIP/2.0\r\n\r\n"}
    for n in range(50):
        s.record(f"c{n};t", f"c{n}", CallStarted(source="udp:127.0.0.1:5062", uri="sip:x@h", caller="a"))
        assert s.save_ladder(f"c{n};t", f"c{n}", [message])
    assert s.close()
    assert len(seen) == 50
    assert all(thread == "voicegw-store-packer" and packed for thread, packed in seen)
    again = open_at(where)
    try:
        assert all(again.call(f"c{n}")["ladder"] == [message] for n in range(50))  # type: ignore[index]
    finally:
        again.close()
