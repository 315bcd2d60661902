"""Fail-static: cut off from the API, keep what was announced, but yield an IP another node claims."""

from __future__ import annotations

from l2core.failstatic import held
from l2core.model import EligibilitySettings
from l2core.parse import build_cluster
from l2core.plan import plan
from tests.builders import advertisement, endpoints, node, pool, service

ANNOUNCED = {
    "192.0.2.100": None,
    "2001:db8::100": None,
    "192.0.2.101": frozenset({"eth1", "bond0"}),
}


def test_without_conflicts_everything_announced_stays() -> None:
    assert held(ANNOUNCED, ()) == ANNOUNCED


def test_an_ip_another_node_claims_is_yielded_on_every_interface() -> None:
    assert held(ANNOUNCED, {"192.0.2.101"}) == {"192.0.2.100": None, "2001:db8::100": None}


def test_a_conflict_on_an_ip_we_do_not_announce_changes_nothing() -> None:
    assert held(ANNOUNCED, ["192.0.2.200"]) == ANNOUNCED


def test_yielded_ips_stay_yielded_as_conflicts_arrive_one_by_one() -> None:
    first = held(ANNOUNCED, ["2001:db8::100"])
    assert first == {"192.0.2.100": None, "192.0.2.101": frozenset({"eth1", "bond0"})}
    assert held(first, ["192.0.2.100"]) == {"192.0.2.101": frozenset({"eth1", "bond0"})}


def test_the_plan_before_the_cut_off_is_what_is_held() -> None:
    # The reconcile loop's sequence: announce the plan's announcements, lose the API, a conflict comes in.
    objs = [
        node("n1"),
        service("web", ["192.0.2.100", "2001:db8::100"]),
        endpoints("web", ["n1"]),
        service("db", "192.0.2.101"),
        endpoints("db", ["n1"]),
        pool("lan", "192.0.2.100-192.0.2.120", "2001:db8::100/120"),
        advertisement("lan", ipAddressPools=["lan"], interfaces=["eth1"]),
    ]
    announced = plan(build_cluster(objs).cluster, EligibilitySettings()).announcements("n1")
    assert announced == {
        "192.0.2.100": frozenset({"eth1"}),
        "2001:db8::100": frozenset({"eth1"}),
        "192.0.2.101": frozenset({"eth1"}),
    }
    assert held(announced, {"192.0.2.101"}) == {
        "192.0.2.100": frozenset({"eth1"}),
        "2001:db8::100": frozenset({"eth1"}),
    }
