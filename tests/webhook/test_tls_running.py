"""Certificate trouble in a running webhook process, seen from outside over HTTP: a 200 MB file swapped in as the
certificate is refused by its size while /healthz keeps answering and the old pair keeps serving, and a certificate
that expires while served turns /readyz to 503 with the reason (issue 7, item 1)."""

from __future__ import annotations

import datetime
import json
import os
import socket
import ssl
import time
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from webhook.app import MUTATE_NODE

from .conftest import PKI, api_documents, captured, check_response
from .webhook_process import WebhookProcess

BIG = 200 * 1024 * 1024
PROMPT = 5.0  # generous: /healthz on 127.0.0.1 answers in about a millisecond; this only catches a stalled loop


def _setup(tmp_path: Path, pki: PKI) -> tuple[Path, Path, list[str]]:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(pki.cert_file.read_bytes())
    key.write_bytes(pki.key_file.read_bytes())
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": api_documents()}))
    argv = [f"--cert-file={cert}", f"--key-file={key}", f"--cluster-state={state}", "--cert-reload-interval=0.1"]
    return cert, key, argv


def _served_cn(port: int, pki: PKI) -> str:
    ctx = ssl.create_default_context(cafile=str(pki.ca_file))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return str(x509.load_der_x509_certificate(der).subject.rfc4514_string())


def _healthz_is_prompt(proc: WebhookProcess) -> None:
    resp = proc.health.get("/healthz", timeout=PROMPT)  # httpx raises ReadTimeout past the bound
    assert resp.status_code == 200


def test_a_200_mb_certificate_is_refused_by_size_while_healthz_stays_prompt(tmp_path: Path, pki: PKI) -> None:
    cert, _, argv = _setup(tmp_path, pki)
    with WebhookProcess(argv) as proc:
        assert _served_cn(proc.port, pki) == "CN=l2guard-webhook"
        big = tmp_path / "big.crt"
        with open(big, "wb") as fh:  # sparse: written in no time, 200 MB to whoever reads it
            fh.truncate(BIG)
        os.replace(big, cert)  # swapped in atomically, as a Secret update swaps its files
        warning = None
        deadline = time.monotonic() + 30
        while warning is None:
            _healthz_is_prompt(proc)
            warning = next((d for d in proc.logs() if d.get("level") == "warning" and str(cert) in d["msg"]), None)
            assert time.monotonic() < deadline, proc.lines
            time.sleep(0.05)
        for _ in range(40):  # some 40 more reload ticks (0.1 s each) with the big file in place
            _healthz_is_prompt(proc)
            time.sleep(0.05)
        assert f"larger than the limit of {1024 * 1024} bytes" in warning["msg"], warning
        assert str(BIG) in warning["msg"], warning
        # The old pair keeps serving, and the webhook stays ready: it has a valid pair.
        assert _served_cn(proc.port, pki) == "CN=l2guard-webhook"
        assert proc.health.get("/readyz").status_code == 200
        review = captured("node-label-exclude-empty")
        with httpx.Client(verify=pki.client_context(), timeout=10) as client:
            resp = client.post(f"{proc.url}{MUTATE_NODE}?timeout=3s", json=review)
        assert resp.status_code == 200
        check_response(review, resp.json())
        # Once per distinct failure, not once per tick.
        assert len([d for d in proc.logs() if d.get("level") == "warning" and str(cert) in d["msg"]]) == 1
        assert proc.stop() == 0


def _short_lived_pair(lifetime: datetime.timedelta) -> tuple[bytes, bytes, datetime.datetime]:
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "short-lived")])
    not_after = now + lifetime
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem, not_after


def test_readyz_turns_503_with_the_reason_when_the_served_certificate_expires(tmp_path: Path, pki: PKI) -> None:
    cert, key, argv = _setup(tmp_path, pki)
    with WebhookProcess(argv) as proc:
        assert proc.health.get("/readyz").status_code == 200
        # Rotate to a pair that expires a few seconds from now (key first: no tick sees a mismatched pair for long).
        new_cert, new_key, not_after = _short_lived_pair(datetime.timedelta(seconds=4))
        key.write_bytes(new_key)
        cert.write_bytes(new_cert)
        deadline = time.monotonic() + 30
        while "l2guard_webhook_cert_reloads_total 1.0" not in proc.health.get("/metrics").text:
            assert time.monotonic() < deadline, proc.lines
            time.sleep(0.05)
        first = proc.health.get("/readyz")
        assert first.status_code == 200, first.text  # the new pair is valid for a few seconds more
        deadline = time.monotonic() + 30
        while (ready := proc.health.get("/readyz", timeout=PROMPT)).status_code == 200:
            assert time.monotonic() < deadline, "still ready long after the certificate expired"
            time.sleep(0.1)
        assert ready.status_code == 503
        body = ready.json()
        assert body["ready"] is False and body["tls_loaded"] is True, body
        assert "expired" in body["reason"] and not_after.isoformat() in body["reason"], body
        assert str(cert) in body["reason"], body
        assert datetime.datetime.now(datetime.UTC) >= not_after  # never before the certificate's own expiry
        warning = proc.wait_for_log(lambda d: d.get("level") == "warning" and "expired" in d["msg"], timeout=30)
        assert not_after.isoformat() in warning["msg"], warning
        assert proc.stop() == 0
