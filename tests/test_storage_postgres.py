"""What only a database that replicas share must do, on a real PostgreSQL server
(tests/pgserver.py): replicas that announce an update once, ids that become visible in order,
migrations when replicas start together, an outage that fails clearly and heals by itself,
feed leases with fencing and heartbeats. The interface itself is tested on every backend in
test_storage.py."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import psycopg
import pytest
from pgserver import PASSWORD

from status_monitor.model import Event
from status_monitor.storage import FeedRecord, StateError, StoreUnavailable, open_store
from status_monitor.storage.postgres import IN_FLIGHT_RETRY, SCHEMA_VERSION, PostgresStore
from status_monitor.storage.seen import key_hash


def event(key: str, *more: str, provider: str = "P", source: str = "rss", days_ago: float = 0) -> Event:
    when = datetime.now(timezone.utc) - timedelta(days=days_ago)
    return Event(provider, f"title {key}", "Investigating", "m", f"inc-{key}", None, source, (key, *more), received_at=when)


def run(scenario):
    return asyncio.run(scenario())


async def opened(location: str):
    store = open_store(location)
    await store.open()
    return store


# --- PostgreSQL: replicas sharing one database ---

def test_replicas_racing_on_the_same_updates_announce_each_once(pg_url):
    """Five replicas (five stores, each with its own pool) offer the same 40 updates at once,
    each under a mix of keys (a webhook's and a feed's name for one update)."""
    announced: list[tuple[int, str]] = []

    async def scenario():
        stores = [await opened(pg_url) for _ in range(5)]

        async def replica(n: int, store: PostgresStore) -> None:
            for i in ((n * 8 + step) % 40 for step in range(40)):  # each starts elsewhere, then meets the others
                keys = (f"feed:{i}", f"hook:{i}") if n % 2 else (f"hook:{i}", f"feed:{i}")
                await store.add_event(event(*keys), announce=lambda e, n=n: announced.append((n, e.key)))

        await asyncio.gather(*(replica(n, store) for n, store in enumerate(stores)))
        result = await stores[0].list_events(limit=1000)
        for store in stores:
            await store.close()
        return result

    stored = run(scenario)
    updates = sorted(key.split(":")[1] for _, key in announced)
    assert updates == sorted(str(i) for i in range(40))  # each once, none lost
    assert len(stored) == 40
    assert len({n for n, _ in announced}) > 1  # the race was real: more than one replica won some


def test_a_replica_that_dies_before_its_commit_leaves_the_update_to_another(pg_url):
    """An announcement that fails before the commit (here an output that raises, as a crash
    would end the transaction) stores nothing, so the next replica announces the update."""
    def crash(_: Event) -> None:
        raise KeyboardInterrupt("replica killed mid-announcement")

    announced = []

    async def scenario():
        a, b = await opened(pg_url), await opened(pg_url)
        with pytest.raises(KeyboardInterrupt):
            await a.add_event(event("k1"), "delivery-1", announce=crash)
        taken = await b.has_delivery("delivery-1")
        event_id = await b.add_event(event("k1"), "delivery-1", announce=announced.append)
        await a.close()
        await b.close()
        return taken, event_id

    taken, event_id = run(scenario)
    assert not taken and event_id is not None and [e.key for e in announced] == ["k1"]


def test_an_older_snapshot_is_stale_on_every_replica(pg_url):
    """incident.io restates an incident's whole state; a retry of an older snapshot reaching
    replica B after A announced a newer one must not roll the incident back."""
    base = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)

    def snapshot(key: str, minutes: int) -> Event:
        found = event(key)
        found.snapshot, found.occurred_at, found.incident_id = True, base + timedelta(minutes=minutes), "inc-1"
        return found

    async def scenario():
        a, b = await opened(pg_url), await opened(pg_url)
        results = [
            await a.add_event(snapshot("s-10", 10)),
            await b.add_event(snapshot("s-5", 5)),  # older than A's: stale
            await b.add_event(snapshot("s-10b", 10)),  # as new as A's: another update of that moment
            await a.add_event(snapshot("s-20", 20)),
        ]
        seen = await b.load_seen_keys()
        await a.close()
        await b.close()
        return results, seen

    results, seen = run(scenario)
    assert [r is not None for r in results] == [True, False, True, True]
    assert "s-5" in seen  # recorded, so that its retries are duplicates


def test_ids_become_visible_in_order(pg_url):
    """Replica A has taken an id and not committed; replica B's event, arriving meanwhile, must
    not become visible before A's: a stream resuming after B's id would skip A's for good."""
    a_inside, release = threading.Event(), threading.Event()
    visible_while_a_open: list = []

    def hold(_: Event) -> None:
        a_inside.set()
        release.wait(10)

    def replica_a() -> None:
        async def go():
            store = await opened(pg_url)
            await store.add_event(event("a"), announce=hold)
            await store.close()
        asyncio.run(go())

    def replica_b() -> None:
        async def go():
            store = await opened(pg_url)
            await store.add_event(event("b"))
            await store.close()
        asyncio.run(go())

    async def read():
        store = await opened(pg_url)
        found = await store.events_after(0, 10)
        await store.close()
        return [(s.id, s.event.key) for s in found]

    first = threading.Thread(target=replica_a)
    first.start()
    assert a_inside.wait(10)
    second = threading.Thread(target=replica_b)
    second.start()
    time.sleep(0.5)  # B's transaction runs now, while A holds its id
    visible_while_a_open.extend(run(read))
    release.set()
    first.join(10)
    second.join(10)
    final = run(read)
    assert visible_while_a_open == []
    assert [key for _, key in final] == ["a", "b"] and final[0][0] < final[1][0]


def test_replicas_starting_at_once_migrate_once(pg_url):
    async def scenario():
        stores = await asyncio.gather(*(opened(pg_url) for _ in range(6)))
        for store in stores:
            await store.close()

    run(scenario)
    with psycopg.connect(pg_url) as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == list(range(1, SCHEMA_VERSION + 1))


def test_a_database_of_a_newer_schema_is_refused(pg_url):
    run(lambda: _open_close(pg_url))
    with psycopg.connect(pg_url) as conn:
        conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (SCHEMA_VERSION + 5,))
    with pytest.raises(StateError, match="newer version"):
        run(lambda: _open_close(pg_url))


async def _open_close(url: str) -> None:
    store = await opened(url)
    await store.close()


def test_a_wrong_password_or_absent_server_fails_start_up_clearly_without_the_password(pg_cluster, pg_url):
    wrong = pg_url.replace(PASSWORD, "not-the-Password-42")
    with pytest.raises(StateError) as refused:
        run(lambda: _open_close(wrong))
    assert "password authentication failed" in str(refused.value)
    assert "not-the-Password-42" not in str(refused.value) and "monitor:***@" in str(refused.value)
    parts = urlsplit(pg_url)
    down = pg_url.replace(f":{parts.port}/", f":{_closed_port()}/")
    with pytest.raises(StateError) as absent:
        run(lambda: _open_close(down))
    assert PASSWORD not in str(absent.value) and "connection" in str(absent.value).lower()


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_outage_raises_unavailable_and_the_store_heals_by_itself(pg_cluster, pg_url):
    database = urlsplit(pg_url).path.lstrip("/")

    async def scenario():
        store = await opened(pg_url)
        await store.add_event(event("before"))
        pg_cluster.refuse_connections(database)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as down:
            await store.add_event(event("during"))
        waited = time.monotonic() - started
        health_down = await store.health()
        await store.save_feed(FeedRecord("https://x.test/f", etag="e1"))
        with pytest.raises(StoreUnavailable):
            await store.flush()
        pg_cluster.allow_connections(database)
        deadline = time.monotonic() + 30
        while not (await store.health())["ok"] and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await store.add_event(event("during"))
        await store.flush()  # the record kept through the outage is written now
        result = down.value, waited, health_down, await store.list_events(oldest_first=True), await store.load_feeds()
        await store.close()
        return result

    error, waited, health_down, events, feeds = run(scenario)
    assert PASSWORD not in str(error) and "unavailable" in str(error)
    assert health_down["ok"] is False and PASSWORD not in str(health_down)
    assert waited < 15
    assert [s.event.key for s in events] == ["before", "during"]
    assert feeds["https://x.test/f"].etag == "e1"


# --- PostgreSQL: feed leases ---

def test_a_due_feed_is_claimed_by_one_replica_and_its_record_is_shared(pg_url):
    url = "https://x.test/feed"

    async def scenario():
        a, b = await opened(pg_url), await opened(pg_url)
        claims = await asyncio.gather(a.claim_feed(url, 60), b.claim_feed(url, 60))
        winner = a if claims[0].token is not None else b
        loser = b if winner is a else a
        first = claims[0] if winner is a else claims[1]
        lost = claims[1] if winner is a else claims[0]
        record = FeedRecord(url, etag='"v1"', last_status=200, last_polled_at="2026-11-30T12:00:00Z", consecutive_errors=1)
        stored = await winner.complete_feed(record, [key_hash("baseline")], first.token, time.time() - 1)
        later = await loser.claim_feed(url, 60)  # due again (due_at in the past): the other replica takes it
        result = first, lost, stored, later, await loser.load_seen_keys()
        await a.close()
        await b.close()
        return result

    first, lost, stored, later, seen = run(scenario)
    assert first.token is not None and first.known is False and first.record.etag is None
    assert lost.token is None and 0 < lost.wait <= IN_FLIGHT_RETRY  # the winner is polling it: ask again soon
    assert stored is True
    assert later.token is not None and later.known is True and later.record.etag == '"v1"'
    assert later.record.consecutive_errors == 1 and seen.contains_hash(key_hash("baseline"))


def test_a_replica_asking_with_grace_waits_it_out(pg_url):
    url = "https://x.test/feed"

    async def scenario():
        a, b = await opened(pg_url), await opened(pg_url)
        first = await a.claim_feed(url, 10)
        await a.complete_feed(FeedRecord(url), [], first.token, time.time() - 2)  # due 2 s ago
        early = await b.claim_feed(url, 10, grace=5)  # not its first choice: 3 s to go
        taken = await a.claim_feed(url, 10)  # its first choice takes it at once
        await a.close()
        await b.close()
        return early, taken

    early, taken = run(scenario)
    assert early.token is None and 2.5 < early.wait <= 3
    assert taken.token is not None


def test_a_lapsed_lease_is_taken_over_and_the_old_holder_is_fenced_off(pg_url):
    url = "https://x.test/feed"

    async def scenario():
        a, b = await opened(pg_url), await opened(pg_url)
        held = await a.claim_feed(url, 60)
        refused = await b.claim_feed(url, 60)
        async with b.pool.connection() as conn:  # A stopped beating: its lease and due time pass
            await conn.execute("UPDATE feeds SET lease_until = %s, due_at = %s", (time.time() - 1, time.time() - 1))
        taken = await b.claim_feed(url, 60)
        late = await a.complete_feed(FeedRecord(url, etag='"stale"'), [key_hash("late")], held.token, time.time() + 60)
        done = await b.complete_feed(FeedRecord(url, etag='"fresh"'), [], taken.token, time.time() + 60)
        result = refused, taken, late, done, await a.load_feeds(), await a.load_seen_keys()
        await a.close()
        await b.close()
        return result

    refused, taken, late, done, feeds, seen = run(scenario)
    assert refused.token is None and taken.token is not None
    assert late is False and done is True
    assert feeds["https://x.test/feed"].etag == '"fresh"' and not seen.contains_hash(key_hash("late"))


def test_heartbeats_count_the_fleet_and_a_clean_stop_hands_leases_back(pg_url):
    url = "https://x.test/feed"

    async def scenario():
        a, b = await opened(pg_url), await opened(pg_url)
        await a.join_fleet()
        await b.join_fleet()
        await a.claim_feed(url, 60)
        await a._tx(a._beat)
        fleet = dict(a.fleet)
        await a.close()  # hands its lease back and leaves the fleet
        async with b.pool.connection() as conn:
            lease = await (await conn.execute("SELECT lease_until FROM feeds")).fetchone()
        await b._tx(b._beat)
        after = dict(b.fleet)
        await b.close()
        return fleet, lease, after

    fleet, lease, after = run(scenario)
    assert fleet["replicas"] == 2 and fleet["feeds_held"] == 1 and fleet["replica_id"]
    assert lease == (None,) and after["replicas"] == 1 and after["feeds_held"] == 0
