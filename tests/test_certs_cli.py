"""`l2guard certs` (issue 10, part 1) as an operator runs it: `generate` writes a CA and a serving pair that a
running webhook serves, verified by a real TLS handshake with the Service's DNS name as SNI; key files are 0600,
nothing is overwritten without --force, `--secret-yaml` prints a kubernetes.io/tls Secret; `inject` sets the
caBundle of every webhook of the named configurations in the API double; bad input exits 2 with one line."""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.kube.test_client import kubeconfig
from tests.webhook.apidouble import APIDouble
from tests.webhook.certcluster import MUTATING, VALIDATING, bundles, cluster_double
from tests.webhook.conftest import api_documents
from tests.webhook.webhook_process import ROOT, WebhookProcess, clean_env

SNI = "l2guard-webhook.l2guard-system.svc"


def certs(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "l2guard.cli", "certs", *argv],
        cwd=cwd or ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def generate(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return certs("generate", "--service", "l2guard-webhook", "--namespace", "l2guard-system", "--out", str(out), *extra)


def _handshake(port: int, cafile: Path, sni: str = SNI) -> x509.Certificate:
    ctx = ssl.create_default_context(cafile=str(cafile))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=sni) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def test_generated_certificates_are_served_and_verify_with_the_service_name(tmp_path: Path) -> None:
    done = generate(tmp_path, "--dns", "webhook.example", "--ip", "192.0.2.10")
    assert done.returncode == 0, done.stderr
    for name, mode in (("ca.crt", 0o644), ("ca.key", 0o600), ("tls.crt", 0o644), ("tls.key", 0o600)):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name
    assert sorted(os.listdir(tmp_path)) == ["ca.crt", "ca.key", "tls.crt", "tls.key"]  # no temporary file left
    assert base64.b64decode(done.stdout.strip()) == (tmp_path / "ca.crt").read_bytes()  # the caBundle
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": api_documents()}))
    argv = [f"--cert-file={tmp_path / 'tls.crt'}", f"--key-file={tmp_path / 'tls.key'}", f"--cluster-state={state}"]
    with WebhookProcess(argv) as proc:
        for sni in (SNI, "l2guard-webhook.l2guard-system.svc.cluster.local", "webhook.example"):
            served = _handshake(proc.port, tmp_path / "ca.crt", sni)
        with pytest.raises(ssl.SSLCertVerificationError):
            _handshake(proc.port, tmp_path / "ca.crt", "l2guard-webhook.other-namespace.svc")
        assert proc.stop() == 0
    sans = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["192.0.2.10"]


def test_a_rotation_by_hand_keeps_handshakes_working_with_the_old_and_the_new_ca(tmp_path: Path) -> None:
    """certs/README.md's steps: a client trusting old and new CA (the caBundle during the overlap) handshakes with
    the old pair and, after the swap, with the new one; then the new CA alone suffices and the old one no longer."""
    old, new, serving = tmp_path / "old", tmp_path / "new", tmp_path / "serving"
    for d in (old, new, serving):
        d.mkdir()
    assert generate(old).returncode == 0 and generate(new).returncode == 0
    for name in ("tls.crt", "tls.key"):
        (serving / name).write_bytes((old / name).read_bytes())
    both = tmp_path / "both.crt"
    both.write_bytes((new / "ca.crt").read_bytes() + (old / "ca.crt").read_bytes())
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": api_documents()}))
    argv = [f"--cert-file={serving / 'tls.crt'}", f"--key-file={serving / 'tls.key'}", f"--cluster-state={state}"]
    with WebhookProcess([*argv, "--cert-reload-interval=0.1"]) as proc:
        old_leaf = x509.load_pem_x509_certificate((old / "tls.crt").read_bytes())
        new_leaf = x509.load_pem_x509_certificate((new / "tls.crt").read_bytes())
        assert _handshake(proc.port, both) == old_leaf
        assert _handshake(proc.port, old / "ca.crt") == old_leaf
        for name in ("tls.key", "tls.crt"):  # as the kubelet swaps a Secret's files: each one atomically
            (serving / f".{name}").write_bytes((new / name).read_bytes())
            os.replace(serving / f".{name}", serving / name)
        deadline = time.monotonic() + 30
        while (served := _handshake(proc.port, both)) != new_leaf:  # every handshake meanwhile succeeds
            assert served == old_leaf
            assert time.monotonic() < deadline, proc.lines
            time.sleep(0.05)
        assert _handshake(proc.port, new / "ca.crt") == new_leaf
        with pytest.raises(ssl.SSLCertVerificationError):
            _handshake(proc.port, old / "ca.crt")
        assert proc.stop() == 0


@pytest.mark.parametrize("key_type", ["ecdsa", "rsa"])
def test_the_key_type_is_the_one_asked_for(tmp_path: Path, key_type: str) -> None:
    assert generate(tmp_path, "--key-type", key_type, "--days", "30").returncode == 0
    cert = x509.load_pem_x509_certificate((tmp_path / "tls.crt").read_bytes())
    expected = {"ecdsa": ec.EllipticCurvePublicKey, "rsa": rsa.RSAPublicKey}[key_type]
    assert isinstance(cert.public_key(), expected)
    assert isinstance(x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes()).public_key(), expected)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 30 <= lifetime.days <= 31


def test_existing_files_are_kept_unless_forced(tmp_path: Path) -> None:
    assert generate(tmp_path).returncode == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    again = generate(tmp_path)
    assert again.returncode == 2
    assert "already in" in again.stderr and "--force" in again.stderr and len(again.stderr.splitlines()) == 1
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    forced = generate(tmp_path, "--force")
    assert forced.returncode == 0
    assert (tmp_path / "ca.crt").read_bytes() != before["ca.crt"]
    assert stat.S_IMODE((tmp_path / "tls.key").stat().st_mode) == 0o600


def test_secret_yaml_is_a_tls_secret_and_writes_no_files(tmp_path: Path) -> None:
    done = certs("generate", "--service", "hook", "--namespace", "ns", "--secret-yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert list(tmp_path.iterdir()) == []
    secret = yaml.safe_load(done.stdout)
    assert secret["kind"] == "Secret" and secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"] == {"name": "l2guard-webhook-tls", "namespace": "ns"}
    assert sorted(secret["data"]) == ["ca.crt", "tls.crt", "tls.key"]
    ca = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["ca.crt"]))
    leaf = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    leaf.verify_directly_issued_by(ca)
    assert done.stderr == f"caBundle: {secret['data']['ca.crt']}\n"
    named = certs("generate", "--service", "hook", "--namespace", "ns", "--secret-yaml", "mine", cwd=tmp_path)
    assert yaml.safe_load(named.stdout)["metadata"]["name"] == "mine"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--service", "Bad_Name", "--namespace", "ns"], "not a DNS name"),
        (["--service", "a.b", "--namespace", "ns"], "not a Kubernetes name"),
        (["--service", "s", "--namespace", "ns", "--days", "0"], "--days must be between 1 and 3650"),
        (["--service", "s", "--namespace", "ns", "--ip", "999.1.1.1"], "not an IP address"),
        (["--service", "s", "--namespace", "ns", "--dns", "x" * 300], "not a DNS name"),
        (["--service", "s", "--namespace", "ns", "--out", "/nonexistent/dir"], "not a directory"),
        (["--service", "s", "--namespace", "ns", "--key-type", "dsa"], "invalid choice"),
        (["--namespace", "ns"], "required"),
        (["--service", "s", "--namespace", "ns", "--secret-yaml", "Bad name"], "not a Kubernetes name"),
        (["--service", "s", "--namespace", "ns", "--secret-yaml", "x" * 254], "not a Kubernetes name"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv: list[str], message: str, tmp_path: Path) -> None:
    done = certs("generate", *argv, cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) <= 2  # argparse's usage line plus its message
    assert list(tmp_path.iterdir()) == []


def test_inject_sets_every_webhooks_cabundle_and_rotation_by_hand_works(tmp_path: Path) -> None:
    with cluster_double() as double:
        config = str(kubeconfig(tmp_path, double.url))
        first, second = tmp_path / "first", tmp_path / "second"
        first.mkdir()
        second.mkdir()
        assert generate(first).returncode == 0
        args = ["--mutating", "l2guard", "--validating", "l2guard", "--kubeconfig", config]
        done = certs("inject", "--ca-bundle-file", str(first / "ca.crt"), *args)
        assert done.returncode == 0, done.stderr
        ca = (first / "ca.crt").read_bytes()
        assert bundles(double, MUTATING) == [ca] and bundles(double, VALIDATING) == [ca, ca]
        again = certs("inject", "--ca-bundle-file", str(first / "ca.crt"), *args)
        assert again.returncode == 0 and "already set" in again.stdout
        # Rotating by hand (certs/README.md): trust old and new first, then serve the new pair, then the new alone.
        assert generate(second).returncode == 0
        both = tmp_path / "both.crt"
        both.write_bytes((second / "ca.crt").read_bytes() + ca)
        assert certs("inject", "--ca-bundle-file", str(both), *args).returncode == 0
        assert bundles(double, VALIDATING) == [both.read_bytes()] * 2
        missing = certs("inject", "--ca-bundle-file", str(both), "--validating", "nope", "--kubeconfig", config)
        assert missing.returncode == 2 and "ValidatingWebhookConfiguration nope not found" in missing.stderr
    patches = [s for m, p, s in double.requests if m == "PATCH"]
    assert patches == [200, 200, 200, 200], double.requests  # the unchanged second run patched nothing


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--ca-bundle-file", "/nonexistent", "--validating", "x"], "cannot read"),
        (["--ca-bundle-file", "__self__", "--validating", "x"], "not a PEM certificate bundle"),
        (["--ca-bundle-file", "__self__"], "at least one --mutating or --validating"),
    ],
)
def test_inject_refuses_bad_input_with_exit_2(argv: list[str], message: str, tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not PEM\n")
    argv = [str(bogus) if a == "__self__" else a for a in argv]
    done = certs("inject", *argv, "--kubeconfig", str(tmp_path / "none"))
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize("name", ["", "l2guard?watch=1", "l2guard/x", "..", "Upper"])
def test_inject_refuses_a_configuration_name_that_is_not_a_kubernetes_name(name: str, tmp_path: Path) -> None:
    """A name goes into the request path: "l2guard?watch=1" patched l2guard and said so, "" or ".." named the
    collection or another path. A Kubernetes name or exit 2, before any request."""
    assert generate(tmp_path).returncode == 0
    with cluster_double() as double:
        config = str(kubeconfig(tmp_path, double.url))
        done = certs(
            "inject", "--ca-bundle-file", str(tmp_path / "ca.crt"), "--validating", name, "--kubeconfig", config
        )
        assert done.returncode == 2, (done.stdout, done.stderr)
        assert "is not a Kubernetes name" in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr
    assert double.requests == []


def test_a_configuration_path_encodes_the_name() -> None:
    from l2guard.kube import webhookcerts as wc

    assert wc.configuration_path(wc.MUTATING, "a/b?c") == (
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/a%2Fb%3Fc"
    )


def test_inject_names_an_unreachable_api_in_one_line(tmp_path: Path) -> None:
    assert generate(tmp_path).returncode == 0
    with APIDouble({}) as double:
        url = double.url
    done = certs(
        "inject",
        "--ca-bundle-file",
        str(tmp_path / "ca.crt"),
        "--validating",
        "l2guard",
        "--kubeconfig",
        str(kubeconfig(tmp_path, url)),
    )
    assert done.returncode == 1 and "unreachable" in done.stderr and "Traceback" not in done.stderr, done.stderr
