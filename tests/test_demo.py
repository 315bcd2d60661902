"""`l2guard demo` as CI and a newcomer run it: the whole command in a subprocess, every step asserted from
`--summary-json` (never from screen text), and afterwards no `l2demo-*` namespace and no process of the demo left.

The owner is computed independently (tests/core/election_reference.py, straight from hashlib), the strip patch's
path from RFC 6901 by hand. Figures that are times are only checked against bounds that catch a hang.
"""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.core.election_reference import reference_owner

REPO = Path(__file__).resolve().parents[1]
NODES = ("cp-1", "worker-1")
VIP4 = "192.0.2.100"
EXCLUDE_POINTER = "/metadata/labels/node.kubernetes.io~1exclude-from-external-load-balancers"
ROOT_STEPS = ["setup", "owner", "label-owner", "label-both", "strip", "node-dies"]
NO_ROOT_STEPS = ROOT_STEPS[:-1]
DEMO = [sys.executable, "-m", "l2guard.cli", "demo", "--non-interactive"]
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("L2GUARD_") and k != "NO_COLOR"}
    env.update(extra)
    return env


def demo_namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith("l2demo-")]


def demo_processes() -> list[str]:
    """Command lines of running processes that belong to a demo: its traffic module, or an l2guard command on a
    cluster-state file in a demo's temporary directory."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        line = " ".join(argv)
        if "l2guard.demo" in line or ("l2guard.cli" in line and "/l2demo-" in line):
            found.append(line)
    return found


def assert_all_gone() -> None:
    deadline = time.monotonic() + 5  # SIGKILLed processes are reaped by their parents a moment later
    while demo_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert demo_namespaces() == []
    assert demo_processes() == []


def steps(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in summary["steps"]}


def check_review_steps(by_name: dict[str, dict[str, Any]], owner: str, other: str) -> None:
    """The parts that need no root: the webhook's answers and explain."""
    assert by_name["owner"]["figures"]["owner"] == owner
    moved = by_name["label-owner"]["figures"]
    assert any(owner in w and other in w for w in moved["warnings"]), moved["warnings"]
    both = by_name["label-both"]["figures"]
    assert any("NO announcing node" in w for w in both["warnings"]), both["warnings"]
    assert both["explain_status"] == "nobody" and both["explain_exit"] == 3
    assert any(other in fix and owner in fix for fix in both["fixes"]), both["fixes"]
    strip = by_name["strip"]["figures"]
    assert strip["patch"] == [{"op": "test", "path": EXCLUDE_POINTER, "value": ""},
                              {"op": "remove", "path": EXCLUDE_POINTER}]  # fmt: skip
    assert strip["label_landed"] is False


@pytest.mark.root
def test_the_demo_runs_end_to_end_twice_and_leaves_nothing(tmp_path: Path) -> None:
    owner = reference_owner(NODES, VIP4)
    assert owner is not None
    other = next(n for n in NODES if n != owner)
    # A namespace left by an earlier run that was killed: the demo removes it first.
    subprocess.run(["ip", "netns", "add", "l2demo-client"], check=True)
    for run in (1, 2):
        summary_file = tmp_path / f"summary-{run}.json"
        res = subprocess.run([*DEMO, "--summary-json", str(summary_file)], capture_output=True, text=True,
                             timeout=120, env=clean_env(), cwd=tmp_path, check=False)  # fmt: skip
        summary = json.loads(summary_file.read_text())
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
        assert "\033[" not in res.stdout  # piped: no colour
        assert summary["ok"] is True and summary["root"] is True and summary["owner"] == owner
        assert [s["name"] for s in summary["steps"]] == ROOT_STEPS
        assert all(s["ok"] and s["error"] is None for s in summary["steps"]), summary
        assert summary["seconds"] < 60
        by_name = steps(summary)
        check_review_steps(by_name, owner, other)

        first = by_name["owner"]["figures"]
        assert first["ipv4_served_by"] == owner and first["ipv6_served_by"] == owner

        moved = by_name["label-owner"]["figures"]
        assert moved["served_by_new_owner"] >= 40 and moved["served_by_old_owner"] >= 1
        assert moved["ipv6_served_by"] == other
        assert moved["interruption_ms"] is not None and 0 <= moved["interruption_ms"] < 10_000

        both = by_name["label-both"]["figures"]
        assert both["speakers_logged"] == sorted(NODES)
        assert both["attempts"] > 0 and both["answered"] == 0

        strip = by_name["strip"]["figures"]
        assert strip["attempts"] > 0 and strip["served_by_owner"] == strip["attempts"]

        dies = by_name["node-dies"]["figures"]
        assert dies["served_by_new_owner"] >= 40 and dies["served_by_old_owner"] >= 1
        assert dies["interruption_ms"] is not None and 0 < dies["interruption_ms"] < 10_000
        assert 0 < dies["takeover_after_kill_ms"] < 10_000
        assert_all_gone()


@pytest.mark.root
def test_ctrl_c_cleans_up_namespaces_and_processes(tmp_path: Path) -> None:
    summary_file = tmp_path / "summary.json"
    proc = subprocess.Popen([*DEMO, "--summary-json", str(summary_file)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=clean_env(), cwd=tmp_path)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while "l2demo-client" not in demo_namespaces() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert "l2demo-client" in demo_namespaces()
        time.sleep(1.0)  # the speakers are starting
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted" in err
    summary = json.loads(summary_file.read_text())
    assert summary["ok"] is False and summary["interrupted"] is True
    assert summary["steps"][-1]["ok"] is False and summary["steps"][-1]["error"] == "interrupted"
    assert_all_gone()


@pytest.mark.root
def test_missing_tools_are_named_in_one_line(tmp_path: Path) -> None:
    res = subprocess.run(DEMO, capture_output=True, text=True, timeout=30, env=clean_env(PATH=str(tmp_path)),
                         check=False)  # fmt: skip
    assert res.returncode == 1
    assert res.stderr.splitlines() == [
        "l2guard demo: missing tools: ip (package iproute2), sysctl (package procps) "
        "(on Debian/Ubuntu: apt-get install iproute2 procps)"
    ]
    assert res.stdout == ""


def test_an_unwritable_summary_file_is_a_usage_error_before_anything_starts(tmp_path: Path) -> None:
    target = tmp_path / "missing-dir" / "summary.json"
    res = subprocess.run([*DEMO, "--summary-json", str(target)], capture_output=True, text=True, timeout=30,
                         env=clean_env(), check=False)  # fmt: skip
    assert res.returncode == 2
    assert res.stderr.splitlines() == [
        f"l2guard demo: --summary-json: cannot write {target}: No such file or directory"
    ]
    assert res.stdout == ""


def _world_can_run(path: str) -> bool:
    real = Path(os.path.realpath(path))
    return all(p.stat().st_mode & 0o001 for p in [real, *real.parents])


def unprivileged() -> tuple[list[str], dict[str, str]]:
    """The demo's command line and environment for a user without root: as root, through setpriv as nobody, with
    an interpreter nobody may run (the venv's may live under /root) and this checkout plus the venv's libraries on
    PYTHONPATH; without root, as is."""
    if os.geteuid() != 0:
        return DEMO, clean_env()
    python = (
        sys.executable
        if _world_can_run(sys.executable)
        else f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}"
    )
    assert _world_can_run(python), f"no interpreter that nobody may run: {python}"
    paths = [str(REPO), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    env = clean_env(PYTHONPATH=os.pathsep.join(dict.fromkeys(paths)), HOME="/nonexistent")
    return [*NOBODY, python, *DEMO[1:]], env


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the unprivileged user can write (pytest's tmp_path is under a 0700 directory of root's)."""
    path = Path(tempfile.mkdtemp(prefix="l2guard-test-demo-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_without_root_it_says_so_in_one_line_and_runs_the_webhook_and_explain(shared_dir: Path) -> None:
    tmp_path = shared_dir
    owner = reference_owner(NODES, VIP4)
    assert owner is not None
    other = next(n for n in NODES if n != owner)
    summary_file = tmp_path / "summary.json"
    argv, env = unprivileged()
    res = subprocess.run([*argv, "--summary-json", str(summary_file)], capture_output=True, text=True, timeout=60,
                         env=env, cwd=tmp_path, check=False)  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert res.stdout.splitlines()[0] == (
        "l2guard demo: not root, so no network namespaces (run it with sudo for the whole story); "
        "showing the webhook's answers and explain only"
    )
    summary = json.loads(summary_file.read_text())
    assert summary["ok"] is True and summary["root"] is False and summary["owner"] == owner
    assert [s["name"] for s in summary["steps"]] == NO_ROOT_STEPS
    assert all(s["ok"] for s in summary["steps"])
    by_name = steps(summary)
    check_review_steps(by_name, owner, other)
    assert by_name["label-owner"]["figures"]["announcer_after"] == other
    assert "ipv4_served_by" not in by_name["owner"]["figures"]  # no data plane without root


def run_on_a_terminal(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Run with stdout and stderr on a pseudo-terminal; (exit status, everything written)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, env=env, cwd=cwd)
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the other end closed
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(leader)
    return proc.wait(30), b"".join(chunks).decode(errors="replace")


def test_colour_on_a_terminal_and_none_with_no_color_and_environment_twins_are_ignored(shared_dir: Path) -> None:
    argv, env = unprivileged()
    code, text = run_on_a_terminal(argv, env, shared_dir)
    assert code == 0, text[-2000:]
    assert "\033[1m" in text
    summary_file = shared_dir / "summary.json"
    # L2GUARD_IGNORE_EXCLUDE_LB=true would keep every IP where it is: the demo says it ignores it and runs as usual.
    env.update(NO_COLOR="1", L2GUARD_IGNORE_EXCLUDE_LB="true")
    code, text = run_on_a_terminal([*argv, "--summary-json", str(summary_file)], env, shared_dir)
    assert code == 0, text[-2000:]
    assert "\033[" not in text
    assert "l2guard demo: ignoring L2GUARD_IGNORE_EXCLUDE_LB: the demo runs with the defaults" in text.splitlines()
    summary = json.loads(summary_file.read_text())
    assert all(s["ok"] for s in summary["steps"])
    assert any("NO announcing node" in w for w in steps(summary)["label-both"]["figures"]["warnings"])


def test_the_readme_starts_with_the_demo_then_the_ci_test_command_and_names_the_demos_packages() -> None:
    from l2guard.demo.command import TOOLS

    readme = (REPO / "README.md").read_text()
    block = readme[readme.index("```sh\n") + 6 :]
    first, second = block[: block.index("```")].splitlines()
    assert first == "python3 -m venv .venv && .venv/bin/pip install -q -e . && sudo .venv/bin/l2guard demo"
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert second == ci[ci.index("# The README's test command, word for word:") + 1]
    packages = readme[readme.index("sudo apt-get install") :].split("`")[0].split()
    assert set(TOOLS.values()) <= set(packages) and "python3-venv" in packages
    assert "l2guard explain --sample kubeadm-single-node" in readme  # the way in without root stays documented
