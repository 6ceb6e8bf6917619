"""The records store's interface and what both backends share (DESIGN.md layer 7).

:class:`RecordStore` is what the daemon, the engine and the control API use: the
engine listener and ``record``/``save_ladder`` (enqueue only, never block), ``durable``
(the barrier a transfer awaits), ``flush``/``close``, ``statistics`` and the bounded
queries (``calls``, ``call``, ``transfers``, ``totals``, ``report``: blocking, short,
called with ``asyncio.to_thread``). Two backends implement it: SQLite (sqlite.py, the
embedded default) and PostgreSQL (postgres.py, for workers sharing one database). They
share the writer (writer.py), the record rules (records.py), the schema (schema.py) and
these queries, written once with ``?`` placeholders (dialect.py).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any

import structlog

from ..engine.events import CallEvent
from . import report as _report
from .dialect import Dialect, dialect_of
from .packer import LadderPacker
from .records import DeskSessionOpened, DeskSessionRevoked, Entry, Ladder, unpack_ladder
from .recovery import Recovery
from .writer import Writer

log = structlog.get_logger("voicegw.store")

MAX_LIMIT = 1000
MAX_EVENTS = 5000

TimeArg = float | int | datetime | str | None


class RecordStore(ABC):
    """Durable call and transfer records. Build with a backend's ``open``."""

    backend: str
    dialect: Dialect

    def __init__(self, writer: Writer, recovery: Recovery, schema_version: int,
                 clock: Callable[[], float], worker: str | None = None) -> None:
        self.writer = writer
        self.run_id = writer.run_id
        self.recovery = recovery
        self.schema_version = schema_version
        self.worker = worker
        self._clock = clock
        self.closed = False
        self._packer = LadderPacker(writer.put)
        self._packer.start()

    # ------------------------------------------------------------------ recording
    def listener(self, call: Any, now: float, event: CallEvent) -> bool:
        """An engine listener (``engine.listeners``): enqueue, nothing else (False when
        the entry was dropped). The entry's time is the wall clock now: the engine calls
        listeners as the event happens."""
        return self.writer.put(Entry(self._clock(), call.key, call.id, event))

    def record(self, call_key: str, call_id: str, event: CallEvent, at: float | None = None) -> bool:
        """Queue one timeline entry directly (tests, or events that have no Call)."""
        return self.writer.put(Entry(self._clock() if at is None else at, call_key, call_id, event))

    def save_ladder(self, call_key: str, call_id: str, messages: list[dict[str, Any]]) -> bool:
        """Queue an ended call's SIP ladder (bounded: records.LADDER_MAX_*), packed on
        its own thread before the writer has it (packer.py)."""
        return self._packer.put(Entry(self._clock(), call_key, call_id, Ladder(tuple(messages))))

    def open_desk_session(self, token_hash: str, agent: str, expires_at: float) -> bool:
        """Queue a desk sign-in session's row (await ``durable`` before handing the cookie
        out, so a restart right after the sign-in still knows it)."""
        return self.writer.put(Entry(self._clock(), "", "", DeskSessionOpened(token_hash, agent, expires_at)))

    def revoke_desk_session(self, token_hash: str) -> bool:
        """Queue a sign-out: the session is refused from then on."""
        return self.writer.put(Entry(self._clock(), "", "", DeskSessionRevoked(token_hash)))

    async def durable(self) -> None:
        """Return once everything recorded so far is committed: await it before acting
        when the record must exist first (ladders still being packed excepted: packer.py)."""
        await self.writer.durable()

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Block until everything recorded so far is committed (tests, shutdown)."""
        return self._packer.drain(timeout) and self.writer.flush(timeout)

    def close(self, timeout: float = 10.0) -> bool:
        """Write what is queued, close anything still open as ``shutdown``, mark the run
        stopped. Blocking (``await asyncio.to_thread(store.close)`` from the loop).
        False when the writer did not finish in ``timeout`` (the next start recovers)."""
        if self.closed:
            return True
        self.closed = True
        self._packer.close(timeout)  # its last ladders go to the writer, which writes them
        finished = self.writer.close(timeout)
        if finished:
            try:
                mark_stopped(self.writer.conn, self.run_id, self._clock(), self.writer.dropped)
            except Exception as error:  # the backend's error (sqlite3, psycopg): logged, not raised
                log.error("store.close_failed", error=repr(error))
                finished = False
        else:
            log.error("store.flush_timeout", queued=self.writer.statistics().queued)
        self._release(finished)
        stats = asdict(self.writer.statistics())
        if finished and not stats["dropped"] and not stats["failed"]:
            log.debug("store.closed", run_id=self.run_id, **stats)
        else:
            log.warning("store.closed", run_id=self.run_id, clean=finished, **stats)
        return finished

    @abstractmethod
    def _release(self, finished: bool) -> None:
        """Close the connections; with ``finished`` (the writer stopped) also the
        writer's and the run's lock (else the thread may still use them)."""

    def statistics(self) -> dict[str, Any]:
        return {"backend": self.backend, "run_id": self.run_id, "worker": self.worker,
                "schema_version": self.schema_version, **self._where_stored(),
                **asdict(self.writer.statistics())}

    @abstractmethod
    def _where_stored(self) -> dict[str, Any]:
        """What statistics() says of where the records are (a path, a server)."""

    @abstractmethod
    def _read(self, sql: str, args: Any = ()) -> list[Any]:
        """Rows (mapping by column name) of one bounded query."""

    # ------------------------------------------------------------------ queries
    def calls(self, since: TimeArg = None, until: TimeArg = None, limit: int = 100,
              state: str | None = None, outcome: str | None = None) -> list[dict[str, Any]]:
        """Calls created in [since, until), newest first; ``state`` is setup, connected
        or ended; ``outcome`` completed, failed, cancelled, restart..."""
        where, args = _window("created_at", since, until)
        if state is not None:
            where.append("state = ?")
            args.append(state)
        if outcome is not None:
            where.append("outcome = ?")
            args.append(outcome)
        rows = self._read(f"SELECT * FROM calls {_where(where)} ORDER BY "
                          f"{self.dialect.newest_call_order} LIMIT ?", (*args, _limit(limit)))
        return [_call_row(row) for row in rows]

    def call(self, call_id: str) -> dict[str, Any] | None:
        """One call by its key (``Call-ID;tag``) or the caller's Call-ID (the latest
        such call), with its transfers and its timeline."""
        rows = self._read("SELECT * FROM calls WHERE key = ?", (call_id,)) or self._read(
            "SELECT * FROM calls WHERE call_id = ? ORDER BY created_at DESC LIMIT 1", (call_id,))
        if not rows:
            return None
        record = _call_row(rows[0])
        key = record["key"]
        record["transfers"] = [_transfer_row(r) for r in self._read(
            "SELECT * FROM transfers WHERE call_key = ? ORDER BY id", (key,))]
        record["events"] = [
            {"at": r["at"], "event": r["event"], "detail": json.loads(r["detail"])}
            for r in self._read("SELECT at, event, detail FROM events WHERE call_key = ? ORDER BY id LIMIT ?",
                                (key, MAX_EVENTS))]
        ladder = self._read("SELECT messages FROM ladders WHERE call_key = ?", (key,))
        record["ladder"] = unpack_ladder(ladder[0]["messages"]) if ladder else []
        return record

    def transfers(self, since: TimeArg = None, until: TimeArg = None, limit: int = 100,
                  state: str | None = None, method: str | None = None,
                  call_id: str | None = None) -> list[dict[str, Any]]:
        """Transfer attempts started in [since, until), newest first; ``state`` is
        pending, succeeded or failed; ``call_id`` a call key or a caller's Call-ID."""
        where, args = _window("t.started_at", since, until)
        for column, value in (("t.state", state), ("t.method", method)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if call_id is not None:
            where.append("(t.call_key = ? OR c.call_id = ?)")
            args += [call_id, call_id]
        rows = self._read(
            "SELECT t.*, c.call_id AS call_id FROM transfers t LEFT JOIN calls c ON c.key = t.call_key"
            f" {_where(where)} ORDER BY t.started_at DESC, t.id DESC LIMIT ?", (*args, _limit(limit)))
        return [_transfer_row(row) for row in rows]

    def desk_session(self, token_hash: str) -> dict[str, Any] | None:
        """A desk session's row (agent, created_at, expires_at, revoked_at) by the hash of
        its token, or None (desk/sessions.py decides whether it still holds)."""
        rows = self._read("SELECT agent, created_at, expires_at, revoked_at FROM desk_sessions"
                          " WHERE token_hash = ?", (token_hash,))
        return dict(rows[0]) if rows else None

    def totals(self, since: TimeArg = None, until: TimeArg = None) -> dict[str, Any]:
        """Counts of calls and transfer attempts by outcome, SIP status and method."""
        where, args = _window("created_at", since, until)
        calls = self._read(f"SELECT state, outcome, status, count(*) AS n FROM calls {_where(where)}"
                           " GROUP BY state, outcome, status", args)
        where, args = _window("started_at", since, until)
        transfers = self._read(f"SELECT method, state, status, count(*) AS n FROM transfers {_where(where)}"
                               " GROUP BY method, state, status", args)
        call_totals: dict[str, Any] = {"total": 0, "active": 0, "by_outcome": {}, "by_status": {}}
        for row in calls:
            n = row["n"]
            call_totals["total"] += n
            if row["state"] != "ended":
                call_totals["active"] += n
            outcome = row["outcome"] or "active"
            call_totals["by_outcome"][outcome] = call_totals["by_outcome"].get(outcome, 0) + n
            if row["status"] is not None:
                status = str(row["status"])
                call_totals["by_status"][status] = call_totals["by_status"].get(status, 0) + n
        transfer_totals: dict[str, Any] = {"total": 0, "pending": 0, "by_state": {}, "by_status": {},
                                           "by_method": {}}
        for row in transfers:
            n = row["n"]
            transfer_totals["total"] += n
            if row["state"] == "pending":
                transfer_totals["pending"] += n
            _bump(transfer_totals["by_state"], row["state"], n)
            if row["status"] is not None:
                _bump(transfer_totals["by_status"], row["status"], n)
            _bump(transfer_totals["by_method"].setdefault(row["method"], {}), row["state"], n)
        return {"calls": call_totals, "transfers": transfer_totals}

    def report(self, since: TimeArg = None, until: TimeArg = None) -> dict[str, Any]:
        """Containment and transfer outcomes per flow and channel of the calls created in
        [since, until) (store/report.py)."""
        where, args = _window("c.created_at", since, until)
        return _report.build(self._read, where, args)


# ---------------------------------------------------------------------- helpers
def register_run(conn: Any, now: float, worker: str | None, take_lock: Callable[[int], Any]) -> tuple[int, Any]:
    """A runs row and its lock (``take_lock(run id)``), taken before the row is
    committed: another process recovering at the same moment never sees this run
    without its lock."""
    import os
    import socket

    conn.execute(dialect_of(conn).begin)
    try:
        run_id = int(conn.execute("INSERT INTO runs (pid, host, started_at, worker) VALUES (?, ?, ?, ?)"
                                  " RETURNING id", (os.getpid(), socket.gethostname(), now, worker)).fetchone()[0])
        lock = take_lock(run_id)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return run_id, lock


def mark_stopped(conn: Any, run_id: int, now: float, dropped: int) -> None:
    """A clean stop: what is still open (calls the daemon did not end, transfers with no
    outcome) is closed as ``shutdown`` now, in one transaction with the run's stop."""
    conn.execute(dialect_of(conn).begin)
    try:
        conn.execute(
            "UPDATE transfers SET state = 'failed', status = 'shutdown', reason = 'voicegw stopped',"
            " ended_at = ? WHERE state = 'pending' AND call_key IN (SELECT key FROM calls WHERE run_id = ?)",
            (now, run_id))
        conn.execute(
            "UPDATE calls SET state = 'ended', outcome = 'shutdown', end_cause = 'shutdown',"
            " end_reason = 'voicegw stopped', ended_at = ? WHERE run_id = ? AND state != 'ended'",
            (now, run_id))
        conn.execute("UPDATE runs SET stopped_at = ?, dropped = ? WHERE id = ?", (now, dropped, run_id))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _seconds(value: TimeArg) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.timestamp()
    return float(value)


def _window(column: str, since: TimeArg, until: TimeArg) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    low, high = _seconds(since), _seconds(until)
    if low is not None:
        where.append(f"{column} >= ?")
        args.append(low)
    if high is not None:
        where.append(f"{column} < ?")
        args.append(high)
    return where, args


def _where(clauses: list[str]) -> str:
    return ("WHERE " + " AND ".join(clauses)) if clauses else ""


def _limit(limit: int) -> int:
    return max(1, min(int(limit), MAX_LIMIT))


def _bump(counter: dict[str, int], key: Any, n: int) -> None:
    counter[str(key)] = counter.get(str(key), 0) + n


def _call_row(row: Any) -> dict[str, Any]:
    record = dict(row)
    record["legs"] = json.loads(record["legs"] or "{}")
    record["duration"] = (record["ended_at"] - record["answered_at"]
                          if record["ended_at"] is not None and record["answered_at"] is not None else None)
    return record


def _transfer_row(row: Any) -> dict[str, Any]:
    record = dict(row)
    record["progress"] = json.loads(record["progress"] or "[]")
    record["fallback"] = json.loads(record["fallback"] or "[]")
    return record
