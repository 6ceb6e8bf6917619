"""The PostgreSQL records store: workers (one host or many) sharing one database.

Driver: psycopg 3 (``psycopg[binary]``, with ``psycopg_pool`` for the readers). It has
both a blocking and an asyncio API; the store uses the blocking one, because the
writer is a thread (writer.py: batching, the durable barrier, never on the signalling
loop) and the queries are blocking calls the API makes with ``asyncio.to_thread``, as
with SQLite. asyncpg is asyncio only: it would have put the writer on the engine's
loop or a second loop in the thread, for no gain. psycopg also parses and checks a
DSN without connecting (config validation), and is the maintained successor of
psycopg2.

Durability. Each batch is one transaction committed with ``synchronous_commit`` as the
server has it (``on`` by default: COMMIT returns once the WAL is flushed on the
primary), the promise of SQLite's ``store.synchronous: full``: a record the writer
committed survives a crash of voicegw and of the database server. (``store.synchronous``
is SQLite's; PostgreSQL's is the server's ``synchronous_commit``.)

Runs and workers. The writer's connection holds the run's advisory lock
``(recovery.RUN_LOCK, run id)`` for as long as the run lives; the server drops it when
the worker dies (its socket closes), so the worker that starts in its place (the same
worker id) closes the dead run's open calls as ``restart`` (recovery.py). ``runs.worker``/
``calls.worker`` carry the worker id (``store.worker_id``).

Outage. A lost server never stops calls: the writer keeps the batch, reconnects and
retries (writer.py: Outage) and takes the run's lock again; entries go on queueing
meanwhile, none dropped (past ``max_queue`` new calls are refused: writer.py, Backlog). Reads (API) fail while the server is down
(:class:`StoreUnavailable`, after ``READ_TIMEOUT``). A worker that starts while
another's connection is down sees that run's lock free, but recovers only the runs of
its own worker id: the live worker's calls stay open. A batch whose COMMIT was cut is
not applied twice (writer.py: ``runs.committed``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import structlog

from .base import RecordStore, register_run
from .dialect import POSTGRES, PgConnection, _pg_sql
from .records import apply_batch
from .recovery import RUN_LOCK, Recovery, pg_run_is_dead, recover
from .schema import migrate
from .writer import Writer

log = structlog.get_logger("voicegw.store")

# psycopg's own logger says "error ignored terminating <Pipeline>" when a batch's
# connection was lost: the writer logs that outage itself (store.outage), and stderr is
# the daemon's JSON log, so the driver's line must not reach Python's last-resort handler
logging.getLogger("psycopg").addHandler(logging.NullHandler())

CONNECT_TIMEOUT = 5
"""Seconds to reach the server when the DSN does not say (``connect_timeout``)."""
READ_TIMEOUT = 2.0
"""Seconds a query waits for a pooled connection before it gives up."""
STATEMENT_TIMEOUT_MS = 5000
"""The readers' statement_timeout: every query is bounded; this caps a sick server."""


class StoreError(RuntimeError):
    """The records store cannot be opened (a message for the operator, no traceback)."""


class StoreUnavailable(RuntimeError):
    """A query found the database unreachable."""


def describe(dsn: str) -> str:
    """host:port/dbname as user: the DSN without its password, for messages."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(dsn)
    except Exception:
        return "(unparsable DSN)"
    host = parts.get("host") or parts.get("hostaddr") or "localhost"
    return f"{host}:{parts.get('port') or 5432}/{parts.get('dbname') or parts.get('user') or ''}" + (
        f" as {parts['user']}" if parts.get("user") else "")


def check_dsn(dsn: str) -> str | None:
    """Why ``dsn`` is not a libpq connection string or URI; None when it is."""
    try:
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        return None  # checked again at start, where the missing driver is reported
    try:
        conninfo_to_dict(dsn)
    except Exception as error:
        return str(error).splitlines()[0]
    return None


def connect(dsn: str, worker: str | None = None) -> PgConnection:
    """An autocommit connection (transactions are explicit, as with SQLite)."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    extra: dict[str, Any] = {"autocommit": True}
    given = conninfo_to_dict(dsn)
    if "connect_timeout" not in given:
        extra["connect_timeout"] = CONNECT_TIMEOUT
    if "application_name" not in given:
        extra["application_name"] = f"voicegw {worker}" if worker else "voicegw"
    return PgConnection(psycopg.connect(dsn, **extra))


class PgStore(RecordStore):
    """The PostgreSQL records store. Build with :meth:`open`."""

    backend = "postgres"
    dialect = POSTGRES

    def __init__(self, dsn: str, writer: Writer, pool: Any, recovery: Recovery, schema_version: int,
                 clock: Callable[[], float], worker: str | None) -> None:
        super().__init__(writer, recovery, schema_version, clock, worker)
        self._dsn = dsn
        self._pool = pool

    @classmethod
    def open(cls, dsn: str, *, pool_size: int = 4, max_queue: int = 10_000, batch_max: int = 500,
             clock: Callable[[], float] = time.time, worker: str | None = None) -> PgStore:
        """Connect, migrate, register this run (and take its lock), close what dead runs
        left open, start the writer and the readers' pool. Blocking: call it before
        serving. Raises :class:`StoreError` with a message for the operator."""
        where = describe(dsn)
        try:
            import psycopg
            from psycopg.rows import dict_row
            from psycopg_pool import ConnectionPool
        except ImportError as error:
            raise StoreError(f"the postgres backend needs psycopg ({error.name} is missing):"
                             " pip install 'voicegw[postgres]'") from None
        if (problem := check_dsn(dsn)) is not None:
            raise StoreError(f"store.dsn is not a PostgreSQL connection string: {problem}")
        try:
            conn = connect(dsn, worker)
        except psycopg.Error as error:
            raise StoreError(f"cannot connect to PostgreSQL at {where}: {_first_lines(error)}") from None
        try:
            version = migrate(conn)
            run_id, _ = register_run(conn, clock(), worker, partial(_lock_run, conn))
            recovery = recover(conn, run_id, pg_run_is_dead(conn), own_worker=True, worker=worker)
            pool = ConnectionPool(dsn, min_size=1, max_size=max(1, pool_size), open=True, timeout=READ_TIMEOUT,
                                  kwargs={"autocommit": True, "row_factory": dict_row,
                                          **_timeouts(dsn, worker)},
                                  configure=_read_only, name="voicegw-store-readers")
        except psycopg.Error as error:
            conn.close()
            raise StoreError(f"PostgreSQL at {where}: {_first_lines(error)}") from None
        except BaseException:
            conn.close()
            raise
        writer = Writer(conn, run_id, max_queue=max_queue, batch_max=batch_max,
                        apply_many=partial(apply_batch, worker=worker),
                        reconnect=partial(_reconnect, dsn, run_id, worker))
        writer.start()
        store = cls(dsn, writer, pool, recovery, version, clock, worker)
        if recovery.calls or recovery.transfers:
            log.warning("store.recovered", server=where, run_id=run_id, runs=list(recovery.runs),
                        calls=recovery.calls, transfers=recovery.transfers)
        log.debug("store.opened", server=where, run_id=run_id, worker=worker, schema_version=version)
        return store

    def _release(self, finished: bool) -> None:
        if finished:
            self.writer.conn.close()  # and with it the run's lock
        self._pool.close(timeout=1.0)

    def _where_stored(self) -> dict[str, Any]:
        return {"server": describe(self._dsn)}

    def _read(self, sql: str, args: Any = ()) -> list[Any]:
        import psycopg
        from psycopg_pool import PoolTimeout

        if self.closed:
            raise RuntimeError("the records store is closed")
        try:
            with self._pool.connection() as conn:
                return list(conn.execute(_pg_sql(sql), tuple(args)).fetchall())
        except (PoolTimeout, psycopg.OperationalError) as error:
            raise StoreUnavailable(f"the records database is unreachable: {_first_lines(error)}") from None


def _lock_run(conn: PgConnection, run_id: int) -> None:
    conn.execute("SELECT pg_advisory_lock(?, ?)", (RUN_LOCK, run_id))


def _reconnect(dsn: str, run_id: int, worker: str | None) -> PgConnection:
    """The writer's new connection after an outage, holding the run's lock again."""
    conn = connect(dsn, worker)
    try:
        _lock_run(conn, run_id)  # waits while another worker's recovery holds it
        row = conn.execute("SELECT recovered_by FROM runs WHERE id = ?", (run_id,)).fetchone()
    except BaseException:
        conn.close()
        raise
    if row is not None and row[0] is not None:
        log.warning("store.recovered_while_away", run_id=run_id, recovered_by=row[0])
    return conn


def _timeouts(dsn: str, worker: str | None) -> dict[str, Any]:
    from psycopg.conninfo import conninfo_to_dict

    given = conninfo_to_dict(dsn)
    extra: dict[str, Any] = {}
    if "connect_timeout" not in given:
        extra["connect_timeout"] = CONNECT_TIMEOUT
    if "application_name" not in given:
        extra["application_name"] = f"voicegw {worker} reader" if worker else "voicegw reader"
    return extra


def _read_only(conn: Any) -> None:
    conn.execute("SET default_transaction_read_only = on")
    conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")


def _first_lines(error: BaseException) -> str:
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return text or type(error).__name__
