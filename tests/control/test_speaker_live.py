"""`l2guard speaker` in live mode, as a process, against the API double (tests/webhook/apidouble.py: no
kube-apiserver can run here, so a local HTTP server replays the captured wire format) through a real kubeconfig
and the real kubernetes client. Dry-run, so no root is needed; the packets are tested in network namespaces.

The captured cluster has cp-1 (exclude label), worker-1 and worker-2, and one LoadBalancer service default/web on
192.0.2.100, whose election order is cp-1, worker-1, worker-2 (tests/core/test_election.py's literal vectors):
worker-1 owns it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.control.test_speaker_command import REPO, clean_env, free_port
from tests.kube.scripts import quiet_scripts
from tests.kube.test_client import kubeconfig
from tests.webhook.apidouble import APIDouble

LEASE = "/apis/coordination.k8s.io/v1/namespaces/l2guard-system/leases/l2guard-speaker-worker-1"
EVENTS = "/api/v1/namespaces/default/events/"


@pytest.fixture
def double() -> Iterator[APIDouble]:
    """The captured lists with quiet watches; the speakers' Leases and Events are stored objects, watched too."""
    script = quiet_scripts()
    with APIDouble(script) as d:
        yield d


def start(tmp_path: Path, double: APIDouble, node: str, *extra: str) -> tuple[subprocess.Popen[str], int, Path]:
    port = free_port()
    log = tmp_path / f"{node}.log"
    argv = [sys.executable, "-m", "l2guard.cli", "speaker", "--dry-run", "--node-name", node]
    argv += ["--kubeconfig", str(kubeconfig(tmp_path, double.url)), "--health-address", "127.0.0.1"]
    argv += ["--health-port", str(port), "--log-format", "json", *extra]
    proc = subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True, env=clean_env(), cwd=REPO)
    return proc, port, log


def get(port: int, path: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)


def wait(predicate: Any, proc: subprocess.Popen[str], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if predicate():
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    return False


def test_the_owner_announces_holds_its_lease_posts_one_event_and_releases_the_lease_on_sigterm(
    tmp_path: Path, double: APIDouble
) -> None:
    proc, port, log = start(tmp_path, double, "worker-1")
    try:
        assert wait(lambda: get(port, "/readyz").status_code == 200, proc), log.read_text()
        status = get(port, "/status").json()
        assert [a["ip"] for a in status["announced"]] == ["192.0.2.100"]
        assert status["api"]["state"] == "connected", status
        assert wait(lambda: LEASE in double.store.objects, proc)
        lease = double.store.objects[LEASE]
        assert lease["spec"]["holderIdentity"] == "worker-1" and lease["spec"]["leaseDurationSeconds"] == 6
        assert wait(lambda: any(p.startswith(EVENTS) for p in double.store.objects), proc)
        events = [o for p, o in double.store.objects.items() if p.startswith(EVENTS)]
        assert [(e["reason"], e["message"], e["involvedObject"]["name"]) for e in events] == [
            ("Announcing", "announcing 192.0.2.100 from node worker-1 on all interfaces", "web")
        ]
        metrics = get(port, "/metrics").text
        assert 'l2guard_speaker_events_posted_total{type="Normal"} 1.0' in metrics
        assert "l2guard_speaker_api_connected 1.0" in metrics
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    released = double.store.objects[LEASE]["spec"]
    assert "holderIdentity" not in released and released["leaseDurationSeconds"] == 1
    assert "Traceback" not in log.read_text()


def announced(port: int) -> list[str]:
    return [a["ip"] for a in get(port, "/status").json()["announced"]]


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL])
def test_the_runner_up_takes_over_when_the_owner_stops_or_dies(
    tmp_path: Path, double: APIDouble, stop: signal.Signals
) -> None:
    """Two speakers: worker-1 owns 192.0.2.100 and worker-2 announces nothing and posts nothing. SIGTERM: worker-1
    releases its lease and worker-2 takes over at once; SIGKILL: worker-2 takes over once the lease expires (2 s
    here). Only the owner posts the Announcing Event."""
    fast = ("--lease-duration", "2", "--lease-renew-interval", "0.5")
    (owner, owner_port, owner_log), (runner, runner_port, runner_log) = (
        start(tmp_path, double, "worker-1", *fast),
        start(tmp_path, double, "worker-2", *fast),
    )
    try:
        assert wait(lambda: announced(owner_port) == ["192.0.2.100"], owner), owner_log.read_text()
        assert wait(lambda: get(runner_port, "/status").json()["peers_alive"] == ["worker-1", "worker-2"], runner)
        assert announced(runner_port) == []
        owner.send_signal(stop)
        owner.wait(15)
        assert wait(lambda: announced(runner_port) == ["192.0.2.100"], runner), runner_log.read_text()
        events = [o for p, o in double.store.objects.items() if p.startswith(EVENTS)]
        assert sorted(e["message"] for e in events) == [
            "announcing 192.0.2.100 from node worker-1 on all interfaces",
            "announcing 192.0.2.100 from node worker-2 on all interfaces",
        ]
    finally:
        for proc in (owner, runner):
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def test_a_dry_run_owner_leaves_metallbs_status_objects_alone(tmp_path: Path, double: APIDouble) -> None:
    """A shadow beside MetalLB's speaker must not rewrite MetalLB's ServiceL2Status objects (issue 9, part 2): the
    dry-run owner neither lists nor writes them (the live netns test shows a real owner does)."""
    proc, port, log = start(tmp_path, double, "worker-1")
    try:
        assert wait(lambda: announced(port) == ["192.0.2.100"], proc), log.read_text()
        assert wait(lambda: any(p.startswith(EVENTS) for p in double.store.objects), proc)  # well past the first plan
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert [r for r in double.requests if "servicel2statuses" in r[1]] == []


def test_a_restarted_speaker_does_not_post_its_events_again(tmp_path: Path, double: APIDouble) -> None:
    """Events only on change, across restarts: the owner posts its Announcing Event, is SIGKILLed and started
    again; it finds its Event already there (409 AlreadyExists on the same name) and neither creates a second one
    nor modifies the first."""
    proc, port, log = start(tmp_path, double, "worker-1")
    try:
        assert wait(lambda: any(p.startswith(EVENTS) for p in double.store.objects), proc), log.read_text()
        proc.kill()
        proc.wait(10)
        [(path, before)] = [
            (p, json.loads(json.dumps(o))) for p, o in double.store.objects.items() if p.startswith(EVENTS)
        ]
        written = len(double.requests)
        proc, port, log = start(tmp_path, double, "worker-1")
        assert wait(lambda: ("POST", EVENTS.rstrip("/"), 409) in double.requests[written:], proc), log.read_text()
        assert wait(lambda: ("GET", path, 200) in double.requests[written:], proc), log.read_text()
        assert wait(lambda: announced(port) == ["192.0.2.100"], proc), log.read_text()
        time.sleep(1)  # anything else it would write about the Service lands meanwhile
        events = [(p, o) for p, o in double.store.objects.items() if p.startswith(EVENTS)]
        assert events == [(path, before)]
        writes = [(m, p) for m, p, _ in double.requests[written:] if "/events" in p and m != "GET"]
        assert writes == [("POST", EVENTS.rstrip("/"))], writes
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert "Traceback" not in log.read_text()
