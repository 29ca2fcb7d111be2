"""Where a status page's updates are read from: the URLs each source kind polls and, for a
page configured by its root URL alone, what the page offers (probed once, then remembered).
Pure but for `detect`, which takes a function that fetches a URL."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from html import unescape
from typing import Awaitable, Callable
from urllib.parse import urljoin, urlsplit

from status_monitor.config import FeedConfig
from status_monitor.sources.apis import as_dict
from status_monitor.sources.feeds import FeedError
from status_monitor.sources.kinds import parse_feed

DETECT = "detect"  # the kind of a page root whose source is not known yet
API = "/api/v2"
# Feeds status pages commonly serve, tried when the page advertises none.
COMMON_FEEDS = ("/history.atom", "/history.rss", "/feed.atom", "/feed.rss", "/feed/atom", "/feed/rss")
_ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
_ALTERNATE = re.compile(r"<link\b[^>]*>", re.I)
_ATTR = re.compile(r'([a-z-]+)\s*=\s*("[^"]*"|\'[^\']*\'|[^\s>]+)', re.I)

Fetch = Callable[[str], Awaitable[tuple[int, bytes]]]


class DetectError(Exception):
    """Nothing usable found at a page root; the message says what was tried."""


def page_root(url: str) -> str:
    """`https://www.githubstatus.com/api/v2/incidents.json` -> `https://www.githubstatus.com`."""
    parts = urlsplit(url)
    path = parts.path.split(API, 1)[0].rstrip("/")
    return f"{parts.scheme}://{parts.netloc}{path}"


def is_page_root(url: str) -> bool:
    return urlsplit(url).path in ("", "/")


def poll_targets(feed: FeedConfig, remembered: dict[str, tuple[str, str]] | None = None) -> list[FeedConfig]:
    """The URLs a configured source is polled at, each with the kind of document it returns."""
    if feed.kind is None and is_page_root(feed.url):
        if remembered and feed.url in remembered:
            kind, url = remembered[feed.url]
            return poll_targets(replace(feed, url=url, kind=kind))
        return [replace(feed, kind=DETECT)]
    if feed.kind == "statuspage-api":
        root = page_root(feed.url)
        return [
            replace(feed, url=f"{root}{API}/incidents.json"),
            replace(feed, url=f"{root}{API}/summary.json", kind="statuspage-components"),
        ]
    if feed.kind == "incidentio-api":
        return [replace(feed, url=f"{page_root(feed.url)}{API}/incidents.json")]
    return [feed]


def api_kind(summary: object) -> str | None:
    """Statuspage and incident.io serve the same summary.json shape; incident.io's page id is
    a ULID and its summary has no scheduled maintenances (FORMATS.md A4)."""
    page = as_dict(as_dict(summary).get("page"))
    if not page or "status" not in as_dict(summary):
        return None
    page_id = str(page.get("id") or "")
    if _ULID.match(page_id) or "scheduled_maintenances" not in as_dict(summary):
        return "incidentio-api"
    return "statuspage-api"


def advertised_feeds(html: str, base: str) -> list[str]:
    """The RSS and Atom feeds a page names in `<link rel="alternate">`, Atom first."""
    found = []
    for tag in _ALTERNATE.findall(html):
        attrs = {name.lower(): unescape(value.strip("\"'")) for name, value in _ATTR.findall(tag)}
        kind = attrs.get("type", "").lower()
        if "alternate" in attrs.get("rel", "").lower() and kind in ("application/atom+xml", "application/rss+xml"):
            found.append((kind != "application/atom+xml", urljoin(base + "/", attrs.get("href", ""))))
    return [url for _, url in sorted(found)]


async def detect(feed: FeedConfig, fetch: Fetch) -> FeedConfig:
    """The page's JSON API if it has one, else the first feed it advertises that parses,
    else the first common feed path that does."""
    root = page_root(feed.url)
    status, body = await fetch(f"{root}{API}/summary.json")
    if status == 200:
        try:
            kind = api_kind(json.loads(body))
        except (ValueError, RecursionError):
            kind = None
        if kind:
            return replace(feed, url=root, kind=kind)
    status, body = await fetch(root + "/")
    candidates = advertised_feeds(body.decode("utf-8", "replace"), root) if status == 200 else []
    for url in [*candidates, *(root + path for path in COMMON_FEEDS)]:
        status, body = await fetch(url)
        if status != 200:
            continue
        try:
            parsed = parse_feed(body, feed.name, url)
        except FeedError:
            continue
        return replace(feed, url=url, kind=parsed.kind)
    raise DetectError(f"no status API ({API}/summary.json) and no feed found at {root}")
