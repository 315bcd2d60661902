"""Speaker control-plane benchmark with `l2guard speaker` processes in live mode against the API double
(tests/webhook/apidouble.py: no kube-apiserver can run here), through a real kubeconfig and the real kubernetes
client. Dry-run (no packets); the network-namespace failover with the real data plane is bench_speaker_failover.py.

Run:  .venv/bin/python bench/bench_speaker_live.py [--seconds 20] [--trials 3] [--only api-load,memory,failover]
      .venv/bin/python bench/bench_speaker_live.py --only failover-big

- api-load: two speakers (worker-1 owns 192.0.2.100, worker-2 owns nothing) with the default lease (6 s, renewed
  every 2 s) on the captured 3-node cluster; after both are ready and the owner's first Event, every request to
  the double is counted for --seconds. Baseline: the configured renewal rate, 1 / 2 s = 0.5 writes/s per speaker.
- memory: one speaker's RSS (VmRSS, VmHWM from /proc) once ready with 500 nodes and 10,000 LoadBalancer services
  listed (bench/webhook_cluster.py's cluster served as the double's list bodies) and the 499 other speakers'
  Leases (so it owns its share, ~20 IPs), then the same with no other Lease (it owns all 10,000 IPs and posts
  an Event for each); baseline in the same run: the same speaker on the captured 3-node cluster.
- failover: worker-1 and worker-2 with the default lease; the owner gets SIGKILL (or SIGTERM) at T0, and the
  runner-up's /status is polled every 10 ms until it announces the IP. Targets: SIGKILL <= lease + 1 s = 7 s,
  SIGTERM <= 1 s. The handover is also read from /status's "since" of the runner-up's announcement.
- failover-big (not in the default run: minutes): the same with 500 nodes and 10,000 services, node-000 and the
  runner-up of its first IP as the two speakers, the 498 others' Leases held in the double.

Only 127.0.0.1. Every wait is bounded (readiness 60 s, handover 30 s, the whole run by the trial count); every
process started here is ended here, by its PID.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.webhook_cluster import cluster_documents  # noqa: E402
from tests.control.test_speaker_command import clean_env, free_port  # noqa: E402
from tests.control.test_speaker_live import kubeconfig  # noqa: E402
from tests.kube.scripts import ADS, LEASES, NODES, POOLS, SERVICES, SLICES, scripts, speaker_lease  # noqa: E402
from tests.webhook.apidouble import APIDouble, Reply, list_reply, watch_reply  # noqa: E402

PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable
VIP = "192.0.2.100"
LEASE_DURATION, RENEW_INTERVAL = 6, 2.0  # the defaults (issue 8, part 3)
WRITES = ("POST", "PUT", "PATCH", "DELETE")


Seen = list[tuple[float, str, str]]


def instrumented(double: APIDouble) -> Seen:
    """Record every request the double receives, scripted or stored: (monotonic time, method, path); and say
    `Connection: close` on every answer. The double closes the connection after each answer it ends; unannounced,
    urllib3 reuses the dead connection for the next request, which fails (RemoteDisconnected), and a single such
    failure judges the speaker cut off (fail-static, liveness frozen): the speakers then flap in and out of
    fail-static and a killed owner is never judged dead (docs/benchmarks.md). The double now says it on its watch
    answers; this says it on all of them."""
    seen: Seen = []
    base = double.httpd.RequestHandlerClass

    class Counted(base):  # type: ignore[misc, valid-type]
        def end_headers(self) -> None:
            self.send_header("Connection", "close")
            super().end_headers()

        def handle_one_request(self) -> None:
            self.raw_requestline = b""
            super().handle_one_request()
            if self.raw_requestline:
                parts = self.raw_requestline.decode("latin-1").split()
                if len(parts) >= 2:
                    seen.append((time.monotonic(), parts[0], parts[1].split("?")[0]))

    double.httpd.RequestHandlerClass = Counted
    return seen


def captured_double() -> tuple[APIDouble, Seen]:
    """The captured lists with quiet watches (as tests/control/test_speaker_live.py); Leases and Events stored."""
    script = scripts()
    script[(NODES, False)] = [list_reply("list-nodes.json")]
    script[(NODES, True)] = [watch_reply()]
    del script[(LEASES, False)], script[(LEASES, True)]
    double = APIDouble(script)
    return double, instrumented(double)


def big_double(nodes: int, services: int, *, peers: bool) -> tuple[APIDouble, Seen]:
    """The 500-node, 10,000-service cluster as the double's list bodies (the captured lists' envelopes); with
    `peers`, every other node's speaker Lease stored too (alive for an hour), so that node-000 wins its share."""
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for doc in cluster_documents(nodes, services):
        doc = dict(doc)
        kind = doc.pop("kind")
        doc.pop("apiVersion")
        doc["metadata"] = {**doc["metadata"], "resourceVersion": "7", "uid": f"uid-{len(by_kind.get(kind, ()))}"}
        by_kind.setdefault(kind, []).append(doc)
    files = {
        NODES: ("list-nodes.json", "Node"),
        SERVICES: ("list-services.json", "Service"),
        SLICES: ("list-endpointslices.json", "EndpointSlice"),
        POOLS: ("list-ipaddresspools.json", "IPAddressPool"),
        ADS: ("list-l2advertisements.json", "L2Advertisement"),
    }
    script: dict[tuple[str, bool], list[Reply]] = {}
    for path, (name, kind) in files.items():
        body = json.loads((ROOT / "tests" / "data" / "api" / name).read_text())
        body["items"] = by_kind[kind]
        body["metadata"] = {"resourceVersion": "9"}
        script[(path, False)] = [Reply(body=json.dumps(body).encode())]
        script[(path, True)] = [watch_reply(hold=5.0)]
    double = APIDouble(script)
    if peers:
        for i in range(1, nodes):
            lease = speaker_lease(f"node-{i:03}", "900", duration=3600)
            double.store.objects[f"{LEASES}/{lease['metadata']['name']}"] = lease
    return double, instrumented(double)


class Speaker:
    def __init__(self, tmp: Path, double: APIDouble, node: str, *extra: str) -> None:
        self.node = node
        self.port = free_port()
        self.log = tmp / f"{node}.log"
        argv = [PYTHON, "-m", "l2guard.cli", "speaker", "--dry-run", "--node-name", node]
        argv += ["--kubeconfig", str(kubeconfig(tmp, double.url)), "--health-address", "127.0.0.1"]
        argv += ["--health-port", str(self.port), "--log-format", "json", *extra]
        self.proc = subprocess.Popen(
            argv, stdout=self.log.open("w"), stderr=subprocess.STDOUT, text=True, env=clean_env(), cwd=ROOT
        )

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=5)

    def announced(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = self.get("/status").json()["announced"]
        return out

    def wait(self, predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if predicate():
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(interval)
        return False

    def ready(self, timeout: float = 60.0) -> None:
        if not self.wait(lambda: self.get("/readyz").status_code == 200, timeout):
            raise RuntimeError(f"{self.node} not ready:\n{self.log.read_text()[-3000:]}")

    def memory(self) -> dict[str, int]:
        fields = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) // 1024  # kB -> MiB
        return fields

    def end(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def api_load(tmp: Path, seconds: float) -> None:
    print(f"\n== API load: two speakers, default lease ({LEASE_DURATION} s, renewed every {RENEW_INTERVAL} s)")
    double, seen = captured_double()
    with double:
        speakers = [Speaker(tmp, double, "worker-1"), Speaker(tmp, double, "worker-2")]
        try:
            for s in speakers:
                s.ready()
            owner = speakers[0]
            if not owner.wait(lambda: [a["ip"] for a in owner.announced()] == [VIP], 30):
                raise RuntimeError("worker-1 does not announce " + VIP)
            events_path = "/api/v1/namespaces/default/events"
            if not owner.wait(lambda: any(p.startswith(events_path) for p in double.store.objects), 30):
                raise RuntimeError("no Event posted")
            time.sleep(RENEW_INTERVAL)  # past the first renewals
            start, n0, c0 = time.monotonic(), len(seen), len(double.store.changes)
            time.sleep(seconds)
            window = [r for r in seen[n0:] if r[0] <= start + seconds]
            changes = double.store.changes[c0:]
        finally:
            for s in speakers:
                s.end()
    writes = Counter((m, p) for _, m, p in window if m in WRITES)
    reads = Counter(p for _, m, p in window if m == "GET")
    print(f"window {seconds:.0f} s; {len(window)} requests: {sum(writes.values())} writes, {sum(reads.values())} reads")
    for (method, path), n in sorted(writes.items()):
        rate = n / seconds
        print(f"  write {method:6s} {path}: {n} = {rate:.3f}/s ({rate * RENEW_INTERVAL:.2f} x 1/interval)")
    events = [c for c in changes if "/events" in c[1]]
    print(f"  Events created or updated in the window: {len(events)}")
    print("  reads by path (the double ends a quiet watch after 0.3 s, stored-object watches after 5 s):")
    for path, n in sorted(reads.items()):
        print(f"    {path}: {n} = {n / seconds:.2f}/s")


def memory(tmp: Path) -> None:
    print("\n== memory: one speaker (dry-run, live), RSS once ready")
    rows = []
    for label, make, node in (
        ("baseline: captured 3 nodes, 1 service", captured_double, "worker-1"),
        ("500 nodes, 10,000 services, 500 Leases", lambda: big_double(500, 10_000, peers=True), "node-000"),
        ("same, no peer alive: it owns every IP", lambda: big_double(500, 10_000, peers=False), "node-000"),
    ):
        double, _ = make()
        with double:
            s = Speaker(tmp, double, node)
            try:
                t0 = time.monotonic()
                s.ready(120)
                ready_s = time.monotonic() - t0
                time.sleep(3)  # the first reconcile and Events done
                mem = s.memory()
                status = s.get("/status").json()
            finally:
                s.end()
        rows.append((label, mem, ready_s, len(status["announced"])))
    base = rows[0][1]["VmRSS"]
    for label, mem, ready_s, announced in rows:
        print(
            f"  {label:40s} VmRSS {mem['VmRSS']:4d} MiB  VmHWM {mem['VmHWM']:4d} MiB  ({mem['VmRSS'] / base:.2f} x "
            f"baseline)  ready after {ready_s:.1f} s, announces {announced}"
        )


def iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def handover(tmp: Path, sig: signal.Signals, phase: float) -> tuple[float, float] | None:
    """Seconds from the owner's signal to the runner-up announcing the IP: (polled, from its /status "since")."""
    double, _ = captured_double()
    with double:
        owner, runner = Speaker(tmp, double, "worker-1"), Speaker(tmp, double, "worker-2")
        try:
            owner.ready()
            runner.ready()
            if not runner.wait(lambda: runner.get("/status").json()["peers_alive"] == ["worker-1", "worker-2"], 30):
                raise RuntimeError("the runner-up does not see both speakers alive")
            if not owner.wait(lambda: [a["ip"] for a in owner.announced()] == [VIP], 30):
                raise RuntimeError("worker-1 does not announce " + VIP)
            time.sleep(phase)
            t0_wall, t0 = time.time(), time.monotonic()
            owner.proc.send_signal(sig)
            if not runner.wait(lambda: bool(runner.announced()), 30, interval=0.01):
                return None
            return time.monotonic() - t0, iso(runner.announced()[0]["since"]) - t0_wall
        finally:
            owner.end()
            runner.end()


def failover(tmp: Path, trials: int) -> None:
    print(f"\n== failover on /status: default lease {LEASE_DURATION} s, renewed every {RENEW_INTERVAL} s")
    results: dict[str, list[tuple[float, float]]] = {"SIGKILL": [], "SIGTERM": []}
    for trial in range(trials):
        for sig in (signal.SIGKILL, signal.SIGTERM):
            # Signal at a different phase of the renewal cycle in each trial, spread over the 2 s interval.
            took = handover(tmp, sig, (trial * 0.7) % RENEW_INTERVAL)
            if took is None:
                print(f"  {sig.name} trial {trial}: no handover within 30 s")
                continue
            results[sig.name].append(took)
            print(f"  {sig.name} trial {trial}: runner-up announces after {took[0]:.3f} s (its since: {took[1]:.3f} s)")
    for name, xs in results.items():
        if xs:
            polled = [x[0] for x in xs]
            print(
                f"  {name}: median {statistics.median(polled):.3f} s, max {max(polled):.3f} s over {len(xs)} trials; "
                f"median / lease duration {statistics.median(polled) / LEASE_DURATION:.2f}"
            )


def big_handover(tmp: Path, sig: signal.Signals) -> None:
    """The same at scale: node-000 and the runner-up of its first IP (ranked with hashlib, as
    tests/core/election_reference.py does) among 500 nodes with 10,000 services, the other 498 speakers' Leases
    held in the double. Seconds from the signal to the runner-up announcing that IP (its /status "since")."""
    double, _ = big_double(500, 10_000, peers=True)
    with double:
        owner = Speaker(tmp, double, "node-000")
        runner = None
        try:
            owner.ready(180)
            if not owner.wait(lambda: bool(owner.announced()), 120):
                raise RuntimeError("node-000 announces nothing")
            ip = owner.announced()[0]["ip"]
            second = ranked([f"node-{i:03}" for i in range(500)], ip)[1]
            runner = Speaker(tmp, double, second)
            runner.ready(180)
            time.sleep(5)  # its first plans done
            t0_wall, t0 = time.time(), time.monotonic()
            owner.proc.send_signal(sig)
            if not runner.wait(lambda: any(a["ip"] == ip for a in runner.announced()), 120, interval=0.05):
                print(f"  {sig.name}, 500 nodes: {second} does not announce {ip} within 120 s")
                return
            polled = time.monotonic() - t0
            mine = [a for a in runner.announced() if a["ip"] == ip]
            since = iso(mine[0]["since"]) - t0_wall
            print(f"  {sig.name}, 500 nodes / 10,000 services: {second} announces {ip} after {since:.3f} s (polled:")
            print(f"    {polled:.3f} s); {since / LEASE_DURATION:.2f} x the lease duration")
        finally:
            owner.end()
            if runner is not None:
                runner.end()


def ranked(nodes: list[str], ip: str) -> list[str]:
    return sorted(nodes, key=lambda n: hashlib.sha256(f"{n}#{ip}".encode()).digest())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--only", default="api-load,memory,failover")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    with tempfile.TemporaryDirectory(prefix="bench-speaker-") as tmp:
        if "api-load" in parts:
            api_load(Path(tmp), args.seconds)
        if "memory" in parts:
            memory(Path(tmp))
        if "failover" in parts:
            failover(Path(tmp), args.trials)
        if "failover-big" in parts:
            print("\n== failover at scale on /status: default lease, 500 nodes, 10,000 services")
            for sig in (signal.SIGTERM, signal.SIGKILL):
                big_handover(Path(tmp), sig)
    return 0


if __name__ == "__main__":
    sys.exit(main())
