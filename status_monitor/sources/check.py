"""`--check-providers`: fetch each catalogue entry's source now and say whether it is still
what the catalogue says. Knows which document each kind polls (detect.poll_targets) and
reads it with the monitor's own parsers, so an OK here means the monitor would read it."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable

from status_monitor.config import FeedConfig
from status_monitor.redact import redact_url
from status_monitor.sources.catalogue import Provider
from status_monitor.sources.detect import (
    API,
    DETECT,
    DetectError,
    Fetch,
    api_kind,
    detect,
    origin,
    page_root,
    poll_targets,
    probing,
)
from status_monitor.sources.kinds import FEED_KINDS, parse_feed, parse_source
from status_monitor.sources.readers import FeedError

OK, MOVED, MISMATCH, UNREACHABLE = "OK", "MOVED", "MISMATCH", "UNREACHABLE"


class Unreachable(Exception):
    """The source did not answer (connection, timeout, size): the message says why."""


@dataclass
class CheckResult:
    provider: Provider
    expected: str  # the catalogue's kind; "feed" for a feed of any family, "detected" for a page
    found: str  # the kind the document is, or "-"
    url: str  # the source's address after redirects
    http_status: int | None
    incidents: int | None
    newest: datetime | None  # the newest update's time
    verdict: str  # OK, MOVED, MISMATCH or UNREACHABLE
    reason: str = ""

    def line(self) -> str:
        """id, expected kind, found kind, final URL, HTTP status, incidents, newest update's
        day, verdict (with its reason)."""
        verdict = f"{self.verdict} ({self.reason})" if self.reason else self.verdict
        return LINE.format(
            self.provider.id, self.expected, self.found, redact_url(self.url),
            "-" if self.http_status is None else self.http_status,
            "-" if self.incidents is None else self.incidents, f"{self.newest:%Y-%m-%d}" if self.newest else "-", verdict,
        )


LINE = "{:<24} {:<16} {:<16} {}  {}  {}  {}  {}"
HEADER = LINE.format("ID", "EXPECTED", "FOUND", "URL", "HTTP", "INCIDENTS", "NEWEST", "RESULT")


def expected_kind(provider: Provider) -> str:
    if provider.kind:
        return provider.kind
    return "detected" if poll_targets(FeedConfig(provider.name, provider.source_url))[0].kind == DETECT else "feed"


def recognise(body: bytes, provider: str, url: str, hint: str | None) -> str:
    """The kind a document is: a platform's JSON (by its shape, or by parsing as `hint`), a
    feed's family, or "html" / "unknown"."""
    start = body.lstrip()[:1]
    if start in (b"{", b"["):
        try:
            kind = api_kind(json.loads(body))
        except (ValueError, RecursionError):
            return "unknown"
        if kind:
            return kind
        if hint:  # a document with no incidents names no platform: it is the hint's if it reads as one
            try:
                parse_source(body, provider, url, hint)
                return hint
            except FeedError:
                pass
        return "json"
    if start == b"<":
        try:
            return parse_feed(body, provider, url).kind
        except FeedError:
            return "html" if b"<html" in body[:2048].lower() else "unknown"
    return "unknown"


async def check_provider(provider: Provider, get: Fetch) -> CheckResult:
    """One entry: fetch its source (through detection where the catalogue names a page), read
    it, and judge. `get` raises Unreachable when nothing answers."""
    expected = expected_kind(provider)
    source = provider.source_url
    feed = FeedConfig(provider.name, source, provider.kind)
    target = poll_targets(feed)[0]
    moved = None
    try:
        if target.kind == DETECT:
            try:
                detected = await detect(feed, probing(get, source, (Unreachable,)))
            except DetectError as exc:
                return CheckResult(provider, expected, "-", source, None, None, None, MISMATCH, str(exc))
            moved, target = detected.moved_to, poll_targets(detected.feed)[0]
        answer = await get(target.url)
        if answer.status != 200:
            return CheckResult(provider, expected, "-", answer.url, answer.status, None, None, UNREACHABLE,
                               f"HTTP {answer.status}")
        if origin(answer.url) != origin(target.url):
            moved = answer.url
        found = recognise(answer.body, provider.name, answer.url, target.kind)
        if target.kind in ("statuspage-api", "incidentio-api"):  # told apart by the summary (FORMATS.md A4)
            summary = await get(f"{page_root(target.url)}{API}/summary.json")
            found = recognise(summary.body, provider.name, summary.url, None) if summary.status == 200 else found
    except Unreachable as exc:
        return CheckResult(provider, expected, "-", source, None, None, None, UNREACHABLE, str(exc))
    readable = found if found in FEED_KINDS or found == target.kind else None
    incidents = newest = None
    if readable:
        try:
            parsed = parse_source(answer.body, provider.name, answer.url, readable)
            incidents = len(parsed.incidents)
            times = [u.occurred_at for i in parsed.incidents for u in i.updates if u.occurred_at]
            newest = max(times) if times else None
        except FeedError as exc:
            return CheckResult(provider, expected, found, answer.url, answer.status, None, None, MISMATCH, str(exc))
    if moved:
        verdict, reason = MOVED, f"redirects to {redact_url(origin(moved))}"
    elif expected == "detected" or (expected == "feed" and found in FEED_KINDS) or found == expected:
        verdict, reason = OK, ""
    else:
        verdict, reason = MISMATCH, f"the document is {found}, not {expected}"
    return CheckResult(provider, expected, found, answer.url, answer.status, incidents, newest, verdict, reason)


async def check_providers(providers: Iterable[Provider], get: Fetch, concurrency: int) -> list[CheckResult]:
    """Every entry checked concurrently (at most `concurrency` at once), in the given order."""
    limit = asyncio.Semaphore(concurrency)

    async def one(provider: Provider) -> CheckResult:
        async with limit:
            return await check_provider(provider, get)

    return list(await asyncio.gather(*(one(p) for p in providers)))

