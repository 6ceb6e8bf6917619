"""The SQLite records store (the embedded default): open (migrate, register the run,
recover); recording and queries are base.RecordStore's.

Durability. The database is in WAL mode with ``synchronous=NORMAL`` by default
(``store.synchronous``): a commit writes the WAL without waiting for the disk, so a
committed record survives a crash of the process (``kill -9``: the WAL is in the OS's
cache) and the database stays consistent after anything; a power cut or a kernel
crash may lose the last commits (those since the last checkpoint's fsync, about
``CHECKPOINT_EVERY`` seconds). ``full`` fsyncs the WAL in every commit and loses
nothing committed even then, at the price of one fsync per batch on the writer
thread: on this project's VM such a commit took 0.8-2.2 s while the disk was busy,
and at 100 calls/s the queue went past its backlog mark (docs/performance.md). SQLite
documents NORMAL as safe in WAL mode ("WAL mode is always consistent with
synchronous=NORMAL", the ``synchronous`` pragma). Either way, checkpoints run on their
own thread (checkpoint.py), never inside a commit. What a crash can lose beyond that
is what was still queued: entries of the last milliseconds before the kill (the
writer wakes at once; see writer.py). A caller that must have a record committed
before it acts awaits :meth:`Store.durable`.

Reads. Queries run on their own connection (``query_only``): in WAL mode a reader
sees the last committed state and neither blocks the writer nor waits for it. Every
query is bounded (``limit`` at most 1000, one call's timeline at most
``MAX_EVENTS``) and served by an index, so it is short (well under a millisecond to
a few ms on a large file) and may be called from the event loop; a busy database
(a checkpoint, another process) makes a read wait at most ``READ_BUSY_MS``.
Times in and out are wall-clock UTC Unix seconds; ``since``/``until`` also take a
``datetime`` or an ISO-8601 string.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import structlog

from .base import RecordStore, register_run
from .checkpoint import Checkpointer
from .dialect import SQLITE
from .records import apply_batch
from .recovery import Recovery, RunLock, lock_directory, recover, run_is_dead
from .schema import migrate
from .writer import Writer

log = structlog.get_logger("voicegw.store")

DB_NAME = "voicegw.db"
DEFAULT_PATH = "var/" + DB_NAME
ENV_PATH = "VOICEGW_DB"
READ_BUSY_MS = 200
WRITE_BUSY_MS = 5000
SYNCHRONOUS = ("NORMAL", "FULL", "EXTRA")
CHECKPOINT_EVERY = 1.0
"""Seconds between the checkpoints while commits come (checkpoint.py)."""


def store_path(config: Any = None) -> Path:
    """Where the records live: ``$VOICEGW_DB``; else the config's ``store.path``; else
    ``voicegw.db`` in its records directory (``records_dir``: the YAML's
    ``paths.records_dir``); else ``var/voicegw.db`` (relative to the working directory)."""
    env = os.environ.get(ENV_PATH)
    if env:
        return Path(env)
    path = getattr(getattr(config, "store", None), "path", None)
    if path:
        return Path(path)
    directory = getattr(config, "records_dir", None)
    if directory:
        return Path(directory) / DB_NAME
    return Path(DEFAULT_PATH)

class Store(RecordStore):
    """The SQLite records store (the embedded default). Build with :meth:`open`."""

    backend = "sqlite"
    dialect = SQLITE

    def __init__(self, path: Path, writer: Writer, reader: sqlite3.Connection, lock: RunLock,
                 recovery: Recovery, schema_version: int, clock: Callable[[], float],
                 worker: str | None = None, checkpointer: Checkpointer | None = None) -> None:
        super().__init__(writer, recovery, schema_version, clock, worker)
        self.path = path
        self.checkpointer = checkpointer
        self._reader = reader
        self._read_lock = threading.Lock()
        self._lock = lock

    @classmethod
    def open(cls, path: str | os.PathLike[str] = DEFAULT_PATH, *, synchronous: str = "NORMAL",
             max_queue: int = 10_000, batch_max: int = 500,
             clock: Callable[[], float] = time.time, worker: str | None = None) -> Store:
        """Create or open the database, migrate it, register this run, close what dead
        runs left open, start the writer. Blocking: call it before serving. ``worker``:
        the worker id its runs and calls carry (store.worker_id); ``synchronous``:
        NORMAL or FULL (module docstring: Durability)."""
        if synchronous.upper() not in SYNCHRONOUS:
            raise ValueError("synchronous must be NORMAL, FULL or EXTRA")
        db = Path(path)
        db.parent.mkdir(parents=True, exist_ok=True)
        conn = _connect(db, WRITE_BUSY_MS)
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"{db}: WAL mode refused (journal_mode={mode})")
            conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
            conn.execute("PRAGMA wal_autocheckpoint = 0")  # the Checkpointer's thread does it
            version = migrate(conn)
            locks = lock_directory(db)
            run_id, lock = register_run(conn, clock(), worker, partial(RunLock, locks))
            try:
                recovery = recover(conn, run_id, partial(run_is_dead, locks))
                reader = _connect(db, READ_BUSY_MS)
            except BaseException:
                lock.release()
                raise
        except BaseException:
            conn.close()
            raise
        reader.row_factory = sqlite3.Row
        reader.execute("PRAGMA query_only = ON")
        checkpointer = Checkpointer(partial(_connect, db, WRITE_BUSY_MS, synchronous), CHECKPOINT_EVERY)
        writer = Writer(conn, run_id, max_queue=max_queue, batch_max=batch_max,
                        apply_many=partial(apply_batch, worker=worker), on_commit=checkpointer.committed)
        checkpointer.start()
        writer.start()
        store = cls(db, writer, reader, lock, recovery, version, clock, worker, checkpointer)
        # quiet unless a crash left records to close: then the operator wants to know
        if recovery.calls or recovery.transfers:
            log.warning("store.recovered", path=str(db), run_id=run_id, runs=list(recovery.runs),
                        calls=recovery.calls, transfers=recovery.transfers)
        log.debug("store.opened", path=str(db), run_id=run_id, schema_version=version,
                  synchronous=synchronous.upper())
        return store

    def _release(self, finished: bool) -> None:
        if self.checkpointer is not None:
            self.checkpointer.close()
        if finished:
            self.writer.conn.close()
            self._lock.release()
        with self._read_lock:
            self._reader.close()

    def _where_stored(self) -> dict[str, Any]:
        return {"path": str(self.path)}

    def statistics(self) -> dict[str, Any]:
        stats = super().statistics()
        if self.checkpointer is not None:
            stats["checkpoint"] = asdict(self.checkpointer.statistics())
        return stats

    def _read(self, sql: str, args: Any = ()) -> list[sqlite3.Row]:
        with self._read_lock:
            if self.closed:
                raise RuntimeError("the records store is closed")
            return self._reader.execute(sql, tuple(args)).fetchall()


# ---------------------------------------------------------------------- helpers
def _connect(path: Path, busy_ms: int, synchronous: str | None = None) -> sqlite3.Connection:
    # autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_ms)}")
    if synchronous is not None:  # a checkpoint fsyncs per the connection's setting
        conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
    return conn


