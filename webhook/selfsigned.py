"""Self-managed certificates (`--self-signed-secret NAME`): the webhook keeps its own CA and serving pair in a
kubernetes.io/tls Secret (tls.crt, tls.key, ca.crt: the CA bundle, ca.key) and keeps the caBundle of its own
webhook configurations equal to that bundle.

`SelfSigned` is the sink of a `KubeSource` that follows exactly three objects by name: the Secret and the two
configurations (`l2guard.kube.webhookcerts.named_resources`). On every change, and at least every second, the one
applier thread reconciles:
1. the Secret: `l2guard.pki.decide` says what it should hold (create it, or rotate it one step); the write is a
   create (409 AlreadyExists: another replica was first, read its Secret) or an update carrying the
   resourceVersion read (409: someone else wrote it, read it again). Decisions depend only on the Secret in the
   API, so replicas converge on one Secret and never fight: the loser of a race re-reads and finds nothing to do;
2. the serving pair: the Secret's tls.crt/tls.key, proven in memory (`webhook.tls.prove`), handed to the event
   loop's `CertReloader.offer` (no file, no volume: the root filesystem stays read-only);
3. the caBundles: a configuration whose webhooks do not all hold ca.crt (an apply or a GitOps sync reset it) is
   patched, after reading the Secret again, so a replica with a stale copy never puts an old bundle back; at most
   once a second per configuration (`INJECT_INTERVAL`), so that something resetting it at once costs no loop.
The caBundles count as holding the new CA (`decide`'s `injected`, which lets the pair switch) only once they
have for a settling time (`MAX_SETTLE`), so that every API server has learnt of it before a handshake needs it.

`problem()` says why the webhook is not ready (for /readyz): no Secret read yet, a configuration missing, or a
webhook whose caBundle is missing or does not trust the served certificate.

It must not parse settings or build the API client (the CLI does), and knows the Kubernetes client only through
`l2guard.kube`.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from l2guard import pki
from l2guard.kube import webhookcerts as wc
from l2guard.kube.errors import Conflict, Invalid, KubeError, NotFound
from webhook.tls import CertReloader, Pair, TLSError, prove

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 5.0  # seconds for each API call
MAX_BACKOFF = 30.0  # seconds between reconciles while the API fails
LABELS = {"app.kubernetes.io/name": "l2guard", "app.kubernetes.io/component": "webhook"}
# How long every caBundle must have held the Secret's CA bundle before the pair may switch to the new CA: the API
# server that took the patch answers at once, the others (and each one's webhook client) learn of it from their
# watch a moment later. A hundredth of the lifetime, at most this (the overlap lasts a sixth of it).
MAX_SETTLE = datetime.timedelta(seconds=10)
# A configuration's caBundle is patched at most once per this: something that resets it at once (cainjector left
# on, a second install managing the same cluster-scoped configurations) costs a patch a second, not a loop.
INJECT_INTERVAL = datetime.timedelta(seconds=1)


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _name(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata")
    return str(meta.get("name", "")) if isinstance(meta, Mapping) else ""


def _rv(obj: Mapping[str, Any] | None) -> str:
    meta = obj.get("metadata") if obj is not None else None
    return str(meta.get("resourceVersion", "")) if isinstance(meta, Mapping) else ""


class SelfSigned:
    def __init__(
        self,
        api: Any,
        *,
        namespace: str,
        secret: str,
        policy: pki.Policy,
        configurations: Mapping[str, str],  # kind (wc.MUTATING, wc.VALIDATING) -> name; an empty name: not managed
        clock: Callable[[], datetime.datetime] = _utcnow,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.secret_name = secret
        self.policy = policy
        self.configurations = {k: v for k, v in configurations.items() if v}
        self.clock = clock
        self.origin = f"Secret {namespace}/{secret}"
        # Applier-thread state: the objects as last seen (None: absent), and which kinds were listed.
        self._secret: dict[str, Any] | None = None
        self._objects: dict[str, dict[str, Any] | None] = {}
        self._listed: set[str] = set()
        self._offered = b""
        self._settle = min(MAX_SETTLE, policy.lifetime / 100)
        self._injected_at: tuple[bytes, datetime.datetime] | None = None  # the bundle every caBundle held, since
        self._patched_at: dict[str, datetime.datetime] = {}  # kind -> when its caBundle was last patched
        self._last_failure = ""  # logged once, not on every retry with the same reason
        self._backoff = 0.0  # seconds; after a failed reconcile
        self._retry_at = 0.0  # time.monotonic() before which no reconcile is tried
        # Shared with the event loop and /readyz.
        self._lock = threading.Lock()
        self._problem: str | None = f"the {self.origin} has not been read yet"
        self._served: Pair | None = None
        self._reloader: CertReloader | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ----- what the server and /readyz call ------------------------------------------------------------------

    def problem(self) -> str | None:
        with self._lock:
            return self._problem

    async def serve(self, reloader: CertReloader) -> None:
        """Hand every new serving pair to `reloader` on this event loop, until cancelled."""
        with self._lock:
            self._reloader, self._loop = reloader, asyncio.get_running_loop()
            pending = self._served
        if pending is not None:
            reloader.offer(pending)
        await asyncio.Event().wait()

    # ----- the Sink -------------------------------------------------------------------------------------------

    def replace_kind(self, kind: str, items: Sequence[Mapping[str, Any]]) -> None:
        wanted = self.secret_name if kind == wc.SECRET else self.configurations.get(kind, "")
        found = next((dict(i) for i in items if _name(i) == wanted), None)
        self._store(kind, found)
        self._listed.add(kind)

    def apply(self, events: Sequence[tuple[str, str, Mapping[str, Any]]]) -> None:
        for kind, event_type, obj in events:
            wanted = self.secret_name if kind == wc.SECRET else self.configurations.get(kind, "")
            if _name(obj) == wanted:
                self._store(kind, None if event_type == "DELETED" else dict(obj))
                self._retry_at = 0.0  # something changed: try now, even while backing off

    def tick(self) -> float | None:
        now = time.monotonic()
        if now < self._retry_at:
            return self._retry_at - now
        try:
            self.reconcile()
        except KubeError as exc:
            # Back off (1 s doubling to 30 s) so that a missing permission or a down API server costs a request
            # now and then, not one a second; a change seen by the watch is tried at once.
            self._backoff = min(MAX_BACKOFF, max(1.0, self._backoff * 2))
            self._retry_at = now + self._backoff
            reason = f"certificate management: {exc.reason}"
            if reason != self._last_failure:
                log.warning(
                    "%s (retrying in %g s)",
                    reason,
                    self._backoff,
                    extra={"fields": {"event": "cert-manage-failed", "reason": reason}},
                )
            self._last_failure = reason
            return self._backoff
        self._backoff = 0.0
        self._last_failure = ""
        return 1.0

    # ----- reconciling ----------------------------------------------------------------------------------------

    def _store(self, kind: str, obj: dict[str, Any] | None) -> None:
        current = self._secret if kind == wc.SECRET else self._objects.get(kind)
        new_rv, old_rv = _rv(obj), _rv(current)
        if obj is not None and new_rv.isdigit() and old_rv.isdigit() and int(new_rv) < int(old_rv):
            # The watch's event for a version older than our own write's answer, which arrived first: keep the
            # newer one (resourceVersions are etcd revisions; a stale copy would only cost a 409 and a re-read).
            return
        if kind == wc.SECRET:
            self._secret = obj
        else:
            self._objects[kind] = obj

    def _injected(self, bundle: bytes) -> bool:
        """Every managed configuration was read and each of its webhooks holds `bundle`."""
        return all(kind in self._listed and self._injected_one(kind, bundle) for kind in self.configurations)

    def reconcile(self) -> None:
        if wc.SECRET not in self._listed:
            return
        data = wc.secret_data(self._secret) if self._secret is not None else None
        now = self.clock()
        bundle = data.get(pki.CA_CRT, b"") if data is not None else b""
        if not self._injected(bundle):
            self._injected_at = None
        elif self._injected_at is None or self._injected_at[0] != bundle:
            self._injected_at = (bundle, now)
        settled = self._injected_at is not None and now - self._injected_at[1] >= self._settle
        step = pki.decide(data, self.policy, now=now, injected=settled)
        if step.data is not None and not self._write(step):
            self._publish()
            return  # a conflict: the Secret was read again; decide again on the next tick
        self._publish()
        self._inject()
        self._publish()

    def _write(self, step: pki.Step) -> bool:
        assert step.data is not None
        try:
            if self._secret is None:
                written = wc.create_secret(
                    self.api, self.namespace, self.secret_name, step.data, labels=LABELS, timeout=REQUEST_TIMEOUT
                )
            else:
                written = wc.update_secret(self.api, self._secret, step.data, timeout=REQUEST_TIMEOUT)
        except Conflict:
            # Another replica created or changed it since we read it: take what is in the API now.
            log.info(
                "the %s changed under us; reading it again",
                self.origin,
                extra={"fields": {"event": "cert-secret-conflict", "reason": step.action}},
            )
            self._reread_secret()
            return False
        self._store(wc.SECRET, written)
        log.info(
            "%s: %s (%s)",
            self.origin,
            step.action,
            step.reason,
            extra={"fields": {"event": "cert-rotation", "reason": step.reason, "step": step.action}},
        )
        return True

    def _reread_secret(self) -> None:
        try:
            self._store(wc.SECRET, wc.read_secret(self.api, self.namespace, self.secret_name, timeout=REQUEST_TIMEOUT))
        except NotFound:
            self._secret = None

    def _inject(self) -> None:
        if self._secret is None:
            return
        bundle = wc.secret_data(self._secret).get(pki.CA_CRT, b"")
        now = self.clock()
        stale = [
            k
            for k in self.configurations
            if self._objects.get(k) is not None
            and not self._injected_one(k, bundle)
            and not datetime.timedelta(0) <= now - self._patched_at.get(k, now - INJECT_INTERVAL) < INJECT_INTERVAL
        ]
        if not stale or not bundle:
            return
        # Read the Secret again first: a replica whose copy is behind must not put an old bundle back.
        before = _rv(self._secret)
        self._reread_secret()
        if self._secret is None or _rv(self._secret) != before:
            return  # decide again on the next tick, with the Secret as it is now
        failed: KubeError | None = None
        for kind in stale:
            obj = self._objects[kind]
            assert obj is not None
            name = self.configurations[kind]
            self._patched_at[kind] = now  # tried: refused (it changed meanwhile) or not, the next try waits
            try:
                patched = wc.inject_ca_bundle(self.api, obj, bundle, timeout=REQUEST_TIMEOUT)
            except (Invalid, Conflict):
                try:  # it changed since we read it: read it again, patch on the next tick
                    self._store(kind, wc.read_configuration(self.api, kind, name, timeout=REQUEST_TIMEOUT))
                except NotFound:
                    self._store(kind, None)
                continue
            except KubeError as exc:
                failed = failed or KubeError(f"cannot set the caBundle of {kind} {name}: {exc.reason}")
                continue
            if patched is not None:
                self._store(kind, patched)
                log.info(
                    "set the caBundle of %s %s",
                    kind,
                    name,
                    extra={"fields": {"event": "ca-bundle-injected", "kind": kind, "name": name}},
                )
        if failed is not None:
            raise failed

    def _injected_one(self, kind: str, bundle: bytes) -> bool:
        obj = self._objects.get(kind)
        return obj is not None and all(ca == bundle for _, ca in wc.ca_bundles(obj))

    def _publish(self) -> None:
        """Offer the Secret's pair to the server and work out the readiness problem."""
        problem: str | None = None
        pair: Pair | None = None
        if self._secret is None:
            problem = f"the {self.origin} does not exist yet"
        else:
            data = wc.secret_data(self._secret)
            cert, key = data.get(pki.TLS_CRT, b""), data.get(pki.TLS_KEY, b"")
            try:
                pair = prove(self.origin + " tls.crt", self.origin + " tls.key", cert, key, now=self.clock())
            except TLSError as exc:
                problem = f"the serving pair in the {self.origin} is unusable: {exc.reason}"
        if pair is not None:
            problem = self._bundle_problem(pair)
            if pair.cert != self._offered:
                self._offered = pair.cert
                with self._lock:
                    self._served = pair
                    loop, reloader = self._loop, self._reloader
                if loop is not None and reloader is not None:
                    loop.call_soon_threadsafe(reloader.offer, pair)
        with self._lock:
            self._problem = problem

    def _bundle_problem(self, pair: Pair) -> str | None:
        leaf = pki.load_bundle(pair.cert)[0]
        problems = []
        for kind, name in self.configurations.items():
            obj = self._objects.get(kind)
            if kind not in self._listed:
                problems.append(f"{kind} {name} has not been read yet")
                continue
            if obj is None:
                problems.append(f"{kind} {name} not found")
                continue
            for hook, ca in wc.ca_bundles(obj):
                if ca is None:
                    problems.append(f"{kind} {name} webhook {hook}: no caBundle")
                    continue
                try:
                    trusted = pki.trusts(pki.load_bundle(ca), leaf)
                except pki.PKIError:
                    trusted = False
                if not trusted:
                    problems.append(
                        f"{kind} {name} webhook {hook}: the caBundle does not match the served certificate's CA"
                    )
        return "; ".join(problems) if problems else None
