"""The Event poster: core/v1 Events about a Service (or a Node, or a MetalLB object such as an IPAddressPool), posted
from a worker thread so the caller never waits on the API server.

`EventPoster.post(obj, type=, reason=, message=)` returns at once. The same (object, type, reason, message) again
updates the Event it created before, as client-go's legacy recorder does (tools/record/events_cache.go,
EventCorrelator: a strategic merge patch of `count` and `lastTimestamp`), so `kubectl describe` shows
"(x3 over 2m)" instead of three lines; if that Event is gone (Events expire after an hour), a new one is created.
Why core/v1 and not events.k8s.io/v1 series: every kubectl prints `count`/`lastTimestamp`, the Event carries the
reporting node as `source.host` (kubectl's "From" column: `l2guard-speaker, worker-1`), and a repeat is one small
patch with no series heartbeat to keep.

Bounds, so a flapping cluster cannot flood the API server or block the caller:
- a token bucket over all writes (creates and updates): `burst` at once, then `rate` per second (defaults 25 and
  1/s; client-go's EventSourceObjectSpamFilter uses burst 25 too, per object, refilled once in 5 minutes); a write
  with no token is not made and counts as `suppressed`;
- a bounded queue between the caller and the one worker thread: a full queue drops the Event (`dropped`);
- the dedup cache keeps the last 4096 distinct Events (client-go's `maxLruCacheEntries`).
Counters (`posted`, `updated`, `suppressed`, `dropped`, `failed`) are plain ints for the caller to export.

It must not decide what to report or who reports it: the control plane does (l2core chooses the texts and the
reporter); this only does the API work.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from kubernetes import client as k8s

from l2guard.kube.errors import KubeError, NotFound
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


def bounded(message: str) -> str:
    """`message` cut to MAX_MESSAGE_BYTES of UTF-8 on a character boundary."""
    data = message.encode()
    if len(data) <= MAX_MESSAGE_BYTES:
        return message
    return data[: MAX_MESSAGE_BYTES - 3].decode(errors="ignore") + "..."


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

    def post(self, obj: ObjectRef, *, type: EventType, reason: str, message: str) -> None:
        """Queue an Event; never blocks. Without a token it is suppressed, with a full queue dropped."""
        with self._lock:
            if not self._bucket.take():
                self.suppressed += 1
                return
        try:
            self._queue.put_nowait(_Occurrence(obj, type, reason, message, time.time()))
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
            namespace, name, count = seen
            patch = {"count": count + 1, "lastTimestamp": k8s_time(item.at)}
            try:
                self._request(
                    "PATCH",
                    path("/api/v1/namespaces", namespace, "events", name),
                    patch,
                    content_type="application/strategic-merge-patch+json",
                )
            except NotFound:  # expired or deleted: start a new Event
                del self._seen[key]
            else:
                self._seen[key] = (namespace, name, count + 1)
                self._seen.move_to_end(key)
                with self._lock:
                    self.updated += 1
                return
        namespace = item.obj.namespace or CLUSTER_SCOPED_NAMESPACE
        name = f"{item.obj.name}.{time.time_ns():x}"  # client-go: fmt.Sprintf("%v.%x", ref.Name, t.UnixNano())
        self._request("POST", path("/api/v1/namespaces", namespace, "events"), self._event(item, name))
        self._seen[key] = (namespace, name, 1)
        if len(self._seen) > DEDUP_ENTRIES:
            self._seen.popitem(last=False)
        with self._lock:
            self.posted += 1

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
        self, method: str, where: str, body: dict[str, Any], *, content_type: str = "application/json"
    ) -> dict[str, Any]:
        return request_json(self.api, method, where, body=body, content_type=content_type, timeout=self.request_timeout)
