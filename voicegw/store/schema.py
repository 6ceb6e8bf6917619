"""The records' schema as numbered migrations, applied at open (SQLite and PostgreSQL).

``schema_version`` holds one row per migration applied (number, wall time). A migration
is a list of statements run in one transaction with its version row, so a database is
always at exactly one version; a database newer than this code is refused (an older
voicegw must not write records it does not understand).

Times are wall-clock UTC as Unix seconds (a double). ``calls.key`` is the engine's call key
(``Call-ID;our-tag``): unique even when a caller reuses a Call-ID. Transfer ids
(``t1``, ``t2``...) restart with the process, so a transfer is named by
``(call_key, transfer_id)``; the row id is only for ordering.

One text for both databases (dialect.py): ``@ID``, ``@REAL`` and ``@BLOB`` become each
one's integer key, double and bytes types (PostgreSQL's ``real`` is 4 bytes: never
for times). On PostgreSQL the migrations run under a transaction-scoped advisory lock,
so workers starting together migrate once.
"""

from __future__ import annotations

import time
from typing import Any

from .dialect import POSTGRES, SQLITE, Dialect, dialect_of

SOURCE: list[list[str]] = [
    # 1: runs, calls, transfers, events
    [
        """CREATE TABLE runs (
            id @ID,
            pid INTEGER NOT NULL,
            host TEXT NOT NULL,
            started_at @REAL NOT NULL,
            stopped_at @REAL,            -- set by a clean close; NULL after a crash
            recovered_by INTEGER,       -- the run that closed this run's records
            dropped INTEGER NOT NULL DEFAULT 0  -- events lost to a full queue (clean close)
        )""",
        """CREATE TABLE calls (
            key TEXT PRIMARY KEY,       -- Call-ID;our-tag (engine Call.key)
            call_id TEXT NOT NULL,      -- the caller's Call-ID (what the API shows)
            run_id INTEGER NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('setup', 'connected', 'ended')),
            outcome TEXT,               -- NULL while up; completed|failed|cancelled|hung up|restart
            status INTEGER,             -- final SIP status given to the caller, when known
            source TEXT,
            uri TEXT,
            caller TEXT,
            created_at @REAL NOT NULL,
            answered_at @REAL,
            ended_at @REAL,
            end_cause TEXT,
            end_reason TEXT,
            legs TEXT NOT NULL DEFAULT '{}',   -- JSON: role -> {uri, dialing_at, answered_at, status...}
            last_event_at @REAL NOT NULL,
            event_count INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX calls_created ON calls (created_at)",
        "CREATE INDEX calls_call_id ON calls (call_id)",
        "CREATE INDEX calls_open ON calls (run_id) WHERE state != 'ended'",
        """CREATE TABLE transfers (
            id @ID,
            call_key TEXT NOT NULL,
            transfer_id TEXT NOT NULL,
            method TEXT NOT NULL,
            target TEXT NOT NULL,
            uri TEXT,
            trigger TEXT,
            state TEXT NOT NULL CHECK (state IN ('pending', 'succeeded', 'failed')),
            status TEXT,                -- '486', '200', 'timeout', 'policy', 'restart'...
            sip_status INTEGER,         -- status when it is a SIP code
            reason TEXT,
            progress TEXT NOT NULL DEFAULT '[]',  -- JSON list of provisional codes
            fallback TEXT NOT NULL DEFAULT '[]',  -- JSON list of fallback actions taken
            started_at @REAL NOT NULL,
            ended_at @REAL,
            UNIQUE (call_key, transfer_id)
        )""",
        "CREATE INDEX transfers_started ON transfers (started_at)",
        "CREATE INDEX transfers_pending ON transfers (call_key) WHERE state = 'pending'",
        """CREATE TABLE events (
            id @ID,
            call_key TEXT NOT NULL,
            at @REAL NOT NULL,
            event TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '{}'
        )""",
        "CREATE INDEX events_call ON events (call_key, id)",
    ],
    # 2: each call's SIP ladder, so `voicegw call show` works after a restart
    [
        """CREATE TABLE ladders (
            call_key TEXT PRIMARY KEY,
            call_id TEXT NOT NULL,
            saved_at @REAL NOT NULL,
            messages @BLOB NOT NULL      -- zlib(JSON list), bounded (records.LADDER_MAX_*)
        )""",
    ],
    # 3: containment (engine/disposition.py): how each call ended, its flow and channel
    [
        # contained|transferred|transfer_failed_contained|abandoned|failed; NULL while up
        # or when a crash cut the call (recovery closes it as 'restart', undisposed)
        "ALTER TABLE calls ADD COLUMN disposition TEXT",
        "ALTER TABLE calls ADD COLUMN transfer_method TEXT",  # for 'transferred': the method
        "ALTER TABLE calls ADD COLUMN flow TEXT",  # the flow the call ran; NULL: straight to a bot
        "ALTER TABLE calls ADD COLUMN channel TEXT",  # NULL until routing by channel exists
    ],
    # 4: workers sharing one database (PostgreSQL): which worker each run and call is
    [
        "ALTER TABLE runs ADD COLUMN worker TEXT",  # store.worker_id; NULL: not named
        "ALTER TABLE calls ADD COLUMN worker TEXT",  # the worker that owns the call (its run's)
    ],
    # 5: agent desk sign-in sessions (desk/sessions.py), so a restart keeps agents signed in
    [
        """CREATE TABLE desk_sessions (
            token_hash TEXT PRIMARY KEY,  -- SHA-256 of the cookie's token (hex); never the token
            agent TEXT NOT NULL,
            created_at @REAL NOT NULL,
            expires_at @REAL NOT NULL,
            revoked_at @REAL              -- set by sign-out; the row goes once expired
        )""",
        "CREATE INDEX desk_sessions_expires ON desk_sessions (expires_at)",
    ],
    # 6: the writer's transactions, numbered: a batch whose COMMIT was cut (PostgreSQL:
    # the connection dropped before the answer came) is not applied twice (writer.py)
    [
        "ALTER TABLE runs ADD COLUMN committed INTEGER NOT NULL DEFAULT 0",
    ],
]


def render(dialect: Dialect, source: list[list[str]] = SOURCE) -> list[list[str]]:
    """The migrations in ``dialect``'s types."""
    def one(statement: str) -> str:
        for token, text in dialect.types.items():
            statement = statement.replace(token, text)
        return statement
    return [[one(s) for s in migration] for migration in source]


MIGRATIONS = render(SQLITE)
"""SQLite's migrations (the embedded default)."""
LATEST = len(SOURCE)
_MIGRATE_LOCK = (0x76677700, 0)  # pg_advisory_xact_lock key: voicegw's, "migrating"


class SchemaError(RuntimeError):
    """The database cannot be used by this version of voicegw."""


def current_version(conn: Any) -> int:
    if dialect_of(conn) is POSTGRES:
        exists = conn.execute("SELECT to_regclass('schema_version')").fetchone()[0]
    else:
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").fetchone()
    if not exists:
        return 0
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def migrate(conn: Any, migrations: list[list[str]] | None = None) -> int:
    """Bring the database to the newest version; the version it is at.

    ``conn`` must be in autocommit mode (``isolation_level=None``): each migration is
    its own ``BEGIN IMMEDIATE`` ... ``COMMIT``, so a crash mid-migration leaves the
    previous version intact, and two processes opening one file do not both migrate.
    ``migrations``: the dialect's own by default.
    """
    dialect = dialect_of(conn)
    if migrations is None:
        migrations = MIGRATIONS if dialect is SQLITE else render(dialect)
    table = ("CREATE TABLE IF NOT EXISTS schema_version ("
             f"version INTEGER PRIMARY KEY, applied_at {dialect.types['@REAL']} NOT NULL)")
    if dialect is SQLITE:
        conn.execute(table)
    while True:
        conn.execute(dialect.begin)
        try:
            if dialect is POSTGRES:  # DDL is transactional: serialise the migrators instead
                conn.execute("SELECT pg_advisory_xact_lock(?, ?)", _MIGRATE_LOCK)
                conn.execute(table)
            version = current_version(conn)
            if version > len(migrations):
                raise SchemaError(
                    f"the records database is at schema version {version}, newer than this "
                    f"voicegw understands ({len(migrations)}): upgrade voicegw")
            if version == len(migrations):
                conn.execute("COMMIT")
                return version
            for statement in migrations[version]:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                         (version + 1, time.time()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
