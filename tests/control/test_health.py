"""The speaker's health port over real HTTP on 127.0.0.1: each endpoint's status and body for a published snapshot,
fail-static in /readyz, the bounds on what a client may send, and the server's start/stop life cycle."""

from __future__ import annotations

import asyncio
import errno
import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from prometheus_client import CollectorRegistry

from l2guard.control.health import (
    Announcement,
    ApiConnection,
    HealthServer,
    Reconcile,
    SpeakerStatus,
    StatusBoard,
)
from l2guard.listen import BindError

# 1_700_000_000 is 2023-11-14T22:13:20Z; the ISO strings below are written out by hand from it.
T0 = 1_700_000_000.0
HANG = 10.0  # a bound that only catches a hang


@contextmanager
def serving(
    board: StatusBoard,
    *,
    registry: CollectorRegistry | None = None,
    now: float = T0,
    connection_deadline: float = 10.0,
    max_connections: int = 32,
) -> Iterator[HealthServer]:
    server = HealthServer(
        board,
        registry if registry is not None else CollectorRegistry(),
        host="127.0.0.1",
        port=0,
        connection_deadline=connection_deadline,
        max_connections=max_connections,
        clock=lambda: now,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def get(server: HealthServer, path: str, method: str = "GET", **kwargs: object) -> httpx.Response:
    return httpx.request(method, f"http://127.0.0.1:{server.port}{path}", timeout=HANG, **kwargs)  # type: ignore[arg-type]


def raw_exchange(server: HealthServer, *chunks: bytes) -> bytes:
    """Send `chunks` on one connection, a moment apart, and return the first bytes of the answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=HANG) as client:
        for chunk in chunks:
            client.sendall(chunk)
            time.sleep(0.05)  # separate reads on the server side, not a timing assertion
        return client.recv(4096)


SYNCED_AND_CONNECTED = SpeakerStatus(
    node="worker-2",
    announced=(
        Announcement(ip="192.0.2.100", interfaces=("eth0",), since=T0 - 60),
        Announcement(ip="2001:db8::100", interfaces=("eth0", "eth1"), since=T0 - 0.75),
    ),
    synced_since=T0 - 120,
    api=ApiConnection(cut_off_since=None),
    peers_alive=("worker-1", "worker-2", "worker-3"),
    last_reconcile=Reconcile(at=T0 - 1, duration_s=0.0042, added=("2001:db8::100",), removed=("192.0.2.7",)),
    dry_run=True,
)


def test_healthz_answers_200_while_the_server_runs() -> None:
    with serving(StatusBoard(SpeakerStatus(node="worker-1"))) as server:
        response = get(server, "/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_503_not_synced_yet_before_the_first_full_sync() -> None:
    with serving(StatusBoard(SpeakerStatus(node="worker-1", api=ApiConnection()))) as server:
        response = get(server, "/readyz")
    assert response.status_code == 503
    assert response.json() == {"ready": False, "reason": "not synced yet"}


def test_readyz_is_200_once_synced_and_connected() -> None:
    with serving(StatusBoard(SYNCED_AND_CONNECTED)) as server:
        response = get(server, "/readyz")
    assert response.status_code == 200
    assert response.json() == {"ready": True}


def test_readyz_is_200_in_file_mode_once_synced() -> None:
    with serving(StatusBoard(SpeakerStatus(node="worker-1", synced_since=T0 - 5, api=None))) as server:
        response = get(server, "/readyz")
    assert response.status_code == 200


def test_readyz_turns_503_with_the_reason_when_fail_static() -> None:
    board = StatusBoard(SYNCED_AND_CONNECTED)
    with serving(board) as server:
        assert get(server, "/readyz").status_code == 200
        board.publish(SpeakerStatus(node="worker-2", synced_since=T0 - 120, api=ApiConnection(cut_off_since=T0 - 12.4)))
        response = get(server, "/readyz")
    assert response.status_code == 503
    assert response.json() == {
        "ready": False,
        "reason": "cut off from the API since 12 s: announcing the last known state (fail-static)",
    }


def test_status_renders_every_field_of_the_published_snapshot() -> None:
    with serving(StatusBoard(SYNCED_AND_CONNECTED)) as server:
        response = get(server, "/status")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "node": "worker-2",
        "dry_run": True,
        "announced": [
            {"ip": "192.0.2.100", "interfaces": ["eth0"], "since": "2023-11-14T22:12:20.000Z"},
            {"ip": "2001:db8::100", "interfaces": ["eth0", "eth1"], "since": "2023-11-14T22:13:19.250Z"},
        ],
        "view": {"synced": True, "since": "2023-11-14T22:11:20.000Z"},
        "api": {"state": "connected"},
        "peers_alive": ["worker-1", "worker-2", "worker-3"],
        "last_reconcile": {
            "at": "2023-11-14T22:13:19.000Z",
            "duration_seconds": 0.0042,
            "added": ["2001:db8::100"],
            "removed": ["192.0.2.7"],
        },
    }


def test_status_shows_when_the_api_was_cut_off_and_file_mode_as_no_api() -> None:
    cut_off = SpeakerStatus(node="worker-2", synced_since=T0 - 120, api=ApiConnection(cut_off_since=T0 - 30))
    with serving(StatusBoard(cut_off)) as server:
        assert get(server, "/status").json()["api"] == {
            "state": "cut off",
            "since": "2023-11-14T22:12:50.000Z",
            "seconds": 30,
        }
    with serving(StatusBoard(SpeakerStatus(node="worker-2"))) as server:
        body = get(server, "/status").json()
    assert body["api"] == {"state": "none"}
    assert body["view"] == {"synced": False, "since": None}
    assert body["last_reconcile"] is None


def test_metrics_serves_the_registry_it_is_given_in_the_text_format() -> None:
    from prometheus_client import Gauge

    registry = CollectorRegistry()
    Gauge("probe_value", "a gauge of the test", registry=registry).set(7)
    with serving(StatusBoard(SpeakerStatus(node="worker-1")), registry=registry) as server:
        response = get(server, "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "probe_value 7.0" in response.text.splitlines()


def test_head_sends_the_headers_without_a_body() -> None:
    with serving(StatusBoard(SYNCED_AND_CONNECTED)) as server:
        full = get(server, "/status")
        head = get(server, "/status", "HEAD")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(full.content))


def test_an_unknown_path_is_404() -> None:
    with serving(StatusBoard(SpeakerStatus(node="worker-1"))) as server:
        responses = [get(server, path) for path in ("/", "/status/", "/livez", "/STATUS")]
        dotted = raw_exchange(server, b"GET /metrics/../status HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [r.status_code for r in responses] == [404, 404, 404, 404]
    assert responses[0].json() == {"reason": "not found"}
    assert dotted.startswith(b"HTTP/1.1 404 "), "the server does not resolve dot segments"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_are_405_with_allow_and_the_body_is_not_read(method: str) -> None:
    with serving(StatusBoard(SpeakerStatus(node="worker-1"))) as server:
        response = get(server, "/readyz", method, content=b"x" * 200_000)
        after = get(server, "/healthz")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert after.status_code == 200


def test_a_query_string_does_not_change_the_route() -> None:
    with serving(StatusBoard(SpeakerStatus(node="worker-1"))) as server:
        assert get(server, "/healthz?verbose=1").status_code == 200


def test_a_new_snapshot_is_seen_by_the_next_request() -> None:
    board = StatusBoard(SpeakerStatus(node="worker-1"))
    with serving(board) as server:
        assert get(server, "/status").json()["peers_alive"] == []
        board.publish(SpeakerStatus(node="worker-1", peers_alive=("worker-1", "worker-9")))
        assert get(server, "/status").json()["peers_alive"] == ["worker-1", "worker-9"]


def test_a_reader_sees_one_whole_snapshot_while_the_publisher_swaps_them() -> None:
    first = SpeakerStatus(node="a", peers_alive=("a1", "a2"), dry_run=True)
    second = SpeakerStatus(node="b", peers_alive=("b1",), dry_run=False, synced_since=T0)
    board = StatusBoard(first)
    stop = threading.Event()

    def publisher() -> None:
        for i in range(1_000_000):  # bounded; ends early when the reader is done
            if stop.is_set():
                return
            board.publish(second if i % 2 else first)

    thread = threading.Thread(target=publisher)
    with serving(board) as server:
        thread.start()
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=HANG) as client:
                bodies = [client.get("/status").json() for _ in range(50)]
        finally:
            stop.set()
            thread.join(HANG)
    seen = {(b["node"], tuple(b["peers_alive"]), b["dry_run"], b["view"]["synced"]) for b in bodies}
    assert seen <= {("a", ("a1", "a2"), True, False), ("b", ("b1",), False, True)}


def test_the_server_answers_while_the_callers_event_loop_is_blocked() -> None:
    """The server runs its own loop in its own thread: a caller whose loop is stuck (here in a blocking HTTP call
    made from a coroutine) cannot starve it."""

    async def blocked_caller() -> int:
        with serving(StatusBoard(SpeakerStatus(node="worker-1"))) as server:
            return get(server, "/healthz").status_code  # blocks this loop until answered

    assert asyncio.run(blocked_caller()) == 200


def test_a_client_trickling_its_headers_is_cut_off() -> None:
    with serving(StatusBoard(SpeakerStatus(node="worker-1")), connection_deadline=1.0) as server:
        started = time.monotonic()
        closed = False
        with socket.create_connection(("127.0.0.1", server.port), timeout=HANG) as client:
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            for i in range(100):  # one header line every 0.1 s: up to 10 s, far past the 1 s deadline
                try:
                    client.sendall(b"X-Trickle-%d: y\r\n" % i)
                    readable, _, _ = select.select([client], [], [], 0.1)
                    if readable and client.recv(4096) == b"":
                        closed = True
                except (ConnectionResetError, BrokenPipeError):
                    closed = True
                if closed:
                    break
        elapsed = time.monotonic() - started
        assert closed, "the server kept a trickling client for 10 s"
        assert elapsed < HANG
        assert get(server, "/healthz").status_code == 200


def test_a_request_head_over_the_bound_arriving_at_once_is_refused_with_431() -> None:
    with serving(StatusBoard(SpeakerStatus(node="worker-1"))) as server:
        answer = raw_exchange(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9_000 + b"\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 431 ")
        assert get(server, "/healthz", headers={"X-Fits": "a" * 4_000}).status_code == 200


def test_a_request_head_growing_past_the_bound_is_refused_with_400() -> None:
    with serving(StatusBoard(SpeakerStatus(node="worker-1"))) as server:
        answer = raw_exchange(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ", b"a" * 9_000, b"a" * 9_000)
        assert answer.startswith(b"HTTP/1.1 400 ")
        assert get(server, "/healthz").status_code == 200


def test_connections_over_the_limit_get_503_until_one_closes() -> None:
    with serving(StatusBoard(SpeakerStatus(node="worker-1")), max_connections=3) as server:
        idle = [socket.create_connection(("127.0.0.1", server.port), timeout=HANG) for _ in range(2)]
        try:
            assert get(server, "/healthz").status_code == 200  # the third connection is served
            idle.append(socket.create_connection(("127.0.0.1", server.port), timeout=HANG))
            assert get(server, "/healthz").status_code == 503  # the fourth is not
        finally:
            for sock in idle:
                sock.close()
        codes = []
        for _ in range(100):  # bounded: the server notices the closes within a few loop turns
            codes.append(get(server, "/healthz").status_code)
            if codes[-1] == 200:
                break
            time.sleep(0.05)
        assert codes[-1] == 200


def test_stop_returns_promptly_while_a_client_is_mid_request() -> None:
    server = HealthServer(StatusBoard(SpeakerStatus(node="w")), CollectorRegistry(), host="127.0.0.1", port=0)
    server.start()
    with socket.create_connection(("127.0.0.1", server.port), timeout=HANG) as client:
        client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # the head never ends
        get(server, "/healthz")  # a served request: the half-sent one has been accepted by now
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < HANG  # the join inside stop() did not run out
        assert client.recv(4096) == b""  # the server closed it


def test_a_port_in_use_is_a_clear_one_line_error() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        server = HealthServer(StatusBoard(SpeakerStatus(node="w")), CollectorRegistry(), host="127.0.0.1", port=port)
        with pytest.raises(BindError) as caught:
            server.start()
    assert str(caught.value) == f"cannot listen on 127.0.0.1:{port}: the port is already in use by another process"
    assert caught.value.port == port
    assert isinstance(caught.value.__cause__, OSError)
    assert caught.value.__cause__.errno == errno.EADDRINUSE


def test_stop_frees_the_port_for_the_next_server() -> None:
    board = StatusBoard(SpeakerStatus(node="worker-1"))
    with serving(board) as server:
        port = server.port
        assert get(server, "/healthz").status_code == 200
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.settimeout(HANG)
        probe.connect(("127.0.0.1", port))
    again = HealthServer(board, CollectorRegistry(), host="127.0.0.1", port=port)
    again.start()
    try:
        assert get(again, "/healthz").status_code == 200
    finally:
        again.stop()
        again.stop()  # idempotent
