"""The root tests' preflight names a missing tool and its package instead of failing on `assert None == '02:...'`
(issue 7, item 6).

Each check runs a root test in a child pytest whose PATH holds every program of ours but one tool (links to each
executable on our PATH, minus that name), which is how a CI image without the package looks.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
NDISC6_TEST = "tests/speaker/test_speaker_netns.py::test_ndisc6_gets_node_a_mac_from_an_na_sourced_from_the_vip"
ARPING_TEST = (
    "tests/speaker/test_speaker_netns.py::test_arping_gets_node_a_mac_for_broadcast_and_unicast_follow_up_probes"
)


def path_without(tmp_path: Path, *tools: str) -> str:
    """A PATH of one directory linking to every executable on this PATH, except `tools`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for d in os.environ.get("PATH", "").split(os.pathsep):
        if not d or not os.path.isdir(d):
            continue
        for entry in os.scandir(d):
            target = bin_dir / entry.name
            if entry.name in tools or target.exists() or target.is_symlink():
                continue  # first one on PATH wins, as for the shell
            if os.access(entry.path, os.X_OK) and not entry.is_dir():
                target.symlink_to(entry.path)
    assert not any((bin_dir / t).exists() for t in tools)
    return str(bin_dir)


def run_pytest(node_ids: list[str], path: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *node_ids]
    env = dict(os.environ, PATH=path)
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=REPO, env=env, check=False)


def test_a_root_test_without_ndisc6_fails_naming_the_tool_and_its_package(need_root: None, tmp_path: Path) -> None:
    res = run_pytest([NDISC6_TEST], path_without(tmp_path, "ndisc6"))
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert "missing tools: ndisc6 (apt-get install ndisc6)" in out, out
    assert "assert None ==" not in out and "Traceback" not in out, out
    assert "1 error" in out, out


def test_every_missing_tool_is_named_in_one_line_for_each_root_test(need_root: None, tmp_path: Path) -> None:
    res = run_pytest([NDISC6_TEST, ARPING_TEST], path_without(tmp_path, "arping", "tcpdump"))
    out = res.stdout + res.stderr
    line = "missing tools: arping (apt-get install iputils-arping), tcpdump (apt-get install tcpdump)"
    assert out.count(line) >= 2 and "2 errors" in out, out  # both root tests, the same line
