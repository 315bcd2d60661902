"""Prometheus metrics of the speaker's control plane, in one private registry (several speakers in one test process
must not collide on the global one).

Names (all prefixed `l2guard_speaker_`):
- `announced_ips`: IPs this node announces now (in dry-run: would announce).
- `eligible_nodes{service}`: nodes eligible to announce a service's IP, for at most `ELIGIBLE_SERIES_CAP` services,
  those with the fewest eligible nodes first (then by name); `eligible_nodes_omitted_services` says how many the cap
  left out. The control plane passes only the services this speaker reports for, so across the cluster each
  service appears once, and on one speaker the series count never exceeds the cap, whatever the cluster holds.
- `api_connected`: 1 while the API answers, 0 while cut off (fail-static).
- `lease_renewal_age_seconds`: seconds since this node's Lease was last renewed, on the monotonic clock, computed
  when scraped; absent before the first renewal (and in file mode, which has no Lease).
- `config_stale`: 1 while some pool or advertisement is kept at its last valid version because an edit broke it.
- `reconcile_duration_seconds`: histogram of one reconcile, event received to `announcer.set()` returned.
- `watch_restarts_total{resource}`: list/watch restarts; `resource` is one of the adapter's fixed resource table.
- `conflicts_handled_total{action}`: another MAC claimed one of our IPs; `action` is `kept` (connected: our view is
  fresh) or `yielded` (cut off: the other node holds the fresher view).
- `events_posted_total{type}`, `events_suppressed_total{type}`: Kubernetes Events sent, and those the deduplication
  or rate limit held back; `type` is `Normal` or `Warning`.
- probe takeover (`l2guard.control.probes`): `probed_owners` (owners this node backs up and probes),
  `probe_period_seconds` (seconds between two probes of one owner, after the budget), `probes_sent_total`,
  `probe_takeovers_total` and `probe_yields_total`, and `owner_not_answering{node}`: 1 for each owner this node
  took over from because it stopped answering (the self-test: an owner whose lease is fresh but whose data plane
  is silent shows up here); the label takes at most one value per node of the cluster.

The data plane's counters (`speaker.metrics.SpeakerCollector`) may be registered in the same registry; no name here
clashes with theirs. This module only records what the control plane tells it (the health port renders it); it
decides nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

ELIGIBLE_SERIES_CAP = 100

EventType = Literal["Normal", "Warning"]
ConflictAction = Literal["kept", "yielded"]


class SpeakerMetrics:
    """The control plane's metrics. Setters are thread-safe (prometheus_client's own locks, or one reference swap)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = CollectorRegistry()
        self._at_scrape = _ComputedAtScrape(clock)
        self._announced = Gauge(
            "l2guard_speaker_announced_ips",
            "IPs this node announces now (in dry-run: would announce)",
            registry=self.registry,
        )
        self._api_connected = Gauge(
            "l2guard_speaker_api_connected",
            "1 while the Kubernetes API answers, 0 while cut off (fail-static)",
            registry=self.registry,
        )
        self._config_stale = Gauge(
            "l2guard_speaker_config_stale",
            "1 while a pool or advertisement is kept at its last valid version because an edit broke it",
            registry=self.registry,
        )
        self._reconcile = Histogram(
            "l2guard_speaker_reconcile_duration_seconds",
            "Time of one reconcile, from the event received to announcer.set() returned",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self._watch_restarts = Counter(
            "l2guard_speaker_watch_restarts",
            "List/watch restarts (error, 410 Gone, dropped connection) by resource",
            ("resource",),
            registry=self.registry,
        )
        self._conflicts = Counter(
            "l2guard_speaker_conflicts_handled",
            "Another MAC claimed one of our IPs: kept (connected) or yielded (cut off from the API)",
            ("action",),
            registry=self.registry,
        )
        self._events_posted = Counter(
            "l2guard_speaker_events_posted", "Kubernetes Events sent, by type", ("type",), registry=self.registry
        )
        self._events_suppressed = Counter(
            "l2guard_speaker_events_suppressed",
            "Kubernetes Events held back by deduplication or the rate limit, by type",
            ("type",),
            registry=self.registry,
        )
        self._probes_sent = Counter(
            "l2guard_speaker_probes_sent", "Probes sent to owners this node backs up", registry=self.registry
        )
        self._probe_takeovers = Counter(
            "l2guard_speaker_probe_takeovers",
            "Takeovers of an owner's IPs after it stopped answering probes",
            registry=self.registry,
        )
        self._probe_yields = Counter(
            "l2guard_speaker_probe_yields",
            "Probe takeovers ended because the owner answered again",
            registry=self.registry,
        )
        self.registry.register(self._at_scrape)

    def set_announced(self, count: int) -> None:
        self._announced.set(count)

    def set_api_connected(self, connected: bool) -> None:
        self._api_connected.set(1 if connected else 0)

    def set_config_stale(self, stale: bool) -> None:
        self._config_stale.set(1 if stale else 0)

    def lease_renewed(self, at: float) -> None:
        """Record a successful renewal at `at` on the monotonic clock (the one given to the constructor)."""
        self._at_scrape.lease_renewed_at = at

    def set_eligible_nodes(self, counts: Mapping[str, int]) -> None:
        """Replace the whole per-service series set ({"namespace/name": eligible node count}); keeps the cap."""
        ranked = sorted(counts.items(), key=lambda item: (item[1], item[0]))
        kept = tuple(ranked[:ELIGIBLE_SERIES_CAP])
        self._at_scrape.eligible = (kept, len(ranked) - len(kept))

    def observe_reconcile(self, seconds: float) -> None:
        self._reconcile.observe(seconds)

    def watch_restarted(self, resource: str) -> None:
        self._watch_restarts.labels(resource).inc()

    def conflict_handled(self, action: ConflictAction) -> None:
        self._conflicts.labels(action).inc()

    def event_posted(self, event_type: EventType) -> None:
        self._events_posted.labels(event_type).inc()

    def event_suppressed(self, event_type: EventType) -> None:
        self._events_suppressed.labels(event_type).inc()

    def set_probing(self, owners: int, period: float) -> None:
        self._at_scrape.probing = (owners, period)

    def set_not_answering(self, owners: frozenset[str]) -> None:
        self._at_scrape.not_answering = owners

    def probe_sent(self) -> None:
        self._probes_sent.inc()

    def probe_takeover(self) -> None:
        self._probe_takeovers.inc()

    def probe_yield(self) -> None:
        self._probe_yields.inc()


class _ComputedAtScrape(Collector):
    """The series whose value is computed when scraped (an age) or swapped whole (the per-service gauge)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.lease_renewed_at: float | None = None
        # (the series kept, how many the cap left out): one reference, so a scrape never sees half an update
        self.eligible: tuple[tuple[tuple[str, int], ...], int] = ((), 0)
        self.probing: tuple[int, float] | None = None  # (owners probed, probe period); None: probing is off
        self.not_answering: frozenset[str] = frozenset()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        renewed_at = self.lease_renewed_at
        if renewed_at is not None:
            yield GaugeMetricFamily(
                "l2guard_speaker_lease_renewal_age_seconds",
                "Seconds since this node's Lease was last renewed (monotonic clock)",
                value=max(0.0, self._clock() - renewed_at),
            )
        eligible, omitted = self.eligible
        family = GaugeMetricFamily(
            "l2guard_speaker_eligible_nodes",
            f"Nodes eligible to announce a service's IP (at most {ELIGIBLE_SERIES_CAP} services, fewest first)",
            labels=["service"],
        )
        for service, count in eligible:
            family.add_metric([service], count)
        yield family
        yield GaugeMetricFamily(
            "l2guard_speaker_eligible_nodes_omitted_services",
            "Services left out of l2guard_speaker_eligible_nodes by its series cap",
            value=omitted,
        )
        probing = self.probing
        if probing is not None:
            yield GaugeMetricFamily(
                "l2guard_speaker_probed_owners", "Owner nodes this node backs up and probes", value=probing[0]
            )
            yield GaugeMetricFamily(
                "l2guard_speaker_probe_period_seconds",
                "Seconds between two probes of one owner (the probe interval, stretched by the budget)",
                value=probing[1],
            )
            family = GaugeMetricFamily(
                "l2guard_speaker_owner_not_answering",
                "1 for each owner node this node took over from because it stopped answering probes",
                labels=["node"],
            )
            for owner in sorted(self.not_answering):
                family.add_metric([owner], 1)
            yield family
