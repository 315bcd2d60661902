"""The API double in reach of the node namespaces, for live-mode tests with the real data plane: a namespace of its
own on the topology's bridge (198.51.100.1/24 on its eth0; the nodes get 198.51.100.10 and .11 beside their
addresses), and the double's listening socket created inside it.

Only documentation addresses (198.51.100.0/24). Nothing is added to the root namespace: the API namespace joins
``Topology.created``, so ``Topology.destroy()`` deletes it (and its veth) with the others. Test scaffolding only.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from typing import TypeVar

from speaker_netns import Host, Topology, sh

API_IP = "198.51.100.1"
NODE_API_IPS = {"node-a": "198.51.100.10", "node-b": "198.51.100.11"}
CLONE_NEWNET = 0x40000000  # <linux/sched.h>

T = TypeVar("T")


def add_api_host(topo: Topology) -> Host:
    """The API namespace on the bridge, and an address in its subnet on each node's eth0."""
    ns = f"l2api-{topo.suffix}"
    sh(["ip", "netns", "add", ns])
    topo.created.append(ns)
    sh(["ip", "-n", ns, "link", "set", "lo", "up"])
    sh(["ip", "-n", topo.br, "link", "add", "papi", "type", "veth", "peer", "name", "eth0", "netns", ns])
    mac = "02:00:00:00:ab:01"
    sh(["ip", "-n", ns, "link", "set", "eth0", "address", mac])
    sh(["ip", "-n", ns, "addr", "add", f"{API_IP}/24", "dev", "eth0"])
    sh(["ip", "-n", topo.br, "link", "set", "papi", "master", "br0"])
    sh(["ip", "-n", topo.br, "link", "set", "papi", "up"])
    sh(["ip", "-n", ns, "link", "set", "eth0", "up"])
    for role, ip in NODE_API_IPS.items():
        sh(["ip", "-n", topo.hosts[role].ns, "addr", "add", f"{ip}/24", "dev", "eth0"])
    return Host(ns, mac, API_IP, "", "papi")


def in_netns(ns: str, make: Callable[[], T]) -> T:
    """``make()`` called on a thread that entered the network namespace ``ns`` first, so the sockets it creates
    live there (setns(2) moves only the calling thread; the caller's thread never leaves its namespace, and a
    socket keeps its namespace whichever thread serves it)."""
    result: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns into {ns}: {os.strerror(err)}")
            finally:
                os.close(fd)
            result.append(make())
        except BaseException as exc:  # handed to the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(20)
    if errors:
        raise errors[0]
    assert result, f"no result from {ns} within 20 s"
    return result[0]
