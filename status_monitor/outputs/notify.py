"""Notifications through Apprise. Routes decide which events go to which targets; every send
waits in the state file's outbox until it is delivered or given up, so neither a crash nor a
dead target loses one, and each target gets its messages in order on a worker of its own, so
a slow target delays nobody else.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from status_monitor.filters import matches_any
from status_monitor.model import RESOLVED_STATUSES, Event
from status_monitor.redact import scrub
from status_monitor.storage import OutboxItem, StoreUnavailable

if TYPE_CHECKING:
    from apprise import Apprise

    from status_monitor.config import Config, NotifyRoute
    from status_monitor.storage import Store

log = logging.getLogger("monitor.notify")

# Apprise is imported where it is used: its plugins and the libraries they send through
# cost about 4.5 MB of memory, which a monitor without notification targets (the default)
# does not pay.

# Apprise logs through its own logger, at times with a target's full URL and so its
# credentials. It is kept off stderr; what a failed send logged is reported, scrubbed.
logging.getLogger("apprise").propagate = False
logging.getLogger("apprise").addHandler(logging.NullHandler())

FIRST_RETRY = 1.0  # seconds before the first retry; doubles up to MAX_RETRY_DELAY
MAX_RETRY_DELAY = 300.0
ADOPT_EVERY = 5.0  # seconds between two looks for notifications another replica left unsent
TEST_TITLE = "Status-page monitor: test notification"


def target_id(url: str) -> str:
    """Names a target in the outbox without storing its credentials twice."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def describe(url: str) -> str:
    """The URL as logs and /stats show it: Apprise's privacy form, path segments masked too
    (a webhook's path is often its secret), no query string."""
    import apprise

    service = apprise.Apprise.instantiate(url)
    shown = service.url(privacy=True).split("?", 1)[0] if service else url.split("://", 1)[0] + "://"
    scheme, _, rest = shown.partition("://")
    host, _, path = rest.partition("/")
    masked = [_mask(part) if part and part in url else part for part in path.split("/")]
    return f"{scheme}://{host}/" + "/".join(masked) if path else f"{scheme}://{host}"


def _mask(part: str) -> str:
    return f"{part[0]}...{part[-1]}" if len(part) > 3 else "***"


def _scrub(text: str, url: str) -> str:
    """Removes every credential-like piece of `url` from an error message (a target's
    path segments are often its secret), then scrubs it as every error text is."""
    host = urlsplit(url).hostname or ""
    for piece in sorted(set(re.findall(r"[^/:@?&=#]{4,}", url.split("://", 1)[-1])), key=len, reverse=True):
        if piece != host:
            text = text.replace(piece, "***")
    return scrub(text)


def route_matches(route: NotifyRoute, event: Event) -> bool:
    """Empty filters let everything through; an event that names no component passes a
    component filter, as most sources never say which components an incident touches."""
    if route.providers and not matches_any(route.providers, event.provider):
        return False
    if route.statuses and event.status.casefold() not in {s.casefold() for s in route.statuses}:
        return False
    if route.sources and event.source not in route.sources:
        return False
    if route.components and event.components:
        return any(matches_any(route.components, component) for component in event.components)
    return True


def render(event: Event) -> tuple[str, str, str]:
    """Title, body and Apprise type of an event's message. Every update of an incident has
    the same title and link, so chat clients and mail readers show them as one thread."""
    resolved = event.status.casefold() in RESOLVED_STATUSES
    status = f"{event.status} (resolved: this incident is over)" if resolved else event.status
    lines = [f"Provider: {event.provider}"]
    if event.product:
        lines.append(f"Product: {event.product}")
    lines.append(f"Status: {status}")
    message = " ".join(event.message.split())
    if message:
        lines.append(f"Message: {message}")
    lines.append(f"Incident: {event.title}")
    if event.url:
        lines.append(f"Link: {event.url}")
    from apprise import NotifyType

    kind = NotifyType.SUCCESS if resolved else NotifyType.WARNING
    return f"{event.provider}: {event.title}", "\n".join(lines), str(kind.value)


@dataclass
class Target:
    url: str = field(repr=False)
    id: str = field(init=False)
    label: str = field(init=False)
    service: str = field(init=False)  # Apprise's name for it ("Slack", "JSON"): a bounded metrics label
    apprise: Apprise = field(init=False, repr=False)
    sent_total: int = 0
    failed_total: int = 0
    retries_total: int = 0
    last_error: str | None = None

    def __post_init__(self) -> None:
        import apprise

        self.id, self.label = target_id(self.url), describe(self.url)
        self.apprise = apprise.Apprise()
        self.apprise.add(self.url)
        self.service = self.apprise[0].service_name


async def send(target: Target, title: str, body: str, kind: str, timeout: float) -> tuple[bool, str | None]:
    """One attempt; returns whether it was delivered, and if not why (credentials scrubbed)."""
    from apprise import NotifyType

    try:
        async with asyncio.timeout(timeout + 1):
            result = await target.apprise.async_notify(
                title=title, body=body, notify_type=NotifyType(kind), timeout=timeout
            )
    except TimeoutError:
        return False, f"no answer within {timeout:g} s"
    except Exception as exc:  # a plugin's bug must not stop the worker
        return False, _scrub(f"{type(exc).__name__}: {exc}", target.url)
    if result:
        return True, None
    logged = [entry.message for entry in result.logs() if entry.level in ("WARNING", "ERROR", "CRITICAL")]
    return False, _scrub("; ".join(logged) or result.status.name.lower(), target.url)


@dataclass
class TestResult:
    target: str
    delivered: bool
    reason: str | None = None


async def send_test(config: Config) -> list[TestResult]:
    """`--test-notify`: one labelled message to every configured target at once, one attempt each."""
    body = "A test from the status-page monitor (--test-notify). If you read this, notifications work."
    targets = {target_id(url): url for route in config.notify for url in route.urls}

    async def one(url: str) -> TestResult:
        from apprise import NotifyType

        target = Target(url)
        delivered, reason = await send(target, TEST_TITLE, body, str(NotifyType.INFO.value), config.notify_timeout)
        return TestResult(target.label, delivered, reason)

    return list(await asyncio.gather(*(one(url) for url in targets.values())))


class Notifier:
    def __init__(self, config: Config, store: Store) -> None:
        self._store = store
        self._timeout = config.notify_timeout
        self._retry_for = config.notify_retry_for
        self.targets: dict[str, Target] = {}
        self._routes: list[tuple[NotifyRoute, list[str]]] = []
        self._queues: dict[str, deque[OutboxItem]] = {}
        self._wakeups: dict[str, asyncio.Event] = {}
        self._workers: dict[str, asyncio.Task] = {}
        self._started = False
        self._set_routes(config)

    def _set_routes(self, config: Config) -> None:
        """The routes, and a target (with its queue) for every URL they name; a target already
        known keeps its counters and queue."""
        self._routes = []
        for route in config.notify:
            ids = [target_id(url) for url in route.urls]
            for tid, url in zip(ids, route.urls):
                if tid not in self.targets:
                    self.targets[tid] = Target(url)
                    self._queues[tid], self._wakeups[tid] = deque(), asyncio.Event()
            self._routes.append((route, ids))

    async def reconfigure(self, config: Config) -> None:
        """A config reload: new routes and targets start at once; a removed target's worker
        stops and its unsent notifications are dropped with a warning, as at a start."""
        self._timeout, self._retry_for = config.notify_timeout, config.notify_retry_for
        self._set_routes(config)
        named = {tid for _, ids in self._routes for tid in ids}
        for tid in [tid for tid in self.targets if tid not in named]:
            target = self.targets.pop(tid)
            worker = self._workers.pop(tid, None)
            if worker is not None:
                worker.cancel()
                await asyncio.gather(worker, return_exceptions=True)
            dropped = list(self._queues.pop(tid))
            del self._wakeups[tid]
            if dropped:
                log.warning("dropping %d unsent notifications for %s, no longer configured", len(dropped), target.label)
                await self._store.remove_outbox(dropped)
        if self._started:
            self._start_workers()

    def _start_workers(self) -> None:
        for tid, target in self.targets.items():
            if tid not in self._workers:
                self._workers[tid] = asyncio.create_task(self._work(target), name=f"notify {target.label}")

    def prepare(self, event: Event) -> list[OutboxItem]:
        """The sends an event calls for: one per target that any matching route names."""
        ids = dict.fromkeys(tid for route, tids in self._routes if route_matches(route, event) for tid in tids)
        if not ids:
            return []
        title, body, kind = render(event)
        now = time.time()
        return [OutboxItem(tid, event.key, title, body, kind, now) for tid in ids]

    def submit(self, items: list[OutboxItem]) -> None:
        """Queues sends already committed to the outbox."""
        for item in items:
            if item.target not in self._queues:
                continue  # removed by a reload meanwhile: the next start drops it, with a warning
            self._queues[item.target].append(item)
            self._wakeups[item.target].set()

    def outcomes(self) -> Counter:
        """(service, "sent" | "retry" | "failed") -> count, summed over the targets: the
        service, not the target, is the metrics label (bounded, and free of credentials)."""
        counts: Counter = Counter()
        for target in self.targets.values():
            counts[target.service, "sent"] += target.sent_total
            counts[target.service, "retry"] += target.retries_total
            counts[target.service, "failed"] += target.failed_total
        return +counts  # without the outcomes that never happened

    @property
    def pending(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    async def start(self) -> None:
        """Queues the sends a previous run left unfinished (dropping those for targets no
        longer configured) and starts one worker per target."""
        items = await self._store.load_outbox()
        orphans = [item for item in items if item.target not in self.targets]
        if orphans:
            log.warning("dropping %d unsent notifications for targets no longer configured", len(orphans))
            await self._store.remove_outbox(orphans)
        self.submit([item for item in items if item.target in self.targets])
        if len(items) > len(orphans):
            log.info("%d notifications left unsent by the last run will be sent now", len(items) - len(orphans))
        self._started = True
        self._start_workers()
        if self._store.shared and self.targets:
            self._workers["adopt"] = asyncio.create_task(self._adopt(), name="notify adopt")

    async def _adopt(self) -> None:
        """With replicas: every ADOPT_EVERY seconds, takes over the notifications whose sender
        stopped or died (its claim in the database lapsed) and queues them here."""
        while True:
            await asyncio.sleep(ADOPT_EVERY)
            try:
                items = await self._store.adopt_outbox()
            except StoreUnavailable as exc:
                log.warning("notifications: %s", exc)
                continue
            mine = [item for item in items if item.target in self.targets]
            if mine:
                log.info("%d notifications left by another replica will be sent from here", len(mine))
                self.submit(mine)

    async def stop(self, grace: float) -> None:
        """Gives queued sends `grace` seconds, then stops; the rest stay in the outbox for the
        next start (a send cut off mid-way is sent again: at least once)."""
        deadline = time.monotonic() + grace
        while self.pending and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for worker in self._workers.values():
            worker.cancel()
        await asyncio.gather(*self._workers.values(), return_exceptions=True)
        if self.pending:
            log.warning("%d notifications not sent yet: they will be sent on the next start", self.pending)

    async def _work(self, target: Target) -> None:
        queue, wakeup = self._queues[target.id], self._wakeups[target.id]
        while True:
            while not queue:
                wakeup.clear()
                await wakeup.wait()
            item = queue[0]
            await self._deliver(target, item)
            queue.popleft()
            while True:
                try:
                    await self._store.remove_outbox([item])
                    break
                except StoreUnavailable as exc:  # sent: wait for the database rather than send it again
                    log.warning("notification sent, not yet removed from the outbox: %s", exc)
                    await asyncio.sleep(ADOPT_EVERY)

    async def _deliver(self, target: Target, item: OutboxItem) -> None:
        """Sends until delivered, or until `retry_for` seconds after the event; then one error."""
        delay, attempts = FIRST_RETRY, 0
        while True:
            attempts += 1
            delivered, reason = await send(target, item.title, item.body, item.kind, self._timeout)
            if delivered:
                target.sent_total += 1
                target.last_error = None
                return
            target.last_error = reason
            if time.time() + delay > item.created_at + self._retry_for:
                target.failed_total += 1
                log.error(
                    "notification to %s about %r not delivered after %d attempts: %s (given up)",
                    target.label, item.title, attempts, reason,
                )
                return
            if attempts == 1:
                log.warning("notification to %s failed: %s; retrying for up to %g s", target.label, reason, self._retry_for)
            target.retries_total += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_DELAY)

    def target_stats(self) -> list[dict]:
        return [
            {
                "target": t.label,
                "sent_total": t.sent_total,
                "failed_total": t.failed_total,
                "retries_total": t.retries_total,
                "pending": len(self._queues[t.id]),
                "last_error": t.last_error,
            }
            for t in self.targets.values()
        ]
