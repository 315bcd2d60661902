"""Listening sockets for the commands' servers (the webhook's ports, the speaker's health port): bound before the
server starts, so that a port in use is one line naming the address and the cause, not a traceback from deep in
uvicorn."""

from __future__ import annotations

import errno
import socket


class BindError(OSError):
    """A listening socket cannot be bound; `port` says which one, the message is one line."""

    def __init__(self, host: str, port: int, reason: str, *, address_unavailable: bool = False) -> None:
        super().__init__(f"cannot listen on {host}:{port}: {reason}")
        self.host = host
        self.port = port
        self.address_unavailable = address_unavailable  # the address, not the port, is the culprit


def bind(host: str, port: int, *, backlog: int = 128) -> socket.socket:
    """A listening, non-blocking socket. Raises BindError naming the address and the cause (in use, not local)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # Not SO_REUSEPORT: a second listener on the port must fail, not share it.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            reason = "the port is already in use by another process"
        elif exc.errno == errno.EACCES:
            reason = "permission denied (ports below 1024 need CAP_NET_BIND_SERVICE)"
        elif exc.errno == errno.EADDRNOTAVAIL:
            reason = "the address is not one of this host's"
        else:
            reason = str(exc.strerror or exc)
        raise BindError(host, port, reason, address_unavailable=exc.errno == errno.EADDRNOTAVAIL) from exc
    sock.setblocking(False)
    return sock
