"""The rotation rule of self-managed mode (`l2guard.pki.decide`) step by step, on a clock the test moves: a CA
enters rotation with a third of its lifetime left, the new CA is published next to the old, the pair switches only
once every caBundle holds the new CA, the old CA leaves halfway through its last third; unusable content is
replaced. Expected values are read with `cryptography` directly, never through the code under test."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from l2guard import pki

T0 = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)
DAY = datetime.timedelta(days=1)
POLICY = pki.Policy(names=tuple(pki.service_names("l2guard-webhook", "l2guard-system")), lifetime=90 * DAY)


def _cas(data: dict[str, bytes] | object) -> list[x509.Certificate]:
    assert isinstance(data, dict)
    return x509.load_pem_x509_certificates(data["ca.crt"])


def _leaf(data: dict[str, bytes] | object) -> x509.Certificate:
    assert isinstance(data, dict)
    return x509.load_pem_x509_certificate(data["tls.crt"])


def _signed(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, InvalidSignature):
        return False
    return True


def _step(data: dict[str, bytes] | None, at: datetime.datetime, *, injected: bool = True) -> pki.Step:
    return pki.decide(data, POLICY, now=at, injected=injected)


def test_service_names_are_the_four_forms_the_api_server_may_dial() -> None:
    assert pki.service_names("svc", "ns") == ["svc", "svc.ns", "svc.ns.svc", "svc.ns.svc.cluster.local"]


def test_a_whole_rotation_publishes_switches_then_drops() -> None:
    created = _step(None, T0)
    assert created.action == "create"
    data = dict(created.data or {})
    (ca_a,) = _cas(data)
    assert _signed(_leaf(data), ca_a)
    sans = _leaf(data).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(sans.get_values_for_type(x509.DNSName)) == sorted(POLICY.names)
    # Nothing to do until a third of the lifetime (90 days) is left.
    keep = _step(data, T0 + 59 * DAY)
    assert keep.action == "keep" and keep.data is None
    assert _step(data, T0 + 60 * DAY + datetime.timedelta(hours=1)).action == "publish"
    # 61 days in: the new CA is published next to the old one; the pair stays.
    published = _step(data, T0 + 61 * DAY)
    assert published.action == "publish"
    data = dict(published.data or {})
    ca_b, old = _cas(data)
    assert old == ca_a and ca_b != ca_a
    assert _signed(_leaf(data), ca_a)
    key = serialization.load_pem_private_key(data["ca.key"], None)
    assert key.public_key() == ca_b.public_key()  # ca.key is the new CA's
    # Until every caBundle holds the new CA, the pair does not change.
    waiting = _step(data, T0 + 61 * DAY, injected=False)
    assert waiting.action == "keep" and waiting.data is None
    switched = _step(data, T0 + 61 * DAY, injected=True)
    assert switched.action == "switch"
    data = dict(switched.data or {})
    assert _cas(data) == [ca_b, ca_a]
    assert _signed(_leaf(data), ca_b)
    # The old CA stays in the bundle until 5/6 of its lifetime, then leaves.
    assert _step(data, T0 + 70 * DAY).action == "keep"
    dropped = _step(data, T0 + 76 * DAY)
    assert dropped.action == "drop"
    data = dict(dropped.data or {})
    assert _cas(data) == [ca_b]
    assert _step(data, T0 + 76 * DAY).action == "keep"


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda d: d.pop("ca.key"), "unusable CA"),
        (lambda d: d.update({"ca.crt": b"garbage"}), "unusable CA"),
        (lambda d: d.update({"ca.key": pki.fresh(POLICY, now=T0)["ca.key"]}), "does not belong"),
    ],
)
def test_an_unusable_ca_is_replaced_whole(change: object, why: str) -> None:
    data = dict(pki.fresh(POLICY, now=T0))
    change(data)  # type: ignore[operator]
    step = _step(data, T0 + DAY)
    assert step.action == "create" and why in step.reason


def test_an_expired_ca_is_replaced_whole() -> None:
    step = _step(dict(pki.fresh(POLICY, now=T0)), T0 + 91 * DAY)
    assert step.action == "create"


def test_a_pair_without_the_service_name_is_reissued_from_the_same_ca() -> None:
    other = pki.Policy(names=("other",), lifetime=POLICY.lifetime)
    data = dict(pki.fresh(other, now=T0))
    step = _step(data, T0 + DAY)
    assert step.action == "reissue" and "l2guard-webhook" in step.reason
    assert _cas(step.data) == _cas(data)
    assert _signed(_leaf(step.data), _cas(data)[0])


def test_a_serving_certificate_never_outlives_its_ca() -> None:
    data = dict(pki.fresh(POLICY, now=T0))
    ca = _cas(data)[0]
    data["tls.crt"] = b""
    step = _step(data, T0 + 50 * DAY)
    assert step.action == "reissue"
    assert _leaf(step.data).not_valid_after_utc <= ca.not_valid_after_utc


def test_bad_names_and_addresses_are_refused_in_one_line() -> None:
    with pytest.raises(pki.PKIError, match="not a DNS name"):
        pki.check_names(["Upper.example"])
    with pytest.raises(pki.PKIError, match="not an IP address"):
        pki.check_ips(["300.1.1.1"])
    assert [str(ip) for ip in pki.check_ips(["192.0.2.1", "2001:db8::1"])] == ["192.0.2.1", "2001:db8::1"]


def test_replicas_that_disagree_on_the_names_do_not_take_turns_reissuing() -> None:
    """A rolling update renames the Service: old and new replicas run side by side. A reissue keeps the names the
    certificate had, so after one reissue for each side both are satisfied."""
    old = POLICY
    new = pki.Policy(names=tuple(pki.service_names("l2guard-hook", "l2guard-system")), lifetime=POLICY.lifetime)
    data = dict(pki.fresh(old, now=T0))
    step = pki.decide(data, new, now=T0 + DAY, injected=True)
    assert step.action == "reissue"
    data = dict(step.data or {})
    assert pki.decide(data, old, now=T0 + DAY, injected=True).action == "keep"
    assert pki.decide(data, new, now=T0 + DAY, injected=True).action == "keep"
    sans = _leaf(data).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == set(old.names) | set(new.names)


def _with_broken_extension(issued_pem: bytes, key_pem: bytes, oid: x509.ObjectIdentifier, *, ca: bool) -> bytes:
    """A copy of the certificate `issued_pem` whose extension `oid` holds bytes that are not DER (an extension that
    parses lazily: the PEM loads, reading the extension fails), signed by `key_pem`."""
    from cryptography.hazmat.primitives import hashes

    cert = x509.load_pem_x509_certificate(issued_pem)
    key = serialization.load_pem_private_key(key_pem, password=None)
    builder = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(cert.issuer)
        .public_key(cert.public_key())  # type: ignore[arg-type]
        .serial_number(cert.serial_number)
        .not_valid_before(cert.not_valid_before_utc)
        .not_valid_after(cert.not_valid_after_utc)
        .add_extension(x509.UnrecognizedExtension(oid, b"\x05not DER"), critical=ca)
    )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)  # type: ignore[arg-type]


def test_a_ca_with_an_unreadable_extension_is_replaced_not_raised() -> None:
    """The Secret comes from the API: a CA whose BasicConstraints cannot be parsed is unusable content, replaced
    like any other, not a ValueError out of `decide` (which stopped the webhook's certificate management)."""
    data = dict(pki.fresh(POLICY, now=T0))
    data["ca.crt"] = _with_broken_extension(
        data["ca.crt"], data["ca.key"], x509.oid.ExtensionOID.BASIC_CONSTRAINTS, ca=True
    )
    step = _step(data, T0 + DAY)
    assert step.action == "create"


def test_a_serving_certificate_with_an_unreadable_san_is_reissued_not_raised() -> None:
    data = dict(pki.fresh(POLICY, now=T0))
    data["tls.crt"] = _with_broken_extension(
        data["tls.crt"], data["ca.key"], x509.oid.ExtensionOID.SUBJECT_ALTERNATIVE_NAME, ca=False
    )
    step = _step(data, T0 + DAY)
    assert step.action == "reissue"
    assert _signed(_leaf(step.data), _cas(data)[0])
    sans = _leaf(step.data).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(sans.get_values_for_type(x509.DNSName)) == sorted(POLICY.names)
