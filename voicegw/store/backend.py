"""Which records store the daemon opens: ``store.backend`` (config/defaults.StoreConfig).

``sqlite`` (the default): the file at store_path(), ``store.synchronous`` (normal or
full: store/sqlite.py, Durability). ``postgres``: the server at
``store.dsn`` or the first line of ``store.dsn_file`` (a secret kept out of the YAML).
The worker id is ``$VOICEGW_WORKER_ID``, else ``store.worker_id`` (a process manager
starting N workers from one file names each by the environment).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .base import RecordStore
from .postgres import PgStore, StoreError
from .sqlite import Store, store_path

ENV_WORKER = "VOICEGW_WORKER_ID"


def worker_id(config: Any = None) -> str | None:
    return os.environ.get(ENV_WORKER) or getattr(getattr(config, "store", None), "worker_id", None)


def read_dsn(section: Any) -> str:
    if section.dsn:
        return str(section.dsn)
    path = Path(section.dsn_file)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise StoreError(f"store.dsn_file {path}: {getattr(error, 'strerror', None) or error}") from None
    if not lines or not lines[0].strip():
        raise StoreError(f"store.dsn_file {path}: empty")
    return lines[0].strip()


def open_store(config: Any = None, **options: Any) -> RecordStore:
    """Open the configured store (blocking: migrations and crash recovery run here).
    Raises StoreError, sqlite3.Error, OSError or schema.SchemaError."""
    section = getattr(config, "store", None)
    worker = worker_id(config)
    if section is not None and section.backend == "postgres":
        return PgStore.open(read_dsn(section), pool_size=section.pool_size, worker=worker, **options)
    if section is not None and section.synchronous:
        options.setdefault("synchronous", section.synchronous)
    return Store.open(store_path(config), worker=worker, **options)


def where(config: Any = None) -> str:
    """What a start-up failure names: the file, or the server (no password)."""
    section = getattr(config, "store", None)
    if section is not None and section.backend == "postgres":
        from .postgres import describe

        return "postgres " + (describe(section.dsn) if section.dsn else f"(dsn_file {section.dsn_file})")
    return str(store_path(config))
