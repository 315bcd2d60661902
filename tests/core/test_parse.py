"""Parsing the captured kube-apiserver v1.36 responses and derived variants."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l2core.parse import build_cluster, flatten, parse_advertisement, parse_node, parse_pool, parse_service
from tests.builders import DATA, EXCLUDE, advertisement, fixture, pool, service

LISTS = ["nodes", "services", "endpointslices", "ipaddresspools", "l2advertisements"]


def captured_cluster() -> Any:
    return build_cluster([fixture(f"api/list-{name}.json") for name in LISTS])


def test_captured_lists_parse_without_problems() -> None:
    parsed = captured_cluster()
    assert parsed.problems == ()
    c = parsed.cluster
    assert sorted(c.nodes) == ["cp-1", "worker-1", "worker-2"]
    assert c.nodes["cp-1"].labels[EXCLUDE] == ""
    assert c.nodes["cp-1"].internal_ips == ("192.0.2.67",)
    assert c.nodes["worker-1"].unschedulable is True
    assert c.nodes["worker-2"].network_unavailable is False
    assert sorted(c.services) == ["default/kubernetes", "default/web"]
    web = c.services["default/web"]
    assert (web.type, web.ingress_ips, web.external_traffic_policy_local) == ("LoadBalancer", ("192.0.2.100",), False)


def test_captured_endpoint_slice_keeps_the_conditions() -> None:
    eps = captured_cluster().cluster.endpoint_slices["default/web-abc12"]
    assert eps.service_key == "default/web"
    by_node = {e.node_name: e for e in eps.endpoints}
    assert by_node["worker-1"].can_serve
    terminating = by_node["worker-2"]
    assert (terminating.ready, terminating.serving, terminating.terminating) == (False, True, True)
    assert terminating.can_serve  # MetalLB: serving counts even while terminating


def test_captured_pool_and_advertisement() -> None:
    c = captured_cluster().cluster
    lan = c.pools["metallb-system/lan"]
    assert [r.text for r in lan.ranges] == ["192.0.2.100-192.0.2.120", "2001:db8::100/124"]
    assert [r.version for r in lan.ranges] == [4, 6]
    assert lan.auto_assign is False and lan.avoid_buggy_ips is False
    assert c.advertisements["metallb-system/lan"].ip_address_pools == ("lan",)


def test_watch_events_parse_including_network_unavailable() -> None:
    events = [json.loads(line) for line in (DATA / "api/watch-nodes.jsonl").read_text().splitlines() if line]
    nodes = {}
    for ev in events:
        if ev["type"] in ("ADDED", "MODIFIED"):
            n, problems = parse_node(ev["object"])
            assert problems == [] and n is not None
            nodes[n.name] = n
    assert nodes["worker-2"].network_unavailable is True
    assert nodes["worker-2"].labels[EXCLUDE] == "true"
    assert EXCLUDE not in nodes["cp-1"].labels


def test_pools_and_advertisements_outside_the_metallb_namespace_are_left_out_and_counted() -> None:
    docs = [
        pool("lan", "192.0.2.0/24"),
        pool("mine", "192.0.2.0/24", namespace="default"),  # would overlap "lan" if it were read
        pool("nons", "198.51.100.0/24", namespace=""),
        advertisement("lan"),
        advertisement("mine", namespace="default"),
        service("web", "192.0.2.1"),  # Services of any namespace still count
    ]
    parsed = build_cluster(docs)
    assert sorted(parsed.cluster.pools) == ["metallb-system/lan"]
    assert sorted(parsed.cluster.advertisements) == ["metallb-system/lan"]
    assert sorted(parsed.cluster.services) == ["default/web"]
    assert parsed.outside_namespace == {"IPAddressPool": 2, "L2Advertisement": 1}
    assert parsed.outside_namespace_text() == (
        "2 IPAddressPools and 1 L2Advertisement outside metallb-system ignored, as MetalLB does"
    )
    assert parsed.problems == ()
    other = build_cluster(docs, metallb_namespace="default")
    assert sorted(other.cluster.pools) == ["default/mine"] and other.outside_namespace == {
        "IPAddressPool": 2,
        "L2Advertisement": 1,
    }
    assert build_cluster([service("web", "192.0.2.1")]).outside_namespace_text() == ""


def test_typed_lists_and_kind_list_are_flattened() -> None:
    items = list(flatten([fixture("api/list-nodes.json")]))
    assert [i["kind"] for i in items] == ["Node"] * 3  # type: ignore[index]
    wrapped = {"apiVersion": "v1", "kind": "List", "items": [fixture("api/list-services.json")]}
    assert len(list(flatten([wrapped]))) == 2


def test_unknown_kinds_are_ignored_and_counted() -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
    parsed = build_cluster([cm, cm, fixture("api/list-nodes.json"), "a string"])
    assert parsed.ignored == {"v1 ConfigMap": 2}
    assert len(parsed.cluster.nodes) == 3
    assert [str(p) for p in parsed.problems] == ["document 6: is not a Kubernetes object (expected a mapping)"]


def test_a_broken_pool_is_left_out_with_field_addressed_problems() -> None:
    p, problems = parse_pool(pool("lan", "192.0.2.0/24", "192.0.2.300/24", "192.0.2.9-192.0.2.1", "192.0.2.128/25"))
    assert p is None
    assert [str(x) for x in problems] == [
        "IPAddressPool metallb-system/lan: spec.addresses[1]: '192.0.2.300/24' is not a valid CIDR",
        "IPAddressPool metallb-system/lan: spec.addresses[2]: range '192.0.2.9-192.0.2.1' is reversed: "
        "192.0.2.9 is after 192.0.2.1",
        "IPAddressPool metallb-system/lan: spec.addresses[3]: 192.0.2.128/25 overlaps 192.0.2.0/24 (spec.addresses[0])",
    ]


def test_empty_pool_and_duplicate_namespaces_are_problems() -> None:
    _, problems = parse_pool(pool("p"))
    assert [x.path for x in problems] == ["spec.addresses"]
    _, problems = parse_pool(pool("p", "192.0.2.0/28", serviceAllocation={"namespaces": ["a", "b", "a"]}))
    assert [str(x) for x in problems] == [
        "IPAddressPool metallb-system/p: spec.serviceAllocation.namespaces[2]: duplicate namespace 'a'"
    ]


def test_advertisement_duplicates_and_bad_selectors() -> None:
    dup = {"matchLabels": {"zone": "a"}}
    adv, problems = parse_advertisement(
        advertisement(
            "lan",
            ipAddressPools=["lan", "lan"],
            nodeSelectors=[dup, dup],
            serviceSelectors=[{"matchExpressions": [{"key": "app", "operator": "In"}]}],
            preferredNodeSelectors=[{"weight": 0, "preference": {}}],
        )
    )
    assert adv is None
    assert [x.path for x in problems] == [
        "spec.ipAddressPools[1]",
        "spec.nodeSelectors[1]",
        "spec.serviceSelectors[0].matchExpressions[0].values",
        "spec.preferredNodeSelectors[0].weight",
    ]


def test_advertisement_fields() -> None:
    adv, problems = parse_advertisement(
        advertisement(
            "lan",
            ipAddressPoolSelectors=[{"matchLabels": {"tier": "public"}}],
            nodeSelectors=[{"matchLabels": {"zone": "a"}}],
            interfaces=["eth0", "bond0"],
            preferredNodeSelectors=[{"weight": 50, "preference": {"matchLabels": {"rack": "1"}}}],
        )
    )
    assert problems == [] and adv is not None
    assert adv.interfaces == ("eth0", "bond0")
    assert adv.preferred_node_selectors[0].weight == 50


def test_service_fields_and_shared_ip_annotations() -> None:
    raw = fixture("api/list-services.json")["items"][1]
    raw = {**raw, "kind": "Service", "apiVersion": "v1"}
    raw["metadata"] = {**raw["metadata"], "annotations": {"metallb.universe.tf/allow-shared-ip": "k"}}
    raw["spec"] = {**raw["spec"], "externalTrafficPolicy": "Local", "loadBalancerClass": "example.com/lb"}
    raw["status"] = {"loadBalancer": {"ingress": [{"ip": "2001:0db8::0100"}, {"hostname": "lb.example"}]}}
    svc, problems = parse_service(raw)
    assert problems == [] and svc is not None
    assert svc.shared_ip_key == "k"
    assert svc.external_traffic_policy_local and svc.load_balancer_class == "example.com/lb"
    assert svc.ingress_ips == ("2001:db8::100",)


def test_a_bad_ingress_ip_is_a_problem() -> None:
    raw = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s", "namespace": "ns"},
        "status": {"loadBalancer": {"ingress": [{"ip": "not-an-ip"}]}},
    }
    svc, problems = parse_service(raw)
    assert svc is None
    assert str(problems[0]) == "Service ns/s: status.loadBalancer.ingress[0].ip: 'not-an-ip' is not an IP address"


# Field names the parsers read, so that the fuzzer reaches the nested code paths with values of the wrong type.
VOCABULARY = st.sampled_from(
    [
        "name",
        "namespace",
        "labels",
        "annotations",
        "conditions",
        "type",
        "status",
        "addresses",
        "address",
        "loadBalancer",
        "ingress",
        "ip",
        "unschedulable",
        "nodeName",
        "ready",
        "serving",
        "matchLabels",
        "matchExpressions",
        "key",
        "operator",
        "values",
        "ipAddressPools",
        "nodeSelectors",
        "serviceSelectors",
        "interfaces",
        "preferredNodeSelectors",
        "weight",
        "preference",
        "autoAssign",
        "serviceAllocation",
        "namespaces",
        "priority",
        "externalTrafficPolicy",
        "loadBalancerClass",
        "kubernetes.io/service-name",
    ]
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.just("192.0.2.1/30"),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(VOCABULARY, c, max_size=4),
    max_leaves=15,
)
kinds = st.sampled_from(
    [
        ("v1", "Node"),
        ("v1", "Service"),
        ("discovery.k8s.io/v1", "EndpointSlice"),
        ("metallb.io/v1beta1", "IPAddressPool"),
        ("metallb.io/v1beta1", "L2Advertisement"),
    ]
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(kinds, st.dictionaries(st.sampled_from(["metadata", "spec", "status", "endpoints"]), json_values))
def test_parsing_any_json_shaped_object_never_raises(kind: tuple[str, str], body: dict[str, Any]) -> None:
    parsed = build_cluster([{"apiVersion": kind[0], "kind": kind[1], **body}])
    assert parsed.object_count + len(parsed.problems) + sum(parsed.outside_namespace.values()) >= 1
