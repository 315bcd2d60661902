"""Three speakers in file mode on one snooping bridge, for the probe-takeover tests and benchmark (issue 9, part 1).

Each node namespace runs `l2guard speaker` with the same cluster-state file (nodes node-a, node-b, node-c; one
service `web` on 192.0.2.100 and 2001:db8::100 with endpoints on all three) and the tiny HTTP server behind the
VIPs on `lo` (speaker_web.py). In file mode every node is alive for the election whatever happens to its
speaker: a dead owner stays elected, which is exactly what the probes are for. The owner and the runner-up are
worked out with hashlib (tests/core/election_reference.py), not by the code under test.

Scaffolding only: starting, reading logs and metrics, and faults (nftables in a node's namespace). Every wait is
bounded.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speaker_netns import PYTHON, REPO, VIP4, VIP6, Host, Topology, sh, wait_for
from speaker_web import curl, serve_vip_on_lo

from tests.builders import READY, advertisement, endpoints, excluded, node, pool, service
from tests.core.election_reference import ranked

NODES = ("node-a", "node-b", "node-c")
PORT = "7473"


def state(*, excluding: tuple[str, ...] = ()) -> str:
    docs: list[dict[str, Any]] = [excluded(n) if n in excluding else node(n) for n in NODES]
    docs += [
        service("web", [VIP4, VIP6]),
        endpoints("web", dict.fromkeys(NODES, READY)),
        pool("lan", "192.0.2.100/32", "2001:db8::100/128"),
        advertisement("l2", ipAddressPools=["lan"]),
    ]
    return "\n---\n".join(json.dumps(d) for d in docs) + "\n"


@dataclass
class Cluster:
    """The running speakers; `owner`, `runner_up` and `third` by the reference election for 192.0.2.100."""

    topo: Topology
    tmp: Path
    extra: tuple[str, ...] = ()
    speakers: dict[str, subprocess.Popen[str]] = field(default_factory=dict)
    servers: dict[str, subprocess.Popen[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        order = ranked(NODES, VIP4)
        self.owner, self.runner_up, self.third = order
        self.file = self.tmp / "state.yaml"
        self.file.write_text(state())

    @property
    def hosts(self) -> dict[str, Host]:
        return self.topo.nodes

    def start(self, name: str) -> subprocess.Popen[str]:
        argv = [PYTHON, "-m", "l2guard.cli", "speaker", "--node-name", name, "--cluster-state", str(self.file)]
        argv += ["--poll-interval", "0.1", "--log-format", "json", "--health-port", PORT, *self.extra]
        out = (self.tmp / f"{name}.log").open("a")
        proc = subprocess.Popen(self.hosts[name].cmd(argv), stdout=out, stderr=subprocess.STDOUT, text=True, cwd=REPO)
        self.speakers[name] = proc
        return proc

    def start_all(self) -> None:
        """Web servers and speakers on every node; returns once the client reaches the owner on both VIPs and the
        runner-up probes the owner (it learned the owner's MAC from its takeover burst)."""
        for name, host in self.hosts.items():
            self.servers[name] = serve_vip_on_lo(host, name)
        for name in NODES:
            self.start(name)
        client = self.topo.client
        ok = wait_for(lambda: curl(client, VIP4) == self.owner and curl(client, VIP6) == self.owner, timeout=30)
        assert ok, self.logs()
        assert wait_for(lambda: self.metric(self.runner_up, "l2guard_speaker_probes_sent_total") >= 3, 20), self.logs()

    def logs(self) -> str:
        return "\n".join(f"--- {n}\n" + (self.tmp / f"{n}.log").read_text() for n in NODES)

    def events(self, name: str, event: str) -> list[dict[str, Any]]:
        """The JSON log lines of `name`'s speaker with this `event` field."""
        out = []
        for line in (self.tmp / f"{name}.log").read_text().splitlines():
            if line.startswith("{"):
                doc = json.loads(line)
                if doc.get("event") == event:
                    out.append(doc)
        return out

    def metrics(self, name: str) -> str:
        url = f"http://127.0.0.1:{PORT}/metrics"
        return sh(self.hosts[name].cmd(["curl", "-s", "--max-time", "2", url]), check=False).stdout

    def metric(self, name: str, series: str) -> float:
        """One sample of `name`'s /metrics (`series` with its labels as printed); 0 when absent."""
        m = re.search(rf"^{re.escape(series)} (\S+)$", self.metrics(name), re.M)
        return float(m.group(1)) if m else 0.0

    def crash(self, name: str) -> None:
        """The node dies: its speaker and its web server are SIGKILLed (by PID, ours)."""
        for proc in (self.speakers[name], self.servers[name]):
            proc.kill()
            proc.wait(10)


def drop_probes_at(host: Host, source_mac: str, *, packets: int | None = None) -> None:
    """nftables in `host`'s namespace: drop the ARP requests and Neighbor Solicitations arriving from
    `source_mac` (the runner-up's probes) on eth0's ingress, before the speaker's packet sockets see them
    (netdev ingress runs before protocol taps). With `packets`, only that many ARP requests (a quota in bytes of
    the 46-byte ARP payload, which is what the hook counts), then they pass again."""
    quota = f"quota until {46 * packets} bytes " if packets is not None else ""
    rules = f"""
table netdev l2probe {{
  chain in {{
    type filter hook ingress device eth0 priority 0;
    ether saddr {source_mac} arp operation request {quota}counter drop
    ether saddr {source_mac} icmpv6 type nd-neighbor-solicit counter drop
  }}
}}
"""
    res = subprocess.run(host.cmd(["nft", "-f", "-"]), input=rules, capture_output=True, text=True, timeout=20)
    assert res.returncode == 0, res.stderr


def heal(host: Host) -> None:
    sh(host.cmd(["nft", "delete", "table", "netdev", "l2probe"]), check=False)


def dropped(host: Host) -> int:
    """Packets the drop rules matched so far."""
    out = sh(host.cmd(["nft", "list", "table", "netdev", "l2probe"]), check=False).stdout
    return sum(int(n) for n in re.findall(r"counter packets (\d+)", out))
