"""TLS for the admission endpoints: a server SSLContext (TLS 1.2 at least) whose certificate is reloaded without a
restart, and the proof that a certificate/key pair is usable before it is loaded.

Mounted Secrets change by an atomic symlink swap that sends no inotify event to the file we watch, so the reloader
compares the files' content hash on a short interval (as kopf does) and calls `load_cert_chain` on the live
context: new handshakes use the new certificate, open connections keep theirs.

A pair is proven in memory before it is loaded: `cryptography` parses both files (an encrypted key is refused, never
prompted for), checks that the key belongs to the leaf certificate and that the certificate is valid now. The files
are bounded in size (a Secret holds at most 1 MiB) and are read, hashed and proven in a worker thread by `run()`, so
a huge or slow file cannot stall the event loop.

The key must never touch a filesystem: the manifest runs the pod with a read-only root filesystem, and a key left
in a scratch directory by a process killed mid-reload would outlive it. `ssl.SSLContext.load_cert_chain` only takes
paths, so the bytes go into anonymous memory files (`memfd_create(2)`, opened through /proc/self/fd). They live in
no mounted filesystem and the kernel frees them when the last descriptor closes, also when the process dies.
The password callback given to OpenSSL raises, so OpenSSL can never prompt on a terminal either.

A pair that does not load must leave the live context untouched: OpenSSL installs the certificate before it checks
the key, so a failed load on the live context would leave it with no usable pair. The pair is therefore loaded into
a throw-away context first, and only then into the live one; the old pair stays until a good one arrives.

In self-managed mode (`webhook.selfsigned`) there are no files: the reloader starts with no pair and is offered
proven pairs from the Secret (`offer`), loaded the same way.

This module must not read settings or the environment; it gets paths (or pairs) and a clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import errno
import hashlib
import logging
import os
import ssl
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from l2guard.pki import public_der

log = logging.getLogger(__name__)

MAX_FILE_SIZE = (
    1024 * 1024
)  # a Kubernetes Secret holds at most 1 MiB (kubernetes.io/docs/concepts/configuration/secret)
CERT, KEY = "certificate", "key"


class TLSError(Exception):
    """One file of the pair is unusable. `which` is CERT or KEY, `path` that file; the message is one line."""

    def __init__(self, which: str, path: str, reason: str) -> None:
        super().__init__(f"{which} {path}: {reason}")
        self.which = which
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class Pair:
    """A proven pair: the exact bytes that were checked, their hash, and the leaf certificate's validity."""

    cert: bytes
    key: bytes
    digest: bytes
    not_before: datetime.datetime
    not_after: datetime.datetime


def read_bounded(which: str, path: str, *, limit: int = MAX_FILE_SIZE) -> bytes:
    """The content of a regular file of at most `limit` bytes. Never blocks on a FIFO; raises TLSError."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise TLSError(which, path, f"cannot read: {exc.strerror or exc}") from exc
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise TLSError(which, path, "not a regular file")
        if st.st_size > limit:
            raise TLSError(which, path, f"{st.st_size} bytes, larger than the limit of {limit} bytes")
        try:
            data = fh.read(limit + 1)  # the size can change between fstat and read
        except OSError as exc:
            raise TLSError(which, path, f"cannot read: {exc.strerror or exc}") from exc
    if len(data) > limit:
        raise TLSError(which, path, f"larger than the limit of {limit} bytes")
    return data


def prove(cert_file: str, key_file: str, cert: bytes, key: bytes, *, now: datetime.datetime) -> Pair:
    """Check in memory that `cert` (a PEM chain, leaf first) and `key` (an unencrypted PEM key) form a pair that is
    valid at `now`. Raises TLSError naming the file at fault."""
    try:
        leaf = x509.load_pem_x509_certificates(cert)[0]
    except ValueError as exc:
        raise TLSError(CERT, cert_file, f"not a PEM certificate ({exc})") from exc
    try:
        private = serialization.load_pem_private_key(key, password=None)  # None: never ask for a password
    except TypeError as exc:  # cryptography's way of saying "this key is encrypted"
        raise TLSError(
            KEY, key_file, "the key is encrypted (password-protected); the webhook needs an unencrypted PEM key"
        ) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise TLSError(KEY, key_file, f"not a PEM private key ({exc})") from exc
    if public_der(private.public_key()) != public_der(leaf.public_key()):
        raise TLSError(KEY, key_file, f"does not match the certificate in {cert_file}")
    not_before, not_after = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    if now < not_before:
        raise TLSError(CERT, cert_file, f"not valid yet: valid from {not_before.isoformat()} (now {now.isoformat()})")
    if now >= not_after:
        raise TLSError(CERT, cert_file, f"expired at {not_after.isoformat()} (now {now.isoformat()})")
    digest = hashlib.sha256(cert + b"\0" + key).digest()
    return Pair(cert, key, digest, not_before, not_after)


def read_and_prove(cert_file: str, key_file: str, *, now: datetime.datetime, unless_digest: bytes = b"") -> Pair | None:
    """Read both files (bounded) and prove them, or None when their hash is `unless_digest` (unchanged). This is
    the file work of a reload, safe to run in a worker thread."""
    cert, key = read_bounded(CERT, cert_file), read_bounded(KEY, key_file)
    if unless_digest and hashlib.sha256(cert + b"\0" + key).digest() == unless_digest:
        return None
    return prove(cert_file, key_file, cert, key, now=now)


@contextlib.contextmanager
def _memory_file(name: str, data: bytes) -> Iterator[str]:
    """A path that reads `data` from anonymous memory (memfd), closed on exit; it never exists on a filesystem."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def _no_password() -> bytes:
    # OpenSSL calls this instead of prompting on the terminal; `prove` refuses encrypted keys before we get here.
    raise TLSError(KEY, "", "the key is encrypted (password-protected); the webhook needs an unencrypted PEM key")


def load_pair(ctx: ssl.SSLContext, pair: Pair, *, cert_file: str, key_file: str) -> None:
    """Load exactly the proven bytes into `ctx`, after loading them into a throw-away context. Raises TLSError."""
    try:
        with (
            _memory_file("l2guard-tls-cert", pair.cert) as cert_path,
            _memory_file("l2guard-tls-key", pair.key) as key_path,
        ):
            for target in (server_context(), ctx):  # the throw-away first: a failure there harms nothing
                target.load_cert_chain(cert_path, key_path, password=_no_password)
    except TLSError as exc:
        raise TLSError(KEY, key_file, exc.reason) from exc
    except OSError as exc:
        if exc.errno in (errno.ENOSYS, errno.ENOENT):  # no memfd_create, or no /proc mounted
            raise TLSError(CERT, cert_file, f"cannot load the pair from memory: {exc}") from exc
        raise TLSError(CERT, cert_file, f"OpenSSL refused the pair with {key_file}: {exc}") from exc
    except ssl.SSLError as exc:
        raise TLSError(CERT, cert_file, f"OpenSSL refused the pair with {key_file}: {exc}") from exc


def server_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass
class CertReloader:
    """Owns the live SSLContext. `check()` reloads when the content hash changed; `run()` checks forever, with the
    file work in a worker thread. The initial load raises TLSError; later failures are logged and keep the old pair.
    """

    cert_file: str
    key_file: str
    interval: float = 10.0
    on_expiry: Callable[[float], None] | None = None  # seconds until expiry, after each (re)load and check
    on_reload: Callable[[], None] | None = None
    clock: Callable[[], datetime.datetime] = _utcnow
    # Without files (both paths empty) pairs come from `offer()` (self-managed mode: the Secret read from the API);
    # `origin` then names where they come from in messages.
    origin: str = ""

    def __post_init__(self) -> None:
        self.context = server_context()
        self._pair: Pair | None = None
        self._last_failure = ""
        self._expired_logged = False
        self.origin = self.origin or self.cert_file
        if self.cert_file or self.key_file:
            pair = read_and_prove(self.cert_file, self.key_file, now=self.clock())
            assert pair is not None  # no digest to compare against yet
            self._install(pair, initial=True)

    @property
    def from_files(self) -> bool:
        return bool(self.cert_file or self.key_file)

    def offer(self, pair: Pair) -> bool:
        """Serve `pair` (proven by the caller) unless it is the one served; on the event loop's thread, which
        handshakes with the live context. Returns whether it was loaded; a pair OpenSSL refuses is logged and the
        old one stays."""
        if self._pair is not None and self._pair.digest == pair.digest:
            return False
        return self._apply(pair)

    @property
    def loaded(self) -> bool:
        return self._pair is not None

    def problem(self) -> str | None:
        """Why the served pair is not fit to serve (none loaded, or expired), or None."""
        if self._pair is None:
            return "no certificate loaded"
        now = self.clock()
        if now >= self._pair.not_after:
            return f"the served certificate expired at {self._pair.not_after.isoformat()} ({self.origin})"
        return None

    def check(self) -> bool:
        """Reload if the files changed, all on the calling thread. Returns whether a reload happened."""
        return self._apply(self._prepare())

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if not self.from_files:  # pairs are offered; only the expiry is watched here
                self._report_expiry()
                continue
            try:
                prepared = await asyncio.to_thread(self._prepare)  # reading and hashing must not stall the loop
                self._apply(prepared)  # loading the live context stays on the loop thread, which handshakes with it
            except Exception:  # a bug or a surprise from a library must not end certificate rotation for good
                log.exception("certificate check failed", extra={"fields": {"event": "cert-reload-failed"}})

    def _prepare(self) -> Pair | TLSError | None:
        """The new pair if the content changed and proves good, the error if it does not, None if unchanged."""
        try:
            digest = self._pair.digest if self._pair is not None else b""
            return read_and_prove(self.cert_file, self.key_file, now=self.clock(), unless_digest=digest)
        except TLSError as exc:
            return exc

    def _apply(self, prepared: Pair | TLSError | None) -> bool:
        reloaded = False
        if isinstance(prepared, Pair):
            try:
                self._install(prepared, initial=False)
                reloaded = True
            except TLSError as exc:
                prepared = exc
        if isinstance(prepared, TLSError):
            reason = str(prepared)
            if reason != self._last_failure:  # once per distinct failure, not every tick
                log.warning(
                    "certificate not reloaded, the old one stays: %s",
                    reason,
                    extra={"fields": {"event": "cert-reload-failed", "reason": reason}},
                )
            self._last_failure = reason
        elif prepared is None:
            self._last_failure = ""
        self._report_expiry()
        return reloaded

    def _install(self, pair: Pair, *, initial: bool) -> None:
        load_pair(self.context, pair, cert_file=self.cert_file or self.origin, key_file=self.key_file or self.origin)
        self._pair = pair
        self._last_failure = ""
        self._expired_logged = False
        if not initial:
            log.info(
                "certificate reloaded, expires %s",
                pair.not_after.isoformat(),
                extra={"fields": {"event": "cert-reload", "expires": pair.not_after.isoformat()}},
            )
            if self.on_reload:
                self.on_reload()
        self._report_expiry()

    def _report_expiry(self) -> None:
        if self._pair is None:
            return
        remaining = (self._pair.not_after - self.clock()).total_seconds()
        if self.on_expiry:
            self.on_expiry(remaining)
        if remaining <= 0 and not self._expired_logged:
            self._expired_logged = True
            log.warning(
                "the served certificate expired at %s; /readyz fails until a valid pair is mounted",
                self._pair.not_after.isoformat(),
                extra={"fields": {"event": "cert-expired", "reason": "certificate expired", "file": self.origin}},
            )
