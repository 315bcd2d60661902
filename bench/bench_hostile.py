"""Benchmark of the webhook on the hostile reviews of issue 7 (item 2): answer latency per input and `/healthz`
latency meanwhile, against a normal small review and an idle `/healthz`, all measured in this one process.

    .venv/bin/python bench/bench_hostile.py [--repeat 30] [--out FILE]

What it does (all traffic to 127.0.0.1, every loop bounded in count and time, only its own process ended):
1. Makes a throwaway CA and server certificate (bench_webhook.make_pki), writes the captured test cluster as a
   cluster-state file, and starts `python -m webhook --cluster-state ...` (one uvicorn worker, uvloop + httptools).
2. Measures `/healthz` on an idle server (plain HTTP, one keep-alive connection, every 20 ms for 3 s).
3. Sends, over one keep-alive HTTPS connection with the API server's `?timeout=3s`, first the baseline (the
   captured `ipaddresspool-create`, a normal small review), then each hostile review of tests/webhook/hostile.py,
   `--repeat` times each (after 2 unmeasured warm-up requests), while a thread polls `/healthz` every 20 ms on its
   own connection.
4. Prints a Markdown table: p50/p99/max answer latency (target p99 <= 50 ms), ratio of p99 to the baseline's p99,
   `/healthz` p50/p99 during each input next to the idle figures, the answer given, and the server's peak RSS
   (VmHWM) growth over what it had after the baseline.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.client import HTTPConnection, HTTPSConnection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_webhook import fmt, make_pki, start_webhook, stop  # noqa: E402
from tests.webhook.hostile import HOSTILE  # noqa: E402

API = ROOT / "tests" / "data" / "api"
ADMISSION = ROOT / "tests" / "data" / "admission"
API_LISTS = ["list-nodes", "list-services", "list-endpointslices", "list-ipaddresspools", "list-l2advertisements"]
POOL_PATH = "/validate-metallb-io-v1beta1-ipaddresspool?timeout=3s"
AD_PATH = "/validate-metallb-io-v1beta1-l2advertisement?timeout=3s"
HEALTH_INTERVAL = 0.02


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class HealthPoller:
    """Polls /healthz every 20 ms on one keep-alive connection while running; records each latency in ms."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        conn = HTTPConnection("127.0.0.1", self.port, timeout=30)
        deadline = time.monotonic() + 600  # a bound on the loop itself
        while not self._stop.is_set() and time.monotonic() < deadline:
            began = time.perf_counter()
            conn.request("GET", "/healthz")
            resp = conn.getresponse()
            resp.read()
            self.latencies.append((time.perf_counter() - began) * 1000)
            if resp.status != 200:
                raise SystemExit(f"bench: /healthz answered {resp.status}")
            self._stop.wait(HEALTH_INTERVAL)
        conn.close()

    def __enter__(self) -> HealthPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)


def post_many(conn: HTTPSConnection, path: str, body: bytes, count: int) -> tuple[list[float], dict[str, Any]]:
    """`count` POSTs on one keep-alive connection; latencies in ms and the last answer's `response`."""
    headers = {"Content-Type": "application/json"}
    latencies: list[float] = []
    response: dict[str, Any] = {}
    for _ in range(count):
        began = time.perf_counter()
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        latencies.append((time.perf_counter() - began) * 1000)
        if resp.status != 200:
            raise SystemExit(f"bench: {path} answered HTTP {resp.status}: {data[:200]!r}")
        response = json.loads(data)["response"]
    return latencies, response


def answer_of(response: dict[str, Any]) -> str:
    if response.get("allowed"):
        return "allowed" + (" with warnings" if response.get("warnings") else "")
    message = str(response.get("status", {}).get("message", ""))
    return "denied (too slow)" if "took too long" in message else "denied"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30, help="measured requests per hostile input (baseline: 200)")
    parser.add_argument("--out", help="also write the Markdown table to this file")
    args = parser.parse_args()
    repeat = max(3, min(args.repeat, 1000))

    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp_name:
        tmp = Path(tmp_name)
        ca, cert, key = make_pki(tmp)
        state = tmp / "state.json"
        items = [json.loads((API / f"{n}.json").read_text()) for n in API_LISTS]
        state.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
        proc, port, log = start_webhook(tmp, state, cert, key)
        try:
            health_port = next(
                json.loads(line)["health_port"]
                for line in log.read_text().splitlines()
                if line.startswith("{") and json.loads(line).get("event") == "start"
            )
            import ssl

            conn = HTTPSConnection("127.0.0.1", port, context=ssl.create_default_context(cafile=str(ca)), timeout=30)
            with HealthPoller(health_port) as idle:
                time.sleep(3)
            baseline_body = json.dumps(json.loads((ADMISSION / "ipaddresspool-create.json").read_text())["review"])
            cases: list[tuple[str, Callable[[], dict[str, Any]] | None]] = [("baseline", None), *HOSTILE.items()]
            rows = []
            hwm_base = 0.0
            for name, build in cases:
                review = json.loads(baseline_body) if build is None else build()
                body = json.dumps(review).encode()
                path = POOL_PATH if review["request"]["kind"]["kind"] == "IPAddressPool" else AD_PATH
                post_many(conn, path, body, 2)  # warm-up
                with HealthPoller(health_port) as during:
                    latencies, response = post_many(conn, path, body, 200 if build is None else repeat)
                if build is None:
                    hwm_base = vm_hwm_mb(proc.pid)
                rows.append((name, len(body), latencies, during.latencies, answer_of(response), vm_hwm_mb(proc.pid)))
                print(f"bench: {name} done", file=sys.stderr)
            conn.close()
        finally:
            stop(proc)

    base_p99 = percentile(rows[0][2], 99)
    idle_p50, idle_p99 = percentile(idle.latencies, 50), percentile(idle.latencies, 99)
    lines = [
        f"idle /healthz: p50 {fmt(idle_p50)} ms, p99 {fmt(idle_p99)} ms ({len(idle.latencies)} polls); "
        f"{repeat} requests per hostile input, 200 for the baseline",
        "",
        "| input | body | answer | p50 ms | p99 ms | max ms | p99 ratio | /healthz p50 / p99 ms meanwhile "
        "| peak RSS growth |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, size, latencies, health, answer, hwm in rows:
        p99 = percentile(latencies, 99)
        lines.append(
            f"| {name} | {size / 1024:,.0f} KB | {answer} | {fmt(percentile(latencies, 50))} | {fmt(p99)} "
            f"| {fmt(max(latencies))} | {p99 / base_p99:,.1f} | {fmt(percentile(health, 50))} / "
            f"{fmt(percentile(health, 99))} | {fmt(hwm - hwm_base, 0)} MB |"
        )
    report = "\n".join(lines)
    print(report)
    if args.out:
        Path(args.out).write_text(report + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
