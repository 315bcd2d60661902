"""The runner-up's probes on the wire: unicast ARP requests / Neighbor Solicitations to an owner's MAC, and
what comes back.

``Prober.set_targets({"worker-1": Target("192.0.2.100", frozenset({...}))})`` names the owners this node
watches: the VIP to probe and all of the owner's VIPs this node backs up. The prober listens on this node's
interfaces for frames that claim one of those VIPs (the owner's takeover bursts, its gratuitous ARPs, and its
answers to our probes), learns from them the owner's MAC and the interface it is on, and calls
``on_heard(owner)`` for each one. ``probe(owner)`` sends one probe to the MAC it learned:

- IPv4: an ARP request for the VIP from our MAC with sender IP 0.0.0.0 (the ARP probe form of RFC 5227,
  section 2.1.1: it creates no neighbour entry on the owner), to the owner's MAC. The owner's responder answers
  frames sent to its own MAC (speaker.responder), so the reply comes back unicast.
- IPv6: a Neighbor Solicitation for the VIP to the VIP itself (the NUD form of RFC 4861, section 7.2.2), from
  our link-local address with a source link-layer option, to the owner's MAC. The answer is a unicast NA.

No broadcast is ever sent: a MAC not learned yet means no probe (``probe`` returns False), and the caller
counts nothing as missed. The MAC comes from the wire, so it is by construction the one that answers for the VIP
on this link (interface names and MACs of the owner's other links would not be). Before the owner was heard (this
node started after the owner's takeover burst), ``ask(owner, candidates)`` sends the same probe unicast to each MAC
the owner publishes (on its Lease) on each interface: the answer teaches the MAC like any other.

All receive sockets belong to one I/O thread; ``probe()`` may be called from any thread (a send on a bound
packet socket). This module decides nothing: when to probe, what a silence means and what to take over belong
to the caller (``l2core.probing``). It must not read Kubernetes or build frames by hand (see speaker.packets).
"""

from __future__ import annotations

import contextlib
import logging
import re
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from speaker import bpf, packets
from speaker.interfaces import DEFAULT_EXCLUDE, Link, eligible_for_all, scan_links
from speaker.responder import PACKET_OTHERHOST, open_packet_socket

log = logging.getLogger(__name__)

RESCAN_INTERVAL = 2.0  # seconds between link scans (a new interface, a changed MAC, a link-local address)
MAX_DRAIN = 256  # frames read per readiness event
IF_INET6 = "/proc/net/if_inet6"
IFA_SCOPE_LINK = 0x20  # include/net/ipv6.h: IPV6_ADDR_SCOPE_LINK as /proc/net/if_inet6 shows it


@dataclass(frozen=True, slots=True)
class Target:
    """An owner to watch: the VIP probed, and every VIP of the owner this node backs up (a frame claiming any of
    them is the owner heard)."""

    probe: str
    vips: frozenset[str]


@dataclass(frozen=True, slots=True)
class Seen:
    """Where an owner was last heard: the interface, its MAC there, and when (monotonic seconds)."""

    iface: str
    mac: bytes
    at: float


def parse_if_inet6(text: str) -> dict[str, bytes]:
    """Interface -> one link-local IPv6 address (16 bytes), from the text of /proc/net/if_inet6 (address in hex,
    ifindex, prefix length, scope, flags, name). Malformed lines are skipped."""
    out: dict[str, bytes] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 6 or len(parts[0]) != 32:
            continue
        try:
            addr, scope = bytes.fromhex(parts[0]), int(parts[3], 16)
        except ValueError:
            continue
        if scope == IFA_SCOPE_LINK:
            out.setdefault(parts[5], addr)
    return out


def read_link_locals() -> dict[str, bytes]:
    """This namespace's link-local addresses by interface ({} when IPv6 is off)."""
    try:
        with open(IF_INET6, encoding="ascii") as fh:
            return parse_if_inet6(fh.read(1 << 20))
    except OSError:
        return {}


class _Listener:
    """The receive (and send) sockets of one interface: ARP, and IPv6 while some owner has IPv6 VIPs."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.arp: socket.socket | None = None
        self.ndp: socket.socket | None = None

    def filters(self, v4: list[bytes], v6: list[bytes]) -> None:
        """Open, narrow or close the sockets for the VIPs watched (exact filters; past the limits, every frame)."""
        self.arp = self._one(self.arp, packets.ETH_P_ARP, bpf.arp_program(v4) if v4 else None)
        self.ndp = self._one(self.ndp, packets.ETH_P_IPV6, bpf.ndp_program(v6) if v6 else None)

    def _one(self, sock: socket.socket | None, proto: int, prog: bpf.Program | None) -> socket.socket | None:
        if prog is None:
            if sock is not None:
                sock.close()
            return None
        if sock is None:
            return open_packet_socket(self.link.name, proto, prog=prog)
        bpf.attach(sock, prog)
        return sock

    def close(self) -> None:
        for sock in (self.arp, self.ndp):
            if sock is not None:
                sock.close()
        self.arp = self.ndp = None


class Prober:
    """Sends probes to owners' MACs and hears owners. Start it, ``set_targets()`` it, ``stop()`` it."""

    def __init__(
        self,
        *,
        on_heard: Callable[[str], None],
        exclude: str | re.Pattern[str] = DEFAULT_EXCLUDE,
        scan: Callable[[], dict[str, Link]] = scan_links,
        link_locals: Callable[[], dict[str, bytes]] = read_link_locals,
    ) -> None:
        self._on_heard = on_heard
        self._exclude = re.compile(exclude) if isinstance(exclude, str) else exclude
        self._scan = scan
        self._link_locals_of = link_locals
        self._lock = threading.Lock()
        self._targets: dict[str, Target] = {}
        self._owner_of: dict[bytes, str] = {}  # packed VIP -> owner
        self._seen: dict[str, Seen] = {}  # owner -> where it was last heard
        self._dirty = True
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.asked = 0
        self.heard = 0
        self.send_errors = 0
        # The I/O thread's, but read by probe() under the lock:
        self._listeners: dict[str, _Listener] = {}
        self._local_macs: frozenset[bytes] = frozenset()
        self._link_local: dict[str, bytes] = {}
        self._sel: selectors.BaseSelector | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None

    # ------------------------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping = False
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._run, name="l2guard-prober", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        thread = self._thread
        if thread is None:
            return
        with self._lock:
            self._stopping = True
        self._wake()
        thread.join(timeout)
        self._thread = None

    # ------------------------------------------------------------------------------------- the API

    def set_targets(self, targets: Mapping[str, Target]) -> None:
        """Watch exactly these owners from now on (owner node -> Target). Owners no longer watched are forgotten,
        with their MACs: a node that becomes runner-up again learns its owner's MAC again."""
        owner_of = {}
        for owner, target in targets.items():
            for vip in target.vips | {target.probe}:
                owner_of[_pack(vip)] = owner
        with self._lock:
            if dict(targets) == self._targets:
                return
            self._targets = dict(targets)
            self._owner_of = owner_of
            self._seen = {o: s for o, s in self._seen.items() if o in targets}
            self._dirty = True
        self._wake()

    def seen(self) -> dict[str, Seen]:
        """Owner -> where it was last heard (the MAC probes go to)."""
        with self._lock:
            return dict(self._seen)

    def probe(self, owner: str) -> bool:
        """Send one probe to `owner`'s learned MAC; False when none is known or the send failed."""
        with self._lock:
            target = self._targets.get(owner)
            seen = self._seen.get(owner)
            listener = self._listeners.get(seen.iface) if seen is not None else None
            source6 = self._link_local.get(seen.iface) if seen is not None else None
        if target is None or seen is None or listener is None:
            return False
        if not self._send(owner, listener, target.probe, seen.mac, source6):
            return False
        self.sent += 1
        return True

    def ask(self, owner: str, candidates: Iterable[bytes]) -> bool:
        """Before `owner` was heard: one probe to each of `candidates` (the MACs it publishes) on each interface
        (they are few: a node's own interfaces); True when one went out. All unicast: a wrong guess costs one
        frame, never a broadcast."""
        with self._lock:
            target = self._targets.get(owner)
            if target is None or owner in self._seen:
                return False
            pairs = [
                (listener, mac, self._link_local.get(name))
                for name, listener in sorted(self._listeners.items())
                for mac in sorted(set(candidates))
                if mac not in self._local_macs
            ]
        sent = sum(self._send(owner, listener, target.probe, mac, source6) for listener, mac, source6 in pairs)
        self.asked += sent
        return sent > 0

    def _send(self, owner: str, listener: _Listener, ip: str, dst: bytes, source6: bytes | None) -> bool:
        mac = listener.link.mac
        vip = _pack(ip)
        if len(vip) == 4:
            sock = listener.arp
            frame = packets.build_arp_request(mac, packets.ZERO_IP4, tpa=vip, eth_dst=dst)
        else:
            sock = listener.ndp
            if source6 is None:
                return False  # no link-local address to solicit from (IPv6 off on this link)
            frame = packets.build_ns(mac, source6, target=vip, dst=vip, eth_dst=dst)
        if sock is None:
            return False
        try:
            sock.send(frame)
        except OSError as exc:  # ENETDOWN/ENXIO: our link went down or away; the rescan sorts it out
            self.send_errors += 1
            iface = listener.link.name
            log.debug(
                "probe to %s on %s failed: %s",
                owner,
                iface,
                exc,
                extra={"fields": {"event": "probe-failed", "node": owner, "iface": iface, "reason": str(exc)}},
            )
            return False
        return True

    # ---------------------------------------------------------------------------------- I/O thread

    def _wake(self) -> None:
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")

    def _run(self) -> None:
        assert self._sel is not None
        next_scan = 0.0
        try:
            while True:
                with self._lock:
                    if self._stopping:
                        break
                    dirty, self._dirty = self._dirty, False
                now = time.monotonic()
                if dirty or now >= next_scan:
                    self._rescan()
                    next_scan = now + RESCAN_INTERVAL
                for key, _ in self._sel.select(max(0.0, next_scan - time.monotonic())):
                    if key.data is None:
                        self._drain_wake()
                    else:
                        iface, sock = key.data
                        self._read(iface, sock)
        except Exception:  # pragma: no cover - a bug: stop probing rather than report owners dead
            log.exception("prober crashed; no more probes", extra={"fields": {"event": "prober-crashed"}})
        finally:
            self._shutdown()

    def _drain_wake(self) -> None:
        assert self._wake_r is not None
        with contextlib.suppress(OSError):
            while self._wake_r.recv(4096):
                pass

    def _shutdown(self) -> None:
        with self._lock:
            listeners, self._listeners = self._listeners, {}
        for listener in listeners.values():
            listener.close()
        if self._sel is not None:
            self._sel.close()
        for s in (self._wake_r, self._wake_w):
            if s is not None:
                s.close()
        self._wake_r = self._wake_w = None

    def _rescan(self) -> None:
        try:
            links = self._scan()
        except Exception as exc:  # netlink hiccup: keep the last view
            log.debug("link scan failed: %s", exc, extra={"fields": {"event": "scan-failed", "reason": str(exc)}})
            return
        with self._lock:
            owner_of = dict(self._owner_of)
        v4 = sorted(k for k in owner_of if len(k) == 4)
        v6 = sorted(k for k in owner_of if len(k) == 16)
        wanted = eligible_for_all(links, self._exclude) if owner_of else frozenset()
        assert self._sel is not None
        listeners = dict(self._listeners)
        for name in list(listeners):
            old = listeners[name]
            link = links.get(name)
            if name not in wanted or link is None or link.index != old.link.index or link.mac != old.link.mac:
                self._unregister(old)
                old.close()
                del listeners[name]
        for name in sorted(wanted):
            listener = listeners.get(name) or _Listener(links[name])
            self._unregister(listener)
            try:
                listener.filters(v4, v6)
            except OSError as exc:
                log.warning(
                    "cannot listen for owners on %s: %s",
                    name,
                    exc,
                    extra={"fields": {"event": "probe-socket-failed", "iface": name, "reason": str(exc)}},
                )
                listener.close()
                listeners.pop(name, None)
                continue
            listeners[name] = listener
            for sock in (listener.arp, listener.ndp):
                if sock is not None:
                    self._sel.register(sock, selectors.EVENT_READ, (name, sock))
        local = frozenset(link.mac for link in links.values() if len(link.mac) == 6)
        link_local = self._link_locals_of() if v6 else {}
        with self._lock:
            self._listeners = listeners
            self._local_macs = local
            self._link_local = link_local

    def _unregister(self, listener: _Listener) -> None:
        assert self._sel is not None
        for sock in (listener.arp, listener.ndp):
            if sock is not None:
                with contextlib.suppress(KeyError, ValueError):
                    self._sel.unregister(sock)

    def _read(self, iface: str, sock: socket.socket) -> None:
        for _ in range(MAX_DRAIN):
            try:
                frame, addr = sock.recvfrom(2048)
            except BlockingIOError:
                return
            except InterruptedError:
                continue
            except OSError:  # the link went down or away: the next rescan reopens or drops the socket
                with self._lock:
                    self._dirty = True
                return
            if addr[2] == PACKET_OTHERHOST:
                continue
            self._handle(iface, frame)

    def _handle(self, iface: str, frame: bytes) -> None:
        """A frame in which a MAC claims a watched VIP: an ARP request or reply with that sender IP, or an NA for
        that target. That MAC is the owner's on this link (our own frames excepted)."""
        claimed: bytes | None = None
        mac: bytes | None = None
        arp = packets.parse_arp(frame)
        if arp is not None:
            if arp.op in (1, 2):
                claimed, mac = arp.spa, arp.sha
        else:
            ndp = packets.parse_ndp(frame)
            if ndp is not None and ndp.type == packets.ICMPV6_NA:
                claimed, mac = ndp.target, ndp.lladdr if ndp.lladdr is not None else ndp.eth_src
        if claimed is None or mac is None:
            return
        now = time.monotonic()
        with self._lock:
            owner = self._owner_of.get(claimed)
            if owner is None or mac in self._local_macs or frame[6:12] in self._local_macs:
                return
            self._seen[owner] = Seen(iface, mac, now)
            self.heard += 1
        self._on_heard(owner)


def _pack(ip: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)
