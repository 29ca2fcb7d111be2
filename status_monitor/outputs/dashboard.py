"""The dashboard: the page at `/` (static files, no build step), the JSON behind it
(`/api/providers`) and the live stream of new events (`/events/stream`, server-sent events
that resume after the last event id a browser saw, from the store: no gaps, no repeats)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Iterable
from urllib.parse import urlsplit

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from starlette.background import BackgroundTask

from status_monitor.model import Event, OpenIncident, utc_iso, web_url
from status_monitor.redact import redact_url

if TYPE_CHECKING:
    from status_monitor.stats import FeedStatus
    from status_monitor.storage import Store

STATIC = Path(__file__).resolve().parent / "static"
KEEPALIVE = 15.0  # seconds between two comments on an idle stream: proxies keep it open, dead clients show
BACKLOG_PAGE = 500  # events read from the store at a time while a stream catches up
MAX_QUEUED = 1000  # events a browser may fall behind before it is cut off (it then resumes from the store)
RECONNECT_MS = 1000  # what browsers are told to wait before reconnecting
WAKE = object()  # queued to a stream: read the store for events committed after the last one sent


@dataclass(eq=False)
class _Subscriber:
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    cut_off: bool = False


class EventStream:
    """Hands each committed event to every connected browser, at most `max_streams` at once."""

    def __init__(self, store: Store, max_streams: int = 100) -> None:
        self._store = store
        self._max_streams = max_streams
        self._subscribers: set[_Subscriber] = set()
        self._closed = False

    def wake(self, event_id: int) -> None:
        """Replicas: an event was committed somewhere (a NOTIFY), or notifications may have
        been missed (0, after the listener reconnected). Each stream reads the store after the
        last id it sent: ids become visible in order there, so it skips none and repeats none."""
        for subscriber in self._subscribers:
            if not subscriber.cut_off and subscriber.queue.empty():  # one pending wake reads everything
                subscriber.queue.put_nowait(WAKE)

    def subscribe(self) -> _Subscriber | None:
        """A place among the streams, or None when all `max_streams` are taken."""
        if len(self._subscribers) >= self._max_streams:
            return None
        subscriber = _Subscriber()
        self._subscribers.add(subscriber)
        if self._closed:
            subscriber.queue.put_nowait(None)
        return subscriber

    def unsubscribe(self, subscriber: _Subscriber) -> None:
        self._subscribers.discard(subscriber)

    def publish(self, event_id: int, event: Event) -> None:
        for subscriber in self._subscribers:
            if subscriber.queue.qsize() >= MAX_QUEUED:
                subscriber.cut_off = True
                subscriber.queue.put_nowait(None)
            elif not subscriber.cut_off:
                subscriber.queue.put_nowait((event_id, event))

    def close(self) -> None:
        """Ends every stream (at shutdown), so that no open connection holds the server up."""
        self._closed = True
        for subscriber in self._subscribers:
            subscriber.queue.put_nowait(None)

    async def frames(self, subscriber: _Subscriber, last_id: int) -> AsyncIterator[str]:
        """The events after `last_id` from the store, then live ones (published here, or read
        from the store at each wake). Subscribing before reading the store, and skipping ids
        already sent, leaves neither gap nor repeat."""
        try:
            yield f"retry: {RECONNECT_MS}\n\n"
            sent, catch_up = last_id, True
            while True:
                while catch_up:
                    page = await self._store.events_after(sent, BACKLOG_PAGE)
                    for stored in page:
                        yield _frame(stored.id, stored.event)
                        sent = stored.id
                    catch_up = len(page) == BACKLOG_PAGE
                try:
                    item = await asyncio.wait_for(subscriber.queue.get(), KEEPALIVE)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if item is None:
                    return
                if item is WAKE:
                    catch_up = True
                    continue
                event_id, event = item
                if event_id > sent:
                    yield _frame(event_id, event)
                    sent = event_id
        finally:
            self.unsubscribe(subscriber)


def _frame(event_id: int, event: Event) -> str:
    return f"id: {event_id}\ndata: {orjson.dumps({'id': event_id, **event.to_dict()}).decode()}\n\n"


def _last_id(request: Request) -> int:
    """Last-Event-ID (a browser reconnecting by itself), or ?after= (a new page that has
    already read /events)."""
    value = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
    return int(value) if value.isdigit() else 0


def _origin(url: str | None) -> str | None:
    url = web_url(url)
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}" if parts.scheme and parts.netloc else None


def provider_cards(
    feeds: Iterable[FeedStatus], providers: Iterable[str], open_incidents: Iterable[OpenIncident]
) -> list[dict[str, Any]]:
    """One card per provider (every configured feed's, and any other of `providers`, those
    that have sent events): its state, open incidents, affected components, page and source
    health."""
    cards: dict[str, dict[str, Any]] = {}

    def card(name: str) -> dict[str, Any]:
        return cards.setdefault(
            name.casefold(), {"name": name, "page_url": None, "incidents": [], "components": [], "sources": []}
        )

    for status in feeds:
        entry = card(status.feed.name)
        entry["page_url"] = entry["page_url"] or _origin(status.feed.url)
        entry["sources"].append({
            "name": status.feed.name,
            "url": redact_url(status.feed.url),
            "kind": status.kind or status.feed.kind,
            "last_success_at": (
                utc_iso(datetime.fromtimestamp(status.last_success, timezone.utc)) if status.last_success else None
            ),
            "last_polled_at": status.record.last_polled_at,
            "consecutive_errors": status.record.consecutive_errors,
            "failing": status.failing,
            "last_error": status.last_error,
        })
    for provider in providers:
        card(provider)
    for incident in open_incidents:
        latest = incident.latest
        entry = card(latest.provider)
        entry["page_url"] = entry["page_url"] or _origin(latest.url)
        entry["incidents"].append({
            "title": latest.title,
            "status": latest.status,
            "message": latest.message,
            "url": latest.url,
            "components": list(latest.components),
            "since": utc_iso(incident.since),
            "updated_at": utc_iso(latest.occurred_at or latest.received_at),
        })
        entry["components"] += [c for c in latest.components if c not in entry["components"]]
    for entry in cards.values():
        entry["incidents"].sort(key=lambda i: i["updated_at"] or "", reverse=True)
        entry["state"] = _state(entry)
        entry["failing_sources"] = sum(1 for source in entry["sources"] if source["failing"])
    return sorted(cards.values(), key=lambda c: (STATES.index(c["state"]), c["name"].casefold()))


STATES = ("incident", "unknown", "operational")  # the order cards are shown in


def _state(card: dict[str, Any]) -> str:
    """"unknown" when every source of a provider without an open incident is failing: its
    silence is no evidence that it is fine."""
    if card["incidents"]:
        return "incident"
    if card["sources"] and all(source["failing"] for source in card["sources"]):
        return "unknown"
    return "operational"


def create_router(cards: Callable[[], list[dict[str, Any]]], stream: EventStream) -> APIRouter:
    """The page, `/api/providers` (what `cards()` gives, see provider_cards) and the stream."""
    router = APIRouter()

    @router.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @router.get("/api/providers")
    async def providers() -> dict[str, Any]:
        return {"providers": cards()}

    @router.get("/events/stream", response_model=None)
    async def events_stream(request: Request) -> StreamingResponse | JSONResponse:
        subscriber = stream.subscribe()
        if subscriber is None:
            return JSONResponse(
                {"detail": "too many event streams open; try again later"}, 503, headers={"Retry-After": "5"}
            )
        return StreamingResponse(
            stream.frames(subscriber, _last_id(request)),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            # A client gone before its stream began never runs the stream's own clean-up.
            background=BackgroundTask(stream.unsubscribe, subscriber),
        )

    return router
