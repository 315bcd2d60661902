"""HTTP behind the VIPs, for the data-path tests and the failover benchmark: a tiny server on each node that
answers with its node name, and a client probe that opens a new TCP connection every 5 ms.

Data path: the VIPs sit on each node's ``lo`` with ``arp_ignore=1``/``arp_announce=2`` (all and eth0), so the
kernels never answer ARP for them and the client reaches a node only through the speaker's answers (see
tests/speaker/test_speaker_netns.py). Every loop is bounded in count and time. Test and benchmark scaffolding only.
"""

from __future__ import annotations

import json
import subprocess

from speaker_netns import PYTHON, VIP4, VIP6, Host, sh

SERVER = """
import http.server, socketserver, sys
name = sys.argv[1].encode()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", str(len(name))); self.end_headers()
        self.wfile.write(name)
    def log_message(self, *a): pass
class Server(socketserver.ThreadingTCPServer):
    address_family = __import__("socket").AF_INET6  # dual-stack: IPv4 arrives as ::ffff:a.b.c.d
    allow_reuse_address = True
    daemon_threads = True
Server(("::", 8080), H).serve_forever()
"""

# argv: VIP, seconds at most, then optionally NAME COUNT: stop early once NAME answered COUNT times.
# Prints one JSON list of (CLOCK_MONOTONIC start of the attempt, node name or null).
PROBE = """
import socket, sys, time, json
vip, seconds = sys.argv[1], float(sys.argv[2])
stop_name, stop_count = (sys.argv[3], int(sys.argv[4])) if len(sys.argv) > 4 else (None, 0)
log = []
seen = 0
end = time.monotonic() + seconds
while time.monotonic() < end and len(log) < 4000 and not (stop_name and seen >= stop_count):
    t = time.monotonic()
    who = None
    try:
        s = socket.create_connection((vip, 8080), timeout=0.05)
        s.settimeout(0.05)
        s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        s.close()
        who = data.rsplit(b"\\r\\n\\r\\n", 1)[-1].decode() or None
    except OSError:
        pass
    seen += who == stop_name
    log.append((t, who))
    time.sleep(max(0.0, 0.005 - (time.monotonic() - t)))
print(json.dumps(log))
"""


def serve_vip_on_lo(host: Host, name: str) -> subprocess.Popen[str]:
    """VIPs on lo. IPv4: with arp_ignore=1/arp_announce=2, so only the speaker answers ARP for it. IPv6: the kernel
    answers a Neighbor Solicitation only for addresses of the interface it arrived on, so on lo it stays silent."""
    host.run(["ip", "addr", "add", f"{VIP4}/32", "dev", "lo"])
    host.run(["ip", "-6", "addr", "add", f"{VIP6}/128", "dev", "lo", "nodad"])
    for conf in ("all", "eth0"):
        host.run(["sysctl", "-qw", f"net.ipv4.conf.{conf}.arp_ignore=1"])
        host.run(["sysctl", "-qw", f"net.ipv4.conf.{conf}.arp_announce=2"])
    return subprocess.Popen(host.cmd([PYTHON, "-c", SERVER, name]), stdout=subprocess.DEVNULL, text=True)


def start_probe(client: Host, vip: str, seconds: float, *, until: str, count: int) -> subprocess.Popen[str]:
    """The probe in the client namespace; it stops after ``seconds`` or once ``until`` answered ``count`` times."""
    argv = [PYTHON, "-c", PROBE, vip, str(seconds), until, str(count)]
    return subprocess.Popen(client.cmd(argv), stdout=subprocess.PIPE, text=True)


def probe_log(probe: subprocess.Popen[str], *, timeout: float = 30) -> list[tuple[float, str | None]]:
    out, _ = probe.communicate(timeout=timeout)
    return [(float(ts), who) for ts, who in json.loads(out)]


def curl(client: Host, vip: str = VIP4) -> str | None:
    host = f"[{vip}]" if ":" in vip else vip
    res = sh(client.cmd(["curl", "-s", "--max-time", "1", f"http://{host}:8080/"]), check=False)
    return res.stdout if res.returncode == 0 else None
