"""Checks on every rendered install: what runs, with which privileges, and how the API server calls it.

- The speaker is not privileged, adds NET_RAW and nothing else (nothing at all in shadow mode), drops every other
  capability, runs on the host network with cluster DNS, on control-plane nodes too, as system-node-critical,
  with its node name from the downward API and a grace period that covers the lease release.
- The webhook runs as non-root with a read-only root, no capability, RuntimeDefault seccomp, two replicas spread
  over nodes with a PodDisruptionBudget, probes on the plain-HTTP port, requests and limits, behind a Service
  from 443 to its HTTPS port.
- Pod Security: each workload's namespace enforces the strictest standard the workload meets.
- Every webhook has failurePolicy, timeoutSeconds <= 5, sideEffects None, no caBundle (the webhook or cainjector
  writes it), and calls a path the webhook serves; the node webhook covers nodes and nodes/status.
- No RBAC rule has a wildcard, and every container runs the one image of components/image."""

from __future__ import annotations

from typing import Any

import yaml

from l2guard.control.command import OPTIONS as SPEAKER_OPTIONS
from webhook import app

from .conftest import MANIFESTS, Doc, of_kind, one, pod_specs

WEBHOOK_PATHS = {app.MUTATE_NODE, app.VALIDATE_NODE, app.VALIDATE_POOL, app.VALIDATE_ADVERTISEMENT}


def container(spec: Doc) -> Doc:
    (only,) = spec["containers"]
    return only


def env(c: Doc) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def test_the_speaker_adds_only_net_raw_and_is_not_privileged(install: tuple[str, list[Doc]]) -> None:
    name, docs = install
    speakers = of_kind(docs, "DaemonSet")
    assert len(speakers) == (0 if name in ("default", "webhook-only", "cert-manager") else 1)
    for ds in speakers:
        spec = ds["spec"]["template"]["spec"]
        c = container(spec)
        security = c["securityContext"]
        dry_run = env(c)["L2GUARD_DRY_RUN"] == "true"
        assert dry_run == (name == "speaker-dry-run")
        assert security["privileged"] is False and security["allowPrivilegeEscalation"] is False
        assert security["readOnlyRootFilesystem"] is True
        assert security["capabilities"]["drop"] == ["ALL"]
        assert security["capabilities"].get("add", []) == ([] if dry_run else ["NET_RAW"])
        # Added capabilities reach a process only as root (no ambient capabilities); shadow mode needs none.
        assert spec["securityContext"]["runAsUser"] == (65532 if dry_run else 0)
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert (spec["hostNetwork"], spec["dnsPolicy"]) == (True, "ClusterFirstWithHostNet")
        assert "hostPID" not in spec and "hostIPC" not in spec and "volumes" not in spec
        assert {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"} in (
            spec["tolerations"]
        )
        assert all(t.get("key") and t.get("effect") == "NoSchedule" for t in spec["tolerations"])  # nothing broader
        assert spec["priorityClassName"] == "system-node-critical"
        assert env(c)["L2GUARD_NODE_NAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}


def test_the_speakers_grace_period_covers_the_lease_release(renders: dict[str, list[Doc]]) -> None:
    """On SIGTERM the speaker stops renewing (a renewal in flight: up to 4 attempts of the renew interval, plus 1 s,
    l2guard/kube/lease.py stop()), then releases the Lease (up to 4 attempts of the renew interval); the kubelet
    must not kill it before."""
    (ds,) = of_kind(renders["webhook-and-speaker"], "DaemonSet")
    c = container(ds["spec"]["template"]["spec"])
    assert not any(a.startswith("--lease-") for a in c["args"]) and not any("LEASE" in e for e in env(c))
    (renew,) = [o.default for o in SPEAKER_OPTIONS if o.flag == "--lease-renew-interval"]
    worst_release = (4 * renew + 1) + 4 * renew
    assert worst_release < ds["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] <= 60


def test_the_webhook_runs_as_non_root_with_nothing_writable(install: tuple[str, list[Doc]]) -> None:
    _, docs = install
    (deployment,) = of_kind(docs, "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    pod, c = spec["securityContext"], container(spec)
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0 and pod["seccompProfile"]["type"] == "RuntimeDefault"
    security = c["securityContext"]
    assert security == {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert "hostNetwork" not in spec
    assert all(m.get("readOnly") is True for m in c.get("volumeMounts", []))
    assert set(c["resources"]["requests"]) == {"cpu", "memory"} and set(c["resources"]["limits"]) == {"cpu", "memory"}


def test_the_webhook_has_two_spread_replicas_a_budget_probes_on_http_and_a_service_on_443(
    install: tuple[str, list[Doc]],
) -> None:
    _, docs = install
    (deployment,) = of_kind(docs, "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["replicas"] == 2
    (term,) = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"].items() <= labels.items()
    (pdb,) = of_kind(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1 and pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"  # a replica not ready never blocks a drain
    c = container(spec)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert {c["readinessProbe"]["httpGet"]["port"], c["livenessProbe"]["httpGet"]["port"]} == {"health"}
    assert "scheme" not in c["readinessProbe"]["httpGet"]  # plain HTTP: the kubelet need not trust our CA
    assert set(ports) == {"https", "health"}
    service = one(docs, "Service", "l2guard-webhook")
    assert service["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert {"name": "https", "port": 443, "targetPort": "https"} in service["spec"]["ports"]


ENFORCE = "pod-security.kubernetes.io/enforce"


def test_each_namespace_enforces_the_strictest_pod_security_its_workloads_meet(install: tuple[str, list[Doc]]) -> None:
    _, docs = install
    namespaces = {n["metadata"]["name"]: n["metadata"]["labels"][ENFORCE] for n in of_kind(docs, "Namespace")}
    assert namespaces["l2guard-system"] == "restricted"
    for workload, spec in pod_specs(docs):
        namespace = workload["metadata"]["namespace"]
        c = container(spec)
        restricted = (
            not spec.get("hostNetwork")
            and spec["securityContext"].get("runAsNonRoot") is True
            and c["securityContext"]["capabilities"]["drop"] == ["ALL"]
            and not c["securityContext"]["capabilities"].get("add")
        )
        # The speaker alone needs the host network: it is the only workload of a privileged namespace.
        assert namespaces[namespace] == ("restricted" if restricted else "privileged"), workload["metadata"]["name"]
    if "l2guard-speaker" in namespaces:
        there = {w["metadata"]["name"] for w, _ in pod_specs(docs) if w["metadata"]["namespace"] == "l2guard-speaker"}
        assert there == {"l2guard-speaker"}


def webhooks(docs: list[Doc]) -> list[Doc]:
    configs = of_kind(docs, "MutatingWebhookConfiguration") + of_kind(docs, "ValidatingWebhookConfiguration")
    return [h for c in configs for h in c["webhooks"]]


def test_every_webhook_is_bounded_has_no_side_effects_and_calls_a_served_path(install: tuple[str, list[Doc]]) -> None:
    name, docs = install
    service = one(docs, "Service", "l2guard-webhook")
    paths = set()
    for hook in webhooks(docs):
        assert hook["failurePolicy"] in ("Ignore", "Fail") and 1 <= hook["timeoutSeconds"] <= 5
        assert hook["sideEffects"] == "None" and hook["admissionReviewVersions"] == ["v1"]
        client = hook["clientConfig"]
        assert "caBundle" not in client  # written by the webhook (or cainjector), never by an apply
        svc = client["service"]
        assert (svc["name"], svc["namespace"], svc["port"]) == (
            service["metadata"]["name"],
            service["metadata"]["namespace"],
            443,
        )
        paths.add(svc["path"])
        (rule,) = hook["rules"]
        if "nodes" in rule["resources"]:
            assert rule["resources"] == ["nodes", "nodes/status"] and rule["operations"] == ["CREATE", "UPDATE"]
            assert hook["failurePolicy"] == "Ignore"  # never block Node updates or kubelet registrations
            assert [c["name"] for c in hook["matchConditions"]] == [
                "exclude-label-added-or-changed",
                "not-a-kubelet-registration",
            ]
        else:
            assert rule["apiGroups"] == ["metallb.io"] and rule["operations"] == ["CREATE", "UPDATE", "DELETE"]
            assert hook["failurePolicy"] == ("Fail" if name == "every-component" else "Ignore")
    assert paths <= WEBHOOK_PATHS
    assert app.MUTATE_NODE in paths and app.VALIDATE_POOL in paths and app.VALIDATE_ADVERTISEMENT in paths
    assert (app.VALIDATE_NODE in paths) == (name == "every-component")  # the node-deny component


def test_no_rbac_rule_has_a_wildcard(install: tuple[str, list[Doc]]) -> None:
    _, docs = install
    roles = of_kind(docs, "Role") + of_kind(docs, "ClusterRole")
    assert roles
    for role in roles:
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                assert not any("*" in value for value in rule.get(key, [])), (role["metadata"]["name"], rule)
        assert "aggregationRule" not in role


def test_every_container_runs_the_one_image_of_the_image_component(install: tuple[str, list[Doc]]) -> None:
    _, docs = install
    (entry,) = yaml.safe_load((MANIFESTS / "components" / "image" / "kustomization.yaml").read_text())["images"]
    assert entry["name"] == "l2guard" and set(entry) == {"name", "newTag"}
    images = {c["image"] for _, spec in pod_specs(docs) for c in spec["containers"] + spec.get("initContainers", [])}
    assert images == {f"l2guard:{entry['newTag']}"}


def test_every_object_is_labelled_part_of_l2guard(install: tuple[str, list[Doc]]) -> None:
    """`kubectl get all,... -l app.kubernetes.io/part-of=l2guard` finds the whole install."""
    _, docs = install
    unlabelled = [
        (d["kind"], d["metadata"]["name"])
        for d in docs
        if d["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") != "l2guard"
    ]
    assert unlabelled == []
