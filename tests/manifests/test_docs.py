"""The install docs stay true to the kustomizations: manifests/README.md lists exactly the components and
overlays there are, its example overlay for another MetalLB namespace renders and moves every piece that names
that namespace, the README's Install commands name overlays that exist, and the image tags and warning texts
they show are the ones the manifests produce."""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from .conftest import MANIFESTS, ROOT, kustomize, of_kind
from .test_cel import WARNING
from .test_settings import container_env

GUIDE = (MANIFESTS / "README.md").read_text()
README = (ROOT / "README.md").read_text()
INSTALL = README[README.index("## Install") : README.index("\n## ", README.index("## Install") + 1)]


def test_the_guide_lists_every_component_and_overlay_and_nothing_else() -> None:
    listed = set(re.findall(r"^\| `((?:components|overlays)/[a-z-]+)/` \|", GUIDE, re.MULTILINE))
    present = {f"{d.parent.name}/{d.name}" for d in MANIFESTS.glob("*/*") if (d / "kustomization.yaml").exists()}
    assert listed == present


def test_the_guides_metallb_namespace_example_renders_and_moves_every_reader(tmp_path: Path) -> None:
    block = GUIDE[GUIDE.index("<!-- metallb-namespace-example") :]
    example = yaml.safe_load(block[block.index("```yaml") + 7 : block.index("```\n", block.index("```yaml") + 7)])
    assert example["resources"] == ["../l2guard/manifests/overlays/webhook-and-speaker"]
    # kustomize takes relative paths only: from the temporary overlay back to this repository's overlay.
    example["resources"] = [os.path.relpath(MANIFESTS / "overlays" / "webhook-and-speaker", tmp_path / "overlay")]
    (tmp_path / "overlay").mkdir()
    (tmp_path / "overlay" / "kustomization.yaml").write_text(yaml.safe_dump(example))
    docs = kustomize(tmp_path / "overlay")
    granting = {
        r["metadata"]["namespace"]
        for r in of_kind(docs, "Role")
        for rule in r["rules"]
        if "metallb.io" in rule["apiGroups"]
    }
    bindings = {
        b["metadata"]["namespace"] for b in of_kind(docs, "RoleBinding") if b["metadata"]["name"].endswith("-metallb")
    }
    told = {
        container_env(w)["L2GUARD_METALLB_NAMESPACE"] for w in of_kind(docs, "Deployment") + of_kind(docs, "DaemonSet")
    }
    assert granting == bindings == told == {"metallb"}


def test_the_install_section_names_overlays_that_exist_and_no_version_that_could_go_stale() -> None:
    overlays = set(re.findall(r"kubectl (?:apply|delete) -k manifests/overlays/([a-z-]+)", INSTALL))
    assert overlays and all((MANIFESTS / "overlays" / o / "kustomization.yaml").exists() for o in overlays)
    # The version lives in components/image (and pyproject.toml) only; the docs say <version>.
    for text in (INSTALL, GUIDE):
        assert re.findall(r"l2guard:([<>\w.-]+)", text) and set(re.findall(r"l2guard:([<>\w.-]+)", text)) <= {
            "<version>"
        }
        assert set(re.findall(r"newTag: (\S+)", text)) == {"<version>"}


def test_the_warnings_shown_are_the_ones_the_cluster_prints() -> None:
    policy = (
        "Validation failed for ValidatingAdmissionPolicy 'l2guard-exclude-label' with binding 'l2guard-exclude-label': "
    )
    assert f"Warning: {policy}{WARNING.replace('worker-1', 'cp-1')}\n" in GUIDE
    webhook_doc = (ROOT / "docs" / "webhook.md").read_text()
    shown = re.findall(r"^Warning: (.*)$", INSTALL, re.MULTILINE)
    assert shown and all(f"Warning: {line}" in webhook_doc for line in shown)
