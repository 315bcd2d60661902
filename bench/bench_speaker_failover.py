"""Speaker failover in network namespaces with the real data plane (run as root): two `l2guard speaker` processes
in live mode, one per node namespace, against the API double running in a namespace of its own on the same
bridge; the owner gets SIGKILL or SIGTERM, and the time to the new owner's first gratuitous ARP on the client's
link is read from a capture.

Run:  sudo .venv/bin/python bench/bench_speaker_failover.py [--trials 3]

Topology: tests/speaker/speaker_netns.py (client, node-a, node-b on a snooping bridge) plus one more namespace,
"api", on the bridge at 192.0.2.2, where this script runs itself again with --serve-double (the double of
tests/webhook/apidouble.py with the captured cluster, bound to 192.0.2.2, as bench_speaker_live.py shapes it).
node-a runs the speaker of worker-1 (the captured cluster's owner of 192.0.2.100), node-b that of worker-2 (the
runner-up), with the default lease (6 s, renewed every 2 s). T0 is the wall clock just before the signal;
tcpdump's timestamps on the client's eth0 are on the same clock. Targets (issue 8): SIGKILL -> first gratuitous
ARP from node-b <= lease duration + 1 s = 7 s; SIGTERM <= 1 s. Baseline in the same run: the lease duration.

Only documentation addresses; every wait is bounded; the namespaces (and every process in them) are deleted at
the end, even on failure.
"""

from __future__ import annotations

import argparse
import json
import select
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "speaker"))

from speaker_netns import PYTHON, VIP4, Capture, Host, Topology, sh  # noqa: E402

API_ADDRESS, API_MAC = "192.0.2.2", "02:00:00:00:0d:01"
LEASE_DURATION, RENEW_INTERVAL = 6, 2.0  # the defaults (issue 8, part 3)
MAX_LIFETIME = 900.0  # seconds: the double process ends on its own after this, whatever happens


def serve_double(host: str, *, lifetime: float = MAX_LIFETIME) -> int:
    """Inside the api namespace: the captured double bound to `host`; prints its port; ends on stdin EOF (or after
    `lifetime` seconds)."""
    from bench.bench_speaker_live import captured_double

    double, _ = captured_double()
    handler = double.httpd.RequestHandlerClass
    double.httpd.server_close()
    double.httpd = ThreadingHTTPServer((host, 0), handler)
    double.httpd.daemon_threads = True
    double.port = double.httpd.server_address[1]
    double.thread = threading.Thread(target=double.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    with double:
        print(json.dumps({"port": double.port}), flush=True)
        select.select([sys.stdin], [], [], lifetime)
    return 0


def add_api_host(topo: Topology) -> Host:
    """One more namespace on the bridge, like speaker_netns.Topology's hosts (its veth end in the bridge is papi)."""
    ns = f"l2api-{topo.suffix}"
    sh(["ip", "netns", "add", ns])
    topo.created.append(ns)
    sh(["ip", "-n", ns, "link", "set", "lo", "up"])
    sh(["ip", "-n", topo.br, "link", "add", "papi", "type", "veth", "peer", "name", "eth0", "netns", ns])
    sh(["ip", "-n", ns, "link", "set", "eth0", "address", API_MAC])
    sh(["ip", "-n", ns, "addr", "add", f"{API_ADDRESS}/24", "dev", "eth0"])
    sh(["ip", "-n", topo.br, "link", "set", "papi", "master", "br0"])
    sh(["ip", "-n", topo.br, "link", "set", "papi", "up"])
    sh(["ip", "-n", ns, "link", "set", "eth0", "up"])
    return Host(ns, API_MAC, API_ADDRESS, "", "papi")


def kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: double\n"
        f"clusters:\n- name: double\n  cluster:\n    server: {server}\n"
        "users:\n- name: me\n  user:\n    token: not-a-secret\n"
        "contexts:\n- name: double\n  context:\n    cluster: double\n    user: me\n"
    )
    return path


def start_speaker(host: Host, node: str, config: Path, log: Path) -> subprocess.Popen[str]:
    argv = [PYTHON, "-m", "l2guard.cli", "speaker", "--node-name", node, "--kubeconfig", str(config)]
    argv += ["--health-address", "127.0.0.1", "--health-port", "7473", "--log-format", "json"]
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        host.cmd(argv), stdout=log.open("w"), stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=env
    )


def status(host: Host) -> dict[str, object]:
    out = host.run(["curl", "-s", "--max-time", "2", "http://127.0.0.1:7473/status"], check=False, timeout=5)
    try:
        doc: dict[str, object] = json.loads(out)
    except ValueError:
        return {}
    return doc


def wait(predicate: object, timeout: float, interval: float = 0.1) -> bool:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def garps(frames: list[tuple[bytes, float]], mac: str) -> list[float]:
    """Timestamps of gratuitous ARPs for the VIP (sender IP = target IP = VIP) sent from `mac`."""
    vip = bytes(int(x) for x in VIP4.split("."))
    src = bytes.fromhex(mac.replace(":", ""))
    out = []
    for frame, at in frames:
        if len(frame) < 42 or frame[12:14] != b"\x08\x06" or frame[6:12] != src:
            continue
        (op,) = struct.unpack("!H", frame[20:22])
        if op in (1, 2) and frame[28:32] == vip and frame[38:42] == vip:
            out.append(at)
    return out


def trial(topo: Topology, config: Path, tmp: Path, sig: signal.Signals, phase: float) -> float | None:
    a, b, client = topo.node_a, topo.node_b, topo.client
    logs = {"worker-1": tmp / "worker-1.log", "worker-2": tmp / "worker-2.log"}
    owner = start_speaker(a, "worker-1", config, logs["worker-1"])
    runner = start_speaker(b, "worker-2", config, logs["worker-2"])
    try:
        if not wait(lambda: status(b).get("peers_alive") == ["worker-1", "worker-2"], 60):
            raise RuntimeError("runner-up not ready:\n" + logs["worker-2"].read_text()[-3000:])
        if not wait(lambda: [x["ip"] for x in status(a).get("announced", [])] == [VIP4], 30):  # type: ignore[union-attr]
            raise RuntimeError("owner does not announce:\n" + logs["worker-1"].read_text()[-3000:])
        if status(b).get("announced"):
            raise RuntimeError("the runner-up announces before the owner stops")
        capture = Capture(client, tmp / "failover.pcap", "arp")
        try:
            time.sleep(0.5 + phase)  # past the owner's takeover burst; signal at a phase of the renewal cycle
            t0 = time.time()
            owner.send_signal(sig)
            wait(lambda: bool(status(b).get("announced")), LEASE_DURATION + 10, interval=0.05)
            time.sleep(0.3)
        finally:
            frames = capture.stop()
        first = [t - t0 for t in garps(frames, b.mac) if t >= t0]
        return first[0] if first else None
    finally:
        for proc in (owner, runner):
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--serve-double", metavar="ADDRESS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_double:
        return serve_double(args.serve_double)
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
        results: dict[str, list[float]] = {"SIGKILL": [], "SIGTERM": []}
        with tempfile.TemporaryDirectory(prefix="bench-failover-") as name:
            tmp = Path(name)
            config = kubeconfig(tmp / "kubeconfig", f"http://{API_ADDRESS}:{port}")
            for i in range(args.trials):
                for sig in (signal.SIGKILL, signal.SIGTERM):
                    took = trial(topo, config, tmp, sig, (i * 0.7) % RENEW_INTERVAL)
                    shown = "no gratuitous ARP from node-b" if took is None else f"{took:.3f} s"
                    print(f"{sig.name} trial {i}: signal -> node-b's first gratuitous ARP: {shown}", flush=True)
                    if took is not None:
                        results[sig.name].append(took)
        for name, xs in results.items():
            if xs:
                med = statistics.median(xs)
                print(
                    f"{name}: median {med:.3f} s, max {max(xs):.3f} s over {len(xs)} trials; "
                    f"median / lease duration ({LEASE_DURATION} s) {med / LEASE_DURATION:.2f}"
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
