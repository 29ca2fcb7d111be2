"""Storage: the one interface the monitor keeps its state through (`base.Store`) and the
backends behind it. A backend is a module in this package implementing `Store`, plus one
line in BACKENDS; `open_store` turns a `--state` value into a store."""

from __future__ import annotations

from typing import Callable

from status_monitor.storage.base import (
    DELIVERY_TTL,
    FeedClaim,
    FeedRecord,
    OutboxItem,
    SharedStore,
    StateError,
    Store,
    StoredEvent,
    StoreUnavailable,
)
from status_monitor.storage.sqlite import SQLiteStore

__all__ = [
    "DELIVERY_TTL", "FeedClaim", "FeedRecord", "OutboxItem", "SharedStore", "StateError", "Store", "StoredEvent",
    "StoreUnavailable", "open_store",
]


def _postgres(location: str, read_only: bool) -> Store:
    from status_monitor.storage.postgres import PostgresStore  # psycopg is loaded only where it is used

    return PostgresStore(location, read_only)

# A `--state` URL scheme -> the backend that opens it. Any value that is not a URL is a
# SQLite file path (":memory:" keeps nothing).
# A backend is called with the location and `read_only`.
BACKENDS: dict[str, Callable[[str, bool], Store]] = {"postgresql": _postgres, "postgres": _postgres}


def open_store(location: str, read_only: bool = False) -> Store:
    """The store for a `--state` value: `scheme://...` picks a backend from BACKENDS, any
    other value is a SQLite file path. `read_only` (--history) reads what is there without
    creating or claiming it. Raises StateError for a URL scheme no backend handles. The
    store still needs `await store.open()`."""
    scheme, sep, _ = location.partition("://")
    if not sep:
        return SQLiteStore(location, read_only)
    backend = BACKENDS.get(scheme.lower())
    if backend is None:
        known = ", ".join(sorted(BACKENDS)) or "none"
        raise StateError(f"state {scheme}://...: no storage backend for {scheme!r} (URL schemes known: {known})")
    return backend(location, read_only)
