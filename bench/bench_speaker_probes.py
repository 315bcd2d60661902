"""Failover by probes (issue 9, part 1), in network namespaces with the real data plane (run as root).

Two `l2guard speaker` processes in live mode (node-a: worker-1, the captured cluster's owner of 192.0.2.100;
node-b: worker-2, its runner-up) against the API double in a namespace of its own on the same bridge, as in
bench/bench_speaker_failover.py, with an HTTP server behind the VIP on each node (tests/speaker/speaker_web.py).
The client opens a new TCP connection to the VIP every 5 ms (50 ms timeout) and records who answered. The fault:

- crash: the owner's speaker and its web server are SIGKILLed (the node is gone);
- link: the owner's eth0 goes down (the node is cut off from the LAN and the API alike);
- sigterm: the owner's speaker gets SIGTERM and its web server SIGKILL (a drained node going away).

Failover = the first request answered by the runner-up minus the last one answered before the fault, on the
client's monotonic clock. Each fault runs with the defaults (probing on: 0.3 s, 3 misses) and, for crash and link,
with `--no-probe` (lease-only: lease 6 s, renewed every 2 s), interleaved in the same run. The fault comes at a
random phase of the probe and renewal cycles.

`--loss SECONDS`: both speakers up, each node drops 20% of the frames from the other node (nftables `numgen
random` on netdev ingress) for that long; counted: the runner-up's probe takeovers (false: the owner is up), and
how long each lasted (its yield).

`--cost`: probes per second per speaker and LAN frames per second for a simulated 50-node cluster with 1,000
services, computed from the planner (l2core.probing.watches), no packets.

Run:  sudo nice -n -5 .venv/bin/python bench/bench_speaker_probes.py --trials 20 --loss 60 --cost

Only documentation addresses; every loop is bounded in count and time; the namespaces (and every process in them)
are deleted at the end, even on failure.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "speaker"))

from speaker_netns import PYTHON, VIP4, Host, Topology  # noqa: E402
from speaker_web import probe_log, serve_vip_on_lo, start_probe  # noqa: E402

from bench.bench_speaker_failover import API_ADDRESS, add_api_host, kubeconfig, serve_double, status  # noqa: E402

OWNER, RUNNER_UP = "worker-1", "worker-2"
LEASE_DURATION = 6
MAX_TRIAL = 40.0  # seconds a client loop runs at most
DOUBLE_LIFETIME = 3600.0  # seconds the API double lives at most (20 rounds of trials take about half an hour)


def start_speaker(host: Host, node: str, config: Path, log: Path, *extra: str) -> subprocess.Popen[str]:
    argv = [PYTHON, "-m", "l2guard.cli", "speaker", "--node-name", node, "--kubeconfig", str(config)]
    argv += ["--health-address", "127.0.0.1", "--health-port", "7473", "--log-format", "json", *extra]
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        host.cmd(argv), stdout=log.open("w"), stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=env
    )


def metric(host: Host, series: str) -> float:
    out = host.run(["curl", "-s", "--max-time", "2", "http://127.0.0.1:7473/metrics"], check=False, timeout=5)
    m = re.search(rf"^{re.escape(series)} (\S+)$", out, re.M)
    return float(m.group(1)) if m else 0.0


def wait(predicate: object, timeout: float, interval: float = 0.1) -> bool:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


class Bench:
    def __init__(self, topo: Topology, config: Path, tmp: Path) -> None:
        self.topo, self.config, self.tmp = topo, config, tmp
        self.a, self.b, self.client = topo.node_a, topo.node_b, topo.client
        self.servers = {OWNER: serve_vip_on_lo(self.a, OWNER), RUNNER_UP: serve_vip_on_lo(self.b, RUNNER_UP)}

    def server(self, node: str) -> subprocess.Popen[str]:
        proc = self.servers[node]
        if proc.poll() is not None:  # killed in the last trial: start it again (the VIP stays on lo)
            host = self.a if node == OWNER else self.b
            proc = subprocess.Popen(
                host.cmd([PYTHON, "-c", _server_code(), node]), stdout=subprocess.DEVNULL, text=True
            )
            self.servers[node] = proc
        return proc

    def up(self, *extra: str) -> tuple[subprocess.Popen[str], subprocess.Popen[str]]:
        """Both speakers, ready: the owner announces, the runner-up sees both alive and (probing) probes."""
        for node in (OWNER, RUNNER_UP):
            self.server(node)
        self.client.flush_neigh()
        owner = start_speaker(self.a, OWNER, self.config, self.tmp / "owner.log", *extra)
        runner = start_speaker(self.b, RUNNER_UP, self.config, self.tmp / "runner.log", *extra)
        ok = wait(lambda: status(self.b).get("peers_alive") == [OWNER, RUNNER_UP], 60)
        ok = ok and wait(lambda: [x["ip"] for x in status(self.a).get("announced", [])] == [VIP4], 30)  # type: ignore[union-attr]
        if ok and "--no-probe" not in extra:
            ok = wait(lambda: metric(self.b, "l2guard_speaker_probes_sent_total") >= 3, 30)
        if not ok:
            raise RuntimeError(
                "not ready:\n"
                + (self.tmp / "owner.log").read_text()[-2000:]
                + (self.tmp / "runner.log").read_text()[-2000:]
            )
        return owner, runner

    def down(self, *procs: subprocess.Popen[str]) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
        self.a.run(["ip", "link", "set", "eth0", "up"], check=False)

    def trial(self, fault: str, *extra: str) -> float | None:
        owner, runner = self.up(*extra)
        try:
            loop = start_probe(self.client, VIP4, MAX_TRIAL, until=RUNNER_UP, count=20)
            time.sleep(0.8 + random.random() * 0.6)  # served by the owner first; a random phase of the cycles
            t_fault = time.monotonic()
            if fault == "crash":
                owner.kill()
                self.servers[OWNER].kill()
            elif fault == "link":
                self.a.run(["ip", "link", "set", "eth0", "down"])
            else:
                owner.terminate()
                self.servers[OWNER].kill()
            answers = probe_log(loop, timeout=MAX_TRIAL + 20)
        finally:
            self.down(owner, runner)
        before = [t for t, who in answers if who == OWNER and t < t_fault]
        after = [t for t, who in answers if who == RUNNER_UP and t >= t_fault]
        if not before or not after:
            return None
        return after[0] - before[-1]

    def loss(self, seconds: float) -> tuple[int, list[float], int]:
        """(false takeovers, how long each lasted in seconds, probes sent) under 20% loss between the nodes."""
        owner, runner = self.up()
        try:
            sent0 = metric(self.b, "l2guard_speaker_probes_sent_total")
            for host, other in ((self.a, self.b), (self.b, self.a)):
                rules = (
                    "table netdev l2loss {\n  chain in {\n    type filter hook ingress device eth0 priority 0;\n"
                    f"    ether saddr {other.mac} counter\n"
                    f"    ether saddr {other.mac} numgen random mod 100 < 20 counter drop\n  }}\n}}\n"
                )
                res = subprocess.run(host.cmd(["nft", "-f", "-"]), input=rules, text=True, capture_output=True)
                if res.returncode:
                    raise RuntimeError(res.stderr)
            time.sleep(seconds)
            for host in (self.a, self.b):
                listed = host.run(["nft", "list", "table", "netdev", "l2loss"], check=False)
                seen, lost = (int(n) for n in re.findall(r"counter packets (\d+)", listed))
                print(f"loss: {host.ns} dropped {lost} of {seen} frames from the other node", flush=True)
                host.run(["nft", "delete", "table", "netdev", "l2loss"], check=False)
            time.sleep(1.0)  # the last takeover, if any, ends
            sent = int(metric(self.b, "l2guard_speaker_probes_sent_total") - sent0)
        finally:
            self.down(owner, runner)
        events = [
            json.loads(line) for line in (self.tmp / "runner.log").read_text().splitlines() if line.startswith("{")
        ]
        marks = [(e["event"], e["time"]) for e in events if e.get("event") in ("probe-takeover", "probe-yield")]
        durations, started = [], None
        for kind, at in marks:
            t = _seconds(at)
            if kind == "probe-takeover":
                started = t
            elif started is not None:
                durations.append(t - started)
                started = None
        return sum(1 for k, _ in marks if k == "probe-takeover"), durations, sent


def _seconds(stamp: str) -> float:
    """`2026-12-01T16:18:51.961Z` -> seconds (log timestamps, millisecond resolution)."""
    hms = stamp.split("T")[1].rstrip("Z")
    h, m, s = hms.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def _server_code() -> str:
    from speaker_web import SERVER

    return SERVER


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def summary(name: str, xs: list[float], misses: int) -> str:
    if not xs:
        return f"{name}: no successful trial ({misses} without a failover)"
    return (
        f"{name}: n={len(xs)} (+{misses} without a failover), min {min(xs):.3f} s, "
        f"median {statistics.median(xs):.3f} s, p90 {pct(xs, 0.9):.3f} s, p99 {pct(xs, 0.99):.3f} s, "
        f"max {max(xs):.3f} s"
    )


def cost(nodes: int, services: int) -> None:
    """Probes per speaker from the planner for a simulated cluster (no packets)."""
    from bench.webhook_cluster import cluster_documents
    from l2core.model import EligibilitySettings
    from l2core.parse import build_cluster
    from l2core.plan import plan
    from l2core.probing import DEFAULT_PROBE_BUDGET, DEFAULT_PROBE_INTERVAL, probe_period, watches

    interval, budget = DEFAULT_PROBE_INTERVAL, DEFAULT_PROBE_BUDGET
    parsed = build_cluster(cluster_documents(nodes, services))
    p = plan(parsed.cluster, EligibilitySettings())
    owners = [len(watches(p, n)) for n in sorted(parsed.cluster.nodes)]
    periods = [probe_period(n, interval=interval, budget=budget) for n in owners]
    rates = [n / period for n, period in zip(owners, periods, strict=True)]
    announced = sum(1 for sp in p.services.values() if sp.announcer)
    total = sum(rates)
    print(
        f"cost {nodes} nodes x {services} services ({announced} announced; interval {interval} s, budget {budget}/s): "
        f"owners probed per speaker min {min(owners)} / median {statistics.median(owners)} / max {max(owners)}; "
        f"probes/s per speaker median {statistics.median(rates):.1f} / max {max(rates):.1f}; "
        f"probe period median {statistics.median(periods):.2f} s / max {max(periods):.2f} s; "
        f"LAN frames/s, whole cluster: {2 * total:.0f} (probe + answer, unicast; per-IP probing at the interval: "
        f"{2 * announced / interval:.0f}); API writes per speaker unchanged (lease renewals, 0.5/s)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--faults", default="crash,link,sigterm")
    parser.add_argument("--loss", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--cost", action="store_true")
    parser.add_argument("--serve-double", metavar="ADDRESS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_double:
        return serve_double(args.serve_double, lifetime=DOUBLE_LIFETIME)
    if args.cost:
        cost(50, 1000)
        cost(50, 10_000)
    faults = [f for f in args.faults.split(",") if f]
    if not faults and not args.loss:
        return 0
    topo = Topology().build()
    double = None
    try:
        api = add_api_host(topo)
        double = subprocess.Popen(
            api.cmd([PYTHON, str(Path(__file__).resolve()), "--serve-double", API_ADDRESS]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert double.stdout is not None
        ready, _, _ = select.select([double.stdout], [], [], 30)
        if not ready:
            raise RuntimeError("the API double did not start")
        port = json.loads(double.stdout.readline())["port"]
        with tempfile.TemporaryDirectory(prefix="bench-probes-") as name:
            tmp = Path(name)
            bench = Bench(topo, kubeconfig(tmp / "kubeconfig", f"http://{API_ADDRESS}:{port}"), tmp)
            configs = [(f, ()) for f in faults] + [(f, ("--no-probe",)) for f in faults if f != "sigterm"]
            results: dict[str, list[float]] = {}
            failed: dict[str, int] = {}
            for i in range(args.trials):
                for fault, extra in configs:
                    label = f"{fault}{' lease-only' if extra else ''}"
                    took = bench.trial(fault, *extra)
                    shown = "no failover" if took is None else f"{took:.3f} s"
                    print(f"trial {i} {label}: last answer -> first answer by the runner-up: {shown}", flush=True)
                    if took is None:
                        failed[label] = failed.get(label, 0) + 1
                    else:
                        results.setdefault(label, []).append(took)
            for fault, extra in configs:
                label = f"{fault}{' lease-only' if extra else ''}"
                print(summary(label, results.get(label, []), failed.get(label, 0)))
            if args.loss:
                count, durations, sent = bench.loss(args.loss)
                shown = ", ".join(f"{d:.3f}" for d in durations)
                print(
                    f"loss: 20% between the nodes for {args.loss:.0f} s: {sent} probes, {count} false takeovers; "
                    f"each lasted (s): {shown}"
                )
    finally:
        if double is not None:
            if double.stdin is not None:
                double.stdin.close()
            try:
                double.wait(10)
            except subprocess.TimeoutExpired:
                double.kill()
                double.wait(10)
        topo.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
