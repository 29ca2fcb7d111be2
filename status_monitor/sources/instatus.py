"""Instatus status pages' `summary.json` (Perplexity, Railway, Koyeb, Zed): the page's status
word and the incidents open now, each in its latest state (a Perplexity capture:
tests/fixtures/feeds/instatus_perplexity_summary_2026-07-23_major.json). Instatus pages
answer `/api/v2/summary.json` with the same document."""

from __future__ import annotations

from typing import Any

from status_monitor.model import Event, Incident
from status_monitor.sources.apis import as_dict, as_list, as_str, humanise
from status_monitor.sources.readers import FeedError, parse_time

_IMPACT = {"DEGRADEDPERFORMANCE": "minor", "PARTIALOUTAGE": "major", "MAJOROUTAGE": "critical"}


def instatus_incidents(document: Any, provider: str, url: str) -> list[Incident]:
    """`activeIncidents[]` holds each open incident's latest state only (no update ids, no
    history): like an incident.io feed item, one snapshot keyed by id, time and status. An
    incident that ends drops out of the list, which is not an event."""
    page = as_dict(as_dict(document).get("page"))
    if not isinstance(page.get("status"), str):
        raise FeedError('expected an Instatus summary.json ("page" with a "status" string)')
    incidents = []
    for incident in as_list(as_dict(document).get("activeIncidents")):
        if not isinstance(incident, dict) or not as_str(incident.get("id")):
            continue
        incident_id, status = as_str(incident["id"]), humanise(as_str(incident.get("status")).lower()) or "Update"
        stamp = as_str(incident.get("updatedAt")) or as_str(incident.get("started"))
        incidents.append(Incident(incident_id, [Event(
            provider=provider, title=as_str(incident.get("name")) or incident_id, status=status, message="",
            incident_id=incident_id, url=as_str(incident.get("url")) or None, source="api",
            keys=(f"instatus:{incident_id}:{stamp}:{status.lower()}",),
            impact=_IMPACT.get(as_str(incident.get("impact")).upper()), occurred_at=parse_time(stamp),
            snapshot=True,
        )], open=status.lower() != "resolved"))
    return incidents
