"""Better Stack status pages' `index.json` (Hugging Face, Together AI, Modal, ...): a JSON:API
document whose `included` holds the page's resources, its status reports (incidents and
maintenances) and every status update with its own id (a Hugging Face capture:
tests/fixtures/feeds/betterstack_huggingface_index_2026-07-19_trimmed.json). Better Stack
pages answer every other path with the same HTML, so this document is their source."""

from __future__ import annotations

from typing import Any

from status_monitor.model import Event, Incident
from status_monitor.sources.apis import as_dict, as_list, as_str
from status_monitor.sources.readers import FeedError, parse_time
from status_monitor.sources.text import html_to_text

_STATUS = {"downtime": "Downtime", "degraded": "Degraded", "maintenance": "Maintenance", "resolved": "Resolved"}
_IMPACT = {"downtime": "major", "degraded": "minor"}
_ORDER = ("downtime", "degraded", "maintenance", "resolved")


def betterstack_incidents(document: Any, provider: str, url: str) -> list[Incident]:
    """Each status report is an incident (or a maintenance), each of its status updates one
    update. An update's status is the worst its affected resources are put in (downtime,
    degraded, maintenance; all resolved is Resolved); the last update of a report that is
    over reads Resolved (Completed for a maintenance) where it names no resource, and a
    maintenance's updates take the report's state (Maintenance) where they name none."""
    data = as_dict(as_dict(document).get("data"))
    if data.get("type") != "status_page" or not isinstance(as_dict(document).get("included"), list):
        raise FeedError('expected a Better Stack index.json (JSON:API "status_page" with "included")')
    included: dict[tuple[str, str], dict] = {}
    for item in as_list(document["included"]):
        if isinstance(item, dict) and as_str(item.get("id")):
            included[(as_str(item.get("type")), as_str(item["id"]))] = as_dict(item.get("attributes"))
    names = {ident: as_str(a.get("public_name")) for (kind, ident), a in included.items() if kind == "status_page_resource"}
    page = url.rsplit("/index.json", 1)[0]
    incidents = []
    for item in as_list(document["included"]):
        if not isinstance(item, dict) or item.get("type") != "status_report" or not as_str(item.get("id")):
            continue
        report_id, report = as_str(item["id"]), as_dict(item.get("attributes"))
        over = as_str(report.get("aggregate_state")) in ("resolved", "operational")
        refs = as_list(as_dict(as_dict(item.get("relationships")).get("status_updates")).get("data"))
        updates = [(as_str(r.get("id")), included.get(("status_update", as_str(r.get("id")))))
                   for r in refs if isinstance(r, dict)]
        updates = sorted(((i, u) for i, u in updates if u is not None), key=lambda p: as_str(p[1].get("published_at")))
        events = []
        for position, (update_id, update) in enumerate(updates, start=1):
            affected = [as_dict(a) for a in as_list(update.get("affected_resources"))]
            states = {as_str(a.get("status")) for a in affected}
            if not states and report.get("report_type") == "maintenance":  # its updates name no resource
                states = {as_str(as_dict(a).get("status")) for a in as_list(report.get("affected_resources"))}
            worst = next((s for s in _ORDER if s in states), "")
            status = _STATUS.get(worst, "Update")
            if over and position == len(updates) and worst in ("", "maintenance"):
                status = "Completed" if report.get("report_type") == "maintenance" else "Resolved"
            events.append(Event(
                provider=provider, title=as_str(report.get("title")) or report_id, status=status,
                message=html_to_text(as_str(update.get("message"))), incident_id=report_id,
                url=f"{page}/incident/{report_id}", source="api", keys=(f"betterstack-update:{update_id}",),
                components=[names[r] for a in affected if (r := as_str(a.get("status_page_resource_id"))) in names],
                impact=_IMPACT.get(worst), occurred_at=parse_time(update.get("published_at")),
            ))
        if events:
            incidents.append(Incident(report_id, events, open=not over))
    return incidents
