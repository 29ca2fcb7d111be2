"""Component and impact filters: which events are printed and notified. They never decide
what is remembered, so changing a filter never replays history."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from status_monitor.model import Event

if TYPE_CHECKING:
    from status_monitor.config import FeedConfig

IMPACT_ORDER = {"none": 0, "minor": 1, "major": 2, "critical": 3}


def matches_any(patterns: Iterable[str], value: str) -> bool:
    """Glob patterns (`Actions*`), ignoring case."""
    return any(fnmatch.fnmatchcase(value.casefold(), pattern.casefold()) for pattern in patterns)


@dataclass(frozen=True)
class EventFilter:
    components: tuple[str, ...] = ()
    min_impact: str | None = None

    def check(self, event: Event) -> tuple[bool, str | None]:
        """Whether the event passes, and a note when it passes only for want of the
        information a filter looks at (most feeds name no component, many give no impact)."""
        notes = []
        if self.components:
            if not event.components:
                notes.append("names no component, so the component filter let it through")
            elif not any(matches_any(self.components, component) for component in event.components):
                return False, None
        if self.min_impact:
            if event.impact is None:
                notes.append("states no impact, so the impact filter let it through")
            elif IMPACT_ORDER.get(event.impact.lower(), 0) < IMPACT_ORDER[self.min_impact]:
                return False, None
        return True, "; ".join(notes) or None


def filters_by_provider(feeds: Iterable[FeedConfig]) -> dict[str, EventFilter]:
    """A feed's filters apply to every event of its provider (its name), webhooks included."""
    return {
        feed.name: EventFilter(feed.components, feed.min_impact)
        for feed in feeds
        if feed.components or feed.min_impact
    }
