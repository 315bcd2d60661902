"""Certificates for the admission webhook, built on `cryptography`: a CA and a serving certificate for a Service's
DNS names (what `l2guard certs generate` writes), and the rotation rule of self-managed mode (`decide`), which the
webhook applies to the Secret it keeps in the API.

The rotation keeps every handshake working (the API server trusts exactly the webhook configurations' caBundle):

    steady       ca.crt = [A], the serving pair signed by A
    published    ca.crt = [B, A], ca.key = B's key, the pair still signed by A   (B reaches the caBundles first)
    switched     ca.crt = [B, A], the pair signed by B                             (once every caBundle holds B)
    steady       ca.crt = [B]                                                      (A dropped, later)

A CA enters rotation when less than a third of its lifetime remains; the old CA is dropped halfway through that
last third, before it expires, which leaves replicas that still serve the old pair the rest of that time to load
the new one. Every step is a pure function of the Secret's content, the clock reading passed in and whether the
caBundles are up to date, so replicas that read the same Secret decide the same (and the API's resourceVersion
picks one writer).

It must not read the clock, the environment or files, log, or talk to the API: callers pass `now` and do the I/O.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KeyType = Literal["ecdsa", "rsa"]
KEY_TYPES: tuple[KeyType, ...] = ("ecdsa", "rsa")
RSA_BITS = 2048
MAX_BACKDATE = datetime.timedelta(minutes=5)  # tolerate a little clock skew between the nodes and the API server
CLUSTER_DOMAIN = "cluster.local"
# The keys of the Secret (a kubernetes.io/tls Secret's tls.crt and tls.key, plus the CA bundle and the CA's key).
TLS_CRT, TLS_KEY, CA_CRT, CA_KEY = "tls.crt", "tls.key", "ca.crt", "ca.key"
SECRET_KEYS = (TLS_CRT, TLS_KEY, CA_CRT, CA_KEY)

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


class PKIError(Exception):
    """Unusable input (a name, an address, a PEM file); the message is one line."""


def service_names(service: str, namespace: str) -> list[str]:
    """The DNS names the API server may use for a webhook Service (it dials `svc.ns.svc`)."""
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.{CLUSTER_DOMAIN}",
    ]


def _check_dns(name: str) -> str:
    # RFC 1123 host names as Kubernetes checks them (labels of [a-z0-9-], at most 253 characters); a leading "*."
    # wildcard is allowed for --dns.
    labels = name.removeprefix("*.").split(".")
    ok = 0 < len(name) <= 253 and all(
        0 < len(lb) <= 63 and lb[0].isalnum() and lb[-1].isalnum() and all(c.isalnum() or c == "-" for c in lb)
        for lb in labels
    )
    if not ok or not name.isascii() or name != name.lower():
        shown = name if len(name) <= 60 else name[:60] + "..."
        raise PKIError(f"{shown!r} is not a DNS name (lower-case RFC 1123 labels, at most 253 characters)")
    return name


def check_names(names: Sequence[str]) -> list[str]:
    return [_check_dns(n) for n in names]


def check_ips(ips: Sequence[str]) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    out = []
    for text in ips:
        try:
            out.append(ipaddress.ip_address(text))
        except ValueError:
            shown = text if len(text) <= 60 else text[:60] + "..."
            raise PKIError(f"{shown!r} is not an IP address") from None
    return out


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, PEM."""

    cert: bytes
    key: bytes

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert)


def _new_key(key_type: KeyType) -> PrivateKey:
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _validity(now: datetime.datetime, lifetime: datetime.timedelta) -> tuple[datetime.datetime, datetime.datetime]:
    if lifetime <= datetime.timedelta(0):
        raise PKIError("the lifetime must be positive")
    return now - min(MAX_BACKDATE, lifetime / 10), now + lifetime


def new_ca(*, now: datetime.datetime, lifetime: datetime.timedelta, key_type: KeyType, name: str) -> Issued:
    """A self-signed CA that may sign server certificates only (pathlen 0)."""
    key = _new_key(key_type)
    # The issue time in the name tells one generation of CA from the next in `openssl x509 -subject` output.
    stamp = now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name[:42]} {stamp}")])
    not_before, not_after = _validity(now, lifetime)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _load_key(pem: bytes) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (TypeError, ValueError, UnsupportedAlgorithm) as exc:
        raise PKIError("not an unencrypted PEM private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise PKIError("the key is neither ECDSA nor RSA")
    return key


def issue_server(
    ca: Issued,
    *,
    names: Sequence[str],
    ips: Sequence[ipaddress.IPv4Address | ipaddress.IPv6Address] = (),
    now: datetime.datetime,
    lifetime: datetime.timedelta,
    key_type: KeyType,
) -> Issued:
    """A serving certificate for `names` (the first is the subject's CN) and `ips`, signed by `ca`; it never
    outlives the CA."""
    ca_cert, ca_key = ca.certificate, _load_key(ca.key)
    key = _new_key(key_type)
    not_before, not_after = _validity(now, lifetime)
    not_before = max(not_before, ca_cert.not_valid_before_utc)
    not_after = min(not_after, ca_cert.not_valid_after_utc)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    sans += [x509.IPAddress(ip) for ip in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, (names[0] if names else "l2guard")[:64])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=key_type == "rsa",
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def load_bundle(pem: bytes) -> list[x509.Certificate]:
    """The certificates of a PEM bundle; raises PKIError when there is none or one does not parse."""
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise PKIError("not a PEM certificate bundle") from exc
    return certs


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def public_der(key: object) -> bytes:
    """A public key as DER SubjectPublicKeyInfo, to compare two keys; b"" for an object that is no key."""
    public_bytes = getattr(key, "public_bytes", None)
    if public_bytes is None:
        return b""
    der: bytes = public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return der


def issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """Whether `ca` signed `cert` (names and signature)."""
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def trusts(bundle: Sequence[x509.Certificate], cert: x509.Certificate) -> bool:
    return any(issued_by(cert, ca) for ca in bundle)


def renew_at(cert: x509.Certificate) -> datetime.datetime:
    """When a third of the certificate's lifetime is left."""
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return start + (end - start) * 2 / 3


def drop_at(cert: x509.Certificate) -> datetime.datetime:
    """When a sixth is left: an old CA leaves the bundle then, halfway through its last third."""
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return start + (end - start) * 5 / 6


def _is_ca(cert: x509.Certificate) -> bool:
    # cryptography parses extensions on first access: a certificate from the API whose extensions are not DER
    # (or repeat one) loads, then raises ValueError here. It is unusable content, not an error of ours.
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except (x509.ExtensionNotFound, ValueError):
        return False


def _dns_names(cert: x509.Certificate) -> set[str]:
    try:
        return set(
            cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
        )
    except (x509.ExtensionNotFound, ValueError):  # not DER: as _is_ca
        return set()


@dataclass(frozen=True)
class Step:
    """What to do with the Secret: `action` is keep, create (none or an unusable one: a new CA and pair), publish
    (a new CA next to the old), switch (a new pair from the new CA), drop (the old CA leaves the bundle) or reissue
    (a new pair from the current CA); `data` is the Secret's new content (None: keep it), `reason` one line for
    the log."""

    action: str
    reason: str
    data: Mapping[str, bytes] | None = None


@dataclass(frozen=True)
class Policy:
    """How self-managed mode issues: the serving names, the lifetime of each CA and pair, the key type."""

    names: tuple[str, ...]
    lifetime: datetime.timedelta
    key_type: KeyType = "ecdsa"
    ca_name: str = "l2guard webhook CA"


def fresh(policy: Policy, *, now: datetime.datetime) -> dict[str, bytes]:
    """A new CA and a pair it signed, as the Secret's content."""
    ca = new_ca(now=now, lifetime=policy.lifetime, key_type=policy.key_type, name=policy.ca_name)
    pair = issue_server(ca, names=policy.names, now=now, lifetime=policy.lifetime, key_type=policy.key_type)
    return {TLS_CRT: pair.cert, TLS_KEY: pair.key, CA_CRT: ca.cert, CA_KEY: ca.key}


def _leaf_problem(data: Mapping[str, bytes], names: Sequence[str], now: datetime.datetime) -> str | None:
    try:
        leaf = load_bundle(data.get(TLS_CRT, b""))[0]
        key = _load_key(data.get(TLS_KEY, b""))
    except PKIError as exc:
        return f"the serving pair: {exc}"
    if public_der(key.public_key()) != public_der(leaf.public_key()):
        return "tls.key does not belong to tls.crt"
    if not leaf.not_valid_before_utc <= now < leaf.not_valid_after_utc:
        return f"the serving certificate is not valid now (valid until {leaf.not_valid_after_utc.isoformat()})"
    missing = set(names) - _dns_names(leaf)
    if missing:
        return f"the serving certificate does not name {', '.join(sorted(missing))}"
    return None


def decide(data: Mapping[str, bytes] | None, policy: Policy, *, now: datetime.datetime, injected: bool) -> Step:
    """The next step for the Secret holding `data` (None: there is no Secret). `injected`: every managed webhook
    configuration's caBundle equals the Secret's ca.crt (True when none is managed: nobody here can tell)."""
    if data is None:
        return Step("create", "no Secret yet", fresh(policy, now=now))
    try:
        bundle = load_bundle(data.get(CA_CRT, b""))
        ca_key = _load_key(data.get(CA_KEY, b""))
    except PKIError as exc:
        return Step("create", f"unusable CA: {exc}", fresh(policy, now=now))
    signer, previous = bundle[0], bundle[1:2]
    if public_der(ca_key.public_key()) != public_der(signer.public_key()) or not _is_ca(signer):
        return Step("create", "ca.key does not belong to the first CA of ca.crt", fresh(policy, now=now))
    if not signer.not_valid_before_utc <= now < signer.not_valid_after_utc:
        return Step("create", "the CA is not valid now", fresh(policy, now=now))
    leaf_problem = _leaf_problem(data, policy.names, now)
    leaf = None if leaf_problem else load_bundle(data[TLS_CRT])[0]
    if leaf is not None and not trusts(bundle, leaf):
        leaf, leaf_problem = None, "ca.crt does not hold the serving certificate's CA"
    signer_pem = pem(signer)
    current = Issued(signer_pem, data[CA_KEY])

    def new_pair(bundle_pem: bytes, *, keep_names: bool = False) -> dict[str, bytes]:
        names = list(policy.names)
        if keep_names:
            # Replicas that disagree on the names (a rolling update that renames the Service) must not take turns
            # reissuing: a reissue keeps the names the old certificate had, so every replica's names are soon in.
            with contextlib.suppress(PKIError):
                names += sorted(_dns_names(load_bundle(data.get(TLS_CRT, b""))[0]) - set(names))
        pair = issue_server(current, names=names, now=now, lifetime=policy.lifetime, key_type=policy.key_type)
        return {TLS_CRT: pair.cert, TLS_KEY: pair.key, CA_CRT: bundle_pem, CA_KEY: data[CA_KEY]}

    if now >= renew_at(signer) and not previous:
        if leaf is None:
            return Step("create", f"the CA is due for rotation and {leaf_problem}", fresh(policy, now=now))
        ca = new_ca(now=now, lifetime=policy.lifetime, key_type=policy.key_type, name=policy.ca_name)
        content = {TLS_CRT: data[TLS_CRT], TLS_KEY: data[TLS_KEY], CA_CRT: ca.cert + signer_pem, CA_KEY: ca.key}
        return Step(
            "publish",
            f"a third of the CA's lifetime is left (it expires {signer.not_valid_after_utc.isoformat()})",
            content,
        )
    if leaf is None:
        return Step("reissue", leaf_problem or "no serving pair", new_pair(pem(*bundle[:2]), keep_names=True))
    if not issued_by(leaf, signer):
        if injected:
            return Step("switch", "every caBundle holds the new CA", new_pair(pem(*bundle[:2])))
        return Step("keep", "waiting for every caBundle to hold the new CA")
    if previous or len(bundle) > 1:
        old = previous[0]
        if now >= drop_at(old) or len(bundle) > 2:
            content = dict(data) | {CA_CRT: signer_pem}
            return Step("drop", "the overlap with the previous CA is over", content)
        return Step("keep", "overlap with the previous CA")
    return Step("keep", "up to date")
