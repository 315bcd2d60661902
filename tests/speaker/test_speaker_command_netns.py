"""`l2guard speaker` end to end in network namespaces, file mode: one speaker process per node namespace with the
real data plane, a client on the bridge that reaches the VIPs only through the speakers' ARP/NDP answers (the VIPs
sit on each node's `lo`, see speaker_web.py), and the cluster-state file as the only input.

The owner is the election's winner for 192.0.2.100 among node-a and node-b, computed independently with hashlib
(tests/core/election_reference.py), not by the code under test.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from speaker_netns import PYTHON, REPO, VIP4, VIP6, Host, Topology, wait_for
from speaker_web import curl, probe_log, serve_vip_on_lo, start_probe

from tests.builders import READY, advertisement, endpoints, excluded, node, pool, service
from tests.core.election_reference import reference_owner

pytestmark = pytest.mark.root


def state(*nodes: dict[str, Any]) -> str:
    docs = [
        *nodes,
        service("web", [VIP4, VIP6]),
        endpoints("web", {"node-a": READY, "node-b": READY}),
        pool("lan", "192.0.2.100/32", "2001:db8::100/128"),
        advertisement("l2", ipAddressPools=["lan"]),
    ]
    return "\n---\n".join(json.dumps(d) for d in docs) + "\n"


def start_speaker(host: Host, name: str, path: Path, logs: Path) -> subprocess.Popen[str]:
    argv = [PYTHON, "-m", "l2guard.cli", "speaker", "--node-name", name, "--cluster-state", str(path)]
    argv += ["--poll-interval", "0.1", "--log-format", "json", "--health-port", "7473"]
    out = (logs / f"{name}.log").open("w")
    return subprocess.Popen(host.cmd(argv), stdout=out, stderr=subprocess.STDOUT, text=True, cwd=REPO)


def test_the_vip_follows_the_file_from_the_labelled_owner_to_the_other_node(
    fresh_topo: Topology, tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    topo = fresh_topo
    hosts = {"node-a": topo.node_a, "node-b": topo.node_b}
    owner = reference_owner(hosts, VIP4)
    assert owner is not None
    other = next(n for n in hosts if n != owner)
    f = tmp_path / "state.yaml"
    f.write_text(state(node("node-a"), node("node-b")))
    processes += [serve_vip_on_lo(h, name) for name, h in hosts.items()]
    speakers = {name: start_speaker(h, name, f, tmp_path) for name, h in hosts.items()}
    processes += speakers.values()
    client = topo.client

    def logs() -> str:
        return "\n".join(f"--- {n}\n" + (tmp_path / f"{n}.log").read_text() for n in hosts)

    assert wait_for(lambda: curl(client, VIP4) == owner and curl(client, VIP6) == owner, timeout=20), logs()
    assert client.neigh(VIP4)[0] == hosts[owner].mac and client.neigh(VIP6)[0] == hosts[owner].mac

    probe = start_probe(client, VIP4, 20, until=other, count=40)
    time.sleep(1.0)  # pacing, not a measurement: the probe is up and served by the owner before the label lands
    f.write_text(state(excluded(owner), node(other)))  # someone labels the owner
    answers = probe_log(probe)
    assert [who for _, who in answers][-40:] == [other] * 40, logs()
    assert owner in {who for _, who in answers}  # it was served by the owner until the move
    # The takeover burst updated the client's existing entries; nothing was flushed.
    assert wait_for(lambda: client.neigh(VIP4)[0] == hosts[other].mac, timeout=10), logs()
    assert wait_for(lambda: client.neigh(VIP6)[0] == hosts[other].mac, timeout=10), logs()
    status = json.loads(hosts[other].run(["curl", "-s", "--max-time", "2", "http://127.0.0.1:7473/status"]))
    assert sorted(a["ip"] for a in status["announced"]) == sorted([VIP4, VIP6])

    for p in speakers.values():
        p.send_signal(signal.SIGTERM)
    assert [p.wait(15) for p in speakers.values()] == [0, 0], logs()
    assert "Traceback" not in logs()
