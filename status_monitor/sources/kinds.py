"""Every kind of source the monitor reads, and the parser of each: the one registry.

A feed kind (RSS/Atom) turns a feed's entries into incidents; a JSON API kind turns a decoded
document into incidents. Adding a kind is a module in this package with such a function, and
one line in FEED_KINDS or API_KINDS. `parse_source` is the one entry point for every kind.
"""

from __future__ import annotations

from array import array
from typing import Any, Callable

from status_monitor.model import Incident
from status_monitor.sources import apis, betterstack, feeds, instatus, statusio
from status_monitor.sources.feeds import ParsedFeed
from status_monitor.sources.readers import Entry, FeedError, read_document

# kind -> (entries, provider, feed URL) -> incidents
FEED_KINDS: dict[str, Callable[[list[Entry], str, str], list[Incident]]] = {
    "statuspage": feeds.statuspage_incidents,
    "incidentio": feeds.incidentio_incidents,
    "statusio": statusio.statusio_incidents,
    "per-update": feeds.per_update_incidents,
}

# kind -> (JSON document, provider, URL) -> incidents
API_KINDS: dict[str, Callable[[Any, str, str], list[Incident]]] = {
    "statuspage-api": apis.statuspage_incidents,
    "incidentio-api": apis.incidentio_incidents,
    "google-cloud-api": apis.google_cloud_incidents,
    "slack-api": apis.slack_incidents,
    "betterstack-api": betterstack.betterstack_incidents,
    "instatus-api": instatus.instatus_incidents,
}

# A Statuspage summary: component states, not incidents (see rss_poller's component events).
COMPONENTS = "statuspage-components"


def parse_source(
    body: bytes, provider: str, url: str, kind: str | None, unchanged: bytes = b"",
    base_url: str = "", charset: str | None = None,
) -> ParsedFeed:
    """Any source's document, by its kind (None: a feed whose kind is detected from it).
    Feeds skip the `unchanged` entries, and take `base_url` and `charset` (see parse_feed).
    Raises FeedError for a body that is not a document of that kind."""
    if kind == COMPONENTS:
        document = apis.read_json(body)
        return ParsedFeed(kind, apis.page_name(document), [], 0, components=apis.summary_components(document))
    if kind in API_KINDS:
        document = apis.read_json(body)
        incidents = API_KINDS[kind](document, provider, url)
        return ParsedFeed(kind, apis.page_name(document), incidents, len(incidents))
    return parse_feed(body, provider, url, kind, unchanged=unchanged, base_url=base_url, charset=charset)


def parse_feed(
    body: bytes, provider: str, feed_url: str, kind: str | None = None, reader: str = "auto",
    unchanged: bytes = b"", base_url: str = "", charset: str | None = None,
) -> ParsedFeed:
    """An RSS or Atom feed. `kind` is one of FEED_KINDS, or None to detect it from the
    document; `reader` is "auto" (fast, falling back to feedparser), "fast" or "feedparser";
    `base_url` the URL the body came from after redirects, and `charset` its HTTP charset
    (see readers.read_document).

    `unchanged` holds the fingerprints of the entries parsed last time: those entries are
    skipped, since their updates were all handled then. A feed that changed by one update
    costs one entry's parse, not 25. Raises FeedError for a body that is no feed."""
    if not body.strip():
        raise FeedError("empty body")
    doc = read_document(body, reader, base_url or feed_url, charset)
    if kind is None:
        kind = feeds.detect_kind(doc)
    if kind == "statuspage" and not doc.entries:
        raise FeedError("a Statuspage feed with no entries (Statuspage feeds are never empty)")
    fingerprints = feeds.entry_fingerprints(doc.entries, kind)
    entries = doc.entries
    if unchanged:
        seen = set(array("q", unchanged))
        entries = [entry for entry, mark in zip(entries, fingerprints) if mark not in seen]
    incidents = FEED_KINDS.get(kind, feeds.per_update_incidents)(entries, provider, feed_url)
    return ParsedFeed(kind, doc.title, incidents, len(doc.entries), fingerprints=fingerprints.tobytes())
