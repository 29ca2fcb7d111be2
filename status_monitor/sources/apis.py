"""Pure parsing of status pages' JSON APIs (FORMATS.md A2, A4, A5): a document goes in,
incidents come out, each update named by the API's own id (or, where it has none, by its
time), so no update between two polls is lost. A Statuspage summary gives component states
instead. Each kind is registered in `kinds.py`.
"""

from __future__ import annotations

import json
from typing import Any

from status_monitor.model import Event, Incident
from status_monitor.sources.feeds import ComponentState, statuspage_update_keys
from status_monitor.sources.readers import FeedError, parse_time
from status_monitor.sources.text import digest, html_to_text, plain_text

OPEN_STATUSES = frozenset({"investigating", "identified", "monitoring", "in_progress", "verifying", "scheduled"})
OPERATIONAL = "operational"


def read_json(body: bytes) -> Any:
    if body.lstrip()[:1] == b"<":
        raise FeedError("expected a JSON document, got markup (an HTML page?)")
    try:
        return json.loads(body)  # UTF-8, -16 or -32, told apart by the bytes (RFC 8259)
    except (ValueError, RecursionError) as exc:
        raise FeedError(f"not valid JSON: {exc}") from None


def page_name(document: Any) -> str:
    """The page's name: `page.name`, or a Better Stack document's company name."""
    page = as_dict(as_dict(document).get("page"))
    if page:
        return as_str(page.get("name"))
    return as_str(as_dict(as_dict(as_dict(document).get("data")).get("attributes")).get("company_name"))


def _incident_list(document: Any, key: str = "incidents") -> list[dict]:
    items = as_dict(document).get(key) if isinstance(document, dict) else document
    if not isinstance(items, list):
        raise FeedError(f'expected a list of incidents{f" under {key!r}" if isinstance(document, dict) else ""}')
    return [item for item in items if isinstance(item, dict) and as_str(item.get("id"))]


def as_dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else []


def as_str(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def humanise(status: str) -> str:
    """`major_outage` -> `Major outage`, `investigating` -> `Investigating`."""
    return status.replace("_", " ").strip().capitalize()


def _local_minute(value: Any) -> str:
    """"MM-DD HH:MM" in the offset the page wrote: what its feed prints for the same update."""
    when = parse_time(value)
    return f"{when:%m-%d %H:%M}" if when else ""


def statuspage_incident(provider: str, incident: dict, source: str) -> list[Event]:
    """A Statuspage incident object (API or subscriber webhook: the same shape) as events,
    oldest first. Each update is named by its id and by the keys its feed block gets
    (`feeds.statuspage_update_keys`), so it is announced once whichever source brings it
    first. An update's `body` is the HTML its feed block shows (GitHub's hold `<br />`:
    statuspage_github_incidents.json); every other string is plain text."""
    code = incident["id"]
    updates = [u for u in as_list(incident.get("incident_updates")) if isinstance(u, dict)]
    updates.sort(key=lambda u: as_str(u.get("created_at")))  # oldest first, as the feed counts them
    components = [as_str(c.get("name")) for c in as_list(incident.get("components")) if isinstance(c, dict)]
    title = as_str(incident.get("name")) or code
    url = as_str(incident.get("shortlink")) or None
    statuses = [as_str(u.get("status")) or as_str(incident.get("status")) or "update" for u in updates]
    labels = [humanise(status) if status != previous else "Update" for status, previous in zip(statuses, [None, *statuses])]
    messages = [html_to_text(as_str(u.get("body"))) for u in updates]
    shown_at = [u.get("display_at") or u.get("created_at") for u in updates]
    block_keys = statuspage_update_keys(code, [(label, _local_minute(when), message)
                                               for label, when, message in zip(labels, shown_at, messages)])
    events = []
    for update, status, message, when, keys in zip(updates, statuses, messages, shown_at, block_keys):
        affected = [as_str(c.get("name")) for c in as_list(update.get("affected_components")) if isinstance(c, dict)]
        if as_str(update.get("id")):
            keys = (f"statuspage-update:{update['id']}", *keys)
        events.append(
            Event(
                provider=provider,
                title=title,
                status=humanise(status),
                message=message,
                incident_id=code,
                url=url,
                source=source,
                keys=keys,
                components=[c for c in (affected or components) if c],
                event_type="incident.update" if source == "webhook" else None,
                impact=as_str(incident.get("impact")) or None,
                occurred_at=parse_time(when),
            )
        )
    if not events:
        status = as_str(incident.get("status")) or "update"
        events.append(
            Event(
                provider=provider, title=title, status=humanise(status), message="", incident_id=code,
                url=url, source=source,
                keys=(f"statuspage-incident:{code}:{status}:{as_str(incident.get('updated_at'))}",),
                components=[c for c in components if c], event_type="incident.update" if source == "webhook" else None,
                impact=as_str(incident.get("impact")) or None,
                occurred_at=parse_time(incident.get("updated_at")),
            )
        )
    return events


# --- Atlassian Statuspage /api/v2/incidents.json and summary.json ---

def statuspage_incidents(document: Any, provider: str, url: str) -> list[Incident]:
    return [
        Incident(incident["id"], statuspage_incident(provider, incident, "api"),
                 open=as_str(incident.get("status")) in OPEN_STATUSES)
        for incident in _incident_list(document)
    ]


def summary_components(document: Any) -> list[ComponentState]:
    """Leaf components only: a group's status is its members' summed up."""
    components = as_dict(document).get("components")
    if not isinstance(components, list):
        raise FeedError('expected a Statuspage summary with "components"')
    return [
        ComponentState(as_str(c["id"]), as_str(c.get("name")) or as_str(c["id"]), as_str(c.get("status")) or "unknown",
                       parse_time(c.get("updated_at")))
        for c in components
        if isinstance(c, dict) and as_str(c.get("id")) and not c.get("group")
    ]


def component_changes(
    provider: str, page: str, previous: dict[str, str], current: list[ComponentState]
) -> list[Event]:
    """A component's change of status is an event of its own. A component with no previous
    status (a first poll, or one new to the page) is news only when it is not operational."""
    return [
        component_event(provider, page, component, previous.get(component.id))
        for component in current
        if previous.get(component.id) != component.status
        and not (component.id not in previous and component.status == OPERATIONAL)
    ]


def component_event(provider: str, page: str, component: ComponentState, previous: str | None) -> Event:
    """A component's change of status (or, with no previous status, its state when first seen)."""
    change = f"{humanise(previous)} -> {humanise(component.status)}" if previous else humanise(component.status)
    stamp = component.updated_at.isoformat() if component.updated_at else ""
    return Event(
        provider=provider,
        title=f"{component.name} status",
        status=humanise(component.status),
        message=f"{component.name}: {change}",
        incident_id=f"component:{component.id}",
        url=page or None,
        source="api",
        keys=(f"component:{page}:{component.id}:{previous or ''}:{component.status}:{stamp}",),
        components=[component.name],
        event_type="component.update",
        occurred_at=component.updated_at,
    )


# --- incident.io /api/v2/incidents.json: every update with its own id, no components ---

def incidentio_incidents(document: Any, provider: str, url: str) -> list[Incident]:
    incidents = []
    page = url.split("/api/", 1)[0]
    for incident in _incident_list(document):
        incident_id = incident["id"]
        updates = [u for u in as_list(incident.get("incident_updates")) if isinstance(u, dict)]
        updates.sort(key=lambda u: as_str(u.get("created_at")))
        events = []
        for update in updates:
            status = as_str(update.get("status")) or as_str(incident.get("status")) or "update"
            message = plain_text(as_str(update.get("body")))
            created = parse_time(update.get("created_at"))
            # The feed names the incident's latest state by its ULID, date, status and text:
            # the same key here makes an update seen by both announced once.
            stamp = created.replace(microsecond=0).isoformat() if created else ""
            keys = [f"incidentio:{incident_id}:{stamp}:{humanise(status).lower()}:{digest(message)}"]
            if as_str(update.get("id")):
                keys.insert(0, f"incidentio-update:{update['id']}")
            events.append(Event(
                provider=provider, title=as_str(incident.get("name")) or incident_id, status=humanise(status),
                message=message, incident_id=incident_id, url=f"{page}/incidents/{incident_id}",
                source="api", keys=tuple(keys), impact=as_str(incident.get("impact")) or None, occurred_at=created,
            ))
        if events:
            incidents.append(Incident(incident_id, events, open=as_str(incident.get("status")) in OPEN_STATUSES))
    return incidents


# --- Google Cloud incidents.json: updates newest first, no update ids ---

_GOOGLE_STATUS = {
    "AVAILABLE": "Available", "SERVICE_INFORMATION": "Informational",
    "SERVICE_DISRUPTION": "Service disruption", "SERVICE_OUTAGE": "Service outage",
}
_GOOGLE_IMPACT = {"low": "minor", "medium": "major", "high": "critical"}


def google_cloud_incidents(document: Any, provider: str, url: str) -> list[Incident]:
    incidents = []
    for incident in _incident_list(document):
        incident_id = incident["id"]
        products = [as_str(p.get("title")) for p in as_list(incident.get("affected_products")) if isinstance(p, dict)]
        updates = [u for u in as_list(incident.get("updates")) if isinstance(u, dict)]
        updates.sort(key=lambda u: as_str(u.get("created")))
        ended = bool(incident.get("end"))
        events = []
        for index, update in enumerate(updates):
            created = parse_time(update.get("created"))
            status = _GOOGLE_STATUS.get(as_str(update.get("status")), humanise(as_str(update.get("status")).lower()) or "Update")
            if ended and index == len(updates) - 1 and status == "Available":
                status = "Resolved"
            events.append(Event(
                provider=provider, title=as_str(incident.get("external_desc")) or incident_id, status=status,
                message=as_str(update.get("text")).strip(), incident_id=incident_id,
                url=f"https://status.cloud.google.com/incidents/{incident_id}", source="api",
                keys=(f"google-cloud:{incident_id}:{as_str(update.get('created'))}",), components=[p for p in products if p],
                impact=_GOOGLE_IMPACT.get(as_str(incident.get("severity"))), occurred_at=created,
            ))
        if events:
            incidents.append(Incident(incident_id, events, open=not ended))
    return incidents


# --- Slack /api/v2.0.0/history: one note per update, oldest first, no per-note status ---

def slack_incidents(document: Any, provider: str, url: str) -> list[Incident]:
    incidents = []
    for incident in _incident_list(document, key="history"):
        incident_id = as_str(incident["id"])
        notes = [n for n in as_list(incident.get("notes")) if isinstance(n, dict)]
        resolved = as_str(incident.get("status")) == "resolved"
        kind = as_str(incident.get("type")) or "incident"
        events = []
        for ordinal, note in enumerate(notes, start=1):
            last = ordinal == len(notes)
            status = "Resolved" if last and resolved else "Active" if ordinal == 1 else "Update"
            events.append(Event(
                # A note's body is HTML (`<p>...&nbsp;</p>`: slack_history.json).
                provider=provider, title=as_str(incident.get("title")) or incident_id, status=status,
                message=html_to_text(as_str(note.get("body"))), incident_id=incident_id,
                url=as_str(incident.get("url")) or None, source="api",
                keys=(f"slack:{incident_id}:{ordinal}:{as_str(note.get('date_created'))}",),
                components=[as_str(s) for s in as_list(incident.get("services")) if as_str(s)],
                event_type=None if kind == "incident" else kind, occurred_at=parse_time(note.get("date_created")),
            ))
        if events:
            incidents.append(Incident(incident_id, events, open=not resolved))
    return incidents
