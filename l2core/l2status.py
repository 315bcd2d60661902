"""MetalLB's ServiceL2Status objects: which ones this node should have, and the writes that get it there.

MetalLB's speaker keeps one `metallb.io/v1beta1` ServiceL2Status per layer-2 service it announces
(metallb/metallb internal/k8s/controllers/layer2_status_controller.go, api/v1beta1/servicel2status_types.go):
- in the speaker's namespace, named by the API server from `generateName: l2-`;
- labelled `metallb.io/node` (the announcing node), `metallb.io/service-name`, `metallb.io/service-namespace`;
- `status` (a status subresource) holds `node`, `serviceName`, `serviceNamespace`, and `interfaces` ([{name}]) only
  when the L2Advertisement restricts the interfaces (none: every interface; Go's omitempty drops the empty list).
Its reconcile, per service: when this node does not announce it, delete this node's objects of it; when it does,
keep the first object labelled with this node, delete every other one of the service (other nodes' and redundant
ones), create one if none is left, and write the status only when it differs from the observed one. `writes()`
does exactly that for all services at once, from the objects listed and the statuses wanted; objects without the
three labels are left alone (MetalLB's event filter ignores them too).

Pure: no I/O, no clock, no logging; the Kubernetes adapter (`l2guard.kube.l2status`) lists and writes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from l2core.plan import Plan

LABEL_NODE = "metallb.io/node"
LABEL_SERVICE_NAME = "metallb.io/service-name"
LABEL_SERVICE_NAMESPACE = "metallb.io/service-namespace"
GENERATE_NAME = "l2-"


@dataclass(frozen=True, slots=True)
class L2Status:
    """One ServiceL2Status's `status`: who announces which service, on which interfaces (empty: all)."""

    node: str
    service_name: str
    service_namespace: str
    interfaces: tuple[str, ...] = ()  # sorted

    @property
    def key(self) -> str:
        return f"{self.service_namespace}/{self.service_name}"

    def body(self) -> dict[str, Any]:
        """The `status` as MetalLB's Go struct serializes it (omitempty)."""
        out: dict[str, Any] = {
            "node": self.node,
            "serviceName": self.service_name,
            "serviceNamespace": self.service_namespace,
        }
        if self.interfaces:
            out["interfaces"] = [{"name": name} for name in self.interfaces]
        return out

    def labels(self) -> dict[str, str]:
        return {
            LABEL_NODE: self.node,
            LABEL_SERVICE_NAME: self.service_name,
            LABEL_SERVICE_NAMESPACE: self.service_namespace,
        }


def status_from(body: object) -> L2Status | None:
    """An object's `status` read back (None when it is missing or not shaped like MetalLB's)."""
    if not isinstance(body, Mapping):
        return None
    node, name, namespace = body.get("node"), body.get("serviceName"), body.get("serviceNamespace")
    if not (isinstance(node, str) and isinstance(name, str) and isinstance(namespace, str)):
        return None
    raw = body.get("interfaces") or []
    if not isinstance(raw, list) or not all(isinstance(i, Mapping) and isinstance(i.get("name"), str) for i in raw):
        return None
    return L2Status(node, name, namespace, tuple(sorted(str(i["name"]) for i in raw)))


def wanted(plan: Plan, node: str) -> dict[str, L2Status]:
    """Service key -> the status `node` should publish: one per service it announces."""
    out: dict[str, L2Status] = {}
    for key, sp in plan.services.items():
        if sp.announcer != node:
            continue
        namespace, _, name = key.partition("/")
        interfaces = plan.interfaces_for(key, node)
        out[key] = L2Status(node, name, namespace, tuple(sorted(interfaces)) if interfaces else ())
    return out


@dataclass(frozen=True, slots=True)
class Observed:
    """A listed ServiceL2Status: its name, its three labels ("" when absent) and its status as read."""

    name: str
    node: str
    service_name: str
    service_namespace: str
    status: L2Status | None

    @property
    def key(self) -> str:
        return f"{self.service_namespace}/{self.service_name}"


def observed_from(obj: Mapping[str, Any]) -> Observed | None:
    """A listed object as `Observed`; None when it lacks a name or one of the three labels (left alone)."""
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping) or not isinstance(meta.get("name"), str):
        return None
    labels = meta.get("labels")
    if not isinstance(labels, Mapping):
        return None
    values = [labels.get(k) for k in (LABEL_NODE, LABEL_SERVICE_NAME, LABEL_SERVICE_NAMESPACE)]
    if not all(isinstance(v, str) for v in values):
        return None
    node, name, namespace = (str(v) for v in values)
    return Observed(str(meta["name"]), node, name, namespace, status_from(obj.get("status")))


@dataclass(frozen=True, slots=True)
class Create:
    status: L2Status


@dataclass(frozen=True, slots=True)
class WriteStatus:
    name: str
    status: L2Status


@dataclass(frozen=True, slots=True)
class Delete:
    name: str
    key: str  # the service it was about
    node: str  # the node it named


Write = Create | WriteStatus | Delete


def writes(want: Mapping[str, L2Status], observed: Sequence[Observed], node: str) -> list[Write]:
    """The writes that turn `observed` into what `node` should have for `want`, as MetalLB's reconcile does them
    (module docstring): deletions first, then status writes and creations, each group by service key. Linear in
    the number of objects and services (plus sorting)."""
    by_key: dict[str, list[Observed]] = {}
    for obj in observed:
        by_key.setdefault(obj.key, []).append(obj)
    deletes: list[Write] = []
    updates: list[Write] = []
    for key in sorted(by_key.keys() | want.keys()):
        objs = sorted(by_key.get(key, ()), key=lambda o: o.name)
        status = want.get(key)
        if status is None:
            deletes += [Delete(o.name, key, o.node) for o in objs if o.node == node]
            continue
        kept = next((o for o in objs if o.node == node), None)
        deletes += [Delete(o.name, key, o.node) for o in objs if o is not kept]
        if kept is None:
            updates.append(Create(status))
        elif kept.status != status:
            updates.append(WriteStatus(kept.name, status))
    return deletes + updates
