"""The speaker's health port: `/healthz`, `/readyz`, `/status` and `/metrics` over plain HTTP.

The control plane publishes a frozen `SpeakerStatus` on a `StatusBoard` (one reference swap, so a reader sees one
whole snapshot or the next, never half of each); the server renders the latest one. It never waits for the control
plane: it holds no lock the control plane takes, and it runs uvicorn in a thread of its own with its own event loop,
so a busy reconcile cannot starve the kubelet's probes.

- `/healthz`: 200 while the server runs. The control plane starts the server before its loop and stops it when
  the loop ends, so "answers" means "the loop runs".
- `/readyz`: 200 once the first full sync is done and the API is not cut off; otherwise 503 with a JSON `reason`.
- `/status`: the published snapshot as JSON (fields in docs/speaker.md); wall-clock times as ISO-8601 UTC.
- `/metrics`: the Prometheus text format of the registry it is given.

Everything a client sends is bounded: request head at most `MAX_HEAD_BYTES` (400 from h11 while it arrives, 431 from
the app when one read brought it whole), each connection
closed at most `connection_deadline` seconds after it was accepted whatever it is doing (a client trickling its
headers is cut off), at most `max_connections` at once (uvicorn answers 503 beyond), only GET and HEAD (405 with
`Allow`, 404 for unknown paths), and no request body is ever read.

This module renders what it is given and decides nothing: readiness and fail-static are facts in the snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from uvicorn.protocols.http.h11_impl import H11Protocol

from l2guard.listen import bind

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 8192
JSON_TYPE = "application/json"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Announcement:
    """One IP this node announces (or, in dry-run, would announce)."""

    ip: str
    interfaces: tuple[str, ...]
    since: float  # wall clock (time.time()), when this node started announcing it


@dataclass(frozen=True, slots=True)
class ApiConnection:
    """The Kubernetes API as the control plane sees it (live mode only)."""

    cut_off_since: float | None = None  # wall clock; None while connected. Cut off means fail-static.


@dataclass(frozen=True, slots=True)
class Reconcile:
    """The last reconcile: when it ended, how long it took, which IPs it started and stopped announcing."""

    at: float  # wall clock
    duration_s: float
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SpeakerStatus:
    """What the health port shows; plain data, published whole by the control plane."""

    node: str
    announced: tuple[Announcement, ...] = ()
    synced_since: float | None = None  # wall clock of the first full sync; None until then
    api: ApiConnection | None = None  # None: file mode, no API to lose
    peers_alive: tuple[str, ...] = ()
    last_reconcile: Reconcile | None = None
    dry_run: bool = False


class StatusBoard:
    """The latest `SpeakerStatus`. `publish()` swaps one reference (atomic under the GIL); readers never block."""

    def __init__(self, initial: SpeakerStatus) -> None:
        self._current = initial

    def publish(self, status: SpeakerStatus) -> None:
        self._current = status

    @property
    def current(self) -> SpeakerStatus:
        return self._current


def _iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _seconds_since(wall: float, now: float) -> int:
    return max(0, int(now - wall))


def _not_ready_reason(status: SpeakerStatus, now: float) -> str | None:
    reasons = []
    if status.synced_since is None:
        reasons.append("not synced yet")
    if status.api is not None and status.api.cut_off_since is not None:
        seconds = _seconds_since(status.api.cut_off_since, now)
        reasons.append(f"cut off from the API since {seconds} s: announcing the last known state (fail-static)")
    return "; ".join(reasons) or None


def _api_document(api: ApiConnection | None, now: float) -> dict[str, object]:
    if api is None:
        return {"state": "none"}
    if api.cut_off_since is None:
        return {"state": "connected"}
    return {"state": "cut off", "since": _iso(api.cut_off_since), "seconds": _seconds_since(api.cut_off_since, now)}


def _status_document(status: SpeakerStatus, now: float) -> dict[str, object]:
    last = status.last_reconcile
    return {
        "node": status.node,
        "dry_run": status.dry_run,
        "announced": [{"ip": a.ip, "interfaces": list(a.interfaces), "since": _iso(a.since)} for a in status.announced],
        "view": {
            "synced": status.synced_since is not None,
            "since": None if status.synced_since is None else _iso(status.synced_since),
        },
        "api": _api_document(status.api, now),
        "peers_alive": list(status.peers_alive),
        "last_reconcile": None
        if last is None
        else {
            "at": _iso(last.at),
            "duration_seconds": last.duration_s,
            "added": list(last.added),
            "removed": list(last.removed),
        },
    }


class _HealthApp:
    """The raw ASGI app (no framework: only webhook/ knows FastAPI). It never calls `receive`: no body is read."""

    ROUTES = ("/healthz", "/readyz", "/status", "/metrics")

    def __init__(self, board: StatusBoard, registry: CollectorRegistry, *, clock: Callable[[], float]) -> None:
        self.board = board
        self.registry = registry
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        extra: list[tuple[bytes, bytes]] = []
        head = (
            len(scope.get("raw_path") or b"")
            + len(scope["query_string"])
            + sum(len(k) + len(v) for k, v in scope["headers"])
        )
        if head > MAX_HEAD_BYTES:
            # h11 bounds a head that is still arriving; one read can deliver a bigger complete head, refused here
            status, body, ctype = 431, _json({"reason": f"request head over {MAX_HEAD_BYTES} bytes"}), JSON_TYPE
        elif path not in self.ROUTES:
            status, body, ctype = 404, _json({"reason": "not found"}), JSON_TYPE
        elif method not in ("GET", "HEAD"):
            status, body, ctype = 405, _json({"reason": "only GET and HEAD"}), JSON_TYPE
            extra.append((b"allow", b"GET, HEAD"))
        else:
            status, body, ctype = self._answer(path)
        headers = [
            (b"content-type", ctype.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
            *extra,
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})

    def _answer(self, path: str) -> tuple[int, bytes, str]:
        if path == "/metrics":
            # generate_latest writes the 0.0.4 text format (prometheus_client's own servers label it so too)
            return 200, generate_latest(self.registry), CONTENT_TYPE_PLAIN_0_0_4
        status, now = self.board.current, self.clock()
        if path == "/healthz":
            return 200, _json({"status": "ok"}), JSON_TYPE
        if path == "/readyz":
            reason = _not_ready_reason(status, now)
            if reason is None:
                return 200, _json({"ready": True}), JSON_TYPE
            return 503, _json({"ready": False, "reason": reason}), JSON_TYPE
        return 200, _json(_status_document(status, now)), JSON_TYPE


def _json(doc: object) -> bytes:
    return json.dumps(doc, indent=None, separators=(",", ":")).encode() + b"\n"


def _protocol_with_deadline(seconds: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol, plus a deadline per connection: uvicorn itself has no header-read timeout (its
    keep-alive timer is cancelled by the first byte), so a client trickling its head would hold a slot forever."""

    class DeadlineH11Protocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._deadline = self.loop.call_later(seconds, transport.abort)

        def connection_lost(self, exc: Exception | None) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            super().connection_lost(exc)

    return DeadlineH11Protocol


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals alone: the speaker handles SIGTERM itself (stop announcing, release)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class HealthServer:
    """The health port in a thread of its own. `start()` binds (BindError if it cannot) and returns once serving;
    `stop()` (idempotent, any thread) closes it and frees the port."""

    def __init__(
        self,
        board: StatusBoard,
        registry: CollectorRegistry,
        *,
        host: str,
        port: int,
        connection_deadline: float = 10.0,
        max_connections: int = 32,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.port = port  # the bound port once started (differs when `port` is 0)
        self._app = _HealthApp(board, registry, clock=clock)
        self._config = uvicorn.Config(
            self._app,
            interface="asgi3",
            http=_protocol_with_deadline(connection_deadline),
            ws="none",
            loop="none",
            lifespan="off",
            access_log=False,
            log_config=None,
            proxy_headers=False,
            server_header=False,
            h11_max_incomplete_event_size=MAX_HEAD_BYTES,
            limit_concurrency=max_connections + 1,  # uvicorn counts the connection asking, too
            timeout_keep_alive=5,
            timeout_graceful_shutdown=2,
        )
        self._server: _Server | None = None
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._serving = threading.Event()
        self._failure: BaseException | None = None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the health server was already started")
        self._socket = bind(self.host, self.requested_port)
        self.port = self._socket.getsockname()[1]
        self._server = _Server(self._config)
        self._thread = threading.Thread(target=self._run, name="health-server", daemon=True)
        self._thread.start()
        if not self._serving.wait(START_TIMEOUT_S) or not self._server.started:
            self.stop()
            raise RuntimeError(f"the health server on {self.host}:{self.port} did not start: {self._failure}")
        log.info(
            "health port listening",
            extra={"fields": {"event": "health-listening", "host": self.host, "port": self.port}},
        )

    def stop(self) -> None:
        loop, server, thread = self._loop, self._server, self._thread
        if loop is not None and server is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed between the check and the call
                loop.call_soon_threadsafe(setattr, server, "should_exit", True)
        if thread is not None and thread is not threading.current_thread():
            thread.join(STOP_TIMEOUT_S)
            if thread.is_alive():
                log.warning(
                    "health server did not stop within %s s",
                    STOP_TIMEOUT_S,
                    extra={"fields": {"event": "health-stop-timeout"}},
                )
        if self._socket is not None:
            self._socket.close()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # SystemExit too: uvicorn exits on a failed startup; keep it in this thread
            self._failure = exc
            log.error("health server stopped: %s", exc, extra={"fields": {"event": "health-failed"}})
        finally:
            self._serving.set()
            loop.close()

    async def _serve(self) -> None:
        assert self._server is not None and self._socket is not None
        server, sock = self._server, self._socket
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.005)
        if server.started:  # otherwise `task` raises, and `_run` records why before waking `start()`
            self._serving.set()
        await task
