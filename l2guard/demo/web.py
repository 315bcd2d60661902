"""The demo's traffic, run inside its namespaces: `serve NAME` is the tiny HTTP server behind the VIP on a node
(it answers with the node's name); `probe VIP SECONDS TIMEOUT [UNTIL COUNT]` is the client's bounded request loop:
a new TCP connection every 5 ms (or when the last one ended), each given TIMEOUT seconds (0.05 to measure an
interruption to 5 ms, 1 for an ordinary client), for at most SECONDS and 4,000 attempts, stopping early once UNTIL has
answered COUNT times in a row. It prints one JSON list of [monotonic start time, node name or null].

Standard library only; it must not import the rest of l2guard (it starts in well under 100 ms).
"""

from __future__ import annotations

import http.server
import json
import socket
import socketserver
import sys
import time

PORT = 80
PERIOD = 0.005
MAX_ATTEMPTS = 4000


def serve(name: str) -> None:
    body = name.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    class Server(socketserver.ThreadingTCPServer):
        address_family = socket.AF_INET6  # dual-stack: IPv4 arrives as ::ffff:a.b.c.d
        allow_reuse_address = True
        daemon_threads = True

    Server(("::", PORT), Handler).serve_forever()


def ask(vip: str, timeout: float) -> str | None:
    """One request on a new connection: the node that answered, or None."""
    try:
        with socket.create_connection((vip, PORT), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
    except OSError:
        return None
    return data.rsplit(b"\r\n\r\n", 1)[-1].decode(errors="replace") or None


def probe(vip: str, seconds: float, timeout: float, until: str | None, count: int) -> list[tuple[float, str | None]]:
    log: list[tuple[float, str | None]] = []
    streak = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end and len(log) < MAX_ATTEMPTS and not (until and streak >= count):
        start = time.monotonic()
        who = ask(vip, timeout)
        streak = streak + 1 if who == until else 0
        log.append((start, who))
        time.sleep(max(0.0, PERIOD - (time.monotonic() - start)))
    return log


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "serve":
        serve(argv[1])
        return 0
    if len(argv) in (4, 6) and argv[0] == "probe":
        until, count = (argv[4], int(argv[5])) if len(argv) == 6 else (None, 0)
        print(json.dumps(probe(argv[1], float(argv[2]), float(argv[3]), until, count)))
        return 0
    sys.stderr.write("usage: python -m l2guard.demo.web serve NAME | probe VIP SECONDS TIMEOUT [UNTIL COUNT]\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
