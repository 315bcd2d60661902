"""An API double: a local HTTP server that speaks the kube-apiserver's wire format for the requests the adapter
makes, for the real `kubernetes` client to talk to. It is a double, not a fake cluster, because no kube-apiserver
(nor etcd) can run here; every response it gives is a captured one (`tests/data/api/`, from a kube-apiserver
v1.36: see /work/shared/fixtures/README.md) or is derived from one by changing only names and versions.

Lists and watches are scripted: lists are plain JSON bodies with the captured headers (including the HTTP 410
`list-too-old.json`); watches are chunked streams, one JSON event per chunk and line, as the API server sends them
(the 410 ERROR event of `watch-too-old.jsonl` included). Each path has a script of responses consumed in order; the
last one repeats; a reply can be delayed, like a hung API server. A watch with nothing left to say is held open
briefly and then ended, like a server-side watch timeout; or it breaks off in the middle of a chunk (`drop`), like a
connection to an API server that went away.

Every kind the speaker reads or writes is a stored object instead, under the API server's paths, unless a script
(or a one-shot reply in `once`) claims the path: Leases (coordination.k8s.io/v1) and core/v1 Events, and the
cluster objects: Nodes (cluster-scoped), Services, EndpointSlices, and MetalLB's IPAddressPools and L2Advertisements
(`/api/v1/nodes[/NAME]`, `/api/v1/namespaces/NS/services[/NAME]`, `/apis/metallb.io/v1beta1/namespaces/NS/...`;
a namespaced kind's collection is also listed and watched across namespaces, `/api/v1/services`, as the speaker
reads it), and MetalLB's ServiceL2Statuses, which the speaker writes: a create with `generateName` gets a name from
the API server's alphabet, and their status is a subresource (`NAME/status`: writes there change only the status,
writes to the object never do, a create drops it, as the captured `servicel2status-create.json` shows). A kind in
`store.missing` answers every request with 404, as the API server does for a CRD that is not installed.
`store.seed()` fills the store from the captured lists; a test changes a cluster object mid-test with
`store.put()`, `store.patch()` (a merge patch, as `kubectl label` or `kubectl patch --type=merge`) or
`store.delete()`, the same code paths as the HTTP verbs, and every open watch of its collection sees the event:
- create (POST, 201; 409 AlreadyExists shaped like `secret-create-conflict.json`), get (200; 404 NotFound, the same
  Status shape), list (GET on the collection, with a `fieldSelector` of `=`, `==` and `!=` terms on dotted fields
  such as `involvedObject.name=web`, as the API server filters Events; other selector syntax answers 400), update
  (PUT, 200), patch (PATCH, 200), delete (200, the Status of `lease-delete.json`);
- every write that changes the object takes a new resourceVersion from one counter, like etcd's revision; a PUT
  that changes nothing keeps it (as the v2 capture `lease-update-renew` notes);
- a PUT or PATCH carrying a `metadata.resourceVersion` other than the stored one answers 409 Conflict, shaped like
  the captured `lease-update-conflict.json`;
- merge patches (RFC 7386) and strategic merge patches are both applied as merge patches: Lease specs and Events
  hold no lists a patch would merge by key, so the two agree as long as a patch leaves metadata's lists alone (a
  strategic patch of a cluster object's lists, such as a Node's conditions, would replace them whole here);
  JSON patches (RFC 6902, applied by the `jsonpatch` library) answer 422 when a `test` fails or an operation does
  not apply, as the API server does;
- Secrets and Mutating/ValidatingWebhookConfigurations (cluster-scoped) are stored kinds too; a list or watch with
  `fieldSelector=metadata.name=NAME` (how a client restricted by RBAC resourceNames reads) sees only that object;
- `refuse[(method, path)] = status` answers those requests with that Status (403: RBAC without the verb), and
  `before[(method, path)]` is called once before such a request is handled (another client's write landing first);
- the server fills in uid, resourceVersion and creationTimestamp, but writes no managedFields;
- a watch (`?watch=1&resourceVersion=N`) on a stored collection streams ADDED, MODIFIED and DELETED events for
  the writes after N, then new ones as they happen, for a few seconds, as a server-side watch timeout ends it;
- `store.compact()` forgets the history, as etcd's compaction does: a watch from an older resourceVersion gets
  the captured ERROR 410 event of `watch-too-old.jsonl` (its versions replaced) and ends; `store.drop_watches()`
  ends every open watch cleanly (a server-side timeout, an API server restart), so the watchers resume from their
  last version; a watch that ends cleanly leaves its connection open for the next request, as the API server does;
- `seen` records every request as it came (method, path and query), for tests of what a client asks for (the
  RBAC it needs);
- `hang` delays the answer to every stored-object request (a hung API server; cut short when the double stops),
  and a stopped double closes even kept-alive connections unanswered, like a dead one; `restart()` answers again
  on the same port from the same store, like an API server back up.
Mid-test changes to a scripted collection (a label put on a Node) are pushed with `push()`: every later watch of
that path from an older resourceVersion streams them first, so each watcher sees a change once.
It listens on 127.0.0.1, or for tests in network namespaces on a documentation address (`address=`) of a link the
test created; only for tests.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonpatch  # type: ignore[import-untyped]
import jsonpointer  # type: ignore[import-untyped]

API = Path(__file__).resolve().parents[1] / "data" / "api"


def captured_headers(name: str) -> tuple[int, list[tuple[str, str]]]:
    """(status, headers) from a captured `*.headers.txt` (HTTP/2 pseudo status line first)."""
    lines = (API / name).read_text().splitlines()
    status = int(lines[0].split()[1])
    headers = []
    for line in lines[1:]:
        if ":" in line:
            key, _, value = line.partition(":")
            if key.lower() not in ("content-length", "date"):
                headers.append((key.strip(), value.strip()))
    return status, headers


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""  # a list body
    events: list[bytes] | None = None  # a watch stream: one line per event
    headers: list[tuple[str, str]] = field(default_factory=lambda: [("content-type", "application/json")])
    hold: float = 0.3  # seconds a watch stays open after its events
    delay: float = 0.0  # seconds before the status line is sent (a hung API server; cut short when the double stops)
    drop: bool = False  # a watch: after its events, half a chunk and the connection closes (a connection that broke)


def list_reply(name: str) -> Reply:
    return Reply(body=(API / name).read_bytes())


def too_old_list() -> Reply:
    status, headers = captured_headers("list-too-old.headers.txt")
    return Reply(status=status, body=(API / "list-too-old.json").read_bytes(), headers=headers)


def watch_reply(name: str | None = None, *, hold: float = 0.3) -> Reply:
    events = [] if name is None else [ln.encode() for ln in (API / name).read_text().splitlines() if ln.strip()]
    _, headers = captured_headers("watch-nodes.headers.txt")
    return Reply(events=events, headers=headers, hold=hold)


RESOURCE_PATH = re.compile(
    r"^/(?P<prefix>api/v1|apis/[a-z0-9.-]+/v[a-z0-9]+)(?:/namespaces/(?P<namespace>[^/]+))?"
    r"/(?P<plural>[a-z0-9]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>status))?)?$"
)


@dataclass(frozen=True)
class StoredKind:
    group: str
    api_version: str
    kind: str
    resource: str  # as the API server names it in messages ("leases.coordination.k8s.io")
    namespaced: bool
    status_subresource: bool = False  # writes to the object keep its status; `NAME/status` writes only that


# (path prefix, plural) -> the kind stored there
STORED: dict[tuple[str, str], StoredKind] = {
    ("apis/coordination.k8s.io/v1", "leases"): StoredKind(
        "coordination.k8s.io", "coordination.k8s.io/v1", "Lease", "leases.coordination.k8s.io", True
    ),
    ("api/v1", "events"): StoredKind("", "v1", "Event", "events", True),
    ("api/v1", "nodes"): StoredKind("", "v1", "Node", "nodes", False),
    ("api/v1", "services"): StoredKind("", "v1", "Service", "services", True),
    ("apis/discovery.k8s.io/v1", "endpointslices"): StoredKind(
        "discovery.k8s.io", "discovery.k8s.io/v1", "EndpointSlice", "endpointslices.discovery.k8s.io", True
    ),
    ("apis/metallb.io/v1beta1", "ipaddresspools"): StoredKind(
        "metallb.io", "metallb.io/v1beta1", "IPAddressPool", "ipaddresspools.metallb.io", True
    ),
    ("apis/metallb.io/v1beta1", "l2advertisements"): StoredKind(
        "metallb.io", "metallb.io/v1beta1", "L2Advertisement", "l2advertisements.metallb.io", True
    ),
    # MetalLB's CRD has a status subresource (api/v1beta1/servicel2status_types.go: +kubebuilder:subresource:status);
    # the captured create (servicel2status-create.json) came back without the status it was sent.
    ("apis/metallb.io/v1beta1", "servicel2statuses"): StoredKind(
        "metallb.io", "metallb.io/v1beta1", "ServiceL2Status", "servicel2statuses.metallb.io", True, True
    ),
    ("api/v1", "secrets"): StoredKind("", "v1", "Secret", "secrets", True),
    ("apis/admissionregistration.k8s.io/v1", "mutatingwebhookconfigurations"): StoredKind(
        "admissionregistration.k8s.io",
        "admissionregistration.k8s.io/v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations.admissionregistration.k8s.io",
        False,
    ),
    ("apis/admissionregistration.k8s.io/v1", "validatingwebhookconfigurations"): StoredKind(
        "admissionregistration.k8s.io",
        "admissionregistration.k8s.io/v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations.admissionregistration.k8s.io",
        False,
    ),
}
GENERATED = "bcdfghjklmnpqrstvwxz2456789"  # the API server's generateName suffix alphabet (apimachinery rand.String)
MAX_BODY = 1024 * 1024
WATCH_HOLD = 5.0  # seconds a watch of stored objects stays open


@dataclass(frozen=True)
class Target:
    """What a request path names: one object (`name`), or a collection (namespace None: across namespaces)."""

    prefix: str
    plural: str
    namespace: str | None
    name: str | None
    sub: str | None = None  # "status": the status subresource of the object `name`
    selected: str | None = None  # a collection's `fieldSelector=metadata.name=NAME`: only that object

    @property
    def kind(self) -> StoredKind:
        return STORED[(self.prefix, self.plural)]

    @property
    def collection(self) -> str:
        where = f"/namespaces/{self.namespace}" if self.namespace is not None else ""
        return f"/{self.prefix}{where}/{self.plural}"

    def object_path(self, name: str) -> str:
        return f"{self.collection}/{name}"

    def holds(self, path: str) -> bool:
        """Whether the object at `path` is in this collection."""
        other = target(path)
        return (
            other is not None
            and other.name is not None
            and (other.prefix, other.plural) == (self.prefix, self.plural)
            and self.namespace in (None, other.namespace)
            and self.selected in (None, other.name)
        )


def target(path: str) -> Target | None:
    """The stored kind's object or collection at `path`, or None when no stored kind lives there."""
    m = RESOURCE_PATH.match(path)
    if m is None or (m["prefix"], m["plural"]) not in STORED:
        return None
    namespaced = STORED[(m["prefix"], m["plural"])].namespaced
    if not namespaced and m["namespace"] is not None:
        return None  # a cluster-scoped kind has no namespace
    if namespaced and m["namespace"] is None and m["name"] is not None:
        return None  # a namespaced object is named within its namespace (its collection spans them all)
    if m["sub"] is not None and not STORED[(m["prefix"], m["plural"])].status_subresource:
        return None
    return Target(m["prefix"], m["plural"], m["namespace"], m["name"], m["sub"])


def path_of(obj: dict[str, Any]) -> str:
    """The API path of a stored kind's object, from its apiVersion, kind, namespace and name."""
    api_version, meta = obj["apiVersion"], obj["metadata"]
    prefix = "api/v1" if api_version == "v1" else f"apis/{api_version}"
    plural = next(pl for (pre, pl), k in STORED.items() if pre == prefix and k.kind == obj["kind"])
    namespace = (meta.get("namespace") or "default") if STORED[(prefix, plural)].namespaced else None
    return Target(prefix, plural, namespace, None).object_path(meta["name"])


def captured_json(name: str) -> Any:
    return json.loads((API / name).read_text())


def field_selector(text: str) -> list[tuple[list[str], bool, str]] | None:
    """The terms of a fieldSelector ("a.b=c,d!=e") as (path, equal, value); None when it is not of that form."""
    terms = []
    for term in filter(None, text.split(",")):
        m = re.fullmatch(r"([A-Za-z][A-Za-z0-9.]*)(==|=|!=)(.*)", term)
        if m is None:
            return None
        terms.append((m[1].split("."), m[2] != "!=", m[3]))
    return terms


def selected(obj: dict[str, Any], terms: list[tuple[list[str], bool, str]]) -> bool:
    for path, equal, value in terms:
        found: Any = obj
        for part in path:
            found = found.get(part) if isinstance(found, dict) else None
        if ((found if isinstance(found, str) else "") == value) != equal:
            return False
    return True


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON Merge Patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class ObjectStore:
    """The stored kinds' objects by path, with resourceVersions; every answer is (status, headers, body).

    A test changes cluster objects with `put`, `patch` and `delete` (the same code paths as the HTTP verbs), and
    every open watch of the collection sees the event."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}  # object path -> object
        self.revision = 1000
        self.compacted = 0  # watches from a resourceVersion older than this get the captured 410 ERROR event
        self.epoch = 0  # bumped by drop_watches(): open watches end
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        # Every write that took a new resourceVersion, for watches: (revision, object path, type, object).
        self.changes: list[tuple[int, str, str, dict[str, Any]]] = []
        # (prefix, plural) of kinds whose CRD is not installed: every request answers 404, as the API server does
        # for a resource it does not know
        self.missing: set[tuple[str, str]] = set()

    # ----- what tests call ---------------------------------------------------------------------------------------

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create `obj`, or replace the stored object of its name (no resourceVersion check); the stored copy."""
        path = path_of(obj)
        where = target(path)
        assert where is not None
        body = copy.deepcopy(obj)
        body["metadata"].pop("resourceVersion", None)
        with self.lock:
            if path in self.objects:
                status, answer = self.handle("PUT", where, body, "application/json")
            else:
                collection = Target(where.prefix, where.plural, where.namespace, None)
                status, answer = self.handle("POST", collection, body, "application/json")
        assert status in (200, 201), answer
        return dict(answer)

    def patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch the object at `path` (as `kubectl patch --type=merge` or `kubectl label` would)."""
        where = target(path)
        assert where is not None and where.name is not None, path
        status, answer = self.handle("PATCH", where, patch, "application/merge-patch+json")
        assert status == 200, answer
        return dict(answer)

    def delete(self, path: str) -> None:
        where = target(path)
        assert where is not None and where.name is not None, path
        status, answer = self.handle("DELETE", where, None, "")
        assert status == 200, answer

    def seed(self, *lists: str) -> None:
        """Store every object of these captured list responses (`tests/data/api/list-*.json`)."""
        for name in lists:
            body = captured_json(name)
            api_version = body["apiVersion"]
            for item in body["items"]:
                self.put({"apiVersion": api_version, "kind": body["kind"].removesuffix("List")} | item)

    def compact(self) -> None:
        """Forget the history up to now, as etcd's compaction does: a watch from an older version gets 410."""
        with self.lock:
            self.compacted = self.revision
            self.changes.clear()

    def drop_watches(self) -> None:
        """End every open watch (the terminating chunk, as a server-side timeout or an API server restart)."""
        with self.lock:
            self.epoch += 1
            self.changed.notify_all()

    # ----- the wire ----------------------------------------------------------------------------------------------

    def _record(self, path: str, event_type: str, obj: dict[str, Any]) -> None:
        self.changes.append((int(obj["metadata"]["resourceVersion"]), path, event_type, copy.deepcopy(obj)))
        self.changed.notify_all()

    def events_after(self, collection: Target, rv: int) -> list[tuple[int, bytes]]:
        """Watch events of `collection` newer than `rv`, as the API server streams them (one JSON per line)."""
        with self.lock:
            return [
                (rev, json.dumps({"type": kind, "object": obj}).encode())
                for rev, path, kind, obj in self.changes
                if rev > rv and collection.holds(path)
            ]

    def _status(self, code: int, reason: str, message: str, where: Target, name: str) -> tuple[int, Any]:
        # The Status shape of the captured 409 (lease-update-conflict.json), with this request's names.
        body = captured_json("lease-update-conflict.json")
        body.update(message=message, reason=reason, code=code)
        group = where.kind.group
        body["details"] = {"name": name, "kind": where.plural} | ({"group": group} if group else {})
        return code, body

    def _conflict(self, where: Target, name: str) -> tuple[int, Any]:
        return self._status(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {where.kind.resource} "{name}": the object has been modified; please '
            "apply your changes to the latest version and try again",
            where,
            name,
        )

    def _not_found(self, where: Target, name: str) -> tuple[int, Any]:
        return self._status(404, "NotFound", f'{where.kind.resource} "{name}" not found', where, name)

    def _stamp(self, obj: dict[str, Any], *, changed_from: dict[str, Any] | None) -> dict[str, Any]:
        if changed_from is not None:
            before = {k: v for k, v in changed_from.items() if k != "metadata"}
            after = {k: v for k, v in obj.items() if k != "metadata"}
            meta_before = {k: v for k, v in changed_from["metadata"].items() if k != "resourceVersion"}
            meta_after = {k: v for k, v in obj["metadata"].items() if k != "resourceVersion"}
            if before == after and meta_before == meta_after:
                obj["metadata"]["resourceVersion"] = changed_from["metadata"]["resourceVersion"]
                return obj
        self.revision += 1
        obj["metadata"]["resourceVersion"] = str(self.revision)
        return obj

    def handle(self, method: str, where: Target, body: Any, content_type: str, *, fields: str = "") -> tuple[int, Any]:
        name, kind = where.name, where.kind
        if (where.prefix, where.plural) in self.missing:
            code, status = self._status(404, "NotFound", "the server could not find the requested resource", where, "")
            status["details"] = {}
            return code, status
        with self.lock:
            if method == "GET" and name is None:
                terms = field_selector(fields)
                if terms is None:
                    return self._status(400, "BadRequest", f"unable to parse fieldSelector {fields!r}", where, "")
                items = [o for p, o in sorted(self.objects.items()) if where.holds(p) and selected(o, terms)]
                meta = {"resourceVersion": str(self.revision)}
                return 200, {
                    "kind": kind.kind + "List",
                    "apiVersion": kind.api_version,
                    "metadata": meta,
                    "items": items,
                }
            if method == "POST" and name is None and (where.namespace is not None or not kind.namespaced):
                if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
                    return self._status(400, "BadRequest", "the body is not an object", where, "")
                name = str(body["metadata"].get("name", ""))
                prefix = body["metadata"].get("generateName")
                if not name and isinstance(prefix, str) and prefix:
                    name = prefix + "".join(GENERATED[b % len(GENERATED)] for b in uuid.uuid4().bytes[:5])
                    body = copy.deepcopy(body)
                    body["metadata"]["name"] = name
                path = where.object_path(name)
                if path in self.objects:
                    return self._status(409, "AlreadyExists", f'{kind.resource} "{name}" already exists', where, name)
                obj = copy.deepcopy(body)
                if kind.status_subresource:
                    obj.pop("status", None)  # a create sets no status through the main resource
                obj.update(kind=kind.kind, apiVersion=kind.api_version)
                if where.namespace is not None:
                    obj["metadata"]["namespace"] = where.namespace
                obj["metadata"].update(
                    uid=str(uuid.uuid4()), creationTimestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                )
                self.objects[path] = self._stamp(obj, changed_from=None)
                self._record(path, "ADDED", obj)
                return 201, obj
            if name is None:
                return self._status(405, "MethodNotAllowed", f"{method} on a collection", where, "")
            path = where.object_path(name)
            stored = self.objects.get(path)
            if stored is None:
                return self._not_found(where, name)
            if method == "GET":
                return 200, stored
            if method == "DELETE" and where.sub is not None:
                return self._status(405, "MethodNotAllowed", "DELETE on a status subresource", where, name)
            if method == "DELETE":
                del self.objects[path]
                self.revision += 1
                gone = copy.deepcopy(stored)
                gone["metadata"]["resourceVersion"] = str(self.revision)
                self._record(path, "DELETED", gone)
                status = captured_json("lease-delete.json")
                status["details"] = {"name": name, "kind": where.plural, "uid": stored["metadata"]["uid"]}
                if kind.group:
                    status["details"]["group"] = kind.group
                return 200, status
            if method == "PATCH":
                if "json-patch" in content_type:
                    # RFC 6902 (by the independent `jsonpatch` library); a failed `test` or an operation that does
                    # not apply is 422, as the API server answers (kubernetes/kubernetes#68838).
                    try:
                        new = jsonpatch.apply_patch(stored, body)
                    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError) as exc:
                        return self._status(422, "Invalid", str(exc), where, name)
                else:
                    new = merge_patch(stored, body)
            elif method == "PUT":
                new = copy.deepcopy(body)
            else:
                return self._status(405, "MethodNotAllowed", method, where, name)
            if not isinstance(new, dict) or not isinstance(new.get("metadata"), dict):
                return self._status(400, "BadRequest", "the body is not an object", where, name)
            rv = new["metadata"].get("resourceVersion")
            if rv not in (None, "") and rv != stored["metadata"]["resourceVersion"]:
                return self._conflict(where, name)
            if where.sub is not None:  # the status subresource: only the status changes
                status = new.get("status")
                new = copy.deepcopy(stored)
                new.pop("status", None)
                if status is not None:
                    new["status"] = status
            elif kind.status_subresource:  # the main resource: the status stays as it is
                new.pop("status", None)
                if "status" in stored:
                    new["status"] = copy.deepcopy(stored["status"])
            new.update(kind=kind.kind, apiVersion=kind.api_version)
            for key in ("name", "namespace", "uid", "creationTimestamp"):
                if key in stored["metadata"]:
                    new["metadata"][key] = stored["metadata"][key]
            before = stored["metadata"]["resourceVersion"]
            self.objects[path] = self._stamp(new, changed_from=stored)
            if new["metadata"]["resourceVersion"] != before:
                self._record(path, "MODIFIED", new)
            return 200, new


class APIDouble:
    def __init__(self, scripts: dict[tuple[str, bool], list[Reply]], *, address: str = "127.0.0.1") -> None:
        """scripts: (path, is_watch) -> replies in order; address: where to listen (a documentation address on a
        test's own link, for speakers in network namespaces)."""
        self.scripts = {k: list(v) for k, v in scripts.items()}
        self.address = address
        self.pushed: dict[str, list[tuple[int, bytes]]] = {}  # path -> (resourceVersion, watch event line)
        self.once: dict[tuple[str, bool], list[Reply]] = {}  # (path, is_watch) -> replies answered once, in order
        self.log: list[tuple[str, bool, str | None, int]] = []  # (path, watch, resourceVersion, status)
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self.store = ObjectStore()
        self.hang = 0.0  # seconds before a stored-object request is answered
        # (method, path) -> the HTTP status that request gets instead (403: RBAC without that verb), until removed
        self.refuse: dict[tuple[str, str], int] = {}
        # (method, path) -> called once before that request is handled (another client's write that lands first)
        self.before: dict[tuple[str, str], Any] = {}
        self.requests: list[tuple[str, str, int]] = []  # stored-object requests: (method, path, status)
        self.seen: list[tuple[str, str]] = []  # every request, scripted or stored, as it came: (method, path?query)
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _stored(self, method: str) -> bool:
                """Answer a stored-object request; False when the path is not one (or a script or a one-shot
                reply claims it)."""
                url = urlsplit(self.path)
                where = target(url.path)
                query = parse_qs(url.query)
                watch = method == "GET" and query.get("watch", ["false"])[0] in ("true", "1")
                if where is None or double.claimed(url.path, watch):
                    return False
                stopping = double.stopping
                if stopping.is_set() or stopping.wait(double.hang):
                    self.close_connection = True
                    return True
                selector = query.get("fieldSelector", [""])[0]
                if selector and watch and where.name is None:  # a list's selector is the store's `fields`
                    key, _, value = selector.partition("=")
                    if key != "metadata.name" or not value:
                        self.send_error(400, "a watch's fieldSelector is doubled for metadata.name=NAME only")
                        return True
                    where = replace(where, selected=value.removeprefix("="))
                if watch and where.name is None:
                    self._watch_stored(where, int(query.get("resourceVersion", ["0"])[0] or 0), stopping)
                    return True
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self.send_error(413)
                    return True
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                hook = double.before.pop((method, url.path), None)
                if hook is not None:
                    hook()
                refused = double.refuse.get((method, url.path))
                if refused is not None:
                    status, answer = double.store._status(refused, "Forbidden", f"{method} refused", where, "")
                else:
                    status, answer = double.store.handle(
                        method,
                        where,
                        body,
                        self.headers.get("Content-Type", ""),
                        fields=query.get("fieldSelector", [""])[0],
                    )
                double.requests.append((method, url.path, status))
                payload = json.dumps(answer).encode()
                self.send_response(status)
                captured = {201: "lease-create-l2guard.headers.txt", 200: "lease-update-renew.headers.txt"}
                for key, value in captured_headers(captured.get(status, "lease-update-conflict.headers.txt"))[1]:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return True

            def _watch_stored(self, collection: Target, rv: int, stopping: threading.Event) -> None:
                """Stream the store's changes of `collection` after `rv`, then new ones as they happen, for up to
                WATCH_HOLD seconds; then end the stream like a server-side watch timeout. From a version older
                than the store's compaction: the captured 410 ERROR event alone, as the API server sends it."""
                self.send_response(200)
                for key, value in captured_headers("watch-nodes.headers.txt")[1]:
                    self.send_header(key, value)
                self.send_header("Transfer-Encoding", "chunked")
                # A watch that ends cleanly leaves the connection open for the next request, as the API server does
                # (the client pools it; with its retries off, a connection closed unannounced is a watch error).
                self.end_headers()
                deadline = time.monotonic() + WATCH_HOLD
                store = double.store
                epoch = store.epoch
                try:
                    if rv < store.compacted:
                        gone = json.loads((API / "watch-too-old.jsonl").read_text().splitlines()[0])
                        gone["object"]["message"] = f"too old resource version: {rv} ({store.compacted})"
                        chunk = json.dumps(gone).encode() + b"\n"
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        deadline = 0.0
                    while not stopping.is_set() and time.monotonic() < deadline and store.epoch == epoch:
                        for rev, line in store.events_after(collection, rv):
                            chunk = line + b"\n"
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                            rv = rev
                        self.wfile.flush()
                        with store.changed:
                            store.changed.wait(0.1)
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except OSError:
                    self.close_connection = True
                # A watch that ended cleanly leaves the connection open for the next request, as the API server
                # does: closing it unannounced races the client's reuse of it (RemoteDisconnected on its next
                # list, which the speaker counts as a failure and briefly goes fail-static for).
                self.close_connection |= stopping.is_set()

            def do_POST(self) -> None:
                double.seen.append(("POST", self.path))
                if not self._stored("POST"):
                    self.send_error(405)

            def do_PUT(self) -> None:
                double.seen.append(("PUT", self.path))
                if not self._stored("PUT"):
                    self.send_error(405)

            def do_PATCH(self) -> None:
                double.seen.append(("PATCH", self.path))
                if not self._stored("PATCH"):
                    self.send_error(405)

            def do_DELETE(self) -> None:
                double.seen.append(("DELETE", self.path))
                if not self._stored("DELETE"):
                    self.send_error(405)

            def do_GET(self) -> None:
                double.seen.append(("GET", self.path))
                if self._stored("GET"):
                    return
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                watch = query.get("watch", ["false"])[0] in ("true", "1")
                rv = query.get("resourceVersion", [None])[0]
                stopping = double.stopping
                reply = double._next(url.path, watch)
                double.log.append((url.path, watch, rv, reply.status))
                if stopping.wait(reply.delay):
                    self.close_connection = True
                    return
                self.send_response(reply.status)
                for key, value in reply.headers:
                    self.send_header(key, value)
                if reply.events is None:
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                    return
                self.send_header("Transfer-Encoding", "chunked")
                # A watch that ends cleanly leaves the connection open for the next request, as the API server does
                # (the client pools it; with its retries off, a connection closed unannounced is a watch error).
                self.end_headers()
                try:
                    for line in double._pushed_after(url.path, rv) + reply.events:
                        chunk = line + b"\n"
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.flush()
                    if reply.drop:
                        self.wfile.write(b'100\r\n{"type":"MODIFIED","object":{')
                        self.wfile.flush()
                        self.close_connection = True
                        return
                    stopping.wait(reply.hold)
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except OSError:
                    self.close_connection = True
                self.close_connection |= stopping.is_set()  # as for the stored watches

        self._handler = Handler
        self._listen(0)

    def _listen(self, port: int) -> None:
        self.httpd = ThreadingHTTPServer((self.address, port), self._handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def claimed(self, path: str, watch: bool) -> bool:
        """Whether a script or a one-shot reply answers this request instead of the store."""
        with self._lock:
            return bool(self.once.get((path, watch))) or (path, False) in self.scripts or (path, True) in self.scripts

    def _next(self, path: str, watch: bool) -> Reply:
        with self._lock:
            once = self.once.get((path, watch))
            if once:
                return once.pop(0)
            script = self.scripts.get((path, watch))
            if not script:
                return Reply(status=404, body=b'{"kind":"Status","code":404}')
            return script.pop(0) if len(script) > 1 else script[0]

    def push(self, path: str, event_type: str, obj: dict[str, Any]) -> None:
        """A change to the scripted collection `path` made mid-test (say a label put on a Node): every later watch
        of `path` from a resourceVersion older than the object's streams it before its scripted events, as the API
        server streams the changes after a watch's resourceVersion, so each watcher sees it once. Scripted lists
        stay as they are."""
        line = json.dumps({"type": event_type, "object": obj}).encode()
        with self._lock:
            self.pushed.setdefault(path, []).append((int(obj["metadata"]["resourceVersion"]), line))

    def _pushed_after(self, path: str, rv: str | None) -> list[bytes]:
        after = int(rv) if rv and rv.isdigit() else 0
        with self._lock:
            return [line for version, line in self.pushed.get(path, []) if version > after]

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"

    def __enter__(self) -> APIDouble:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop answering, like an API server that went away (idempotent)."""
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def restart(self) -> None:
        """After `stop()`: answer again on the same port, from the same store, like an API server back up."""
        assert self.stopping.is_set(), "restart() follows stop()"
        self.stopping = threading.Event()
        self._listen(self.port)
        self.thread.start()

    def wait_for(self, predicate: object, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():  # type: ignore[operator]
            assert time.monotonic() < deadline, f"timed out; requests: {self.log}"
            time.sleep(0.02)
