"""Durable call and transfer records (DESIGN.md layer 7): SQLite in WAL mode, written
off the event loop, recovered after a crash. See sqlite.py for the durability choices,
writer.py for the queue, recovery.py for the crash rules, schema.py for the tables."""

from .records import Entry
from .recovery import Recovery
from .schema import LATEST as SCHEMA_VERSION
from .sqlite import DEFAULT_PATH, ENV_PATH, Store, store_path

__all__ = ["DEFAULT_PATH", "ENV_PATH", "SCHEMA_VERSION", "Entry", "Recovery", "Store", "store_path"]
