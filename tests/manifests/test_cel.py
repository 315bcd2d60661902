"""The CEL of the rendered manifests, evaluated on captured AdmissionReviews as the API server evaluates it.

Library: cel-python (`celpy`), an interpreter of the CEL specification in Python, tested against the cel-spec
conformance suite (its only compiled dependency is re2, for `matches()`), rather than common-expression-language,
bindings to a Rust interpreter that bring a CLI's dependencies along. Its errors are values we can tell apart
from `false`, which the API server's semantics need (a condition that errs is neither true nor false).

Variables, as the API server binds them (k8s.io/apiserver admission/plugin/cel, "CEL in admission"): `object` and
`oldObject` are the review's objects (`oldObject` null on CREATE, `object` null on DELETE); `request` is the
AdmissionRequest without those two (kind, resource, subResource, name, operation, userInfo, dryRun, options, ...);
for a ValidatingAdmissionPolicy also `variables.<name>`, each computed from its expression. A webhook's
matchConditions: any false skips the webhook, all true calls it, an error (with none false) applies its
failurePolicy. A policy's validation that is false produces its message (a Warning for a Warn binding)."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import celpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

from l2core.model import EXCLUDE_LABEL
from l2core.policy import LabelChange, exclude_label_change

from .conftest import Doc, of_kind, one

ADMISSION = Path(__file__).resolve().parents[1] / "data" / "admission"
ENV = celpy.Environment()


@functools.cache
def program(expression: str) -> Any:
    return ENV.program(ENV.compile(expression))


class CELError(Exception):
    pass


def to_cel(name: str, value: Any) -> Any:
    """JSON as CEL values; `variables` holds CEL results already (a CEL bool is no JSON bool to convert)."""
    if name == "variables":
        return celpy.celtypes.MapType({celpy.celtypes.StringType(k): v for k, v in value.items()})
    return celpy.json_to_cel(value)


def evaluate(expression: str, variables: dict[str, Any]) -> Any:
    try:
        result = program(expression).evaluate({k: to_cel(k, v) for k, v in variables.items()})
    except celpy.CELEvalError as exc:
        raise CELError(f"{expression}: {exc}") from exc
    if isinstance(result, celpy.CELEvalError):
        raise CELError(f"{expression}: {result}")
    return result


def bound(review: dict[str, Any]) -> dict[str, Any]:
    request = review["request"]
    return {
        "object": request.get("object"),
        "oldObject": request.get("oldObject"),
        "request": {k: v for k, v in request.items() if k not in ("object", "oldObject")},
    }


def webhook_called(hook: Doc, review: dict[str, Any]) -> str:
    """call, skip or error (then failurePolicy decides), as the API server's matchConditions evaluation."""
    results = []
    for condition in hook.get("matchConditions", []):
        try:
            results.append(bool(evaluate(condition["expression"], bound(review))))
        except CELError:
            results.append(None)
    if False in results:
        return "skip"
    return "error" if None in results else "call"


def policy_warnings(policy: Doc, review: dict[str, Any]) -> list[str]:
    """The messages of a ValidatingAdmissionPolicy's failed validations for one review (its Warnings)."""
    spec = policy["spec"]
    variables = bound(review)
    if any(not evaluate(c["expression"], variables) for c in spec.get("matchConditions", [])):
        return []
    variables["variables"] = {v["name"]: evaluate(v["expression"], variables) for v in spec.get("variables", [])}
    messages = []
    for validation in spec["validations"]:
        if not evaluate(validation["expression"], variables):
            messages.append(str(evaluate(validation["messageExpression"], variables)))
    return messages


def captured(name: str) -> dict[str, Any]:
    return json.loads((ADMISSION / f"{name}.json").read_text())["review"]


def derived(name: str, *, user: str | None = None, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A captured review with the requester or the new object's labels replaced (nothing else changes)."""
    review = copy.deepcopy(captured(name))
    if user is not None:
        review["request"]["userInfo"] = {"username": user, "groups": ["system:nodes", "system:authenticated"]}
    if labels is not None:
        review["request"]["object"]["metadata"]["labels"] = labels
    return review


def node_labels(name: str) -> dict[str, str]:
    return dict(captured(name)["request"]["object"]["metadata"]["labels"])


LABELLED = {**node_labels("node-create"), EXCLUDE_LABEL: ""}
KUBELET = "system:node:worker-1"
# Whether the API server calls the node webhooks, by hand from what each request does (fixtures/README.md).
CALLS = [
    ("node-label-exclude-empty", captured("node-label-exclude-empty"), "call"),  # added
    ("node-label-exclude-karpenter-dryrun", captured("node-label-exclude-karpenter-dryrun"), "call"),  # added
    ("node-label-exclude-true-overwrite", captured("node-label-exclude-true-overwrite"), "call"),  # "" -> true
    ("node-status-patch-adds-exclude", captured("node-status-patch-adds-exclude"), "call"),  # added via status
    ("node-create", captured("node-create"), "skip"),  # a new Node without the label
    ("node-create labelled", derived("node-create", labels=LABELLED), "call"),
    ("node-create labelled by its kubelet", derived("node-create", labels=LABELLED, user=KUBELET), "skip"),
    ("node-label-exclude-empty by a kubelet", derived("node-label-exclude-empty", user=KUBELET), "call"),
    ("node-unlabel-exclude", captured("node-unlabel-exclude"), "skip"),  # removal never warns
    ("node-replace-removes-exclude", captured("node-replace-removes-exclude"), "skip"),
    ("node-label-unrelated", captured("node-label-unrelated"), "skip"),
    ("node-annotate", captured("node-annotate"), "skip"),
    ("node-cordon", captured("node-cordon"), "skip"),
]


def node_webhooks(docs: list[Doc]) -> list[Doc]:
    configs = of_kind(docs, "MutatingWebhookConfiguration") + of_kind(docs, "ValidatingWebhookConfiguration")
    return [h for c in configs for h in c["webhooks"] if "nodes" in h["rules"][0]["resources"]]


@pytest.mark.parametrize(("case", "review", "expected"), CALLS, ids=[c[0] for c in CALLS])
def test_the_node_webhooks_are_called_only_when_the_exclude_label_is_added_or_changed(
    renders: dict[str, list[Doc]], case: str, review: dict[str, Any], expected: str
) -> None:
    hooks = node_webhooks(renders["every-component"])
    assert [h["name"] for h in hooks] == ["nodes.l2guard.io", "nodes.l2guard.io"]  # mutating, and deny's validating
    assert [webhook_called(h, review) for h in hooks] == [expected, expected]


def test_every_node_webhook_has_the_same_match_conditions(renders: dict[str, list[Doc]]) -> None:
    conditions = [h["matchConditions"] for docs in renders.values() for h in node_webhooks(docs)]
    assert len(conditions) > len(renders) and all(c == conditions[0] for c in conditions)


label_maps = (
    st.dictionaries(
        st.sampled_from([EXCLUDE_LABEL, "node-role.kubernetes.io/control-plane", "kubernetes.io/hostname"]),
        st.sampled_from(["", "true", "false", "karpenter"]),
    )
    | st.none()
)


@given(old=label_maps, new=label_maps, create=st.booleans())
def test_the_match_conditions_agree_with_the_webhooks_own_trigger(
    renders: dict[str, list[Doc]], old: dict[str, str] | None, new: dict[str, str] | None, create: bool
) -> None:
    """Whatever the labels, the API server calls the webhook exactly when its fast path would not answer (the
    exclude label added or changed: l2core.policy), so the conditions drop no request the webhook acts on."""
    review = copy.deepcopy(captured("node-create" if create else "node-label-unrelated"))
    for key, labels in (("object", new), ("oldObject", None if create else old)):
        if review["request"][key] is not None:
            metadata = review["request"][key]["metadata"]
            metadata.pop("labels", None)
            if labels is not None:
                metadata["labels"] = labels
    (hook,) = node_webhooks(renders["webhook-only"])
    change = exclude_label_change(None if create else (old or {}), new or {})
    acts = change in (LabelChange.ADDED, LabelChange.CHANGED)
    assert webhook_called(hook, review) == ("call" if acts else "skip")


def test_a_condition_that_errs_is_an_error_not_a_skip(renders: dict[str, list[Doc]]) -> None:
    """The evaluation above tells errors apart: a review without userInfo.username makes the kubelet condition
    err (the API server then applies failurePolicy Ignore)."""
    review = derived("node-label-exclude-empty")
    del review["request"]["userInfo"]["username"]
    review["request"]["operation"] = "CREATE"
    (hook,) = node_webhooks(renders["webhook-only"])
    assert webhook_called(hook, review) == "error"


WARNING = (
    "node worker-1: the exclude label stops LoadBalancer IP announcements from it (MetalLB, l2guard); "
    "run `l2guard explain --live` to see which IPs lose their announcer"
)
# Whether the policy warns, by hand: only when the label is added (a changed value was already excluding).
WARNS = [
    ("node-label-exclude-empty", captured("node-label-exclude-empty"), [WARNING]),
    ("node-label-exclude-karpenter-dryrun", captured("node-label-exclude-karpenter-dryrun"), [WARNING]),
    ("node-status-patch-adds-exclude", captured("node-status-patch-adds-exclude"), [WARNING]),
    ("node-create labelled", derived("node-create", labels=LABELLED), [WARNING]),
    ("node-create labelled by its kubelet", derived("node-create", labels=LABELLED, user=KUBELET), []),
    ("node-label-exclude-true-overwrite", captured("node-label-exclude-true-overwrite"), []),
    ("node-create", captured("node-create"), []),
    ("node-unlabel-exclude", captured("node-unlabel-exclude"), []),
    ("node-replace-removes-exclude", captured("node-replace-removes-exclude"), []),
    ("node-label-unrelated", captured("node-label-unrelated"), []),
    ("node-annotate", captured("node-annotate"), []),
    ("node-cordon", captured("node-cordon"), []),
]


@pytest.mark.parametrize(("case", "review", "expected"), WARNS, ids=[c[0] for c in WARNS])
def test_the_admission_policy_warns_when_the_exclude_label_is_added(
    renders: dict[str, list[Doc]], case: str, review: dict[str, Any], expected: list[str]
) -> None:
    docs = renders["every-component"]
    policy = one(docs, "ValidatingAdmissionPolicy", "l2guard-exclude-label")
    assert policy_warnings(policy, review) == expected
    binding = one(docs, "ValidatingAdmissionPolicyBinding", "l2guard-exclude-label")
    assert binding["spec"] == {"policyName": "l2guard-exclude-label", "validationActions": ["Warn"]}


def test_the_admission_policy_covers_nodes_and_their_status_and_never_blocks(renders: dict[str, list[Doc]]) -> None:
    spec = one(renders["every-component"], "ValidatingAdmissionPolicy", "l2guard-exclude-label")["spec"]
    assert spec["failurePolicy"] == "Ignore"
    (rule,) = spec["matchConstraints"]["resourceRules"]
    assert (rule["apiGroups"], rule["resources"], rule["operations"]) == (
        [""],
        ["nodes", "nodes/status"],
        ["CREATE", "UPDATE"],
    )
    # The static message, used when the messageExpression fails, is one line too and names the same command.
    (validation,) = spec["validations"]
    assert "\n" not in validation["message"] and "l2guard explain --live" in validation["message"]
