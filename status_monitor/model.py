"""The normalised event model every part of the monitor shares: one incident update,
whatever its source (feed, JSON API or webhook). It imports nothing of the monitor's own."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

# Statuses after which an incident is no longer open (a component back to operational,
# an incident.io incident declined, merged or canceled included).
RESOLVED_STATUSES = frozenset(
    {"resolved", "completed", "postmortem", "closed", "operational", "declined", "merged", "canceled"}
)
def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Event:
    """One incident update, whatever its source. `keys[0]` names the update; further keys
    are other sources' names for the same update, so that it is announced once."""

    provider: str
    title: str
    status: str
    message: str
    incident_id: str
    url: str | None
    source: str
    keys: tuple[str, ...]
    components: list[str] = field(default_factory=list)
    event_type: str | None = None
    impact: str | None = None  # none, minor, major or critical, where the source says
    note: str | None = None  # why a filter let it through without looking (filters.EventFilter)
    occurred_at: datetime | None = None
    received_at: datetime | None = None
    # A snapshot restates an incident's whole state (incident.io): an older one than
    # already seen is stale, not news.
    snapshot: bool = False

    def __post_init__(self) -> None:
        self.url = web_url(self.url)

    @property
    def key(self) -> str:
        return self.keys[0]

    @property
    def product(self) -> str | None:
        return ", ".join(self.components) or None

    def to_dict(self) -> dict:
        return {
            "provider": self.provider,
            "product": self.product,
            "components": list(self.components),
            "title": self.title,
            "status": self.status,
            "message": self.message,
            "incident_id": self.incident_id,
            "url": self.url,
            "source": self.source,
            "event_type": self.event_type,
            "impact": self.impact,
            "note": self.note,
            "occurred_at": utc_iso(self.occurred_at),
            "received_at": utc_iso(self.received_at),
        }

    @classmethod
    def from_dict(cls, data: dict, keys: tuple[str, ...] = ()) -> "Event":
        return cls(
            provider=data["provider"],
            title=data["title"],
            status=data["status"],
            message=data["message"],
            incident_id=data["incident_id"],
            url=data["url"],
            source=data["source"],
            keys=keys,
            components=list(data.get("components") or []),
            event_type=data.get("event_type"),
            impact=data.get("impact"),
            note=data.get("note"),
            occurred_at=parse_iso(data.get("occurred_at")),
            received_at=parse_iso(data.get("received_at")),
        )


@dataclass
class Incident:
    """One incident as a feed shows it now, with its updates oldest first.
    `open` is None where the source never states that an incident ended."""

    incident_id: str
    updates: list[Event]
    open: bool | None


@dataclass
class OpenIncident:
    latest: Event  # its newest update
    since: datetime | None  # when its first update seen was posted


def web_url(value: str | None) -> str | None:
    """`value` when it is an absolute http:// or https:// URL (surrounding whitespace
    removed), else None. Every event's link passes here, whatever its source: a
    `javascript:`, `data:` or `vbscript:` link (or a relative one, or one with a control
    character, which browsers strip to find the scheme; WHATWG URL standard, "basic URL
    parser") must reach no stdout line, notification or dashboard."""
    if not value:
        return None
    value = value.strip()
    scheme = value[:8].lower()
    if not (scheme.startswith("https://") or scheme.startswith("http://")) or not value.isprintable():
        return None
    return value


def utc_iso(value: datetime | None) -> str | None:
    """How every time is written (output, state, JSON): ISO 8601 in UTC with `Z`."""
    if value is None:
        return None
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def parse_iso(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
