"""The incremental planner must always agree with a plan computed from scratch."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l2core.model import EXCLUDE_LABEL, EligibilitySettings, Node
from l2core.parse import build_cluster
from l2core.plan import Planner, diff, plan
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


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.permutations(NODES), events, st.sampled_from(["presence", "true-only"]))
def test_incremental_node_changes_match_a_full_replan(order: list[str], evs, semantics: str) -> None:  # type: ignore[no-untyped-def]
    from l2core.model import LabelSemantics

    s = EligibilitySettings(label_semantics=LabelSemantics(semantics))
    planner = Planner(cluster(order), s)
    for name, delete, labels, unavailable in evs:
        before = planner.plan
        changed = None if delete else Node(name, labels=labels, network_unavailable=unavailable)
        preview = planner.preview_node(name, changed)
        assert planner.plan is before  # a preview changes nothing
        d = planner.delete_node(name) if changed is None else planner.upsert_node(changed)
        assert preview == d
        after = planner.plan
        fresh = plan(planner.cluster, s)
        assert {k: sp.announcer for k, sp in after.services.items()} == {
            k: sp.announcer for k, sp in fresh.services.items()
        }
        assert d == diff(before, after)
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
    fresh = plan(planner.cluster, EligibilitySettings())
    assert {k: v.announcer for k, v in fresh.services.items()} == {
        k: v.announcer for k, v in planner.plan.services.items()
    }
