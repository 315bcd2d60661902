"""The planner on whole clusters: the acceptance scenarios of the foundation issue."""

from __future__ import annotations

from typing import Any

import pytest

from l2core.diagnose import fixes
from l2core.eligibility import Reason
from l2core.model import EligibilitySettings, LabelSemantics
from l2core.parse import build_cluster
from l2core.plan import Plan, Planner, Status, diff, node_changes, plan
from l2core.policy import Action, Mode, NodePolicy, NodeRequest, decide_node
from tests.builders import (
    EXCLUDE,
    NOT_SERVING,
    READY,
    TERMINATING_SERVING,
    advertisement,
    endpoints,
    fixture,
    node,
    pool,
    service,
)
from tests.core.election_reference import reference_owner

PRESENCE = EligibilitySettings()


def make(objects: list[Any], settings: EligibilitySettings = PRESENCE, alive: list[str] | None = None) -> Plan:
    parsed = build_cluster(objects)
    assert parsed.problems == (), parsed.problems
    return plan(parsed.cluster, settings, alive=alive)


def reasons(p: Plan, key: str) -> dict[str, set[Reason]]:
    return {v.name: set(v.reasons) for v in p.verdicts(key)}


BASE = [pool("lan", "192.0.2.100-192.0.2.120", "2001:db8::100/120"), advertisement("lan", ipAddressPools=["lan"])]


def kubeadm_single_node() -> list[Any]:
    return [
        node("cp-1", {"node-role.kubernetes.io/control-plane": "", EXCLUDE: ""}),
        service("web", ["192.0.2.100"]),
        endpoints("web", {"cp-1": READY}),
        *BASE,
    ]


def test_single_node_kubeadm_breakage_leaves_nobody() -> None:
    p = make(kubeadm_single_node())
    sp = p.services["default/web"]
    assert (sp.status, sp.announcer, sp.pool) == (Status.NOBODY, None, "lan")
    assert reasons(p, "default/web") == {"cp-1": {Reason.EXCLUDED_BY_LABEL}}
    (fix,) = fixes(p, "default/web")
    assert f"remove label {EXCLUDE} from node cp-1" in fix and "--ignore-exclude-lb" in fix


def test_single_node_kubeadm_with_the_ignore_switch_is_announced() -> None:
    p = make(kubeadm_single_node(), EligibilitySettings(ignore_exclude_label=True))
    assert p.services["default/web"].announcer == "cp-1"
    assert fixes(p, "default/web") == []


def test_label_semantics_false_value() -> None:
    objs = kubeadm_single_node()
    objs[0] = node("cp-1", {EXCLUDE: "false"})
    assert make(objs).services["default/web"].announcer is None  # MetalLB: presence excludes, even "false"
    true_only = EligibilitySettings(label_semantics=LabelSemantics.TRUE_ONLY)
    assert make(objs, true_only).services["default/web"].announcer == "cp-1"


def test_the_captured_cluster_announces_from_a_worker() -> None:
    names = ["nodes", "services", "endpointslices", "ipaddresspools", "l2advertisements"]
    p = plan(build_cluster([fixture(f"api/list-{n}.json") for n in names]).cluster, PRESENCE)
    assert list(p.services) == ["default/web"]  # the ClusterIP "kubernetes" service is not planned
    assert p.services["default/web"].announcer == reference_owner(["worker-1", "worker-2"], "192.0.2.100")
    assert reasons(p, "default/web")["cp-1"] == {Reason.EXCLUDED_BY_LABEL}


def three_nodes(**labels: dict[str, str]) -> list[Any]:
    return [node(n, labels.get(n, {})) for n in ("n1", "n2", "n3")]


def test_etp_local_counts_terminating_but_serving_endpoints() -> None:
    objs = [
        *three_nodes(),
        service("web", ["192.0.2.100"], local=True),
        endpoints("web", {"n2": TERMINATING_SERVING, "n3": NOT_SERVING}),
        *BASE,
    ]
    p = make(objs)
    assert p.services["default/web"].announcer == "n2"
    r = reasons(p, "default/web")
    assert r == {"n1": {Reason.NO_LOCAL_ENDPOINT}, "n2": set(), "n3": {Reason.NO_LOCAL_ENDPOINT}}


def test_no_serving_endpoint_at_all_rejects_every_node() -> None:
    objs = [*three_nodes(), service("web", ["192.0.2.100"]), endpoints("web", {"n1": NOT_SERVING}), *BASE]
    p = make(objs)
    assert p.services["default/web"].status is Status.NOBODY
    assert all(r == {Reason.NO_SERVING_ENDPOINT} for r in reasons(p, "default/web").values())
    assert "no ready or serving endpoint" in fixes(p, "default/web")[0]


def test_ready_unset_counts_as_serving() -> None:
    objs = [*three_nodes(), service("web", ["192.0.2.100"], local=True), endpoints("web", {"n3": {}}), *BASE]
    assert make(objs).services["default/web"].announcer == "n3"


def test_dual_stack_elects_once_on_the_first_ip() -> None:
    objs = [*three_nodes(), service("dns", ["192.0.2.102", "2001:db8::102"]), endpoints("dns", {"n1": READY}), *BASE]
    p = make(objs)
    sp = p.services["default/dns"]
    assert sp.announcer == reference_owner(["n1", "n2", "n3"], "192.0.2.102")
    assert p.announcements(sp.announcer) == {"192.0.2.102": None, "2001:db8::102": None}


def test_node_selectors_restrict_candidates() -> None:
    objs = [
        *three_nodes(n1={"zone": "a"}, n2={"zone": "b"}, n3={"zone": "b"}),
        service("web", ["192.0.2.100"]),
        endpoints("web", {"n1": READY}),
        pool("lan", "192.0.2.100/30"),
        advertisement("zone-b", ipAddressPools=["lan"], nodeSelectors=[{"matchLabels": {"zone": "b"}}]),
    ]
    p = make(objs)
    assert p.services["default/web"].announcer == reference_owner(["n2", "n3"], "192.0.2.100")
    assert reasons(p, "default/web")["n1"] == {Reason.NOT_SELECTED}


def test_service_selectors_choose_the_advertisement() -> None:
    objs = [
        *three_nodes(n1={"zone": "a"}, n2={"zone": "b"}, n3={"zone": "b"}),
        service("public", ["192.0.2.100"], labels={"exposure": "public"}),
        service("other", ["192.0.2.101"]),
        endpoints("public", {"n1": READY}),
        endpoints("other", {"n1": READY}),
        pool("lan", "192.0.2.100/30"),
        advertisement(
            "pub",
            ipAddressPools=["lan"],
            serviceSelectors=[{"matchLabels": {"exposure": "public"}}],
            nodeSelectors=[{"matchLabels": {"zone": "a"}}],
        ),
    ]
    p = make(objs)
    assert p.services["default/public"].announcer == "n1"
    other = p.services["default/other"]
    assert other.status is Status.NOBODY and other.selection == ()
    assert all(r == {Reason.NOT_SELECTED} for r in reasons(p, "default/other").values())
    # An advertisement exists for the pool; its serviceSelectors leave this service out (found in review: the fix
    # used to say "create an L2Advertisement").
    assert fixes(p, "default/other") == [
        "the L2Advertisements for pool lan all have serviceSelectors that leave this service out: "
        "label the service to match one, or add an advertisement for it"
    ]


def test_a_pool_without_any_advertisement_and_pools_of_other_namespaces() -> None:
    objs = [
        *three_nodes(),
        service("web", ["192.0.2.100"]),
        endpoints("web", {"n1": READY}),
        pool("lan", "192.0.2.100/30"),
        # Same pool name in another namespace: MetalLB reads one namespace, so this advertisement is not for "lan".
        advertisement("lan", namespace="elsewhere", ipAddressPools=["lan"]),
    ]
    p = make(objs)
    assert p.services["default/web"].status is Status.NOBODY
    assert fixes(p, "default/web") == ["create an L2Advertisement for pool lan: none announces it"]


def test_pool_selectors_and_interfaces() -> None:
    objs = [
        *three_nodes(n1={"zone": "a"}),
        service("web", ["192.0.2.100"]),
        endpoints("web", {"n1": READY}),
        pool("lan", "192.0.2.100/30", labels={"tier": "public"}),
        advertisement(
            "a",
            ipAddressPoolSelectors=[{"matchLabels": {"tier": "public"}}],
            interfaces=["eth1"],
            nodeSelectors=[{"matchLabels": {"zone": "a"}}],
        ),
    ]
    p = make(objs)
    assert p.services["default/web"].announcer == "n1"
    assert p.interfaces_for("default/web", "n1") == frozenset({"eth1"})
    assert p.announcements("n1") == {"192.0.2.100": frozenset({"eth1"})}


def test_preferred_nodes_win_over_the_hash() -> None:
    natural = reference_owner(["n1", "n2", "n3"], "192.0.2.100")
    preferred = next(n for n in ("n1", "n2", "n3") if n != natural)
    objs = [
        *three_nodes(**{preferred: {"rack": "fast"}}),
        service("web", ["192.0.2.100"]),
        endpoints("web", {"n1": READY}),
        pool("lan", "192.0.2.100/30"),
        advertisement("lan", preferredNodeSelectors=[{"weight": 10, "preference": {"matchLabels": {"rack": "fast"}}}]),
    ]
    assert make(objs).services["default/web"].announcer == preferred


def test_speaker_liveness_network_and_several_reasons_per_node() -> None:
    objs = [
        node("n1", {EXCLUDE: "true"}, unavailable=True),
        node("n2"),
        service("web", ["192.0.2.100"]),
        endpoints("web", {"n1": READY}),
        *BASE,
    ]
    p = make(objs, alive=["n1"])
    assert p.services["default/web"].status is Status.NOBODY
    r = reasons(p, "default/web")
    assert r["n1"] == {Reason.EXCLUDED_BY_LABEL, Reason.NETWORK_UNAVAILABLE}
    assert r["n2"] == {Reason.SPEAKER_NOT_ALIVE}
    assert fixes(p, "default/web") == ["start the speaker on node n2"]


def test_ip_outside_every_pool_and_ips_across_pools() -> None:
    objs = [
        *three_nodes(),
        service("stray", ["203.0.113.9"]),
        service("split", ["192.0.2.100", "2001:db8:ffff::1"]),
        endpoints("stray", {"n1": READY}),
        endpoints("split", {"n1": READY}),
        pool("v4", "192.0.2.100/30"),
        pool("v6", "2001:db8:ffff::/64"),
        advertisement("all"),
    ]
    p = make(objs)
    assert p.services["default/stray"].service_reasons == {Reason.IP_IN_NO_POOL}
    assert p.services["default/split"].service_reasons == {Reason.IPS_SPAN_SEVERAL_POOLS}
    assert all(r == {Reason.IP_IN_NO_POOL} for r in reasons(p, "default/stray").values())
    assert "203.0.113.9" in fixes(p, "default/stray")[0]


def test_shared_ip_with_service_selectors_is_refused() -> None:
    objs = [
        *three_nodes(),
        service("a", ["192.0.2.100"], annotations={"metallb.io/allow-shared-ip": "k"}, labels={"x": "y"}),
        endpoints("a", {"n1": READY}),
        pool("lan", "192.0.2.100/30"),
        advertisement("sel", serviceSelectors=[{"matchLabels": {"x": "y"}}]),
    ]
    p = make(objs)
    assert p.services["default/a"].service_reasons == {Reason.SHARED_IP_WITH_SERVICE_SELECTORS}


def test_load_balancer_class_and_pending_services() -> None:
    objs = [*three_nodes(), service("other", ["192.0.2.100"], lb_class="example.com/lb"), service("pending", []), *BASE]
    p = make(objs)
    assert p.services["default/other"].status is Status.NOT_OURS
    assert p.services["default/pending"].status is Status.NO_IP
    mine = make(objs, EligibilitySettings(load_balancer_class="example.com/lb"))
    assert mine.services["default/other"].service_reasons == {Reason.NO_SERVING_ENDPOINT}  # ours now, no pods
    assert mine.services["default/pending"].status is Status.NOT_OURS


def test_diff_tells_each_node_what_to_start_and_stop() -> None:
    objs = [*three_nodes(), service("web", ["192.0.2.100", "2001:db8::100"]), endpoints("web", {"n1": READY}), *BASE]
    parsed = build_cluster(objs)
    planner = Planner(parsed.cluster, PRESENCE)
    before = planner.plan
    owner = before.services["default/web"].announcer
    assert owner is not None
    d = planner.upsert_node(parsed.cluster.nodes[owner].__class__(owner, labels={EXCLUDE: ""}))
    after = planner.plan
    new_owner = after.services["default/web"].announcer
    assert new_owner not in (None, owner)
    assert d == diff(before, after)
    assert node_changes(before, after, owner) == ({}, frozenset({"192.0.2.100", "2001:db8::100"}))
    assert node_changes(before, after, new_owner) == ({"192.0.2.100": None, "2001:db8::100": None}, frozenset())


def test_a_shared_ip_stays_announced_while_one_of_its_services_remains() -> None:
    shared = {"metallb.io/allow-shared-ip": "k"}
    objs = [
        node("n1"),
        service("dns-udp", ["192.0.2.100"], annotations=shared),
        service("dns-tcp", ["192.0.2.100"], annotations=shared),
        endpoints("dns-udp", {"n1": READY}),
        endpoints("dns-tcp", {"n1": READY}),
        *BASE,
    ]
    parsed = build_cluster(objs)
    planner = Planner(parsed.cluster, PRESENCE)
    before = planner.plan
    assert before.announcements("n1") == {"192.0.2.100": None}
    planner.delete_service("default/dns-tcp")
    # Found in review: a move-based view would stop 192.0.2.100 although dns-udp still needs it.
    assert node_changes(before, planner.plan, "n1") == ({}, frozenset())


# ----- a node being drained: the fix hints follow the webhook's strip policy --------------------------------------


def _drain_cluster(value: str, *, unschedulable: bool) -> tuple[Plan, Any]:
    drained = node("w1", {EXCLUDE: value})
    if unschedulable:
        drained["spec"] = {"unschedulable": True}
    objs = [*BASE, drained, node("w2"), service("web", "192.0.2.100", local=True), endpoints("web", ["w1"])]
    parsed = build_cluster(objs)
    return plan(parsed.cluster, PRESENCE), parsed.cluster.nodes


@pytest.mark.parametrize(("value", "unschedulable"), [("karpenter", True), ("karpenter", False), ("", True)])
def test_a_draining_node_is_never_told_to_lose_its_label(value: str, unschedulable: bool) -> None:
    p, nodes = _drain_cluster(value, unschedulable=unschedulable)
    why = "is being disrupted by Karpenter (label value karpenter)" if value else "is being drained (unschedulable)"
    assert fixes(p, "default/web", nodes=nodes) == [
        f"node w1 {why} and is expected to leave: keep its label and let the IP move to another node",
        "run a ready pod of the service on node w2",
    ]


@pytest.mark.parametrize("value", ["karpenter", "", "true", "false"])
@pytest.mark.parametrize("unschedulable", [True, False])
def test_explain_advises_removing_the_label_exactly_when_the_strip_policy_would_strip_it(
    value: str, unschedulable: bool
) -> None:
    p, nodes = _drain_cluster(value, unschedulable=unschedulable)
    request = NodeRequest("w1", "UPDATE", nodes["w1"].labels, {}, unschedulable=unschedulable)
    strips = decide_node(request, NodePolicy(Mode.STRIP), impact=None).action is Action.STRIP
    advised = any(f.startswith(f"remove label {EXCLUDE} from node w1") for f in fixes(p, "default/web", nodes=nodes))
    assert advised == strips, (value, unschedulable)
