"""Prometheus metrics of the webhook, in one private registry (so tests and several apps in one process do not
collide on the global one).

Names: `l2guard_webhook_requests_total{endpoint,outcome}`, `l2guard_webhook_request_seconds{endpoint}`,
`l2guard_webhook_cert_expiry_seconds`, `l2guard_webhook_cluster_view_synced`, `l2guard_webhook_watch_errors_total`,
`l2guard_webhook_config_reads_total{result}`, `l2guard_webhook_stale_objects`.
This module only defines and renders metrics; it decides nothing.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "l2guard_webhook_requests",
            "Admission requests by endpoint and outcome",
            ("endpoint", "outcome"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "l2guard_webhook_request_seconds",
            "Time to answer an admission request, from body received to response built",
            ("endpoint",),
            buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )
        self.cert_expiry = Gauge(
            "l2guard_webhook_cert_expiry_seconds",
            "Seconds until the serving certificate expires (negative: expired)",
            registry=self.registry,
        )
        self.cert_reloads = Counter(
            "l2guard_webhook_cert_reloads", "Certificate reloads after a content change", registry=self.registry
        )
        self.synced = Gauge(
            "l2guard_webhook_cluster_view_synced", "1 when the cluster view is synced", registry=self.registry
        )
        self.watch_errors = Counter(
            "l2guard_webhook_watch_errors", "List/watch errors by resource", ("resource",), registry=self.registry
        )
        self.stale_objects = Gauge(
            "l2guard_webhook_stale_objects",
            "Objects whose latest version is invalid (the view plans with their last valid version, if any)",
            registry=self.registry,
        )
        self.config_reads = Counter(
            "l2guard_webhook_config_reads",
            "Live reads of pools and advertisements for a review, by result (live, or fallback to the cache)",
            ("result",),
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
