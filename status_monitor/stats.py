"""The counters and health each part of the monitor keeps: plain data, read by /stats,
/metrics and the dashboard, so that none of those needs the part itself."""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field

import httpx
from prometheus_client import Histogram

from status_monitor.config import FeedConfig
from status_monitor.storage import FeedRecord


@dataclass
class HandlerStats:
    by_label: Counter = field(default_factory=Counter)  # (provider, source, status) of announced events
    events_total: int = 0
    duplicates_total: int = 0
    stale_total: int = 0
    filtered_total: int = 0
    baseline_total: int = 0


POLL_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass
class PollerStats:
    # One count a poll, by its result: "200", "304", or an error class ("timeout",
    # "http_503", "parse", ...). The totals /stats shows are sums of these.
    results: Counter = field(default_factory=Counter)
    unchanged_total: int = 0  # 200s whose entries were those already parsed
    claimed_total: int = 0  # polls whose lease this replica won (replicas sharing a database)
    lease_lost_total: int = 0  # claimed polls whose outcome was fenced off: the lease had moved on
    state_unavailable_total: int = 0  # polls whose outcome could not be stored (database unreachable)
    parsed_total: int = 0
    latency: Histogram = field(
        default_factory=lambda: Histogram(
            "statusmon_poll_duration_seconds", "Time to fetch a feed (conditional GET, body included).",
            registry=None, buckets=POLL_SECONDS_BUCKETS,
        )
    )

    @property
    def polls_total(self) -> int:
        return sum(self.results.values())

    @property
    def not_modified_total(self) -> int:
        return self.results["304"]

    @property
    def poll_errors_total(self) -> int:
        return self.polls_total - self.results["200"] - self.results["304"]

    def totals(self) -> dict[str, int]:
        return {
            "polls_total": self.polls_total,
            "not_modified_total": self.not_modified_total,
            "unchanged_total": self.unchanged_total,
            "parsed_total": self.parsed_total,
            "poll_errors_total": self.poll_errors_total,
        }


@dataclass
class FeedStatus:
    """A feed's health as /stats shows it; `record` is the part that is persisted."""

    feed: FeedConfig
    record: FeedRecord
    known: bool  # polled before (now or in an earlier run): not a first poll
    url: httpx.URL = field(init=False, repr=False)  # parsed once, not on every poll
    host: str = field(init=False, repr=False)  # host and port, the key of per-host limits (one string a host)
    last_error: str | None = None
    failing: bool = False
    kind: str | None = None
    digest: int | None = None  # of the last document parsed (see status_monitor.sources.feeds.content_digest)
    fingerprints: bytes = b""  # of its entries at the last parse (none before one): the next skips them
    last_success: float | None = None  # Unix time of this run's last good poll
    category: str | None = None  # the last error in a few plain words, to group failures by
    components: dict[str, str] = field(default_factory=dict)  # a page summary's: component id -> status
    moved_to: str | None = None  # another host the source redirects to (the config should say it)

    def __post_init__(self) -> None:
        self.url = httpx.URL(self.feed.url)
        self.host = sys.intern(self.url.netloc.decode("ascii"))


@dataclass
class WebhookStats:
    # (endpoint, outcome, reason): outcome is accepted, duplicate, ignored or rejected, and
    # only a rejection has a reason.
    outcomes: Counter = field(default_factory=Counter)

    def total(self, outcome: str) -> int:
        return sum(n for (_, kind, _), n in self.outcomes.items() if kind == outcome)

    def rejected(self) -> dict[str, int]:
        reasons: Counter = Counter()
        for (_, kind, reason), n in self.outcomes.items():
            if kind == "rejected":
                reasons[reason] += n
        return dict(reasons)
