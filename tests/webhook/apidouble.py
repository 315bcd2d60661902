"""An API double: a local HTTP server that replays captured kube-apiserver list and watch responses
(`tests/data/api/`) in the exact wire format, for the real `kubernetes` client to read.

Lists are plain JSON bodies with the captured headers (including the HTTP 410 `list-too-old.json`); watches are
chunked streams, one JSON event per chunk and line, as the API server sends them (the 410 ERROR event of
`watch-too-old.jsonl` included). Each path has a script of responses consumed in order; the last one repeats; a reply
can be delayed, like a hung API server. A
watch with nothing left to say is held open briefly and then ended, like a server-side watch timeout. Only
127.0.0.1, only for tests.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

API = Path(__file__).resolve().parents[1] / "data" / "api"


def captured_headers(name: str) -> tuple[int, list[tuple[str, str]]]:
    """(status, headers) from a captured `*.headers.txt` (HTTP/2 pseudo status line first)."""
    lines = (API / name).read_text().splitlines()
    status = int(lines[0].split()[1])
    headers = []
    for line in lines[1:]:
        if ":" in line:
            key, _, value = line.partition(":")
            if key.lower() not in ("content-length", "date"):
                headers.append((key.strip(), value.strip()))
    return status, headers


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""  # a list body
    events: list[bytes] | None = None  # a watch stream: one line per event
    headers: list[tuple[str, str]] = field(default_factory=lambda: [("content-type", "application/json")])
    hold: float = 0.3  # seconds a watch stays open after its events
    delay: float = 0.0  # seconds before the status line is sent (a hung API server; cut short when the double stops)


def list_reply(name: str) -> Reply:
    return Reply(body=(API / name).read_bytes())


def too_old_list() -> Reply:
    status, headers = captured_headers("list-too-old.headers.txt")
    return Reply(status=status, body=(API / "list-too-old.json").read_bytes(), headers=headers)


def watch_reply(name: str | None = None, *, hold: float = 0.3) -> Reply:
    events = [] if name is None else [ln.encode() for ln in (API / name).read_text().splitlines() if ln.strip()]
    _, headers = captured_headers("watch-nodes.headers.txt")
    return Reply(events=events, headers=headers, hold=hold)


class APIDouble:
    def __init__(self, scripts: dict[tuple[str, bool], list[Reply]]) -> None:
        """scripts: (path, is_watch) -> replies in order."""
        self.scripts = {k: list(v) for k, v in scripts.items()}
        self.log: list[tuple[str, bool, str | None, int]] = []  # (path, watch, resourceVersion, status)
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                watch = query.get("watch", ["false"])[0] in ("true", "1")
                rv = query.get("resourceVersion", [None])[0]
                reply = double._next(url.path, watch)
                double.log.append((url.path, watch, rv, reply.status))
                if double.stopping.wait(reply.delay):
                    self.close_connection = True
                    return
                self.send_response(reply.status)
                for key, value in reply.headers:
                    self.send_header(key, value)
                if reply.events is None:
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                    return
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for line in reply.events:
                        chunk = line + b"\n"
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.flush()
                    double.stopping.wait(reply.hold)
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except OSError:
                    pass
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def _next(self, path: str, watch: bool) -> Reply:
        with self._lock:
            script = self.scripts.get((path, watch))
            if not script:
                return Reply(status=404, body=b'{"kind":"Status","code":404}')
            return script.pop(0) if len(script) > 1 else script[0]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> APIDouble:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def wait_for(self, predicate: object, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():  # type: ignore[operator]
            assert time.monotonic() < deadline, f"timed out; requests: {self.log}"
            time.sleep(0.02)
