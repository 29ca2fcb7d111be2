"""The one place that decides what is new: an event whose keys were seen before is a repeat,
a stale snapshot is ignored, a filtered one is remembered silently, and every other one is
announced to the outputs, recorded in the store and queued for notification."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Callable, Iterable, Mapping

from status_monitor.model import RESOLVED_STATUSES, Event, Incident, OpenIncident, utcnow
from status_monitor.outputs.stdout import Output
from status_monitor.stats import HandlerStats
from status_monitor.storage.seen import SeenSet, key_hash

if TYPE_CHECKING:
    from status_monitor.filters import EventFilter
    from status_monitor.outputs.notify import Notifier
    from status_monitor.storage import Store

log = logging.getLogger("monitor.events")

# An incident whose source never says "resolved" (AWS, Google Cloud) counts as open at
# start-up only if its last update is this recent.
UNSTATED_OPEN_WINDOW = timedelta(days=7)


class EventHandler:
    """Decides whether an event is new (against the seen keys), announces it, records it.

    An event is printed inside the transaction that records it, before the commit: a crash
    between the two prints it again after a restart (at-least-once) rather than losing it.
    The seen keys in memory are a fast path; the store's unique keys decide.
    """

    def __init__(
        self,
        store: Store,
        outputs: list[Output],
        notifier: Notifier | None = None,
        filters: Mapping[str, EventFilter] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self._outputs = outputs
        self._notifier = notifier
        self._filters = {name.casefold(): f for name, f in (filters or {}).items()}
        self._clock = clock
        self._seen = SeenSet()
        self._latest: dict[tuple[str, str], datetime] = {}
        self._open: dict[tuple[str, str], OpenIncident] = {}
        self._listeners: list[Callable[[int, Event], None]] = []
        self.providers: set[str] = set()  # of every event tracked: the dashboard's cards
        self.stats = HandlerStats()

    async def load(self) -> None:
        """Seen keys, and the incidents open as of the events stored in the last
        UNSTATED_OPEN_WINDOW: a restart shows them at once, before any poll says more."""
        self._seen = await self._store.load_seen_keys()
        recent = await self._store.list_events(since=self._clock() - UNSTATED_OPEN_WINDOW, limit=10_000, oldest_first=True)
        for stored in recent:
            self._track(stored.event)

    def set_filters(self, filters: Mapping[str, EventFilter]) -> None:
        """Replaces the per-provider filters (a config reload); nothing seen is forgotten."""
        self._filters = {name.casefold(): f for name, f in filters.items()}

    def subscribe(self, listener: Callable[[int, Event], None]) -> None:
        """`listener(event_id, event)` is called for each event once it is committed."""
        self._listeners.append(listener)

    def is_seen(self, event: Event) -> bool:
        return any(key in self._seen for key in event.keys)

    @property
    def open_incidents(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for provider, _ in self._open:
            counts[provider] = counts.get(provider, 0) + 1
        return counts

    def open_incident_list(self) -> list[OpenIncident]:
        return list(self._open.values())

    async def handle(
        self, events: Iterable[Event], delivery_id: str | None = None, notify: bool = True
    ) -> list[Event]:
        """Announces every event not seen before, oldest first; returns those announced.
        A webhook's delivery id is committed with its last event (or alone): never before it.
        `notify=False` prints and records without notifying (a feed's first poll)."""
        announced = []
        pending = sorted(events, key=_age)
        unrecorded = delivery_id  # until a write has carried it
        for index, event in enumerate(pending):
            last = delivery_id if index == len(pending) - 1 else None
            if self.is_seen(event):
                self.stats.duplicates_total += 1
                # Known by one key: its other keys are recorded too, so that its copy from
                # another source, or after an edit that kept only those, is known as well.
                unseen = [key for key in event.keys if key not in self._seen]
                if unseen or last is not None:
                    await self._store.add_keys(unseen, delivery_id=last)
                    self._seen.update(unseen)
            elif self._is_stale(event) or not self._passes(event):
                if (event.provider, event.incident_id) in self._open:
                    self._track(event)  # a filtered "Resolved" still closes an incident shown open
                await self._store.add_keys(event.keys, delivery_id=last)
                self._seen.update(event.keys)
            elif await self._announce(event, last, notify):
                announced.append(event)
            if last is not None:
                unrecorded = None
        if unrecorded is not None:
            await self._store.add_delivery(unrecorded)
        return announced

    async def handle_feed(
        self, incidents: list[Incident], first_poll: bool, replay: bool
    ) -> tuple[list[Event], list[int]]:
        """Splits a feed's updates into those to announce and those to record silently.

        On a feed's first poll, history is recorded silently and only incidents still open
        are announced (their latest update); `replay` announces everything instead. Nothing
        announced on a first poll is notified: it is the state found, not news.
        Returns the announced events and the hashes of the keys recorded without a word.
        """
        if not first_poll or replay:
            events = [u for incident in incidents for u in incident.updates]
            return await self.handle(events, notify=not first_poll), []
        now = self._clock()
        to_announce: list[Event] = []
        silent: list[int] = []
        for incident in incidents:
            if not incident.updates:
                continue
            latest = incident.updates[-1]
            if self._still_open(incident, now):
                to_announce.append(latest)
                rest = incident.updates[:-1]
            else:
                if latest.snapshot:  # so that a stale copy of it is recognised later
                    self._track(latest)
                rest = incident.updates
            silent.extend(key_hash(key) for update in rest for key in update.keys)
        self._seen.add_hashes(silent)
        self.stats.baseline_total += len(silent)
        return await self.handle(to_announce, notify=False), silent

    def _still_open(self, incident: Incident, now: datetime) -> bool:
        if incident.open is not None:
            return incident.open
        latest = incident.updates[-1]
        if latest.status.lower() in RESOLVED_STATUSES or latest.occurred_at is None:
            return False
        return now - latest.occurred_at <= UNSTATED_OPEN_WINDOW

    def _is_stale(self, event: Event) -> bool:
        if not event.snapshot or event.occurred_at is None:
            return False
        latest = self._latest.get((event.provider, event.incident_id))
        if latest is None or event.occurred_at >= latest:
            return False
        self.stats.stale_total += 1
        log.info("stale update for %s %s ignored", event.provider, event.incident_id)
        return True

    def _passes(self, event: Event) -> bool:
        """The provider's filter; an event it drops is remembered, not announced."""
        event_filter = self._filters.get(event.provider.casefold())
        if event_filter is None:
            return True
        passed, event.note = event_filter.check(event)
        if not passed:
            self.stats.filtered_total += 1
        return passed

    def _track(self, event: Event) -> None:
        """Keeps the incident's newest state; an older update never rolls it back."""
        self.providers.add(event.provider)
        ident = (event.provider, event.incident_id)
        latest = self._latest.get(ident)
        if event.occurred_at is not None and latest is not None and event.occurred_at < latest:
            return
        if event.occurred_at is not None:
            self._latest[ident] = event.occurred_at
        if event.status.lower() in RESOLVED_STATUSES:
            self._open.pop(ident, None)
        elif ident in self._open:
            self._open[ident].latest = event
        else:
            self._open[ident] = OpenIncident(event, event.occurred_at or event.received_at)

    async def _announce(self, event: Event, delivery_id: str | None, notify: bool) -> bool:
        """Stores the event and prints it within the store's transaction, once the store has
        found it new: with replicas sharing a database, the one whose insert of its keys
        wins prints it. Returns whether it was announced here."""
        event.received_at = self._clock()
        sends = self._notifier.prepare(event) if notify and self._notifier else []
        event_id = await self._store.add_event(event, delivery_id, sends, announce=self._emit)
        self._seen.update(event.keys)
        if event_id is None:
            self.stats.duplicates_total += 1
            return False
        self._track(event)
        self.stats.events_total += 1
        self.stats.by_label[event.provider, event.source, event.status] += 1
        if sends:
            self._notifier.submit(sends)
        for listener in self._listeners:
            listener(event_id, event)
        return True

    def _emit(self, event: Event) -> None:
        for output in self._outputs:
            try:
                output.emit(event)
            except Exception:
                log.exception("output %s failed", type(output).__name__)


def _age(event: Event) -> datetime:
    return event.occurred_at or datetime.min.replace(tzinfo=timezone.utc)
