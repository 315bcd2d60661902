"""Live mode without a usable client configuration: a missing, unparsable or non-kubeconfig file given with
--kubeconfig or $KUBECONFIG, or no kubeconfig at all outside a cluster, exits 2 with one line that names the
kubeconfig path and the alternative (--cluster-state FILE), never a traceback (issue 7, item 6)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import PKI
from .webhook_process import ROOT, clean_env


def _start(pki: PKI, tmp_path: Path, *argv: str, env: dict[str, str] | None = None) -> str:
    """Start the webhook in live mode; returns its stderr after checking exit 2, one line, no traceback."""
    home = tmp_path / "home"  # no ~/.kube/config in it
    home.mkdir(exist_ok=True)
    base = {"HOME": str(home)}
    environment = clean_env({**base, **(env or {})})
    for name in ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):  # not in a cluster
        environment.pop(name, None)
    pair = ["--cert-file", str(pki.cert_file), "--key-file", str(pki.key_file)]
    ports = ["--host", "127.0.0.1", "--port", "0", "--health-port", "0"]
    done = subprocess.run(
        [sys.executable, "-m", "webhook", *pair, *ports, *argv],
        cwd=ROOT,
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "--cluster-state FILE" in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "no such file"),
        (b"hello: [\n", "not YAML"),  # PyYAML's ParserError, three lines of text
        (b"hello\n", "not a usable kubeconfig"),  # the client raised a bare TypeError
        (b"\x00\xff\xfe binary", "not YAML"),
        (b"apiVersion: v1\nkind: Config\n", "not a usable kubeconfig"),  # no contexts, no clusters
    ],
    ids=["missing", "yaml-syntax", "scalar", "binary", "no-contexts"],
)
def test_a_bad_kubeconfig_flag_exits_2_naming_the_file_and_the_alternative(
    pki: PKI, tmp_path: Path, content: bytes | None, reason: str
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    if content is not None:
        kubeconfig.write_bytes(content)
    line = _start(pki, tmp_path, "--kubeconfig", str(kubeconfig))
    assert f"kubeconfig {kubeconfig}: " in line and reason in line, line


def test_a_directory_as_kubeconfig_exits_2(pki: PKI, tmp_path: Path) -> None:
    line = _start(pki, tmp_path, "--kubeconfig", str(tmp_path))
    assert f"kubeconfig {tmp_path}: " in line, line


def test_a_bad_kubeconfig_environment_variable_is_named_like_the_flag(pki: PKI, tmp_path: Path) -> None:
    missing = tmp_path / "from-env"
    line = _start(pki, tmp_path, env={"KUBECONFIG": str(missing)})
    assert f"kubeconfig {missing}: no such file" in line, line


def test_no_kubeconfig_outside_a_cluster_exits_2_naming_the_default_path(pki: PKI, tmp_path: Path) -> None:
    line = _start(pki, tmp_path)
    default = tmp_path / "home" / ".kube" / "config"
    assert f"kubeconfig {default}: no such file" in line, line
    assert "not running in a cluster" in line, line
