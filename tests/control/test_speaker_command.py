"""`l2guard speaker` in file mode as a real process: settings errors, the health port's /status following edits
of the cluster-state file, a bad edit keeping the last good state, and a clean stop on SIGTERM.

These run in dry-run (no raw sockets, no root); tests/speaker/test_speaker_command_netns.py runs the same command
with the real data plane in network namespaces. Expected owners are literal: for 192.0.2.100 the election order
is cp-1, worker-1, worker-2 (tests/core/test_election.py).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.builders import READY, advertisement, endpoints, excluded, node, pool, service

REPO = Path(__file__).resolve().parents[2]
L2GUARD = [sys.executable, "-m", "l2guard.cli"]
IP = "192.0.2.100"


def state(*nodes: dict[str, Any]) -> str:
    docs = [
        *nodes,
        service("web", [IP]),
        endpoints("web", {"worker-1": READY}),
        pool("lan", "192.0.2.0/24"),
        advertisement("l2", ipAddressPools=["lan"]),
    ]
    return "\n---\n".join(json.dumps(d) for d in docs) + "\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("L2GUARD_")}
    env.update(extra)
    return env


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*L2GUARD, "speaker", *args], capture_output=True, text=True, timeout=60, env=clean_env(**env), cwd=REPO
    )


class Running:
    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc, self.port = proc, port

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=5)

    def status(self) -> dict[str, Any]:
        doc: dict[str, Any] = self.get("/status").json()
        return doc

    def announced(self) -> list[str]:
        return [a["ip"] for a in self.status()["announced"]]

    def wait(self, predicate: Any, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if predicate():
                    return True
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                return False
            time.sleep(0.05)
        return False


@pytest.fixture
def speaker(tmp_path: Path) -> Iterator[Any]:
    procs: list[subprocess.Popen[str]] = []

    def start(name: str, path: Path, *extra: str) -> Running:
        port = free_port()
        argv = [*L2GUARD, "speaker", "--dry-run", "--node-name", name, "--cluster-state", str(path)]
        argv += ["--health-address", "127.0.0.1", "--health-port", str(port), "--poll-interval", "0.1", *extra]
        log = (tmp_path / f"{name}.log").open("w")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, text=True, env=clean_env(), cwd=REPO)
        procs.append(proc)
        running = Running(proc, port)
        assert running.wait(lambda: running.get("/readyz").status_code == 200), (tmp_path / f"{name}.log").read_text()
        return running

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_settings_problems_are_one_line_each_and_exit_2(tmp_path: Path) -> None:
    missing = run("--cluster-state", str(tmp_path / "nope.yaml"), "--node-name", "cp-1", "--dry-run")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.startswith("l2guard speaker: cannot read the cluster state: ")
    f = tmp_path / "state.yaml"
    f.write_text(state(node("cp-1")))
    no_node = run("--cluster-state", str(f), "--dry-run")
    assert no_node.returncode == 2
    assert no_node.stderr == (
        "l2guard speaker: --node-name is required (L2GUARD_NODE_NAME; in the DaemonSet from spec.nodeName)\n"
    )
    bad = run("--cluster-state", str(f), "--node-name", "cp-1", "--health-port", "99999", "--lease-duration", "2")
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 2, bad.stderr
    assert "--health-port" in bad.stderr and "--lease-renew-interval must be shorter" in bad.stderr
    env_twin = run("--cluster-state", str(f), "--dry-run", L2GUARD_NODE_NAME="cp-1", L2GUARD_LABEL_SEMANTICS="maybe")
    assert env_twin.returncode == 2 and "L2GUARD_LABEL_SEMANTICS" in env_twin.stderr
    regex = run("--cluster-state", str(f), "--node-name", "cp-1", "--dry-run", "--exclude-interfaces", "veth(")
    assert regex.returncode == 2 and regex.stderr.startswith(
        "l2guard speaker: --exclude-interfaces is not a regular expression: missing ), unterminated subpattern"
    ), regex.stderr
    endless = run("--cluster-state", "/dev/zero", "--node-name", "cp-1", "--dry-run")
    assert endless.returncode == 2
    assert endless.stderr == "l2guard speaker: cannot read the cluster state: /dev/zero: larger than 64 MiB; refused\n"
    unknown = run("--cluster-state", str(f), "--node-name", "cp-1", "--dry-run", "--alive", "cp-1,ghost")
    assert unknown.returncode == 2 and "ghost" in unknown.stderr


@pytest.mark.parametrize(
    ("argv", "environ"),
    [
        (["--refresh-interval", "2"], {}),
        (["--refresh-interval", "inf"], {}),
        ([], {"L2GUARD_REFRESH_INTERVAL": "7200"}),
    ],
)
def test_a_refresh_interval_out_of_bounds_is_refused_in_one_line(
    tmp_path: Path, argv: list[str], environ: dict[str, str]
) -> None:
    f = tmp_path / "state.yaml"
    f.write_text(state(node("cp-1")))
    res = run("--cluster-state", str(f), "--node-name", "cp-1", "--dry-run", *argv, **environ)
    assert (res.returncode, res.stderr) == (
        2,
        "l2guard speaker: --refresh-interval must be 0 (off) or between 5 and 3600 seconds\n",
    )


def test_status_follows_the_file_and_a_bad_edit_keeps_the_last_good_state(speaker: Any, tmp_path: Path) -> None:
    f = tmp_path / "state.yaml"
    f.write_text(state(node("cp-1"), node("worker-1"), node("worker-2")))
    cp1, worker1 = speaker("cp-1", f), speaker("worker-1", f)
    assert cp1.wait(lambda: cp1.announced() == [IP]) and worker1.announced() == []
    status = cp1.status()
    assert status["node"] == "cp-1" and status["dry_run"] is True
    f.write_text(state(excluded("cp-1"), node("worker-1"), node("worker-2")))
    assert worker1.wait(lambda: worker1.announced() == [IP])
    assert cp1.wait(lambda: cp1.announced() == [])
    f.write_text("kind: [unclosed\n")  # a bad edit: both keep what they had
    time.sleep(0.5)
    assert worker1.announced() == [IP] and cp1.announced() == []
    assert worker1.get("/healthz").status_code == 200
    worker1.proc.send_signal(signal.SIGTERM)
    assert worker1.proc.wait(15) == 0
    log = (tmp_path / "worker-1.log").read_text()
    assert "Traceback" not in log
    events = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert any(e.get("event") == "cluster-state-stale" for e in events), log
    assert [e["msg"] for e in events if e.get("event") == "service-event"] == [
        "event on default/web: announcing 192.0.2.100 from node worker-1 on all interfaces"
    ]
