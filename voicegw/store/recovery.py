"""Closing what a dead daemon left open, at the next start.

Each daemon run has a row in ``runs`` and holds an exclusive ``flock`` on its own lock
file (``<db>-runs/<run id>.lock``) for as long as it lives. The kernel drops the lock
when the process dies, ``kill -9`` included, so "can I take run N's lock?" tells a dead
run from a live one, even with several daemons sharing one database file; a pid check
would not (pids are reused).

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
import sqlite3
from dataclasses import dataclass
from pathlib import Path

RESTART = "restart"


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


def recover(conn: sqlite3.Connection, run_id: int, directory: Path) -> Recovery:
    """Close the records of dead runs (``conn`` in autocommit mode)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        candidates = [row[0] for row in conn.execute(
            "SELECT id FROM runs WHERE id != ? AND recovered_by IS NULL AND (stopped_at IS NULL"
            " OR EXISTS (SELECT 1 FROM calls WHERE calls.run_id = runs.id AND state != 'ended'))"
            " ORDER BY id", (run_id,))]
        dead = [run for run in candidates if run_is_dead(directory, run)]
        if not dead:
            conn.execute("COMMIT")
            return Recovery()
        marks = ",".join("?" * len(dead))
        pending = conn.execute(
            f"SELECT t.id, t.call_key, t.transfer_id, max(c.last_event_at, t.started_at)"
            f" FROM transfers t JOIN calls c ON c.key = t.call_key"
            f" WHERE t.state = 'pending' AND c.run_id IN ({marks})", dead).fetchall()
        for row_id, call_key, transfer_id, at in pending:
            conn.execute(
                "UPDATE transfers SET state = 'failed', status = ?, sip_status = NULL, reason = ?,"
                " ended_at = ? WHERE id = ?",
                (RESTART, "voicegw restarted before the outcome", at, row_id))
            conn.execute(
                "INSERT INTO events (call_key, at, event, detail) VALUES (?, ?, 'transfer.failed', json_object("
                "'transfer_id', ?, 'status', ?, 'reason', 'voicegw restarted before the outcome',"
                " 'recovered', json('true')))", (call_key, at, transfer_id, RESTART))
        open_calls = conn.execute(
            f"SELECT key, last_event_at FROM calls WHERE state != 'ended' AND run_id IN ({marks})",
            dead).fetchall()
        for key, at in open_calls:
            conn.execute(
                "UPDATE calls SET state = 'ended', outcome = ?, end_cause = ?, end_reason = ?,"
                " ended_at = ?, event_count = event_count + 1 WHERE key = ?", (RESTART, RESTART, RESTART, at, key))
            conn.execute(
                "INSERT INTO events (call_key, at, event, detail) VALUES (?, ?, 'call.ended', json_object("
                "'cause', ?, 'reason', ?, 'recovered', json('true')))", (key, at, RESTART, RESTART))
        conn.execute(f"UPDATE runs SET recovered_by = ? WHERE id IN ({marks})", (run_id, *dead))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return Recovery(tuple(dead), len(open_calls), len(pending))
