"""Admission decisions per endpoint: from a parsed review and the current cluster snapshot to an `Outcome`.

The node path has a fast path: unless the exclude label was added or changed, the answer is "allowed" with no
warning and no patch, after reading two label maps. Only a triggering request parses the Node into the core's model
and asks `l2core.policy` for the impact and the decision. The pool path validates the would-be MetalLB configuration
with `l2core.validate`.

Failure rules (issue 4, "never block the cluster"): an internal error on the node path fails open (allowed, with a
warning); on the pool path it denies with a message that says it is an internal error. These functions do no I/O
and no logging; the app logs and counts the outcomes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from l2core.model import EligibilitySettings
from l2core.parse import parse_node
from l2core.policy import (
    Action,
    Mode,
    NodeDecision,
    NodePolicy,
    NodeRequest,
    Requester,
    decide_node,
    exclude_label_change,
    ineffective_reason,
    node_impact,
)
from l2core.validate import ConfigVerdict, validate_advertisement_change, validate_pool_change
from l2guard.view import Snapshot
from webhook import messages
from webhook.review import Request, build_response


class Result(StrEnum):
    """The metric label for an answered request."""

    ALLOWED = "allowed"
    WARNED = "warned"
    STRIPPED = "stripped"
    DENIED = "denied"
    ERROR = "error"
    TIMEOUT = "timeout"


class NodeEndpoint(StrEnum):
    MUTATE = "mutate"  # serves warn and strip
    VALIDATE = "validate"  # serves deny


@dataclass(frozen=True, slots=True)
class Outcome:
    allowed: bool
    result: Result
    warnings: tuple[str, ...] = ()
    patch: tuple[dict[str, Any], ...] = ()
    message: str = ""
    reason: str = ""  # for the decision log line
    node: str = ""
    log: bool = False  # whether this decision deserves a log line (warned, stripped, denied, error)
    details: Mapping[str, str] = field(default_factory=dict)

    def response(self, uid: str) -> dict[str, Any]:
        return dict(build_response(uid, self.allowed, warnings=self.warnings, patch=self.patch, message=self.message))


ALLOWED = Outcome(True, Result.ALLOWED)
IMPACT_CACHE_SIZE = 1024


def _labels(obj: Mapping[str, Any] | None) -> dict[str, str] | None:
    if obj is None:
        return None
    meta = obj.get("metadata")
    labels = meta.get("labels") if isinstance(meta, Mapping) else None
    if not isinstance(labels, Mapping):
        return {}
    return {str(k): v for k, v in labels.items() if isinstance(v, str)}


def _annotations(obj: Mapping[str, Any]) -> dict[str, str]:
    meta = obj.get("metadata")
    ann = meta.get("annotations") if isinstance(meta, Mapping) else None
    return {str(k): v for k, v in ann.items() if isinstance(v, str)} if isinstance(ann, Mapping) else {}


def _serves(mode: Mode, endpoint: NodeEndpoint) -> bool:
    """Each mode is served by one endpoint, so that registering both webhooks never warns twice."""
    if mode is Mode.OFF:
        return False
    return (mode is Mode.DENY) == (endpoint is NodeEndpoint.VALIDATE)


def node_fast_path(request: Request, endpoint: NodeEndpoint, *, policy: NodePolicy) -> Outcome | None:
    """ALLOWED when the request cannot trigger the policy (kubelet status updates, other labels, annotations,
    cordon), read from two label maps; None when `review_node` has to look closer."""
    new = request.object
    if new is None or request.operation not in ("CREATE", "UPDATE"):
        return ALLOWED
    new_labels = _labels(new) or {}
    old_labels = _labels(request.old_object) if request.operation == "UPDATE" else None
    if not _serves(policy.mode, endpoint) or exclude_label_change(old_labels, new_labels).value in ("none", "removed"):
        return ALLOWED
    return None


def review_node(request: Request, endpoint: NodeEndpoint, *, policy: NodePolicy, snapshot: Snapshot) -> Outcome:
    """The node label policy for one request (nodes or nodes/status, CREATE or UPDATE; dryRun answers the same)."""
    fast = node_fast_path(request, endpoint, policy=policy)
    if fast is not None:
        return fast
    new = request.object
    assert new is not None  # the fast path answers a request without an object
    new_labels = _labels(new) or {}
    old_labels = _labels(request.old_object) if request.operation == "UPDATE" else None
    spec = new.get("spec")
    node_request = NodeRequest(
        name=request.name or str((new.get("metadata") or {}).get("name") or "?"),
        operation=request.operation,
        labels=new_labels,
        old_labels=old_labels,
        annotations=_annotations(new),
        unschedulable=isinstance(spec, Mapping) and spec.get("unschedulable") is True,
        requester=Requester(request.username, request.groups),
    )
    impact = None
    if snapshot.synced and ineffective_reason(old_labels, new_labels, policy.eligibility) is None:
        node, _problems = parse_node(new)
        if node is not None:
            key = (node.name, tuple(sorted(node.labels.items())), node.network_unavailable)
            impact = snapshot.impacts.get(key)
            if impact is None:
                impact = node_impact(snapshot.index, node, advertisements=snapshot.advertisements)
                if len(snapshot.impacts) >= IMPACT_CACHE_SIZE:
                    snapshot.impacts.clear()
                snapshot.impacts[key] = impact
    decision = decide_node(node_request, policy, impact=impact)
    return _node_outcome(decision, request)


def _node_outcome(decision: NodeDecision, request: Request) -> Outcome:
    details = {
        "user": request.username,
        "operation": request.operation,
        "dry_run": str(request.dry_run).lower(),
        "mode": decision.mode.value,
        "change": decision.change.value,
    }
    if decision.impact is not None:
        details["moves"] = str(len(decision.impact.moves))
    reason = (decision.ineffective or decision.exemption or decision.action).value
    if decision.action is Action.DENY:
        return Outcome(
            False,
            Result.DENIED,
            message=messages.deny_message(decision),
            reason=reason,
            node=decision.node,
            log=True,
            details=details,
        )
    warnings = tuple(messages.node_warnings(decision))
    if decision.action is Action.STRIP and decision.patch:
        return Outcome(
            True,
            Result.STRIPPED,
            warnings,
            decision.patch,
            reason=reason,
            node=decision.node,
            log=True,
            details=details,
        )
    if warnings:
        return Outcome(True, Result.WARNED, warnings, reason=reason, node=decision.node, log=True, details=details)
    return ALLOWED


def node_internal_error(exc: BaseException) -> Outcome:
    error = type(exc).__name__
    return Outcome(
        True,
        Result.ERROR,
        (messages.INTERNAL_ERROR_NODE.format(error=error),),
        reason=f"internal-error: {error}",
        log=True,
    )


def config_internal_error(exc: BaseException) -> Outcome:
    return Outcome(
        False,
        Result.ERROR,
        message=messages.INTERNAL_ERROR_CONFIG.format(error=type(exc).__name__),
        reason=f"internal-error: {type(exc).__name__}",
        log=True,
    )


def node_too_slow(seconds: float) -> Outcome:
    return Outcome(
        True, Result.TIMEOUT, (messages.TOO_SLOW_NODE.format(seconds=f"{seconds:g}"),), reason="timeout", log=True
    )


def config_too_slow(seconds: float) -> Outcome:
    return Outcome(
        False,
        Result.TIMEOUT,
        message=messages.TOO_SLOW_CONFIG.format(seconds=f"{seconds:g}"),
        reason="timeout",
        log=True,
    )


def review_config(
    request: Request,
    kind: str,
    *,
    settings: EligibilitySettings,
    metallb_namespace: str,
    snapshot: Snapshot,
) -> Outcome:
    """IPAddressPool or L2Advertisement CREATE, UPDATE or DELETE against the would-be configuration."""
    validate = validate_pool_change if kind == "IPAddressPool" else validate_advertisement_change
    verdict: ConfigVerdict = validate(
        request.operation,
        request.object,
        request.old_object,
        cluster=snapshot.cluster,
        settings=settings,
        metallb_namespace=metallb_namespace,
    )
    name = f"{request.namespace}/{request.name}"
    key = "pool" if kind == "IPAddressPool" else "advertisement"  # log vocabulary: name the object by its kind
    details = {"user": request.username, "operation": request.operation, "kind": kind, key: name}
    if not verdict.allowed:
        return Outcome(
            False,
            Result.DENIED,
            message=messages.problems_message(kind, verdict.problems),
            reason="invalid-config",
            log=True,
            details=details,
        )
    warnings = [messages.note_text(n) for n in verdict.notes]
    if not snapshot.synced and request.operation != "DELETE":
        warnings.append(messages.NOT_SYNCED_CONFIG)
    if warnings:
        reason = ",".join(sorted({n.code.value for n in verdict.notes})) or "not-synced"
        return Outcome(True, Result.WARNED, tuple(warnings), reason=reason, log=True, details=details)
    return ALLOWED


def cache_fallback(outcome: Outcome, failure: str) -> Outcome:
    """`outcome`, decided on the watched cache because the live read of the config failed, with a first warning
    that says so (issue 7, item 4). A denial keeps its message; the warning travels with it."""
    result = Result.WARNED if outcome.result is Result.ALLOWED else outcome.result
    return replace(
        outcome,
        result=result,
        warnings=(messages.cache_fallback(failure), *outcome.warnings),
        reason=outcome.reason or "cache-fallback",
        log=True,
    )
