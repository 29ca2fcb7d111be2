"""The default `Store`: durable state in one SQLite file: seen update keys, announced events, feed validators and
health, webhook delivery ids.

Reads and bulk writes run on one worker thread. A small write (an event, a webhook's
delivery id) is committed on the event loop when that thread is idle: with WAL and
synchronous=NORMAL it appends a few pages to the log and never syncs, cheaper than the hop
to the thread and back, which cost a third of a webhook's CPU. The connection is never
used by two threads at once. Checkpoints, which do sync (about 20 ms here), are never
automatic: a thread of their own runs them on a second connection, beside the writes.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import operator
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple, fields
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

import orjson

from status_monitor.model import Event, utc_iso
from status_monitor.storage.base import DELIVERY_TTL, FeedRecord, OutboxItem, StateError, StoredEvent, list_events_sql
from status_monitor.storage.seen import SeenSet, key_hash

log = logging.getLogger("monitor.state")

APPLICATION_ID = 0x53504D31  # "SPM1": marks the file as ours
SCHEMA_VERSION = 2  # 2: the notification outbox, component states, detected sources
CHECKPOINT_AFTER_ROWS = 1000  # rows written between two WAL checkpoints (about 2,000 pages)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (
    hash INTEGER PRIMARY KEY,  -- seen.key_hash() of an update key
    seen_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    provider TEXT NOT NULL,
    source TEXT NOT NULL,
    received_at TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_received ON events (received_at);
CREATE TABLE IF NOT EXISTS feeds (
    url TEXT PRIMARY KEY,
    etag TEXT,
    last_modified TEXT,
    last_status INTEGER,
    last_polled_at TEXT,
    consecutive_errors INTEGER NOT NULL DEFAULT 0,
    backoff_until REAL,
    entries INTEGER NOT NULL DEFAULT 0,
    gone INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY,
    received_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    target TEXT NOT NULL,  -- outputs.notify.target_id() of a notification URL
    event_key TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    kind TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (target, event_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS components (
    feed_url TEXT NOT NULL,  -- a page summary's URL
    component_id TEXT NOT NULL,
    status TEXT NOT NULL,
    PRIMARY KEY (feed_url, component_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sources (
    page_url TEXT PRIMARY KEY,  -- a status page's root, as configured
    kind TEXT NOT NULL,  -- what detection found there
    url TEXT NOT NULL,
    detected_at REAL NOT NULL
) WITHOUT ROWID;
"""

T = TypeVar("T")


_FEED_COLUMNS = [f.name for f in fields(FeedRecord)]
_feed_row = operator.attrgetter(*_FEED_COLUMNS)
# Feed rows go in as one JSON array of arrays a statement, as key hashes do (see _ADD_SEEN).
_SAVE_FEED = (
    f"INSERT OR REPLACE INTO feeds ({', '.join(_FEED_COLUMNS)}) "
    f"SELECT {', '.join(f'value ->> {n}' for n in range(len(_FEED_COLUMNS)))} FROM json_each(?)"
)


class SQLiteStore:
    """The `Store` on one SQLite file (see the module's docstring); ":memory:" keeps nothing.
    A writer (the default) holds `<path>.lock` while open, so a second monitor on the same
    file is refused, naming the first one's pid; `read_only` (--history) takes no lock, and
    never creates a file that does not exist."""

    shared = False  # one process owns the file: its in-memory caches are complete

    def __init__(self, path: str, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        self._lock: int | None = None  # the lock file's descriptor while this store writes
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="state")
        self._db: sqlite3.Connection | None = None
        self._pending_feeds: dict[str, FeedRecord] = {}
        self._queue: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future, bool]] = []
        self._drainer: asyncio.Task | None = None  # commits the queue; kept so it is not collected
        self._on_thread = 0  # jobs queued or running on the worker thread, which owns the connection meanwhile
        self._checkpointer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
        self._checkpoint_db: sqlite3.Connection | None = None  # the checkpoint thread's own
        self._checkpointing: asyncio.Future | None = None
        self._checkpointed_at = 0  # the connection's total_changes when the last checkpoint began

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        self._on_thread += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        finally:
            self._on_thread -= 1

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        if self.read_only and self.path != ":memory:":  # an empty memory database is no harm
            self._db = self._open_read_only()
            return
        if self.path != ":memory:":
            path = Path(self.path)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StateError(f"state file {self.path}: cannot create its folder ({exc.strerror})") from None
            self._lock = _take_lock(self.path)
        try:
            self._db = self._open_writer()
        except BaseException:
            self._release_lock()
            raise

    def _open_read_only(self) -> sqlite3.Connection:
        path = Path(self.path)
        if not path.is_file():
            raise StateError(
                f"state file {self.path}: does not exist (a mistyped --state? the monitor creates it when it first runs)"
            )
        db = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, check_same_thread=False)
        try:
            if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("database disk image is malformed")
            self._check(db)
            db.execute("PRAGMA busy_timeout=5000")
        except sqlite3.DatabaseError as exc:
            db.close()
            raise StateError(f"state file {self.path}: not a usable SQLite database ({exc})") from None
        except StateError:
            db.close()
            raise
        return db

    def _open_writer(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise StateError(f"state file {self.path}: cannot be opened ({exc}); is its folder writable?") from None
        try:
            if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("database disk image is malformed")
            self._check(db)
            _require_json(db, self.path)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA wal_autocheckpoint=0")  # a commit on the loop must never sync: see _drain
            db.execute("PRAGMA busy_timeout=5000")
            with _transaction(db):
                _create(db)
                db.execute(f"PRAGMA application_id={APPLICATION_ID}")
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            db.close()
            reason = str(exc)
            if "readonly" in reason or "unable to open" in reason:
                raise StateError(f"state file {self.path}: cannot be written ({reason}); is its folder writable?") from None
            raise StateError(f"state file {self.path}: not a usable SQLite database ({reason})") from None
        except StateError:
            db.close()
            raise
        return db

    def _release_lock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing the descriptor releases the lock
            self._lock = None

    def _check(self, db: sqlite3.Connection) -> None:
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables and app_id != APPLICATION_ID:
            raise StateError(f"state file {self.path}: is a database of another program; not touching it")
        if version > SCHEMA_VERSION:
            raise StateError(
                f"state file {self.path}: written by a newer version (schema {version}, this one knows {SCHEMA_VERSION})"
            )

    async def close(self) -> None:
        if self._db is not None:
            await self.flush()
            if self._checkpointing is not None:
                await self._checkpointing
            if self._checkpoint_db is not None:
                await asyncio.get_running_loop().run_in_executor(self._checkpointer, self._checkpoint_db.close)
            await self._run(self._db.close)  # the last connection: SQLite checkpoints and removes the log
            self._db = None
        self._release_lock()
        self._checkpointer.shutdown(wait=True)
        self._executor.shutdown(wait=True)

    async def health(self) -> dict[str, Any]:
        """{"backend", "ok"}: a file opened at start stays reachable."""
        return {"backend": "sqlite", "ok": self._db is not None}

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, "SQLiteStore.open() first"
        return self._db

    # --- seen keys and events ---

    async def load_seen_keys(self) -> SeenSet:
        return await self._run(lambda: SeenSet.from_ascending(row[0] for row in self.db.execute("SELECT hash FROM seen ORDER BY hash")))

    async def add_keys(self, keys: Iterable[str], delivery_id: str | None = None) -> None:
        seen = _seen_params([key_hash(key) for key in keys])
        delivery = _delivery_rows(delivery_id)

        def add(db: sqlite3.Connection) -> None:
            db.execute(_ADD_SEEN, seen)
            db.executemany(_ADD_DELIVERY, delivery)

        await self._write(add, small=True)

    async def add_event(
        self,
        event: Event,
        delivery_id: str | None = None,
        outbox: Iterable[OutboxItem] = (),
        announce: Callable[[Event], None] | None = None,
    ) -> int | None:
        """The event, its keys, the webhook delivery that brought it and the notifications it
        calls for, in one transaction: none of them without the others. `announce(event)` is
        called once the event row is in, before the commit. Returns the event's id in the
        events table; None, and no announcement, when a key of it was seen already (then
        only its other keys and the delivery id are stored)."""
        hashes = {key_hash(key) for key in event.keys}
        seen = _seen_params(hashes)
        delivery = _delivery_rows(delivery_id)
        data = event.to_dict()
        row = (event.key, event.provider, event.source, data["received_at"], orjson.dumps(data).decode())
        sends = [astuple(item) for item in outbox]

        def add(db: sqlite3.Connection) -> int | None:
            db.executemany(_ADD_DELIVERY, delivery)
            if db.execute(_ADD_SEEN, seen).rowcount < len(hashes):
                return None  # a key of it was seen already
            cursor = db.execute(
                "INSERT OR IGNORE INTO events (key, provider, source, received_at, body) VALUES (?, ?, ?, ?, ?)", row
            )
            if not cursor.rowcount:
                return None
            db.executemany("INSERT OR IGNORE INTO outbox VALUES (?, ?, ?, ?, ?, ?)", sends)
            if announce is not None:
                announce(event)
            return cursor.lastrowid

        return await self._write(add, small=True)

    async def list_events(
        self,
        provider: str | None = None,
        source: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
        oldest_first: bool = False,
    ) -> list[StoredEvent]:
        """The newest `limit` events that match, newest or oldest first."""
        return await self._run(self._list_events, provider, source, since, limit, oldest_first)

    def _list_events(self, provider, source, since, limit, oldest_first) -> list[StoredEvent]:
        rows = self.db.execute(*list_events_sql(provider, source, since, limit, oldest_first, "?")).fetchall()
        return [_stored(*row) for row in rows]

    async def event_providers(self) -> list[str]:
        """The providers that have stored events, sorted by name (case ignored)."""
        rows = await self._run(lambda: self.db.execute("SELECT DISTINCT provider FROM events").fetchall())
        return sorted({row[0] for row in rows}, key=str.casefold)

    async def events_after(self, event_id: int, limit: int) -> list[StoredEvent]:
        """The `limit` events stored right after `event_id`, oldest first: a resumed stream."""
        rows = await self._run(
            lambda: self.db.execute(
                "SELECT id, key, body FROM events WHERE id > ? ORDER BY id LIMIT ?", (event_id, limit)
            ).fetchall()
        )
        return [_stored(*row) for row in rows]

    async def prune(self, retention_days: int) -> None:
        await self._run(self._prune, retention_days)

    def _prune(self, retention_days: int) -> None:
        cutoff = datetime.now(timezone.utc) - timedelta(days=retention_days)
        with _transaction(self.db):
            self.db.execute("DELETE FROM events WHERE received_at < ?", (utc_iso(cutoff),))
            self.db.execute("DELETE FROM deliveries WHERE received_at < ?", (time.time() - DELIVERY_TTL.total_seconds(),))

    # --- notification outbox ---

    async def load_outbox(self) -> list[OutboxItem]:
        return await self._run(
            lambda: [OutboxItem(*row) for row in self.db.execute("SELECT target, event_key, title, body, kind, created_at FROM outbox ORDER BY created_at")]
        )

    async def remove_outbox(self, items: Iterable[OutboxItem]) -> None:
        rows = [(item.target, item.event_key) for item in items]
        await self._write(
            lambda db: db.executemany("DELETE FROM outbox WHERE target = ? AND event_key = ?", rows), small=True
        )

    # --- component states and detected sources ---

    async def load_components(self) -> dict[str, dict[str, str]]:
        def load() -> dict[str, dict[str, str]]:
            found: dict[str, dict[str, str]] = {}
            for feed_url, component_id, status in self.db.execute("SELECT feed_url, component_id, status FROM components"):
                found.setdefault(feed_url, {})[component_id] = status
            return found

        return await self._run(load)

    async def save_components(self, feed_url: str, statuses: dict[str, str]) -> None:
        """A summary's statuses, saved after the events they caused (at least once)."""
        rows = [(feed_url, component_id, status) for component_id, status in statuses.items()]

        def save(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM components WHERE feed_url = ?", (feed_url,))
            db.executemany("INSERT INTO components VALUES (?, ?, ?)", rows)

        await self._write(save)

    async def load_sources(self) -> dict[str, tuple[str, str]]:
        """Page root -> (kind, url) that detection chose for it."""
        return await self._run(
            lambda: {page: (kind, url) for page, kind, url in self.db.execute("SELECT page_url, kind, url FROM sources")}
        )

    async def save_source(self, page_url: str, kind: str, url: str) -> None:
        row = (page_url, kind, url, time.time())
        await self._write(lambda db: db.execute("INSERT OR REPLACE INTO sources VALUES (?, ?, ?, ?)", row))

    # --- feeds ---

    async def load_feeds(self) -> dict[str, FeedRecord]:
        return await self._run(self._load_feeds)

    def _load_feeds(self) -> dict[str, FeedRecord]:
        rows = self.db.execute(f"SELECT {', '.join(_FEED_COLUMNS)} FROM feeds").fetchall()
        records = {}
        for row in rows:
            record = FeedRecord(*row)
            record.gone = bool(record.gone)
            records[record.url] = record
        return records

    async def save_feed(self, record: FeedRecord, silent_keys: Iterable[int] = ()) -> None:
        """Records a poll's outcome. Key hashes recorded silently (a first poll's baseline) are
        committed at once with the feed's row, after the poll's events; anything else about
        a feed (validators, health) waits for the next `flush()`: losing it in a crash costs
        one refetch, never an event, and a 304 then costs no disk write."""
        self._pending_feeds[record.url] = record
        keys = list(silent_keys)
        if keys:
            await self._write(self._save_feeds(self._take_pending(), keys))

    async def flush(self) -> None:
        if self._pending_feeds:
            await self._write(self._save_feeds(self._take_pending(), []))

    def _take_pending(self) -> list[tuple]:
        rows = [_feed_row(record) for record in self._pending_feeds.values()]
        self._pending_feeds.clear()
        return rows

    @staticmethod
    def _save_feeds(rows: list[tuple], silent_keys: list[int]) -> Callable[[sqlite3.Connection], None]:
        seen = _seen_params(silent_keys)
        feeds = orjson.dumps(rows).decode()

        def save(db: sqlite3.Connection) -> None:
            if silent_keys:
                db.execute(_ADD_SEEN, seen)
            if rows:
                db.execute(_SAVE_FEED, (feeds,))

        return save

    # --- webhook deliveries ---

    async def load_deliveries(self) -> set[str]:
        cutoff = time.time() - DELIVERY_TTL.total_seconds()
        return await self._run(
            lambda: {r[0] for r in self.db.execute("SELECT id FROM deliveries WHERE received_at >= ?", (cutoff,))}
        )

    async def has_delivery(self, delivery_id: str) -> bool:
        """Whether this delivery id is stored; the receiver's set loaded at start already
        holds every one of a file that one process owns (`shared` is False)."""
        cutoff = time.time() - DELIVERY_TTL.total_seconds()
        return await self._run(
            lambda: self.db.execute("SELECT 1 FROM deliveries WHERE id = ? AND received_at >= ?", (delivery_id, cutoff)).fetchone()
            is not None
        )

    async def add_delivery(self, delivery_id: str) -> None:
        rows = _delivery_rows(delivery_id)
        await self._write(lambda db: db.executemany(_ADD_DELIVERY, rows), small=True)

    # --- group commit ---

    async def _write(self, op: Callable[[sqlite3.Connection], T], small: bool = False) -> T:
        """Returns `op`'s result once it is committed. Writes that arrive while a commit is
        under way are committed together in the next transaction: one commit for many webhooks.
        `small` (a few rows) lets the commit run on the loop (see the module's docstring)."""
        done = asyncio.get_running_loop().create_future()
        self._queue.append((op, done, small))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
        return await done

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            ops = [op for op, _, _ in batch]
            try:
                if self._on_thread == 0 and all(small for _, _, small in batch):
                    results = self._apply(ops)
                else:
                    results = await self._run(self._apply, ops)
            except Exception as exc:
                for _, done, _ in batch:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for (_, done, _), result in zip(batch, results):
                    if not done.done():
                        done.set_result(result)
            self._maybe_checkpoint()

    def _maybe_checkpoint(self) -> None:
        db = self._db  # None once closed
        if db is None or self.path == ":memory:" or db.total_changes - self._checkpointed_at < CHECKPOINT_AFTER_ROWS:
            return
        if self._checkpointing is None or self._checkpointing.done():
            self._checkpointed_at = db.total_changes
            self._checkpointing = asyncio.get_running_loop().run_in_executor(self._checkpointer, self._checkpoint)

    def _checkpoint(self) -> None:
        """Copies the log into the database file (PASSIVE: it waits for no one, and frames
        written meanwhile wait for the next one). A failure only leaves the log longer."""
        try:
            if self._checkpoint_db is None:
                self._checkpoint_db = sqlite3.connect(self.path, isolation_level=None)
            self._checkpoint_db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            log.warning("state file %s: checkpoint failed (%s); will try again", self.path, exc)

    def _apply(self, ops: list[Callable[[sqlite3.Connection], Any]]) -> list[Any]:
        with _transaction(self.db):
            return [op(self.db) for op in ops]


def _stored(event_id: int, key: str, body: str) -> StoredEvent:
    return StoredEvent(event_id, Event.from_dict(orjson.loads(body), keys=(key,)))


# Key hashes go in as one JSON array a statement (SQLite's JSON functions, built in since
# 3.38): executemany lets go of the GIL for each row and takes it back, and while the parse
# thread runs each taking back can wait out a switch interval (5 ms). Inserting 225,000
# hashes beside a busy Python thread took 487 s row by row and 15 s this way.
_ADD_SEEN = "INSERT OR IGNORE INTO seen SELECT value, ? FROM json_each(?)"
_ADD_DELIVERY = "INSERT OR IGNORE INTO deliveries VALUES (?, ?)"


def _delivery_rows(delivery_id: str | None) -> list[tuple[str, float]]:
    return [] if delivery_id is None else [(delivery_id, time.time())]


def _seen_params(hashes: list[int] | set[int]) -> tuple[float, str]:
    """_ADD_SEEN's parameters: the time now (Unix seconds) and the 64-bit hashes as a JSON array."""
    return time.time(), orjson.dumps(list(hashes)).decode()


def _require_json(db: sqlite3.Connection, path: str) -> None:
    """Raises StateError if this SQLite lacks the JSON functions _ADD_SEEN uses."""
    try:
        db.execute("SELECT count(*) FROM json_each('[]')")
    except sqlite3.OperationalError:
        raise StateError(
            f"state file {path}: this Python's SQLite {sqlite3.sqlite_version} lacks the JSON functions (3.38 and later have them)"
        ) from None


def _take_lock(path: str) -> int:
    """Locks `<path>.lock` for this process (flock: released when the process ends, however it
    ends) and writes our pid in it. Raises StateError naming the pid that holds it."""
    lock_path = f"{path}.lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StateError(f"state file {path}: cannot create {lock_path} ({exc.strerror}); is its folder writable?") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise StateError(
            f"state file {path}: in use by another monitor (pid {holder}); stop it first, or give this one"
            " its own --state (reading it with --history is fine)"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _create(db: sqlite3.Connection) -> None:
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on error (the connection is in autocommit mode)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
