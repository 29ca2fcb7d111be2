"""Pure feed parsing: a feed's entries go in, incidents with their updates come out.

The readers (readers.py) turn bytes into plain `Entry` records; one function per feed family
(FORMATS.md, part a) turns entries into incidents, whichever reader ran. Nothing here
touches the network, the clock or any state.
"""

from __future__ import annotations

import calendar
import re
from array import array
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from status_monitor.model import Event, Incident
from status_monitor.sources.readers import Document, Entry
from status_monitor.sources.text import digest, html_to_text


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


def statuspage_update_keys(code: str, updates: list[tuple[str, str, str]]) -> list[tuple[str, ...]]:
    """The keys of a Statuspage incident's updates, given as (label, local time, text) oldest
    first, alike from its feed blocks, its API and its webhooks (FORMATS.md A1, A2).

    An update is named by its displayed time and, apart, by its text, each with how many
    earlier updates of the incident share it: an owner editing the one or the other leaves
    the other key known, and deleting an update moves no other update's keys (unless it
    shared their minute or text). Last comes the key earlier versions gave (ordinal, label,
    time), so that their state still knows the updates it announced."""
    seen_times: dict[str, int] = {}
    seen_texts: dict[str, int] = {}
    keys = []
    for ordinal, (label, local_time, text) in enumerate(updates, start=1):
        at, said = seen_times.get(local_time, 0), seen_texts.get(text, 0)
        seen_times[local_time], seen_texts[text] = at + 1, said + 1
        keys.append((
            f"statuspage-at:{code}:{local_time}:{at}",
            f"statuspage-text:{code}:{digest(text)}:{said}",
            f"statuspage:{code}:{ordinal}:{label.lower()}:{local_time}",
        ))
    return keys


def _statuspage_blocks(content: str, published: datetime | None) -> list[StatuspageBlock]:
    blocks = []
    for chunk in _BLOCK_START.split(content)[1:]:
        match = _BLOCK.search("<small>" + chunk)
        if not match:
            continue
        label = html_to_text(match["label"]) or "Update"
        when = html_to_text(match["when"])
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
    title = entry.title
    published = entry.published
    updates = []
    status = "Update"
    blocks = _statuspage_blocks(entry.content, published)
    block_keys = statuspage_update_keys(code, [(block.label, block.local_time, block.text) for block in blocks])
    for block, keys in zip(blocks, block_keys):
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
                keys=keys,
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
        title=entry.title,
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
        status, title = _status_from_title(entry.title)
        message = html_to_text(entry.content)
        aws, gcp = _AWS_GUID.search(entry_id), _GCP_ID.search(entry_id)
        same_id = "https://" + entry_id[7:] if entry_id.startswith("http://") else entry_id
        incident_id = (
            aws["scope"] if aws else gcp["incident"] if gcp else statuscast["incident"] if statuscast else same_id
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
            # The text is part of the key: Azure rewrites an item in place under one guid. An
            # id's scheme is not: a site moving to HTTPS changes its guids' http:// alone.
            keys=tuple(dict.fromkeys((f"entry:{same_id}:{digest(message)}", f"entry:{entry_id}:{digest(message)}"))),
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
