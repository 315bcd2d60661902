"""Every install renders, and every rendered object is one the API server accepts: built-in kinds against the
Kubernetes JSON schemas (kubernetes-validate, strict: unknown fields are errors) of the oldest supported version
(1.30: ValidatingAdmissionPolicy v1 and matchConditions are GA there) and of the newest it knows; our
metallb.io CRDs are structural (the apiextensions rules) and accept the MetalLB objects captured from a real
cluster; cert-manager's objects, whose schemas live in cert-manager's CRDs, refer to each other consistently."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from .conftest import MANIFESTS, OVERLAYS, Doc, kustomize, of_kind, one

DATA = Path(__file__).resolve().parents[1] / "data"
VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
CERT_MANAGER_KINDS = {"Certificate", "Issuer"}
MONITORING_KINDS = {"PodMonitor", "PrometheusRule"}  # prometheus-operator CRDs: checked in test_alerts.py
_valid: set[str] = set()  # objects already validated (most are shared by several installs)


def test_the_default_install_is_the_webhook_only_overlay(renders: dict[str, list[Doc]]) -> None:
    assert renders["default"] == renders["webhook-only"]
    assert {name: bool(renders[name]) for name in OVERLAYS} == dict.fromkeys(OVERLAYS, True)


def test_every_object_validates_against_the_kubernetes_schemas(install: tuple[str, list[Doc]]) -> None:
    _, docs = install
    unchecked = set()
    for doc in docs:
        if doc["apiVersion"].startswith(("cert-manager.io/", "monitoring.coreos.com/")):
            unchecked.add(doc["kind"])
            continue
        key = json.dumps(doc, sort_keys=True)
        if key in _valid:
            continue
        for version in VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                raise AssertionError(f"{doc['kind']} {doc['metadata']['name']} ({version}): {exc.message}") from exc
        _valid.add(key)
    # checked by test_cert_manager_objects_refer_to_each_other, and by test_alerts.py
    assert unchecked <= CERT_MANAGER_KINDS | MONITORING_KINDS


def test_an_unknown_field_fails_the_validation() -> None:
    """The check above can fail: a misspelt field in a container is an error, not silently dropped."""
    (deployment,) = of_kind(kustomize(MANIFESTS), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[0], strict=True)


def test_cert_manager_objects_refer_to_each_other(renders: dict[str, list[Doc]]) -> None:
    docs = renders["cert-manager"]
    issuers = {(d["metadata"]["namespace"], d["metadata"]["name"]): d for d in of_kind(docs, "Issuer")}
    certificates = {(d["metadata"]["namespace"], d["metadata"]["name"]): d for d in of_kind(docs, "Certificate")}
    for (namespace, _), cert in certificates.items():
        ref = cert["spec"]["issuerRef"]
        assert (ref["kind"], ref.get("group", "cert-manager.io")) == ("Issuer", "cert-manager.io")
        assert (namespace, ref["name"]) in issuers
    for (namespace, _), issuer in issuers.items():
        if "ca" in issuer["spec"]:  # a CA Issuer signs with the Secret of a CA Certificate of its namespace
            secret = issuer["spec"]["ca"]["secretName"]
            (ca,) = [c for c in certificates.values() if c["spec"]["secretName"] == secret]
            assert ca["spec"]["isCA"] is True and ca["metadata"]["namespace"] == namespace
    service = one(docs, "Service", "l2guard-webhook")
    (deployment,) = of_kind(docs, "Deployment")
    mounted = {v["secret"]["secretName"] for v in deployment["spec"]["template"]["spec"]["volumes"] if "secret" in v}
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        config = one(docs, kind, "l2guard")
        namespace, _, name = config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"].partition("/")
        serving = certificates[(namespace, name)]
        for hook in config["webhooks"]:
            svc = hook["clientConfig"]["service"]
            assert (svc["name"], svc["namespace"]) == (service["metadata"]["name"], service["metadata"]["namespace"])
            # The API server verifies the serving certificate for <service>.<namespace>.svc.
            assert f"{svc['name']}.{svc['namespace']}.svc" in serving["spec"]["dnsNames"]
        assert serving["spec"]["secretName"] in mounted
        assert not serving["spec"].get("isCA")


# --- CRDs: structural schemas (https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/
# custom-resource-definitions/#specifying-a-structural-schema) ---

FORBIDDEN = {"$ref", "definitions", "dependencies", "patternProperties", "id", "readOnly", "writeOnly", "xml"}
JUNCTORS = ("allOf", "anyOf", "oneOf", "not")


def structural_problems(schema: dict[str, Any], where: str = "") -> list[str]:
    problems = []
    open_ended = schema.get("x-kubernetes-int-or-string") or schema.get("x-kubernetes-preserve-unknown-fields")
    if not schema.get("type") and not open_ended:
        problems.append(f"{where or '<root>'}: no type")
    problems += [f"{where}: {key} is not allowed" for key in FORBIDDEN & set(schema)]
    if schema.get("uniqueItems") is True:
        problems.append(f"{where}: uniqueItems: true is not allowed")
    if "properties" in schema and "additionalProperties" in schema:
        problems.append(f"{where}: properties and additionalProperties together")
    if schema.get("type") == "array" and not isinstance(schema.get("items"), dict):
        problems.append(f"{where}: an array needs one items schema")
    for junctor in JUNCTORS:
        parts = schema.get(junctor)
        for part in parts if isinstance(parts, list) else [parts] if parts else []:
            for key in ("description", "type", "default", "additionalProperties", "nullable"):
                if key in part:
                    problems.append(f"{where}.{junctor}: sets {key}")
    missing = set(schema.get("required", ())) - set(schema.get("properties", {}))
    problems += [f"{where}: required {name} is not a property" for name in sorted(missing)]
    for name, sub in schema.get("properties", {}).items():
        problems += structural_problems(sub, f"{where}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        problems += structural_problems(schema["additionalProperties"], f"{where}.*")
    if isinstance(schema.get("items"), dict):
        problems += structural_problems(schema["items"], f"{where}[]")
    if "default" in schema:
        try:
            jsonschema.Draft4Validator(schema).validate(schema["default"])
        except jsonschema.ValidationError as exc:
            problems.append(f"{where}: default {schema['default']!r} is invalid: {exc.message}")
    return problems


def crds(renders: dict[str, list[Doc]]) -> dict[str, Doc]:
    return {d["spec"]["names"]["kind"]: d for d in of_kind(renders["every-component"], "CustomResourceDefinition")}


def test_the_crds_are_structural_and_named_as_the_api_server_requires(renders: dict[str, list[Doc]]) -> None:
    found = crds(renders)
    assert sorted(found) == ["IPAddressPool", "L2Advertisement"]
    for kind, crd in found.items():
        spec = crd["spec"]
        assert crd["metadata"]["name"] == f"{spec['names']['plural']}.{spec['group']}" and spec["group"] == "metallb.io"
        assert spec["scope"] == "Namespaced" and spec["names"]["listKind"] == f"{kind}List"
        assert [(v["name"], v["served"], v["storage"]) for v in spec["versions"]] == [("v1beta1", True, True)]
        schema = spec["versions"][0]["schema"]["openAPIV3Schema"]
        assert structural_problems(schema) == []
        assert schema["properties"]["metadata"] == {"type": "object"}  # no restrictions beyond name/generateName


def test_the_structural_check_can_fail() -> None:
    bad = {
        "type": "object",
        "properties": {
            "spec": {"properties": {"a": {"type": "array"}}, "additionalProperties": {"type": "string"}},
            "b": {"type": "boolean", "default": "yes"},
        },
        "required": ["c"],
    }
    assert len(structural_problems(bad)) == 5


def captured_metallb_objects() -> list[Doc]:
    objects = []
    for name in ("list-ipaddresspools.json", "list-l2advertisements.json"):
        objects += json.loads((DATA / "api" / name).read_text())["items"]
    for name in ("ipaddresspool-create.json", "ipaddresspool-update-merge-patch.json", "l2advertisement-create.json"):
        objects.append(json.loads((DATA / "admission" / name).read_text())["review"]["request"]["object"])
    return objects


def test_the_crds_accept_the_metallb_objects_captured_from_a_real_cluster(renders: dict[str, list[Doc]]) -> None:
    found = crds(renders)
    objects = captured_metallb_objects()
    assert {o["kind"] for o in objects} == {"IPAddressPool", "L2Advertisement"}
    # A pool as MetalLB's controller leaves it, with its status counters (MetalLB 0.15).
    counted = dict(objects[0], status={"assignedIPv4": 1, "assignedIPv6": 0, "availableIPv4": 20, "availableIPv6": 16})
    for obj in [*objects, counted]:
        schema = found[obj["kind"]]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        jsonschema.Draft4Validator(schema).validate(obj)


@pytest.mark.parametrize(
    ("kind", "spec"),
    [
        ("IPAddressPool", {}),  # addresses are required, as in MetalLB's CRD
        ("IPAddressPool", {"addresses": ["192.0.2.0/24"], "autoAssign": "yes"}),
        ("IPAddressPool", {"addresses": "192.0.2.0/24"}),
        ("L2Advertisement", {"interfaces": "eth0"}),
        ("L2Advertisement", {"ipAddressPoolSelectors": [{"matchLabels": {"a": 1}}]}),  # label values are strings
        ("L2Advertisement", {"nodeSelectors": [{"matchExpressions": [{"key": "a"}]}]}),  # operator is required
    ],
)
def test_the_crds_reject_what_metallbs_reject(renders: dict[str, list[Doc]], kind: str, spec: dict[str, Any]) -> None:
    schema = crds(renders)[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    obj = {"apiVersion": "metallb.io/v1beta1", "kind": kind, "metadata": {"name": "x"}, "spec": spec}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(schema).validate(obj)
