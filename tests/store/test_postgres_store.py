"""The PostgreSQL store's own behaviour (the shared contract is test_store.py, run on
both backends): a clear error at start for a bad DSN or a server that refuses, the
writer riding out a server outage without losing what it had queued, the worker id on
runs and calls, the migrations run once when workers start together, a worker starting
while a live worker's connection is cut leaving that worker's calls alone, and a batch
whose COMMIT answer was cut not written twice."""

from __future__ import annotations

import signal
import threading
import time

import psycopg
import pytest
from peers.net import free_port
from peers.postgres import CommitCutter, PgCluster
from structlog.testing import capture_logs

from voicegw.engine.events import (
    CallConnected,
    CallEnded,
    CallStarted,
    LegAcked,
    TransferProgress,
    TransferStarted,
    TransferSucceeded,
)
from voicegw.store import SCHEMA_VERSION, PgStore, StoreError, StoreUnavailable
from voicegw.store.recovery import RUN_LOCK


def test_a_refused_connection_is_one_line_naming_the_server_not_the_password() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(StoreError) as caught:
        PgStore.open(f"host=127.0.0.1 port={port} dbname=records user=vg password=sekret connect_timeout=3")
    message = str(caught.value)
    assert message.startswith(f"cannot connect to PostgreSQL at 127.0.0.1:{port}/records as vg:")
    assert "refused" in message.lower() and "sekret" not in message and "\n" not in message


@pytest.mark.parametrize("dsn", ["host=127.0.0.1 bogus", "postgresql://h/db?nosuch=1", "nosuchoption=1"])
def test_a_malformed_dsn_is_refused_before_connecting(dsn: str) -> None:
    with pytest.raises(StoreError, match="not a PostgreSQL connection string"):
        PgStore.open(dsn)


def test_an_unknown_database_names_it(pg_cluster: PgCluster) -> None:
    with pytest.raises(StoreError, match='database "nope" does not exist'):
        PgStore.open(pg_cluster.dsn("nope"))


def test_workers_starting_together_migrate_once_and_name_their_runs(pg_dsn: str) -> None:
    stores: list[PgStore] = []
    errors: list[BaseException] = []

    def start(worker: str) -> None:
        try:
            stores.append(PgStore.open(pg_dsn, worker=worker))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=start, args=(f"w{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert not errors, errors
        for n, s in enumerate(stores):
            s.record(f"c{n};t", f"c{n}", CallStarted("udp:127.0.0.1:5062", "sip:x@y", "a"))
            assert s.flush(10)
        with psycopg.connect(pg_dsn) as conn:
            versions = [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version")]
            assert versions == list(range(1, SCHEMA_VERSION + 1))
            owners = conn.execute("SELECT c.worker, r.worker FROM calls c JOIN runs r ON r.id = c.run_id").fetchall()
        assert sorted(owners) == [(f"w{n}", f"w{n}") for n in range(4)]
        assert {s.statistics()["worker"] for s in stores} == {"w0", "w1", "w2", "w3"}
    finally:
        for s in stores:
            s.close()


@pytest.mark.timeout(120)
def test_an_outage_keeps_the_records_queued_and_writes_them_when_the_server_is_back() -> None:
    """The server is stopped (fast shutdown: every connection cut) with a call up; the
    call answers, transfers and ends meanwhile; put() never waits; the writer retries,
    reconnects when the server is back on its port, and every record is complete."""
    with PgCluster() as cluster:
        s = PgStore.open(cluster.dsn(), worker="w1")
        try:
            s.record("o;1", "o", CallStarted("udp:127.0.0.1:5062", "sip:x@y", "alice"), at=1000.0)
            assert s.flush(10)
            cluster.stop(signal.SIGINT)
            with capture_logs() as logs:
                started = time.perf_counter()
                steps = [CallConnected("answered", ""), TransferStarted("t1", "invite", "sip:agent@pbx", "api"),
                         TransferProgress("t1", 180), TransferSucceeded("t1", 200, "connected"),
                         *[LegAcked("caller")] * 50, CallEnded("hung up", "caller hung up")]
                for n, event in enumerate(steps):
                    assert s.record("o;1", "o", event, at=1001.0 + n)  # queued, never refused
                assert time.perf_counter() - started < 0.5  # the loop never waits for the server
                assert not s.flush(1.5)  # nothing can be committed
                with pytest.raises(StoreUnavailable):
                    s.calls()
                assert s.writer.statistics().outages == 1
                cluster.start()  # same port
                assert s.flush(60)
            stats = s.writer.statistics()
            assert (stats.failed, stats.dropped, stats.queued) == (0, 0, 0)
            names = [e["event"] for e in logs]
            assert "store.outage" in names and "store.reconnected" in names
            record = s.call("o")
            assert record is not None
            assert (record["state"], record["outcome"], record["status"], record["worker"]) == (
                "ended", "completed", 200, "w1")
            assert record["ended_at"] == 1001.0 + len(steps) - 1
            (transfer,) = record["transfers"]
            assert (transfer["state"], transfer["sip_status"], transfer["progress"]) == ("succeeded", 200, [180])
            assert len([e for e in record["events"] if e["event"] == "leg.caller.ack"]) == 50
        finally:
            assert s.close()
        # the run got its lock back with the new connection: a new start does not recover it
        # while it lived, and after its clean close there is nothing to recover
        again = PgStore.open(cluster.dsn())
        try:
            assert again.recovery.runs == ()
        finally:
            again.close()


@pytest.mark.timeout(120)
def test_a_stop_during_an_outage_gives_up_after_its_timeout_and_says_what_was_lost() -> None:
    with PgCluster() as cluster:
        s = PgStore.open(cluster.dsn(), worker="w1")
        s.record("x;1", "x", CallStarted("udp:127.0.0.1:5062", "sip:x@y", "a"))
        assert s.flush(10)
        cluster.stop(signal.SIGINT)
        for _ in range(3):
            s.record("x;1", "x", LegAcked("caller"))
        with capture_logs() as logs:
            started = time.monotonic()
            assert not s.close(timeout=2)  # the records cannot be written: not a clean stop
            assert time.monotonic() - started < 20  # bounded: the daemon's stop is not held
            s.writer._thread.join(10)  # the thread gives up its retries at once
            assert not s.writer._thread.is_alive()
        stats = s.writer.statistics()
        assert (stats.written, stats.failed, stats.queued) == (1, 3, 0)
        names = [e["event"] for e in logs]
        assert "store.flush_timeout" in names and "store.outage_abandoned" in names


def _run_locked(dsn: str, run_id: int) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return bool(conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid::bigint = %s"
            " AND objid::bigint = %s AND objsubid = 2", (RUN_LOCK, run_id)).fetchone()[0])


@pytest.mark.timeout(120)
def test_a_worker_starting_while_a_live_workers_connection_is_cut_leaves_its_calls_open(pg_dsn: str) -> None:
    """w1 lives with a call up, but its connection is cut (a network blip: its run's lock
    goes with it); w2 starts meanwhile and recovers nothing (only a restarted w1 would);
    w1 writes on, reconnects, takes its lock back, and its call ends as it did."""
    live = PgStore.open(pg_dsn, worker="w1")
    other = None
    try:
        live.record("live;1", "live", CallStarted("udp:127.0.0.1:5062", "sip:x@y", "a"), at=1000.0)
        live.record("live;1", "live", CallConnected("answered", ""), at=1001.0)
        assert live.flush(10)
        run_id = live.writer.run_id
        assert _run_locked(pg_dsn, run_id)
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            (cut,) = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                   " WHERE application_name = 'voicegw w1'").fetchall()
            assert cut == (True,)
        deadline = time.monotonic() + 30
        while _run_locked(pg_dsn, run_id) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _run_locked(pg_dsn, run_id), "the cut connection's lock is gone"
        other = PgStore.open(pg_dsn, worker="w2")
        assert other.recovery.runs == ()
        assert other.call("live")["state"] == "connected"
        with capture_logs() as logs:
            live.record("live;1", "live", CallEnded("hung up", "caller hung up"), at=1002.0)
            assert live.flush(30)
        assert "store.reconnected" in [e["event"] for e in logs]
        assert _run_locked(pg_dsn, run_id), "the live run holds its lock again"
        record = other.call("live")
        assert (record["state"], record["outcome"], record["ended_at"]) == ("ended", "completed", 1002.0)
        assert not [e for e in record["events"] if e["detail"].get("recovered")]
    finally:
        for s in (live, other):
            if s is not None:
                s.close()


@pytest.mark.timeout(120)
def test_a_batch_whose_commit_answer_was_cut_is_not_written_twice(pg_cluster: PgCluster, pg_dsn: str) -> None:
    """The writer's connection drops right after the server committed a batch, before the
    answer reached voicegw (a relay cuts it there); the writer reconnects, finds its
    batch in (runs.committed) and does not apply it again: one row per event, the
    counters and lists bumped once."""
    cutter = CommitCutter(pg_cluster.port)
    s = PgStore.open(cutter.dsn(pg_dsn), worker="w1")
    try:
        events = [CallStarted("udp:127.0.0.1:5062", "sip:x@y", "a"),
                  TransferStarted("t1", "invite", "sip:agent@pbx", "api"), TransferProgress("t1", 180),
                  LegAcked("caller")]
        for n, event in enumerate(events[:2]):
            s.record("cut;1", "cut", event, at=1000.0 + n)
        assert s.flush(10)
        cutter.arm()
        with capture_logs() as logs:
            for n, event in enumerate(events[2:], 2):  # the first batch now has its answer cut
                s.record("cut;1", "cut", event, at=1000.0 + n)
            assert s.flush(30)
        assert cutter.cuts == 1
        record = s.call("cut")
        assert [e["event"] for e in record["events"]] == [e.name for e in events]
        names = [e["event"] for e in logs]
        assert "store.outage" in names and "store.commit_was_in" in names and "store.reconnected" in names
        assert record["transfers"][0]["progress"] == [180]
        stats = s.writer.statistics()
        assert (stats.written, stats.failed, stats.outages) == (4, 0, 1)
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            assert conn.execute("SELECT event_count FROM calls WHERE key = 'cut;1'").fetchone() == (4,)
    finally:
        s.close()
        cutter.close()
