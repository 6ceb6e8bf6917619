"""Closing what a dead daemon left open, at the next start.

Each daemon run has a row in ``runs`` and holds a lock of its own for as long as it
lives, which the system drops when the process dies, ``kill -9`` included, so "can I
take run N's lock?" tells a dead run from a live one, even with several daemons (the
workers) sharing one database; a pid check would not (pids are reused, hosts differ):

- SQLite: an exclusive ``flock`` on ``<db>-runs/<run id>.lock`` (the kernel drops it);
- PostgreSQL: a session advisory lock ``(RUN_LOCK, run id)`` held by the run's writer
  connection (the server drops it with the connection: a dead worker's socket closes).
  The recovering run tests it with ``pg_try_advisory_xact_lock`` inside its recovery
  transaction, so a dead run stays "taken" until its records are closed.

On SQLite whoever starts next (the dead worker restarted, or any other worker) recovers
every dead run: a flock is dropped only with its process. On PostgreSQL a worker recovers
only the runs of its own worker id (``runs.worker``; a daemon with none, those with none):
an advisory lock is also dropped when a live worker's connection is cut (a database
outage, a network partition), and a worker starting meanwhile must not close that live
worker's calls. A worker id is the supervisor's slot (``voicegw run --workers``) or the
operator's name for a process, so the run it recovers is the one it restarts.
``calls.worker`` says which worker a call belonged to.

Rules, applied in one transaction (all or nothing), to runs that are dead:

- a call not ended is closed: ``state='ended'``, ``outcome``/``end_cause``/``end_reason``
  ``'restart'``, ``ended_at`` = its last recorded event. The crash moment is unknown;
  the last event is the latest time known to be true, while "now" may be hours later
  (the daemon was down) and would inflate the call's billed duration;
- a transfer attempt still pending becomes ``failed`` with status ``'restart'``, ended
  at its call's last event;
- both get a synthetic timeline entry (``call.ended`` / ``transfer.failed`` with
  ``"recovered": true``) so the timeline says what happened;
- the run is marked ``recovered_by`` the current run.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .dialect import dialect_of
from .records import dumps

RESTART = "restart"
RUN_LOCK = 0x76677701
"""The first key of a run's PostgreSQL advisory lock (the second is the run id)."""


@dataclass(frozen=True)
class Recovery:
    runs: tuple[int, ...] = ()
    calls: int = 0
    transfers: int = 0


class RunLock:
    """This run's lock file, held until :meth:`release`."""

    def __init__(self, directory: Path, run_id: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{run_id}.lock"
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def release(self) -> None:
        if self._fd < 0:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = -1


def lock_directory(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + "-runs")


def run_is_dead(directory: Path, run_id: int) -> bool:
    path = directory / f"{run_id}.lock"
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return True  # released by a clean stop, or the run died before taking it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        path.unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)  # also drops a lock we just took


def pg_run_is_dead(conn: Any) -> Callable[[int], bool]:
    """A run's lock is free (inside the recovery transaction: held until it commits)."""
    def dead(run_id: int) -> bool:
        return bool(conn.execute("SELECT pg_try_advisory_xact_lock(?, ?)", (RUN_LOCK, run_id)).fetchone()[0])
    return dead


def recover(conn: Any, run_id: int, is_dead: Callable[[int], bool], *, own_worker: bool = False,
            worker: str | None = None) -> Recovery:
    """Close the records of dead runs (``conn`` in autocommit mode); ``own_worker``: only
    those of ``worker`` (PostgreSQL, see the module docstring)."""
    dialect = dialect_of(conn)
    conn.execute(dialect.begin)
    try:
        scope = " AND coalesce(worker, '') = ?" if own_worker else ""
        candidates = [row[0] for row in conn.execute(
            "SELECT id FROM runs WHERE id != ? AND recovered_by IS NULL AND (stopped_at IS NULL"
            " OR EXISTS (SELECT 1 FROM calls WHERE calls.run_id = runs.id AND state != 'ended'))"
            f"{scope} ORDER BY id", (run_id, *((worker or "",) if own_worker else ())))]
        dead = [run for run in candidates if is_dead(run)]
        if not dead:
            conn.execute("COMMIT")
            return Recovery()
        marks = ",".join("?" * len(dead))
        pending = conn.execute(
            f"SELECT t.id, t.call_key, t.transfer_id, {dialect.greatest}(c.last_event_at, t.started_at)"
            f" FROM transfers t JOIN calls c ON c.key = t.call_key"
            f" WHERE t.state = 'pending' AND c.run_id IN ({marks})", dead).fetchall()
        for row_id, call_key, transfer_id, at in pending:
            conn.execute(
                "UPDATE transfers SET state = 'failed', status = ?, sip_status = NULL, reason = ?,"
                " ended_at = ? WHERE id = ?",
                (RESTART, "voicegw restarted before the outcome", at, row_id))
            detail = {"transfer_id": transfer_id, "status": RESTART,
                      "reason": "voicegw restarted before the outcome", "recovered": True}
            conn.execute("INSERT INTO events (call_key, at, event, detail) VALUES (?, ?, 'transfer.failed', ?)",
                         (call_key, at, dumps(detail)))
        open_calls = conn.execute(
            f"SELECT key, last_event_at FROM calls WHERE state != 'ended' AND run_id IN ({marks})",
            dead).fetchall()
        for key, at in open_calls:
            conn.execute(
                "UPDATE calls SET state = 'ended', outcome = ?, end_cause = ?, end_reason = ?,"
                " ended_at = ?, event_count = event_count + 1 WHERE key = ?", (RESTART, RESTART, RESTART, at, key))
            conn.execute("INSERT INTO events (call_key, at, event, detail) VALUES (?, ?, 'call.ended', ?)",
                         (key, at, dumps({"cause": RESTART, "reason": RESTART, "recovered": True})))
        conn.execute(f"UPDATE runs SET recovered_by = ? WHERE id IN ({marks})", (run_id, *dead))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return Recovery(tuple(dead), len(open_calls), len(pending))
