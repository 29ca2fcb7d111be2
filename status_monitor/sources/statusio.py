"""status.io feeds (GitLab, Let's Encrypt, Neon; Docker before August 2026): one item per
incident or maintenance, holding every update as a block, oldest first, with the year and
the page's time zone:
`<small>June 4, 2026 05:15 PDT</small><br /><b>Investigating</b> - text<br /><br />`
(a Docker capture: tests/fixtures/feeds/statusio_docker_history_2026-06-24.rss). The item's
link, `/pages/incident/<page id>/<incident id>`, names the incident."""

from __future__ import annotations

import calendar
import re
from datetime import datetime, timezone

from status_monitor.model import Event, Incident
from status_monitor.sources.feeds import STATUSIO_LINK, zone_offset
from status_monitor.sources.readers import Entry
from status_monitor.sources.text import digest, html_to_text

_BLOCK = re.compile(
    r"<small>(?P<when>[^<]*)</small>\s*(?:<br\s*/?>)?\s*<b>(?P<label>.*?)</b>\s*-?\s*(?P<body>.*?)(?=<small>|$)",
    re.I | re.S,
)
_TIME = re.compile(r"([A-Za-z]+)\s+(\d{1,2}),\s*(\d{4})\s+(\d{1,2}):(\d{2})\s*([A-Za-z]*)")
_MONTHS = {name.lower(): number for names in (calendar.month_name, calendar.month_abbr)
           for number, name in enumerate(names) if name}
_CLOSED = frozenset({"resolved", "completed"})


def statusio_incidents(entries: list[Entry], provider: str, feed_url: str) -> list[Incident]:
    """Each block is one update, named by the incident's id, its position (oldest first),
    label and printed time: a block added later never renames the earlier ones. Resolved
    (Completed for a maintenance) closes it."""
    return [_incident(entry, provider) for entry in entries]


def block_time(when: str) -> datetime | None:
    """"June 4, 2026 05:15 PDT" in UTC, or None for a time it cannot read."""
    match = _TIME.search(when)
    month = _MONTHS.get(match[1].lower()) if match else None
    if match is None or month is None:
        return None
    try:
        local = datetime(int(match[3]), month, int(match[2]), int(match[4]), int(match[5]), tzinfo=timezone.utc)
    except ValueError:
        return None
    return local - zone_offset(match[6])


def _incident(entry: Entry, provider: str) -> Incident:
    match = STATUSIO_LINK.search(entry.link)
    incident_id = match["id"] if match else digest(entry.id or entry.link)
    title = html_to_text(entry.title)
    updates = []
    for ordinal, block in enumerate(_BLOCK.finditer(entry.content), start=1):
        label = html_to_text(block["label"]) or "Update"
        when = html_to_text(block["when"])
        updates.append(Event(
            provider=provider, title=title, status=label, message=html_to_text(block["body"]),
            incident_id=incident_id, url=entry.link or None, source="rss",
            keys=(f"statusio:{incident_id}:{ordinal}:{label.lower()}:{when}",),
            occurred_at=block_time(when) or entry.published,
        ))
    closed = bool(updates) and updates[-1].status.lower() in _CLOSED
    return Incident(incident_id, updates, open=not closed)
