"""The node label policy: trigger, impact (checked against the full planner), decisions, the strip patch."""

from __future__ import annotations

from typing import Any

import jsonpatch  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

from l2core.model import EXCLUDE_LABEL, Cluster, EligibilitySettings, LabelSemantics, Node
from l2core.parse import parse_node
from l2core.plan import Move, PlanIndex, diff, plan
from l2core.policy import (
    ALLOW_EXCLUDE_ANNOTATION,
    Action,
    Exemption,
    Impact,
    Ineffective,
    LabelChange,
    Mode,
    NodePolicy,
    NodeRequest,
    Requester,
    StripScope,
    decide_node,
    exclude_label_change,
    node_impact,
    strip_patch,
)
from l2core.selectors import parse_selector
from tests.builders import advertisement, cluster, endpoints, excluded, node, pool, service

PRESENCE = EligibilitySettings()
TRUE_ONLY = EligibilitySettings(label_semantics=LabelSemantics.TRUE_ONLY)
IGNORING = EligibilitySettings(ignore_exclude_label=True)


def single_node(cp: dict[str, Any]) -> Cluster:
    """The single-node case: cp-1 (as given) announces 192.0.2.100 for default/web, its only endpoint."""
    return cluster(
        cp,
        service("web", "192.0.2.100"),
        endpoints("web", ["cp-1"]),
        pool("lan", "192.0.2.100/32"),
        advertisement("lan"),
    )


def _node(raw: dict[str, object]) -> Node:
    n, problems = parse_node(raw)
    assert n is not None and not problems
    return n


def _planner_moves(c, changed: Node, settings: EligibilitySettings = PRESENCE) -> tuple[Move, ...]:  # type: ignore[no-untyped-def]
    """The reference: two full plans and their diff."""
    from dataclasses import replace

    after = replace(c, nodes={**c.nodes, changed.name: changed})
    return diff(plan(c, settings), plan(after, settings)).moves


# ----- trigger ---------------------------------------------------------------------------------------------------


def test_label_change_kinds() -> None:
    assert exclude_label_change({}, {EXCLUDE_LABEL: ""}) is LabelChange.ADDED
    assert exclude_label_change(None, {EXCLUDE_LABEL: "true"}) is LabelChange.ADDED
    assert exclude_label_change({EXCLUDE_LABEL: ""}, {EXCLUDE_LABEL: "true"}) is LabelChange.CHANGED
    assert exclude_label_change({EXCLUDE_LABEL: "true"}, {}) is LabelChange.REMOVED
    assert exclude_label_change({EXCLUDE_LABEL: "x"}, {EXCLUDE_LABEL: "x", "a": "b"}) is LabelChange.NONE
    assert exclude_label_change(None, {"a": "b"}) is LabelChange.NONE


# ----- impact against the planner -------------------------------------------------------------------------------


def test_single_node_cluster_loses_every_ip() -> None:
    c = cluster(
        node("cp-1", ip="10.0.0.1"),
        service("web", "192.0.2.100"),
        endpoints("web", ["cp-1"]),
        pool("lan", "192.0.2.100-192.0.2.120"),
        advertisement("lan"),
    )
    changed = _node(excluded("cp-1"))
    impact = node_impact(PlanIndex(plan(c, PRESENCE)), changed, advertisements=c.advertisements)
    assert impact.moves == (Move("default/web", ("192.0.2.100",), "cp-1", None),)
    assert impact.moves == _planner_moves(c, changed)
    assert impact.losing == impact.moves and impact.moving == ()


def test_two_nodes_ip_moves_to_the_other_node() -> None:
    c = cluster(
        node("cp-1"),
        node("worker-2"),
        *[service(f"s{i}", f"192.0.2.{100 + i}") for i in range(10)],
        *[endpoints(f"s{i}", ["cp-1", "worker-2"]) for i in range(10)],
        pool("lan", "192.0.2.100-192.0.2.120"),
        advertisement("lan"),
    )
    p = plan(c, PRESENCE)
    owned = sorted(k for k, sp in p.services.items() if sp.announcer == "cp-1")
    assert owned, "the hash spreads ten services over both nodes"
    changed = _node(excluded("cp-1"))
    impact = node_impact(PlanIndex(p), changed, advertisements=c.advertisements)
    assert [m.service for m in impact.moves] == owned
    assert all(m.before == "cp-1" and m.after == "worker-2" for m in impact.moves)
    assert impact.moves == _planner_moves(c, changed)


def test_announcer_ignoring_the_label_means_no_impact() -> None:
    c = single_node(node("cp-1"))
    changed = _node(excluded("cp-1"))
    impact = node_impact(PlanIndex(plan(c, IGNORING)), changed, advertisements=c.advertisements)
    assert impact.moves == () == _planner_moves(c, changed, IGNORING)


def test_true_only_false_value_does_not_move_anything() -> None:
    c = single_node(node("cp-1"))
    changed = _node(excluded("cp-1", "false"))
    assert node_impact(PlanIndex(plan(c, TRUE_ONLY)), changed, advertisements=c.advertisements).moves == ()
    assert node_impact(PlanIndex(plan(c, PRESENCE)), changed, advertisements=c.advertisements).moves != ()


def test_removing_the_label_brings_ips_back() -> None:
    c = single_node(excluded("cp-1"))
    changed = _node(node("cp-1"))
    impact = node_impact(PlanIndex(plan(c, PRESENCE)), changed, advertisements=c.advertisements)
    assert impact.moves == (Move("default/web", ("192.0.2.100",), None, "cp-1"),) == _planner_moves(c, changed)


_NAMES = ["cp-1", "worker-1", "worker-2", "worker-3"]


@st.composite
def _clusters(draw: st.DrawFn):  # type: ignore[no-untyped-def]
    docs: list[dict[str, object]] = []
    names = draw(st.lists(st.sampled_from(_NAMES), min_size=1, max_size=4, unique=True))
    for n in names:
        labels = {}
        if draw(st.booleans()):
            labels[EXCLUDE_LABEL] = draw(st.sampled_from(["", "true", "false"]))
        if draw(st.booleans()):
            labels["zone"] = draw(st.sampled_from(["a", "b"]))
        docs.append(node(n, labels=labels, unavailable=draw(st.booleans()) and draw(st.booleans())))
    for i in range(draw(st.integers(1, 8))):
        docs.append(service(f"s{i}", f"192.0.2.{100 + i}", local=draw(st.booleans())))
        docs.append(endpoints(f"s{i}", draw(st.lists(st.sampled_from(_NAMES), max_size=3, unique=True))))
    docs.append(pool("lan", "192.0.2.100-192.0.2.120"))
    sel = draw(
        st.sampled_from(
            [
                None,
                [{"matchLabels": {"zone": "a"}}],
                [{"matchExpressions": [{"key": EXCLUDE_LABEL, "operator": "DoesNotExist"}]}],
            ]
        )
    )
    pref = draw(st.sampled_from([None, [{"weight": 10, "preference": {"matchLabels": {"zone": "b"}}}]]))
    docs.append(advertisement("lan", nodeSelectors=sel, preferredNodeSelectors=pref))
    if draw(st.booleans()):
        docs.append(advertisement("other", nodeSelectors=[{"matchLabels": {"zone": "b"}}]))
    target = draw(st.sampled_from(_NAMES))
    new_labels = {}
    if draw(st.booleans()):
        new_labels[EXCLUDE_LABEL] = draw(st.sampled_from(["", "true", "false"]))
    if draw(st.booleans()):
        new_labels["zone"] = draw(st.sampled_from(["a", "b"]))
    settings_ = draw(st.sampled_from([PRESENCE, TRUE_ONLY, IGNORING]))
    return cluster(*docs), _node(node(target, labels=new_labels)), settings_


@settings(max_examples=300, deadline=None)
@given(_clusters())
def test_impact_equals_the_planner_diff(case) -> None:  # type: ignore[no-untyped-def]
    c, changed, settings_ = case
    impact = node_impact(PlanIndex(plan(c, settings_)), changed, advertisements=c.advertisements)
    reference = tuple(m for m in _planner_moves(c, changed, settings_) if m.before != m.after)
    assert impact.moves == reference


# ----- decisions -------------------------------------------------------------------------------------------------


def _request(
    value: str | None = "",
    *,
    old: str | None = None,
    unschedulable: bool = False,
    annotations: dict[str, str] | None = None,
    user: str = "admin",
    groups: tuple[str, ...] = (),
    extra_labels: dict[str, str] | None = None,
) -> NodeRequest:
    labels = {"kubernetes.io/hostname": "cp-1", **(extra_labels or {})}
    old_labels = dict(labels)
    if value is not None:
        labels[EXCLUDE_LABEL] = value
    if old is not None:
        old_labels[EXCLUDE_LABEL] = old
    return NodeRequest(
        "cp-1",
        "UPDATE",
        labels,
        old_labels,
        annotations=annotations or {},
        unschedulable=unschedulable,
        requester=Requester(user, groups),
    )


IMPACT = Impact((Move("default/web", ("192.0.2.100",), "cp-1", None),))


def test_off_mode_and_unrelated_changes_allow_silently() -> None:
    assert decide_node(_request(), NodePolicy(Mode.OFF), impact=IMPACT).action is Action.ALLOW
    unrelated = _request(None, extra_labels={"a": "b"})
    for mode in Mode:
        assert decide_node(unrelated, NodePolicy(mode), impact=None).action is Action.ALLOW


def test_removal_never_warns() -> None:
    d = decide_node(_request(None, old=""), NodePolicy(Mode.DENY), impact=IMPACT)
    assert d.action is Action.ALLOW and d.change is LabelChange.REMOVED


def test_warn_mode_warns_with_the_impact() -> None:
    d = decide_node(_request(), NodePolicy(Mode.WARN), impact=IMPACT)
    assert d.action is Action.WARN and d.impact is IMPACT and d.ineffective is None and not d.patch


def test_strip_mode_strips_with_a_guarded_patch() -> None:
    req = _request("true")
    d = decide_node(req, NodePolicy(Mode.STRIP), impact=IMPACT)
    assert d.action is Action.STRIP
    pointer = "/metadata/labels/node.kubernetes.io~1exclude-from-external-load-balancers"
    assert d.patch == ({"op": "test", "path": pointer, "value": "true"}, {"op": "remove", "path": pointer})
    obj = {"metadata": {"labels": dict(req.labels)}}
    patched = jsonpatch.apply_patch(obj, list(d.patch))
    assert patched["metadata"]["labels"] == {"kubernetes.io/hostname": "cp-1"}
    assert strip_patch(patched["metadata"]["labels"]) == ()


def test_strip_exemptions_fall_back_to_warn() -> None:
    scope = StripScope(exempt_users=["system:serviceaccount:karpenter:*"])  # type: ignore[arg-type]
    scope = StripScope(exempt_users=("system:serviceaccount:karpenter:*",))
    cases = {
        Exemption.KARPENTER: _request("karpenter"),
        Exemption.UNSCHEDULABLE: _request(unschedulable=True),
        Exemption.ANNOTATION: _request(annotations={ALLOW_EXCLUDE_ANNOTATION: "true"}),
        Exemption.EXEMPT_REQUESTER: _request(user="system:serviceaccount:karpenter:karpenter"),
    }
    for mode in (Mode.STRIP, Mode.DENY):
        for exemption, req in cases.items():
            d = decide_node(req, NodePolicy(mode, scope), impact=IMPACT)
            assert (d.action, d.exemption, d.patch) == (Action.WARN, exemption, ()), (mode, exemption)


def test_strip_scope_by_node_selector_and_requester() -> None:
    cp_only, _ = parse_selector(
        {"matchExpressions": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]}, obj="", path=""
    )
    policy = NodePolicy(Mode.STRIP, StripScope(node_selector=cp_only, groups=("system:masters",)))
    cp = {"node-role.kubernetes.io/control-plane": ""}
    assert (
        decide_node(_request(extra_labels=cp, groups=("system:masters",)), policy, impact=None).action is Action.STRIP
    )
    worker = decide_node(_request(groups=("system:masters",)), policy, impact=None)
    assert (worker.action, worker.exemption) == (Action.WARN, Exemption.NODE_OUT_OF_SCOPE)
    other = decide_node(_request(extra_labels=cp, groups=("devs",)), policy, impact=None)
    assert (other.action, other.exemption) == (Action.WARN, Exemption.REQUESTER_OUT_OF_SCOPE)


def test_deny_mode_denies() -> None:
    d = decide_node(_request(), NodePolicy(Mode.DENY), impact=IMPACT)
    assert d.action is Action.DENY and d.impact is IMPACT


def test_ineffective_labels_warn_instead_of_enforcing() -> None:
    ignoring = decide_node(_request(), NodePolicy(Mode.STRIP, eligibility=IGNORING), impact=None)
    assert (ignoring.action, ignoring.ineffective) == (Action.WARN, Ineffective.IGNORED_BY_SETTING)
    false = decide_node(_request("false"), NodePolicy(Mode.DENY, eligibility=TRUE_ONLY), impact=None)
    assert (false.action, false.ineffective) == (Action.WARN, Ineffective.FALSE_UNDER_TRUE_ONLY)
    already = decide_node(_request("true", old=""), NodePolicy(Mode.STRIP), impact=None)
    assert (already.action, already.ineffective, already.change) == (
        Action.WARN,
        Ineffective.ALREADY_EXCLUDED,
        LabelChange.CHANGED,
    )
    # true-only: "false" -> "true" newly excludes, so it is enforced.
    flips = decide_node(_request("true", old="false"), NodePolicy(Mode.STRIP, eligibility=TRUE_ONLY), impact=None)
    assert flips.action is Action.STRIP
