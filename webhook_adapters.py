"""Pure webhook adapters: a parsed provider payload goes in, normalised events come out."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from event_handler import Event
from feed_parsers import html_to_text, statuspage_update_key

INCIDENT_IO = "incident.io"
INCIDENT_IO_TYPES = (
    "public_incident.incident_created_v2",
    "public_incident.incident_updated_v2",
    "public_incident.incident_status_updated_v2",
    "private_incident.incident_created_v2",
    "private_incident.incident_updated_v2",
)
GENERIC_EXPECTED = (
    'expected one of: {"event_type": ..., "data": {"id": ..., "incident": {"name": ..., '
    '"status": {"label": ...}}}}; an Atlassian Statuspage incident webhook ({"incident": '
    '{"id": ..., "incident_updates": [...]}}); or a Statuspage component webhook '
    '({"component": {...}, "component_update": {...}})'
)
# incident.io status categories (the names are each organisation's own)
_CATEGORY_STATUS = {
    "learning": "Resolved", "closed": "Resolved", "declined": "Declined",
    "merged": "Merged", "canceled": "Canceled", "triage": "Triage", "paused": "Paused",
}


class PayloadError(Exception):
    """The body is JSON but not of a shape this endpoint knows (answered 422)."""


class Unhandled(Exception):
    """A well-formed event of a type the monitor does not announce (acknowledged, counted)."""


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def humanise(status: str) -> str:
    """`major_outage` -> `Major outage`, `investigating` -> `Investigating`."""
    return status.replace("_", " ").strip().capitalize()


# --- incident.io ---

def incidentio_events(body: Any, delivery_id: str) -> list[Event]:
    if not isinstance(body, dict) or not isinstance(body.get("event_type"), str):
        raise PayloadError('expected an incident.io webhook: {"event_type": ..., "<event_type>": {...}}')
    event_type = body["event_type"]
    if event_type not in INCIDENT_IO_TYPES:
        raise Unhandled(event_type)
    payload = body.get(event_type)
    if not isinstance(payload, dict):
        raise PayloadError(f'expected the object under the key "{event_type}"')
    if event_type.startswith("private_incident."):
        return [_private_incident(event_type, payload, delivery_id)]
    incident = _dict(payload.get("incident")) if "incident" in payload else payload
    if not _str(incident.get("id")):
        raise PayloadError("expected the incident's id")
    status_obj = _dict(payload.get("new_status")) or _dict(incident.get("incident_status"))
    category = _str(status_obj.get("category")).lower()
    status = _CATEGORY_STATUS.get(category) or _str(status_obj.get("name")) or "Update"
    message = _str(payload.get("message") or incident.get("most_recent_update_message") or incident.get("summary"))
    message = html_to_text(message) if "<" in message else message
    incident_id = _str(incident["id"])
    return [
        Event(
            provider=INCIDENT_IO,
            title=_str(incident.get("name")) or _str(incident.get("reference")) or incident_id,
            status=status,
            message=message,
            incident_id=incident_id,
            url=_str(incident.get("permalink")) or None,
            source="webhook",
            keys=(f"incidentio-wh:{incident_id}:{status.lower()}:{_digest(message)}",),
            event_type=event_type,
            occurred_at=_time(incident.get("updated_at")),
            snapshot=True,
        )
    ]


def _private_incident(event_type: str, payload: dict, delivery_id: str) -> Event:
    """Private incidents carry only an id: say that something happened, and nothing more."""
    incident_id = _str(payload.get("id"))
    if not incident_id:
        raise PayloadError("expected the private incident's id")
    created = event_type.endswith("created_v2")
    return Event(
        provider=INCIDENT_IO,
        title="Private incident",
        status="Created" if created else "Updated",
        message="A private incident was " + ("declared" if created else "updated") + "; details are not sent.",
        incident_id=incident_id,
        url=None,
        source="webhook",
        keys=(f"incidentio-wh:private:{incident_id}:{event_type}:{delivery_id}",),
        event_type=event_type,
    )


# --- generic endpoint: the original design's shape, and Statuspage subscriber webhooks ---

def generic_events(provider: str, body: Any) -> list[Event]:
    if isinstance(body, dict):
        if isinstance(body.get("component_update"), dict):
            return [_statuspage_component(provider, body)]
        if isinstance(body.get("incident"), dict) and isinstance(body["incident"].get("id"), str):
            return _statuspage_incident(provider, body["incident"])
        if isinstance(body.get("event_type"), str) and isinstance(body.get("data"), dict):
            return [_generic(provider, body)]
    raise PayloadError(GENERIC_EXPECTED)


def _generic(provider: str, body: dict) -> Event:
    data = body["data"]
    incident = _dict(data.get("incident"))
    incident_id = _str(data.get("id") or incident.get("id"))
    if not incident_id:
        raise PayloadError('expected "data.id"')
    status_value = incident.get("status")
    label = _str(_dict(status_value).get("label") if isinstance(status_value, dict) else status_value)
    message = _str(incident.get("message") or incident.get("body") or data.get("message"))
    components = _list(incident.get("components")) or _list(data.get("components"))
    names = [_str(c.get("name") if isinstance(c, dict) else c) for c in components if c]
    return Event(
        provider=provider,
        title=_str(incident.get("name")) or incident_id,
        status=label or "Update",
        message=html_to_text(message) if "<" in message else message,
        incident_id=incident_id,
        url=_str(incident.get("url") or data.get("url")) or None,
        source="webhook",
        keys=(f"generic:{provider}:{incident_id}:{body['event_type']}:{label.lower()}:{_digest(message)}",),
        components=[n for n in names if n],
        event_type=body["event_type"],
        occurred_at=_time(incident.get("updated_at") or data.get("updated_at")),
    )


def _local_minute(value: Any) -> str:
    """"MM-DD HH:MM" in the offset the page wrote: what its feed prints for the same update."""
    when = _time(value)
    return f"{when:%m-%d %H:%M}" if when else ""


def _statuspage_incident(provider: str, incident: dict) -> list[Event]:
    code = incident["id"]
    updates = [u for u in _list(incident.get("incident_updates")) if isinstance(u, dict)]
    updates.sort(key=lambda u: _str(u.get("created_at")))  # oldest first, as the feed counts them
    components = [_str(c.get("name")) for c in _list(incident.get("components")) if isinstance(c, dict)]
    title = _str(incident.get("name")) or code
    url = _str(incident.get("shortlink")) or None
    events = []
    previous = None
    for ordinal, update in enumerate(updates, start=1):
        status = _str(update.get("status")) or _str(incident.get("status")) or "update"
        label = humanise(status) if status != previous else "Update"
        previous = status
        affected = [_str(c.get("name")) for c in _list(update.get("affected_components")) if isinstance(c, dict)]
        keys = [statuspage_update_key(code, ordinal, label, _local_minute(update.get("display_at") or update.get("created_at")))]
        if _str(update.get("id")):
            keys.insert(0, f"statuspage-update:{update['id']}")
        events.append(
            Event(
                provider=provider,
                title=title,
                status=humanise(status),
                message=html_to_text(_str(update.get("body"))),
                incident_id=code,
                url=url,
                source="webhook",
                keys=tuple(keys),
                components=[c for c in (affected or components) if c],
                event_type="incident.update",
                occurred_at=_time(update.get("display_at") or update.get("created_at")),
            )
        )
    if not events:
        status = _str(incident.get("status")) or "update"
        events.append(
            Event(
                provider=provider, title=title, status=humanise(status), message="", incident_id=code,
                url=url, source="webhook",
                keys=(f"statuspage-incident:{code}:{status}:{_str(incident.get('updated_at'))}",),
                components=[c for c in components if c], event_type="incident.update",
                occurred_at=_time(incident.get("updated_at")),
            )
        )
    return events


def _statuspage_component(provider: str, body: dict) -> Event:
    update = body["component_update"]
    component = _dict(body.get("component"))
    name = _str(component.get("name")) or _str(update.get("component_id")) or "component"
    old, new = _str(update.get("old_status")) or "unknown", _str(update.get("new_status") or component.get("status")) or "unknown"
    update_id = _str(update.get("id")) or f"{update.get('component_id')}:{update.get('created_at')}:{new}"
    return Event(
        provider=provider,
        title=f"{name} status",
        status=humanise(new),
        message=f"{name}: {humanise(old)} -> {humanise(new)}",
        incident_id=_str(update.get("component_id") or component.get("id")) or name,
        url=None,
        source="webhook",
        keys=(f"statuspage-component:{update_id}",),
        components=[name],
        event_type="component.update",
        occurred_at=_time(update.get("created_at")),
    )
