"""The ServiceL2Status writer: keeps MetalLB's `metallb.io/v1beta1` ServiceL2Status objects of this node as MetalLB's
speaker does (`l2core.l2status` says which and how), from a worker thread, so the control loop never waits on
the API server.

`offer(wanted)` hands over what this node announces now (service key -> status) and returns at once; only the
latest offer is kept (a mailbox of one: bounded, and a burst of changes costs one pass). The worker then lists the
objects in the namespace (pages of 500), computes the writes and makes them: a create (POST with `generateName:
l2-` and the three labels) followed by a merge patch of the status subresource (the API server drops `status` on a
create when the CRD has the subresource, as MetalLB's does; controller-runtime's CreateOrPatch does the same two
writes), a status patch when the status differs, a delete when it must go. A steady state lists nothing and writes
nothing: a pass runs when an offer differs from the last one, after a failed write (5 s later), when someone else
changed or deleted one of this node's objects, and once per `resync` seconds as a safety net.

Someone else: a second thread watches this node's objects (`labelSelector=metallb.io/node=NODE`, from the last
list's resourceVersion), as MetalLB's controller watches them (its event filter passes only this node's objects).
An event that matches what this node wrote itself (kept in `_mine`: name -> status) is ignored, so the writer's own
writes cause no pass; a deletion or a status it did not write starts one at once. That is what repairs a split
view: while two speakers briefly both think they own a service, the second deletes the first's object, and the
first, whose offer does not change, learns of it from the watch.

The CRD may be absent (MetalLB's CRDs installed without the ServiceL2Status one, or a cluster with none): a 404 on
the list says so, logged once at INFO, and the writer stays idle, checking again with one list every `recheck`
seconds. Other failures are logged once per distinct reason, at WARNING, and retried after 5 s (a 403, missing RBAC
rules, after `recheck` seconds).

Bounds: a token bucket over all writes (`burst` at once, then `rate` per second; the worker waits for a token, the
caller never does), a newer offer interrupts the pass in progress (the next pass starts from a fresh list), and the
stop waits at most `request_timeout` per write in flight. Counters (`writes`, `failed`) are plain ints.

It must not decide which objects this node should have: `l2core.l2status` does.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlencode

import urllib3
from kubernetes import client as k8s
from kubernetes.watch.watch import iter_resp_lines

from l2core.l2status import (
    GENERATE_NAME,
    LABEL_NODE,
    Create,
    Delete,
    L2Status,
    Observed,
    Write,
    WriteStatus,
    observed_from,
    status_from,
    writes,
)
from l2guard.kube.errors import TRANSLATED, Forbidden, Gone, Invalid, KubeError, NotFound, one_line, translate
from l2guard.kube.events import TokenBucket
from l2guard.kube.rest import path, request_json

log = logging.getLogger(__name__)

GROUP_VERSION = "metallb.io/v1beta1"
PLURAL = "servicel2statuses"
KIND = "ServiceL2Status"
DEFAULT_BURST = 25
DEFAULT_RATE = 10.0  # writes per second after the burst
DEFAULT_RESYNC = 300.0  # seconds between passes in a steady state
DEFAULT_RECHECK = 60.0  # seconds between checks for the CRD while it is absent
RETRY = 5.0  # seconds after a failed pass
PAGE = 500  # objects per list page
MAX_PAGES = 200  # 100,000 objects: beyond, the list is cut (and logged)
WATCH_TIMEOUT = 300  # seconds: the server ends a watch after this; it is watched again from the last version


class L2StatusWriter:
    def __init__(
        self,
        api: k8s.ApiClient,
        *,
        node: str,
        namespace: str,
        burst: int = DEFAULT_BURST,
        rate: float = DEFAULT_RATE,
        resync: float = DEFAULT_RESYNC,
        recheck: float = DEFAULT_RECHECK,
        request_timeout: float = 5.0,
    ) -> None:
        if burst < 1 or not rate > 0 or not resync > 0 or not recheck > 0 or not request_timeout > 0:
            raise ValueError("the burst must be at least 1, the rate and the intervals positive")
        self.api = api
        self.node = node
        self.namespace = namespace
        self.request_timeout = request_timeout
        self.writes = 0  # writes the API server took
        self.failed = 0  # writes or lists it did not
        self.installed: bool | None = None  # None: not known yet
        self._resync = resync
        self._recheck = recheck
        self._bucket = TokenBucket(burst=burst, rate=rate)
        self._lock = threading.Lock()
        self._offered: dict[str, L2Status] | None = None  # the latest offer, not yet taken by the worker
        self._last_offer: dict[str, L2Status] | None = None  # what offer() compared with
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._problem: str | None = None  # the failure last logged, until a pass succeeds
        self._in_pass = False
        # Shared with the watch thread, under _lock: this node's objects as it last listed or wrote them, the last
        # list's resourceVersion, and whether someone else changed them since.
        self._mine: dict[str, L2Status | None] = {}
        self._rv: str | None = None
        self._dirty = False
        self._watcher: threading.Thread | None = None
        self._stream: Any = None  # the open watch response, for stop() to interrupt
        self._custom = k8s.CustomObjectsApi(api)

    # ------------------------------------------------------------------ the caller's side (never blocks)

    def offer(self, wanted: Mapping[str, L2Status]) -> None:
        """What this node announces now; the worker catches up. An offer equal to the last one is dropped."""
        wanted = dict(wanted)
        with self._lock:
            if wanted == self._last_offer:
                return
            self._last_offer = wanted
            self._offered = wanted
        self._wake.set()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="l2status-writer", daemon=True)
        self._watcher = threading.Thread(target=self._watch_loop, name="l2status-watch", daemon=True)
        self._thread.start()
        self._watcher.start()

    def stop(self, *, flush: float = 0.0) -> None:
        """Stop the worker; with `flush`, first give it up to that many seconds to finish the last offer (the
        speaker offers nothing before it stops, so its objects go)."""
        if flush > 0 and self._thread is not None:
            deadline = time.monotonic() + flush
            while time.monotonic() < deadline and self._busy():
                self._stop.wait(0.05)
        self._stop.set()
        self._wake.set()
        with self._lock:
            stream = self._stream
        if stream is not None:  # interrupt a read blocked in the watch thread (as the list+watch source does)
            with contextlib.suppress(Exception):
                stream.shutdown()
            with contextlib.suppress(Exception):
                stream.close()
        for thread in (self._thread, self._watcher):
            if thread is not None:
                thread.join(self.request_timeout * 2 + 1)
        self._thread = self._watcher = None

    def _busy(self) -> bool:
        with self._lock:
            return (self._offered is not None or self._in_pass) and self.installed is not False

    # ------------------------------------------------------------------ the worker

    def _run(self) -> None:
        target: dict[str, L2Status] | None = None
        next_pass: float | None = None  # monotonic; None: only when an offer comes
        while not self._stop.is_set():
            timeout = None if next_pass is None else max(0.0, next_pass - time.monotonic())
            self._wake.wait(timeout)
            self._wake.clear()
            if self._stop.is_set():
                return
            with self._lock:
                offered, self._offered = self._offered, None
                dirty, self._dirty = self._dirty, False
            due = dirty or (next_pass is not None and time.monotonic() >= next_pass)
            if offered is not None:
                target = offered
                # While the resource is absent, only the periodic check lists: a change of what this node
                # announces costs nothing then.
                due |= self.installed is not False
            if target is None or not due:
                continue
            with self._lock:
                self._in_pass = True
            try:
                next_pass = time.monotonic() + self._pass(target)
            finally:
                with self._lock:
                    self._in_pass = False

    def _pass(self, target: Mapping[str, L2Status]) -> float:
        """One pass: list, diff, write. Returns the seconds until the next pass without an offer."""
        try:
            observed = self._list()
        except NotFound:
            if self.installed is not False:
                log.info(
                    "no ServiceL2Status resource (metallb.io/v1beta1) in the cluster: not maintaining MetalLB's "
                    "status objects; checking again every %.0f s",
                    self._recheck,
                    extra={"fields": {"event": "l2status-absent", "node": self.node}},
                )
            self.installed = False
            return self._recheck
        except Forbidden as exc:  # no RBAC rule for them: as rare a check as for an absent resource
            self._failed(exc, "list")
            return self._recheck
        except KubeError as exc:
            self._failed(exc, "list")
            return RETRY
        if self.installed is False:
            log.info(
                "ServiceL2Status resource found: maintaining MetalLB's status objects",
                extra={"fields": {"event": "l2status-present", "node": self.node}},
            )
        self.installed = True
        with self._lock:
            self._mine = {o.name: o.status for o in observed if o.node == self.node}
        for write in writes(target, observed, self.node):
            if self._stop.is_set() or self._newer():
                return 0.0  # a newer offer: a fresh list
            if not self._token():
                return 0.0
            try:
                self._write(write)
            except NotFound:
                continue  # deleted meanwhile (by another node taking over): nothing left to do about it
            except KubeError as exc:
                self._failed(exc, type(write).__name__.lower())
                # Forbidden: RBAC rules missing; Invalid: a node name no label value can hold (63 characters)
                return self._recheck if isinstance(exc, Forbidden | Invalid) else RETRY
        if self._problem is not None:
            log.info(
                "ServiceL2Status objects written again",
                extra={"fields": {"event": "l2status-recovered", "node": self.node}},
            )
            self._problem = None
        return self._resync

    def _newer(self) -> bool:
        with self._lock:
            return self._offered is not None

    def _token(self) -> bool:
        """Wait for a write token (False: stopped meanwhile)."""
        while not self._bucket.take():
            if self._stop.wait(1.0 / self._bucket.rate):
                return False
        return True

    def _failed(self, exc: KubeError, what: str) -> None:
        self.failed += 1
        if exc.reason != self._problem:
            log.warning(
                "ServiceL2Status %s failed: %s",
                what,
                exc.reason,
                extra={"fields": {"event": "l2status-failed", "reason": exc.reason, "node": self.node}},
            )
        self._problem = exc.reason

    def _collection(self) -> str:
        return path(f"/apis/{GROUP_VERSION}/namespaces", self.namespace, PLURAL)

    def _list(self) -> list[Observed]:
        out: list[Observed] = []
        more = ""
        for _ in range(MAX_PAGES):
            query = {"limit": str(PAGE)} | ({"continue": more} if more else {})
            page = self._request("GET", f"{self._collection()}?{urlencode(query)}")
            items = page.get("items")
            for item in items if isinstance(items, list) else ():
                if isinstance(item, Mapping) and (obj := observed_from(item)) is not None:
                    out.append(obj)
            meta = page.get("metadata")
            more = str(meta.get("continue") or "") if isinstance(meta, Mapping) else ""
            if not more:
                rv = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
                with self._lock:
                    self._rv = rv if isinstance(rv, str) and rv else None
                return out
        log.warning(
            "more than %d ServiceL2Status objects: only the first are considered",
            PAGE * MAX_PAGES,
            extra={"fields": {"event": "l2status-list-cut", "node": self.node}},
        )
        return out

    def _write(self, write: Write) -> None:
        if isinstance(write, Delete):
            with self._lock:  # before the request: its watch event must find it gone already
                self._mine.pop(write.name, None)
            self._request("DELETE", path(self._collection(), write.name))
            self.writes += 1
            log.info(
                "deleted the ServiceL2Status of %s naming node %s",
                write.key,
                write.node,
                extra={"fields": {"event": "l2status-deleted", "service": write.key, "node": write.node}},
            )
        elif isinstance(write, Create):
            status = write.status
            body = {
                "apiVersion": GROUP_VERSION,
                "kind": KIND,
                "metadata": {"generateName": GENERATE_NAME, "namespace": self.namespace, "labels": status.labels()},
                "status": status.body(),
            }
            created = self._request("POST", self._collection(), body)
            self.writes += 1
            meta = created.get("metadata")
            name = str(meta.get("name", "")) if isinstance(meta, Mapping) else ""
            with self._lock:
                self._mine[name] = status_from(created.get("status"))
            log.info(
                "created ServiceL2Status %s for %s",
                name,
                status.key,
                extra={"fields": {"event": "l2status-created", "service": status.key, "node": self.node}},
            )
            if name and created.get("status") != status.body():  # the status subresource dropped it, as it does
                self._write(WriteStatus(name, status))
        else:
            # A merge patch (RFC 7386) of the whole status: the list of interfaces is replaced, or removed (null).
            patch = {"status": write.status.body() | ({} if write.status.interfaces else {"interfaces": None})}
            where = path(self._collection(), write.name, "status")
            with self._lock:
                self._mine[write.name] = write.status
            self._request("PATCH", where, patch, content_type="application/merge-patch+json")
            self.writes += 1

    # ------------------------------------------------------------------ the watch thread

    def _watch_loop(self) -> None:
        """Watch this node's objects from the last list's version while the resource is there; on an event this
        node did not cause, start a pass. 410 Gone: a pass, which lists afresh, and a watch from that list; any
        other failure (a dropped stream, no `watch` verb in the RBAC rules): the watch again from the last version,
        after `RETRY` seconds doubling up to `recheck` (a failing watch costs no list)."""
        rv: str | None = None
        failures = 0
        while not self._stop.is_set():
            with self._lock:
                listed = self._rv
            if rv is None:
                rv = listed
            if rv is None or self.installed is not True:
                self._stop.wait(1.0)
                continue
            started = time.monotonic()
            try:
                for event_type, obj in self._watch(rv):
                    meta = obj.get("metadata")
                    version = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
                    if isinstance(version, str) and version:
                        rv = version
                    if self._foreign(event_type, obj):
                        with self._lock:
                            self._dirty = True
                        self._wake.set()
                if time.monotonic() - started < 1.0:  # ended at once, cleanly: no tight loop of watches
                    failures += 1
                    self._stop.wait(min(self._recheck, RETRY * 2 ** (failures - 1)))
                else:
                    failures = 0
            except Gone:
                with self._lock:
                    self._dirty, self._rv = True, None
                self._wake.set()
                rv = None
            except KubeError:
                if self._stop.is_set():
                    return
                failures += 1
                self._stop.wait(min(self._recheck, RETRY * 2 ** (failures - 1)))

    def _foreign(self, event_type: str, obj: Mapping[str, Any]) -> bool:
        """Whether a watch event of this node's objects shows a change this node did not make itself."""
        seen = observed_from(obj)
        if event_type not in ("MODIFIED", "DELETED") or seen is None or seen.node != self.node:
            return False  # ADDED: only this node creates its objects; others' objects are not its business
        with self._lock:
            if seen.name not in self._mine:
                return False  # deleted (or about to be) by this node
            return event_type == "DELETED" or self._mine[seen.name] != seen.status

    def _watch(self, rv: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
        try:
            resp: Any = self._custom.list_namespaced_custom_object(
                "metallb.io",
                "v1beta1",
                self.namespace,
                PLURAL,
                label_selector=f"{LABEL_NODE}={self.node}",
                watch=True,
                resource_version=rv,
                allow_watch_bookmarks=True,
                timeout_seconds=WATCH_TIMEOUT,
                _preload_content=False,
                _request_timeout=(self.request_timeout, WATCH_TIMEOUT + 30),
            )
        except TRANSLATED as exc:
            raise translate(exc) from exc
        with self._lock:
            self._stream = resp
        try:
            status = int(getattr(resp, "status", 200))
            if not 200 <= status <= 299:
                text = f"watch {PLURAL}: HTTP {status}"
                raise Gone(text, status=status) if status == 410 else KubeError(text, status=status)
            for line in iter_resp_lines(resp):  # type: ignore[no-untyped-call]
                if self._stop.is_set():
                    return
                try:
                    event = json.loads(line)
                except ValueError as exc:
                    raise KubeError(f"watch {PLURAL}: malformed event line") from exc
                obj = event.get("object") if isinstance(event, Mapping) else None
                if not isinstance(obj, Mapping):
                    raise KubeError(f"watch {PLURAL}: event without object")
                if event.get("type") == "ERROR":
                    text = one_line(f"watch {PLURAL}: ERROR {obj.get('code')}: {obj.get('message')}")
                    raise Gone(text, status=410) if obj.get("code") == 410 else KubeError(text)
                yield str(event.get("type")), obj
        except (urllib3.exceptions.HTTPError, OSError, AttributeError) as exc:  # a dropped stream, or stop()
            if not self._stop.is_set():
                raise KubeError(one_line(f"watch {PLURAL}: {type(exc).__name__}: {exc}")) from exc
        finally:
            with self._lock:
                self._stream = None
            with contextlib.suppress(Exception):
                resp.release_conn()

    def _request(
        self, method: str, where: str, body: dict[str, Any] | None = None, *, content_type: str = "application/json"
    ) -> dict[str, Any]:
        return request_json(self.api, method, where, body=body, content_type=content_type, timeout=self.request_timeout)
