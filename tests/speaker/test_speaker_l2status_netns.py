"""MetalLB's ServiceL2Status objects kept by live speakers (issue 9, part 2): two `l2guard speaker` processes with
the real data plane in node namespaces (a dry-run speaker writes none: a shadow beside MetalLB's speaker must not
rewrite its objects), against the API double in a namespace of its own, as in test_speaker_live_netns.py (the same
cluster: `web` on 192.0.2.100 and 2001:db8::100, the captured L2Advertisement `lan`, which names no interfaces).

The object appears for the election owner (computed with hashlib in tests/core/election_reference.py, not by the
code under test), moves with the exclude label (the old owner deletes its object, the new owner creates its own),
is gone when nobody announces, and a steady state writes nothing. Without the CRD each speaker says so in one INFO
line and writes nothing.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from speaker_apins import add_api_host, in_netns
from speaker_netns import VIP4, Topology, wait_for
from test_speaker_live_netns import LEASE, cluster, cluster_node, start_speaker

from tests.control.test_speaker_live import kubeconfig
from tests.core.election_reference import reference_owner
from tests.kube.scripts import NODES
from tests.webhook.apidouble import APIDouble

pytestmark = pytest.mark.root

COLLECTION = "/apis/metallb.io/v1beta1/namespaces/metallb-system/servicel2statuses"
KIND = ("apis/metallb.io/v1beta1", "servicel2statuses")


def statuses(double: APIDouble) -> list[dict[str, Any]]:
    with double.store.lock:
        return [o for p, o in sorted(double.store.objects.items()) if p.startswith(COLLECTION + "/")]


def shown(double: APIDouble) -> list[tuple[dict[str, str], dict[str, Any] | None]]:
    return [(o["metadata"]["labels"], o.get("status")) for o in statuses(double)]


def status_writes(double: APIDouble) -> list[tuple[str, str, int]]:
    return [r for r in list(double.requests) if r[1].startswith(COLLECTION) and r[0] != "GET"]


def of(node: str) -> tuple[dict[str, str], dict[str, Any]]:
    """The object MetalLB's speaker on `node` keeps for default/web (labels, status)."""
    labels = {"metallb.io/node": node, "metallb.io/service-name": "web", "metallb.io/service-namespace": "default"}
    return labels, {"node": node, "serviceName": "web", "serviceNamespace": "default"}


def log_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def test_the_status_object_follows_the_announcement_and_a_steady_state_writes_nothing(
    fresh_topo: Topology, tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    hosts = {"node-a": fresh_topo.node_a, "node-b": fresh_topo.node_b}
    owner = reference_owner(hosts, VIP4)
    assert owner is not None
    other = next(n for n in hosts if n != owner)
    api = add_api_host(fresh_topo)
    double = in_netns(api.ns, lambda: APIDouble(cluster(hosts), address=api.ip4))

    def logs() -> str:
        return "\n".join(f"--- {n}\n" + (tmp_path / f"{n}.log").read_text()[-6000:] for n in hosts)

    with double:
        config = kubeconfig(tmp_path, double.url)
        speakers = {name: start_speaker(h, name, config, tmp_path) for name, h in hosts.items()}
        processes += speakers.values()

        # (1) The owner creates MetalLB's object: generated name, three labels, the status through the subresource.
        # (While a speaker has not seen the other's Lease yet, it counts itself alone and may briefly own the
        # service too; the objects then settle, as MetalLB's do.)
        assert wait_for(lambda: all(LEASE.format(n) in double.store.objects for n in hosts), timeout=20), logs()
        assert wait_for(lambda: shown(double) == [of(owner)], timeout=20), (shown(double), logs())
        [obj] = statuses(double)
        assert obj["metadata"]["name"].startswith("l2-") and obj["metadata"]["generateName"] == "l2-"
        assert {"POST", "PATCH"} <= {m for m, _, _ in status_writes(double)}

        # (2) Steady state: the Lease renewals go on (every 0.5 s), and nothing is written.
        time.sleep(1)
        before = len(status_writes(double))
        time.sleep(3)
        assert status_writes(double)[before:] == []

        # (3) The exclude label on the owner moves the IP: the old owner deletes its object, the new one creates its.
        double.push(NODES, "MODIFIED", cluster_node(owner, hosts[owner].ip4, 310, excluded=True))
        assert wait_for(lambda: shown(double) == [of(other)], timeout=20), (shown(double), logs())
        moved = status_writes(double)[before:]
        assert sorted({m for m, _, _ in moved}) == ["DELETE", "PATCH", "POST"], moved

        # (4) Nobody can announce (both labelled): no object at all.
        double.push(NODES, "MODIFIED", cluster_node(other, hosts[other].ip4, 311, excluded=True))
        assert wait_for(lambda: shown(double) == [], timeout=20), (shown(double), logs())

        # (5) The label comes off the owner again: its object is back; SIGTERM: it deletes it on the way out.
        double.push(NODES, "MODIFIED", cluster_node(owner, hosts[owner].ip4, 312))
        assert wait_for(lambda: shown(double) == [of(owner)], timeout=20), (shown(double), logs())
        speakers[owner].send_signal(signal.SIGTERM)
        assert speakers[owner].wait(15) == 0, logs()
        assert shown(double) == [], logs()  # the other node is labelled: nobody takes over
        speakers[other].send_signal(signal.SIGTERM)
        assert speakers[other].wait(15) == 0, logs()
    full = "".join((tmp_path / f"{n}.log").read_text() for n in hosts)
    assert "Traceback" not in full and '"l2status-failed"' not in full, full


def test_without_the_crd_each_speaker_says_so_once_and_writes_nothing(
    fresh_topo: Topology, tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    hosts = {"node-a": fresh_topo.node_a, "node-b": fresh_topo.node_b}
    api = add_api_host(fresh_topo)
    double = in_netns(api.ns, lambda: APIDouble(cluster(hosts), address=api.ip4))
    double.store.missing.add(KIND)
    logs = {n: tmp_path / f"{n}.log" for n in hosts}

    def said(name: str) -> list[dict[str, Any]]:
        return [d for d in log_lines(logs[name]) if str(d.get("event", "")).startswith("l2status")]

    with double:
        config = kubeconfig(tmp_path, double.url)
        speakers = {name: start_speaker(h, name, config, tmp_path) for name, h in hosts.items()}
        processes += speakers.values()
        assert wait_for(lambda: all(said(n) for n in hosts), timeout=20), [p.read_text()[-3000:] for p in logs.values()]
        owner = reference_owner(hosts, VIP4)
        double.push(NODES, "MODIFIED", cluster_node(str(owner), hosts[str(owner)].ip4, 310, excluded=True))
        time.sleep(3)  # the IP moves meanwhile: no list, no write while the resource is absent
        for proc in speakers.values():
            proc.send_signal(signal.SIGTERM)
        for proc in speakers.values():
            assert proc.wait(15) == 0
    asked = [r for r in list(double.requests) if r[1].startswith(COLLECTION)]
    assert asked and all((m, s) == ("GET", 404) for m, _, s in asked), asked
    assert len(asked) == 2, asked  # one list per speaker: the next check is a minute away
    for name in hosts:
        [line] = said(name)
        assert (line["event"], line["level"]) == ("l2status-absent", "info"), line
