"""Say it loudly, once: one reporter per service, and Event texts that say what `explain` says."""

from __future__ import annotations

import hashlib
import itertools
from typing import Any

import pytest

from l2core.model import EligibilitySettings
from l2core.parse import build_cluster
from l2core.plan import Plan, plan
from l2core.reporting import (
    NOTE_LIMIT,
    EventType,
    ServiceEvent,
    announcing,
    bounded,
    interfaces_missing,
    ip_conflict,
    no_eligible_node,
    object_reporter,
    reporter,
    stale_object,
    valid_again,
)
from tests.builders import EXCLUDE, advertisement, endpoints, node, pool, service

LAN = [pool("lan", "192.0.2.100-192.0.2.120"), advertisement("lan", ipAddressPools=["lan"])]
WORKERS = ["worker-1", "worker-2", "worker-3"]


def make(objects: list[Any], settings: EligibilitySettings | None = None) -> Plan:
    parsed = build_cluster(objects)
    assert parsed.problems == (), parsed.problems
    return plan(parsed.cluster, settings or EligibilitySettings())


def all_excluded() -> Plan:
    """Two services on nodes that all carry the exclude label: nobody announces either."""
    return make(
        [
            *(node(n, {EXCLUDE: ""}) for n in ["cp-1", *WORKERS]),
            service("web", "192.0.2.100"),
            endpoints("web", ["worker-1"]),
            service("db", "192.0.2.101"),
            endpoints("db", ["worker-1"]),
            *LAN,
        ]
    )


# ----- who reports ------------------------------------------------------------------------------------------------


def test_the_announcer_reports_its_own_service() -> None:
    p = make([*(node(n) for n in WORKERS), service("web", "192.0.2.100"), endpoints("web", ["worker-1"]), *LAN])
    sp = p.services["default/web"]
    assert sp.announcer is not None
    assert reporter(sp, WORKERS) == sp.announcer
    assert reporter(sp, []) == sp.announcer  # the owner knows it is alive: it announces


def test_without_an_announcer_the_first_alive_speaker_in_hash_order_reports() -> None:
    # Written out from sha256(node + "#" + ip), ascending:
    #   192.0.2.100: cp-1, worker-1, worker-2, worker-3;  192.0.2.101: cp-1, worker-2, worker-3, worker-1
    p = all_excluded()
    assert reporter(p.services["default/web"], WORKERS) == "worker-1"
    assert reporter(p.services["default/db"], WORKERS) == "worker-2"  # another service, another reporter
    assert reporter(p.services["default/web"], ["cp-1", *WORKERS]) == "cp-1"
    assert reporter(p.services["default/web"], ["worker-3"]) == "worker-3"
    ip = "192.0.2.101"
    assert min(WORKERS, key=lambda n: hashlib.sha256(f"{n}#{ip}".encode()).digest()) == "worker-2"


def test_every_speaker_names_the_same_reporter_whatever_order_it_sees_peers_in() -> None:
    sp = all_excluded().services["default/db"]
    assert {reporter(sp, order) for order in itertools.permutations(WORKERS)} == {"worker-2"}


def test_nobody_reports_when_no_speaker_is_alive_or_nothing_is_ours_to_announce() -> None:
    p = make(
        [
            node("worker-1"),
            service("pending", []),
            service("theirs", "192.0.2.102", lb_class="example.com/other"),
            *LAN,
        ]
    )
    assert reporter(all_excluded().services["default/web"], []) is None
    assert reporter(p.services["default/pending"], WORKERS) is None
    assert reporter(p.services["default/theirs"], WORKERS) is None


def test_a_stale_object_is_reported_by_the_first_alive_speaker_in_hash_order_for_its_kind_and_key() -> None:
    # Written out from sha256(node + "#" + kind + "/" + key), ascending:
    #   IPAddressPool/metallb-system/lan: worker-2, worker-3, worker-1, cp-1
    #   L2Advertisement/metallb-system/lan: worker-2, worker-1, worker-3, cp-1
    #   Node/worker-1: cp-1, worker-2, worker-3, worker-1
    everyone = ["cp-1", *WORKERS]
    assert object_reporter("IPAddressPool", "metallb-system/lan", everyone) == "worker-2"
    assert object_reporter("IPAddressPool", "metallb-system/lan", ["cp-1", "worker-1", "worker-3"]) == "worker-3"
    assert object_reporter("L2Advertisement", "metallb-system/lan", ["cp-1", "worker-1", "worker-3"]) == "worker-1"
    assert object_reporter("Node", "worker-1", everyone) == "cp-1"
    assert object_reporter("Node", "worker-1", []) is None
    key = "IPAddressPool/metallb-system/lan"
    assert min(everyone, key=lambda n: hashlib.sha256(f"{n}#{key}".encode()).digest()) == "worker-2"


def test_every_speaker_names_the_same_object_reporter_whatever_order_it_sees_peers_in() -> None:
    orders = itertools.permutations(["cp-1", *WORKERS])
    assert {object_reporter("IPAddressPool", "metallb-system/lan", order) for order in orders} == {"worker-2"}


# ----- what it says -----------------------------------------------------------------------------------------------


def test_announcing_names_the_ip_the_node_and_the_interfaces() -> None:
    assert announcing(["192.0.2.100"], "worker-2", frozenset({"eth0"})) == ServiceEvent(
        EventType.NORMAL, "Announcing", "announcing 192.0.2.100 from node worker-2 on eth0"
    )
    assert (
        announcing(["192.0.2.100", "2001:db8::100"], "worker-2", None).message
        == "announcing 192.0.2.100, 2001:db8::100 from node worker-2 on all interfaces"
    )
    assert (
        announcing(["192.0.2.100"], "worker-2", {"eth3", "eth1", "eth0", "eth2"}).message
        == "announcing 192.0.2.100 from node worker-2 on eth0, eth1, eth2 and 1 more"
    )


def test_the_kubeadm_single_node_warning_names_the_label_and_the_fix() -> None:
    p = make([node("cp-1", {EXCLUDE: ""}), service("web", "192.0.2.100"), endpoints("web", ["cp-1"]), *LAN])
    assert no_eligible_node(p, "default/web") == ServiceEvent(
        EventType.WARNING,
        "NoEligibleNode",
        "no eligible node for 192.0.2.100: cp-1 excluded by label "
        "node.kubernetes.io/exclude-from-external-load-balancers (remove label "
        "node.kubernetes.io/exclude-from-external-load-balancers from node cp-1, or start the speaker with "
        "--ignore-exclude-lb)",
    )


def test_the_warning_groups_nodes_by_reason_closest_to_eligible_first() -> None:
    p = make(
        [
            node("cp-1", {EXCLUDE: ""}, unavailable=True),
            node("worker-1", {EXCLUDE: ""}),
            node("worker-2", {EXCLUDE: ""}),
            service("web", "192.0.2.100"),
            endpoints("web", ["worker-1"]),
            *LAN,
        ]
    )
    assert no_eligible_node(p, "default/web").message == (
        "no eligible node for 192.0.2.100: worker-1, worker-2 excluded by label "
        "node.kubernetes.io/exclude-from-external-load-balancers; cp-1 excluded by label "
        "node.kubernetes.io/exclude-from-external-load-balancers, condition NetworkUnavailable is True (remove label "
        "node.kubernetes.io/exclude-from-external-load-balancers from node worker-1, worker-2, or start the speaker "
        "with --ignore-exclude-lb)"
    )


def test_a_service_reason_is_said_once_not_once_per_node() -> None:
    p = make([*(node(n) for n in WORKERS), service("web", "192.0.2.100"), *LAN])  # no EndpointSlice at all
    assert no_eligible_node(p, "default/web").message == (
        "no eligible node for 192.0.2.100: the service has no serving endpoint at all (the service has no ready or "
        "serving endpoint: check its pods and its selector)"
    )


def test_a_cluster_without_nodes_says_so_once() -> None:
    p = make([service("web", "192.0.2.100"), endpoints("web", ["gone-1"]), *LAN])  # a pod on a deleted node
    assert no_eligible_node(p, "default/web").message == "no eligible node for 192.0.2.100: the cluster has no nodes"


def test_a_missing_advertisement_is_the_fix_when_no_node_is_selected() -> None:
    p = make(
        [node("worker-1"), service("web", "192.0.2.100"), endpoints("web", ["worker-1"]), pool("lan", "192.0.2.0/24")]
    )
    assert no_eligible_node(p, "default/web").message == (
        "no eligible node for 192.0.2.100: worker-1 not selected by any L2Advertisement for this pool and service "
        "(create an L2Advertisement for pool lan: none announces it)"
    )


def test_a_draining_node_keeps_its_label_in_the_warning_as_in_explain() -> None:
    p = make(
        [node("worker-1", {EXCLUDE: "karpenter"}), service("web", "192.0.2.100"), endpoints("web", ["worker-1"]), *LAN]
    )
    parsed_nodes = build_cluster([node("worker-1", {EXCLUDE: "karpenter"})]).cluster.nodes
    assert no_eligible_node(p, "default/web", nodes=parsed_nodes).message == (
        "no eligible node for 192.0.2.100: worker-1 excluded by label "
        "node.kubernetes.io/exclude-from-external-load-balancers (node worker-1 is being disrupted by Karpenter "
        "(label value karpenter) and is expected to leave: keep its label and let the IP move to another node)"
    )


def test_five_hundred_excluded_nodes_name_three_and_fit_in_an_event() -> None:
    names = [f"node-{i:03d}" for i in range(500)]
    p = make(
        [*(node(n, {EXCLUDE: ""}) for n in names), service("web", "192.0.2.100"), endpoints("web", names[:1]), *LAN]
    )
    msg = no_eligible_node(p, "default/web").message
    assert msg.startswith("no eligible node for 192.0.2.100: node-000, node-001, node-002 and 497 more excluded by")
    assert "from node node-000, node-001, node-002 and 497 more, or start" in msg
    assert len(msg.encode()) <= NOTE_LIMIT


def test_a_conflict_names_the_other_mac_and_the_interface() -> None:
    assert ip_conflict("192.0.2.100", mac="02:00:00:00:00:02", iface="eth0") == ServiceEvent(
        EventType.WARNING, "IPConflict", "192.0.2.100 is also claimed by 02:00:00:00:00:02 on eth0"
    )


def test_missing_interfaces_on_the_winning_node_are_named() -> None:
    assert interfaces_missing(["192.0.2.100"], "worker-2", {"eth2", "bond0"}) == ServiceEvent(
        EventType.WARNING,
        "InterfaceMissing",
        "192.0.2.100 not announced on bond0, eth2: node worker-2 has no such interface (create it, or change the "
        "interfaces of the L2Advertisements that select the node)",
    )


# ----- bounded ----------------------------------------------------------------------------------------------------


def test_a_message_that_fits_is_kept_whole() -> None:
    assert bounded("x" * 1024) == "x" * 1024


def test_a_long_message_is_cut_to_1024_bytes_ending_in_an_ellipsis() -> None:
    cut = bounded("x" * 5000)
    assert cut == "x" * 1021 + "…"
    assert len(cut.encode()) == 1024


def test_a_cut_never_splits_a_character() -> None:
    cut = bounded("é" * 600)  # 2 bytes each: 1,200 bytes
    assert cut == "é" * 510 + "…"  # 1,020 + 3 bytes; a 511th would need 1,022 + 3
    with pytest.raises(UnicodeDecodeError):
        ("é" * 600).encode()[:1021].decode()  # the byte cut itself lands inside a character


def test_a_hostile_interface_list_cannot_make_an_event_too_long() -> None:
    event = interfaces_missing(["192.0.2.100"], "worker-2", {"i" * 2000})
    assert len(event.message.encode()) == NOTE_LIMIT
    assert event.message.endswith("…")


def test_a_stale_object_warning_says_what_is_wrong_what_is_used_since_when_and_the_fix() -> None:
    problem = "IPAddressPool metallb-system/lan: spec.addresses[0]: '192.0.2.300-192.0.2.7' is not an address range"
    since = "2026-12-01T16:00:00Z"
    event = stale_object("IPAddressPool", "metallb-system/lan", problem, kept=True, since=since)
    assert (event.type, event.reason, event.message) == (
        EventType.WARNING,
        "InvalidObject",
        "IPAddressPool metallb-system/lan is invalid since 2026-12-01T16:00:00Z: spec.addresses[0]: "
        "'192.0.2.300-192.0.2.7' is not an address range; its last valid version is still in use (correct the "
        "object: kubectl edit ipaddresspool lan -n metallb-system)",
    )
    # The same Event for a speaker that first saw it later (a restart): only the time differs, not the identity.
    later = stale_object("IPAddressPool", "metallb-system/lan", problem, kept=True, since="2026-12-01T17:00:00Z")
    assert later.message != event.message and later.identity == event.identity
    assert "2026" not in event.identity
    assert stale_object(
        "Node", "worker-1", "metadata.labels: bad", kept=False, since="2026-12-01T16:00:01Z"
    ).message == (
        "Node worker-1 is invalid since 2026-12-01T16:00:01Z: metadata.labels: bad; it has no valid version to fall "
        "back on and is ignored (correct the object: kubectl edit node worker-1)"
    )
    assert len(stale_object("IPAddressPool", "a/b", "é" * 2000, kept=True, since=since).message.encode()) <= NOTE_LIMIT


def test_valid_again_is_a_normal_event() -> None:
    assert valid_again("IPAddressPool", "metallb-system/lan") == ServiceEvent(
        EventType.NORMAL, "ValidAgain", "IPAddressPool metallb-system/lan is valid again: its current version is in use"
    )
