"""Scheduling and conditional fetching of feeds. Knows HTTP, not XML: bytes go to
the parsers (`status_monitor.sources.kinds`), the parsed incidents to the event handler, the outcome to the store."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import random
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone

import httpx

from event_handler import EventHandler
from status_monitor import __version__
from status_monitor.config import Config, FeedConfig
from status_monitor.model import utc_iso
from status_monitor.redact import redact_url, remember_url_secrets, scrub
from status_monitor.sources.apis import component_changes
from status_monitor.sources.bodies import ACCEPT_ENCODING, BodyBudget, BodyError, Decoder, Lease, describe_size
from status_monitor.sources.detect import (
    DETECT,
    Answer,
    DetectError,
    detect,
    origin,
    page_root,
    poll_targets,
    probing,
)
from status_monitor.sources.feeds import content_digest
from status_monitor.sources.kinds import parse_source
from status_monitor.sources.readers import FeedError
from status_monitor.sources.transport import AiohttpTransport, PollClient, plain_reason
from status_monitor.stats import FeedStatus, PollerStats
from status_monitor.storage import FeedRecord, Store, StoreUnavailable

log = logging.getLogger("monitor.poller")

USER_AGENT = f"status-page-monitor/{__version__} (+https://github.com/; polite conditional GETs)"
MAX_REDIRECTS = 5
# A source read in this run is "failing" after this many errors in a row (one blip is not
# news); a source not read yet in this run is failing at its first error. This decides it
# everywhere: the log, /stats, /health, the dashboard and --once's exit code.
FAILING_AFTER = 3
MAX_RETRY_AFTER = 3600.0
# First polls are spread over 5 s (or the interval, if shorter), and at most
# FIRST_POLLS_PER_SECOND start each second, however short the interval: thousands of feeds
# do not all wait on the concurrency limit at once.
FIRST_POLL_SPREAD = 5.0
FIRST_POLLS_PER_SECOND = 200
STATE_RETRY = 5.0  # seconds between two attempts to reach an unreachable state database
# With replicas, a feed's first choice (FeedPoller._first_choice) may take it when it is
# due; the others only HANDOVER seconds later (more than a tick), so they poll it only if
# the first choice did not, and they ask up to CLAIM_JITTER seconds later still, so that
# they do not ask in step.
HANDOVER = 1.5
CLAIM_JITTER = 1.0
TICK = 1.0  # seconds: the longest a poll waits for the feeds due with it (see FeedPoller._schedule)
# Failures that point at this machine's network rather than at one provider.
NETWORK_CATEGORIES = {"name resolution failed", "network unreachable", "connection refused", "timed out"}


class FetchError(Exception):
    """The feed could not be fetched; the message is safe to log (no secrets). `kind` is
    the class of error that metrics count; `category` the plain words that group failures
    in the summary line ("name resolution failed")."""

    def __init__(self, message: str, kind: str, category: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.category = category or message


@dataclass
class FetchResult:
    status: int
    body: bytes = b""
    etag: str | None = None
    last_modified: str | None = None
    retry_after: float | None = None
    url: str = ""  # where the answer came from when it was redirected
    charset: str | None = None  # the Content-Type's charset parameter (RFC 7303 section 8)


@dataclass
class PollLease:
    """This replica's claim on one poll of a feed (storage's fencing token)."""

    token: int
    next_delay: float | None = None  # set once the outcome is stored: seconds until the next poll


class _NoCookies(httpx.Cookies):
    """Status feeds need no cookies; keeping them costs a fifth of a 304's CPU."""

    def extract_cookies(self, response: httpx.Response) -> None:
        pass

    def set_cookie_header(self, request: httpx.Request) -> None:
        pass


def make_client(config: Config) -> PollClient:
    """One client for every poll: httpx's interface on aiohttp's pool (see
    status_monitor.sources.transport), at most `concurrency` connections,
    `per_host_connections` to one host. Bodies are read raw and decoded by `fetch`."""
    timeout = httpx.Timeout(config.request_timeout, connect=min(10.0, config.request_timeout))
    transport = AiohttpTransport(
        config.concurrency, httpx.create_ssl_context(trust_env=True), config.per_host_connections,
        urls_kept=4 * len(config.feeds) + 1024,  # a feed's own URL, a few a page it is detected on
    )
    client = PollClient(
        transport,
        timeout=timeout,
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": ACCEPT_ENCODING},
    )
    client._cookies = _NoCookies()  # the `cookies` setter would copy it into a plain jar
    return client


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, min((when - datetime.now(timezone.utc)).total_seconds(), MAX_RETRY_AFTER))


def _charset(content_type: str | None) -> str | None:
    """The charset parameter of a Content-Type value (RFC 9110 section 8.3), if any."""
    for parameter in (content_type or "").split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"') or None
    return None


def validators(record: FeedRecord) -> list[tuple[str, str]]:
    """The conditional request's headers (RFC 9110 section 13.1): the validators of the
    feed's last accepted 200, sent back as they came. A validator that is not ASCII is
    left out: its bytes could not be sent back exactly (RFC 9110 allows them in an ETag
    as obs-text; without it the server answers 200, or 304 on If-Modified-Since)."""
    headers = []
    if record.etag and record.etag.isascii():
        headers.append(("If-None-Match", record.etag))
    if record.last_modified and record.last_modified.isascii():
        headers.append(("If-Modified-Since", record.last_modified))
    return headers


async def fetch(
    client: PollClient, url: httpx.URL, conditional: list[tuple[str, str]], max_bytes: int, deadline: float,
    lease: Lease, host: str | None = None,
) -> FetchResult:
    """One GET of `url` with the `conditional` headers (`validators`; none: unconditional),
    bounded in total time (`deadline`, seconds) and body size (`max_bytes`, decoded,
    stacked codings included: see sources.bodies); the body's memory is held under `lease`.
    `host` is the URL's host and port, when the caller has it already. Raises FetchError
    with a plain reason that names no URL."""
    headers = [("Host", host or url.netloc.decode("ascii")), *conditional]
    try:
        async with asyncio.timeout(deadline):
            reply = await client.get_streamed(url, headers)
            try:
                answer = reply.headers
                result = FetchResult(
                    status=reply.status,
                    etag=answer.get("etag"),
                    last_modified=answer.get("last-modified"),
                    retry_after=_retry_after(answer.get("retry-after")),
                    url=reply.url,
                    charset=_charset(answer.get("content-type")),
                )
                if reply.status != 200:
                    return result
                declared = answer.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise BodyError(
                        f"body of {describe_size(int(declared))} announced, larger than {describe_size(max_bytes)}",
                        "too_large",
                    )
                decoder = Decoder(answer.get("content-encoding", ""), max_bytes)
                chunks, size = [], 0
                async for piece in decoder.decode(reply.chunks, lease):
                    size += len(piece)
                    await lease.hold(size)
                    chunks.append(piece)
                result.body = b"".join(chunks)
                return result
            finally:
                await reply.aclose()
    except BodyError as exc:
        raise FetchError(str(exc), exc.kind) from None
    except TimeoutError:
        raise FetchError(f"no complete answer within {deadline:g} s", "timeout") from None
    except httpx.TooManyRedirects:
        raise FetchError(f"more than {MAX_REDIRECTS} redirects (a redirect loop?)", "redirects") from None
    except httpx.HTTPError as exc:
        category, message = plain_reason(exc, exc.request.url if _has_request(exc) else url)
        raise FetchError(message, "timeout" if isinstance(exc, httpx.TimeoutException) else "connection", category) from None


def _has_request(exc: httpx.HTTPError) -> bool:
    try:
        exc.request
    except RuntimeError:  # httpx raises when the exception was made without one
        return False
    return True


class FeedPoller:
    def __init__(
        self,
        config: Config,
        handler: EventHandler,
        store: Store,
        client: httpx.AsyncClient,
    ) -> None:
        self._config = config
        self._handler = handler
        self._store = store
        self._client = client
        self._semaphore = asyncio.Semaphore(config.concurrency)
        self._host_slots: dict[str, asyncio.Semaphore] = {}
        self._host_pause: dict[str, float] = {}  # host -> Unix time its Retry-After ends
        self._budget = BodyBudget(config.body_budget_bytes, config.max_body_bytes)
        # One thread: parsing holds the GIL anyway, and every extra thread is another malloc arena.
        self._parser = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parse")
        self._stop = asyncio.Event()
        self._timers: dict[float, asyncio.TimerHandle] = {}  # loop time of a tick -> its timer
        self._due: dict[float, list[FeedStatus]] = {}  # loop time of a tick -> the feeds it starts
        self._in_flight: set[asyncio.Task] = set()
        self._running = False  # polls are scheduled by timers (not --once)
        self._state_lost_at: float | None = None  # monotonic time the state became unreachable
        self.feeds: dict[str, FeedStatus] = {}
        self.stats = PollerStats()
        self._unpolled: set[str] | None = None  # sources not polled yet in this run; None once all were
        self._turns: dict[str, int] | None = None  # with replicas: URL -> its place among the feeds' URLs, sorted

    async def load(self) -> None:
        self.feeds = await self._statuses(self._config.feeds)
        self._unpolled = {url for url, status in self.feeds.items() if not status.record.gone}

    async def _statuses(self, sources: tuple[FeedConfig, ...]) -> dict[str, FeedStatus]:
        """A status for every URL the sources poll, with what the state file remembers of it."""
        records = await self._store.load_feeds()
        components = await self._store.load_components()
        remembered = await self._store.load_sources()
        statuses = {}
        for feed in (target for source in sources for target in poll_targets(source, remembered)):
            remember_url_secrets(feed.url)
            record = records.get(feed.url)
            status = FeedStatus(feed, record or FeedRecord(url=feed.url), known=record is not None)
            status.components = components.get(feed.url, {})
            statuses[feed.url] = status
        return statuses

    async def reconfigure(self, config: Config) -> tuple[list[str], list[str], list[str]]:
        """A config reload. A source still configured keeps its status (so nothing is parsed or
        announced again); a new one starts from what the state file remembers of it (a source
        never seen is baselined at its first poll, as at a start); a removed one stops being
        polled. Returns the names of the sources added, removed and changed."""
        await self._store.flush()  # what the state file remembers includes this run's polls
        wanted = await self._statuses(config.feeds)
        added, removed, changed = [], [], []
        for url in [url for url in self.feeds if url not in wanted]:
            removed.append(self.feeds.pop(url).feed.name)
            self._cancel_timer(url)
        for url, fresh in wanted.items():
            current = self.feeds.get(url)
            if current is not None and current.feed.kind == fresh.feed.kind:
                if current.feed != fresh.feed:
                    changed.append(fresh.feed.name)
                    sooner = config.feed_interval(fresh.feed) < self._config.feed_interval(current.feed)
                    current.feed = fresh.feed
                    if sooner and self._cancel_timer(url):  # not left waiting out the old interval
                        self._schedule(current, random.uniform(0, FIRST_POLL_SPREAD))
                continue
            if current is not None:  # read differently now: its next parse is a baseline
                self._cancel_timer(url)
                fresh.known = False
                changed.append(fresh.feed.name)
            else:
                added.append(fresh.feed.name)
            self.feeds[url] = fresh
            if self._running:
                self._schedule(fresh, random.uniform(0, FIRST_POLL_SPREAD))
        self._config = config
        self._turns = None
        return added, removed, changed

    def _cancel_timer(self, url: str) -> bool:
        """Takes the poll of `url` out of the tick it waits for; whether one was waiting
        (False when it has started: once done it schedules the next itself)."""
        for at, due in self._due.items():
            kept = [status for status in due if status.feed.url != url]
            if len(kept) < len(due):
                if kept:
                    self._due[at] = kept
                else:
                    del self._due[at]
                    self._timers.pop(at).cancel()
                return True
        return False

    @property
    def failing(self) -> list[FeedStatus]:
        return [status for status in self.feeds.values() if status.failing]

    async def poll_all(self) -> None:
        """Polls every feed once, concurrently (for --once): `concurrency` workers share the
        list, rather than one task a feed queueing on the semaphore (costly at 10,000). A
        worker takes a feed of the next host below its `per_host_connections`, so a slow
        host's feeds never hold every worker. A page whose source was detected in a round
        has its new feeds polled in the next."""
        polled: set[str] = set()
        while batch := [s for url, s in self.feeds.items() if url not in polled and not s.record.gone]:
            polled.update(status.feed.url for status in batch)
            waiting: dict[str, deque[FeedStatus]] = {}
            for status in batch:
                waiting.setdefault(status.host, deque()).append(status)
            ready = deque(waiting)  # hosts with feeds waiting and a connection to spare
            busy: Counter = Counter()
            freed = asyncio.Event()
            cap = self._config.per_host_connections

            async def worker() -> None:
                while waiting:
                    if not ready:
                        freed.clear()
                        await freed.wait()
                        continue
                    host = ready.popleft()
                    status = waiting[host].popleft()
                    busy[host] += 1
                    if not waiting[host]:
                        del waiting[host]
                    elif busy[host] < cap:
                        ready.append(host)
                    try:
                        await self.poll(status)
                    finally:
                        busy[host] -= 1
                        if host in waiting and busy[host] == cap - 1:  # it was at its cap
                            ready.append(host)
                        freed.set()

            await asyncio.gather(*(worker() for _ in range(self._config.concurrency)))

    def start(self) -> None:
        """Schedules every feed's first poll. A waiting feed costs a place in its tick's
        list, not a task."""
        self._running = True
        at_rate = len(self.feeds) / FIRST_POLLS_PER_SECOND  # not shortened by a short interval
        for status in self.feeds.values():
            interval = self._config.feed_interval(status.feed)
            delay = random.uniform(0, max(min(interval, FIRST_POLL_SPREAD), at_rate))
            if status.record.backoff_until:
                delay = max(delay, status.record.backoff_until - time.time())
            self._schedule(status, delay)

    async def stop(self, grace: float) -> None:
        """No new polls; in-flight ones get `grace` seconds to finish, then are cancelled."""
        self._stop.set()
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._due.clear()
        if self._in_flight:
            _, pending = await asyncio.wait(set(self._in_flight), timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._parser.shutdown(wait=False, cancel_futures=True)

    def _schedule(self, status: FeedStatus, delay: float) -> None:
        """Polls `status` in `delay` seconds, rounded up to its tick: a tenth of its
        interval, at most TICK. Feeds due in the same tick start together, so the loop
        wakes once a tick rather than once a poll (README, Performance)."""
        if self._stop.is_set() or status.record.gone:
            return
        loop = asyncio.get_running_loop()
        tick = min(TICK, self._config.feed_interval(status.feed) / 10)
        at = math.ceil((loop.time() + max(0.0, delay)) / tick) * tick
        due = self._due.get(at)
        if due is None:
            due = self._due[at] = []
            self._timers[at] = loop.call_at(at, self._launch, at)
        due.append(status)

    def _launch(self, at: float) -> None:
        del self._timers[at]
        for status in self._due.pop(at):
            task = asyncio.create_task(self._poll_then_schedule(status), name=f"poll {status.feed.name}")
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def _poll_then_schedule(self, status: FeedStatus) -> None:
        pause = self._host_pause.get(status.host, 0.0) - time.time()
        if pause > 0:  # its host asked for a pause (Retry-After): poll when it ends
            self._schedule(status, pause * random.uniform(1.0, 1.1))
            return
        interval = self._config.feed_interval(status.feed)
        if self._store.shared:
            delay = await self._poll_claimed(status, interval)
        else:
            await self.poll(status)
            delay = self._next_delay(status, interval)
        if self.feeds.get(status.feed.url) is status:  # not replaced by what detection found
            self._schedule(status, delay)

    async def _poll_claimed(self, status: FeedStatus, interval: float) -> float:
        """With replicas: polls the feed only if this replica wins its lease, starting from the
        record the last poller (any replica) stored; returns the seconds until it is next
        worth asking. A replica that loses asks again when the feed is due (for it) or the
        lease lapses, so a dead replica's feeds are taken over within one interval plus the
        lease, HANDOVER and CLAIM_JITTER."""
        first_choice = self._first_choice(status.feed.url)
        grace = 0.0 if first_choice else HANDOVER
        try:
            claim = await self._store.claim_feed(status.feed.url, interval, grace)
        except StoreUnavailable as exc:
            self._state_unavailable(status, exc)
            return min(interval, STATE_RETRY)
        jitter = 0.0 if first_choice else random.uniform(0, CLAIM_JITTER)
        if claim.token is None:
            return claim.wait + jitter
        self.stats.claimed_total += 1
        status.record, status.known = claim.record, claim.known
        if claim.components is not None and claim.components != status.components:
            status.components, status.digest = claim.components, None
        poll_lease = PollLease(claim.token)
        await self.poll(status, poll_lease)
        if poll_lease.next_delay is None and status.feed.kind == DETECT:
            try:  # a detection's outcome is shared like a poll's: a failure's backoff, or the page's lease handed back
                await self._complete(status, [], poll_lease)
            except StoreUnavailable as exc:
                self._state_unavailable(status, exc)
        return min(interval, STATE_RETRY) if poll_lease.next_delay is None else poll_lease.next_delay + grace + jitter

    def _first_choice(self, url: str) -> bool:
        """With replicas: whether this replica is the one to poll the feed at `url`. The live
        replicas, in the order of their ids, take the feeds, in the order of their URLs, in
        turn, so each polls an even share (within one feed); the same config gives every
        replica the same answer. A replica the heartbeat has not counted yet is every
        feed's first choice (whoever asks first gets it)."""
        replicas = self._store.replicas
        if self._store.replica_id not in replicas:
            return True
        if self._turns is None:
            self._turns = {url: turn for turn, url in enumerate(sorted(self.feeds))}
        turn = self._turns.get(url)
        return turn is None or replicas[turn % len(replicas)] == self._store.replica_id

    async def _complete(self, status: FeedStatus, silent: list[int], poll_lease: PollLease) -> None:
        """Stores a claimed poll's outcome and when the feed is next due, if the lease is still ours."""
        delay = self._next_delay(status, self._config.feed_interval(status.feed))
        if await self._store.complete_feed(status.record, silent, poll_lease.token, time.time() + delay):
            poll_lease.next_delay = delay
            return
        self.stats.lease_lost_total += 1
        poll_lease.next_delay = 0.0  # ask again: the replica that took the lease over has the record now
        log.warning("feed %s: its lease lapsed during the poll and moved on; this outcome is not stored", status.feed.name)

    def _next_delay(self, status: FeedStatus, interval: float) -> float:
        record = status.record
        if record.backoff_until and record.backoff_until > time.time():
            return record.backoff_until - time.time()
        if record.consecutive_errors:
            base = min(interval, 30.0) * 2 ** min(record.consecutive_errors - 1, 10)
            return min(base, max(interval, 1800.0)) * random.uniform(1.0, 1.2)
        return interval * random.uniform(0.9, 1.1)

    def _host_slot(self, host: str) -> asyncio.Semaphore:
        slot = self._host_slots.get(host)
        if slot is None:
            slot = self._host_slots[host] = asyncio.Semaphore(self._config.per_host_connections)
        return slot

    async def poll(self, status: FeedStatus, poll_lease: PollLease | None = None) -> None:
        """One poll of one feed, under its host's limit, then the global one (so a slow
        host's waiting polls hold no global slot), with its body's share of the budget.
        With a `poll_lease` (replicas), the outcome is stored only if the lease is still
        this replica's."""
        feed, record = status.feed, status.record
        host = status.host
        pause = self._host_pause.get(host, 0.0) - time.time()
        if pause > 0:
            status.last_error = f"not polled: {status.url.host} asked for a pause (Retry-After), {pause:.0f} s more"
            return
        silent: list[int] = []
        # The slot is held until the outcome is stored: a first poll's baseline waits for its
        # commit here, so a cold start's writes queue no faster than the state takes them.
        async with self._host_slot(host), self._semaphore:
            async with self._budget.lease() as lease:
                if feed.kind == DETECT:
                    await self._detect(status, lease)
                    return
                started = time.perf_counter()
                conditional = validators(record)
                try:
                    try:
                        result = await fetch(
                            self._client, status.url, conditional, self._config.max_body_bytes,
                            self._config.request_timeout * 1.5, lease, status.host,
                        )
                    finally:
                        self.stats.latency.observe(time.perf_counter() - started)
                    silent = await self._process(status, result, bool(conditional))
                except StoreUnavailable as exc:
                    self._state_unavailable(status, exc)
                    return
                except FetchError as exc:
                    self._failed(status, str(exc), None, exc.kind, exc.category)
                except FeedError as exc:
                    self._failed(status, str(exc), record.last_status, "parse", "not a readable feed")
                except Exception:
                    log.exception("feed %s: unexpected error", feed.name)
                    self._failed(status, "internal error (see the log)", record.last_status, "internal")
            record.last_polled_at = utc_iso(datetime.now(timezone.utc))
            try:
                if poll_lease is None:
                    await self._store.save_feed(record, silent)
                else:
                    await self._complete(status, silent, poll_lease)
            except StoreUnavailable as exc:  # the baseline's keys are not stored: the next poll is a first poll again
                status.known, status.digest, status.fingerprints = False, None, b""
                record.etag = record.last_modified = None
                self._state_unavailable(status, exc)
                return
            if self._state_lost_at is not None:
                log.warning("state reachable again after %.0f s: polling resumed", time.monotonic() - self._state_lost_at)
                self._state_lost_at = None
            self._first_polled(status)

    def _first_polled(self, status: FeedStatus) -> None:
        """Once every source has been polled in this run, one line sums up how they are."""
        if self._unpolled is None:
            return
        self._unpolled.discard(status.feed.url)
        if not self._unpolled:
            self._unpolled = None
            line = self.summary()
            (log.warning if self.failing else log.info)("%s", line)

    def summary(self) -> str:
        """`10 sources: 3 ok, 7 failing (name resolution failed: 7)`."""
        live = [s for s in self.feeds.values() if not s.record.gone]
        failing = [s for s in live if s.failing]
        categories = Counter(s.category or "error" for s in failing)
        line = f"{len(live)} source{'' if len(live) == 1 else 's'}: {len(live) - len(failing)} ok"
        if failing:
            line += f", {len(failing)} failing (" + ", ".join(f"{c}: {n}" for c, n in categories.most_common()) + ")"
            if len(failing) == len(live) > 1 and set(categories) <= NETWORK_CATEGORIES:
                line += "; can this machine reach the internet (DNS, proxy, firewall)?"
        return line

    async def _detect(self, status: FeedStatus, lease: Lease) -> None:
        """Finds what a page root offers; its feeds then replace it and are polled at once.
        A failure counts as a poll error, so detection is retried with the usual backoff."""
        deadline = self._config.request_timeout * 1.5

        async def get(url: str) -> Answer:
            result = await fetch(self._client, httpx.URL(url), [], self._config.max_body_bytes, deadline, lease)
            return Answer(result.status, result.body, result.url or url)

        page = status.feed.url
        try:
            detected = await detect(status.feed, probing(get, page, (FetchError,)))
        except DetectError as exc:
            self._failed(status, f"detecting its source: {exc}", None, "detect", "no source found")
            return
        except FetchError as exc:
            self._failed(status, f"detecting its source: {exc}", None, "detect", exc.category)
            return
        found = detected.feed
        await self._store.save_source(page, found.kind, found.url)
        targets = poll_targets(found)
        if detected.moved_to:
            log.warning(
                "%s: %s redirects to %s (another host): polling it there; put the new address in the config",
                status.feed.name, redact_url(page), redact_url(detected.moved_to),
            )
        log.info(
            "%s: %s offers %s; polling %s", status.feed.name, redact_url(page), found.kind,
            ", ".join(redact_url(t.url) for t in targets),
        )
        del self.feeds[page]
        self._turns = None
        for target in targets:
            remember_url_secrets(target.url)
            self.feeds[target.url] = new = FeedStatus(target, FeedRecord(url=target.url), known=False)
            if self._unpolled is not None:
                self._unpolled.add(target.url)
            new.moved_to = detected.moved_to
            if self._running:
                self._schedule(new, 0)

    async def _process(self, status: FeedStatus, result: FetchResult, sent_validators: bool) -> list[int]:
        feed, record = status.feed, status.record
        record.last_status = result.status
        if result.status == 304 and not sent_validators:
            reason = "answered 304 Not Modified to a request that sent no validators (a misbehaving cache?)"
            self._failed(status, reason, 304, "http_304_unasked", "304 without validators")
            return []
        if result.url and status.moved_to != result.url and origin(result.url) != origin(feed.url):
            status.moved_to = result.url
            log.warning(
                "feed %s (%s) redirects to %s (another host): followed; put the new address in the config",
                feed.name, redact_url(feed.url), redact_url(result.url),
            )
        if result.status == 304:
            self.stats.results["304"] += 1
            self._succeeded(status)
            return []
        if result.status == 410:
            record.gone = True
            self.stats.results["http_410"] += 1
            log.warning("feed %s (%s) answered 410 Gone: no longer polled", feed.name, redact_url(feed.url))
            return []
        if result.status != 200:
            reason = f"HTTP {result.status}"
            if result.status in (429, 503) and result.retry_after is not None:
                record.backoff_until = time.time() + result.retry_after
                reason += f", retrying after {result.retry_after:g} s"
            if result.status == 429 and result.retry_after is not None:
                # A rate limit is the client's, not the feed's (RFC 6585 section 4): the
                # whole host waits. A 503 names one resource unavailable: that feed waits.
                host = status.host
                self._host_pause[host] = max(self._host_pause.get(host, 0.0), record.backoff_until)
                reason += f" (every feed of {status.url.host})"
            self._failed(status, reason, result.status, f"http_{result.status}", f"HTTP {result.status}")
            return []
        digest = content_digest(result.body)
        silent: list[int] = []
        if digest == status.digest:
            self.stats.unchanged_total += 1
        else:
            parsed = await asyncio.get_running_loop().run_in_executor(
                self._parser, parse_source, result.body, feed.name, feed.url, feed.kind, status.fingerprints,
                result.url, result.charset,
            )
            if parsed.components is not None:
                changes = component_changes(feed.name, page_root(feed.url), status.components, parsed.components)
                await self._handler.handle(changes, notify=status.known)
                status.components = {c.id: c.status for c in parsed.components}
                await self._store.save_components(feed.url, status.components)
            else:
                _, silent = await self._handler.handle_feed(
                    parsed.incidents, first_poll=not status.known, replay=self._config.replay
                )
            status.known, status.kind, status.digest = True, parsed.kind, digest
            status.fingerprints = parsed.fingerprints
            self.stats.parsed_total += 1
            record.entries = parsed.entries
        record.etag, record.last_modified = result.etag, result.last_modified
        self.stats.results["200"] += 1
        self._succeeded(status)
        return silent

    def _state_unavailable(self, status: FeedStatus, exc: StoreUnavailable) -> None:
        """The poll's outcome could not be stored: the feed's validators stay as they were, so
        its next poll fetches and handles the same updates again (nothing is lost)."""
        self.stats.state_unavailable_total += 1
        if self._state_lost_at is None:
            self._state_lost_at = time.monotonic()
            log.warning("%s: polls are not recorded until it is back (feed %s and others retry)", exc, status.feed.name)

    def _succeeded(self, status: FeedStatus) -> None:
        status.last_success = time.time()
        status.record.consecutive_errors = 0
        status.record.backoff_until = None
        status.last_error = status.category = None
        if status.failing:
            status.failing = False
            log.info("feed %s (%s) recovered", status.feed.name, redact_url(status.feed.url))

    def _failed(
        self, status: FeedStatus, reason: str, http_status: int | None, kind: str, category: str | None = None
    ) -> None:
        record = status.record
        record.last_status = http_status
        record.consecutive_errors += 1
        status.last_error, status.category = scrub(reason), category or kind
        self.stats.results[kind] += 1
        log.debug("feed %s: %s", status.feed.name, reason)
        if status.failing:
            return
        if status.last_success is None:
            status.failing = True
            log.warning("feed %s (%s) cannot be read: %s (still retrying)", status.feed.name, redact_url(status.feed.url), reason)
        elif record.consecutive_errors >= FAILING_AFTER:
            status.failing = True
            log.warning(
                "feed %s (%s) is failing: %s (%d errors in a row; still retrying)",
                status.feed.name, redact_url(status.feed.url), reason, record.consecutive_errors,
            )

    def feed_stats(self) -> list[dict]:
        return [
            {
                "name": s.feed.name,
                "url": redact_url(s.feed.url),
                "kind": s.kind or s.feed.kind,
                "last_status": s.record.last_status,
                "last_polled_at": s.record.last_polled_at,
                "consecutive_errors": s.record.consecutive_errors,
                "failing": s.failing,
                "last_error": s.last_error,
                "gone": s.record.gone,
                "entries": s.record.entries,
                "moved_to": redact_url(s.moved_to) if s.moved_to else None,
            }
            for s in self.feeds.values()
        ]
