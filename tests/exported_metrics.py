"""The metrics l2guard exports, read from the code's own registries: the speaker's control plane
(`l2guard.control.metrics`), its data plane (`speaker.metrics`) and the webhook (`webhook.metrics`), each exercised
once so that every labelled metric shows its label names. The docs' and the alerts' tests compare against these, so
a metric added, renamed or relabelled in the code fails them."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from l2guard.control.metrics import SpeakerMetrics
from speaker.metrics import KINDS, Counters, SpeakerCollector
from webhook.metrics import Metrics


def registries() -> tuple[CollectorRegistry, CollectorRegistry]:
    """A speaker's registry (control and data plane, as its health port serves them) and a webhook's, with every
    metric given a value."""
    speaker = SpeakerMetrics(clock=lambda: 10.0)
    speaker.set_announced(1)
    speaker.set_api_connected(True)
    speaker.set_config_stale(False)
    speaker.lease_renewed(5.0)
    speaker.set_eligible_nodes({"default/web": 0})
    speaker.observe_reconcile(0.01)
    speaker.watch_restarted("nodes")
    speaker.conflict_handled("kept")
    speaker.event_posted("Normal")
    speaker.event_suppressed("Warning")
    speaker.set_probing(2, 0.3)
    speaker.set_not_answering(frozenset({"worker-1"}))
    speaker.probe_sent()
    speaker.probe_takeover()
    speaker.probe_yield()
    counters = Counters()
    for kind in KINDS:
        counters.inc(kind, "ipv4", iface="eth0", ip="192.0.2.100")
    speaker.registry.register(SpeakerCollector(counters))
    webhook = Metrics()
    for metric in vars(webhook).values():
        if isinstance(metric, MetricWrapperBase):
            # a child for each labelled metric, so its label names show in the samples
            child = metric.labels(*["x"] * len(metric._labelnames)) if metric._labelnames else metric
            if hasattr(child, "observe"):
                child.observe(1)
            else:
                child.inc()
    return speaker.registry, webhook.registry


def _families() -> Iterator[tuple[str, str, frozenset[str], frozenset[str]]]:
    for registry in registries():
        for family in registry.collect():
            assert family.samples, f"{family.name} exported no sample: exercise it above, or its labels are unknown"
            labels = frozenset().union(*(s.labels for s in family.samples))
            yield family.name, family.type, labels, frozenset(s.name for s in family.samples)


def series() -> dict[str, frozenset[str]]:
    """{series name as scraped (`..._total`, `..._bucket`): its label names}."""
    out: dict[str, frozenset[str]] = {}
    for registry in registries():
        for family in registry.collect():
            for sample in family.samples:
                out[sample.name] = out.get(sample.name, frozenset()) | frozenset(sample.labels)
    return out


def metrics() -> dict[str, tuple[str, frozenset[str]]]:
    """{metric name as documented (a counter with `_total`, a histogram by its base name): (type, label names
    without `le`)}."""
    out = {}
    for name, kind, labels, _ in _families():
        out[f"{name}_total" if kind == "counter" else name] = (kind, labels - {"le"})
    return out
