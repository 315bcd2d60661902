"""The Event poster: core/v1 Events about a Service (or a Node, or a MetalLB object such as an IPAddressPool), posted
from a worker thread so the caller never waits on the API server.

`EventPoster.post(obj, type=, reason=, message=)` returns at once. The same (object, type, reason, message) again
updates the Event it created before, as client-go's legacy recorder does (tools/record/events_cache.go,
EventCorrelator: a strategic merge patch of `count` and `lastTimestamp`), so `kubectl describe` shows
"(x3 over 2m)" instead of three lines; if that Event is gone (Events expire after an hour), a new one is created.

Events only on change, across restarts too: the dedup cache lives in memory, so a restarted speaker would post
every Event it posted before again (one `Announcing` per owned service). So an Event's name is not client-go's
`<object>.<nanoseconds>` but `<object>.<hash>`, the hash of (object, type, reason, message, component, node):
the same thing said by the same node is always the same name (a caller whose message holds a time gives an
`identity` without it, hashed instead of the message). A create answered 409 AlreadyExists means "already
said": the Event is read and adopted into the dedup cache, and nothing is written, unless another Event about the
same object is newer (the situation changed while this speaker was down, say the IP moved away and back): then
the adopted Event is true again and newer than what others said, and its count is bumped, as a repeat would be. An
Event that expired meanwhile is simply created again.
Why core/v1 and not events.k8s.io/v1 series: every kubectl prints `count`/`lastTimestamp`, the Event carries the
reporting node as `source.host` (kubectl's "From" column: `l2guard-speaker, worker-1`), and a repeat is one small
patch with no series heartbeat to keep.

Bounds, so a flapping cluster cannot flood the API server or block the caller:
- a token bucket over all writes (creates and updates): `burst` at once, then `rate` per second (defaults 25 and
  1/s; client-go's EventSourceObjectSpamFilter uses burst 25 too, per object, refilled once in 5 minutes); a write
  with no token is not made and counts as `suppressed`;
- a bounded queue between the caller and the one worker thread: a full queue drops the Event (`dropped`);
- the dedup cache keeps the last 4096 distinct Events (client-go's `maxLruCacheEntries`).
Counters (`posted`, `updated`, `adopted`, `suppressed`, `dropped`, `failed`) are plain ints for the caller to
export.

It must not decide what to report or who reports it: the control plane does (l2core chooses the texts and the
reporter); this only does the API work.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from kubernetes import client as k8s

from l2guard.kube.errors import Conflict, KubeError, NotFound
from l2guard.kube.resources import API_VERSIONS
from l2guard.kube.rest import path, request_json

log = logging.getLogger(__name__)

COMPONENT = "l2guard-speaker"
DEFAULT_BURST = 25
DEFAULT_RATE = 1.0  # writes per second after the burst
DEFAULT_QUEUE = 1000
DEDUP_ENTRIES = 4096
# The API server's limit on an Event's note/message (pkg/apis/core/validation/events.go: NoteLengthLimit, 1 kB).
MAX_MESSAGE_BYTES = 1024
CLUSTER_SCOPED_NAMESPACE = "default"  # where client-go puts Events about cluster-scoped objects (Nodes)
MAX_NAME = 253  # an Event's name is a DNS subdomain
NAME_HASH = 16  # hex digits of the hash in an Event's name
NEWER_LIMIT = 500  # Events about one object read to see whether a newer one exists (after a 409, so rarely)

EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """The object an Event is about (core/v1 ObjectReference). `namespace` is "" for a Node."""

    kind: str
    name: str
    namespace: str = ""
    uid: str = ""
    api_version: str = "v1"


def object_ref(kind: str, key: str, *, uid: str = "") -> ObjectRef:
    """The reference to an object of one of the resource table's kinds by its key ("namespace/name", or a
    cluster-scoped object's name), with that kind's apiVersion (an IPAddressPool's is metallb.io/v1beta1)."""
    namespace, _, name = key.rpartition("/")
    return ObjectRef(kind, name, namespace, uid=uid, api_version=API_VERSIONS[kind])


@dataclass(frozen=True, slots=True)
class _Occurrence:
    obj: ObjectRef
    type: EventType
    reason: str
    message: str
    at: float  # time.time() when post() was called
    identity: str = ""  # what the Event's name is made from instead of the message, when set


def bounded(message: str) -> str:
    """`message` cut to MAX_MESSAGE_BYTES of UTF-8 on a character boundary."""
    data = message.encode()
    if len(data) <= MAX_MESSAGE_BYTES:
        return message
    return data[: MAX_MESSAGE_BYTES - 3].decode(errors="ignore") + "..."


def event_name(obj: ObjectRef, *, type: str, reason: str, message: str, component: str, node: str) -> str:
    """The Event's name: the object's name (cut to fit, as a DNS subdomain) and a hash of everything the Event says
    and who says it, so that the same Event from the same node always has the same name."""
    said = json.dumps(
        [obj.api_version, obj.kind, obj.namespace, obj.name, obj.uid, type, reason, message, component, node]
    )
    digest = hashlib.sha256(said.encode()).hexdigest()[:NAME_HASH]
    head = obj.name[: MAX_NAME - NAME_HASH - 1].rstrip("-.") or "object"
    return f"{head}.{digest}"


def _to_the_second(stamp: object) -> str:
    """An Event's time (metav1.Time, or a MicroTime eventTime) cut to whole seconds: RFC 3339 text in UTC then
    sorts as the times do."""
    return stamp[:19] if isinstance(stamp, str) else ""


def k8s_time(now: float) -> str:
    """A metav1.Time (whole seconds, RFC 3339, UTC), as in the captured Events."""
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class TokenBucket:
    def __init__(self, *, burst: int, rate: float) -> None:
        self.burst = burst
        self.rate = rate
        self.tokens = float(burst)
        self.last = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class EventPoster:
    def __init__(
        self,
        api: k8s.ApiClient,
        *,
        node: str,
        component: str = COMPONENT,
        burst: int = DEFAULT_BURST,
        rate: float = DEFAULT_RATE,
        queue_size: int = DEFAULT_QUEUE,
        request_timeout: float = 5.0,
    ) -> None:
        if burst < 1 or rate < 0 or queue_size < 1 or request_timeout <= 0:
            raise ValueError("event burst and queue size must be at least 1, the rate and timeout not negative")
        self.api = api
        self.node = node
        self.component = component
        self.request_timeout = request_timeout
        self.posted = 0  # Events created
        self.updated = 0  # repeats written as a count update
        self.adopted = 0  # Events found already there (said before a restart) and taken as said, not written
        self.suppressed = 0  # writes the token bucket refused
        self.dropped = 0  # Events refused because the queue was full
        self.failed = 0  # writes the API server did not take
        self._bucket = TokenBucket(burst=burst, rate=rate)
        self._lock = threading.Lock()  # the counters and the bucket
        self._queue: queue.Queue[_Occurrence] = queue.Queue(maxsize=queue_size)
        # (object, type, reason, message) -> (Event namespace, Event name, count); only the worker touches it
        self._seen: OrderedDict[tuple[ObjectRef, str, str, str], tuple[str, str, int]] = OrderedDict()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def post(self, obj: ObjectRef, *, type: EventType, reason: str, message: str, identity: str = "") -> None:
        """Queue an Event; never blocks. Without a token it is suppressed, with a full queue dropped. `identity`
        replaces the message in the Event's name (a message with a time in it is still the same Event after a
        restart); a restarted speaker that finds the Event then keeps its message, the one said first."""
        with self._lock:
            if not self._bucket.take():
                self.suppressed += 1
                return
        try:
            self._queue.put_nowait(_Occurrence(obj, type, reason, message, time.time(), identity))
        except queue.Full:
            with self._lock:
                self.dropped += 1

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="event-poster", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the worker (after the write in flight, bounded by the request timeout); queued Events are left."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.request_timeout * 4 + 1)  # urllib3 may retry a failed connection 3 times
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            try:
                self._write(item)
            except KubeError as exc:
                with self._lock:
                    self.failed += 1
                log.warning(
                    "event not posted: %s",
                    exc.reason,
                    extra={"fields": {"event": "event-post-failed", "reason": exc.reason, "node": self.node}},
                )

    def _write(self, item: _Occurrence) -> None:
        key = (item.obj, item.type, item.reason, item.message)
        seen = self._seen.get(key)
        if seen is not None:
            if self._bump(key, seen, item.at):
                return
            del self._seen[key]  # expired or deleted: start a new Event
        namespace = item.obj.namespace or CLUSTER_SCOPED_NAMESPACE
        # Not client-go's fmt.Sprintf("%v.%x", ref.Name, t.UnixNano()): the same Event has the same name (docstring).
        name = event_name(
            item.obj,
            type=item.type,
            reason=item.reason,
            message=item.identity or item.message,
            component=self.component,
            node=self.node,
        )
        collection = path("/api/v1/namespaces", namespace, "events")
        try:
            self._request("POST", collection, self._event(item, name))
        except Conflict:  # AlreadyExists: said before this process started
            if self._adopt(key, item, namespace, name):
                return
            self._request("POST", collection, self._event(item, name))  # it expired between the 409 and the read
        self._remember(key, (namespace, name, 1))
        with self._lock:
            self.posted += 1

    def _bump(
        self, key: tuple[ObjectRef, str, str, str], seen: tuple[str, str, int], at: float, *, message: str = ""
    ) -> bool:
        """Count one more occurrence of the Event `seen` (namespace, name, count), with `message` as its text when
        given; False when it is gone."""
        namespace, name, count = seen
        patch: dict[str, Any] = {"count": count + 1, "lastTimestamp": k8s_time(at)}
        if message:
            patch["message"] = bounded(message)
        try:
            self._request(
                "PATCH",
                path("/api/v1/namespaces", namespace, "events", name),
                patch,
                content_type="application/strategic-merge-patch+json",
            )
        except NotFound:
            return False
        self._remember(key, (namespace, name, count + 1))
        with self._lock:
            self.updated += 1
        return True

    def _remember(self, key: tuple[ObjectRef, str, str, str], value: tuple[str, str, int]) -> None:
        self._seen[key] = value
        self._seen.move_to_end(key)
        if len(self._seen) > DEDUP_ENTRIES:
            self._seen.popitem(last=False)

    def _adopt(self, key: tuple[ObjectRef, str, str, str], item: _Occurrence, namespace: str, name: str) -> bool:
        """The Event `name` exists already: take it into the dedup cache, writing nothing, unless another Event about
        the same object is newer (then bump its count: it is true again). False when it is gone meanwhile."""
        try:
            existing = self._request("GET", path("/api/v1/namespaces", namespace, "events", name), None)
        except NotFound:
            return False
        count = existing.get("count")
        count = count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 1
        if self._newer_about(item.obj, namespace, existing):
            # True again: said now, in today's words when they differ only where the identity does (a time).
            return self._bump(key, (namespace, name, count), item.at, message=item.message if item.identity else "")
        self._remember(key, (namespace, name, count))
        with self._lock:
            self.adopted += 1
        return True

    def _newer_about(self, obj: ObjectRef, namespace: str, existing: dict[str, Any]) -> bool:
        """Whether another Event about `obj` was last seen in a later second than `existing`. A list that fails
        counts as no: writing nothing is the safe side of "only on change"."""
        fields = [f"involvedObject.kind={obj.kind}", f"involvedObject.name={obj.name}"]
        if obj.namespace:
            fields.append(f"involvedObject.namespace={obj.namespace}")
        try:
            listed = self._request(
                "GET",
                path("/api/v1/namespaces", namespace, "events"),
                None,
                query=[("fieldSelector", ",".join(fields)), ("limit", str(NEWER_LIMIT))],
            )
        except KubeError:
            return False
        mine = _to_the_second(existing.get("lastTimestamp"))
        meta = existing.get("metadata")
        name = meta.get("name") if isinstance(meta, dict) else None
        items = listed.get("items")
        for other in items if isinstance(items, list) else ():
            if not isinstance(other, dict):
                continue
            other_meta = other.get("metadata")
            if isinstance(other_meta, dict) and other_meta.get("name") == name:
                continue
            if _to_the_second(other.get("lastTimestamp") or other.get("eventTime")) > mine:
                return True
        return False

    def _event(self, item: _Occurrence, name: str) -> dict[str, Any]:
        obj = item.obj
        involved = {"kind": obj.kind, "name": obj.name, "apiVersion": obj.api_version}
        if obj.namespace:
            involved["namespace"] = obj.namespace
        if obj.uid:
            involved["uid"] = obj.uid
        stamp = k8s_time(item.at)
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": obj.namespace or CLUSTER_SCOPED_NAMESPACE},
            "involvedObject": involved,
            "type": item.type,
            "reason": item.reason,
            "message": bounded(item.message),
            "source": {"component": self.component, "host": self.node},
            "reportingComponent": self.component,
            "reportingInstance": self.node,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }

    def _request(
        self,
        method: str,
        where: str,
        body: dict[str, Any] | None,
        *,
        content_type: str = "application/json",
        query: list[tuple[str, str]] | None = None,
    ) -> dict[str, Any]:
        return request_json(
            self.api, method, where, body=body, content_type=content_type, query=query, timeout=self.request_timeout
        )
