"""Durable state in a PostgreSQL database that several replicas share (psycopg 3, async, with
a connection pool).

The same operations as the SQLite store, with the database as the one authority between
replicas:
- an update is new when its keys' unique insert into `seen` succeeds, in the transaction
  that stores its event, its webhook delivery id and its notifications; the update is
  announced inside that transaction, before the commit, so a concurrent replica inserting
  the same key waits for the commit and then finds it taken (announced once), and a crash
  before the commit lets another replica announce it (nothing lost);
- event ids become visible in order: the inserts of event rows are serialised by a
  transaction-level advisory lock, so a reader resuming after id N never skips a lower id
  that commits later;
- the schema is versioned; start-up applies missing migrations under an advisory lock, so
  replicas starting at once apply each migration once.

A database that cannot be reached raises `StoreUnavailable`; the pool reconnects by itself
when it returns. The connection URL's password never appears in a message.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import sqlite3
import time
from array import array
from dataclasses import astuple, fields
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable, Iterable, TypeVar
from urllib.parse import urlsplit

import orjson
import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from status_monitor.model import Event, utc_iso
from status_monitor.redact import redact_url
from status_monitor.storage.base import (
    DELIVERY_TTL,
    FeedClaim,
    FeedRecord,
    OutboxItem,
    StateError,
    StoredEvent,
    StoreUnavailable,
    list_events_sql,
)
from status_monitor.storage.seen import SeenSet, key_hash

log = logging.getLogger("monitor.state")

T = TypeVar("T")

CONNECT_TIMEOUT = 5.0  # seconds to wait for a connection before an operation fails as unavailable
POOL_SIZE = 10  # connections a replica holds at most
MIGRATION_LOCK = 0x53504D31  # advisory lock key ("SPM1") held while migrations are applied
EVENT_ORDER_LOCK = 0x53504D32  # advisory lock key held by each transaction that stores an event row
EVENTS_CHANNEL = "monitor_events"  # NOTIFY channel: the payload is a committed event's id
HEARTBEAT_EVERY = 5.0  # seconds between two heartbeats of a replica (they also extend its leases)
HEARTBEAT_TIMEOUT = 15.0  # seconds without a heartbeat after which a replica's leases lapse
REPLICA_FORGOTTEN_AFTER = 3600.0  # seconds after its last heartbeat a replica's row is deleted
# A replica asking for a feed that another is polling asks again this soon (seconds): that
# poll's outcome sets when the feed is next due.
IN_FLIGHT_RETRY = 2.0

# Each migration runs once, in order, in one transaction; never edit one that has shipped.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE seen (
        hash BIGINT PRIMARY KEY,  -- seen.key_hash() of an update key
        seen_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE events (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,
        provider TEXT NOT NULL,
        source TEXT NOT NULL,
        received_at TEXT NOT NULL,  -- ISO 8601 UTC, as utc_iso() writes it: sorts as text
        body TEXT NOT NULL
    );
    CREATE INDEX events_received ON events (received_at);
    CREATE INDEX events_provider ON events (lower(provider), id);
    CREATE TABLE feeds (
        url TEXT PRIMARY KEY,
        etag TEXT,
        last_modified TEXT,
        last_status INTEGER,
        last_polled_at TEXT,
        consecutive_errors INTEGER NOT NULL DEFAULT 0,
        backoff_until DOUBLE PRECISION,
        entries INTEGER NOT NULL DEFAULT 0,
        gone BOOLEAN NOT NULL DEFAULT false,
        due_at DOUBLE PRECISION,  -- Unix time its next poll is due, whichever replica makes it
        holder TEXT,  -- the replica polling it now (lease), or that polled it last
        lease_until DOUBLE PRECISION,  -- while in the future, only the holder polls it
        lease_token BIGINT NOT NULL DEFAULT 0  -- raised by each claim: a completion must name the current one
    );
    CREATE INDEX feeds_holder ON feeds (holder);
    CREATE TABLE replicas (
        id TEXT PRIMARY KEY,
        started_at DOUBLE PRECISION NOT NULL,
        heartbeat_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE deliveries (
        id TEXT PRIMARY KEY,
        received_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX deliveries_received ON deliveries (received_at);
    CREATE TABLE outbox (
        target TEXT NOT NULL,
        event_key TEXT NOT NULL,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        kind TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        claimed_by TEXT,  -- the replica sending it
        claimed_until DOUBLE PRECISION,  -- extended by its heartbeats; once past, another replica takes it
        PRIMARY KEY (target, event_key)
    );
    CREATE TABLE components (
        feed_url TEXT NOT NULL,
        component_id TEXT NOT NULL,
        status TEXT NOT NULL,
        PRIMARY KEY (feed_url, component_id)
    );
    CREATE TABLE incidents (  -- the newest snapshot time of an incident, for staleness across replicas
        provider TEXT NOT NULL,
        incident_id TEXT NOT NULL,
        occurred_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (provider, incident_id)
    );
    CREATE TABLE sources (
        page_url TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        url TEXT NOT NULL,
        detected_at DOUBLE PRECISION NOT NULL
    );
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)

_FEED_COLUMNS = [f.name for f in fields(FeedRecord)]

def _same(row: tuple) -> tuple:
    return row


# What --migrate-state copies from a SQLite state: table, columns (the same names on both
# sides) and the conversion of a row. SQLite keeps booleans as 0/1.
_COPIED_TABLES: list[tuple[str, list[str], Callable[[tuple], tuple]]] = [
    ("seen", ["hash", "seen_at"], _same),
    ("events", ["id", "key", "provider", "source", "received_at", "body"], _same),
    ("feeds", _FEED_COLUMNS, lambda row: (*row[:-1], bool(row[-1]))),
    ("deliveries", ["id", "received_at"], _same),
    ("outbox", ["target", "event_key", "title", "body", "kind", "created_at"], _same),
    ("components", ["feed_url", "component_id", "status"], _same),
    ("sources", ["page_url", "kind", "url", "detected_at"], _same),
]
_SAVE_FEED = (
    f"INSERT INTO feeds ({', '.join(_FEED_COLUMNS)}) VALUES ({', '.join(['%s'] * len(_FEED_COLUMNS))}) "
    f"ON CONFLICT (url) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in _FEED_COLUMNS[1:])}"
)
_ADD_SEEN = (
    "INSERT INTO seen (hash, seen_at) SELECT h, %s FROM unnest(%s::bigint[]) AS h "
    "ON CONFLICT (hash) DO NOTHING RETURNING hash"
)
_ADD_DELIVERY = "INSERT INTO deliveries (id, received_at) VALUES (%s, %s) ON CONFLICT (id) DO NOTHING"
# One round trip: a webhook's delivery id (if any) and an update's key hashes; returns the
# hashes that were new.
_ADD_DELIVERY_AND_SEEN = (
    "WITH delivery AS (INSERT INTO deliveries (id, received_at) SELECT %s::text, %s WHERE %s::text IS NOT NULL "
    "ON CONFLICT (id) DO NOTHING) " + _ADD_SEEN.replace("%s, ", "%s::float8, ", 1)
)
# One round trip: the order lock (held to the commit, so ids become visible in order), the
# event row, and the NOTIFY that the commit delivers to every replica's streams.
_ADD_EVENT_IN_ORDER = (
    "WITH locked AS (SELECT pg_advisory_xact_lock(%s)), added AS ("
    " INSERT INTO events (key, provider, source, received_at, body) SELECT %s, %s, %s, %s, %s FROM locked"
    " ON CONFLICT (key) DO NOTHING RETURNING id"
    ") SELECT id, pg_notify(%s, id::text) FROM added"
)


def replica_name() -> str:
    """This process's replica id: host, process id and a random suffix (unique across restarts)."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


class PostgresStore:
    """The state in a PostgreSQL database, shared by every replica that names it."""

    shared = True  # other processes write here too: the in-memory caches are only fast paths

    def __init__(self, url: str, read_only: bool = False) -> None:
        self._url = url
        self.read_only = read_only  # --history: neither creates nor migrates the schema
        self.path = redact_url(url)
        self._password = urlsplit(url).password or ""
        self._pool: AsyncConnectionPool | None = None
        self._pending_feeds: dict[str, FeedRecord] = {}
        self.replica_id = replica_name()
        self.fleet = {"replica_id": self.replica_id, "replicas": 0, "feeds_held": 0}  # as of the last heartbeat
        self.replicas: tuple[str, ...] = ()  # the live replicas' ids, sorted, as of the last heartbeat
        self._heartbeat: asyncio.Task | None = None
        self._listener: asyncio.Task | None = None

    # --- connections and errors ---

    def _redact(self, text: str) -> str:
        return text.replace(self._password, "***") if self._password else text

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return StoreUnavailable(f"database {self.path} unavailable: {self._redact(reason)}")

    @property
    def pool(self) -> AsyncConnectionPool:
        assert self._pool is not None, "PostgresStore.open() first"
        return self._pool

    async def _tx(self, fn: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T:
        """Runs `fn(connection)` in one transaction. Errors of the connection or the server
        (and a pool with no connection to give within CONNECT_TIMEOUT) raise StoreUnavailable."""
        try:
            async with self.pool.connection() as conn:
                async with conn.transaction():
                    return await fn(conn)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise self._unavailable(exc) from None

    async def _query(self, query: str, params: tuple = ()) -> list[tuple]:
        """One statement in a transaction of its own (autocommit: no BEGIN and COMMIT round
        trips); returns its rows. Errors as `_tx`."""
        try:
            async with self.pool.connection() as conn:
                cursor = await conn.execute(query, params)
                return await cursor.fetchall() if cursor.description else []
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise self._unavailable(exc) from None

    async def open(self) -> None:
        """Connects and brings the schema up to date. Raises StateError when the database
        cannot be reached, refuses the login, or was written by a newer version."""
        try:
            first = await psycopg.AsyncConnection.connect(self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
        except psycopg.Error as exc:
            raise StateError(self._unavailable(exc).args[0].replace(" unavailable:", ":")) from None
        try:
            await self._migrate(first)
        except psycopg.Error as exc:
            raise StateError(f"database {self.path}: cannot prepare the schema ({self._redact(str(exc).strip())})") from None
        finally:
            await first.close()
        self._pool = AsyncConnectionPool(
            self._url,
            min_size=1,
            max_size=POOL_SIZE,
            timeout=CONNECT_TIMEOUT,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT},
            check=AsyncConnectionPool.check_connection,  # a connection the server dropped is replaced, not used
            reconnect_timeout=float("inf"),  # keep trying while the database is away
            open=False,
            name="monitor-state",
        )
        await self._pool.open(wait=False)

    async def _migrate(self, conn: psycopg.AsyncConnection) -> None:
        if self.read_only:
            exists = await (await conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")).fetchone()
            if not exists[0]:
                raise StateError(f"database {self.path}: holds no state yet (the monitor creates it when it first runs)")
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            row = await (await conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations")).fetchone()
            version = row[0]
            if version > SCHEMA_VERSION:
                raise StateError(
                    f"database {self.path}: written by a newer version (schema {version}, this one knows {SCHEMA_VERSION})"
                )
            for number, migration in enumerate([] if self.read_only else MIGRATIONS[version:], start=version + 1):
                await conn.execute(migration)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (number,))
                log.info("database %s: schema migrated to version %d", self.path, number)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
            self._heartbeat = None
        if self._pool is not None:
            try:
                await self._tx(self._leave)
            except StoreUnavailable as exc:
                log.warning("%s; this replica's leases and claims lapse by themselves within %g s", exc, HEARTBEAT_TIMEOUT)
            try:
                await self.flush()
            except StoreUnavailable as exc:
                log.warning("%s; feeds' validators and health of the last seconds are not saved", exc)
            await self._pool.close()
            self._pool = None

    async def health(self) -> dict[str, Any]:
        """{"backend", "ok", "error"?}: whether a query reaches the database now."""
        try:
            await self._query("SELECT 1")
        except StoreUnavailable as exc:
            return {"backend": "postgresql", "ok": False, "error": str(exc)}
        return {"backend": "postgresql", "ok": True}

    # --- moving from SQLite ---

    async def copy_from(self, source: sqlite3.Connection) -> dict[str, int]:
        """Copies a SQLite state (an opened state.Store's connection) into this database, in
        one transaction: seen keys, events (with their ids), feeds and validators, webhook
        delivery ids, the notification outbox, component states and detected sources, so
        that the move announces nothing again. Returns the rows copied per table. Raises
        StateError if this database holds a state already."""

        async def copy(conn: psycopg.AsyncConnection) -> dict[str, int]:
            cursor = conn.cursor()
            await cursor.execute("SELECT (SELECT count(*) FROM seen) + (SELECT count(*) FROM events) + (SELECT count(*) FROM feeds)")
            if (await cursor.fetchone())[0]:
                raise StateError(f"database {self.path}: holds a state already; copy into an empty database")
            copied = {}
            for table, columns, convert in _COPIED_TABLES:
                rows = [convert(row) for row in source.execute(f"SELECT {', '.join(columns)} FROM {table}")]
                overriding = " OVERRIDING SYSTEM VALUE" if table == "events" else ""
                placeholders = ", ".join(["%s"] * len(columns))
                await cursor.executemany(f"INSERT INTO {table} ({', '.join(columns)}){overriding} VALUES ({placeholders})", rows)
                copied[table] = len(rows)
            await cursor.execute("SELECT setval(pg_get_serial_sequence('events', 'id'), coalesce(max(id), 0) + 1, false) FROM events")
            return copied

        return await self._tx(copy)

    # --- replicas and feed leases ---

    async def join_fleet(self) -> None:
        """Registers this replica and starts its heartbeat: every HEARTBEAT_EVERY seconds it
        says it is alive, extends the leases of the polls it has in flight, lists the fleet
        (replicas heard from within HEARTBEAT_TIMEOUT) and counts the feeds it polled last."""
        await self._tx(self._beat)
        self._heartbeat = asyncio.create_task(self._beat_forever(), name="heartbeat")

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_EVERY)
            try:
                await self._tx(self._beat)
            except StoreUnavailable as exc:
                log.warning("heartbeat: %s", exc)

    async def _beat(self, conn: psycopg.AsyncConnection) -> None:
        now = time.time()
        cursor = conn.cursor()
        await cursor.execute(
            "INSERT INTO replicas VALUES (%s, %s, %s) ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
            (self.replica_id, now, now),
        )
        await cursor.execute(
            "UPDATE feeds SET lease_until = %s WHERE holder = %s AND lease_until IS NOT NULL",
            (now + HEARTBEAT_TIMEOUT, self.replica_id),
        )
        await cursor.execute(
            "UPDATE outbox SET claimed_until = %s WHERE claimed_by = %s", (now + HEARTBEAT_TIMEOUT, self.replica_id)
        )
        await cursor.execute("DELETE FROM replicas WHERE heartbeat_at < %s", (now - REPLICA_FORGOTTEN_AFTER,))
        await cursor.execute("SELECT id FROM replicas WHERE heartbeat_at >= %s ORDER BY id", (now - HEARTBEAT_TIMEOUT,))
        self.replicas = tuple(replica for (replica,) in await cursor.fetchall())
        await cursor.execute("SELECT count(*) FROM feeds WHERE holder = %s", (self.replica_id,))
        held = (await cursor.fetchone())[0]
        self.fleet = {"replica_id": self.replica_id, "replicas": len(self.replicas), "feeds_held": held}

    async def _leave(self, conn: psycopg.AsyncConnection) -> None:
        """At a clean stop: the leases this replica holds are handed back at once."""
        await conn.execute("UPDATE feeds SET lease_until = NULL WHERE holder = %s", (self.replica_id,))
        await conn.execute("UPDATE outbox SET claimed_by = NULL, claimed_until = NULL WHERE claimed_by = %s", (self.replica_id,))
        await conn.execute("DELETE FROM replicas WHERE id = %s", (self.replica_id,))

    async def claim_feed(self, url: str, interval: float, grace: float = 0.0) -> FeedClaim:
        """Takes the lease on a feed whose poll is due (`grace` seconds ago; a feed never
        polled is due at once for everyone) and that no live replica holds, and returns the
        feed's shared record; or says how long to wait: until it is due, or, while another
        replica polls it, IN_FLIGHT_RETRY seconds (at most until that lease lapses). Two
        replicas asking at once are serialised by the row's lock: one wins. A claim makes the
        feed due again in `interval` seconds, until its outcome says when. The lease lasts
        HEARTBEAT_TIMEOUT seconds; the heartbeat extends it."""
        now = time.time()

        async def claim(conn: psycopg.AsyncConnection) -> FeedClaim:
            cursor = conn.cursor()
            await cursor.execute("INSERT INTO feeds (url) VALUES (%s) ON CONFLICT (url) DO NOTHING", (url,))
            await cursor.execute(
                f"SELECT {', '.join(_FEED_COLUMNS)}, due_at, holder, lease_until FROM feeds WHERE url = %s FOR UPDATE", (url,)
            )
            *columns, due_at, holder, lease_until = await cursor.fetchone()
            if lease_until is not None and lease_until > now and holder != self.replica_id:
                return FeedClaim(wait=min(IN_FLIGHT_RETRY, lease_until - now))
            ready_at = now if due_at is None else due_at + grace
            if ready_at > now:
                return FeedClaim(wait=ready_at - now)
            await cursor.execute(
                "UPDATE feeds SET holder = %s, lease_until = %s, lease_token = lease_token + 1, due_at = %s "
                "WHERE url = %s RETURNING lease_token",
                (self.replica_id, now + HEARTBEAT_TIMEOUT, now + interval, url),
            )
            token = (await cursor.fetchone())[0]
            await cursor.execute("SELECT component_id, status FROM components WHERE feed_url = %s", (url,))
            components = dict(await cursor.fetchall())
            record = FeedRecord(*columns)
            return FeedClaim(token, record, known=record.last_polled_at is not None, components=components)

        return await self._tx(claim)

    async def complete_feed(self, record: FeedRecord, silent_keys: Iterable[int], token: int, due_at: float) -> bool:
        """Writes a claimed poll's outcome (with a first poll's silent key hashes) and when the
        feed is next due, and ends the lease; only while `token` is still the feed's current
        lease (fencing): a replica whose lease lapsed and moved on writes nothing and gets
        False."""
        keys = sorted(set(silent_keys))
        values = astuple(record)[1:]

        async def complete(conn: psycopg.AsyncConnection) -> bool:
            cursor = conn.cursor()
            await cursor.execute(
                f"UPDATE feeds SET {', '.join(f'{c} = %s' for c in _FEED_COLUMNS[1:])}, due_at = %s, lease_until = NULL "
                "WHERE url = %s AND lease_token = %s AND holder = %s",
                (*values, due_at, record.url, token, self.replica_id),
            )
            if cursor.rowcount == 0:
                return False
            if keys:
                await cursor.execute(_ADD_SEEN, (time.time(), keys))
            return True

        return await self._tx(complete)

    # --- events committed by any replica ---

    def listen(self, wake: Callable[[int], None]) -> None:
        """Calls `wake(event_id)` for each event any replica commits (LISTEN on a connection
        of its own, outside the pool), and `wake(0)` after each reconnection, when some may
        have been missed. Runs until close()."""
        self._listener = asyncio.create_task(self._listen(wake), name="listen")

    async def _listen(self, wake: Callable[[int], None]) -> None:
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
                async with conn:
                    await conn.execute(f"LISTEN {EVENTS_CHANNEL}")
                    wake(0)
                    async for notice in conn.notifies():
                        wake(int(notice.payload))
            except psycopg.Error as exc:
                log.warning("event notifications: %s; reconnecting", self._unavailable(exc))
                await asyncio.sleep(HEARTBEAT_EVERY)

    # --- seen keys and events ---

    async def load_seen_keys(self) -> SeenSet:
        async def load(conn: psycopg.AsyncConnection) -> SeenSet:
            hashes = array("q")
            async with conn.cursor(name="seen_keys") as cursor:  # on the server: streamed, never all rows at once
                await cursor.execute("SELECT hash FROM seen ORDER BY hash")
                async for (value,) in cursor:
                    hashes.append(value)
            return SeenSet.from_ascending(hashes)

        return await self._tx(load)

    async def add_keys(self, keys: Iterable[str], delivery_id: str | None = None) -> None:
        hashes = sorted({key_hash(key) for key in keys})

        async def add(conn: psycopg.AsyncConnection) -> None:
            await conn.execute(_ADD_SEEN, (time.time(), hashes))
            if delivery_id is not None:
                await conn.execute(_ADD_DELIVERY, (delivery_id, time.time()))

        await self._tx(add)

    async def add_event(
        self,
        event: Event,
        delivery_id: str | None = None,
        outbox: Iterable[OutboxItem] = (),
        announce: Callable[[Event], None] | None = None,
    ) -> int | None:
        """Stores the event if none of its keys was seen, with the webhook delivery that
        brought it and its notifications, in one transaction; `announce(event)` is called
        inside it, after the event row is in and before the commit. Returns the event's id,
        or None when a key was seen already (by any replica) or the event is a snapshot older
        than one stored for its incident: then only the delivery id and the event's keys are
        stored, and nothing is announced."""
        hashes = sorted({key_hash(key) for key in event.keys})  # one order for all: no deadlock between replicas
        data = event.to_dict()
        row = (event.key, event.provider, event.source, data["received_at"], orjson.dumps(data).decode())
        sends = [astuple(item) for item in outbox]

        async def add(conn: psycopg.AsyncConnection) -> int | None:
            cursor = conn.cursor()
            now = time.time()
            await cursor.execute(_ADD_DELIVERY_AND_SEEN, (delivery_id, now, delivery_id, now, hashes))
            if len(await cursor.fetchall()) < len(hashes) or await self._is_stale(cursor, event):
                return None
            if sends:  # before the lock below: the fewer round trips under it, the more events a second
                claim = (self.replica_id, now + HEARTBEAT_TIMEOUT)
                await cursor.executemany(
                    "INSERT INTO outbox VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    [(*send, *claim) for send in sends],
                )
            await cursor.execute(_ADD_EVENT_IN_ORDER, (EVENT_ORDER_LOCK, *row, EVENTS_CHANNEL))
            found = await cursor.fetchone()
            if found is None:  # its key stored under other keys' names (a hash collision): not announced
                await cursor.executemany("DELETE FROM outbox WHERE target = %s AND event_key = %s", [send[:2] for send in sends])
                return None
            if announce is not None:
                announce(event)
            return found[0]

        return await self._tx(add)

    @staticmethod
    async def _is_stale(cursor: psycopg.AsyncCursor, event: Event) -> bool:
        """Whether a snapshot is older than one of its incident that any replica stored: the
        upsert keeps the newest time and locks the row, so two replicas agree."""
        if not event.snapshot or event.occurred_at is None:
            return False
        await cursor.execute(
            "INSERT INTO incidents VALUES (%s, %s, %s) ON CONFLICT (provider, incident_id) "
            "DO UPDATE SET occurred_at = greatest(incidents.occurred_at, excluded.occurred_at) RETURNING occurred_at",
            (event.provider, event.incident_id, event.occurred_at),
        )
        newest = (await cursor.fetchone())[0]
        return newest > event.occurred_at

    async def list_events(
        self,
        provider: str | None = None,
        source: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
        oldest_first: bool = False,
    ) -> list[StoredEvent]:
        """The newest `limit` events that match, newest or oldest first."""
        return await self._select_events(*list_events_sql(provider, source, since, limit, oldest_first, "%s"))

    async def event_providers(self) -> list[str]:
        """The providers that have stored events, sorted by name (case ignored)."""
        rows = await self._query("SELECT DISTINCT provider FROM events")
        return sorted({row[0] for row in rows}, key=str.casefold)

    async def events_after(self, event_id: int, limit: int) -> list[StoredEvent]:
        """The `limit` events stored right after `event_id`, oldest first: a resumed stream."""
        return await self._select_events("SELECT id, key, body FROM events WHERE id > %s ORDER BY id LIMIT %s", (event_id, limit))

    async def _select_events(self, query: str, params: tuple) -> list[StoredEvent]:
        rows = await self._query(query, params)
        return [StoredEvent(i, Event.from_dict(orjson.loads(body), keys=(key,))) for i, key, body in rows]

    async def prune(self, retention_days: int) -> None:
        cutoff = utc_iso(datetime.now(timezone.utc) - timedelta(days=retention_days))

        async def prune(conn: psycopg.AsyncConnection) -> None:
            await conn.execute("DELETE FROM events WHERE received_at < %s", (cutoff,))
            await conn.execute("DELETE FROM incidents WHERE occurred_at < %s", (datetime.fromisoformat(cutoff),))
            await conn.execute("DELETE FROM deliveries WHERE received_at < %s", (time.time() - DELIVERY_TTL.total_seconds(),))

        await self._tx(prune)

    # --- notification outbox ---

    async def load_outbox(self) -> list[OutboxItem]:
        """Notifications not yet delivered that no other live replica is sending (never
        claimed, claimed here, or whose sender's claim lapsed: it died or stopped), now
        claimed here, oldest first. A claim lasts HEARTBEAT_TIMEOUT seconds; heartbeats
        extend it."""
        return await self._claim_outbox("claimed_by IS NULL OR claimed_by = %(me)s OR claimed_until < %(now)s")

    async def adopt_outbox(self) -> list[OutboxItem]:
        """Like load_outbox, but only the notifications another replica left (for a replica
        whose own are queued already)."""
        return await self._claim_outbox("claimed_by IS NULL OR (claimed_by <> %(me)s AND claimed_until < %(now)s)")

    async def _claim_outbox(self, which: str) -> list[OutboxItem]:
        now = time.time()

        async def claim(conn: psycopg.AsyncConnection) -> list[OutboxItem]:
            cursor = conn.cursor()
            await cursor.execute(
                "UPDATE outbox SET claimed_by = %(me)s, claimed_until = %(until)s WHERE (target, event_key) IN ("
                f" SELECT target, event_key FROM outbox WHERE {which} FOR UPDATE SKIP LOCKED"
                ") RETURNING target, event_key, title, body, kind, created_at",
                {"me": self.replica_id, "until": now + HEARTBEAT_TIMEOUT, "now": now},
            )
            return sorted((OutboxItem(*row) for row in await cursor.fetchall()), key=lambda item: item.created_at)

        return await self._tx(claim)

    async def remove_outbox(self, items: Iterable[OutboxItem]) -> None:
        rows = [(item.target, item.event_key) for item in items]
        if rows:
            await self._tx(lambda conn: conn.cursor().executemany("DELETE FROM outbox WHERE target = %s AND event_key = %s", rows))

    # --- component states and detected sources ---

    async def load_components(self) -> dict[str, dict[str, str]]:
        async def load(conn: psycopg.AsyncConnection) -> dict[str, dict[str, str]]:
            found: dict[str, dict[str, str]] = {}
            cursor = conn.cursor()
            await cursor.execute("SELECT feed_url, component_id, status FROM components")
            for feed_url, component_id, status in await cursor.fetchall():
                found.setdefault(feed_url, {})[component_id] = status
            return found

        return await self._tx(load)

    async def save_components(self, feed_url: str, statuses: dict[str, str]) -> None:
        """A summary's statuses, saved after the events they caused (at least once)."""
        rows = [(feed_url, component_id, status) for component_id, status in statuses.items()]

        async def save(conn: psycopg.AsyncConnection) -> None:
            await conn.execute("DELETE FROM components WHERE feed_url = %s", (feed_url,))
            if rows:
                await conn.cursor().executemany("INSERT INTO components VALUES (%s, %s, %s)", rows)

        await self._tx(save)

    async def load_sources(self) -> dict[str, tuple[str, str]]:
        """Page root -> (kind, url) that detection chose for it."""

        async def load(conn: psycopg.AsyncConnection) -> dict[str, tuple[str, str]]:
            cursor = conn.cursor()
            await cursor.execute("SELECT page_url, kind, url FROM sources")
            return {page: (kind, url) for page, kind, url in await cursor.fetchall()}

        return await self._tx(load)

    async def save_source(self, page_url: str, kind: str, url: str) -> None:
        row = (page_url, kind, url, time.time())
        await self._tx(
            lambda conn: conn.execute(
                "INSERT INTO sources VALUES (%s, %s, %s, %s) ON CONFLICT (page_url) "
                "DO UPDATE SET kind = excluded.kind, url = excluded.url, detected_at = excluded.detected_at",
                row,
            )
        )

    # --- feeds ---

    async def load_feeds(self) -> dict[str, FeedRecord]:
        async def load(conn: psycopg.AsyncConnection) -> dict[str, FeedRecord]:
            cursor = conn.cursor()
            await cursor.execute(f"SELECT {', '.join(_FEED_COLUMNS)} FROM feeds")
            return {row[0]: FeedRecord(*row) for row in await cursor.fetchall()}

        return await self._tx(load)

    async def save_feed(self, record: FeedRecord, silent_keys: Iterable[int] = ()) -> None:
        """Records a poll's outcome. Key hashes recorded silently (a first poll's baseline) are
        committed at once with the feed's row; anything else about a feed waits for the next
        `flush()` (losing it costs one refetch, never an event)."""
        self._pending_feeds[record.url] = record
        keys = sorted(set(silent_keys))
        if keys:
            await self._save_feeds(keys)

    async def flush(self) -> None:
        if self._pending_feeds:
            await self._save_feeds([])

    async def _save_feeds(self, silent_keys: list[int]) -> None:
        records, self._pending_feeds = self._pending_feeds, {}
        rows = [astuple(record) for record in records.values()]

        async def save(conn: psycopg.AsyncConnection) -> None:
            if silent_keys:
                await conn.execute(_ADD_SEEN, (time.time(), silent_keys))
            await conn.cursor().executemany(_SAVE_FEED, rows)

        try:
            await self._tx(save)
        except StoreUnavailable:
            for url, record in records.items():  # kept for the next flush, unless a newer one is waiting
                self._pending_feeds.setdefault(url, record)
            raise

    # --- webhook deliveries ---

    async def load_deliveries(self) -> set[str]:
        cutoff = time.time() - DELIVERY_TTL.total_seconds()

        async def load(conn: psycopg.AsyncConnection) -> set[str]:
            cursor = conn.cursor()
            await cursor.execute("SELECT id FROM deliveries WHERE received_at >= %s", (cutoff,))
            return {row[0] for row in await cursor.fetchall()}

        return await self._tx(load)

    async def has_delivery(self, delivery_id: str) -> bool:
        """Whether any replica has recorded this webhook delivery id (within DELIVERY_TTL)."""
        cutoff = time.time() - DELIVERY_TTL.total_seconds()
        return bool(await self._query("SELECT 1 FROM deliveries WHERE id = %s AND received_at >= %s", (delivery_id, cutoff)))

    async def add_delivery(self, delivery_id: str) -> None:
        await self._query(_ADD_DELIVERY, (delivery_id, time.time()))
