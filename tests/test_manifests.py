"""`kubectl apply -k manifests/` must render, and what it deploys must match what the code serves."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from webhook import app
from webhook.settings import add_arguments, from_args

ROOT = Path(__file__).resolve().parent.parent


def rendered() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (client only) is part of this machine image; `kubectl kustomize` renders -k offline"
    out = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "manifests")], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def test_the_kustomization_renders_into_one_namespace() -> None:
    docs = rendered()
    kinds = sorted({d["kind"] for d in docs})
    assert {"Namespace", "Deployment", "Service", "ClusterRole", "MutatingWebhookConfiguration"} <= set(kinds)
    namespaced = [d for d in docs if d["kind"] in ("Deployment", "Service", "ServiceAccount", "PodDisruptionBudget")]
    assert {d["metadata"]["namespace"] for d in namespaced} == {"l2guard-system"}


def test_webhook_paths_exist_and_never_block_the_cluster() -> None:
    docs = rendered()
    served = {app.MUTATE_NODE, app.VALIDATE_NODE, app.VALIDATE_POOL, app.VALIDATE_ADVERTISEMENT}
    paths = set()
    for cfg in by_kind(docs, "MutatingWebhookConfiguration") + by_kind(docs, "ValidatingWebhookConfiguration"):
        for hook in cfg["webhooks"]:
            svc = hook["clientConfig"]["service"]
            paths.add(svc["path"])
            assert (svc["name"], svc["namespace"]) == ("l2guard-webhook", "l2guard-system")
            assert hook["failurePolicy"] == "Ignore" and hook["sideEffects"] == "None"
            assert hook["timeoutSeconds"] <= 5 and hook["admissionReviewVersions"] == ["v1"]
    assert paths == served


def test_the_container_arguments_are_valid_webhook_settings(tmp_path: Path) -> None:
    (deployment,) = by_kind(rendered(), "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    command, *flags = container["args"]
    assert command == "webhook"
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    settings = from_args(parser.parse_args(flags), {})
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert (settings.port, settings.health_port) == (ports["https"], ports["health"])
    probes = (container["readinessProbe"]["httpGet"]["path"], container["livenessProbe"]["httpGet"]["path"])
    assert probes == ("/readyz", "/healthz")


def test_rbac_covers_what_the_live_view_lists() -> None:
    (role,) = by_kind(rendered(), "ClusterRole")
    granted = {(g, r) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    for rule in role["rules"]:
        assert set(rule["verbs"]) == {"get", "list", "watch"}  # read-only
    needed = {
        ("", "nodes"),
        ("", "services"),
        ("discovery.k8s.io", "endpointslices"),
        ("metallb.io", "ipaddresspools"),
        ("metallb.io", "l2advertisements"),
    }
    assert needed <= granted


def test_rbac_lets_the_webhook_read_the_speaker_leases_of_its_namespace_only() -> None:
    docs = rendered()
    (role,) = by_kind(docs, "Role")
    assert role["metadata"]["namespace"] == "l2guard-system"
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "list", "watch"]}
    ]
    (binding,) = by_kind(docs, "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "l2guard-webhook", "namespace": "l2guard-system"}]
