"""The storage interface: `Store` names every operation the rest of the monitor uses, and
the records it holds. Each backend (sqlite.py, ...) implements it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable, Protocol

from status_monitor.model import Event
from status_monitor.storage.seen import SeenSet

DELIVERY_TTL = timedelta(hours=72)  # webhook delivery ids kept: providers retry for 24 h with fresh timestamps


class StateError(Exception):
    """The state cannot be used (unreadable, foreign, newer schema); start-up stops with this message."""


@dataclass
class FeedRecord:
    """What a feed's next poll needs to know, kept across restarts."""

    url: str
    etag: str | None = None
    last_modified: str | None = None
    last_status: int | None = None
    last_polled_at: str | None = None
    consecutive_errors: int = 0
    backoff_until: float | None = None
    entries: int = 0
    gone: bool = False


@dataclass
class OutboxItem:
    """A notification not yet delivered: written with its event, deleted once sent or given up."""

    target: str
    event_key: str
    title: str
    body: str
    kind: str
    created_at: float


@dataclass
class StoredEvent:
    id: int  # ascending in commit order, so a stream resumes after it
    event: Event


class Store(Protocol):
    """Durable state: seen update keys (as `seen.key_hash` values), announced events, feed
    validators and health, webhook delivery ids, the notification outbox, component states
    and detected sources. Every write is durable once its coroutine returns."""

    path: str  # where the state lives, as the user gave it (never with a password)

    async def open(self) -> None:
        """Creates or upgrades the state, and makes this process its one writer; raises
        StateError when it cannot be used or another monitor writes to it (naming that one).
        A store opened read-only neither creates, upgrades nor claims the state."""

    async def close(self) -> None:
        """Writes what is pending and releases the state."""

    async def load_seen_keys(self) -> SeenSet: ...

    async def add_keys(self, keys: Iterable[str], delivery_id: str | None = None) -> None:
        """Records update keys (not announced: filtered or stale) and, with them, a delivery id."""

    async def add_event(
        self, event: Event, delivery_id: str | None = None, outbox: Iterable[OutboxItem] = ()
    ) -> int | None:
        """The event, its keys, the delivery that brought it and its notifications, in one
        transaction. Returns the event's id, or None if an event of that key was stored already."""

    async def list_events(
        self,
        provider: str | None = None,
        source: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
        oldest_first: bool = False,
    ) -> list[StoredEvent]:
        """The newest `limit` events that match (provider case-insensitively, `since` on the
        time received), newest or oldest first."""

    async def event_providers(self) -> list[str]:
        """The providers that have stored events, sorted by name (case ignored)."""

    async def events_after(self, event_id: int, limit: int) -> list[StoredEvent]:
        """The `limit` events stored right after `event_id`, oldest first: a resumed stream."""

    async def prune(self, retention_days: int) -> None:
        """Deletes events received more than `retention_days` ago and expired delivery ids."""

    async def load_outbox(self) -> list[OutboxItem]:
        """Notifications not yet delivered, oldest first."""

    async def remove_outbox(self, items: Iterable[OutboxItem]) -> None: ...

    async def load_components(self) -> dict[str, dict[str, str]]:
        """Summary URL -> component id -> status, as last saved."""

    async def save_components(self, feed_url: str, statuses: dict[str, str]) -> None:
        """Replaces a summary's component statuses."""

    async def load_sources(self) -> dict[str, tuple[str, str]]:
        """Page root -> (kind, url) that detection chose for it."""

    async def save_source(self, page_url: str, kind: str, url: str) -> None: ...

    async def load_feeds(self) -> dict[str, FeedRecord]:
        """Feed URL -> its record."""

    async def save_feed(self, record: FeedRecord, silent_keys: Iterable[int] = ()) -> None:
        """Records a poll's outcome. Key hashes given (a first poll's baseline) are durable at
        once; validators and health may wait for `flush()` (losing them costs a refetch)."""

    async def flush(self) -> None:
        """Makes every pending feed record durable."""

    async def load_deliveries(self) -> set[str]:
        """Webhook delivery ids received within DELIVERY_TTL."""

    async def add_delivery(self, delivery_id: str) -> None: ...
