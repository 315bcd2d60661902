"""Cross-object validation of a would-be MetalLB configuration, with MetalLB's webhook parity and a few warnings.

MetalLB's webhooks merge the incoming object into the existing ones and validate the whole would-be configuration
with the daemon's own validator. This module does the same with the core's parsers: the incoming IPAddressPool or
L2Advertisement replaces its old version among the existing objects, and the result is checked.

Problems (deny, as MetalLB does): anything `l2core.parse` refuses (empty or unparsable addresses, reversed ranges,
overlap within a pool, invalid selectors, duplicate pool names or namespaces), overlap with another pool, and CREATE
outside the MetalLB namespace. Allowed, as MetalLB does: host bits in a CIDR, references to pools that do not exist.

Notes (warn only, never deny): an interface listed twice in an L2Advertisement (MetalLB accepts it), and beyond
MetalLB: an L2Advertisement whose selected nodes are all ineligible, a pool no L2Advertisement announces, a pool
overlapping a node InternalIP, and deleting or shrinking a pool whose addresses services use.

Pure: no I/O, no logging, standard library and `l2core` only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from l2core.addresses import AddressRange, RangeIndex, overlapping_pairs
from l2core.eligibility import Reason, node_wide_reasons
from l2core.model import Cluster, EligibilitySettings, IPAddressPool, L2Advertisement, Node, Service
from l2core.parse import advertisement_warnings, parse_advertisement, parse_pool
from l2core.problems import Problem, capped
from l2core.text import and_more, shown


class NoteCode(StrEnum):
    NO_ELIGIBLE_NODE = "advertisement-no-eligible-node"
    NO_SELECTED_NODE = "advertisement-selects-no-node"
    POOL_NOT_ANNOUNCED = "pool-not-announced"
    POOL_OVERLAPS_NODE_IP = "pool-overlaps-node-ip"
    ADDRESSES_IN_USE = "addresses-in-use"
    DUPLICATE_INTERFACE = "advertisement-duplicate-interface"


@dataclass(frozen=True, slots=True)
class Note:
    """A warning about a valid configuration. `subjects` are the names involved (nodes, services, pools)."""

    code: NoteCode
    obj: str
    message: str
    subjects: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ConfigVerdict:
    problems: tuple[Problem, ...] = ()
    notes: tuple[Note, ...] = ()

    @property
    def allowed(self) -> bool:
        return not self.problems


def _meta(raw: Mapping[str, Any] | None) -> tuple[str, str]:
    meta = raw.get("metadata") if isinstance(raw, Mapping) else None
    if not isinstance(meta, Mapping):
        return "", ""
    ns, name = meta.get("namespace"), meta.get("name")
    return (ns if isinstance(ns, str) else ""), (name if isinstance(name, str) else "")


def _namespace_problem(kind: str, raw: Mapping[str, Any], metallb_namespace: str) -> Problem | None:
    ns, name = _meta(raw)
    if ns != metallb_namespace:
        return Problem(
            f"{kind} {ns or '?'}/{name or '?'}",
            "metadata.namespace",
            f"must be created in the MetalLB namespace {shown(metallb_namespace)}, not {shown(ns or 'none')}",
        )
    return None


def _short_list(names: list[str]) -> str:
    return and_more(names, 3)


def services_using(ranges: tuple[AddressRange, ...], services: Mapping[str, Service]) -> dict[str, tuple[str, ...]]:
    """LoadBalancer services with ingress IPs inside `ranges`: service key -> those IPs."""
    out = {}
    index = RangeIndex(ranges)
    for key, svc in services.items():
        if svc.type != "LoadBalancer":
            continue
        ips = tuple(ip for ip in svc.ingress_ips if index.holds(ip))
        if ips:
            out[key] = ips
    return out


def eligible_selected_nodes(
    ad: L2Advertisement, nodes: Mapping[str, Node], settings: EligibilitySettings
) -> tuple[list[str], list[str]]:
    """(nodes the advertisement selects, of those the ones with no node-wide reason). Liveness is not known here,
    so only the exclude label and NetworkUnavailable count."""
    selected = sorted(n.name for n in nodes.values() if ad.selects_node(n))
    eligible = [
        name
        for name in selected
        if not (node_wide_reasons(nodes[name], settings, alive=True) - {Reason.SPEAKER_NOT_ALIVE})
    ]
    return selected, eligible


def _advertisement_notes(ad: L2Advertisement, cluster: Cluster, settings: EligibilitySettings) -> list[Note]:
    if not cluster.nodes:
        return []  # no cluster view, or no nodes yet: nothing meaningful to say
    obj = f"L2Advertisement {ad.key}"
    selected, eligible = eligible_selected_nodes(ad, cluster.nodes, settings)
    if not selected:
        return [Note(NoteCode.NO_SELECTED_NODE, obj, "its nodeSelectors match no node: nothing will announce")]
    if not eligible:
        return [
            Note(
                NoteCode.NO_ELIGIBLE_NODE,
                obj,
                f"every selected node is ineligible (exclude label or NetworkUnavailable): {_short_list(selected)}",
                tuple(selected),
            )
        ]
    return []


def _pool_notes(
    pool: IPAddressPool,
    cluster: Cluster,
    *,
    advertisements: Mapping[str, L2Advertisement],
    old: IPAddressPool | None,
) -> list[Note]:
    notes: list[Note] = []
    obj = f"IPAddressPool {pool.namespace}/{pool.name}"
    if not any(ad.applies_to_pool(pool) for ad in advertisements.values()):
        notes.append(Note(NoteCode.POOL_NOT_ANNOUNCED, obj, "no L2Advertisement announces this pool"))
    index = RangeIndex(pool.ranges)
    hits = sorted(
        f"{node.name} ({ip})" for node in cluster.nodes.values() for ip in node.internal_ips if index.holds(ip)
    )
    if hits:
        notes.append(
            Note(NoteCode.POOL_OVERLAPS_NODE_IP, obj, f"overlaps node InternalIP: {_short_list(hits)}", tuple(hits))
        )
    if old is not None:
        notes.extend(_released_notes(old, pool.ranges, cluster, verb="shrinking"))
    return notes


def _released_notes(
    old: IPAddressPool, new_ranges: tuple[AddressRange, ...], cluster: Cluster, *, verb: str
) -> list[Note]:
    in_use = services_using(old.ranges, cluster.services)
    kept = RangeIndex(new_ranges)
    released = sorted(
        f"{ips[0]} ({key})"
        for key, all_ips in in_use.items()
        if (ips := tuple(ip for ip in all_ips if not kept.holds(ip)))
    )
    if not released:
        return []
    obj = f"IPAddressPool {old.namespace}/{old.name}"
    return [
        Note(NoteCode.ADDRESSES_IN_USE, obj, f"{verb} releases IPs in use: {_short_list(released)}", tuple(released))
    ]


def _overlaps_with_others(
    label: str, pool: IPAddressPool, key: str, pools: Mapping[str, IPAddressPool]
) -> list[Problem]:
    """Ranges of `pool` that overlap another pool, each named with one pool it overlaps: never empty when any
    overlap exists, though a range whose overlap is already reported through a wider sibling may go unnamed. The
    sweep of `overlapping_pairs` (n log n) with two owners, this pool and the rest: overlaps among the existing
    pools are not this request's fault and are not reported here."""
    ranges = list(pool.ranges)
    holders = [key] * len(ranges)  # the pool each range belongs to
    for other_key, other in pools.items():
        if other_key != key:
            ranges.extend(other.ranges)
            holders.extend([other_key] * len(other.ranges))
    mine = len(pool.ranges)
    found: dict[int, Problem] = {}
    for k, j in overlapping_pairs(ranges, [k < mine for k in range(len(ranges))]):
        i, theirs = (k, j) if k < mine else (j, k)
        found.setdefault(
            i,
            Problem(
                label,
                f"spec.addresses[{i}]",
                f"{ranges[i].text} overlaps {ranges[theirs].text} of pool {holders[theirs]}",
            ),
        )
    return [found[i] for i in sorted(found)]


def validate_pool_change(
    operation: str,
    new: Mapping[str, Any] | None,
    old: Mapping[str, Any] | None,
    *,
    cluster: Cluster,
    settings: EligibilitySettings,
    metallb_namespace: str,
) -> ConfigVerdict:
    """Validate an IPAddressPool CREATE, UPDATE or DELETE against the existing configuration in `cluster`."""
    del settings  # pools carry no node-eligibility question; kept for a uniform signature
    old_pool = parse_pool(old)[0] if isinstance(old, Mapping) else None
    if operation == "DELETE":
        if old_pool is None:
            return ConfigVerdict()
        return ConfigVerdict(notes=tuple(_released_notes(old_pool, (), cluster, verb="deleting")))
    if not isinstance(new, Mapping):
        return ConfigVerdict((Problem("IPAddressPool", "", "the request carries no object"),))
    problems: list[Problem] = []
    if operation == "CREATE":
        p = _namespace_problem("IPAddressPool", new, metallb_namespace)
        if p is not None:
            problems.append(p)
    pool, parse_problems = parse_pool(new)
    problems.extend(parse_problems)
    if pool is None:
        return ConfigVerdict(tuple(problems))
    key = f"{pool.namespace}/{pool.name}"
    label = f"IPAddressPool {key}"
    problems.extend(_overlaps_with_others(label, pool, key, cluster.pools))
    if problems:
        return ConfigVerdict(tuple(capped(label, problems)))
    return ConfigVerdict(notes=tuple(_pool_notes(pool, cluster, advertisements=cluster.advertisements, old=old_pool)))


def validate_advertisement_change(
    operation: str,
    new: Mapping[str, Any] | None,
    old: Mapping[str, Any] | None,
    *,
    cluster: Cluster,
    settings: EligibilitySettings,
    metallb_namespace: str,
) -> ConfigVerdict:
    """Validate an L2Advertisement CREATE, UPDATE or DELETE against the existing configuration in `cluster`."""
    old_ad = parse_advertisement(old)[0] if isinstance(old, Mapping) else None
    ads = dict(cluster.advertisements)
    if old_ad is not None:
        ads.pop(old_ad.key, None)
    new_ad: L2Advertisement | None = None
    problems: list[Problem] = []
    if operation != "DELETE":
        if not isinstance(new, Mapping):
            return ConfigVerdict((Problem("L2Advertisement", "", "the request carries no object"),))
        if operation == "CREATE":
            p = _namespace_problem("L2Advertisement", new, metallb_namespace)
            if p is not None:
                problems.append(p)
        new_ad, parse_problems = parse_advertisement(new)
        problems.extend(parse_problems)
        if problems or new_ad is None:
            return ConfigVerdict(tuple(problems))
        ads.pop(new_ad.key, None)
        ads[new_ad.key] = new_ad
    notes: list[Note] = []
    if new_ad is not None:
        assert isinstance(new, Mapping)
        notes.extend(
            Note(NoteCode.DUPLICATE_INTERFACE, w.obj, f"{w.path}: {w.message}" if w.path else w.message)
            for w in advertisement_warnings(new)
        )
        notes.extend(_advertisement_notes(new_ad, cluster, settings))
    # Pools that were announced before and no longer are.
    before = cluster.advertisements
    for pool_key, pool in sorted(cluster.pools.items()):
        was = any(ad.applies_to_pool(pool) for ad in before.values())
        now = any(ad.applies_to_pool(pool) for ad in ads.values())
        if was and not now:
            notes.append(
                Note(
                    NoteCode.POOL_NOT_ANNOUNCED,
                    f"IPAddressPool {pool_key}",
                    "no L2Advertisement will announce this pool any more",
                    (pool_key,),
                )
            )
    return ConfigVerdict(notes=tuple(notes))
