"""Fixtures for the image tests: the preflight, podman's settings for this machine, and the image built once.

The image is built by real podman from the repository's Dockerfile on the local base that scripts/podman-base makes
(no registry is reachable here; docs/image.md). The build and every container run happen in the test, never
skipped: a missing tool fails every image test with one line naming it and its Debian package.

Nothing here touches the root namespace's network: builds use the host network (no CNI bridge is created), the
webhook container listens on 127.0.0.1, and the speaker container joins a namespace the test made.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VERSION: str = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
IMAGE = f"localhost/l2guard-test:{VERSION}"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")

# Tool -> the Debian package that provides it (.ci/run installs them all).
IMAGE_TEST_TOOLS = {
    "podman": "podman",
    "runc": "runc",
    "mmdebstrap": "mmdebstrap",
    "ip": "iproute2",
    "arping": "iputils-arping",
    "ping": "iputils-ping",
    "ndisc6": "ndisc6",
    "curl": "curl",
    "sysctl": "procps",
}


@functools.cache
def missing_tools() -> str | None:
    missing = [f"{tool} (apt-get install {pkg})" for tool, pkg in IMAGE_TEST_TOOLS.items() if not shutil.which(tool)]
    return f"missing tools: {', '.join(missing)}" if missing else None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before any fixture of a root test here (the image build included): root and the tools, or one clear line."""
    if item.get_closest_marker("root") is None:
        return
    if os.geteuid() != 0:
        pytest.fail("the image tests need root (rootful podman, network namespaces); or deselect: -m 'not root'")
    if (problem := missing_tools()) is not None:
        pytest.fail(problem, pytrace=False)


@dataclass(frozen=True)
class Podman:
    """podman with this machine's containers.conf (runc, ulimits; written by scripts/podman-base)."""

    containers_conf: str
    base: str

    def env(self) -> dict[str, str]:
        return dict(os.environ, CONTAINERS_CONF=self.containers_conf)

    def run(
        self, args: Sequence[str], *, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            ["podman", *args], capture_output=True, text=True, timeout=timeout, env=self.env(), check=False
        )
        if check and res.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed ({res.returncode}):\n{res.stderr[-3000:]}")
        return res


@pytest.fixture(scope="session")
def podman() -> Podman:
    res = subprocess.run(
        [str(REPO / "scripts" / "podman-base")], capture_output=True, text=True, timeout=600, cwd=REPO, check=False
    )
    assert res.returncode == 0, f"scripts/podman-base failed ({res.returncode}): {res.stderr[-3000:]}"
    lines = dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)
    return Podman(lines["containers_conf"], lines["base"])


@pytest.fixture(scope="session")
def image(podman: Podman) -> str:
    """The image, built from the Dockerfile as docs/image.md says; with CI=true without the layer cache."""
    args = ["build", "--pull=never", "--network=host", "--build-arg", f"BASE={podman.base}"]
    # The proxy's CA is only in the host bundle; it is mounted for the build's RUN steps and not copied into a layer.
    args += ["-v", f"{HOST_CA}:{HOST_CA}:ro", "-t", IMAGE, "-f", str(REPO / "Dockerfile")]
    if os.environ.get("CI") == "true":
        args.append("--no-cache")
    res = podman.run([*args, str(REPO)], check=False, timeout=600)
    assert res.returncode == 0, f"podman build failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return IMAGE
