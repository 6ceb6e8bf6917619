"""Durable call and transfer records (DESIGN.md layer 7): SQLite in WAL mode (the
embedded default) or PostgreSQL (workers sharing one database), written off the event
loop, recovered after a crash. See base.py for the interface both implement,
sqlite.py and postgres.py for their durability choices, writer.py for the queue,
recovery.py for the crash rules, schema.py for the tables, dialect.py for what differs."""

from .backend import ENV_WORKER, open_store
from .base import RecordStore
from .postgres import PgStore, StoreError, StoreUnavailable
from .records import Entry
from .recovery import Recovery
from .schema import LATEST as SCHEMA_VERSION
from .sqlite import DEFAULT_PATH, ENV_PATH, Store, store_path

__all__ = ["DEFAULT_PATH", "ENV_PATH", "ENV_WORKER", "SCHEMA_VERSION", "Entry", "PgStore", "RecordStore",
           "Recovery", "Store", "StoreError", "StoreUnavailable", "open_store", "store_path"]
