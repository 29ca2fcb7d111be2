"""The storage interface (`status_monitor.storage.Store`), tested through the interface alone:
every backend in `conftest.STORE_BACKENDS` runs these same tests."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

import pytest
from conftest import STORE_BACKENDS

from status_monitor.model import Event
from status_monitor.storage import FeedRecord, OutboxItem, StateError, Store, open_store
from status_monitor.storage.seen import key_hash


def event(key: str, provider: str = "GitHub", received: datetime | None = None, **fields) -> Event:
    return Event(
        provider=provider, title=f"Incident {key}", status="Investigating", message=f"message {key}",
        incident_id=f"inc-{key}", url=f"https://status.example.test/incidents/{key}", source="rss",
        keys=(key, f"other:{key}"), received_at=received or datetime.now(timezone.utc), **fields,
    )


@pytest.fixture(params=STORE_BACKENDS)
def location(request, tmp_path):
    """A `--state` value for a fresh, empty state of each backend."""
    return request.param(tmp_path)


def run(coro):
    return asyncio.run(coro)


async def opened(location: str) -> Store:
    store = open_store(location)
    await store.open()
    return store


def test_events_keys_deliveries_and_outbox_survive_a_reopen(location):
    sends = [OutboxItem("target-a", "k1", "title", "body", "info", 1.0), OutboxItem("target-b", "k1", "t", "b", "info", 2.0)]
    original = event("k1", components=["API", "Git"], impact="major", event_type="incident.updated")

    async def write() -> int | None:
        store = await opened(location)
        try:
            first = await store.add_event(original, delivery_id="delivery-1", outbox=sends)
            assert await store.add_event(event("k1")) is None  # one event a key
            await store.add_keys(["silent-key"], delivery_id="delivery-2")
            await store.add_delivery("delivery-3")
            return first
        finally:
            await store.close()

    async def read(first: int) -> None:
        store = await opened(location)
        try:
            seen = await store.load_seen_keys()
            for key in ("k1", "other:k1", "silent-key"):
                assert key in seen
            assert "never" not in seen
            assert await store.load_deliveries() == {"delivery-1", "delivery-2", "delivery-3"}
            assert await store.load_outbox() == sends
            await store.remove_outbox(sends[:1])
            assert await store.load_outbox() == sends[1:]
            [stored] = await store.list_events()
            assert stored.id == first and stored.event.key == "k1"
            assert stored.event.to_dict() == original.to_dict()
        finally:
            await store.close()

    first = run(write())
    assert first is not None
    run(read(first))


def test_listing_filters_orders_and_resumes_by_id(location):
    now = datetime.now(timezone.utc)

    async def check() -> None:
        store = await opened(location)
        try:
            ids = []
            for n in range(6):
                provider = "GitHub" if n % 2 == 0 else "OpenAI"
                ids.append(await store.add_event(event(f"e{n}", provider, received=now - timedelta(hours=6 - n))))
            assert ids == sorted(ids) and len(set(ids)) == 6
            newest = await store.list_events(limit=2)
            assert [s.event.key for s in newest] == ["e5", "e4"]
            oldest_first = await store.list_events(limit=3, oldest_first=True)
            assert [s.event.key for s in oldest_first] == ["e3", "e4", "e5"]
            github = await store.list_events(provider="github")  # any case
            assert [s.event.key for s in github] == ["e4", "e2", "e0"]
            recent = await store.list_events(since=now - timedelta(hours=2, minutes=30))
            assert [s.event.key for s in recent] == ["e5", "e4"]
            after = await store.events_after(ids[1], 3)
            assert [s.id for s in after] == ids[2:5]
            assert await store.events_after(ids[-1], 10) == []
        finally:
            await store.close()

    run(check())


def test_prune_drops_old_events_and_keeps_their_keys(location):
    now = datetime.now(timezone.utc)

    async def check() -> None:
        store = await opened(location)
        try:
            await store.add_event(event("old", received=now - timedelta(days=40)))
            await store.add_event(event("new", received=now))
            await store.prune(retention_days=30)
            assert [s.event.key for s in await store.list_events()] == ["new"]
            assert "old" in await store.load_seen_keys()  # never announced again
        finally:
            await store.close()

    run(check())


def test_feeds_components_and_sources_round_trip(location):
    record = FeedRecord(url="https://status.example.test/history.atom", etag='"v1"', last_modified="Mon, 30 Nov 2026 10:00:00 GMT",
                        last_status=200, last_polled_at="2026-11-30T10:00:00Z", consecutive_errors=2, backoff_until=123.5,
                        entries=25, gone=False)

    async def write() -> None:
        store = await opened(location)
        try:
            await store.save_feed(record)  # validators wait for flush() or close()
            await store.save_feed(FeedRecord(url="https://b.test/feed", gone=True), silent_keys=[key_hash("baseline")])
            await store.save_components("https://s.test/api/v2/summary.json", {"c1": "operational", "c2": "major_outage"})
            await store.save_components("https://s.test/api/v2/summary.json", {"c1": "degraded_performance"})
            await store.save_source("https://s.test", "statuspage-api", "https://s.test/api/v2/incidents.json")
        finally:
            await store.close()

    async def read() -> None:
        store = await opened(location)
        try:
            feeds = await store.load_feeds()
            assert feeds[record.url] == record
            assert feeds["https://b.test/feed"].gone is True
            assert "baseline" in await store.load_seen_keys()
            assert await store.load_components() == {"https://s.test/api/v2/summary.json": {"c1": "degraded_performance"}}
            assert await store.load_sources() == {"https://s.test": ("statuspage-api", "https://s.test/api/v2/incidents.json")}
        finally:
            await store.close()

    run(write())
    run(read())


def test_a_baselines_hashes_are_stored_exactly_whatever_their_value(location):
    """A first poll's key hashes, the ends of the 64-bit range and repeats included, come
    back exactly after a reopen (they go to the store in bulk, not row by row)."""
    ends = [-2**63, -2**63 + 1, -1, 0, 1, 2**63 - 2, 2**63 - 1]
    many = [key_hash(f"key {n}") for n in range(5000)]

    async def write() -> None:
        store = await opened(location)
        try:
            await store.save_feed(FeedRecord(url="https://a.test/feed"), silent_keys=ends + many + ends)
        finally:
            await store.close()

    async def read() -> list[int]:
        store = await opened(location)
        try:
            seen = await store.load_seen_keys()
            return [value for value in ends + many if not seen.contains_hash(value)] + [len(seen)]
        finally:
            await store.close()

    run(write())
    assert run(read()) == [len(set(ends + many))]


def test_concurrent_writers_commit_every_event_once(location):
    async def check() -> None:
        store = await opened(location)
        try:
            results = await asyncio.gather(*(store.add_event(event(f"c{n % 50}")) for n in range(200)))
            assert len([r for r in results if r is not None]) == 50
            assert len(await store.list_events(limit=1000)) == 50
        finally:
            await store.close()

    run(check())


def test_an_unknown_state_url_scheme_is_a_clear_error():
    with pytest.raises(StateError, match="no storage backend for 'redis'"):
        open_store("redis://localhost/0")


def update(key: str, *more: str) -> Event:
    """An update under `key` and any other keys given (other sources' names for it)."""
    return Event("P", f"title {key}", "Investigating", "m", f"inc-{key}", None, "rss", (key, *more),
                 received_at=datetime.now(timezone.utc))


def test_an_event_is_stored_and_announced_once_with_its_delivery_and_outbox(location):
    announced = []

    async def scenario():
        store = await opened(location)
        sends = [OutboxItem("t1", "k1", "title", "body", "info", time.time())]
        first = await store.add_event(update("k1", "alias-1"), "delivery-1", sends, announce=announced.append)
        again = await store.add_event(update("k1"), None, sends, announce=announced.append)
        by_alias = await store.add_event(update("k2", "alias-1"), None, (), announce=announced.append)
        result = (first, again, by_alias, await store.load_outbox(), await store.load_deliveries(),
                  await store.has_delivery("delivery-1"), await store.has_delivery("other"), await store.load_seen_keys())
        await store.close()
        return result

    first, again, by_alias, outbox, deliveries, has, has_other, seen = run(scenario())
    assert isinstance(first, int) and again is None and by_alias is None
    assert [e.key for e in announced] == ["k1"]
    assert [(o.target, o.event_key) for o in outbox] == [("t1", "k1")]
    assert deliveries == {"delivery-1"} and has and not has_other
    assert all(key in seen for key in ("k1", "alias-1", "k2"))


def test_filtered_keys_and_a_lone_delivery_are_recorded(location):
    async def scenario():
        store = await opened(location)
        await store.add_keys(["filtered-1", "filtered-2"], delivery_id="d-1")
        await store.add_delivery("d-2")
        result = await store.load_seen_keys(), await store.load_deliveries(), await store.list_events()
        await store.close()
        return result

    seen, deliveries, events = run(scenario())
    assert "filtered-1" in seen and "filtered-2" in seen
    assert deliveries == {"d-1", "d-2"} and events == []


def test_health_reports_the_backend(location):
    async def scenario():
        store = await opened(location)
        health = await store.health()
        await store.close()
        return health

    health = run(scenario())
    assert health["ok"] is True
    assert health["backend"] == ("postgresql" if location.startswith("postgresql") else "sqlite")
