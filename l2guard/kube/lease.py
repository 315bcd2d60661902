"""The Lease keeper: holds and renews this speaker's coordination.k8s.io/v1 Lease, so that peers judge it alive.

`LeaseKeeper` creates the Lease when it is missing and renews it every `renew_interval` seconds (2 s by default)
with a PUT carrying the resourceVersion it last read, writing `holderIdentity`, `leaseDurationSeconds` (6 s by
default) and `renewTime` as client-go's leader election does. A 409 (someone else wrote the Lease since our read)
means: read it again and retry once; a 404 means it was deleted: create it again. Every API call carries a
`_request_timeout`, so a hung API server cannot hold the renewal loop for long (urllib3 retries a failed attempt up
to 3 times, each bounded by the timeout).

`release()` expires the Lease at once, as client-go's `LeaderElector.release` does
(tools/leaderelection/leaderelection.go: holderIdentity cleared, leaseDurationSeconds 1, renewTime now): a merge
patch with no resourceVersion, so it cannot conflict. It removes holderIdentity (null, as in the captured
`lease-patch-release`) where client-go writes ""; readers treat both as no holder. A peer sees the record change,
and an empty holder (or a 1-second duration) means nobody holds it: the next speaker takes over without waiting
for the lease duration.

`annotations` (the speaker's MACs, `l2core.probing.MACS_ANNOTATION`) are written on the Lease when it is created
and with every renewal, merged into what is there: they cost no write of their own.

It exposes what the control plane needs for fail-static and the `lease renewal age` metric (`state()`: the
monotonic time of the last successful renewal, consecutive failures, the last error's reason). It must not judge
anybody's liveness (that is `l2core.liveness`), choose the Lease's name, or build the API client.

Requests are raw JSON (`l2guard.kube.rest`), not the typed CoordinationV1Api: its methods turn a dict body into a
V1Lease model and rewrite the MicroTimes (see there); here renewTime goes out exactly as client-go writes it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes import client as k8s

from l2guard.kube.errors import Conflict, KubeError, NotFound
from l2guard.kube.rest import path, request_json

log = logging.getLogger(__name__)

DEFAULT_DURATION = 6  # seconds (leaseDurationSeconds is an integer)
DEFAULT_RENEW_INTERVAL = 2.0  # seconds
RELEASED_DURATION = 1  # client-go's release() writes LeaseDurationSeconds: 1


def micro_time(now: float) -> str:
    """A metav1.MicroTime as client-go writes it: RFC 3339 in UTC with microseconds."""
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class LeaseState:
    last_renewed: float | None  # time.monotonic() of the last successful renewal; None before the first
    failures: int  # consecutive failed renewals (0 after a success)
    last_error: str  # one line; "" after a success


class LeaseKeeper:
    def __init__(
        self,
        api: k8s.ApiClient,
        *,
        name: str,
        namespace: str,
        holder: str,
        duration: int = DEFAULT_DURATION,
        renew_interval: float = DEFAULT_RENEW_INTERVAL,
        request_timeout: float | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> None:
        """`request_timeout` bounds each API call (default: the renew interval, so one hung call cannot hide the
        next renewal); `annotations` go on the Lease with each write."""
        if duration <= RELEASED_DURATION or not 0 < renew_interval < duration:
            raise ValueError(
                f"lease duration {duration}s and renew interval {renew_interval}s: the duration must exceed "
                f"{RELEASED_DURATION}s and the interval must be positive and shorter than the duration"
            )
        self.api = api
        self._collection = path("/apis/coordination.k8s.io/v1/namespaces", namespace, "leases")
        self._path = path(self._collection, name)
        self.name = name
        self.namespace = namespace
        self.holder = holder
        self.duration = duration
        self.renew_interval = renew_interval
        self.request_timeout = request_timeout if request_timeout is not None else renew_interval
        self.annotations = dict(annotations or {})
        self._lease: dict[str, Any] | None = None  # the Lease as last read or written
        self._lock = threading.Lock()  # _state
        self._calls = threading.Lock()  # one renewal or release at a time (the loop and the caller's thread)
        self._state = LeaseState(last_renewed=None, failures=0, last_error="")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def state(self) -> LeaseState:
        with self._lock:
            return self._state

    # --- API calls (raw JSON in and out) ---

    def _call(
        self,
        method: str,
        *,
        body: dict[str, Any] | None = None,
        content_type: str = "application/json",
        collection: bool = False,
    ) -> dict[str, Any]:
        where = self._collection if collection else self._path
        return request_json(self.api, method, where, body=body, content_type=content_type, timeout=self.request_timeout)

    def _read_or_create(self) -> tuple[dict[str, Any], bool]:
        """The Lease as stored, and whether this call created it (with a fresh renewTime)."""
        try:
            return self._call("GET"), False
        except NotFound:
            now = micro_time(time.time())
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace}
                | ({"annotations": dict(self.annotations)} if self.annotations else {}),
                "spec": {
                    "holderIdentity": self.holder,
                    "leaseDurationSeconds": self.duration,
                    "acquireTime": now,
                    "renewTime": now,
                    "leaseTransitions": 0,
                },
            }
            return self._call("POST", body=body, collection=True), True

    def _replace(self, lease: dict[str, Any]) -> dict[str, Any]:
        read = lease.get("spec")
        spec = dict(read) if isinstance(read, dict) else {}
        now = micro_time(time.time())
        if spec.get("holderIdentity") != self.holder:  # taking it over (after a release, or a previous holder)
            transitions = spec.get("leaseTransitions")
            spec["acquireTime"] = now
            spec["leaseTransitions"] = (transitions if isinstance(transitions, int) else 0) + 1
        spec.update(holderIdentity=self.holder, leaseDurationSeconds=self.duration, renewTime=now)
        body = lease | {"spec": spec}
        if self.annotations:
            meta = lease.get("metadata")
            meta = dict(meta) if isinstance(meta, dict) else {}
            read_annotations = meta.get("annotations")
            meta["annotations"] = (
                dict(read_annotations) if isinstance(read_annotations, dict) else {}
            ) | self.annotations
            body["metadata"] = meta
        return self._call("PUT", body=body)

    def _renew(self) -> None:
        if self._lease is None:
            self._lease, created = self._read_or_create()
            if created:
                return
        try:
            self._lease = self._replace(self._lease)
        except Conflict:  # written by someone else since our read: re-read, retry once
            self._lease, created = self._read_or_create()
            if not created:
                self._lease = self._replace(self._lease)
        except NotFound:  # deleted since our read: create it again
            self._lease = None
            self._lease, _ = self._read_or_create()

    # --- what the control plane calls ---

    def renew(self) -> None:
        """One renewal (creating the Lease if needed); raises KubeError when it failed. Updates `state()`."""
        try:
            with self._calls:
                self._renew()
        except KubeError as exc:
            with self._lock:
                self._state = LeaseState(self._state.last_renewed, self._state.failures + 1, exc.reason)
            raise
        with self._lock:
            self._state = LeaseState(time.monotonic(), 0, "")

    def release(self) -> None:
        """Expire the Lease at once (see the module docstring). A missing Lease is already released. Call `stop()`
        first: a renewal after the release takes the Lease again."""
        patch = {
            "spec": {
                "holderIdentity": None,
                "leaseDurationSeconds": RELEASED_DURATION,
                "renewTime": micro_time(time.time()),
            }
        }
        with self._calls:
            try:
                self._lease = self._call("PATCH", body=patch, content_type="application/merge-patch+json")
            except NotFound:
                self._lease = None

    def start(self) -> None:
        """Renew in a thread: at once, then every `renew_interval` seconds until `stop()`."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"lease-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing; returns once an ongoing call ended (bounded by the request timeout). Does not release."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.request_timeout * 4 + 1)  # urllib3 may retry a failed connection 3 times
            self._thread = None

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            next_at = time.monotonic() + self.renew_interval
            fields = {"event": "lease-renewal", "node": self.holder}
            failures = self.state().failures
            try:
                self.renew()
            except KubeError as exc:
                if failures == 0:
                    log.warning(
                        "lease renewal failed: %s", exc.reason, extra={"fields": fields | {"reason": exc.reason}}
                    )
                continue
            if failures:
                log.info("lease renewed again after %s failures", failures, extra={"fields": fields})
