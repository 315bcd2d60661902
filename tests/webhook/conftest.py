"""Fixtures for the webhook tests: a test CA with a server certificate for 127.0.0.1, real HTTPS servers (uvicorn
with uvloop, in a thread of the test process, on free ports), the captured admission reviews, and checks that every
response obeys the wire rules."""

from __future__ import annotations

import base64
import copy
import datetime
import ipaddress
import json
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import jsonpatch  # type: ignore[import-untyped]
import pytest
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from l2core.model import EXCLUDE_LABEL
from l2guard.view import ClusterView
from webhook.app import AppState, ConfigReader
from webhook.metrics import Metrics
from webhook.server import WebhookServer
from webhook.settings import WebhookSettings
from webhook.tls import CertReloader

DATA = Path(__file__).resolve().parents[1] / "data"
ADMISSION = DATA / "admission"
API = DATA / "api"
PRINTABLE_BAD = {chr(c) for c in range(32)} | {"\x7f"}


def captured(name: str) -> dict[str, Any]:
    """A captured AdmissionReview (a deep copy: derive variants freely)."""
    wrapper = json.loads((ADMISSION / f"{name}.json").read_text())
    return copy.deepcopy(wrapper["review"])


def api_documents() -> list[object]:
    """The captured cluster (cp-1 excluded, worker-1, worker-2, default/web on 192.0.2.100, pool and ad `lan`)."""
    names = ["list-nodes", "list-services", "list-endpointslices", "list-ipaddresspools", "list-l2advertisements"]
    return [json.loads((API / f"{n}.json").read_text()) for n in names]


def pool_object(name: str, addresses: list[str]) -> dict[str, Any]:
    """The captured pool `lan` (from the captured list) renamed, with other addresses and a fresh uid."""
    pool = copy.deepcopy(json.loads((API / "list-ipaddresspools.json").read_text())["items"][0])
    pool["metadata"].update(name=name, uid=f"uid-{name}")
    pool["spec"]["addresses"] = addresses
    return dict(pool)


# ----- certificates ----------------------------------------------------------------------------------------------


@dataclass
class PKI:
    ca_file: Path
    cert_file: Path
    key_file: Path
    make_server_cert: Callable[[str], tuple[bytes, bytes]]  # common name -> (cert PEM, key PEM) signed by the CA

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        return ctx


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    directory = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("l2guard test CA"))
        .issuer_name(_name("l2guard test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )

    def make_server_cert(cn: str, days: int = 1) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]
                ),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return cert.public_bytes(serialization.Encoding.PEM), key_pem

    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert, key = make_server_cert("l2guard-webhook")
    (directory / "tls.crt").write_bytes(cert)
    (directory / "tls.key").write_bytes(key)
    return PKI(ca_file, directory / "tls.crt", directory / "tls.key", make_server_cert)


# ----- servers ---------------------------------------------------------------------------------------------------


@dataclass
class Running:
    server: WebhookServer
    thread: threading.Thread
    view: ClusterView
    metrics: Metrics
    client: httpx.Client
    health: httpx.Client

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.port}"

    def post(self, path: str, body: bytes | Mapping[str, Any], **kw: Any) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"content-type": "application/json", **kw.pop("headers", {})}
        return self.client.post(f"{self.url}{path}", content=content, headers=headers, **kw)

    def review(self, path: str, review: Mapping[str, Any]) -> dict[str, Any]:
        """POST a review (with the API server's ?timeout=3s) and check the response's wire rules."""
        resp = self.post(f"{path}?timeout=3s", review)
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        check_response(review, body)
        return body

    def stop(self) -> None:
        self.client.close()
        self.health.close()
        self.server.stop()
        self.thread.join(10)
        assert not self.thread.is_alive()


def start_server(
    pki: PKI,
    settings: WebhookSettings,
    *,
    documents: Sequence[object] | None = None,
    view: ClusterView | None = None,
    read_config: ConfigReader | None = None,
) -> Running:
    settings = replace(
        settings, host="127.0.0.1", port=0, health_port=0, cert_file=str(pki.cert_file), key_file=str(pki.key_file)
    )
    metrics = Metrics()
    reloader = CertReloader(
        settings.cert_file,
        settings.key_file,
        interval=settings.cert_reload_interval,
        on_expiry=metrics.cert_expiry.set,
        on_reload=metrics.cert_reloads.inc,
    )
    if view is None:
        view = ClusterView(settings.eligibility)
        if documents is not None:
            view.load(documents, metallb_namespace=settings.metallb_namespace)
    state = AppState(settings, view, metrics, tls_loaded=lambda: reloader.loaded, read_config=read_config)
    server = WebhookServer(state, reloader)
    thread = threading.Thread(target=lambda: uvloop.run(server.run(install_signals=False)), daemon=True)
    thread.start()
    assert server.started.wait(10), "server did not start"
    client = httpx.Client(verify=pki.client_context(), timeout=10)
    health = httpx.Client(base_url=f"http://127.0.0.1:{server.health_port}", timeout=10)
    return Running(server, thread, view, metrics, client, health)


@pytest.fixture
def serve(pki: PKI) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def _serve(settings: WebhookSettings | None = None, **kw: Any) -> Running:
        running = start_server(pki, settings or WebhookSettings(), **kw)
        started.append(running)
        return running

    yield _serve
    for running in started:
        running.stop()


# ----- response checks -------------------------------------------------------------------------------------------


def check_warnings(warnings: Sequence[str]) -> None:
    assert 1 <= len(warnings) <= 5, warnings
    for w in warnings:
        assert isinstance(w, str) and 0 < len(w) <= 120, w
        assert w.isprintable() and not (set(w) & PRINTABLE_BAD), repr(w)


def check_response(review: Mapping[str, Any], body: Mapping[str, Any]) -> None:
    """The wire rules of issue 4 on one response, and the patch (if any) applied to the request object."""
    assert body["apiVersion"] == "admission.k8s.io/v1" and body["kind"] == "AdmissionReview"
    response = body["response"]
    assert response["uid"] == review["request"]["uid"]
    assert isinstance(response["allowed"], bool)
    assert set(response) <= {"uid", "allowed", "status", "patchType", "patch", "warnings"}
    if response["allowed"]:
        assert "status" not in response
    else:
        assert response["status"]["code"] >= 400 and response["status"]["message"]
    if "warnings" in response:
        check_warnings(response["warnings"])
    if "patch" in response or "patchType" in response:
        assert response["patchType"] == "JSONPatch"
        ops = json.loads(base64.b64decode(response["patch"]))
        assert ops, "a patch is sent only when something changes"
        check_strip_patch(review["request"]["object"], ops)


def check_strip_patch(obj: Mapping[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """Apply with an independent JSON Patch implementation: only the exclude label is gone."""
    patched: dict[str, Any] = jsonpatch.apply_patch(obj, ops)
    before = copy.deepcopy(dict(obj))
    del before["metadata"]["labels"][EXCLUDE_LABEL]
    assert patched == before
    return patched
