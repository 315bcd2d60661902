"""Turn plain Kubernetes dicts (as the API server or kubectl returns them) into the core's dataclasses.

Every function returns `(object or None, problems)`. Problems are field-addressed (`spec.addresses[1]`), and
nothing here raises on bad input: an object that cannot be used is returned as None with the reasons. An object
with any problem is left out of the cluster snapshot, because MetalLB also refuses an invalid configuration as a
whole rather than guess which half was meant.

`build_cluster` also does what MetalLB does with the whole set: it reads pools and advertisements only from the
MetalLB namespace (the rest is counted), reports pools that overlap each other (valid one by one, refused
together: `ParsedCluster.pool_overlaps`), and collects warnings about what MetalLB accepts but is probably a
mistake (an interface listed twice).

Also flattens `kind: List` and typed lists (`NodeList` items carry no kind of their own).

No I/O, standard library only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from l2core.addresses import AddressRange, canonical_ip, format_address, overlapping_pairs, parse_ip, parse_range
from l2core.model import (
    METALLB_NAMESPACE,
    SERVICE_NAME_LABEL,
    SHARED_IP_ANNOTATION,
    SHARED_IP_ANNOTATION_DEPRECATED,
    Cluster,
    Endpoint,
    EndpointSlice,
    IPAddressPool,
    L2Advertisement,
    Node,
    PreferredNodeSelector,
    Service,
    ServiceAllocation,
)
from l2core.problems import Problem, capped
from l2core.selectors import LabelSelector, parse_selector
from l2core.text import shown

KINDS = {
    ("v1", "Node"): "Node",
    ("v1", "Service"): "Service",
    ("discovery.k8s.io/v1", "EndpointSlice"): "EndpointSlice",
    ("metallb.io/v1beta1", "IPAddressPool"): "IPAddressPool",
    ("metallb.io/v1beta1", "L2Advertisement"): "L2Advertisement",
}


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _str_map(value: object) -> dict[str, str]:
    return {str(k): v for k, v in _map(value).items() if isinstance(v, str)}


def _meta(raw: Mapping[str, Any], kind: str, *, namespaced: bool) -> tuple[str, str, str, list[Problem]]:
    meta = _map(raw.get("metadata"))
    name = meta.get("name")
    namespace = meta.get("namespace") if namespaced else ""
    problems: list[Problem] = []
    if not isinstance(name, str) or not name:
        problems.append(Problem(kind, "metadata.name", "missing or empty"))
        name = "?"
    if namespaced and (not isinstance(namespace, str) or not namespace):
        namespace = "default" if kind == "Service" or kind == "EndpointSlice" else "?"
    assert isinstance(namespace, str)
    label = f"{kind} {namespace}/{name}" if namespaced else f"{kind} {name}"
    problems = [Problem(label, p.path, p.message) for p in problems]
    return namespace, name, label, problems


def parse_node(raw: Mapping[str, Any]) -> tuple[Node | None, list[Problem]]:
    _, name, _label, problems = _meta(raw, "Node", namespaced=False)
    status = _map(raw.get("status"))
    unavailable = False
    for cond in _list(status.get("conditions")):
        cond = _map(cond)
        if cond.get("type") == "NetworkUnavailable":
            unavailable = cond.get("status") == "True"
    internal = tuple(
        str(a.get("address"))
        for a in (_map(x) for x in _list(status.get("addresses")))
        if a.get("type") == "InternalIP" and parse_ip(a.get("address")) is not None
    )
    meta = _map(raw.get("metadata"))
    node = Node(
        name=name,
        labels=_str_map(meta.get("labels")),
        annotations=_str_map(meta.get("annotations")),
        network_unavailable=unavailable,
        internal_ips=internal,
        unschedulable=_map(raw.get("spec")).get("unschedulable") is True,
    )
    return (None if problems else node), problems


def parse_service(raw: Mapping[str, Any]) -> tuple[Service | None, list[Problem]]:
    namespace, name, label, problems = _meta(raw, "Service", namespaced=True)
    meta = _map(raw.get("metadata"))
    spec = _map(raw.get("spec"))
    annotations = _str_map(meta.get("annotations"))
    ips: list[str] = []
    ingress = _map(_map(raw.get("status")).get("loadBalancer")).get("ingress") or []
    if not isinstance(ingress, list):
        problems.append(Problem(label, "status.loadBalancer.ingress", "must be a list"))
        ingress = []
    for i, entry in enumerate(ingress):
        ip = _map(entry).get("ip")
        if ip is None:
            continue  # hostname-only ingress: nothing to announce at layer 2
        if parse_ip(ip) is None:
            problems.append(Problem(label, f"status.loadBalancer.ingress[{i}].ip", f"{shown(ip)} is not an IP address"))
            continue
        ips.append(canonical_ip(ip))
    lb_class = spec.get("loadBalancerClass")
    service = Service(
        namespace=namespace,
        name=name,
        type=str(spec.get("type") or "ClusterIP"),
        load_balancer_class=lb_class if isinstance(lb_class, str) and lb_class else None,
        external_traffic_policy_local=spec.get("externalTrafficPolicy") == "Local",
        ingress_ips=tuple(ips),
        labels=_str_map(meta.get("labels")),
        shared_ip_key=annotations.get(SHARED_IP_ANNOTATION) or annotations.get(SHARED_IP_ANNOTATION_DEPRECATED),
    )
    return (None if problems else service), problems


def _opt_bool(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def parse_endpoint_slice(raw: Mapping[str, Any]) -> tuple[EndpointSlice | None, list[Problem]]:
    namespace, name, label, problems = _meta(raw, "EndpointSlice", namespaced=True)
    service_name = _str_map(_map(raw.get("metadata")).get("labels")).get(SERVICE_NAME_LABEL, "")
    endpoints = []
    if raw.get("endpoints") is not None and not isinstance(raw.get("endpoints"), list):
        problems.append(Problem(label, "endpoints", "must be a list"))
    for entry in _list(raw.get("endpoints")):
        entry = _map(entry)
        cond = _map(entry.get("conditions"))
        node_name = entry.get("nodeName")
        endpoints.append(
            Endpoint(
                node_name=node_name if isinstance(node_name, str) and node_name else None,
                ready=_opt_bool(cond.get("ready")),
                serving=_opt_bool(cond.get("serving")),
                terminating=_opt_bool(cond.get("terminating")),
            )
        )
    eps = EndpointSlice(namespace, name, service_name, tuple(endpoints))
    return (None if problems else eps), problems


def _selectors(raw: object, *, obj: str, path: str) -> tuple[tuple[LabelSelector, ...], list[Problem]]:
    """A list of selectors; identical selectors are refused like MetalLB's "duplicate definition"."""
    if raw is None:
        return (), []
    if not isinstance(raw, list):
        return (), [Problem(obj, path, "must be a list of label selectors")]
    out: list[LabelSelector] = []
    seen: set[LabelSelector] = set()  # hashed: a list membership test made 20,000 selectors quadratic
    problems: list[Problem] = []
    for i, item in enumerate(raw):
        sel, sel_problems = parse_selector(item, obj=obj, path=f"{path}[{i}]")
        problems.extend(sel_problems)
        if sel is not None:
            if sel in seen:
                problems.append(Problem(obj, f"{path}[{i}]", f"duplicate selector {shown(sel.describe())}"))
            seen.add(sel)
            out.append(sel)
    return tuple(out), problems


def _strings(
    raw: object, *, obj: str, path: str, what: str, duplicates_ok: bool = False
) -> tuple[tuple[str, ...], list[Problem]]:
    """Non-empty strings, de-duplicated (hashed). A duplicate is a problem unless `duplicates_ok`."""
    if raw is None:
        return (), []
    if not isinstance(raw, list):
        return (), [Problem(obj, path, f"must be a list of {what}s")]
    out: dict[str, None] = {}  # insertion-ordered set
    problems: list[Problem] = []
    for i, item in enumerate(raw):
        if not isinstance(item, str) or not item:
            problems.append(Problem(obj, f"{path}[{i}]", f"must be a non-empty string ({what})"))
        elif item in out:
            if not duplicates_ok:
                problems.append(Problem(obj, f"{path}[{i}]", f"duplicate {what} {shown(item)}"))
        else:
            out[item] = None
    return tuple(out), problems


def parse_pool(raw: Mapping[str, Any]) -> tuple[IPAddressPool | None, list[Problem]]:
    namespace, name, label, problems = _meta(raw, "IPAddressPool", namespaced=True)
    spec = _map(raw.get("spec"))
    addresses = spec.get("addresses")
    ranges: list[AddressRange] = []
    indexes: list[int] = []  # spec.addresses index of each parsed range
    if not isinstance(addresses, list) or not addresses:
        problems.append(Problem(label, "spec.addresses", "must list at least one CIDR or range"))
        addresses = []
    for i, entry in enumerate(addresses):
        rng, err = parse_range(entry)
        if err:
            problems.append(Problem(label, f"spec.addresses[{i}]", err))
            continue
        assert rng is not None
        ranges.append(rng)
        indexes.append(i)
    problems.extend(_overlaps_within(label, ranges, indexes))

    flags = {}
    for flag, default in (("autoAssign", True), ("avoidBuggyIPs", False)):
        value = spec.get(flag, default)
        if value is None:
            value = default
        if not isinstance(value, bool):
            problems.append(Problem(label, f"spec.{flag}", f"must be true or false, not {shown(value)}"))
            value = default
        flags[flag] = value

    allocation = None
    raw_alloc = spec.get("serviceAllocation")
    if raw_alloc is not None:
        allocation, alloc_problems = _parse_allocation(raw_alloc, obj=label)
        problems.extend(alloc_problems)

    pool = IPAddressPool(
        namespace=namespace,
        name=name,
        labels=_str_map(_map(raw.get("metadata")).get("labels")),
        ranges=tuple(ranges),
        auto_assign=flags["autoAssign"],
        avoid_buggy_ips=flags["avoidBuggyIPs"],
        service_allocation=allocation,
    )
    return (None if problems else pool), capped(label, problems)


def _overlaps_within(label: str, ranges: list[AddressRange], indexes: list[int]) -> list[Problem]:
    """Overlapping entries (`overlapping_pairs`, n log n): never empty when two entries overlap; each problem names
    the later entry and one entry it overlaps."""
    problems: list[tuple[int, Problem]] = []
    for k, j in overlapping_pairs(ranges, range(len(ranges))):
        later, earlier = (k, j) if indexes[k] > indexes[j] else (j, k)
        problems.append(
            (
                indexes[later],
                Problem(
                    label,
                    f"spec.addresses[{indexes[later]}]",
                    f"{ranges[later].text} overlaps {ranges[earlier].text} (spec.addresses[{indexes[earlier]}])",
                ),
            )
        )
    return [p for _, p in sorted(problems, key=lambda ip: ip[0])]


def _parse_allocation(raw: object, *, obj: str) -> tuple[ServiceAllocation | None, list[Problem]]:
    path = "spec.serviceAllocation"
    if not isinstance(raw, Mapping):
        return None, [Problem(obj, path, "must be an object")]
    problems: list[Problem] = []
    priority = raw.get("priority")
    if priority is not None and (not isinstance(priority, int) or isinstance(priority, bool)):
        problems.append(Problem(obj, f"{path}.priority", f"must be an integer, not {shown(priority)}"))
        priority = None
    namespaces, p = _strings(raw.get("namespaces"), obj=obj, path=f"{path}.namespaces", what="namespace")
    problems.extend(p)
    ns_sel, p = _selectors(raw.get("namespaceSelectors"), obj=obj, path=f"{path}.namespaceSelectors")
    problems.extend(p)
    svc_sel, p = _selectors(raw.get("serviceSelectors"), obj=obj, path=f"{path}.serviceSelectors")
    problems.extend(p)
    return ServiceAllocation(priority, namespaces, ns_sel, svc_sel), problems


def parse_advertisement(raw: Mapping[str, Any]) -> tuple[L2Advertisement | None, list[Problem]]:
    namespace, name, label, problems = _meta(raw, "L2Advertisement", namespaced=True)
    spec = _map(raw.get("spec"))
    pools, p = _strings(spec.get("ipAddressPools"), obj=label, path="spec.ipAddressPools", what="pool name")
    problems.extend(p)
    parsed: dict[str, tuple[LabelSelector, ...]] = {}
    for field_name in ("ipAddressPoolSelectors", "nodeSelectors", "serviceSelectors"):
        parsed[field_name], p = _selectors(spec.get(field_name), obj=label, path=f"spec.{field_name}")
        problems.extend(p)
    # MetalLB copies spec.interfaces verbatim, duplicates included: refusing them would break configs MetalLB
    # accepts, so they are accepted (and de-duplicated here).
    interfaces, p = _strings(
        spec.get("interfaces"), obj=label, path="spec.interfaces", what="interface name", duplicates_ok=True
    )
    problems.extend(p)
    preferred: list[PreferredNodeSelector] = []
    raw_pref = spec.get("preferredNodeSelectors")
    if raw_pref is not None and not isinstance(raw_pref, list):
        problems.append(Problem(label, "spec.preferredNodeSelectors", "must be a list of {weight, preference}"))
        raw_pref = []
    for i, item in enumerate(raw_pref or []):
        path = f"spec.preferredNodeSelectors[{i}]"
        item_map = _map(item)
        weight = item_map.get("weight")
        if not isinstance(weight, int) or isinstance(weight, bool) or not 1 <= weight <= 100:
            problems.append(Problem(label, f"{path}.weight", f"must be an integer from 1 to 100, not {shown(weight)}"))
            continue
        sel, p = parse_selector(item_map.get("preference"), obj=label, path=f"{path}.preference")
        problems.extend(p)
        if sel is not None:
            preferred.append(PreferredNodeSelector(weight, sel))
    adv = L2Advertisement(
        namespace=namespace,
        name=name,
        ip_address_pools=pools,
        ip_address_pool_selectors=parsed["ipAddressPoolSelectors"],
        node_selectors=parsed["nodeSelectors"],
        service_selectors=parsed["serviceSelectors"],
        interfaces=interfaces,
        preferred_node_selectors=tuple(preferred),
    )
    return (None if problems else adv), capped(label, problems)


MAX_NAME_SHOWN = 64  # Linux interface names are at most 15 bytes; anything longer is cut in messages


def advertisement_warnings(raw: Mapping[str, Any]) -> list[Problem]:
    """What MetalLB accepts in an L2Advertisement but is probably a mistake: an interface listed more than once
    (MetalLB copies spec.interfaces verbatim, so it is no error, and the announcer uses it once). One warning per
    name, in first-seen order, counted with a hash (linear), capped like problems."""
    _, _, label, _ = _meta(raw, "L2Advertisement", namespaced=True)
    counts = Counter(i for i in _list(_map(raw.get("spec")).get("interfaces")) if isinstance(i, str) and i)
    warnings = []
    for name, n in counts.items():
        if n > 1:
            shown = name if len(name) <= MAX_NAME_SHOWN else name[:MAX_NAME_SHOWN] + "…"
            times = "twice" if n == 2 else f"{n} times"
            warnings.append(Problem(label, "spec.interfaces", f"interface {shown} is listed {times}"))
    return capped(label, warnings, noun="warnings")


PARSERS: dict[str, Any] = {
    "Node": parse_node,
    "Service": parse_service,
    "EndpointSlice": parse_endpoint_slice,
    "IPAddressPool": parse_pool,
    "L2Advertisement": parse_advertisement,
}


def kind_of(raw: Mapping[str, Any]) -> str | None:
    """The core's name for a supported object, or None for kinds the planner does not read."""
    return KINDS.get((str(raw.get("apiVersion", "")), str(raw.get("kind", ""))))


MAX_LIST_NESTING = 4  # a List of Lists is legal; deeper is a mistake (or a YAML alias pointing at itself)


def flatten(documents: Iterable[object], *, _depth: int = 0) -> Iterator[object]:
    """Yield single objects, expanding `kind: List` and typed lists such as `NodeList` (whose items carry no
    apiVersion/kind: those come from the list). Lists nested deeper than MAX_LIST_NESTING yield as they are, so
    the caller reports them instead of recursing forever."""
    for doc in documents:
        if doc is None:
            continue
        kind = str(doc.get("kind", "")) if isinstance(doc, Mapping) else ""
        if (
            isinstance(doc, Mapping)
            and isinstance(doc.get("items"), list)
            and kind.endswith("List")
            and _depth < MAX_LIST_NESTING
        ):
            item_kind = None if kind == "List" else kind[: -len("List")]
            for item in doc["items"]:
                if isinstance(item, Mapping) and item_kind and "kind" not in item:
                    item = {**item, "kind": item_kind, "apiVersion": doc.get("apiVersion", "")}
                yield from flatten([item], _depth=_depth + 1)
        else:
            yield doc


METALLB_KINDS = ("IPAddressPool", "L2Advertisement")


@dataclass(frozen=True, slots=True)
class PoolOverlap:
    """An entry of one pool holds addresses of an entry of another. MetalLB then refuses the whole configuration
    and keeps the one it had (internal/config/config.go `poolsFor`: "CIDR %q in pool %q overlaps with already
    defined CIDR %q" fails `config.For`); it does not drop one of the pools."""

    pool: str  # "namespace/name"
    index: int  # position in the pool's spec.addresses
    text: str  # the entry as written
    other: str
    other_text: str
    shared: str  # the addresses both hold: one address, or first-last

    def problem(self) -> Problem:
        return Problem(
            f"IPAddressPool {self.pool}",
            f"spec.addresses[{self.index}]",
            f"{self.text} overlaps {self.other_text} of pool {self.other} (both hold {self.shared}): "
            "MetalLB refuses the whole configuration",
        )


def pool_overlaps(pools: Mapping[str, IPAddressPool]) -> tuple[PoolOverlap, ...]:
    """Entries of different pools that overlap (`overlapping_pairs`, one sort and a sweep over every entry): empty
    exactly when MetalLB accepts the pools as disjoint. Each entry that overlaps an entry of another pool sorting
    before it gives one overlap, in pool and entry order."""
    ranges: list[AddressRange] = []
    owners: list[tuple[str, int]] = []  # (pool key, spec.addresses index: a valid pool parsed every entry)
    for key in sorted(pools):
        ranges.extend(pools[key].ranges)
        owners.extend((key, i) for i in range(len(pools[key].ranges)))
    found = []
    for k, j in overlapping_pairs(ranges, [key for key, _ in owners]):
        (pool, i), (other, _) = owners[k], owners[j]
        a, b = ranges[k], ranges[j]
        first, last = max(a.first, b.first), min(a.last, b.last)
        shared = format_address(a.version, first)
        if last != first:
            shared += "-" + format_address(a.version, last)
        found.append(PoolOverlap(pool, i, a.text, other, b.text, shared))
    return tuple(sorted(found, key=lambda o: (o.pool, o.index)))


@dataclass(frozen=True)
class ParsedCluster:
    cluster: Cluster
    problems: tuple[Problem, ...] = ()
    ignored: Mapping[str, int] = field(default_factory=dict)  # "apps/v1 Deployment" -> count
    # Pools and advertisements outside the MetalLB namespace, which MetalLB never reads: kind -> count.
    outside_namespace: Mapping[str, int] = field(default_factory=dict)
    metallb_namespace: str = METALLB_NAMESPACE
    # Accepted as MetalLB does, but probably a mistake (`advertisement_warnings`); objects stay in the cluster.
    warnings: tuple[Problem, ...] = ()
    # Valid pools that overlap each other: they stay in the cluster (the plan shows what happens once the overlap is
    # fixed), but MetalLB refuses the configuration as a whole until then.
    pool_overlaps: tuple[PoolOverlap, ...] = ()

    @property
    def invalid_config(self) -> bool:
        """An IPAddressPool or L2Advertisement of the MetalLB namespace does not parse: MetalLB's config.For
        refuses the whole configuration then (and keeps running its last valid one), as for overlapping pools."""
        return any(p.obj.startswith(("IPAddressPool ", "L2Advertisement ")) for p in self.problems)

    @property
    def refusals(self) -> tuple[Problem, ...]:
        """Why MetalLB would refuse this configuration as a whole (capped like problems); empty when it accepts."""
        return tuple(capped("", [o.problem() for o in self.pool_overlaps], noun="overlaps"))

    def outside_namespace_text(self) -> str:
        """`2 IPAddressPools outside metallb-system ignored, as MetalLB does`, or "" when there were none."""
        if not self.outside_namespace:
            return ""
        parts = [f"{n} {kind}{'s' if n != 1 else ''}" for kind, n in sorted(self.outside_namespace.items())]
        return f"{' and '.join(parts)} outside {self.metallb_namespace} ignored, as MetalLB does"

    @property
    def object_count(self) -> int:
        c = self.cluster
        return len(c.nodes) + len(c.services) + len(c.endpoint_slices) + len(c.pools) + len(c.advertisements)


def _namespace(raw: Mapping[str, Any]) -> object:
    return _map(raw.get("metadata")).get("namespace")


def build_cluster(documents: Iterable[object], *, metallb_namespace: str = METALLB_NAMESPACE) -> ParsedCluster:
    """Build a snapshot from any mix of objects and lists. Later duplicates replace earlier ones.

    IPAddressPools and L2Advertisements outside `metallb_namespace` (or without a namespace) are counted and left
    out unparsed: MetalLB lists only its own namespace, so a file holding `kubectl get -A` output must not make a
    pool elsewhere overlap, or an advertisement elsewhere announce."""
    nodes: dict[str, Node] = {}
    services: dict[str, Service] = {}
    slices: dict[str, EndpointSlice] = {}
    pools: dict[str, IPAddressPool] = {}
    ads: dict[str, L2Advertisement] = {}
    problems: list[Problem] = []
    ignored: Counter[str] = Counter()
    outside: Counter[str] = Counter()
    warnings: list[Problem] = []
    for index, raw in enumerate(flatten(documents)):
        if not isinstance(raw, Mapping):
            problems.append(Problem("", f"document {index + 1}", "is not a Kubernetes object (expected a mapping)"))
            continue
        kind = kind_of(raw)
        if kind is None:
            ignored[f"{raw.get('apiVersion', '?')} {raw.get('kind', '?')}"] += 1
            continue
        if kind in METALLB_KINDS and _namespace(raw) != metallb_namespace:
            outside[kind] += 1
            continue
        obj, obj_problems = PARSERS[kind](raw)
        problems.extend(obj_problems)
        if obj is None:
            continue
        if isinstance(obj, Node):
            nodes[obj.name] = obj
        elif isinstance(obj, Service):
            services[obj.key] = obj
        elif isinstance(obj, EndpointSlice):
            slices[f"{obj.namespace}/{obj.name}"] = obj
        elif isinstance(obj, IPAddressPool):
            pools[f"{obj.namespace}/{obj.name}"] = obj
        elif isinstance(obj, L2Advertisement):
            ads[obj.key] = obj
            warnings.extend(advertisement_warnings(raw))
    cluster = Cluster(nodes, services, slices, pools, ads)
    return ParsedCluster(
        cluster,
        tuple(problems),
        dict(ignored),
        dict(outside),
        metallb_namespace,
        warnings=tuple(warnings),
        pool_overlaps=pool_overlaps(pools),
    )
