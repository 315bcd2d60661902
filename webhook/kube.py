"""The kubernetes adapter: list+watch of Nodes, Services, EndpointSlices, IPAddressPools and L2Advertisements into
the webhook's `ClusterView`. The only module that imports the `kubernetes` client.

One thread per resource lists (raw JSON, `_preload_content=False`: no model objects, FIELD-NOTES measured 175 us
and ~20 KB per Node for those) and then watches from the list's resourceVersion, reading the chunked stream line by
line. Events go through a queue to one applier thread, which applies them to the view in batches; admission
requests never wait on either (they read the last published snapshot).

Errors, translated at this boundary:
    410 Gone (a list with an expired resourceVersion, or a watch ERROR event with code 410)
        -> re-list from scratch, no resourceVersion
    anything else (ApiException, urllib3/socket errors, a malformed line)
        -> count it, back off exponentially (0.5 s doubling to 30 s, with jitter), then re-list
It must not make decisions: it moves dicts into the view.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from webhook.metrics import Metrics
from webhook.view import ClusterView, Kind

log = logging.getLogger(__name__)

GONE = 410


class WatchExpired(Exception):
    """The resourceVersion is too old (HTTP 410 or a watch ERROR 410): re-list."""


class SourceError(Exception):
    """Any other list/watch failure: back off, then re-list."""


def make_api_client(kubeconfig: str = "") -> k8s.ApiClient:
    """In-cluster configuration, else the kubeconfig (explicit path, $KUBECONFIG or ~/.kube/config)."""
    if kubeconfig:
        k8s_config.load_kube_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    else:
        try:
            k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
        except k8s_config.ConfigException:
            k8s_config.load_kube_config()  # type: ignore[no-untyped-call]
    return k8s.ApiClient()


@dataclass(frozen=True)
class Resource:
    kind: Kind
    name: str  # for logs and metrics
    call: Callable[..., Any]  # a list function of the client: call(**query) -> urllib3 response


def resources(api: k8s.ApiClient, metallb_namespace: str) -> tuple[Resource, ...]:
    core = k8s.CoreV1Api(api)
    discovery = k8s.DiscoveryV1Api(api)
    custom = k8s.CustomObjectsApi(api)

    def crd(plural: str) -> Callable[..., Any]:
        def call(**query: Any) -> Any:
            return custom.list_namespaced_custom_object("metallb.io", "v1beta1", metallb_namespace, plural, **query)

        return call

    return (
        Resource(Kind.NODE, "nodes", core.list_node),
        Resource(Kind.SERVICE, "services", core.list_service_for_all_namespaces),
        Resource(Kind.ENDPOINT_SLICE, "endpointslices", discovery.list_endpoint_slice_for_all_namespaces),
        Resource(Kind.POOL, "ipaddresspools", crd("ipaddresspools")),
        Resource(Kind.ADVERTISEMENT, "l2advertisements", crd("l2advertisements")),
    )


def _resource_version(obj: object) -> str | None:
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    rv = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
    return rv if isinstance(rv, str) and rv else None


class KubeSource:
    """Feeds a ClusterView from the API server. `start()` spawns daemon threads; `stop()` ends them promptly."""

    def __init__(
        self,
        view: ClusterView,
        resources: tuple[Resource, ...],
        *,
        metrics: Metrics | None = None,
        watch_timeout: int = 300,
        backoff: tuple[float, float] = (0.5, 30.0),
        request_timeout: float = 30.0,
    ) -> None:
        self.view = view
        self.resources = resources
        self.metrics = metrics
        self.watch_timeout = watch_timeout
        self.backoff = backoff
        self.request_timeout = request_timeout
        self._queue: queue.Queue[tuple[str, Kind, Any]] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._open: dict[str, Any] = {}
        self._open_lock = threading.Lock()
        self.relists: dict[str, int] = {r.name: 0 for r in resources}  # lists after the first, for tests and logs

    # ----- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> None:
        for res in self.resources:
            t = threading.Thread(target=self._run, args=(res,), name=f"watch-{res.name}", daemon=True)
            self._threads.append(t)
        self._threads.append(threading.Thread(target=self._apply_loop, name="view-applier", daemon=True))
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._queue.put(("stop", Kind.NODE, None))
        with self._open_lock:
            responses = list(self._open.values())
        for resp in responses:
            # shutdown() interrupts a read blocked in another thread (urllib3 >= 2.3); close() alone would wait
            # for the server. Either may raise anything on a half-closed response; we are leaving anyway.
            with contextlib.suppress(Exception):
                resp.shutdown()
            with contextlib.suppress(Exception):
                resp.close()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    # ----- per-resource loop ----------------------------------------------------------------------------------

    def _run(self, res: Resource) -> None:
        rv: str | None = None
        failures = 0
        listed_once = False
        while not self._stop.is_set():
            try:
                if rv is None:
                    if listed_once:
                        self.relists[res.name] += 1
                    items, rv = self._list(res)
                    listed_once = True
                    self._queue.put(("replace", res.kind, items))
                for event_type, obj in self._watch(res, rv):
                    new_rv = _resource_version(obj)
                    if event_type != "BOOKMARK":
                        self._queue.put(("event", res.kind, (event_type, obj)))
                    if new_rv:
                        rv = new_rv
                    failures = 0
            except WatchExpired as exc:
                log.info(
                    "re-listing %s: %s",
                    res.name,
                    exc,
                    extra={"fields": {"event": "watch-expired", "resource": res.name, "reason": str(exc)}},
                )
                rv = None
            except Exception as exc:  # SourceError, or anything the client library surprises us with
                if self._stop.is_set():
                    break
                if not isinstance(exc, SourceError):
                    # Not a known failure: log it fully, but keep this resource's loop alive (a dead watch thread
                    # would leave the view frozen while /readyz still says synced).
                    log.exception(
                        "list/watch of %s crashed",
                        res.name,
                        extra={"fields": {"event": "watch-error", "resource": res.name}},
                    )
                failures += 1
                if self.metrics is not None:
                    self.metrics.watch_errors.labels(res.name).inc()
                low, high = self.backoff
                delay = min(high, low * 2 ** (failures - 1)) * random.uniform(0.8, 1.2)
                log.warning(
                    "list/watch of %s failed, retrying in %.1f s: %s",
                    res.name,
                    delay,
                    exc,
                    extra={
                        "fields": {
                            "event": "watch-error",
                            "resource": res.name,
                            "reason": str(exc),
                            "retry_in": round(delay, 1),
                        }
                    },
                )
                rv = None
                self._stop.wait(delay)

    def _call(self, res: Resource, **query: Any) -> Any:
        try:
            return res.call(_preload_content=False, **query)
        except ApiException as exc:
            if exc.status == GONE:
                raise WatchExpired(f"HTTP 410: {exc.reason}") from exc
            raise SourceError(f"HTTP {exc.status}: {exc.reason}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise SourceError(f"{type(exc).__name__}: {exc}") from exc

    def _list(self, res: Resource) -> tuple[list[Mapping[str, Any]], str | None]:
        resp = self._call(res, _request_timeout=self.request_timeout)
        status = getattr(resp, "status", 200)
        try:
            body = json.loads(resp.data)
        except (ValueError, TypeError) as exc:
            raise SourceError(f"list {res.name}: body is not JSON") from exc
        if status == GONE or (isinstance(body, Mapping) and body.get("kind") == "Status" and body.get("code") == GONE):
            raise WatchExpired(str(body.get("message", "gone")) if isinstance(body, Mapping) else "gone")
        if not 200 <= int(status) <= 299 or not isinstance(body, Mapping) or not isinstance(body.get("items"), list):
            raise SourceError(f"list {res.name}: HTTP {status}")
        items = [i for i in body["items"] if isinstance(i, Mapping)]
        return items, _resource_version(body)

    def _watch(self, res: Resource, rv: str | None) -> Iterator[tuple[str, Mapping[str, Any]]]:
        resp = self._call(
            res,
            watch=True,
            resource_version=rv,
            allow_watch_bookmarks=True,
            timeout_seconds=self.watch_timeout,
            _request_timeout=(self.request_timeout, self.watch_timeout + 30),
        )
        with self._open_lock:
            self._open[res.name] = resp
        try:
            status = getattr(resp, "status", 200)
            if status == GONE:
                raise WatchExpired("HTTP 410 on watch")
            if not 200 <= int(status) <= 299:
                raise SourceError(f"watch {res.name}: HTTP {status}")
            for line in iter_resp_lines(resp):  # type: ignore[no-untyped-call]
                if self._stop.is_set():
                    return
                try:
                    event = json.loads(line)
                except ValueError as exc:
                    raise SourceError(f"watch {res.name}: malformed event line") from exc
                if not isinstance(event, Mapping):
                    raise SourceError(f"watch {res.name}: event is not an object")
                event_type, obj = event.get("type"), event.get("object")
                if not isinstance(obj, Mapping):
                    raise SourceError(f"watch {res.name}: event without object")
                if event_type == "ERROR":
                    if obj.get("code") == GONE:
                        raise WatchExpired(str(obj.get("message", "gone")))
                    raise SourceError(f"watch {res.name}: ERROR {obj.get('code')}: {obj.get('message')}")
                if event_type in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK"):
                    yield event_type, obj
        except (urllib3.exceptions.HTTPError, OSError, AttributeError) as exc:
            # AttributeError: urllib3 reading from a response that stop() closed under it.
            if not self._stop.is_set():
                raise SourceError(f"watch {res.name}: {type(exc).__name__}: {exc}") from exc
        finally:
            with self._open_lock:
                self._open.pop(res.name, None)
            with contextlib.suppress(Exception):  # best effort: the connection may already be closed
                resp.release_conn()

    # ----- applier --------------------------------------------------------------------------------------------

    def _apply_loop(self) -> None:
        while not self._stop.is_set():
            item = self._queue.get()
            batch = [item]
            while len(batch) < 1000:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._apply(batch)
            except Exception:
                # A bug in applying must not kill the view: log it; the next re-list repairs the cache.
                log.exception("applying events failed", extra={"fields": {"event": "apply-error"}})
            if self.metrics is not None:
                self.metrics.synced.set(1 if self.view.synced else 0)

    def _apply(self, batch: list[tuple[str, Kind, Any]]) -> None:
        events: list[tuple[Kind, str, Mapping[str, Any]]] = []
        for what, kind, payload in batch:
            if what == "stop":
                return
            if what == "replace":
                if events:
                    self.view.apply(events)
                    events = []
                self.view.replace_kind(kind, payload)
            else:
                event_type, obj = payload
                events.append((kind, event_type, obj))
        if events:
            self.view.apply(events)
