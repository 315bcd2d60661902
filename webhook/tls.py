"""TLS for the admission endpoints: a server SSLContext (TLS 1.2 at least) whose certificate is reloaded without a
restart.

Mounted Secrets change by an atomic symlink swap that sends no inotify event to the file we watch, so the reloader
compares the files' content hash on a short interval (as kopf does) and calls `load_cert_chain` on the live
context: new handshakes use the new certificate, open connections keep theirs.

A pair that does not load (a half-written update: new cert, old key) must leave the live context untouched: OpenSSL
installs the certificate before it checks the key, so a failed load on the live context would leave it with no
usable pair. The bytes that were hashed are therefore written to private scratch files, proven on a fresh context,
and only then loaded into the live one; the old pair stays until a good one arrives (retried every tick).
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import logging
import os
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509

log = logging.getLogger(__name__)


class TLSError(Exception):
    """Certificate or key cannot be read or do not match; the message is one line."""


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise TLSError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def not_after(cert_pem: bytes) -> datetime.datetime:
    """Expiry of the first (leaf) certificate in a PEM chain."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise TLSError(f"not a PEM certificate: {exc}") from exc
    return cert.not_valid_after_utc


def _load_verified(ctx: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    """Load exactly these bytes into `ctx`, after proving on a scratch context that they form a usable pair."""
    with tempfile.TemporaryDirectory(prefix="l2guard-tls-") as tmp:  # mode 0700: the key is never world-readable
        cert_path, key_path = os.path.join(tmp, "tls.crt"), os.path.join(tmp, "tls.key")
        for path, data in ((cert_path, cert), (key_path, key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        try:
            server_context().load_cert_chain(cert_path, key_path)  # throw-away: a failure here harms nothing
            ctx.load_cert_chain(cert_path, key_path)
        except (ssl.SSLError, OSError) as exc:
            raise TLSError(f"cannot load the certificate and key: {exc}") from exc


def server_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


@dataclass
class CertReloader:
    """Owns the live SSLContext. `check()` reloads when the content hash changed; `run()` checks forever."""

    cert_file: str
    key_file: str
    interval: float = 10.0
    on_expiry: Callable[[float], None] | None = None  # seconds until expiry, after each (re)load and check
    on_reload: Callable[[], None] | None = None
    clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC)

    def __post_init__(self) -> None:
        self.context = server_context()
        self._digest = b""
        self._expires: datetime.datetime | None = None
        self.check(initial=True)

    @property
    def loaded(self) -> bool:
        return self._expires is not None

    def check(self, *, initial: bool = False) -> bool:
        """Reload if the files changed. Returns whether a reload happened. Raises TLSError only when `initial`."""
        try:
            cert, key = _read(self.cert_file), _read(self.key_file)
            digest = hashlib.sha256(cert + b"\0" + key).digest()
            if digest != self._digest:
                expires = not_after(cert)  # before loading: a certificate cryptography cannot read is refused too
                try:
                    _load_verified(self.context, cert, key)
                except TLSError as exc:
                    raise TLSError(f"{self.cert_file}/{self.key_file}: {exc}") from exc
                self._expires = expires
                self._digest = digest
                if not initial:
                    log.info("certificate reloaded event=cert-reload expires=%s", self._expires.isoformat())
                    if self.on_reload:
                        self.on_reload()
                reloaded = True
            else:
                reloaded = False
        except TLSError as exc:
            if initial:
                raise
            log.warning("certificate not reloaded event=cert-reload-failed reason=%s", exc)
            reloaded = False
        if self._expires is not None and self.on_expiry:
            self.on_expiry((self._expires - self.clock()).total_seconds())
        return reloaded

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.check()
            except Exception:  # a bug or a surprise from a library must not end certificate rotation for good
                log.exception("certificate check failed event=cert-reload-failed")
