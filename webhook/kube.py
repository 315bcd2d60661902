"""The kubernetes adapter: list+watch of Nodes, Services, EndpointSlices, IPAddressPools and L2Advertisements into
the webhook's `ClusterView`. The only module that imports the `kubernetes` client.

One thread per resource lists (raw JSON, `_preload_content=False`: no model objects, FIELD-NOTES measured 175 us
and ~20 KB per Node for those) and then watches from the list's resourceVersion, reading the chunked stream line by
line. Events go through a queue to one applier thread, which applies them to the view in batches; admission
requests never wait on either (they read the last published snapshot).

Errors, translated at this boundary:
    no usable client configuration (anything the client raises while loading a kubeconfig: a missing file,
    YAML it cannot parse, a bare TypeError for a YAML scalar, ConfigException)
        -> KubeconfigError naming the kubeconfig path, at start-up
    410 Gone (a list with an expired resourceVersion, or a watch ERROR event with code 410)
        -> re-list from scratch, no resourceVersion
    anything else (ApiException, urllib3/socket errors, a malformed line)
        -> count it, back off exponentially (0.5 s doubling to 30 s, with jitter), then re-list
Live reads (`read_config`): for each pool or advertisement review the webhook lists that namespace's
IPAddressPools and L2Advertisements again, because the watched cache can lag a write that was admitted a moment
ago (issue 7, item 4). They run on a small pool of their own threads, never on the event loop or the default
executor, and are bounded in time (the caller's timeout), pages and bytes; every failure is a SourceError.

It must not make decisions: it moves dicts into the view.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import urllib3
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from webhook.metrics import Metrics
from webhook.settings import SettingsError
from webhook.view import ClusterView, Kind

log = logging.getLogger(__name__)

GONE = 410
# Live reads: a MetalLB namespace holds a handful of pools and advertisements; past these bounds the read fails and
# the review falls back to the cache (with a warning) rather than spend the review's budget or memory on it.
LIVE_PAGE_SIZE = 250
LIVE_MAX_PAGES = 4
LIVE_MAX_PAGE_BYTES = 8 * 1024 * 1024
LIVE_READERS = 2  # threads for live reads: concurrent reviews beyond this wait (within their timeout) for one


class WatchExpired(Exception):
    """The resourceVersion is too old (HTTP 410 or a watch ERROR 410): re-list."""


class SourceError(Exception):
    """Any other list/watch failure: back off, then re-list."""


class KubeconfigError(SettingsError):
    """No usable client configuration; the message is one line naming the kubeconfig and the alternative."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(
            f"kubeconfig {path}: {reason}; give a working --kubeconfig FILE, "
            "or serve from files with --cluster-state FILE instead of the API"
        )
        self.path = path


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + "..."


def _load_kubeconfig(path: str, *, note: str = "") -> None:
    """`load_kube_config` with everything it raises turned into KubeconfigError. `path` may be a list joined by
    ':' as in $KUBECONFIG (the client merges the files that exist); `note` is added to the reason."""
    shown = os.path.expanduser(path)
    try:
        k8s_config.load_kube_config(config_file=path)  # type: ignore[no-untyped-call]
        return
    except Exception as exc:  # the client raises ConfigException, PyYAML errors, TypeError, OSError, ...
        if not any(os.path.exists(os.path.expanduser(p)) for p in path.split(os.pathsep) if p):
            reason = "no such file"
        elif isinstance(exc, OSError):
            reason = f"cannot read: {exc.strerror or _one_line(exc)}"
        elif isinstance(exc, yaml.YAMLError | UnicodeError):
            reason = f"not YAML ({_one_line(exc)})"
        elif isinstance(exc, k8s_config.ConfigException):
            reason = f"not a usable kubeconfig ({_one_line(exc).removeprefix('Invalid kube-config file. ')})"
        else:
            reason = f"not a usable kubeconfig ({type(exc).__name__}: {_one_line(exc)})"
        raise KubeconfigError(shown, reason + note) from exc


def make_api_client(kubeconfig: str = "") -> k8s.ApiClient:
    """In-cluster configuration, else the kubeconfig (explicit path, $KUBECONFIG or ~/.kube/config). Raises
    KubeconfigError when none of them is usable."""
    if kubeconfig:
        _load_kubeconfig(kubeconfig)
    else:
        try:
            k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
        except k8s_config.ConfigException as exc:
            note = f", and not running in a cluster ({_one_line(exc)})"
            _load_kubeconfig(k8s_config.KUBE_CONFIG_DEFAULT_LOCATION, note=note)
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


def _list_body(res: Resource, status: int, data: bytes) -> Mapping[str, Any]:
    """The body of a list response; raises WatchExpired for 410 Gone, SourceError for anything else not a list."""
    try:
        body = json.loads(data)
    except (ValueError, TypeError) as exc:
        raise SourceError(f"list {res.name}: body is not JSON") from exc
    if status == GONE or (isinstance(body, Mapping) and body.get("kind") == "Status" and body.get("code") == GONE):
        raise WatchExpired(str(body.get("message", "gone")) if isinstance(body, Mapping) else "gone")
    if not 200 <= int(status) <= 299 or not isinstance(body, Mapping) or not isinstance(body.get("items"), list):
        raise SourceError(f"list {res.name}: HTTP {status}")
    return body


def _items(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [i for i in body["items"] if isinstance(i, Mapping)]


def _read_bounded(resp: Any, res: Resource, deadline: float) -> bytes:
    """A response body of at most LIVE_MAX_PAGE_BYTES, read by the deadline (a trickling server cannot stretch
    it: each read waits at most the request's timeout). The connection is closed unless fully read."""
    chunks: list[bytes] = []
    size = 0
    done = False
    try:
        while True:
            chunk = resp.read(64 * 1024)
            if not chunk:
                done = True
                return b"".join(chunks)
            size += len(chunk)
            if size > LIVE_MAX_PAGE_BYTES:
                raise SourceError(f"list {res.name}: a page larger than {LIVE_MAX_PAGE_BYTES} bytes")
            if time.monotonic() > deadline:
                raise SourceError(f"list {res.name}: out of time")
            chunks.append(chunk)
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise SourceError(f"list {res.name}: {type(exc).__name__}: {exc}") from exc
    finally:
        with contextlib.suppress(Exception):  # best effort, as for the watches
            if done:
                resp.release_conn()
            else:
                resp.close()


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
        self._readers = ThreadPoolExecutor(max_workers=LIVE_READERS, thread_name_prefix="config-read")

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
        self._readers.shutdown(wait=False, cancel_futures=True)
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
        body = _list_body(res, getattr(resp, "status", 200), resp.data)
        return _items(body), _resource_version(body)

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

    # ----- live reads of the configuration -----------------------------------------------------------------------

    async def read_config(self, timeout: float) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
        """The MetalLB namespace's IPAddressPools and L2Advertisements (raw objects) as the API server has them
        now, through the same resource table the watches use. Raises SourceError within `timeout` seconds when a
        list fails, does not answer in time, or holds more than LIVE_PAGE_SIZE * LIVE_MAX_PAGES objects.

        The lists carry no resourceVersion: the API server then answers from etcd with a quorum read, or from a
        watch cache it first brings up to date, so a write it has acknowledged is in the answer (Kubernetes API
        concepts, "Semantics for get and list"; MetalLB's webhooks read the same way, through controller-runtime's
        uncached `GetAPIReader()`). Pages (`limit`/`continue`) stay one consistent snapshot of the list.

        A reader thread can outlive `timeout` while urllib3 retries a timed-out read (3 retries by default, each
        within the deadline's remainder); there are at most LIVE_READERS of them, and reviews beyond that wait for
        a free one within their own timeout."""
        deadline = time.monotonic() + timeout
        try:
            read = asyncio.get_running_loop().run_in_executor(self._readers, self._read_config, deadline)
        except RuntimeError as exc:  # the executor is shut down: stop() ran
            raise SourceError("the webhook is stopping") from exc
        try:
            return await asyncio.wait_for(read, timeout)
        except TimeoutError as exc:
            # The reader thread ends by itself: its requests time out by the same deadline.
            raise SourceError(f"no answer within {timeout:.1f} s") from exc
        except SourceError:
            raise
        except Exception as exc:  # a surprise from the client library: still a failed read, not a failed review
            raise SourceError(f"{type(exc).__name__}: {exc}") from exc

    def _read_config(self, deadline: float) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
        by_kind = {r.kind: r for r in self.resources}
        if Kind.POOL not in by_kind or Kind.ADVERTISEMENT not in by_kind:
            raise SourceError("no IPAddressPool or L2Advertisement resource to read")
        return self._read_all(by_kind[Kind.POOL], deadline), self._read_all(by_kind[Kind.ADVERTISEMENT], deadline)

    def _read_all(self, res: Resource, deadline: float) -> list[Mapping[str, Any]]:
        items: list[Mapping[str, Any]] = []
        token = ""
        for _ in range(LIVE_MAX_PAGES):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SourceError(f"list {res.name}: out of time")
            query: dict[str, Any] = {"limit": LIVE_PAGE_SIZE, "_request_timeout": remaining}
            if token:
                query["_continue"] = token
            try:
                resp = self._call(res, **query)
                body = _list_body(res, getattr(resp, "status", 200), _read_bounded(resp, res, deadline))
            except WatchExpired as exc:  # an expired continue token: a restart could not finish in time either
                raise SourceError(f"list {res.name}: {exc}") from exc
            items.extend(_items(body))
            meta = body.get("metadata")
            more = meta.get("continue") if isinstance(meta, Mapping) else None
            if not isinstance(more, str) or not more:
                return items
            token = more
        raise SourceError(f"list {res.name}: more than {LIVE_PAGE_SIZE * LIVE_MAX_PAGES} objects")

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
