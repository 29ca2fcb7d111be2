"""The storage interface: `Store` names every operation the rest of the monitor uses, and
the records it holds. Each backend (sqlite.py, ...) implements it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Protocol

from status_monitor.model import Event, utc_iso
from status_monitor.storage.seen import SeenSet

DELIVERY_TTL = timedelta(hours=72)  # webhook delivery ids kept: providers retry for 24 h with fresh timestamps


class StateError(Exception):
    """The state cannot be used (unreadable, foreign, newer schema); start-up stops with this message."""


class StoreUnavailable(Exception):
    """The state cannot be reached now (a database server down or unreachable): the operation
    did not happen and may be retried. The message names the place, never a password."""


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
    shared: bool  # other processes (replicas) write the same state: caches in memory are only fast paths

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
        self,
        event: Event,
        delivery_id: str | None = None,
        outbox: Iterable[OutboxItem] = (),
        announce: Callable[[Event], None] | None = None,
    ) -> int | None:
        """The event, its keys, the delivery that brought it and its notifications, in one
        transaction; `announce(event)` is called inside it, once the event is known to be new,
        before the commit (a crash in between announces it again: at least once). Returns the
        event's id, or None when a key of it was stored already (then its other keys and the
        delivery id are stored, and nothing is announced)."""

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

    async def has_delivery(self, delivery_id: str) -> bool:
        """Whether this webhook delivery id is stored (within DELIVERY_TTL)."""

    async def health(self) -> dict[str, Any]:
        """{"backend": name, "ok": whether the state is reachable now, "error"?: why not}."""


@dataclass
class FeedClaim:
    """The outcome of `SharedStore.claim_feed`: either this replica holds the feed's lease
    (`token` set, with the feed's shared record) or it must wait `wait` seconds."""

    token: int | None = None
    record: FeedRecord | None = None
    known: bool = False  # polled before by some replica: not a first poll
    components: dict[str, str] | None = None  # a page summary's last statuses, as stored
    wait: float = 0.0


class SharedStore(Store, Protocol):
    """A `Store` that replicas share (`shared` is True): what they coordinate through."""

    fleet: dict[str, Any]  # {"replica_id", "replicas", "feeds_held"} as of the last heartbeat
    replica_id: str
    replicas: tuple[str, ...]  # the live replicas' ids (this one's included), sorted, as of the last heartbeat

    async def join_fleet(self) -> None:
        """Registers this replica and starts its heartbeat (liveness, leases, fleet counts)."""

    async def claim_feed(self, url: str, interval: float, grace: float = 0.0) -> FeedClaim:
        """The lease on a feed due `grace` seconds ago that no live replica holds, or how long to wait."""

    async def complete_feed(self, record: FeedRecord, silent_keys: Iterable[int], token: int, due_at: float) -> bool:
        """Stores a claimed poll's outcome if `token` is still the feed's lease (fencing)."""

    async def adopt_outbox(self) -> list[OutboxItem]:
        """Claims the notifications other replicas left unsent (their claims lapsed), oldest first."""

    def listen(self, wake: Callable[[int], None]) -> None:
        """Calls `wake(event_id)` for each event any replica commits (0: some may be missed)."""


def list_events_sql(
    provider: str | None, source: str | None, since: datetime | None, limit: int, oldest_first: bool, mark: str
) -> tuple[str, tuple]:
    """`Store.list_events`' query and its parameters, the same SQL for every backend but the
    driver's placeholder `mark` ("?" for sqlite3, "%s" for psycopg). Columns: id, key, body."""
    clauses, params = [], []
    for clause, value in (("lower(provider) = lower({})", provider), ("source = {}", source),
                          ("received_at >= {}", utc_iso(since) if since else None)):
        if value:
            clauses.append(clause.format(mark))
            params.append(value)
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    order = "ASC" if oldest_first else "DESC"
    return (f"SELECT id, key, body FROM (SELECT id, key, body FROM events {where} ORDER BY id DESC LIMIT {mark}) AS newest "
            f"ORDER BY id {order}", (*params, limit))
