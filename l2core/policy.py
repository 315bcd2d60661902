"""The node label policy: what to do when the exclude label appears on a Node, and what that would break.

Someone runs `kubectl label node cp-1 node.kubernetes.io/exclude-from-external-load-balancers=`. Under MetalLB's
rule the node stops announcing at once, and on a single-node cluster every LoadBalancer IP goes dark. This module
decides, as pure functions over the core's dataclasses:

- `exclude_label_change`: did the label appear, change value, or go away (the trigger; everything else is the
  fast path);
- `node_impact`: which services would move, and to whom, if this node had these labels: a "what if" evaluated on
  an existing `Plan` without replanning the world (see `PlanIndex`);
- `decide_node`: the action under a `NodePolicy` (off, warn, strip, deny), with strip/deny scoped by a node
  selector and requester patterns and never applied to Karpenter, draining nodes (`drain_exemption`, which
  `l2core.diagnose` shares), nodes carrying the override annotation, or exempt requesters;
- `strip_patch`: the JSON Patch that removes only the exclude label, guarded by a `test` op.

It returns decisions with reasons; the caller turns them into warnings, patches, denials, logs and metrics. It must
not do I/O, log, read the clock or the environment, and imports only the standard library and `l2core`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Any

from l2core.eligibility import label_excludes
from l2core.model import EXCLUDE_LABEL, EligibilitySettings, L2Advertisement, Node
from l2core.plan import Move, PlanIndex, node_change
from l2core.selectors import LabelSelector

ALLOW_EXCLUDE_ANNOTATION = "l2guard.io/allow-exclude"  # value "true": the admin really means it
KARPENTER_VALUE = "karpenter"
KUBELET_GROUPS = ("system:nodes",)  # Karpenter sets the label to this value while it disrupts a node
# RFC 6901: "~" is written "~0" and "/" is written "~1" in a JSON Pointer.
EXCLUDE_LABEL_POINTER = "/metadata/labels/" + EXCLUDE_LABEL.replace("~", "~0").replace("/", "~1")


class Mode(StrEnum):
    OFF = "off"
    WARN = "warn"
    STRIP = "strip"
    DENY = "deny"


class LabelChange(StrEnum):
    NONE = "none"  # absent before and after, or the same value
    ADDED = "added"
    CHANGED = "changed"
    REMOVED = "removed"


class Action(StrEnum):
    ALLOW = "allow"  # nothing to say
    WARN = "warn"
    STRIP = "strip"
    DENY = "deny"


class Exemption(StrEnum):
    """Why an enforcing mode (strip, deny) fell back to warn for this request."""

    KARPENTER = "karpenter-value"
    UNSCHEDULABLE = "node-unschedulable"
    ANNOTATION = "allow-exclude-annotation"
    EXEMPT_REQUESTER = "exempt-requester"
    NODE_OUT_OF_SCOPE = "node-out-of-scope"
    REQUESTER_OUT_OF_SCOPE = "requester-out-of-scope"


class Ineffective(StrEnum):
    """Why the label, although it changed, does not change what the announcer does."""

    IGNORED_BY_SETTING = "announcer-ignores-label"  # --ignore-exclude-lb
    FALSE_UNDER_TRUE_ONLY = "false-under-true-only"  # true-only semantics and the value is "false"
    ALREADY_EXCLUDED = "already-excluded"  # the old value excluded the node already


@dataclass(frozen=True, slots=True)
class Requester:
    username: str = ""
    groups: tuple[str, ...] = ()


def _matches_any(patterns: Iterable[str], values: Iterable[str]) -> bool:
    values = tuple(values)
    return any(fnmatchcase(v, p) for p in patterns for v in values)


@dataclass(frozen=True, slots=True)
class StripScope:
    """Which requests an enforcing mode applies to. Patterns are shell-style (`system:serviceaccount:kube-*`).

    Empty node_selector, users and groups mean every node and every requester. A requester is in scope when it
    matches a user pattern or a group pattern (either list, when set); the exempt lists always win."""

    node_selector: LabelSelector | None = None
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    exempt_users: tuple[str, ...] = ()
    exempt_groups: tuple[str, ...] = ()
    # Kubelets register Nodes (with --node-labels); refusing or rewriting that would keep a node out of the cluster.
    # Separate from exempt_groups, so that setting an exempt list does not silently drop this protection.
    exempt_kubelets: bool = True

    def requester_in_scope(self, who: Requester) -> bool:
        if not self.users and not self.groups:
            return True
        return _matches_any(self.users, [who.username]) or _matches_any(self.groups, who.groups)

    def requester_exempt(self, who: Requester) -> bool:
        groups = (*self.exempt_groups, *KUBELET_GROUPS) if self.exempt_kubelets else self.exempt_groups
        return _matches_any(self.exempt_users, [who.username]) or _matches_any(groups, who.groups)


@dataclass(frozen=True, slots=True)
class NodePolicy:
    mode: Mode = Mode.WARN
    scope: StripScope = field(default_factory=StripScope)
    eligibility: EligibilitySettings = field(default_factory=EligibilitySettings)


def exclude_label_change(old: Mapping[str, str] | None, new: Mapping[str, str] | None) -> LabelChange:
    """How the exclude label moved between the old and the new object (None: the object did not exist)."""
    before = old.get(EXCLUDE_LABEL) if old is not None else None
    after = new.get(EXCLUDE_LABEL) if new is not None else None
    if before == after:
        return LabelChange.NONE
    if before is None:
        return LabelChange.ADDED
    if after is None:
        return LabelChange.REMOVED
    return LabelChange.CHANGED


def ineffective_reason(
    old_labels: Mapping[str, str] | None, new_labels: Mapping[str, str], settings: EligibilitySettings
) -> Ineffective | None:
    """Why adding/changing the label changes nothing for the announcer, or None when it newly excludes the node."""
    if settings.ignore_exclude_label:
        return Ineffective.IGNORED_BY_SETTING
    if not label_excludes(new_labels, settings):
        # Only true-only semantics can make a present label not exclude.
        return Ineffective.FALSE_UNDER_TRUE_ONLY
    if old_labels is not None and label_excludes(old_labels, settings):
        return Ineffective.ALREADY_EXCLUDED
    return None


def strip_patch(labels: Mapping[str, str]) -> tuple[dict[str, Any], ...]:
    """JSON Patch (RFC 6902) removing only the exclude label; empty when there is nothing to remove (idempotent:
    a loop re-adding the label gets one patch per attempt, never a patch on an object without it).

    The `test` op makes the patch fail rather than remove a value it did not see."""
    if EXCLUDE_LABEL not in labels:
        return ()
    return (
        {"op": "test", "path": EXCLUDE_LABEL_POINTER, "value": labels[EXCLUDE_LABEL]},
        {"op": "remove", "path": EXCLUDE_LABEL_POINTER},
    )


# ----- impact: "what if this node had these labels" -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Impact:
    """The services whose announcer would change, sorted by service key."""

    moves: tuple[Move, ...] = ()

    @property
    def losing(self) -> tuple[Move, ...]:
        """Services left with no announcing node."""
        return tuple(m for m in self.moves if m.after is None)

    @property
    def moving(self) -> tuple[Move, ...]:
        return tuple(m for m in self.moves if m.after is not None)


def node_impact(index: PlanIndex, node: Node, *, advertisements: Mapping[str, L2Advertisement]) -> Impact:
    """The moves that replacing the plan's node `node.name` by `node` would cause: `l2core.plan.node_change`, the
    same mechanism the planner applies on a real update, evaluated on an immutable plan. `advertisements` must be
    the ones the plan was built from; the node's speaker liveness is taken from the plan."""
    return Impact(node_change(index, node.name, node, advertisements=advertisements).moves)


# ----- the decision ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeRequest:
    """What the policy reads from one admission request for a Node (either `nodes` or `nodes/status`)."""

    name: str
    operation: str  # CREATE, UPDATE
    labels: Mapping[str, str]
    old_labels: Mapping[str, str] | None  # None on CREATE
    annotations: Mapping[str, str] = field(default_factory=dict)
    unschedulable: bool = False
    requester: Requester = field(default_factory=Requester)

    @property
    def change(self) -> LabelChange:
        return exclude_label_change(self.old_labels, self.labels)

    @property
    def value(self) -> str | None:
        return self.labels.get(EXCLUDE_LABEL)


@dataclass(frozen=True, slots=True)
class NodeDecision:
    action: Action
    change: LabelChange
    node: str
    value: str | None = None  # the new label value
    mode: Mode = Mode.WARN
    exemption: Exemption | None = None  # an enforcing mode fell back to warn, and why
    ineffective: Ineffective | None = None  # the label changes nothing for the announcer, and why
    impact: Impact | None = None  # None: unknown (no cluster view yet)
    patch: tuple[dict[str, Any], ...] = ()

    @property
    def triggered(self) -> bool:
        return self.change in (LabelChange.ADDED, LabelChange.CHANGED)


def triggers(request: NodeRequest) -> bool:
    """The fast-path test: only an added or changed exclude label engages the policy. Removal never warns."""
    return request.change in (LabelChange.ADDED, LabelChange.CHANGED)


def drain_exemption(value: str | None, *, unschedulable: bool) -> Exemption | None:
    """Whether a node with this exclude-label value is being drained, and so is expected to leave: Karpenter sets
    the value `karpenter` while it disrupts a node, and a drain cordons it (spec.unschedulable). The strip and deny
    modes never act on such a node, and `l2core.diagnose` never advises removing its label: both ask this."""
    if value == KARPENTER_VALUE:
        return Exemption.KARPENTER
    if unschedulable:
        return Exemption.UNSCHEDULABLE
    return None


def exemption_for(request: NodeRequest, scope: StripScope) -> Exemption | None:
    """Why an enforcing mode must not act on this request, or None when it may."""
    drain = drain_exemption(request.value, unschedulable=request.unschedulable)
    if drain is not None:
        return drain
    if request.annotations.get(ALLOW_EXCLUDE_ANNOTATION, "").strip().lower() == "true":
        return Exemption.ANNOTATION
    if scope.requester_exempt(request.requester):
        return Exemption.EXEMPT_REQUESTER
    if scope.node_selector is not None and not scope.node_selector.matches(request.labels):
        return Exemption.NODE_OUT_OF_SCOPE
    if not scope.requester_in_scope(request.requester):
        return Exemption.REQUESTER_OUT_OF_SCOPE
    return None


def decide_node(request: NodeRequest, policy: NodePolicy, *, impact: Impact | None) -> NodeDecision:
    """The action for one Node request. `impact` comes from `node_impact` (None when there is no cluster view).

    Off, or no trigger: allow. A label the announcer does not act on: warn that it is ignored, never strip or deny.
    Strip and deny fall back to warn on any exemption (see `exemption_for`)."""
    change = request.change
    base = NodeDecision(Action.ALLOW, change, request.name, request.value, policy.mode)
    if policy.mode is Mode.OFF or not triggers(request):
        return base
    ineffective = ineffective_reason(request.old_labels, request.labels, policy.eligibility)
    warn = NodeDecision(
        Action.WARN, change, request.name, request.value, policy.mode, ineffective=ineffective, impact=impact
    )
    if policy.mode is Mode.WARN or ineffective is not None:
        return warn
    exemption = exemption_for(request, policy.scope)
    if exemption is not None:
        return NodeDecision(
            Action.WARN, change, request.name, request.value, policy.mode, exemption=exemption, impact=impact
        )
    if policy.mode is Mode.DENY:
        return NodeDecision(Action.DENY, change, request.name, request.value, policy.mode, impact=impact)
    return NodeDecision(
        Action.STRIP, change, request.name, request.value, policy.mode, impact=impact, patch=strip_patch(request.labels)
    )
