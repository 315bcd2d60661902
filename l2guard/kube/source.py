"""The list+watch source: keeps a consumer (a `Sink`) fed with the objects of a resource table, and reads a few
kinds live on request. It knows nothing of its consumers: it hands raw dicts to the sink, and reports failures
through callbacks and counters for the caller to log, export or act on.

One thread per resource lists (raw JSON, `_preload_content=False`: no model objects, FIELD-NOTES measured 175 us
and ~20 KB per Node for those) and then watches from the list's resourceVersion, reading the chunked stream line by
line, with bookmarks (`allow_watch_bookmarks`) so that a re-watch after a server-side timeout resumes from a recent
version. Events go through a queue to one applier thread, which feeds the sink in batches: `replace_kind(kind,
items)` after each (re-)list, `apply(events)` for a batch of watch events, and `tick()` when the queue has been quiet
as long as the sink's last answer asked, and at least every MAX_IDLE seconds (a sink that expires things over
time, such as leases, needs that; the floor covers a change made by another thread, such as a thaw). All
sink calls come from that one thread, so the sink needs no locking of its own against them.

Failures (the client's errors translated by `l2guard.kube.errors` at this boundary):
    Gone (a list with an expired resourceVersion, or a watch ERROR event with code 410)
        -> re-list from scratch at once, no resourceVersion
    any other KubeError, a malformed line, a stream dropped mid-way, or a surprise from the client library
        -> `on_error(resource, reason)`, back off exponentially (0.5 s doubling to 30 s, with jitter), re-list
A watch the server ends normally (its `timeoutSeconds`) is watched again from the last version seen, without a
re-list.
`status()` says which resources fail (`failing`, until a list succeeds) and which failed and still wait for their
fresh list to reach the sink (`relisting`): `connected` only once every one has, so a consumer that stopped
trusting its objects while cut off (the speaker's fail-static) trusts them again only after the re-lists landed.

Live reads (`read_config`): for each pool or advertisement review the webhook lists that namespace's
IPAddressPools and L2Advertisements again, because the watched cache can lag a write that was admitted a moment
ago (issue 7, item 4). They run on a small pool of their own threads, never on the event loop or the default
executor, and are bounded in time (the caller's timeout), pages and bytes; every failure is a KubeError. The paged
read itself (`read_list`) also serves one-shot reads such as `explain --live` (`l2guard.kube.snapshot`).

It must not make decisions: it moves dicts to the sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import urllib3
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from l2guard.kube.errors import TRANSLATED, Gone, KubeError, Unreachable, one_line, translate
from l2guard.kube.resources import ADVERTISEMENT, POOL, Resource

log = logging.getLogger(__name__)

GONE = 410
# Live reads: a MetalLB namespace holds a handful of pools and advertisements; past these bounds the read fails and
# the review falls back to the cache (with a warning) rather than spend the review's budget or memory on it.
LIVE_PAGE_SIZE = 250
LIVE_MAX_PAGES = 4
LIVE_MAX_PAGE_BYTES = 8 * 1024 * 1024
LIVE_READERS = 2  # threads for live reads: concurrent reviews beyond this wait (within their timeout) for one
MAX_BATCH = 1000  # watch events handed to the sink in one apply()
MAX_IDLE = 1.0  # seconds: the sink's tick() is called at least this often

Event = tuple[str, str, Mapping[str, Any]]  # (kind, ADDED|MODIFIED|DELETED, object)


class Sink(Protocol):
    """What the source feeds. Every call comes from the source's one applier thread."""

    def replace_kind(self, kind: str, items: Sequence[Mapping[str, Any]]) -> None:
        """A full list of one kind: everything of that kind not in `items` is gone."""

    def apply(self, events: Sequence[Event]) -> object:
        """Watch events of any kinds, in the order they arrived."""

    def tick(self) -> float | None:
        """Called after each batch and whenever the queue stayed quiet for the delay the last call returned (at
        most MAX_IDLE): the seconds until the sink wants to be called again with no event (None: no need)."""


@dataclass(frozen=True)
class SourceStatus:
    """The source's connection state, for /status, /readyz, fail-static and metrics."""

    resources: frozenset[str]  # the names of every resource the source lists and watches
    listed: frozenset[str]  # resources listed at least once
    failing: Mapping[str, str]  # resource name -> the last failure's reason, until its next successful list
    relists: Mapping[str, int]  # lists after the first, per resource (after 410 Gone or a failure)
    errors: Mapping[str, int]  # failures per resource
    # Resources that failed and whose fresh list has not been handed to the sink yet (listed again but still queued,
    # or being applied): until it has, the sink's objects of that kind are the ones from before the failure.
    relisting: frozenset[str] = frozenset()

    @property
    def connected(self) -> bool:
        """Every resource's list and watch works and the sink holds a list made since each resource's last failure
        (false before the first list too): after a reconnect, only once the re-lists have landed."""
        return not self.failing and not self.relisting and self.listed == self.resources


def _resource_version(obj: object) -> str | None:
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    rv = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
    return rv if isinstance(rv, str) and rv else None


def _http_error(status: int, reason: str, data: bytes) -> KubeError:
    """The KubeError for an HTTP error answer read with `_preload_content=False` (the client does not check those)."""
    exc = ApiException(status=status, reason=reason)
    exc.body = data.decode("utf-8", "replace")
    return translate(exc)


def _list_body(res: Resource, status: int, reason: str, data: bytes) -> Mapping[str, Any]:
    """The body of a list response; raises Gone for 410, another KubeError for anything else not a list."""
    if not 200 <= int(status) <= 299:
        raise _http_error(int(status), reason, data)
    try:
        body = json.loads(data)
    except (ValueError, TypeError) as exc:
        raise KubeError(f"list {res.name}: body is not JSON") from exc
    if isinstance(body, Mapping) and body.get("kind") == "Status" and body.get("code") == GONE:
        raise Gone(one_line(str(body.get("message", "gone"))), status=GONE)
    if not isinstance(body, Mapping) or not isinstance(body.get("items"), list):
        raise KubeError(f"list {res.name}: the answer is not a list")
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
                raise KubeError(f"list {res.name}: a page larger than {LIVE_MAX_PAGE_BYTES} bytes")
            if time.monotonic() > deadline:
                raise Unreachable(f"list {res.name}: out of time")
            chunks.append(chunk)
    except TRANSLATED as exc:
        raise translate(exc) from exc
    finally:
        with contextlib.suppress(Exception):  # best effort, as for the watches
            if done:
                resp.release_conn()
            else:
                resp.close()


@dataclass(frozen=True)
class Listed:
    """A complete list of one resource, read page by page."""

    items: list[Mapping[str, Any]]
    api_version: str  # the list's apiVersion ("v1", "metallb.io/v1beta1"), which its items do not repeat
    date: str | None  # the first page's HTTP Date header: the API server's clock when the list was read
    size: int  # bytes of all pages


def read_list(
    res: Resource,
    deadline: float,
    *,
    page_size: int = LIVE_PAGE_SIZE,
    max_pages: int = LIVE_MAX_PAGES,
    max_bytes: int | None = None,
) -> Listed:
    """Every object of `res` as the API server has it now, in pages of `page_size` (`limit`/`continue`: one
    consistent snapshot of the list), each page at most LIVE_MAX_PAGE_BYTES, all pages at most `max_bytes` (None:
    only the page bound), every request bounded by what is left of `deadline` (time.monotonic()). Raises KubeError
    past `max_pages` pages, `max_bytes` or the deadline, and for every failure of the call. No resourceVersion is
    sent: see `KubeSource.read_config`."""
    items: list[Mapping[str, Any]] = []
    token = ""
    api_version = ""
    date: str | None = None
    size = 0
    for _ in range(max_pages):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Unreachable(f"list {res.name}: out of time")
        query: dict[str, Any] = {"limit": page_size, "_request_timeout": remaining}
        if token:
            query["_continue"] = token
        try:
            try:
                resp = res.call(_preload_content=False, **query)
            except TRANSLATED as exc:
                raise translate(exc) from exc
            data = _read_bounded(resp, res, deadline)
            size += len(data)
            if max_bytes is not None and size > max_bytes:
                raise KubeError(f"list {res.name}: larger than {max_bytes} bytes")
            body = _list_body(res, getattr(resp, "status", 200), str(getattr(resp, "reason", "")), data)
        except Gone as exc:  # an expired continue token: a restart could not finish in time either
            raise KubeError(f"list {res.name}: {exc.reason}", status=GONE) from exc
        if not token:
            headers = getattr(resp, "headers", None)
            value = headers.get("Date") if headers is not None else None
            date = value if isinstance(value, str) else None
            api_version = str(body.get("apiVersion", ""))
        items.extend(_items(body))
        meta = body.get("metadata")
        more = meta.get("continue") if isinstance(meta, Mapping) else None
        if not isinstance(more, str) or not more:
            return Listed(items, api_version, date, size)
        token = more
    raise KubeError(f"list {res.name}: more than {page_size * max_pages} objects")


class KubeSource:
    """Feeds a Sink from the API server. `start()` spawns daemon threads; `stop()` ends them promptly.

    `on_error(resource, reason)` is called (from that resource's thread) for every failed list or watch, before
    the back-off; `on_relist(resource)` before every list after the first; `on_recovered(resource)` after the
    first successful list that follows a failure. None of them may block or raise."""

    def __init__(
        self,
        sink: Sink,
        resources: tuple[Resource, ...],
        *,
        on_error: Callable[[str, str], None] | None = None,
        on_relist: Callable[[str], None] | None = None,
        on_recovered: Callable[[str], None] | None = None,
        watch_timeout: int = 300,
        backoff: tuple[float, float] = (0.5, 30.0),
        request_timeout: float = 30.0,
    ) -> None:
        self.sink = sink
        self.resources = resources
        self.on_error = on_error
        self.on_relist = on_relist
        self.on_recovered = on_recovered
        self.watch_timeout = watch_timeout
        self.backoff = backoff
        self.request_timeout = request_timeout
        self._queue: queue.Queue[tuple[str, str, Any]] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._open: dict[str, Any] = {}
        self._lock = threading.Lock()  # _open and the status fields
        self._listed: set[str] = set()
        self._failing: dict[str, str] = {}
        self._relisting: set[str] = set()
        self._relists: dict[str, int] = {r.name: 0 for r in resources}
        self._errors: dict[str, int] = {r.name: 0 for r in resources}
        self._readers = ThreadPoolExecutor(max_workers=LIVE_READERS, thread_name_prefix="config-read")

    def status(self) -> SourceStatus:
        with self._lock:
            return SourceStatus(
                frozenset(self._relists),
                frozenset(self._listed),
                dict(self._failing),
                dict(self._relists),
                dict(self._errors),
                frozenset(self._relisting),
            )

    # ----- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> None:
        for res in self.resources:
            t = threading.Thread(target=self._run, args=(res,), name=f"watch-{res.name}", daemon=True)
            self._threads.append(t)
        self._threads.append(threading.Thread(target=self._apply_loop, name="source-applier", daemon=True))
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._queue.put(("stop", "", None))
        with self._lock:
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
                        with self._lock:
                            self._relists[res.name] += 1
                        if self.on_relist is not None:
                            self.on_relist(res.name)
                    items, rv = self._list(res)
                    listed_once = True
                    with self._lock:
                        self._listed.add(res.name)
                        recovered = self._failing.pop(res.name, None) is not None
                        errors = self._errors[res.name]
                    self._queue.put(("replace", res.kind, (items, res.name, errors)))
                    if recovered and self.on_recovered is not None:
                        self.on_recovered(res.name)
                for event_type, obj in self._watch(res, rv):
                    new_rv = _resource_version(obj)
                    if event_type != "BOOKMARK":
                        self._queue.put(("event", res.kind, (event_type, obj)))
                    if new_rv:
                        rv = new_rv
                    failures = 0
            except Gone as exc:
                log.info(
                    "re-listing %s: %s",
                    res.name,
                    exc.reason,
                    extra={"fields": {"event": "watch-expired", "resource": res.name, "reason": exc.reason}},
                )
                rv = None
            except Exception as exc:  # a KubeError, or anything the client library surprises us with
                if self._stop.is_set():
                    break
                if isinstance(exc, KubeError):
                    reason = exc.reason
                else:
                    # Not a known failure: log it fully, but keep this resource's loop alive (a dead watch thread
                    # would leave the consumer frozen while it believes it is synced).
                    reason = one_line(f"{type(exc).__name__}: {exc}")
                    log.exception(
                        "list/watch of %s crashed",
                        res.name,
                        extra={"fields": {"event": "watch-error", "resource": res.name}},
                    )
                failures += 1
                with self._lock:
                    self._errors[res.name] += 1
                    self._failing[res.name] = reason
                    self._relisting.add(res.name)
                if self.on_error is not None:
                    self.on_error(res.name, reason)
                low, high = self.backoff
                delay = min(high, low * 2 ** (failures - 1)) * random.uniform(0.8, 1.2)
                log.warning(
                    "list/watch of %s failed, retrying in %.1f s: %s",
                    res.name,
                    delay,
                    reason,
                    extra={
                        "fields": {
                            "event": "watch-error",
                            "resource": res.name,
                            "reason": reason,
                            "retry_in": round(delay, 1),
                        }
                    },
                )
                rv = None
                self._stop.wait(delay)

    def _call(self, res: Resource, **query: Any) -> Any:
        try:
            return res.call(_preload_content=False, **query)
        except TRANSLATED as exc:
            raise translate(exc) from exc

    def _list(self, res: Resource) -> tuple[list[Mapping[str, Any]], str | None]:
        resp = self._call(res, _request_timeout=self.request_timeout)
        try:
            data = resp.data
        except TRANSLATED as exc:
            raise translate(exc) from exc
        body = _list_body(res, getattr(resp, "status", 200), str(getattr(resp, "reason", "")), data)
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
        with self._lock:
            self._open[res.name] = resp
        try:
            status = int(getattr(resp, "status", 200))
            if not 200 <= status <= 299:
                raise _http_error(status, str(getattr(resp, "reason", "")), resp.data)
            for line in iter_resp_lines(resp):  # type: ignore[no-untyped-call]
                if self._stop.is_set():
                    return
                try:
                    event = json.loads(line)
                except ValueError as exc:
                    raise KubeError(f"watch {res.name}: malformed event line") from exc
                if not isinstance(event, Mapping):
                    raise KubeError(f"watch {res.name}: event is not an object")
                event_type, obj = event.get("type"), event.get("object")
                if not isinstance(obj, Mapping):
                    raise KubeError(f"watch {res.name}: event without object")
                if event_type == "ERROR":
                    message = one_line(str(obj.get("message", "gone")))
                    if obj.get("code") == GONE:
                        raise Gone(message, status=GONE)
                    raise KubeError(f"watch {res.name}: ERROR {obj.get('code')}: {message}")
                if event_type in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK"):
                    yield event_type, obj
        except (urllib3.exceptions.HTTPError, OSError, AttributeError) as exc:
            # AttributeError: urllib3 reading from a response that stop() closed under it. A stream dropped
            # mid-way (the server or a proxy went away) lands here too: back off and re-list.
            if not self._stop.is_set():
                raise Unreachable(one_line(f"watch {res.name}: {type(exc).__name__}: {exc}")) from exc
        finally:
            with self._lock:
                self._open.pop(res.name, None)
            with contextlib.suppress(Exception):  # best effort: the connection may already be closed
                resp.release_conn()

    # ----- live reads of the configuration -----------------------------------------------------------------------

    async def read_config(self, timeout: float) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
        """The MetalLB namespace's IPAddressPools and L2Advertisements (raw objects) as the API server has them
        now, through the same resource table the watches use. Raises KubeError within `timeout` seconds when a
        list fails, does not answer in time, or holds more than LIVE_PAGE_SIZE * LIVE_MAX_PAGES objects.

        The lists carry no resourceVersion: the API server then answers from etcd with a quorum read, or from a
        watch cache it first brings up to date, so a write it has acknowledged is in the answer (Kubernetes API
        concepts, "Semantics for get and list"; MetalLB's webhooks read the same way, through controller-runtime's
        uncached `GetAPIReader()`). Pages (`limit`/`continue`) stay one consistent snapshot of the list.

        Each request is bounded by the deadline's remainder; a client from `make_api_client` does not retry (with
        urllib3's default retries a timed-out read would be tried 3 more times). There are at most LIVE_READERS
        reader threads, and reviews beyond that wait for a free one within their own timeout."""
        deadline = time.monotonic() + timeout
        try:
            read = asyncio.get_running_loop().run_in_executor(self._readers, self._read_config, deadline)
        except RuntimeError as exc:  # the executor is shut down: stop() ran
            raise KubeError("the source is stopping") from exc
        try:
            return await asyncio.wait_for(read, timeout)
        except TimeoutError as exc:
            # The reader thread ends by itself: its requests time out by the same deadline.
            raise Unreachable(f"no answer within {timeout:.1f} s") from exc
        except KubeError:
            raise
        except Exception as exc:  # a surprise from the client library: still a failed read, not a failed review
            raise KubeError(one_line(f"{type(exc).__name__}: {exc}")) from exc

    def _read_config(self, deadline: float) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
        by_kind = {r.kind: r for r in self.resources}
        if POOL not in by_kind or ADVERTISEMENT not in by_kind:
            raise KubeError("no IPAddressPool or L2Advertisement resource to read")
        return self._read_all(by_kind[POOL], deadline), self._read_all(by_kind[ADVERTISEMENT], deadline)

    def _read_all(self, res: Resource, deadline: float) -> list[Mapping[str, Any]]:
        return read_list(res, deadline).items

    # ----- applier --------------------------------------------------------------------------------------------

    def _apply_loop(self) -> None:
        wait = MAX_IDLE
        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                batch = []
            else:
                batch = [item]
                while len(batch) < MAX_BATCH:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
            try:
                if not self._apply(batch):
                    return
                asked = self.sink.tick()
                wait = MAX_IDLE if asked is None else min(asked, MAX_IDLE)
            except Exception:
                # A bug in the sink must not kill the applier: log it; the next re-list repairs the cache.
                log.exception("applying events failed", extra={"fields": {"event": "apply-error"}})

    def _apply(self, batch: list[tuple[str, str, Any]]) -> bool:
        """Feed one batch to the sink; False when it held the stop marker."""
        events: list[Event] = []
        for what, kind, payload in batch:
            if what == "stop":
                return False
            if what == "replace":
                if events:
                    self.sink.apply(events)
                    events = []
                items, name, errors = payload
                self.sink.replace_kind(kind, items)
                with self._lock:
                    if self._errors[name] == errors:  # no failure since this list was made: it is the fresh one
                        self._relisting.discard(name)
            else:
                event_type, obj = payload
                events.append((kind, event_type, obj))
        if events:
            self.sink.apply(events)
        return True
