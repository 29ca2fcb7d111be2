"""Storage: the one interface the monitor keeps its state through (`base.Store`) and the
backends behind it. A backend is a module in this package implementing `Store`, plus one
line in BACKENDS; `open_store` turns a `--state` value into a store."""

from __future__ import annotations

from typing import Callable

from status_monitor.storage.base import DELIVERY_TTL, FeedRecord, OutboxItem, StateError, Store, StoredEvent
from status_monitor.storage.sqlite import SQLiteStore

__all__ = ["DELIVERY_TTL", "FeedRecord", "OutboxItem", "StateError", "Store", "StoredEvent", "open_store"]

# A `--state` URL scheme -> the backend that opens it. Any value that is not a URL is a
# SQLite file path (":memory:" keeps nothing).
BACKENDS: dict[str, Callable[[str], Store]] = {}


def open_store(location: str) -> Store:
    """The store for a `--state` value: `scheme://...` picks a backend from BACKENDS, any
    other value is a SQLite file path. Raises StateError for a URL scheme no backend
    handles. The store still needs `await store.open()`."""
    scheme, sep, _ = location.partition("://")
    if not sep:
        return SQLiteStore(location)
    backend = BACKENDS.get(scheme.lower())
    if backend is None:
        known = ", ".join(sorted(BACKENDS)) or "none"
        raise StateError(f"state {scheme}://...: no storage backend for {scheme!r} (URL schemes known: {known})")
    return backend(location)
