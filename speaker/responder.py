"""Per-interface ARP and NDP responders: raw AF_PACKET sockets, BPF filters, group joins, answers.

A :class:`Port` owns the sockets of one interface and answers for the IPs it is told to own there.
It is driven by the announcer's single I/O thread and is not thread-safe. It must not decide which
IPs to own, schedule announcements or read Kubernetes; frame parsing and building live in
:mod:`speaker.packets` (hand-parsed with slicing, never dissected with scapy).

Rules the answers follow (see issue 3 and FIELD-NOTES):
- answer only frames sent to broadcast, to our own MAC, or (NDP) to the target's solicited-node group;
  a unicast probe to another node's MAC is that node's business;
- an ARP reply goes unicast to the requester, from the interface MAC, with the VIP as sender IP;
- an NA is sent from the VIP (ndisc6 rejects anything else), S=1 O=1 with a target link-layer option;
  a DAD probe (source ::) is answered with an NA to ff02::1;
- another MAC claiming an owned IP (ARP with that sender IP, NA for that target) is a conflict;
- a frame of another VLAN is never answered, nor used as a conflict: a packet socket on ``eth0`` receives
  the frames of VLANs without a VLAN interface here, untagged and marked PACKET_OTHERHOST by the kernel
  (see :mod:`speaker.bpf`); the BPF program drops them and the receive path checks the packet type again,
  so only ``eth0.5`` answers VLAN 5. (Unicast frames for other MACs, seen when a bridge floods them, are
  PACKET_OTHERHOST too and are ignored alike.)
- ENETDOWN/ENXIO on a socket are counted and reported to the owner, never raised.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
from collections.abc import Callable, Iterable, Iterator

from speaker import bpf, packets
from speaker.metrics import Counters, Family

log = logging.getLogger(__name__)

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_DROP_MEMBERSHIP = 2
PACKET_MR_MULTICAST = 0
PACKET_IGNORE_OUTGOING = 23
PACKET_OTHERHOST = 3  # sll_pkttype (linux/if_packet.h)
RCVBUF = 4 * 1024 * 1024
SO_RCVBUFFORCE = 33  # <asm-generic/socket.h>
MAX_DRAIN = 512  # frames handled per readiness event, so one busy socket cannot starve the others

_ARP_REQ = packets.ETHERTYPE_ARP + b"\x00\x01\x08\x00\x06\x04\x00\x01"
_ARP_REP = packets.ETHERTYPE_ARP + b"\x00\x01\x08\x00\x06\x04\x00\x02"
_BCAST = packets.BROADCAST_MAC

# (ip, iface, family, mac of the other claimant)
ConflictSink = Callable[[str, str, Family, bytes], None]
# (iface, error) -- the link probably went down or away; the owner rescans
ErrorSink = Callable[[str, OSError], None]


def open_packet_socket(ifname: str, proto: int, *, prog: bpf.Program) -> socket.socket:
    """A non-blocking AF_PACKET/SOCK_RAW socket bound to ``ifname`` for ``proto`` with ``prog`` attached.

    The socket is created with protocol 0 (it receives nothing) and the filter is attached before the
    bind, so no unfiltered frame is ever queued. Raises PermissionError without CAP_NET_RAW.
    """
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_NONBLOCK, 0)
    try:
        bpf.attach(sock, prog)
        with contextlib.suppress(OSError):  # kernels before 4.20: frames from local MACs are skipped instead
            sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        try:  # as root or with CAP_NET_ADMIN, past net.core.rmem_max (~208 KB), which a storm would fill
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
        except OSError:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        sock.bind((ifname, proto))
    except BaseException:
        sock.close()
        raise
    return sock


def raw_socket_problem() -> str | None:
    """Why this process cannot open the raw packet sockets the responders need (one line), or None. The announcer
    opens them only when it has something to announce, and reports a failure per IP then; a command checks this
    at start so that a speaker without CAP_NET_RAW refuses to start instead of looking ready and saying nothing."""
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()
    except PermissionError:
        return "needs root or CAP_NET_RAW to open raw packet sockets"
    except OSError as exc:
        return f"cannot open a raw packet socket: {exc.strerror or exc}"
    return None


class Port:
    """Responders for one interface: an ARP socket while it owns IPv4 VIPs, an IPv6 packet socket plus
    a multicast-membership socket while it owns IPv6 VIPs."""

    def __init__(
        self,
        name: str,
        index: int,
        *,
        mac: bytes,
        counters: Counters,
        local_macs: Callable[[], frozenset[bytes]],
        on_conflict: ConflictSink,
        on_error: ErrorSink,
        max_arp_ips: int = bpf.DEFAULT_MAX_ARP_IPS,
        max_ndp_ips: int = bpf.DEFAULT_MAX_NDP_IPS,
    ) -> None:
        self.name = name
        self.index = index
        self.mac = mac
        self._counters = counters
        self._local_macs = local_macs
        self._on_conflict = on_conflict
        self._on_error = on_error
        self._max_arp_ips = max_arp_ips
        self._max_ndp_ips = max_ndp_ips
        self.v4: dict[bytes, str] = {}  # packed VIP -> text form
        self.v6: dict[bytes, str] = {}
        self.arp_sock: socket.socket | None = None
        self.ndp_sock: socket.socket | None = None
        self._mld_sock: socket.socket | None = None
        self._groups: set[bytes] = set()  # solicited-node groups joined
        self.arp_fallback = False
        self.ndp_fallback = False
        self.join_errors: dict[str, str] = {}  # group -> error text, for status reports

    # ------------------------------------------------------------------------------------ ownership

    def update(self, family: Family, ips: Iterable[str]) -> tuple[set[str], set[str]]:
        """Own exactly ``ips`` (text IPs of ``family``) on this interface from now on.

        Returns (acquired, released) text IPs. Raises OSError if a socket cannot be opened
        (PermissionError without CAP_NET_RAW); ownership of that family is then left unchanged.
        """
        af = socket.AF_INET if family == "ipv4" else socket.AF_INET6
        new = {socket.inet_pton(af, ip): ip for ip in ips}
        old = self.v4 if family == "ipv4" else self.v6
        acquired = {ip for k, ip in new.items() if k not in old}
        released = {ip for k, ip in old.items() if k not in new}
        if new.keys() != old.keys():
            if family == "ipv4":
                self._set_v4(new)
            else:
                self._set_v6(new)
        return acquired, released

    def _set_v4(self, new: dict[bytes, str]) -> None:
        if not new:
            self.v4 = {}
            self._close_arp()
            return
        exact = len(new) <= self._max_arp_ips
        prog = bpf.arp_program(new, max_ips=self._max_arp_ips)
        if self.arp_sock is None:
            self.arp_sock = open_packet_socket(self.name, packets.ETH_P_ARP, prog=bpf.DROP_ALL)
        # Shrinking: stop answering first, then narrow the filter; growing: the reverse.
        self.v4 = {k: v for k, v in self.v4.items() if k in new}
        self.arp_fallback = not self._attach(self.arp_sock, prog, fallback=bpf.arp_program(new, max_ips=0), exact=exact)
        self.v4 = new

    def _set_v6(self, new: dict[bytes, str]) -> None:
        if not new:
            self.v6 = {}
            self._close_ndp()
            return
        exact = len(new) <= self._max_ndp_ips
        prog = bpf.ndp_program(new, max_ips=self._max_ndp_ips)
        if self._mld_sock is None:  # before any state changes: if IPv6 is disabled, ownership stays as it was
            self._mld_sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        if self.ndp_sock is None:
            self.ndp_sock = open_packet_socket(self.name, packets.ETH_P_IPV6, prog=bpf.DROP_ALL)
        self.v6 = {k: v for k, v in self.v6.items() if k in new}
        self.ndp_fallback = not self._attach(self.ndp_sock, prog, fallback=bpf.ndp_program(new, max_ips=0), exact=exact)
        self.v6 = new
        self._sync_groups({packets.solicited_node_address(k) for k in new})

    def retry_filters(self) -> None:
        """Try again to attach exact filters where the kernel refused them before (a fallback is
        correct, only more expensive under storms)."""
        if self.arp_fallback and self.arp_sock is not None and len(self.v4) <= self._max_arp_ips:
            prog = bpf.arp_program(self.v4, max_ips=self._max_arp_ips)
            self.arp_fallback = not self._attach(
                self.arp_sock, prog, fallback=bpf.arp_program(self.v4, max_ips=0), exact=True
            )
        if self.ndp_fallback and self.ndp_sock is not None and len(self.v6) <= self._max_ndp_ips:
            prog = bpf.ndp_program(self.v6, max_ips=self._max_ndp_ips)
            self.ndp_fallback = not self._attach(
                self.ndp_sock, prog, fallback=bpf.ndp_program(self.v6, max_ips=0), exact=True
            )

    def retry_groups(self) -> None:
        """Try again to join the solicited-node groups a previous attempt failed to join."""
        if self.join_errors and self.v6:
            self._sync_groups({packets.solicited_node_address(k) for k in self.v6})

    def _attach(self, sock: socket.socket, prog: bpf.Program, *, fallback: bpf.Program, exact: bool) -> bool:
        """Attach ``prog``; if the kernel refuses it (ENOMEM beyond optmem_max), attach ``fallback``.

        Returns True when the attached program matches individual IPs.
        """
        if exact:
            try:
                bpf.attach(sock, prog)
                return True
            except OSError as exc:
                log.warning(
                    "the kernel refused the exact filter on %s (%s); passing every ARP/NDP frame to user space",
                    self.name,
                    exc,
                    extra={"fields": {"event": "filter-fallback", "iface": self.name, "reason": str(exc)}},
                )
        bpf.attach(sock, fallback)
        return False

    def _sync_groups(self, wanted: set[bytes]) -> None:
        """Join the solicited-node groups in ``wanted`` and leave the others.

        Two memberships per group: an IPv6 one (IPV6_JOIN_GROUP, which makes the kernel send MLD
        reports so a snooping bridge forwards the group to us) and a packet-socket one
        (PACKET_MR_MULTICAST, which programs the NIC's multicast MAC filter).
        """
        if self._mld_sock is None:
            self._mld_sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        for group in sorted(wanted - self._groups):
            gtext = socket.inet_ntop(socket.AF_INET6, group)
            mreq6 = group + struct.pack("@I", self.index)
            try:
                self._mld_sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq6)
                if self.ndp_sock is not None:
                    try:
                        self.ndp_sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, self._mreq(group))
                    except OSError:
                        # Not half-joined: leave the IPv6 membership again, so the retry starts clean.
                        with contextlib.suppress(OSError):
                            self._mld_sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_LEAVE_GROUP, mreq6)
                        raise
            except OSError as exc:
                self.join_errors[gtext] = str(exc)
                log.warning(
                    "joining %s on %s failed: %s",
                    gtext,
                    self.name,
                    exc,
                    extra={"fields": {"event": "join-failed", "iface": self.name, "group": gtext, "reason": str(exc)}},
                )
                continue
            self.join_errors.pop(gtext, None)
            self._groups.add(group)
            log.debug(
                "joined %s on %s",
                gtext,
                self.name,
                extra={"fields": {"event": "join", "iface": self.name, "group": gtext}},
            )
        for group in sorted(self._groups - wanted):
            self._leave(group)
        for gtext in [g for g in self.join_errors if socket.inet_pton(socket.AF_INET6, g) not in wanted]:
            del self.join_errors[gtext]  # no longer wanted: nothing left to report or retry

    def _mreq(self, group: bytes) -> bytes:
        return struct.pack("iHH8s", self.index, PACKET_MR_MULTICAST, 6, packets.multicast_mac(group))

    def _leave(self, group: bytes) -> None:
        self._groups.discard(group)
        try:
            if self._mld_sock is not None:
                self._mld_sock.setsockopt(
                    socket.IPPROTO_IPV6, socket.IPV6_LEAVE_GROUP, group + struct.pack("@I", self.index)
                )
            if self.ndp_sock is not None:
                self.ndp_sock.setsockopt(SOL_PACKET, PACKET_DROP_MEMBERSHIP, self._mreq(group))
        except OSError as exc:  # the link vanished: the kernel dropped the membership with it
            log.debug(
                "leaving a group on %s failed: %s",
                self.name,
                exc,
                extra={"fields": {"event": "leave-failed", "iface": self.name, "reason": str(exc)}},
            )

    @property
    def groups(self) -> frozenset[str]:
        """Solicited-node groups currently joined, as text."""
        return frozenset(socket.inet_ntop(socket.AF_INET6, g) for g in self._groups)

    def _close_arp(self) -> None:
        if self.arp_sock is not None:
            self.arp_sock.close()
            self.arp_sock = None
        self.arp_fallback = False

    def _close_ndp(self) -> None:
        for group in list(self._groups):
            self._leave(group)
        if self.ndp_sock is not None:
            self.ndp_sock.close()
            self.ndp_sock = None
        if self._mld_sock is not None:
            self._mld_sock.close()
            self._mld_sock = None
        self.ndp_fallback = False
        self.join_errors.clear()

    def close(self) -> None:
        """Stop answering on this interface at once and release every socket and membership."""
        self.v4 = {}
        self.v6 = {}
        self._close_arp()
        self._close_ndp()

    # -------------------------------------------------------------------------------------- sending

    def _send(self, sock: socket.socket | None, frame: bytes, family: Family) -> bool:
        if sock is None:
            return False
        try:
            sock.send(frame)
            return True
        except OSError as exc:  # ENETDOWN/ENXIO when the link goes down or away, ENOBUFS under load
            self._counters.inc("errors", family, iface=self.name)
            self._on_error(self.name, exc)
            return False

    def announce(self, ip: str) -> int:
        """Send one takeover round for ``ip``; returns the number of frames sent.

        IPv4: a gratuitous ARP request and a gratuitous ARP reply, both broadcast.
        IPv6: an unsolicited NA to ff02::1 with Override=1.
        """
        sent = 0
        if ":" in ip:
            vip6 = socket.inet_pton(socket.AF_INET6, ip)
            frame = packets.build_unsolicited_na(self.mac, vip6)
            if vip6 in self.v6 and self._send(self.ndp_sock, frame, "ipv6"):
                sent += 1
            if sent:
                self._counters.inc("gratuitous_sent", "ipv6", iface=self.name, ip=ip, n=sent)
            return sent
        vip = socket.inet_pton(socket.AF_INET, ip)
        if vip not in self.v4:
            return 0
        for frame in (packets.build_garp_request(self.mac, vip), packets.build_garp_reply(self.mac, vip)):
            if self._send(self.arp_sock, frame, "ipv4"):
                sent += 1
        if sent:
            self._counters.inc("gratuitous_sent", "ipv4", iface=self.name, ip=ip, n=sent)
        return sent

    # ------------------------------------------------------------------------------------ receiving

    def _recv_frames(self, sock: socket.socket, family: Family) -> Iterator[bytes]:
        """Queued frames for this host on this interface's own VLAN; at most MAX_DRAIN are read. A generator,
        so the first reply leaves before the next recvfrom().

        Frames of type PACKET_OTHERHOST (other VLANs, unicast for other MACs) are skipped. The BPF program
        drops them already; the rule holds here too, so the filter only saves CPU and is never what makes an
        answer right. (recvfrom() costs ~0.8 µs more per frame than recv(); recvmsg() with PACKET_AUXDATA
        ~2.5 µs, for a VLAN flag that these protocol-bound sockets never see set: the kernel clears the tag
        before delivering to them.)
        """
        for _ in range(MAX_DRAIN):
            try:
                frame, addr = sock.recvfrom(2048)
            except BlockingIOError:
                return
            except InterruptedError:
                continue
            except OSError as exc:
                self._counters.inc("errors", family, iface=self.name)
                self._on_error(self.name, exc)
                return
            if addr[2] != PACKET_OTHERHOST:  # addr is struct sockaddr_ll: (ifname, proto, pkttype, hatype, mac)
                yield frame

    def read_arp(self) -> None:
        """Handle every queued ARP frame (bounded); called when the ARP socket is readable."""
        sock = self.arp_sock
        if sock is None:
            return
        for frame in self._recv_frames(sock, "ipv4"):
            self.handle_arp(frame)

    def handle_arp(self, frame: bytes) -> None:
        """Answer, count or flag one ARP frame received on this interface."""
        head = frame[12:22]
        if head != _ARP_REQ and head != _ARP_REP:
            return
        sha = frame[22:28]
        v4 = self.v4
        claimed = v4.get(frame[28:32])
        if claimed is not None:
            # Someone else says "I am <owned IP>": a gratuitous ARP, a reply, or its own request.
            if sha not in self._local_macs() and frame[6:12] not in self._local_macs():
                self._counters.inc("conflicts", "ipv4", iface=self.name, ip=claimed)
                self._on_conflict(claimed, self.name, "ipv4", sha)
            return
        if head != _ARP_REQ:
            return
        ip = v4.get(frame[38:42])
        if ip is None:
            return
        dst = frame[0:6]
        mac = self.mac
        if dst != _BCAST and dst != mac:
            self._counters.inc("requests_received", "ipv4", iface=self.name, ip=ip)
            return  # a unicast probe for another node's MAC
        # Reply first, count after: the bookkeeping is not on the requester's clock.
        reply = packets.make_arp_reply(frame, mac)
        answered = reply is not None and self._send(self.arp_sock, reply, "ipv4")
        self._counters.inc("requests_received", "ipv4", iface=self.name, ip=ip)
        if answered:
            self._counters.inc("requests_answered", "ipv4", iface=self.name, ip=ip)

    def read_ndp(self) -> None:
        """Handle every queued NS/NA (bounded); called when the IPv6 packet socket is readable."""
        sock = self.ndp_sock
        if sock is None:
            return
        for frame in self._recv_frames(sock, "ipv6"):
            self.handle_ndp(frame)

    def handle_ndp(self, frame: bytes) -> None:
        """Answer, count or flag one IPv6 frame received on this interface."""
        pkt = packets.parse_ndp(frame)
        if pkt is None:
            return
        ip = self.v6.get(pkt.target)
        if ip is None:
            return
        local = self._local_macs()
        if pkt.eth_src in local:
            return
        if pkt.type == packets.ICMPV6_NA:
            claimant = pkt.lladdr if pkt.lladdr is not None else pkt.eth_src
            if claimant not in local:
                self._counters.inc("conflicts", "ipv6", iface=self.name, ip=ip)
                self._on_conflict(ip, self.name, "ipv6", claimant)
            return
        self._counters.inc("requests_received", "ipv6", iface=self.name, ip=ip)
        if pkt.dst == packets.solicited_node_address(pkt.target):
            if pkt.eth_dst != packets.solicited_node_mac(pkt.target) and pkt.eth_dst != self.mac:
                return
        elif pkt.dst == pkt.target and pkt.src != packets.UNSPECIFIED_IP6:
            if pkt.eth_dst != self.mac:
                return  # NUD probe for another node's MAC
        else:
            return
        reply = packets.make_na_reply(pkt, self.mac)
        if reply is not None and self._send(self.ndp_sock, reply, "ipv6"):
            self._counters.inc("requests_answered", "ipv6", iface=self.name, ip=ip)
