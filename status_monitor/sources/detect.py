"""Where a status page's updates are read from: the URLs each source kind polls and, for a
page configured by its address alone, what the page offers (probed once, then remembered).
Pure but for `detect`, which takes a function that fetches a URL."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from html import unescape
from typing import Awaitable, Callable
from urllib.parse import urljoin, urlsplit

from status_monitor.config import FeedConfig
from status_monitor.sources.apis import as_dict
from status_monitor.sources.kinds import parse_feed
from status_monitor.sources.readers import FeedError

DETECT = "detect"  # the kind of a page whose source is not known yet
API = "/api/v2"
# JSON documents that name a page's platform, probed at the page and at its host's root.
API_PROBES = ("/api/v2/summary.json", "/index.json", "/summary.json")
# Feeds status pages commonly serve, tried when the page advertises none.
COMMON_FEEDS = ("/history.atom", "/history.rss", "/feed.atom", "/feed.rss", "/feed/atom", "/feed/rss")
_ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
_ALTERNATE = re.compile(r"<link\b[^>]*>", re.I)
_ATTR = re.compile(r'([a-z-]+)\s*=\s*("[^"]*"|\'[^\']*\'|[^\s>]+)', re.I)
_FEED_NAME = re.compile(r"rss|atom|feed|\.xml$", re.I)


@dataclass
class Answer:
    """What one GET gave: the status, the body and the URL it ended at after redirects."""

    status: int
    body: bytes
    url: str


Fetch = Callable[[str], Awaitable[Answer]]


def probing(fetch: Fetch, page: str, errors: tuple[type[Exception], ...]) -> Fetch:
    """`fetch` for detection: a probe that fails with one of `errors` is a miss (status 0);
    only the page itself failing is an error, raised as it came."""

    async def probe(url: str) -> Answer:
        try:
            return await fetch(url)
        except errors:
            if url == page:
                raise
            return Answer(0, b"", url)

    return probe


class DetectError(Exception):
    """Nothing usable found at a page; the message says what was tried."""


@dataclass
class Detected:
    """A page's source, and where the page had moved to when it redirected to another host."""

    feed: FeedConfig
    moved_to: str | None = None


def page_root(url: str) -> str:
    """`https://www.githubstatus.com/api/v2/incidents.json` -> `https://www.githubstatus.com`."""
    parts = urlsplit(url)
    path = parts.path.split(API, 1)[0].rstrip("/")
    return f"{parts.scheme}://{parts.netloc}{path}"


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def is_page_root(url: str) -> bool:
    return urlsplit(url).path in ("", "/")


def names_a_feed(url: str) -> bool:
    """A URL whose last path segment says feed, RSS, Atom or .xml is polled as given; any
    other address (a page root, a page with a path, a JSON document) is detected first."""
    segments = [s for s in urlsplit(url).path.split("/") if s]
    return bool(segments) and bool(_FEED_NAME.search(segments[-1]))


def poll_targets(feed: FeedConfig, remembered: dict[str, tuple[str, str]] | None = None) -> list[FeedConfig]:
    """The URLs a configured source is polled at, each with the kind of document it returns."""
    if feed.kind is None and not names_a_feed(feed.url):
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
    if feed.kind == "betterstack-api" and is_page_root(feed.url):
        return [replace(feed, url=f"{page_root(feed.url)}/index.json")]
    if feed.kind == "instatus-api" and is_page_root(feed.url):
        return [replace(feed, url=f"{page_root(feed.url)}/summary.json")]
    return [feed]


def api_kind(document: object) -> str | None:
    """The JSON API kind a platform document names, or None. Statuspage and incident.io serve
    the same summary.json shape; incident.io's page id is a ULID and its summary has no
    scheduled maintenances (FORMATS.md A4). Instatus's summary.json has a `page` whose
    `status` is a word ("UP", "HASISSUES") and no top-level `status`; Better Stack's
    index.json is a JSON:API document of type `status_page`. Lists of incidents are named
    by their fields (see _incident_list_kind)."""
    original, document = document, as_dict(document)
    page = as_dict(document.get("page"))
    if page and "status" in document:
        if _ULID.match(str(page.get("id") or "")) or "scheduled_maintenances" not in document:
            return "incidentio-api"
        return "statuspage-api"
    if page and isinstance(page.get("status"), str):
        return "instatus-api"
    if as_dict(document.get("data")).get("type") == "status_page" and isinstance(document.get("included"), list):
        return "betterstack-api"
    return _incident_list_kind(original)


def _incident_list_kind(document: object) -> str | None:
    """A list of incidents: Statuspage's or incident.io's `incidents.json` (told apart by the
    page id), Google Cloud's `incidents.json` or Slack's history, by their fields."""
    incidents = as_dict(document).get("incidents") if isinstance(document, dict) else document
    first = as_dict(incidents[0]) if isinstance(incidents, list) and incidents else {}
    if "incident_updates" in first:
        return "incidentio-api" if _ULID.match(str(first.get("page_id") or first.get("id") or "")) else "statuspage-api"
    if "affected_products" in first or ("begin" in first and "updates" in first):
        return "google-cloud-api"
    if "notes" in first and "date_created" in first:
        return "slack-api"
    return None


def advertised_feeds(html: str, base: str) -> list[str]:
    """The RSS and Atom feeds a page names in `<link rel="alternate">`, Atom first."""
    found = []
    for tag in _ALTERNATE.findall(html):
        attrs = {name.lower(): unescape(value.strip("\"'")) for name, value in _ATTR.findall(tag)}
        kind = attrs.get("type", "").lower()
        if "alternate" in attrs.get("rel", "").lower() and kind in ("application/atom+xml", "application/rss+xml"):
            found.append((kind != "application/atom+xml", urljoin(base + "/", attrs.get("href", ""))))
    return [url for _, url in sorted(found)]


def _api_source(feed: FeedConfig, answer: Answer) -> FeedConfig | None:
    if answer.status != 200 or answer.body.lstrip()[:1] not in (b"{", b"["):
        return None
    try:
        kind = api_kind(json.loads(answer.body))
    except (ValueError, RecursionError):
        return None
    if kind in ("statuspage-api", "incidentio-api"):
        return replace(feed, url=page_root(answer.url), kind=kind)
    return replace(feed, url=answer.url, kind=kind) if kind else None


def _feed_source(feed: FeedConfig, answer: Answer) -> FeedConfig | None:
    if answer.status != 200 or answer.body.lstrip()[:1] != b"<":
        return None
    try:
        parsed = parse_feed(answer.body, feed.name, answer.url)
    except FeedError:
        return None
    return replace(feed, url=answer.url, kind=parsed.kind)


async def detect(feed: FeedConfig, fetch: Fetch) -> Detected:
    """What a page a person pasted offers, as feed readers find it when subscribing: the
    address itself if it is a feed or a platform's JSON document; else the platform's JSON
    API at the page and at its host's root; else the feeds the page (or the host's front
    page) advertises, then the common feed paths. Redirects are followed; one to another
    host is reported as `moved_to`. A site that answers every path with the same HTML is
    "no feed found". Raises DetectError saying what was tried."""
    answered: list[bytes] = []  # the bodies of every 200 that was no source: one repeated is a catch-all

    async def get(url: str) -> Answer:
        answer = await fetch(url)
        if answer.status == 200:
            answered.append(answer.body)
        return answer

    first = await get(feed.url)
    here = first.url if first.status == 200 else feed.url
    moved_to = here if origin(here) != origin(feed.url) else None
    found = _api_source(feed, first) or _feed_source(feed, first)
    if found:
        return Detected(found, moved_to)
    pages = list(dict.fromkeys([page_root(here), origin(here)]))
    html = {page_root(here): first} if first.status == 200 else {}
    for page in pages:
        for path in API_PROBES:
            found = _api_source(feed, await get(page + path))
            if found:
                return Detected(found, moved_to)
    candidates: list[str] = []
    for page in pages:
        answer = html.get(page) or await get(page + "/")
        if answer.status == 200:
            candidates += advertised_feeds(answer.body.decode("utf-8", "replace"), page)
    candidates += [page + path for page in pages for path in COMMON_FEEDS]
    for url in dict.fromkeys(candidates):
        found = _feed_source(feed, await get(url))
        if found:
            return Detected(found, moved_to)
    where = " and ".join(pages)
    if len(answered) > 1 and len(set(answered)) == 1:
        raise DetectError(f"no feed found at {where}: every path answers with the same HTML page (a catch-all site)")
    raise DetectError(f"no status API ({', '.join(API_PROBES)}) and no feed found at {where}")
