"""Probe takeover in live mode (issue 9, part 1): the speakers publish their MACs on their Leases, so a runner-up
that starts after the owner announced (it never saw the owner's takeover burst) still finds the owner on the wire,
with unicast probes only, and takes over a crashed owner long before its lease expires.

Same cluster and API double as tests/speaker/test_speaker_live_netns.py (node-a, node-b; `web` on 192.0.2.100 and
2001:db8::100). The lease lasts 30 s here, so a takeover within the test's bounds is the probes' doing.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from speaker_apins import add_api_host, in_netns
from speaker_netns import PYTHON, REPO, VIP4, Host, Topology, sh, wait_for
from speaker_web import curl, probe_log, serve_vip_on_lo, start_probe
from test_speaker_live_netns import LEASE, cluster

from tests.control.test_speaker_live import kubeconfig
from tests.core.election_reference import ranked
from tests.webhook.apidouble import APIDouble

pytestmark = pytest.mark.root


def start_speaker(host: Host, name: str, config: Path, logs: Path) -> subprocess.Popen[str]:
    argv = [PYTHON, "-m", "l2guard.cli", "speaker", "--node-name", name, "--kubeconfig", str(config)]
    argv += ["--lease-duration", "30", "--lease-renew-interval", "1", "--log-format", "json", "--health-port", "7473"]
    argv += ["--burst-interval", "0.2", "--burst-duration", "0.4"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("L2GUARD_") and "proxy" not in k.lower()}
    out = (logs / f"{name}.log").open("w")
    return subprocess.Popen(host.cmd(argv), stdout=out, stderr=subprocess.STDOUT, text=True, cwd=REPO, env=env)


def metric(host: Host, series: str) -> float:
    out = sh(host.cmd(["curl", "-s", "--max-time", "2", "http://127.0.0.1:7473/metrics"]), check=False).stdout
    m = re.search(rf"^{re.escape(series)} (\S+)$", out, re.M)
    return float(m.group(1)) if m else 0.0


def test_a_runner_up_started_after_the_owner_finds_it_through_its_lease_and_takes_over_its_crash(
    fresh_topo: Topology, tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    topo = fresh_topo
    hosts = {"node-a": topo.node_a, "node-b": topo.node_b}
    owner, runner_up = ranked(hosts, VIP4)
    api = add_api_host(topo)
    double = in_netns(api.ns, lambda: APIDouble(cluster(hosts), address=api.ip4))

    def logs() -> str:
        return "\n".join(f"--- {n}\n" + (tmp_path / f"{n}.log").read_text()[-6000:] for n in hosts)

    with double:
        config = kubeconfig(tmp_path, double.url)
        servers = {name: serve_vip_on_lo(h, name) for name, h in hosts.items()}
        processes += servers.values()
        first = start_speaker(hosts[owner], owner, config, tmp_path)
        processes.append(first)
        assert wait_for(lambda: curl(topo.client, VIP4) == owner, timeout=30), logs()
        lease = double.store.objects[LEASE.format(owner)]
        assert lease["metadata"]["annotations"]["l2guard.io/macs"] == hosts[owner].mac
        time.sleep(1.0)  # pacing: the owner's takeover burst (0.4 s) is over before the runner-up starts
        second = start_speaker(hosts[runner_up], runner_up, config, tmp_path)
        processes.append(second)
        # It finds the owner through the MACs on its Lease, then probes it at the MAC that answered.
        sent = "l2guard_speaker_probes_sent_total"
        assert wait_for(lambda: metric(hosts[runner_up], sent) >= 3, timeout=30), logs()

        loop = start_probe(topo.client, VIP4, 20, until=runner_up, count=20)
        time.sleep(0.5)  # pacing: served by the owner first
        for proc in (first, servers[owner]):
            proc.kill()
            proc.wait(10)
        answers = [who for _, who in probe_log(loop) if who]  # (None: a 50 ms timeout, under load)
        assert answers[-20:] == [runner_up] * 20, logs()
        assert owner in answers
        assert topo.client.neigh(VIP4)[0] == hosts[runner_up].mac
        took = [line for line in (tmp_path / f"{runner_up}.log").read_text().splitlines() if "probe-takeover" in line]
        assert len(took) == 1, logs()
        assert double.store.objects[LEASE.format(runner_up)]["metadata"]["annotations"]["l2guard.io/macs"] == (
            hosts[runner_up].mac
        )
