"""Pure webhook adapters: a parsed provider payload goes in, normalised events come out."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from status_monitor.model import Event, utc_iso
from status_monitor.sources.apis import as_dict, as_list, as_str, component_event, statuspage_incident
from status_monitor.sources.feeds import ComponentState
from status_monitor.sources.readers import parse_time
from status_monitor.sources.text import digest, plain_text

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
    incident = as_dict(payload.get("incident")) if "incident" in payload else payload
    if not as_str(incident.get("id")):
        raise PayloadError("expected the incident's id")
    status_obj = as_dict(payload.get("new_status")) or as_dict(incident.get("incident_status"))
    category = as_str(status_obj.get("category")).lower()
    status = _CATEGORY_STATUS.get(category) or as_str(status_obj.get("name")) or "Update"
    # Plain text, like every string of a webhook: "<ubuntu-24>" is part of the message.
    message = plain_text(as_str(payload.get("message") or incident.get("most_recent_update_message") or incident.get("summary")))
    incident_id = as_str(incident["id"])
    updated_at = parse_time(incident.get("updated_at"))
    return [
        Event(
            provider=INCIDENT_IO,
            title=as_str(incident.get("name")) or as_str(incident.get("reference")) or incident_id,
            status=status,
            message=message,
            incident_id=incident_id,
            url=as_str(incident.get("permalink")) or None,
            source="webhook",
            # When it was made is part of an update: an incident back at an earlier status with
            # the same text is news. A replay is the delivery id's business, a late copy the
            # staleness check's.
            keys=(f"incidentio-wh:{incident_id}:{utc_iso(updated_at) or ''}:{status.lower()}:{digest(message)}",),
            event_type=event_type,
            occurred_at=updated_at,
            snapshot=True,
        )
    ]


def _private_incident(event_type: str, payload: dict, delivery_id: str) -> Event:
    """Private incidents carry only an id: say that something happened, and nothing more."""
    incident_id = as_str(payload.get("id"))
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
            return statuspage_incident(provider, body["incident"], "webhook")
        if isinstance(body.get("event_type"), str) and isinstance(body.get("data"), dict):
            return [_generic(provider, body)]
    raise PayloadError(GENERIC_EXPECTED)


def _generic(provider: str, body: dict) -> Event:
    data = body["data"]
    incident = as_dict(data.get("incident"))
    incident_id = as_str(data.get("id") or incident.get("id"))
    if not incident_id:
        raise PayloadError('expected "data.id"')
    status_value = incident.get("status")
    label = as_str(as_dict(status_value).get("label") if isinstance(status_value, dict) else status_value)
    message = as_str(incident.get("message") or incident.get("body") or data.get("message"))
    components = as_list(incident.get("components")) or as_list(data.get("components"))
    names = [as_str(c.get("name") if isinstance(c, dict) else c) for c in components if c]
    return Event(
        provider=provider,
        title=as_str(incident.get("name")) or incident_id,
        status=label or "Update",
        message=plain_text(message),
        incident_id=incident_id,
        url=as_str(incident.get("url") or data.get("url")) or None,
        source="webhook",
        keys=(f"generic:{provider}:{incident_id}:{body['event_type']}:{label.lower()}:{digest(message)}",),
        components=[n for n in names if n],
        event_type=body["event_type"],
        occurred_at=parse_time(incident.get("updated_at") or data.get("updated_at")),
    )


def _statuspage_component(provider: str, body: dict) -> Event:
    """The same event as the API's summary gives for the change (`component_event`), so that
    a component opened by one source and closed by the other is one incident; keyed by the
    webhook's own update id."""
    update = body["component_update"]
    component = as_dict(body.get("component"))
    component_id = as_str(update.get("component_id") or component.get("id"))
    name = as_str(component.get("name")) or component_id or "component"
    old, new = as_str(update.get("old_status")) or "unknown", as_str(update.get("new_status") or component.get("status")) or "unknown"
    update_id = as_str(update.get("id")) or f"{update.get('component_id')}:{update.get('created_at')}:{new}"
    state = ComponentState(component_id or name, name, new, parse_time(update.get("created_at")))
    event = component_event(provider, "", state, old)
    return replace(event, source="webhook", keys=(f"statuspage-component:{update_id}",))
