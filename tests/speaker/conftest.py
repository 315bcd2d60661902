"""Fixtures for the speaker tests: root gating, the namespace topology and announcer processes.

Namespaces get a per-run suffix and are deleted in finalizers even when a test fails; announcer
processes started by a test are killed by PID in its finalizer.

Preflight: the root tests drive real tools (iputils ping and arping, ndisc6, tcpdump, curl, iproute2). One check,
run once, fails every root test with the same line naming what is missing and its Debian package, before a
namespace is built; a missing tool would otherwise surface as `assert None == '02:...'`. Never a skip: CI runs
these tests, and a test that did not run proves nothing.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator

import pytest
from speaker_netns import Host, NodeProc, Topology, sh, sn_group, wait_for

# Tool -> the Debian package that provides it.
ROOT_TEST_TOOLS = {
    "ip": "iproute2",
    "bridge": "iproute2",
    "ss": "iproute2",
    "sysctl": "procps",
    "ping": "iputils-ping",
    "arping": "iputils-arping",
    "ndisc6": "ndisc6",
    "tcpdump": "tcpdump",
    "curl": "curl",
}


@functools.cache
def missing_tools() -> str | None:
    """`missing tools: arping (apt-get install iputils-arping), ...`, or None when every tool is on PATH."""
    missing = [f"{tool} (apt-get install {pkg})" for tool, pkg in ROOT_TEST_TOOLS.items() if shutil.which(tool) is None]
    return f"missing tools: {', '.join(missing)}" if missing else None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before any fixture of a root test (the module-scoped topology included), the preflight."""
    if item.get_closest_marker("root") is not None:
        problem = missing_tools()
        if problem is not None:
            pytest.fail(problem, pytrace=False)


def require_root() -> None:
    """Fail loudly without root: nothing in this suite is skipped, and a namespace test that did not run proves
    nothing. (Deselect with `-m "not root"` to run the rest as an unprivileged user.)"""
    if os.geteuid() != 0:
        pytest.fail("this test needs root for network namespaces and raw sockets (or deselect: -m 'not root')")


@pytest.fixture
def need_root() -> None:
    require_root()


def build_topology(*, nodes: int = 2) -> Topology:
    topo = Topology()
    try:
        topo.build(nodes=nodes)

        # Snooping is only trustworthy once the bridge has seen the hosts' own MLD reports.
        def joined() -> bool:
            return all(h.port in topo.mdb_ports(sn_group(h.ip6)) for h in topo.hosts.values())

        ok = wait_for(joined, timeout=10)
        assert ok, sh(["ip", "netns", "exec", topo.br, "bridge", "mdb", "show"]).stdout
    except BaseException:
        topo.destroy()
        raise
    return topo


def _topology() -> Iterator[Topology]:
    require_root()
    t = build_topology()
    try:
        yield t
    finally:
        t.destroy()


@pytest.fixture(scope="module")
def topo() -> Iterator[Topology]:
    """One topology shared by a module's tests that leave links and addresses as they found them."""
    yield from _topology()


@pytest.fixture
def fresh_topo() -> Iterator[Topology]:
    """A topology of its own, for tests that change links or node addresses."""
    yield from _topology()


@pytest.fixture
def start_node() -> Iterator[Callable[..., NodeProc]]:
    procs: list[NodeProc] = []

    def start(host: Host, *extra: str, **kwargs: str) -> NodeProc:
        p = NodeProc(host, *extra, **kwargs)
        procs.append(p)
        return p

    try:
        yield start
    finally:
        for p in procs:
            p.kill()


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts; whichever still runs at the end is killed, by PID."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(10)
