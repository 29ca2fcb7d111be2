"""Pure feed parsing: a feed document goes in, incidents with their updates come out.

Two readers turn bytes into plain `Entry` records: a fast one (a strict lxml tree, read
directly) and feedparser, the tolerant fallback for documents the fast one refuses
(malformed XML, RSS 1.0, other dialects). One function per feed family (FORMATS.md, part a) turns
entries into incidents, whichever reader ran. Nothing here touches the network, the clock
or any state.
"""

from __future__ import annotations

import calendar
import email.utils
import hashlib
import html
import io
import re
from array import array
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from lxml import etree

from status_monitor.model import Event, Incident

_STRICT_XML = etree.XMLParser(recover=False, resolve_entities=False, no_network=True, huge_tree=False)


class FeedError(Exception):
    """The body is not a usable feed: an error for that feed, never "no incidents"."""


@dataclass
class Entry:
    """One feed item or entry, as plain data, whichever reader produced it."""

    id: str
    link: str
    title: str
    content: str  # HTML
    published: datetime | None  # the item's date: published, else updated; whole seconds
    tags: list[str] = field(default_factory=list)


@dataclass
class Document:
    title: str
    generator: str
    entries: list[Entry]


@dataclass
class ComponentState:
    """A status page component as its summary shows it now."""

    id: str
    name: str
    status: str  # operational, degraded_performance, partial_outage, major_outage, under_maintenance
    updated_at: datetime | None


@dataclass
class ParsedFeed:
    kind: str
    title: str
    incidents: list[Incident]
    entries: int
    components: list[ComponentState] | None = None  # a page summary's, not incidents
    fingerprints: bytes = b""  # of every entry (see entry_fingerprints): the next parse's `unchanged`


def entry_fingerprints(entries: list[Entry], kind: str) -> array:
    """A 64-bit hash of everything an entry's updates are made of, the kind of feed included,
    for this process only (str hashes are salted). Fingerprints that differ only cost a parse."""
    return array("q", (hash((kind, e.id, e.link, e.title, e.content, e.published, tuple(e.tags))) for e in entries))


# An entity declaration as UTF-8 (and every ASCII-compatible encoding), UTF-16 and UTF-32
# write it. No status feed declares entities; billion laughs and quadratic blowup need them.
_ENTITY_DECLARATIONS = tuple("<!ENTITY".encode(e) for e in ("ascii", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"))


def refuse_entity_declarations(body: bytes) -> None:
    """Raises FeedError for a document that declares XML entities (in its DTD, RFC 7303
    section 5; or in text, where a real feed never writes the sequence unescaped): neither
    reader is then given it, so no entity is expanded, internal (billion laughs, quadratic
    blowup) or external (a file or URL), and the refusal costs one scan of the bytes."""
    if any(declaration in body for declaration in _ENTITY_DECLARATIONS):
        raise FeedError("XML entity expansion refused (the document declares entities)")


def read_document(body: bytes, reader: str = "auto") -> Document:
    """The document's entries, by `reader`; raises FeedError for a malformed document, one
    that is not a feed, or one that declares entities (see refuse_entity_declarations)."""
    refuse_entity_declarations(body)
    if reader == "feedparser":
        return _read_with_feedparser(body)
    try:
        return _read_fast(body)
    except FeedError:
        if reader == "fast":
            raise
        return _read_with_feedparser(body)


def _read_fast(body: bytes) -> Document:
    """RSS 2.0 and Atom straight from a strict lxml tree: a malformed document is refused."""
    try:
        root = etree.fromstring(body, _STRICT_XML)
    except etree.XMLSyntaxError as exc:
        raise FeedError(f"malformed XML: {exc}") from None
    if root.tag == "rss" and (channel := root.find("channel")) is not None:
        return Document(_text(channel, "title"), _text(channel, "generator"), [_rss_entry(i) for i in channel.iter("item")])
    if root.tag == _ATOM + "feed":
        return Document(_text(root, _ATOM + "title"), _text(root, _ATOM + "generator"),
                        [_atom_entry(e) for e in root.iterchildren(_ATOM + "entry")])
    raise FeedError("not an RSS or Atom feed")


_ATOM = "{http://www.w3.org/2005/Atom}"
_CONTENT_ENCODED = "{http://purl.org/rss/1.0/modules/content/}encoded"


def _text(element: Any, path: str) -> str:
    return (element.findtext(path) or "").strip()


def _rss_entry(item: Any) -> Entry:
    fields: dict[str, str] = {}
    tags = []
    for child in item:
        if child.tag == "category":
            if child.text and child.text.strip():
                tags.append(child.text.strip())
        elif child.tag not in fields:
            fields[child.tag] = child.text or ""
    date = fields.get("pubDate", "").strip()
    try:
        published = email.utils.parsedate_to_datetime(date) if date else None
    except (TypeError, ValueError):
        published = None
    link = fields.get("link", "").strip()
    return Entry(
        id=fields.get("guid", "").strip() or link,
        link=link,
        title=fields.get("title", "").strip(),
        content=fields.get(_CONTENT_ENCODED) or fields.get("description") or "",
        published=_whole_seconds(published),
        tags=tags,
    )


def _atom_entry(entry: Any) -> Entry:
    link = ""
    for element in entry.iterchildren(_ATOM + "link"):
        if element.get("rel", "alternate") == "alternate":
            link = element.get("href", "")
            break
    return Entry(
        id=_text(entry, _ATOM + "id"),
        link=link,
        title=_text(entry, _ATOM + "title"),
        content=_atom_text(entry.find(_ATOM + "content")) or _atom_text(entry.find(_ATOM + "summary")),
        published=_whole_seconds(parse_time(_text(entry, _ATOM + "published") or _text(entry, _ATOM + "updated"))),
        tags=[c.get("term") for c in entry.iterchildren(_ATOM + "category") if c.get("term")],
    )


def _atom_text(element: Any) -> str:
    if element is None:
        return ""
    if element.get("type") == "xhtml":
        return "".join(etree.tostring(child, encoding="unicode") for child in element)
    return element.text or ""


def _read_with_feedparser(body: bytes) -> Document:
    import feedparser  # only for the rare document the fast reader refuses: it costs memory

    # A file object, never a string: feedparser fetches URLs and opens paths it is given.
    doc = feedparser.parse(io.BytesIO(body), sanitize_html=False, resolve_relative_uris=False)
    benign = (feedparser.CharacterEncodingOverride, feedparser.NonXMLContentType)  # warnings, not breakage
    if doc.bozo and not isinstance(doc.bozo_exception, benign):
        raise FeedError(f"malformed feed: {doc.bozo_exception}")
    if not doc.version:
        raise FeedError("not an RSS or Atom feed (an HTML page or unknown document)")
    if not doc.feed.get("title") and not doc.entries:
        raise FeedError("feed has no title and no entries")
    entries = []
    for e in doc.entries:
        parsed = e.get("published_parsed") or e.get("updated_parsed")
        entries.append(
            Entry(
                id=e.get("id") or "",
                link=e.get("link") or "",
                title=e.get("title") or "",
                content=_first_content(e.get("content")) or e.get("summary") or "",
                published=datetime.fromtimestamp(calendar.timegm(parsed), tz=timezone.utc) if parsed else None,
                tags=[t["term"] for t in e.get("tags", []) if t.get("term")],
            )
        )
    return Document(doc.feed.get("title", ""), doc.feed.get("generator", "") or "", entries)


def _first_content(content: Any) -> str:
    if content:
        return content[0].get("value") or ""
    return ""


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time as feeds, APIs and webhooks write it. One without a zone is read as
    UTC: every time must compare with every other (ordering, staleness, open incidents)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _whole_seconds(when: datetime | None) -> datetime | None:
    """Both readers must give the same date: feedparser keeps no fractions of a second."""
    return when.astimezone(timezone.utc).replace(microsecond=0) if when else None


_CHANNEL_DATE = re.compile(rb"<(pubDate|lastBuildDate|updated)>[^<]*</\1>")
_FIRST_ITEM = re.compile(rb"<(?:item|entry)[\s>]")


def content_digest(body: bytes) -> int:
    """A hash of the document without the channel's own dates, which some servers stamp
    anew on every answer: the same digest means the same entries, so no parse is needed.

    Python's own 64-bit hash (salted per process: digests are never stored), not hashlib's:
    hashlib lets go of the GIL for a large body, and taking it back from the parse thread
    stalled the event loop for about 1 ms a feed in a cold cycle."""
    match = _FIRST_ITEM.search(body)
    cut = match.start() if match else len(body)
    head = _CHANNEL_DATE.sub(b"", body[:cut])
    return hash(head + body[cut:])


def detect_kind(doc: Document) -> str:
    if "incident.io" in doc.generator.lower():
        return "incidentio"
    for entry in doc.entries[:5]:
        if _INCIDENTIO_ID.search(entry.link or entry.id):
            return "incidentio"
        if STATUSIO_LINK.search(entry.link):
            return "statusio"
        if _BLOCK_START.search(entry.content):
            return "statuspage"
    return "per-update"


_LINE_BREAK = re.compile(r"<\s*(?:br|/p|/li|/div|/h\d)\b[^>]*>", re.I)
_TAG = re.compile(r"<[^>]+>")


def html_to_text(fragment: str) -> str:
    """Plain text with line breaks where the markup broke lines."""
    if "<" in fragment:
        fragment = _TAG.sub("", _LINE_BREAK.sub("\n", fragment))
    if "&" in fragment:
        fragment = html.unescape(fragment)
    if "\n" not in fragment:
        return " ".join(fragment.split())
    stripped = fragment.strip()
    if stripped.isprintable():  # the line breaks were only at the ends (a closing </p>, say)
        return " ".join(stripped.split())
    lines = (" ".join(line.split()) for line in fragment.splitlines())
    return "\n".join(line for line in lines if line)


def digest(text: str) -> str:
    """A text's share of an update key (feeds, APIs and webhooks must agree on it)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- Atlassian Statuspage: one item per incident, every update a block, newest first ---

_BLOCK_START = re.compile(r"<p>\s*<small>", re.I)
_BLOCK = re.compile(
    r"<small>(?P<when>.*?)</small>\s*(?:<br\s*/?>)?\s*<strong>(?P<label>.*?)</strong>\s*-?\s*(?P<body>.*)",
    re.I | re.S,
)
_BLOCK_TIME = re.compile(r"([A-Za-z]{3})\s+(\d{1,2}),\s*(\d{1,2}):(\d{2})\s*([A-Za-z]*)")
_STATUSPAGE_CODE = re.compile(r"/incidents/([A-Za-z0-9]+)")
_MONTHS = {m: i for i, m in enumerate(calendar.month_abbr) if m}
# Abbreviations Statuspage pages print; an unknown one is read as UTC (the key does not use it).
_TZ_OFFSETS = {
    "UTC": 0, "GMT": 0, "Z": 0, "WET": 0, "WEST": 1, "BST": 1, "CET": 1, "CEST": 2,
    "EET": 2, "EEST": 3, "MSK": 3, "IST": 5.5, "SGT": 8, "HKT": 8, "JST": 9, "KST": 9,
    "AEST": 10, "AEDT": 11, "NZST": 12, "NZDT": 13, "HST": -10, "AKST": -9, "AKDT": -8,
    "PST": -8, "PDT": -7, "MST": -7, "MDT": -6, "CST": -6, "CDT": -5, "EST": -5, "EDT": -4,
}
_OFFSETS = {name: timedelta(hours=hours) for name, hours in _TZ_OFFSETS.items()}
_NO_OFFSET = timedelta(0)


def zone_offset(abbreviation: str) -> timedelta:
    """A time zone abbreviation status pages print (PDT, CET, UTC) as its offset from UTC;
    an unknown one as 0."""
    return _OFFSETS.get(abbreviation.upper(), _NO_OFFSET)

_TWO_DAYS = timedelta(days=2)
_OPEN_STATUSPAGE = frozenset({"investigating", "identified", "monitoring", "in progress", "verifying"})


@dataclass
class StatuspageBlock:
    local_time: str  # "MM-DD HH:MM" as the page printed it: the part of the key both feed and webhook know
    occurred_at: datetime | None
    label: str
    text: str


def statuspage_update_key(code: str, ordinal: int, label: str, local_time: str) -> str:
    """Names one Statuspage update the same way from a feed block and from a webhook."""
    return f"statuspage:{code}:{ordinal}:{label.lower()}:{local_time}"


def _statuspage_blocks(content: str, published: datetime | None) -> list[StatuspageBlock]:
    blocks = []
    for chunk in _BLOCK_START.split(content)[1:]:
        match = _BLOCK.search("<small>" + chunk)
        if not match:
            continue
        label = html_to_text(match["label"]) or "Update"
        when = _TAG.sub("", match["when"])
        local_time, occurred_at = _block_time(when, published)
        blocks.append(StatuspageBlock(local_time, occurred_at, label, html_to_text(match["body"])))
    blocks.reverse()
    return blocks


def _block_time(when: str, published: datetime | None) -> tuple[str, datetime | None]:
    match = _BLOCK_TIME.search(when)
    month = _MONTHS.get(match[1].title()) if match else None
    if month is None:
        return " ".join(when.split()), None
    day, hour, minute = int(match[2]), int(match[3]), int(match[4])
    local_time = f"{month:02d}-{day:02d} {hour:02d}:{minute:02d}"
    if published is None:
        return local_time, None
    offset = _OFFSETS.get(match[5].upper(), _NO_OFFSET)
    # Blocks carry no year: take the item's, or the year before when that lands in the future.
    occurred_at = None
    for year in (published.year, published.year - 1):
        try:
            occurred_at = datetime(year, month, day, hour, minute, tzinfo=timezone.utc) - offset
        except ValueError:
            continue
        if occurred_at <= published + _TWO_DAYS:
            break
    return local_time, occurred_at


def statuspage_incidents(entries: list[Entry], provider: str, feed_url: str) -> list[Incident]:
    """Atlassian Statuspage history feeds (FORMATS.md a1): an entry a incident, its updates
    the `<p><small>` blocks of its content."""
    return [_statuspage_incident(entry, provider) for entry in entries]


def _statuspage_incident(entry: Entry, provider: str) -> Incident:
    link = entry.link
    match = _STATUSPAGE_CODE.search(link) or _STATUSPAGE_CODE.search(entry.id)
    code = match.group(1) if match else digest(entry.id or link)
    title = html_to_text(entry.title)
    published = entry.published
    updates = []
    status = "Update"
    for ordinal, block in enumerate(_statuspage_blocks(entry.content, published), start=1):
        if block.label.lower() != "update":
            status = block.label
        updates.append(
            Event(
                provider=provider,
                title=title,
                status=status,
                message=block.text,
                incident_id=code,
                url=link or None,
                source="rss",
                keys=(statuspage_update_key(code, ordinal, block.label, block.local_time),),
                occurred_at=block.occurred_at or published,
            )
        )
    return Incident(code, updates, open=status.lower() in _OPEN_STATUSPAGE)


# --- incident.io: one item per incident, holding only its latest state ---

_INCIDENTIO_ID = re.compile(r"/incidents/([0-9A-HJKMNP-TV-Z]{26})\b")
# A status.io item's link names its page and the incident (or maintenance): see statusio.py.
STATUSIO_LINK = re.compile(r"/pages/(?:incident|maintenance)/[0-9a-f]{24}/(?P<id>[0-9a-f]{24})")
_INCIDENTIO_STATUS = re.compile(r"<b>\s*Status:\s*(?P<status>[^<]+?)\s*</b>", re.I)
_INCIDENTIO_COMPONENTS = re.compile(r"<b>\s*Affected components\s*</b>(?P<list>.*)", re.I | re.S)
_LIST_ITEM = re.compile(r"<li>(.*?)</li>", re.I | re.S)
_COMPONENT_STATE = re.compile(r"\s*\([^()]*\)\s*$")


def incidentio_incidents(entries: list[Entry], provider: str, feed_url: str) -> list[Incident]:
    """incident.io feeds (FORMATS.md a2): an entry an incident in its latest state."""
    return [_incidentio_incident(entry, provider) for entry in entries]


def _incidentio_incident(entry: Entry, provider: str) -> Incident:
    link = entry.link or entry.id
    match = _INCIDENTIO_ID.search(link) or _INCIDENTIO_ID.search(entry.id)
    incident_id = match.group(1) if match else digest(entry.id or link)
    content = entry.content
    status_match = _INCIDENTIO_STATUS.search(content)
    status = status_match["status"].strip() if status_match else "Update"
    components_match = _INCIDENTIO_COMPONENTS.search(content)
    message_html = content
    if status_match:
        message_html = message_html[status_match.end():]
    components: list[str] = []
    if components_match:
        message_html = message_html[: message_html.lower().find("<b>affected components")]
        for item in _LIST_ITEM.findall(components_match["list"]):
            # "(Operational)" is the component's state now, not at the time of the update.
            name = _COMPONENT_STATE.sub("", html_to_text(item))
            if name and name not in components:
                components.append(name)
    message = html_to_text(message_html)
    occurred_at = entry.published
    stamp = occurred_at.isoformat() if occurred_at else ""
    event = Event(
        provider=provider,
        title=html_to_text(entry.title),
        status=status,
        message=message,
        incident_id=incident_id,
        url=link.replace("//incidents/", "/incidents/") or None,
        source="rss",
        keys=(f"incidentio:{incident_id}:{stamp}:{status.lower()}:{digest(message)}",),
        components=components,
        occurred_at=occurred_at,
        snapshot=True,
    )
    return Incident(incident_id, [event], open=status.lower() != "resolved")


# --- per-update feeds (AWS, Google Cloud, Azure, StatusCast, anything unknown): each entry an update ---

_AWS_GUID = re.compile(r"#(?P<scope>[^#]+)_(?P<epoch>\d+)$")
_GCP_ID = re.compile(r":feed:(?P<incident>[^.]+)\.")
# StatusCast (Fastly): one item per post, guid "/<incident>/<post>" (Infrawrench's Fastly plugin, verified 2026-10)
_STATUSCAST_GUID = re.compile(r"^/(?P<incident>\d+)/\d+$")
_STATUS_PREFIX = re.compile(
    r"^\s*(?:\[(?P<bracket>[A-Za-z ]+)\]|(?P<word>RESOLVED|UPDATE|INVESTIGATING|IDENTIFIED|MONITORING|"
    r"Service is operating normally|Service impact|Service disruption|Informational message)\s*:)\s*",
    re.I,
)


def _status_from_title(title: str) -> tuple[str, str]:
    """Reads "RESOLVED: x", "[RESOLVED] x", AWS's "Service impact: x"; returns (status, title)."""
    status = None
    while match := _STATUS_PREFIX.match(title):
        prefix = (match["bracket"] or match["word"]).strip()
        title = title[match.end():]
        if prefix.lower() == "service is operating normally":
            prefix = "Resolved"
        if status is None or prefix.lower() == "resolved":
            status = prefix
    return (status or "Update").capitalize(), title.strip()


def per_update_incidents(entries: list[Entry], provider: str, feed_url: str) -> list[Incident]:
    groups: dict[str, list[Event]] = {}
    for entry in entries:
        entry_id = entry.id or entry.link or digest(entry.content)
        statuscast = _STATUSCAST_GUID.match(entry_id)
        if "://" not in entry_id and not entry_id.startswith("tag:"):
            entry_id = f"{feed_url}#{entry_id}"
        status, title = _status_from_title(html_to_text(entry.title))
        message = html_to_text(entry.content)
        aws, gcp = _AWS_GUID.search(entry_id), _GCP_ID.search(entry_id)
        incident_id = (
            aws["scope"] if aws else gcp["incident"] if gcp else statuscast["incident"] if statuscast else entry_id
        )
        components = list(entry.tags)
        event = Event(
            provider=provider,
            title=title,
            status=status,
            message=message,
            incident_id=incident_id,
            url=entry.link or None,
            source="rss",
            # The text is part of the key: Azure rewrites an item in place under one guid.
            keys=(f"entry:{entry_id}:{digest(message)}",),
            components=components,
            occurred_at=entry.published,
        )
        groups.setdefault(incident_id, []).append(event)
    incidents = []
    for incident_id, updates in groups.items():
        updates.sort(key=lambda e: e.occurred_at or datetime.min.replace(tzinfo=timezone.utc))
        resolved = updates[-1].status.lower() == "resolved"
        incidents.append(Incident(incident_id, updates, open=False if resolved else None))
    return incidents
