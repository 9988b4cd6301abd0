"""Inventory persistence: devices merged across runs, their evidence and history, and the runs themselves."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from medsentry.store.base import (
    ALERT_STATES,
    AlertChange,
    AlertFilter,
    AlertUpsert,
    DeviceChange,
    DeviceFilter,
    Run,
    RunStats,
    SchemaTooNew,
    Store,
    StoredAlert,
    StoreError,
    UpsertResult,
)
from medsentry.store.sqlite import SQLiteStore, default_db_path

__all__ = [
    "ALERT_STATES",
    "AlertChange",
    "AlertFilter",
    "AlertUpsert",
    "DeviceChange",
    "DeviceFilter",
    "Run",
    "RunStats",
    "SQLiteStore",
    "SchemaTooNew",
    "Store",
    "StoreError",
    "StoredAlert",
    "UpsertResult",
    "default_db_path",
    "open_store",
]


def open_store(path: str | Path | None = None, env: Mapping[str, str] = os.environ) -> Store:
    """The store at `path` (the CLI's --db), else $MEDSENTRY_DB, else ~/.local/share/medsentry/medsentry.db;
    created on demand. A PostgreSQL store will be chosen here by a "postgresql://" URL."""
    return SQLiteStore(path if path is not None else default_db_path(env))
