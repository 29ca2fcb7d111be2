"""Prometheus metrics, read at scrape time from the counters each part keeps for /stats:
nothing is counted twice and nothing is paid on the hot path but a dict increment."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from status_monitor.outputs.notify import Notifier
    from status_monitor.stats import FeedStatus, HandlerStats, PollerStats, WebhookStats

# Label values come from providers' payloads too: past this many label sets a metric folds
# the rest into "other", so a flood of odd statuses cannot grow the scrape without bound.
MAX_LABEL_SETS = 200


def bounded(counts: Counter, limit: int = MAX_LABEL_SETS) -> Counter:
    """The first `limit` label sets as they are, the rest added up under "other"."""
    kept: Counter = Counter()
    for index, (labels, value) in enumerate(counts.items()):
        kept[labels if index < limit else ("other",) * len(labels)] += value
    return kept


class MonitorCollector:
    """Reads, at each scrape, the counters the handler, the poller, the webhook receiver and
    the notifier keep; `open_incidents()` gives provider -> incidents open now."""

    def __init__(
        self,
        events: HandlerStats,
        open_incidents: Callable[[], Mapping[str, int]],
        polls: PollerStats,
        feeds: Mapping[str, FeedStatus],
        webhooks: WebhookStats,
        notifier: Notifier,
        fleet: Callable[[], dict] | None = None,
    ) -> None:
        """`fleet()` gives {"replica_id", "replicas", "feeds_held"} where replicas share a database."""
        self._events, self._open_incidents, self._polls, self._feeds = events, open_incidents, polls, feeds
        self._webhooks, self._notifier = webhooks, notifier
        self._fleet = fleet

    def collect(self) -> Iterator[Metric]:
        events = CounterMetricFamily(
            "statusmon_events", "New incident updates announced.", labels=["provider", "source", "status"]
        )
        for (provider, source, status), value in bounded(self._events.by_label).items():
            events.add_metric([provider, source, status.lower()], value)
        yield events

        polls = CounterMetricFamily("statusmon_polls", "Feed polls by result: 200, 304 or an error class.", labels=["result"])
        for result, value in self._polls.results.items():  # bounded: HTTP codes and a few classes
            polls.add_metric([result], value)
        yield polls
        yield from self._polls.latency.collect()

        webhooks = CounterMetricFamily(
            "statusmon_webhooks", "Webhook deliveries by endpoint and outcome; rejections by reason.",
            labels=["endpoint", "outcome", "reason"],
        )
        for labels, value in self._webhooks.outcomes.items():
            webhooks.add_metric(list(labels), value)
        yield webhooks

        sends = CounterMetricFamily(
            "statusmon_notifications", "Notification sends by service and outcome (sent, retry, failed).",
            labels=["service", "outcome"],
        )
        for labels, value in self._notifier.outcomes().items():
            sends.add_metric(list(labels), value)
        yield sends
        pending = GaugeMetricFamily("statusmon_notifications_pending", "Notifications waiting to be sent.")
        pending.add_metric([], self._notifier.pending)
        yield pending

        errors = GaugeMetricFamily("statusmon_feed_consecutive_errors", "Errors in a row of each feed.", labels=["feed"])
        success = GaugeMetricFamily(
            "statusmon_feed_last_success_timestamp_seconds", "Unix time of each feed's last good poll in this run.",
            labels=["feed"],
        )
        for name, status in _unique_names(self._feeds.values()):
            errors.add_metric([name], status.record.consecutive_errors)
            if status.last_success is not None:
                success.add_metric([name], status.last_success)
        yield errors
        yield success

        incidents = GaugeMetricFamily("statusmon_open_incidents", "Incidents open now, by provider.", labels=["provider"])
        for (provider,), value in bounded(Counter({(k,): v for k, v in self._open_incidents().items()})).items():
            incidents.add_metric([provider], value)
        yield incidents

        if self._fleet is not None:
            fleet = self._fleet()
            replicas = GaugeMetricFamily("statusmon_replicas", "Replicas heard from within the heartbeat timeout.")
            replicas.add_metric([], fleet["replicas"])
            yield replicas
            held = GaugeMetricFamily(
                "statusmon_feeds_held", "Feeds this replica polled last (or holds now).", labels=["replica"]
            )
            held.add_metric([fleet["replica_id"]], fleet["feeds_held"])
            yield held


def _unique_names(statuses: Iterable[FeedStatus]) -> Iterator[tuple[str, FeedStatus]]:
    """Feed names as labels (never URLs); a name used twice gets " #2" so series stay distinct."""
    used: Counter = Counter()
    for status in statuses:
        used[status.feed.name] += 1
        count = used[status.feed.name]
        yield (status.feed.name if count == 1 else f"{status.feed.name} #{count}"), status


def create_registry(collector: MonitorCollector) -> CollectorRegistry:
    """A registry of the monitor's own (not the process-global one), so two monitors in one
    process never share series; process memory and CPU included."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    ProcessCollector(registry=registry)
    return registry
