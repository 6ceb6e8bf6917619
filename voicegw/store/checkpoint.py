"""WAL checkpoints off the commit path (SQLite).

By default SQLite checkpoints inside the COMMIT that takes the WAL past
``wal_autocheckpoint`` pages (1,000): that commit copies the WAL into the database and
fsyncs both, on the writer thread, while the event loop goes on queueing entries. On
this project's VM such a commit took up to seconds when the disk was busy, and the
queue passed its backlog mark (store_backlog). So the writer's connection has
``wal_autocheckpoint = 0`` and this thread checkpoints instead, on its own connection:
``PRAGMA wal_checkpoint(PASSIVE)`` never waits for the writer or a reader (SQLite
docs, "wal_checkpoint"), so a commit never waits for a checkpoint and a checkpoint's
fsync costs the writer nothing.

When: the writer calls :meth:`Checkpointer.committed` after each commit (an Event
set: no I/O, no lock); the thread then waits ``every`` seconds, so that one
checkpoint covers the commits of that while, and checkpoints. Idle, it sleeps. A
passive checkpoint copies what no reader still needs; the WAL file is reused from its
start by the next write after a complete one, so it stays about ``every`` seconds of
commits long. At close the writer's connection, the last to close, checkpoints what
is left and removes the WAL (SQLite does that on the last close in WAL mode).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

log = structlog.get_logger("voicegw.store")


@dataclass
class CheckpointStatistics:
    checkpoints: int
    last_checkpoint_ms: float
    max_checkpoint_ms: float
    wal_frames: int
    """WAL frames at the last checkpoint (its length, in pages)."""
    failed: int


class Checkpointer:
    def __init__(self, connect: Callable[[], sqlite3.Connection], every: float = 1.0) -> None:
        """``connect`` opens the thread's own connection (in the thread: sqlite3
        connections are used where they are made)."""
        self._connect = connect
        self.every = every
        self._wanted = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="voicegw-store-checkpoint", daemon=True)
        self.checkpoints = 0
        self.last_checkpoint_ms = 0.0
        self.max_checkpoint_ms = 0.0
        self.wal_frames = 0
        self.failed = 0

    def start(self) -> None:
        self._thread.start()

    def committed(self) -> None:
        """The writer committed: a checkpoint is due within ``every`` seconds."""
        self._wanted.set()

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wanted.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def statistics(self) -> CheckpointStatistics:
        return CheckpointStatistics(self.checkpoints, round(self.last_checkpoint_ms, 3),
                                    round(self.max_checkpoint_ms, 3), self.wal_frames, self.failed)

    def _run(self) -> None:
        conn = self._connect()
        try:
            while True:
                self._wanted.wait()
                if self._stop.wait(self.every):
                    return  # the writer's close checkpoints the rest
                self._wanted.clear()
                self._checkpoint(conn)
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        started = time.perf_counter()
        try:
            # (busy, frames in the WAL, frames checkpointed); busy: another checkpoint ran
            _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as error:
            self.failed += 1
            log.warning("store.checkpoint_failed", error=repr(error), failed=self.failed)
            return
        self.checkpoints += 1
        self.wal_frames = int(frames)
        self.last_checkpoint_ms = (time.perf_counter() - started) * 1000
        if self.last_checkpoint_ms > self.max_checkpoint_ms:  # noqa: PLR1730
            self.max_checkpoint_ms = self.last_checkpoint_ms
