"""The incremental planner must always agree with a plan computed from scratch."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l2core.model import EXCLUDE_LABEL, Cluster, EligibilitySettings, Node
from l2core.parse import build_cluster
from l2core.plan import Plan, Planner, diff, plan
from tests.builders import READY, advertisement, endpoints, node, pool, service

NODES = [f"n{i}" for i in range(6)]
LABEL_CHOICES = st.fixed_dictionaries(
    {},
    optional={
        EXCLUDE_LABEL: st.sampled_from(["", "true", "false", "karpenter"]),
        "zone": st.sampled_from(["a", "b"]),
        "rack": st.sampled_from(["fast", "slow"]),
    },
)


def current(planner: Planner) -> Cluster:
    """The cluster the planner holds now, rebuilt from its tables, so a full replan can be compared with it."""
    slices = {k: s for per in planner._slices_by_service.values() for k, s in per.items()}
    return Cluster(dict(planner._nodes), dict(planner._services), slices, dict(planner._pools), dict(planner._ads))


def cluster(local_nodes: list[str]):  # type: ignore[no-untyped-def]
    objs = [node(n, {"zone": "a" if i % 2 else "b"}) for i, n in enumerate(NODES)]
    for i in range(12):
        local = i % 3 == 0
        objs.append(
            service(
                f"s{i}",
                [f"192.0.2.{100 + i}"] + ([f"2001:db8::{i:x}"] if i % 4 == 0 else []),
                local=local,
                labels={"tier": "gold" if i % 2 else "std"},
            )
        )
        objs.append(endpoints(f"s{i}", {n: READY for n in local_nodes[: 1 + i % 3]}))
    objs += [
        pool("lan", "192.0.2.96/27", "2001:db8::/120"),
        advertisement("all", ipAddressPools=["lan"], nodeSelectors=[{"matchLabels": {"zone": "a"}}]),
        advertisement(
            "gold",
            ipAddressPools=["lan"],
            serviceSelectors=[{"matchLabels": {"tier": "gold"}}],
            preferredNodeSelectors=[{"weight": 5, "preference": {"matchLabels": {"rack": "fast"}}}],
        ),
    ]
    parsed = build_cluster(objs)
    assert parsed.problems == ()
    return parsed.cluster


events = st.lists(
    st.tuples(st.sampled_from([*NODES, "new-1", "new-2"]), st.booleans(), LABEL_CHOICES, st.booleans()),
    min_size=1,
    max_size=15,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.permutations(NODES), events, st.sampled_from(["presence", "true-only"]))
def test_incremental_node_changes_match_a_full_replan(order: list[str], evs, semantics: str) -> None:  # type: ignore[no-untyped-def]
    from l2core.model import LabelSemantics

    s = EligibilitySettings(label_semantics=LabelSemantics(semantics))
    planner = Planner(cluster(order), s)
    for name, delete, labels, unavailable in evs:
        before = planner.plan
        changed = None if delete else Node(name, labels=labels, network_unavailable=unavailable)
        d = planner.delete_node(name) if changed is None else planner.upsert_node(changed)
        after = planner.plan
        fresh = plan(current(planner), s)
        assert {k: sp.announcer for k, sp in after.services.items()} == {
            k: sp.announcer for k, sp in fresh.services.items()
        }
        assert d == diff(before, after)
        assert_history_and_lookups_hold(before, after)
        for key in fresh.services:
            assert after.verdicts(key) == fresh.verdicts(key)
            assert after.interfaces_for(key, name) == fresh.interfaces_for(key, name)


def test_service_and_endpoint_updates_replan_that_service_only() -> None:
    from l2core.parse import parse_endpoint_slice, parse_service
    from l2core.plan import Status
    from tests.builders import NOT_SERVING

    planner = Planner(cluster(NODES), EligibilitySettings())
    key = "default/s3"  # externalTrafficPolicy Local
    eps, _ = parse_endpoint_slice(endpoints("s3", {"n0": NOT_SERVING}))
    assert eps is not None
    d = planner.upsert_endpoint_slice("default/s3-eps", eps)
    assert planner.plan.services[key].status is Status.NOBODY
    assert [m.service for m in d.moves] == [key] and d.moves[0].after is None
    eps, _ = parse_endpoint_slice(endpoints("s3", {"n1": READY}))
    assert eps is not None
    planner.upsert_endpoint_slice("default/s3-eps", eps)
    assert planner.plan.services[key].announcer == "n1"  # zone a, selected, the only local endpoint
    svc, _ = parse_service(service("s3", ["192.0.2.200"], local=True))
    assert svc is not None
    d = planner.upsert_service(svc)
    assert planner.plan.services[key].service_reasons  # 192.0.2.200 is in no pool
    assert d.moves[0].before == "n1" and d.moves[0].after is None
    d = planner.delete_service(key)
    assert key not in planner.plan.services and d.moves == ()
    planner.delete_endpoint_slice("default/s3-eps")
    fresh = plan(current(planner), EligibilitySettings())
    assert {k: v.announcer for k, v in fresh.services.items()} == {
        k: v.announcer for k, v in planner.plan.services.items()
    }


def test_a_runner_up_that_returns_weaker_is_not_trusted() -> None:
    """Regression: the runner-up left, came back without its preferred label, then the owner left. Another node
    with the preference outranks it by then; the incremental plan must not hand over to the stale runner-up."""
    names = ["n1", "n2", "n3", "n4"]
    objs = [node(n, {"rack": "fast"}) for n in names] + [
        service("web", ["192.0.2.100"]),
        endpoints("web", {"n1": READY}),
        pool("lan", "192.0.2.0/24"),
        advertisement(
            "l2",
            ipAddressPools=["lan"],
            preferredNodeSelectors=[{"weight": 5, "preference": {"matchLabels": {"rack": "fast"}}}],
        ),
    ]
    s = EligibilitySettings()
    planner = Planner(build_cluster(objs).cluster, s)
    sp = planner.plan.services["default/web"]
    assert sp.runner_up is not None and sp.runner_up.node is not None
    owner, runner = sp.announcer, sp.runner_up.node
    assert owner is not None
    planner.upsert_node(Node(runner, labels={"rack": "fast", EXCLUDE_LABEL: ""}))  # the runner-up leaves
    planner.upsert_node(Node(runner, labels={}))  # and comes back without the preference
    planner.delete_node(owner)
    expected = plan(current(planner), s).services["default/web"].announcer
    assert expected != runner
    assert planner.plan.services["default/web"].announcer == expected


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False))
def test_mixed_node_service_and_endpoint_events_match_a_full_replan(rnd) -> None:  # type: ignore[no-untyped-def]
    """Random clusters (random zones and preferences) under random node, Service and EndpointSlice events."""
    from l2core.model import Node as CoreNode
    from l2core.parse import parse_endpoint_slice, parse_service
    from tests.builders import NOT_SERVING

    objs = [node(n, {"zone": rnd.choice("ab"), **({"rack": "fast"} if rnd.random() < 0.3 else {})}) for n in NODES]
    for i in range(10):
        labels = {"tier": rnd.choice(["gold", "std"])}
        objs.append(service(f"s{i}", [f"192.0.2.{100 + i}"], local=rnd.random() < 0.4, labels=labels))
        objs.append(endpoints(f"s{i}", dict.fromkeys(rnd.sample(NODES, rnd.randint(1, 3)), READY)))
    objs += [
        pool("lan", "192.0.2.96/27"),
        advertisement("all", ipAddressPools=["lan"], nodeSelectors=[{"matchLabels": {"zone": "a"}}]),
        advertisement(
            "gold",
            ipAddressPools=["lan"],
            serviceSelectors=[{"matchLabels": {"tier": "gold"}}],
            preferredNodeSelectors=[{"weight": 5, "preference": {"matchLabels": {"rack": "fast"}}}],
        ),
    ]
    s = EligibilitySettings()
    planner = Planner(build_cluster(objs).cluster, s)
    for _ in range(25):
        r = rnd.random()
        before = planner.plan
        if r < 0.5:
            name = rnd.choice([*NODES, "x1"])
            labels = {"zone": rnd.choice("ab")}
            if rnd.random() < 0.4:
                labels[EXCLUDE_LABEL] = ""
            if rnd.random() < 0.4:
                labels["rack"] = "fast"
            changed = CoreNode(name, labels=labels, network_unavailable=rnd.random() < 0.1)
            d = planner.delete_node(name) if rnd.random() < 0.15 else planner.upsert_node(changed)
        elif r < 0.75:
            i = rnd.randrange(10)
            labels = {"tier": rnd.choice(["gold", "std"])}
            svc, _ = parse_service(service(f"s{i}", [f"192.0.2.{100 + i}"], local=rnd.random() < 0.5, labels=labels))
            assert svc is not None
            d = planner.upsert_service(svc)
        else:
            i = rnd.randrange(10)
            conds = {n: (READY if rnd.random() < 0.8 else NOT_SERVING) for n in rnd.sample(NODES, rnd.randint(0, 3))}
            eps, _ = parse_endpoint_slice(endpoints(f"s{i}", conds))
            assert eps is not None
            d = planner.upsert_endpoint_slice(f"default/s{i}-eps", eps)
        fresh = plan(current(planner), s)
        assert {k: v.announcer for k, v in planner.plan.services.items()} == {
            k: v.announcer for k, v in fresh.services.items()
        }
        assert d == diff(before, planner.plan)
        assert_history_and_lookups_hold(before, planner.plan)


def by_hand(p: Plan) -> Plan:
    """The same plan without the Planner's lookups and history: everything is derived from its services."""
    return Plan(p.settings, p.node_reasons, p.selections, p.services)


def assert_history_and_lookups_hold(before: Plan, after: Plan) -> None:
    """The Planner's shortcuts agree with what a walk over every service finds."""
    replanned = after.replanned_since(before)
    assert replanned is not None
    differ = {
        k for k in before.services.keys() | after.services.keys() if before.services.get(k) != after.services.get(k)
    }
    assert differ <= replanned
    assert diff(before, after) == diff(by_hand(before), by_hand(after))
    for p in (before, after):
        announcers: dict[str, set[str]] = {}
        selections: dict[Any, set[str]] = {}
        for key, sp in p.services.items():
            if sp.announcer is not None:
                announcers.setdefault(sp.announcer, set()).add(key)
            if sp.selection is not None:
                selections.setdefault(sp.selection, set()).add(key)
        assert p.lookups.by_announcer == announcers
        assert p.lookups.by_selection == selections
        for name in [*NODES, "x1"]:
            ips = {ip for sp in p.services.values() if sp.announcer == name for ip in sp.ips}
            assert p.announcements(name).keys() == ips


def test_a_plan_names_the_services_replanned_since_an_older_plan_of_its_planner() -> None:
    from l2core.parse import parse_service

    planner = Planner(cluster(NODES), EligibilitySettings())
    first = planner.plan
    planner.upsert_node(Node("n0", labels={"zone": "b", "team": "x"}))  # zone b: selected by nothing, announces nothing
    second = planner.plan
    assert second.replanned_since(first) == frozenset()
    assert second.services is first.services  # nothing replanned: the mapping is shared, not copied
    svc, _ = parse_service(service("s1", ["192.0.2.101"], labels={"tier": "std"}))
    assert svc is not None
    planner.upsert_service(svc)
    third = planner.plan
    assert third.replanned_since(first) == {"default/s1"}
    assert third.replanned_since(second) == {"default/s1"}
    assert third.replanned_since(third) == frozenset()
    assert first.replanned_since(third) is None  # older is newer: not known
    assert third.replanned_since(by_hand(first)) is None
    assert third.replanned_since(Planner(cluster(NODES), EligibilitySettings()).plan) is None  # another planner
    planner.replace_config(dict(planner._pools), dict(planner._ads))  # a full replan
    assert planner.plan.replanned_since(third) is None


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.from_regex(r"\A[a-z][a-z0-9-]{0,10}\Z"), min_size=2, max_size=10, unique=True),
    st.sampled_from(["192.0.2.100", "2001:db8::100"]),
    st.from_regex(r"\A[a-z][a-z0-9-]{0,10}\Z"),
)
def test_the_planner_never_moves_an_ip_when_a_non_owner_joins_or_leaves(names: list[str], ip: str, extra: str) -> None:
    objs = [node(n) for n in names] + [
        service("web", [ip]),
        endpoints("web", {names[0]: READY}),
        pool("lan", "192.0.2.0/24", "2001:db8::/64"),
        advertisement("lan"),
    ]
    planner = Planner(build_cluster(objs).cluster, EligibilitySettings())
    owner = planner.plan.services["default/web"].announcer
    assert owner is not None
    for loser in [n for n in names if n != owner]:
        assert planner.delete_node(loser).moves == ()
        assert planner.plan.services["default/web"].announcer == owner
    d = planner.upsert_node(Node(extra))
    assert planner.plan.services["default/web"].announcer in (owner, extra)  # only the newcomer can take over
    assert (d.moves == ()) == (planner.plan.services["default/web"].announcer == owner)


def test_speaker_liveness_changes_replan() -> None:
    planner = Planner(cluster(NODES), EligibilitySettings())
    owners = {k: sp.announcer for k, sp in planner.plan.services.items() if sp.announcer}
    victim = next(iter(owners.values()))
    alive = [n for n in NODES if n != victim]
    d = planner.set_alive(alive)
    assert victim in {m.before for m in d.moves}
    assert victim not in {sp.announcer for sp in planner.plan.services.values()}
    assert planner.plan.services == plan(current(planner), EligibilitySettings(), alive=alive).services
    planner.set_alive(None)  # everyone again
    assert {k: sp.announcer for k, sp in planner.plan.services.items() if sp.announcer} == owners


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.permutations(NODES),
    st.lists(st.one_of(st.none(), st.frozensets(st.sampled_from([*NODES, "no-such-node"]))), min_size=1, max_size=8),
)
def test_incremental_liveness_changes_match_a_full_replan(order: list[str], alive_sets) -> None:  # type: ignore[no-untyped-def]
    """set_alive replans only the nodes whose liveness flipped; the result must equal a plan made from scratch."""
    s = EligibilitySettings()
    planner = Planner(cluster(order), s)
    for alive in alive_sets:
        before = planner.plan
        d = planner.set_alive(alive)
        fresh = plan(current(planner), s, alive=alive)
        assert planner.plan.services == fresh.services
        assert planner.plan.node_reasons == fresh.node_reasons
        assert d == diff(before, planner.plan)
        for key in fresh.services:
            assert planner.plan.verdicts(key) == fresh.verdicts(key)
