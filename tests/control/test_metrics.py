"""The control plane's metrics, read back through the Prometheus text parser (and once through the health port)."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from l2guard.control.health import HealthServer, SpeakerStatus, StatusBoard
from l2guard.control.metrics import ELIGIBLE_SERIES_CAP, SpeakerMetrics
from speaker.metrics import Counters, SpeakerCollector


def samples(metrics: SpeakerMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of one scrape."""
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_every_name_carries_the_speaker_prefix() -> None:
    metrics = SpeakerMetrics()
    metrics.lease_renewed(at=0.0)
    names = {name for name, _ in samples(metrics)}
    assert names, "nothing exported"
    assert all(name.startswith("l2guard_speaker_") for name in names), sorted(names)


def test_gauges_show_what_the_control_plane_set() -> None:
    metrics = SpeakerMetrics()
    metrics.set_announced(3)
    metrics.set_api_connected(False)
    metrics.set_config_stale(True)
    got = samples(metrics)
    assert got[("l2guard_speaker_announced_ips", ())] == 3
    assert got[("l2guard_speaker_api_connected", ())] == 0
    assert got[("l2guard_speaker_config_stale", ())] == 1
    metrics.set_api_connected(True)
    metrics.set_config_stale(False)
    got = samples(metrics)
    assert got[("l2guard_speaker_api_connected", ())] == 1
    assert got[("l2guard_speaker_config_stale", ())] == 0


def test_the_lease_renewal_age_is_absent_before_the_first_renewal_then_grows_with_the_clock() -> None:
    now = [100.0]
    metrics = SpeakerMetrics(clock=lambda: now[0])
    assert not [name for name, _ in samples(metrics) if name.startswith("l2guard_speaker_lease")]
    metrics.lease_renewed(at=98.0)
    assert samples(metrics)[("l2guard_speaker_lease_renewal_age_seconds", ())] == 2.0
    now[0] = 105.5
    assert samples(metrics)[("l2guard_speaker_lease_renewal_age_seconds", ())] == 7.5


def test_counters_and_the_reconcile_histogram_count_what_happened() -> None:
    metrics = SpeakerMetrics()
    metrics.watch_restarted("nodes")
    metrics.watch_restarted("nodes")
    metrics.watch_restarted("leases")
    metrics.conflict_handled("yielded")
    metrics.event_posted("Warning")
    metrics.event_posted("Warning")
    metrics.event_posted("Normal")
    metrics.event_suppressed("Warning")
    metrics.observe_reconcile(0.003)
    metrics.observe_reconcile(0.2)
    got = samples(metrics)
    assert got[("l2guard_speaker_watch_restarts_total", (("resource", "nodes"),))] == 2
    assert got[("l2guard_speaker_watch_restarts_total", (("resource", "leases"),))] == 1
    assert got[("l2guard_speaker_conflicts_handled_total", (("action", "yielded"),))] == 1
    assert got[("l2guard_speaker_events_posted_total", (("type", "Warning"),))] == 2
    assert got[("l2guard_speaker_events_posted_total", (("type", "Normal"),))] == 1
    assert got[("l2guard_speaker_events_suppressed_total", (("type", "Warning"),))] == 1
    assert got[("l2guard_speaker_reconcile_duration_seconds_count", ())] == 2
    assert got[("l2guard_speaker_reconcile_duration_seconds_sum", ())] == pytest.approx(0.203)
    assert got[("l2guard_speaker_reconcile_duration_seconds_bucket", (("le", "0.005"),))] == 1


def eligible(metrics: SpeakerMetrics) -> dict[str, float]:
    return {
        dict(labels)["service"]: value
        for (name, labels), value in samples(metrics).items()
        if name == "l2guard_speaker_eligible_nodes"
    }


def test_eligible_nodes_keeps_the_services_with_the_fewest_nodes_up_to_the_cap() -> None:
    assert ELIGIBLE_SERIES_CAP == 100
    counts = {f"ok/svc-{i:03d}": 2 for i in range(100)}
    counts.update({f"broken/svc-{i:03d}": 0 for i in range(50)})
    counts.update({f"fragile/svc-{i:03d}": 1 for i in range(20)})
    metrics = SpeakerMetrics()
    metrics.set_eligible_nodes(counts)
    kept = eligible(metrics)
    expected = {f"broken/svc-{i:03d}": 0.0 for i in range(50)}
    expected.update({f"fragile/svc-{i:03d}": 1.0 for i in range(20)})
    expected.update({f"ok/svc-{i:03d}": 2.0 for i in range(30)})
    assert kept == expected
    assert samples(metrics)[("l2guard_speaker_eligible_nodes_omitted_services", ())] == 70


def test_eligible_nodes_is_replaced_whole_so_a_gone_service_leaves_no_series() -> None:
    metrics = SpeakerMetrics()
    metrics.set_eligible_nodes({"default/web": 0, "default/db": 3})
    metrics.set_eligible_nodes({"default/db": 2})
    assert eligible(metrics) == {"default/db": 2.0}
    assert samples(metrics)[("l2guard_speaker_eligible_nodes_omitted_services", ())] == 0


def test_the_data_planes_counters_share_the_registry_without_a_name_clash() -> None:
    metrics = SpeakerMetrics()
    counters = Counters()
    counters.inc("conflicts", "ipv4", iface="eth0", ip="192.0.2.100")
    metrics.registry.register(SpeakerCollector(counters))  # raises on a duplicated name
    metrics.conflict_handled("kept")
    got = samples(metrics)
    assert got[("l2guard_speaker_conflicts_total", (("family", "ipv4"), ("interface", "eth0")))] == 1
    assert got[("l2guard_speaker_conflicts_handled_total", (("action", "kept"),))] == 1


def test_the_health_port_serves_these_metrics() -> None:
    metrics = SpeakerMetrics()
    metrics.set_announced(2)
    server = HealthServer(StatusBoard(SpeakerStatus(node="worker-1")), metrics.registry, host="127.0.0.1", port=0)
    server.start()
    try:
        text = httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=10.0).text
    finally:
        server.stop()
    assert "l2guard_speaker_announced_ips 2.0" in text.splitlines()
