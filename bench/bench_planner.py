"""Planner benchmark: a full plan of 10,000 LoadBalancer services over 500 nodes, and incremental replans.

Run:  .venv/bin/python bench/bench_planner.py [--repeat 5]

Reported as absolute times (this machine, noisy) and as ratios to a baseline measured in the same process: the
bare cost of the sha256 digests a full election must compute (one per eligible node and service), which no
planner can avoid. Targets (foundation issue): full plan <= 2 s, replan after one node's label change <= 50 ms.
This is a script, not a timed test.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from l2core.addresses import parse_range
from l2core.model import (
    EXCLUDE_LABEL,
    Cluster,
    EligibilitySettings,
    Endpoint,
    EndpointSlice,
    IPAddressPool,
    L2Advertisement,
    Node,
    Service,
)
from l2core.plan import Planner
from l2core.selectors import LabelSelector

N_NODES = 500
N_SERVICES = 10_000


def build() -> Cluster:
    nodes = {}
    for i in range(N_NODES):
        name = f"cp-{i}" if i < 3 else f"worker-{i:03d}"
        labels = {"topology.kubernetes.io/zone": f"zone-{i % 4}", "kubernetes.io/hostname": name}
        if i < 3:
            labels.update({"node-role.kubernetes.io/control-plane": "", EXCLUDE_LABEL: ""})
        nodes[name] = Node(name, labels=labels, internal_ips=(f"198.51.100.{i % 250}",))
    names = list(nodes)
    services = {}
    slices = {}
    for i in range(N_SERVICES):
        ip4 = f"10.{64 + i // 65536}.{(i // 256) % 256}.{i % 256}"
        ips = (ip4, f"2001:db8::{i:x}") if i % 5 == 0 else (ip4,)
        local = i % 5 == 1
        svc = Service(
            f"ns-{i % 50}", f"svc-{i}", "LoadBalancer", None, local, ips, {"tier": "gold" if i % 7 == 0 else "std"}
        )
        services[svc.key] = svc
        eps = tuple(Endpoint(names[(i * 7 + k * 13) % N_NODES], True, True, False) for k in range(3))
        slices[f"{svc.namespace}/{svc.name}-x"] = EndpointSlice(svc.namespace, f"{svc.name}-x", svc.name, eps)
    r4, _ = parse_range("10.64.0.0/10")
    r6, _ = parse_range("2001:db8::/64")
    assert r4 is not None and r6 is not None
    pools = {"metallb-system/lan": IPAddressPool("metallb-system", "lan", ranges=(r4, r6))}
    zone0 = LabelSelector((("topology.kubernetes.io/zone", "zone-0"),))
    ads = {
        "metallb-system/lan": L2Advertisement("metallb-system", "lan", ip_address_pools=("lan",)),
        "metallb-system/gold": L2Advertisement(
            "metallb-system",
            "gold",
            ip_address_pools=("lan",),
            node_selectors=(zone0,),
            service_selectors=(LabelSelector((("tier", "gold"),)),),
        ),
    }
    return Cluster(nodes, services, slices, pools, ads)


def baseline_hashes(cluster: Cluster) -> float:
    """The irreducible work: one sha256 per (eligible node, service)."""
    encoded = [n.encode() for n in cluster.nodes]
    start = time.perf_counter()
    for svc in cluster.services.values():
        suffix = ("#" + svc.ingress_ips[0]).encode()
        min([hashlib.sha256(n + suffix).digest() for n in encoded])
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    cluster = build()
    settings = EligibilitySettings()

    base = statistics.median(baseline_hashes(cluster) for _ in range(args.repeat))
    full = []
    planner = None
    for _ in range(args.repeat):
        start = time.perf_counter()
        planner = Planner(cluster, settings)
        full.append(time.perf_counter() - start)
    assert planner is not None
    p = planner.plan
    owners: dict[str, int] = {}
    for sp in p.services.values():
        if sp.announcer:
            owners[sp.announcer] = owners.get(sp.announcer, 0) + 1
    busiest = max(owners, key=lambda n: owners[n])

    def timed(fn) -> float:  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    node = cluster.nodes[busiest]
    excluded = Node(node.name, labels={**node.labels, EXCLUDE_LABEL: ""}, internal_ips=node.internal_ips)
    other = cluster.nodes["worker-100"]
    relabelled = Node(other.name, labels={**other.labels, "example.com/team": "x"}, internal_ips=other.internal_ips)
    cp = cluster.nodes["cp-0"]
    unexcluded = Node(cp.name, labels={k: v for k, v in cp.labels.items() if k != EXCLUDE_LABEL})
    add_label, remove_label, unrelated, cp_gains = [], [], [], []
    moved = 0
    for _ in range(args.repeat * 4):
        add_label.append(timed(lambda: planner.upsert_node(excluded)))
        remove_label.append(timed(lambda: planner.upsert_node(node)))
        unrelated.append(timed(lambda: planner.upsert_node(relabelled)))
        cp_gains.append(timed(lambda: planner.upsert_node(unexcluded)))
        moved = len(planner.upsert_node(cp).moves)
    # Speaker liveness (issue 8): the busiest announcer's lease expires, then it renews again.
    everyone = frozenset(cluster.nodes)
    speaker_dies, speaker_returns = [], []
    for _ in range(args.repeat * 4):
        speaker_dies.append(timed(lambda: planner.set_alive(everyone - {busiest})))
        speaker_returns.append(timed(lambda: planner.set_alive(everyone)))

    def ms(xs: list[float]) -> str:
        return f"median {statistics.median(xs) * 1e3:8.2f} ms  max {max(xs) * 1e3:8.2f} ms"

    full_med = statistics.median(full)
    print(
        f"cluster: {N_NODES} nodes, {N_SERVICES} LoadBalancer services; busiest announcer {busiest} "
        f"owns {owners[busiest]} services; cp-0 regaining eligibility moved {moved} services back"
    )
    print(f"baseline (sha256 of every node x service):   median {base * 1e3:8.1f} ms")
    print(f"full plan:                                    {ms(full)}   ratio to baseline {full_med / base:5.2f}")
    for label, xs in [
        ("replan: exclude label added to the busiest", add_label),
        ("replan: exclude label removed again", remove_label),
        ("replan: unrelated label on a worker", unrelated),
        ("replan: control-plane node loses the label", cp_gains),
        ("liveness: the busiest's speaker lease expires", speaker_dies),
        ("liveness: its speaker renews again", speaker_returns),
    ]:
        print(f"{label:45s} {ms(xs)}   ratio to full plan {statistics.median(xs) / full_med:7.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
