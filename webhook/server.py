"""Run the webhook: the HTTPS admission server and the plain-HTTP health server on one uvloop event loop.

uvicorn with uvloop and httptools, one worker (FIELD-NOTES: the default asyncio loop with workers stalls every
response by ~40 ms; uvloop does not). The HTTPS server gets the reloader's live SSLContext through uvicorn's
`ssl_context_factory`, so certificate reloads need no restart. Sockets are bound here (port 0 picks a free port,
which tests use) and handed to uvicorn. Signals are handled once, here, for both servers. Both servers use
`BoundedRequestProtocol`, which closes a connection that does not deliver a whole request within
`--request-timeout`; idle keep-alive between requests stays 120 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import threading
from collections.abc import Callable, Generator
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from l2guard.listen import bind
from webhook.app import AppState, create_app, create_health_app
from webhook.tls import CertReloader

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to `WebhookServer` (two servers share one process)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


KEEP_ALIVE_SECONDS = 120  # longer than the API server's 90 s idle timeout: it closes first, not us


class _Config(uvicorn.Config):
    """uvicorn's Config plus the time a client has to send one whole request (headers and body)."""

    def __init__(self, app: Any, *, request_timeout: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.request_timeout = request_timeout


class BoundedRequestProtocol(HttpToolsProtocol):
    """httptools' HTTP/1.1 protocol, plus a deadline for receiving each request.

    uvicorn bounds only the idle time between requests (`timeout_keep_alive`); a client that opens a connection and
    trickles a header or body byte now and then holds it, and its coroutine, forever. Here a timer starts when the
    connection is made and whenever bytes arrive with no timer running, and is cancelled once a whole request has
    been received; if it fires first, the connection is closed. The answer itself is bounded by the handlers'
    time budget, and the idle time after it by the keep-alive timeout.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._request_timeout: float = getattr(config, "request_timeout", 10.0)
        self._request_timer: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        if self._request_timer is None:
            self._request_timer = self.loop.call_later(self._request_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _too_slow(self) -> None:
        self._request_timer = None
        if not self.transport.is_closing():
            log.debug(
                "closed a connection that did not send a whole request in time",
                extra={"fields": {"event": "slow-client", "reason": f"over {self._request_timeout:g} s"}},
            )
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        self._arm()
        super().data_received(data)

    def on_message_begin(self) -> None:
        self._arm()  # a pipelined request in the same read as the end of the previous one
        super().on_message_begin()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


class WebhookServer:
    """Both servers plus the certificate reloader. `run()` serves until `stop()` (thread-safe) or a signal."""

    def __init__(self, state: AppState, reloader: CertReloader) -> None:
        self.state = state
        self.reloader = reloader
        settings = state.settings
        self.https_socket = bind(settings.host, settings.port, backlog=1024)
        self.health_socket = bind(settings.host, settings.health_port, backlog=1024)
        self.port: int = self.https_socket.getsockname()[1]
        self.health_port: int = self.health_socket.getsockname()[1]

        def ssl_factory(config: uvicorn.Config, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
            return reloader.context

        common: dict[str, Any] = {
            "loop": "none",
            "http": BoundedRequestProtocol,
            "request_timeout": settings.request_timeout,
            "lifespan": "off",
            "access_log": False,
            "log_config": None,
            "timeout_keep_alive": KEEP_ALIVE_SECONDS,
            "server_header": False,
        }
        self.https = _Server(_Config(create_app(state), ssl_context_factory=ssl_factory, **common))
        self.health = _Server(_Config(create_health_app(state), **common))
        self._loop: asyncio.AbstractEventLoop | None = None
        self.started = threading.Event()  # set once both servers listen; waited on from other threads

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._request_exit)

    def _request_exit(self) -> None:
        self.https.should_exit = True
        self.health.should_exit = True

    async def run(self, *, install_signals: bool = True, background: tuple[Any, ...] = ()) -> None:
        self._loop = asyncio.get_running_loop()
        if install_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    self._loop.add_signal_handler(sig, self._request_exit)
        reload_task = asyncio.create_task(self.reloader.run(), name="cert-reload")
        extra = [asyncio.create_task(coro) for coro in background]
        tasks = [
            asyncio.create_task(self.https.serve([self.https_socket]), name="https"),
            asyncio.create_task(self.health.serve([self.health_socket]), name="health"),
        ]
        while not (self.https.started and self.health.started):
            if any(t.done() for t in tasks):
                break
            await asyncio.sleep(0.01)
        self.started.set()
        log.info(
            "serving admission on port %s, health on port %s, node policy %s",
            self.port,
            self.health_port,
            self.state.settings.node_policy.value,
            extra={
                "fields": {
                    "event": "start",
                    "port": self.port,
                    "health_port": self.health_port,
                    "node_policy": self.state.settings.node_policy.value,
                }
            },
        )
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            self._request_exit()
            await asyncio.gather(*tasks, return_exceptions=True)
            for t in done:
                if t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
        finally:
            for t in (reload_task, *extra):
                t.cancel()
            await asyncio.gather(reload_task, *extra, return_exceptions=True)
            self.state.decide_pool.shutdown(wait=False, cancel_futures=True)
            if install_signals:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    with contextlib.suppress(NotImplementedError, RuntimeError):
                        self._loop.remove_signal_handler(sig)
