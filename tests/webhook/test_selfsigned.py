"""Self-managed certificates (`--self-signed-secret`, issue 10, part 2), seen as the API server sees them: real
webhook processes against the API double, real TLS handshakes with the service's DNS name as SNI, verified with
the CA that the webhook configurations' caBundle holds (what the API server trusts) or that the Secret holds.

Replicas racing for one Secret, a Secret another replica created first (409 AlreadyExists: read, not fail), an
invalid or expired Secret replaced by an update that carries its resourceVersion, a rotation that no handshake
notices (the new CA reaches every caBundle before the serving pair changes, the old CA leaves later), a caBundle
reset by an apply and re-injected, and /readyz while a caBundle is missing or mismatched."""

from __future__ import annotations

import argparse
import base64
import copy
import datetime
import itertools
import json
import re
import socket
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.kube.test_client import kubeconfig
from webhook.cli import service_account_namespace
from webhook.settings import SettingsError, WebhookSettings, add_arguments, from_args

from .apidouble import API, APIDouble
from .certcluster import (
    MUTATING,
    SECRET,
    SECRETS,
    VALIDATING,
    bundles,
    cluster_double,
    mutating,
    stored_secret,
    validating,
)
from .webhook_process import WebhookProcess, free_ports

SNI = "l2guard-webhook.l2guard-system.svc"
NAMES = [
    "l2guard-webhook",
    "l2guard-webhook.l2guard-system",
    "l2guard-webhook.l2guard-system.svc",
    "l2guard-webhook.l2guard-system.svc.cluster.local",
]
BOUND = 30.0  # seconds: generous bounds that only catch a hang


# ----- test-made certificates (never made by the code under test) ----------------------------------------------


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _secret_data(*, not_after: datetime.timedelta, names: list[str] = NAMES) -> dict[str, bytes]:
    """A CA and a serving pair for `names`, valid from an hour ago until `not_after` from now (negative: expired)."""
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(hours=1), now + not_after
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "another replica's CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return {
        "tls.crt": leaf.public_bytes(serialization.Encoding.PEM),
        "tls.key": _pem_key(key),
        "ca.crt": ca.public_bytes(serialization.Encoding.PEM),
        "ca.key": _pem_key(ca_key),
    }


def _secret(data: dict[str, bytes]) -> dict[str, Any]:
    """The captured Secret create (`secret-create.json`) with this data."""
    secret = json.loads((API / "secret-create.json").read_text())
    for key in ("uid", "resourceVersion", "creationTimestamp", "managedFields"):
        secret["metadata"].pop(key)
    secret["data"] = {k: base64.b64encode(v).decode() for k, v in data.items()}
    return dict(secret)


def _start(double: APIDouble, tmp_path: Path, *extra: str) -> WebhookProcess:
    config = kubeconfig(tmp_path, double.url)
    return WebhookProcess([f"--kubeconfig={config}", "--self-signed-secret=l2guard-webhook-tls", *extra])


def _start_all(double: APIDouble, tmp_path: Path, count: int, *extra: str) -> list[WebhookProcess]:
    """`count` replicas started at the same moment (each constructor waits for its /healthz)."""
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: _start(double, tmp_path, *extra), range(count)))


def _handshake(port: int, cadata: bytes) -> x509.Certificate:
    """A TLS handshake as the API server makes it: SNI = the service's DNS name, verified with `cadata` only."""
    ctx = ssl.create_default_context(cadata=cadata.decode())
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=SNI) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _wait(predicate: Callable[[], object], what: str, timeout: float = BOUND) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _ready(proc: WebhookProcess) -> bool:
    return proc.health.get("/readyz").status_code == 200


def _stop_all(procs: list[WebhookProcess]) -> None:
    for proc in procs:
        assert proc.stop() == 0, proc.lines


# ----- the tests -------------------------------------------------------------------------------------------------


def test_two_replicas_started_at_once_make_one_secret_and_serve_its_ca(tmp_path: Path) -> None:
    with cluster_double() as double:
        procs = _start_all(double, tmp_path, 2)
        try:
            for proc in procs:
                _wait(lambda p=proc: _ready(p), "both replicas ready")  # type: ignore[misc]
            data = stored_secret(double)
            served = [_handshake(p.port, data["ca.crt"]) for p in procs]
        finally:
            _stop_all(procs)
    creates = [status for method, path, status in double.requests if method == "POST" and path == SECRETS]
    assert creates.count(201) == 1, double.requests  # one Secret; any other create was a 409, then a read
    assert set(creates) <= {201, 409}
    ca = x509.load_pem_x509_certificate(data["ca.crt"])
    for cert in served:
        assert cert.issuer == ca.subject
        cert.verify_directly_issued_by(ca)
        assert cert.public_bytes(serialization.Encoding.PEM) == data["tls.crt"]  # the Secret's pair, both replicas
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sorted(names.get_values_for_type(x509.DNSName)) == sorted(NAMES)
    # Every webhook of both configurations trusts exactly the Secret's CA bundle.
    assert bundles(double, MUTATING) == [data["ca.crt"]]
    assert bundles(double, VALIDATING) == [data["ca.crt"], data["ca.crt"]]


def test_a_secret_another_replica_created_first_is_read_and_served(tmp_path: Path) -> None:
    """Between this replica's read (404) and its create, another replica creates the Secret: the 409 means read
    it, and serve what it holds."""
    theirs = _secret_data(not_after=datetime.timedelta(days=30))
    with cluster_double() as double:
        double.before[("POST", SECRETS)] = lambda: double.store.put(_secret(theirs))
        proc = _start(double, tmp_path)
        try:
            _wait(lambda: _ready(proc), "ready")
            served = _handshake(proc.port, theirs["ca.crt"])
        finally:
            _stop_all([proc])
    assert served.public_bytes(serialization.Encoding.PEM) == theirs["tls.crt"]
    writes = [(m, s) for m, path, s in double.requests if path in (SECRETS, SECRET) and m != "GET"]
    assert writes == [("POST", 409)], double.requests  # and never a write over theirs
    assert stored_secret(double) == theirs


def test_an_unusable_secret_is_replaced_by_an_update_of_its_version(tmp_path: Path) -> None:
    """An invalid Secret found at the start, then an expired one written while the webhook runs: each is replaced
    by an update carrying the resourceVersion read (in place: same uid, never deleted), and the new pair served."""
    invalid = {"tls.crt": b"not a certificate", "tls.key": b"", "ca.crt": b"", "ca.key": b""}
    expired = _secret_data(not_after=datetime.timedelta(minutes=-1))  # expired a minute ago
    with cluster_double() as double:
        before = double.store.put(_secret(invalid))
        proc = _start(double, tmp_path)
        try:
            _wait(lambda: _ready(proc), "ready")
            first = stored_secret(double)
            served_first = _handshake(proc.port, first["ca.crt"])
            double.store.put(_secret(expired))
            _wait(lambda: stored_secret(double) != expired and _ready(proc), "the expired Secret replaced")
            second = stored_secret(double)
            served_second = _handshake(proc.port, second["ca.crt"])
        finally:
            _stop_all([proc])
        after = double.store.objects[SECRET]
    assert first != invalid and second != expired
    assert served_first.public_bytes(serialization.Encoding.PEM) == first["tls.crt"]
    assert served_second.public_bytes(serialization.Encoding.PEM) == second["tls.crt"]
    assert after["metadata"]["uid"] == before["metadata"]["uid"]  # updated in place, not deleted and created
    writes = [(m, s) for m, path, s in double.requests if path in (SECRETS, SECRET) and m != "GET"]
    assert writes == [("PUT", 200), ("PUT", 200)], double.requests


def test_a_rotation_breaks_no_handshake_and_replicas_converge(tmp_path: Path) -> None:
    """Two replicas with a 12-second lifetime: the CA rotates after about 8 s. Handshakes run all the while, each
    verified with the caBundle the validating configuration holds at that moment (what the API server trusts)."""
    lifetime = 12 / 86400
    with cluster_double() as double:
        procs = _start_all(double, tmp_path, 2, f"--self-signed-days={lifetime}")
        try:
            for proc in procs:
                _wait(lambda p=proc: _ready(p), "both replicas ready")  # type: ignore[misc]
            first_ca = x509.load_pem_x509_certificate(stored_secret(double)["ca.crt"])
            by_first: list[list[bool]] = [[], []]  # per replica: was each served certificate signed by the first CA
            bundles_seen: list[int] = []
            retried = 0
            overlap: set[str] = set()  # which pairs handshakes met while the caBundle held both CAs
            deadline = time.monotonic() + 45
            i = 0
            while True:
                bundle = bundles(double, VALIDATING)[0]
                assert bundle is not None
                cas = x509.load_pem_x509_certificates(bundle)
                if not bundles_seen or bundles_seen[-1] != len(cas):
                    bundles_seen.append(len(cas))
                try:
                    cert = _handshake(procs[i % 2].port, bundle)
                except ssl.SSLCertVerificationError:
                    # The bundle changed between our read and the handshake: the API server would have used the
                    # new one by then. Anything else than one retry with the new bundle is a broken handshake.
                    newer = bundles(double, VALIDATING)[0]
                    assert newer is not None and newer != bundle, "a handshake failed with the current caBundle"
                    retried += 1
                    cert = _handshake(procs[i % 2].port, newer)
                by_first[i % 2].append(_signed_by(cert, first_ca))
                if len(cas) == 2:  # the overlap: the caBundle holds the new and the old CA
                    overlap.add("old pair" if by_first[i % 2][-1] else "new pair")
                i += 1
                rotated = all(seq and not seq[-1] for seq in by_first)
                if rotated and bundles_seen[-1] == 1 and len(bundles_seen) >= 3:
                    break
                assert time.monotonic() < deadline, (bundles_seen, procs[0].lines)
                time.sleep(0.02)
            final = stored_secret(double)
            for proc in procs:
                assert _ready(proc)
                assert (
                    _handshake(proc.port, final["ca.crt"]).public_bytes(serialization.Encoding.PEM) == final["tls.crt"]
                )
        finally:
            _stop_all(procs)
        changes = list(double.store.changes)
        steps = [(d["time"], d["msg"]) for p in procs for d in p.logs() if d.get("event") == "cert-rotation"]
    assert bundles_seen[:3] == [1, 2, 1], bundles_seen  # [A], then [B, A] in the overlap, then [B]
    assert retried <= 2, retried
    # Mid-rotation the new pair was served and verified with the two-CA bundle (the old pair may have been
    # switched away before a handshake met it: the switch follows the injection within a tick).
    assert "new pair" in overlap, overlap
    new_ca = x509.load_pem_x509_certificate(final["ca.crt"])
    assert new_ca.public_key() != first_ca.public_key()

    def holds_new_ca(obj: dict[str, Any]) -> bool:
        return all(
            new_ca in x509.load_pem_x509_certificates(base64.b64decode(h["clientConfig"].get("caBundle") or "") or b"")
            for h in obj["webhooks"]
            if h["clientConfig"].get("caBundle")
        ) and all(h["clientConfig"].get("caBundle") for h in obj["webhooks"])

    def signed_by_new_ca(obj: dict[str, Any]) -> bool:
        return _signed_by(x509.load_pem_x509_certificate(base64.b64decode(obj["data"]["tls.crt"])), new_ca)

    # The order that keeps handshakes working: every caBundle holds the new CA before the pair signed by it is
    # written to the Secret.
    switched = next(rev for rev, path, _, obj in changes if path == SECRET and signed_by_new_ca(obj))
    for config in (MUTATING, VALIDATING):
        trusted = next(rev for rev, path, _, obj in changes if path == config and holds_new_ca(obj))
        assert trusted < switched, (config, trusted, switched)

    # Converged, never fought: every write of the Secret, whichever replica made it, is the next step of the cycle
    # (steady -> new CA published -> pair switched -> old CA dropped = steady), never a repeat or a second create.
    # The first four are the start and one whole rotation; a slow run may see the next rotation begin.
    def state(obj: dict[str, Any]) -> tuple[int, bool]:
        cas = x509.load_pem_x509_certificates(base64.b64decode(obj["data"]["ca.crt"]))
        leaf = x509.load_pem_x509_certificate(base64.b64decode(obj["data"]["tls.crt"]))
        return len(cas), _signed_by(leaf, cas[0])

    states = [state(obj) for _, path, _, obj in changes if path == SECRET]
    cycle = [(1, True), (2, False), (2, True)]
    assert [kind for _, path, kind, _ in changes if path == SECRET].count("ADDED") == 1
    assert states[:4] == [*cycle, (1, True)], sorted(steps)
    assert all(b == cycle[(cycle.index(a) + 1) % 3] for a, b in itertools.pairwise(states)), sorted(steps)


def test_a_reset_cabundle_is_reinjected_and_readyz_says_when_it_is_wrong(tmp_path: Path) -> None:
    with cluster_double() as double:
        proc = _start(double, tmp_path)
        try:
            _wait(lambda: _ready(proc), "ready")
            ca = stored_secret(double)["ca.crt"]
            # `kubectl apply` (or a GitOps sync) of the shipped configuration, which has no caBundle: re-injected.
            double.store.put(validating())
            _wait(lambda: bundles(double, VALIDATING) == [ca, ca], "the caBundle re-injected")
            _wait(lambda: _ready(proc), "ready once the webhook has seen its own patch")
            # Without the right to patch (RBAC), a reset stays: /readyz says which webhook, and why.
            double.refuse[("PATCH", MUTATING)] = 403
            foreign = mutating()
            other_ca = _secret_data(not_after=datetime.timedelta(days=1))["ca.crt"]
            foreign["webhooks"][0]["clientConfig"]["caBundle"] = base64.b64encode(other_ca).decode()
            double.store.put(foreign)
            _wait(lambda: proc.health.get("/readyz").status_code == 503, "not ready")
            mismatched = proc.health.get("/readyz").json()
            double.store.put(validating())
            _wait(lambda: "no caBundle" in proc.health.get("/readyz").text, "the missing caBundle reported")
            missing = proc.health.get("/readyz").json()
            # The right comes back: both are injected again, and the webhook is ready.
            del double.refuse[("PATCH", MUTATING)]
            _wait(lambda: _ready(proc), "ready again")
            assert bundles(double, MUTATING) == [ca] and bundles(double, VALIDATING) == [ca, ca]
            warning = proc.wait_for_log(
                lambda d: d.get("level") == "warning" and "MutatingWebhookConfiguration" in d["msg"]
            )
        finally:
            _stop_all([proc])
    assert mismatched["ready"] is False, mismatched
    assert (
        "MutatingWebhookConfiguration l2guard webhook nodes.l2guard.io: the caBundle does not match the served "
        "certificate's CA" in mismatched["reason"]
    ), mismatched
    assert "ValidatingWebhookConfiguration l2guard webhook ipaddresspools.l2guard.io: no caBundle" in missing["reason"]
    assert "HTTP 403" in warning["msg"], warning


def test_with_the_api_down_the_webhook_answers_healthz_and_says_why_it_is_not_ready(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_ports(1)[0]}"  # nothing listens there
    proc = WebhookProcess([f"--kubeconfig={kubeconfig(tmp_path, url)}", "--self-signed-secret=l2guard-webhook-tls"])
    try:
        ready = proc.health.get("/readyz")
        assert ready.status_code == 503
        body = ready.json()
        assert body["tls_loaded"] is False, body
        assert "Secret l2guard-system/l2guard-webhook-tls has not been read yet" in body["reason"], body
    finally:
        assert proc.stop() == 0, proc.lines


def _parse(argv: list[str], environ: dict[str, str]) -> WebhookSettings:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return from_args(parser.parse_args(argv), environ)


def test_self_signed_settings_have_twins_defaults_and_bounds() -> None:
    s = _parse([], {"L2GUARD_SELF_SIGNED_SECRET": "l2guard-webhook-tls", "L2GUARD_SELF_SIGNED_DAYS": "0.5"})
    assert (s.self_signed_secret, s.self_signed_days, s.self_signed_key_type) == ("l2guard-webhook-tls", 0.5, "ecdsa")
    assert (s.service_name, s.webhook_namespace, s.namespace) == ("l2guard-webhook", "", "l2guard-system")
    assert (s.mutating_webhook_configuration, s.validating_webhook_configuration) == ("l2guard", "l2guard")
    s = _parse(
        ["--self-signed-secret=t", "--mutating-webhook-configuration=", "--webhook-namespace=hooks"],
        {"L2GUARD_VALIDATING_WEBHOOK_CONFIGURATION": "v", "L2GUARD_NAMESPACE": "speakers"},
    )
    assert (s.mutating_webhook_configuration, s.validating_webhook_configuration) == ("", "v")
    assert (s.webhook_namespace, s.namespace) == ("hooks", "speakers")
    for argv, message in [
        (["--self-signed-secret=t", "--cert-file=c", "--key-file=k"], "either --self-signed-secret or --cert-file"),
        (["--self-signed-secret=t", "--cluster-state=x.yaml"], "cannot run with --cluster-state"),
        (["--self-signed-secret=t", "--self-signed-days=0.0001"], "--self-signed-days must be between"),
        (["--self-signed-secret=t", "--self-signed-days=4000"], "--self-signed-days must be between"),
        (["--self-signed-secret=Not_A_Name"], "--self-signed-secret: 'Not_A_Name' is not a Kubernetes name"),
        (["--self-signed-secret=t", "--service-name="], "--service-name: '' is not a Kubernetes name"),
        (["--self-signed-secret=t", "--webhook-namespace=a.b"], "--webhook-namespace: 'a.b' is not"),
        (["--self-signed-secret=t", "--self-signed-key-type=dsa"], "--self-signed-key-type must be ecdsa or rsa"),
        (["--self-signed-secret=t", "--namespace=Speakers"], "--namespace: 'Speakers' is not"),
        ([], "--cert-file and --key-file are required, or --self-signed-secret NAME"),
    ]:
        with pytest.raises(SettingsError, match=re.escape(message)):
            _parse(argv, {})


def test_the_secrets_namespace_defaults_to_the_service_accounts(tmp_path: Path) -> None:
    mounted = tmp_path / "namespace"
    mounted.write_text("hooks\n")
    assert service_account_namespace(str(mounted)) == "hooks"
    assert service_account_namespace(str(tmp_path / "absent")) == ""


def _in_process(double: APIDouble, tmp_path: Path, now: list[datetime.datetime]) -> tuple[Any, Callable[[], None]]:
    """A SelfSigned manager in this process on the clock `now[0]`, and one reconcile of it after handing it the
    three objects as stored (what its source would hand over)."""
    from l2guard import pki
    from l2guard.kube import webhookcerts as wc
    from l2guard.kube.client import make_api_client
    from webhook.selfsigned import SelfSigned

    manager = SelfSigned(
        make_api_client(str(kubeconfig(tmp_path, double.url))),
        namespace="l2guard-system",
        secret="l2guard-webhook-tls",
        policy=pki.Policy(names=tuple(NAMES), lifetime=datetime.timedelta(days=90)),
        configurations={wc.MUTATING: "l2guard", wc.VALIDATING: "l2guard"},
        clock=lambda: now[0],
    )

    def reconcile() -> None:
        with double.store.lock:
            stored = {p: copy.deepcopy(o) for p, o in double.store.objects.items()}
        for kind, where in ((wc.SECRET, SECRET), (wc.MUTATING, MUTATING), (wc.VALIDATING, VALIDATING)):
            manager.replace_kind(kind, [stored[where]] if where in stored else [])
        manager.reconcile()

    return manager, reconcile


def test_the_pair_switches_only_after_the_new_cabundle_had_time_to_reach_every_api_server(tmp_path: Path) -> None:
    """The API server serving the caBundle patch answers at once; the others (and that one's webhook client) learn
    of it from their watch a moment later. A pair signed by the new CA served in that moment fails their
    handshakes, so the switch waits a settling time after the new CA is seen in every caBundle, on the manager's
    clock: a hundredth of the lifetime, at most 10 s."""
    t0 = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)
    now = [t0]
    with cluster_double() as double:
        _, reconcile = _in_process(double, tmp_path, now)

        def leaf_signed_by_first() -> bool:
            return _signed_by(x509.load_pem_x509_certificate(stored_secret(double)["tls.crt"]), first)

        reconcile()  # create, inject
        first = x509.load_pem_x509_certificate(stored_secret(double)["ca.crt"])
        now[0] = t0 + datetime.timedelta(days=61)
        reconcile()  # publish the new CA, inject [new, old]
        assert len(x509.load_pem_x509_certificates(stored_secret(double)["ca.crt"])) == 2
        assert all(len(x509.load_pem_x509_certificates(b or b"")) == 2 for b in bundles(double, VALIDATING))
        reconcile()  # the same second: every caBundle holds it, but not yet everywhere
        assert leaf_signed_by_first()
        now[0] += datetime.timedelta(seconds=9)
        reconcile()
        assert leaf_signed_by_first()
        now[0] += datetime.timedelta(seconds=1)
        reconcile()  # 10 s after the new CA was seen in every caBundle
        assert not leaf_signed_by_first()


def test_a_cabundle_reset_again_at_once_is_patched_at_most_once_a_second(tmp_path: Path) -> None:
    """Something that resets the caBundle as soon as it is set (cert-manager's cainjector left on, a second install
    managing the same cluster-scoped configurations) must not turn the re-injection into a loop as fast as the API
    server answers: each watch event reconciles at once, but a configuration is patched at most once a second
    (on the manager's clock), and the Secret is not read again for nothing either."""
    now = [datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)]
    with cluster_double() as double:
        _, reconcile = _in_process(double, tmp_path, now)
        reconcile()  # create, inject
        assert all(bundles(double, VALIDATING))

        def reset() -> None:
            with double.store.lock:
                obj = copy.deepcopy(double.store.objects[VALIDATING])
            for hook in obj["webhooks"]:
                hook["clientConfig"].pop("caBundle", None)
            double.store.put(obj)

        def patches() -> int:
            return sum(1 for m, p, _ in double.requests if m == "PATCH" and p == VALIDATING)

        now[0] += datetime.timedelta(seconds=1)
        before = patches()
        for _ in range(5):  # reset at once, five times within the same second: one patch
            reset()
            reconcile()
        assert patches() == before + 1
        assert not any(bundles(double, VALIDATING))  # the last reset stands for now
        now[0] += datetime.timedelta(seconds=1)
        reconcile()
        assert patches() == before + 2 and all(bundles(double, VALIDATING))
