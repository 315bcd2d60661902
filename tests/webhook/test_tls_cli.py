"""TLS (minimum version, reload by content hash, expiry gauge), settings with environment twins, and the CLI as a
real process on 127.0.0.1 (start, answer, SIGTERM)."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509

from l2core.model import LabelSemantics
from l2core.policy import Mode
from webhook.app import MUTATE_NODE
from webhook.settings import SettingsError, WebhookSettings, add_arguments, from_args, parse_selector_text
from webhook.tls import CertReloader

from .conftest import ADMISSION, API, PKI, check_response, start_server

ROOT = Path(__file__).resolve().parents[2]


def parse(argv: list[str], environ: dict[str, str]) -> WebhookSettings:
    """The webhook's flags alone, read as `l2guard webhook` reads them."""
    parser = argparse.ArgumentParser(prog="l2guard webhook")
    add_arguments(parser)
    return from_args(parser.parse_args(argv), environ)


def _peer_cn(port: int, ca: Path) -> str:
    ctx = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    cert = x509.load_der_x509_certificate(der)
    return str(cert.subject.rfc4514_string())


def test_tls_below_1_2_is_refused(pki: PKI) -> None:
    running = start_server(pki, WebhookSettings())
    try:
        assert running.server.reloader.context.minimum_version == ssl.TLSVersion.TLSv1_2
        ctx = ssl.create_default_context(cafile=str(pki.ca_file))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        with (
            socket.create_connection(("127.0.0.1", running.server.port), timeout=5) as raw,
            pytest.raises(ssl.SSLError),
        ):
            ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        tls12 = ssl.create_default_context(cafile=str(pki.ca_file))
        tls12.maximum_version = ssl.TLSVersion.TLSv1_2
        with (
            socket.create_connection(("127.0.0.1", running.server.port), timeout=5) as raw,
            tls12.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            assert tls.version() == "TLSv1.2"
        assert _peer_cn(running.server.port, pki.ca_file) == "CN=l2guard-webhook"
    finally:
        running.stop()


def test_certificate_is_reloaded_when_the_content_changes(pki: PKI, tmp_path: Path) -> None:
    cert_file, key_file = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert_file.write_bytes(pki.cert_file.read_bytes())
    key_file.write_bytes(pki.key_file.read_bytes())
    pki_copy = PKI(pki.ca_file, cert_file, key_file, pki.make_server_cert)
    running = start_server(pki_copy, WebhookSettings(cert_reload_interval=0.1))
    try:
        assert _peer_cn(running.server.port, pki.ca_file) == "CN=l2guard-webhook"
        new_cert, new_key = pki.make_server_cert("rotated")
        # A Secret update swaps both files; write the key first so that no tick sees a mismatched pair for long.
        key_file.write_bytes(new_key)
        cert_file.write_bytes(new_cert)
        deadline = time.monotonic() + 5
        while _peer_cn(running.server.port, pki.ca_file) != "CN=rotated":
            assert time.monotonic() < deadline, "certificate not reloaded"
            time.sleep(0.05)
        assert "l2guard_webhook_cert_reloads_total 1.0" in running.health.get("/metrics").text
    finally:
        running.stop()


def test_a_broken_pair_keeps_the_old_certificate(pki: PKI, tmp_path: Path) -> None:
    cert_file, key_file = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert_file.write_bytes(pki.cert_file.read_bytes())
    key_file.write_bytes(pki.key_file.read_bytes())
    expiries: list[float] = []
    reloader = CertReloader(str(cert_file), str(key_file), on_expiry=expiries.append)
    assert _served_cn(reloader.context, pki) == "l2guard-webhook"
    new_cert, new_key = pki.make_server_cert("rotated")
    cert_file.write_bytes(new_cert)  # the key does not match any more (the cert was written first)
    assert reloader.check() is False and reloader.loaded
    assert 0 < expiries[-1] <= 86400
    # Found in review: the failed load used to wipe the live pair, so every handshake failed from then on.
    assert _served_cn(reloader.context, pki) == "l2guard-webhook"
    key_file.write_bytes(new_key)  # the update completes
    assert reloader.check() is True
    assert _served_cn(reloader.context, pki) == "rotated"


def _served_cn(server: ssl.SSLContext, pki: PKI) -> str:
    """Handshake in memory against `server` and return the common name of the certificate it presents."""
    client = pki.client_context()
    client.check_hostname = False
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client.wrap_bio(c_in, c_out, server_side=False)
    srv = server.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        done = True
        for end, out, peer_in in ((c, c_out, s_in), (srv, s_out, c_in)):
            try:
                end.do_handshake()
            except ssl.SSLWantReadError:
                done = False
            if data := out.read():
                peer_in.write(data)
        if done:
            break
    cert = c.getpeercert()
    assert cert is not None
    return dict(x[0] for x in cert["subject"])["commonName"]


def test_settings_flags_win_over_environment_twins_over_defaults() -> None:
    env = {
        "L2GUARD_NODE_POLICY": "strip",
        "L2GUARD_PORT": "9443",
        "L2GUARD_IGNORE_EXCLUDE_LB": "true",
        "L2GUARD_CERT_FILE": "c",
        "L2GUARD_KEY_FILE": "k",
        "L2GUARD_EXEMPT_USERS": "a, b*",
    }
    s = parse(["--port", "10443", "--label-semantics", "true-only"], env)
    assert (s.node_policy, s.port, s.health_port) == (Mode.STRIP, 10443, 8080)
    assert s.eligibility.ignore_exclude_label and s.eligibility.label_semantics is LabelSemantics.TRUE_ONLY
    assert s.scope.exempt_users == ("a", "b*")
    # Found in review: a flag could not switch off what the environment switched on, repeated list flags kept only
    # the last one, and an environment error was reported under the flag's name.
    assert not parse(["--no-ignore-exclude-lb"], env).eligibility.ignore_exclude_label
    many = parse(["--cluster-state", "a.yaml", "--cluster-state", "b.yaml,c.yaml"], env)
    assert many.cluster_state == ("a.yaml", "b.yaml", "c.yaml")
    assert (s.request_timeout, parse([], {**env, "L2GUARD_REQUEST_TIMEOUT": "2.5"}).request_timeout) == (10.0, 2.5)
    assert parse(["--request-timeout", "4"], {**env, "L2GUARD_REQUEST_TIMEOUT": "2.5"}).request_timeout == 4.0
    for argv, env2, message in [
        (["--request-timeout", "0"], env, "--request-timeout must be between 0.1 and 600 seconds"),
        ([], {**env, "L2GUARD_PORT": "x"}, "L2GUARD_PORT: 'x' is not an integer"),
        (["--node-policy", "nuke"], env, "--node-policy must be off, warn, strip or deny"),
        (["--port", "x"], env, "--port: 'x' is not an integer"),
        ([], {}, "--cert-file and --key-file are required"),
        (["--health-port", "9443"], env, "--port and --health-port must differ"),
        (["--strip-node-selector", "a in (x"], env, "cannot parse"),
    ]:
        with pytest.raises(SettingsError, match=re.escape(message)):
            parse(argv, env2)


def test_selector_text_follows_kubectl_syntax() -> None:
    sel = parse_selector_text("node-role.kubernetes.io/control-plane,zone in (a,b),!spot,tier!=db,env=prod")
    assert sel.matches({"node-role.kubernetes.io/control-plane": "", "zone": "a", "tier": "web", "env": "prod"})
    assert not sel.matches({"node-role.kubernetes.io/control-plane": "", "zone": "a", "env": "prod", "spot": "1"})
    assert not sel.matches({"zone": "a", "env": "prod"})


def _cluster_state(tmp_path: Path) -> Path:
    items = []
    for name in ("list-nodes", "list-services", "list-endpointslices", "list-ipaddresspools", "list-l2advertisements"):
        items.append(json.loads((API / f"{name}.json").read_text()))
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    return path


def test_cli_process_serves_and_stops_on_sigterm(pki: PKI, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("L2GUARD_")}
    env.update(
        {"L2GUARD_CERT_FILE": str(pki.cert_file), "L2GUARD_KEY_FILE": str(pki.key_file), "L2GUARD_LOG_FORMAT": "json"}
    )
    cmd = [
        sys.executable,
        "-m",
        "webhook",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--health-port",
        "0",
        "--cluster-state",
        str(_cluster_state(tmp_path)),
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        port = None
        deadline = time.monotonic() + 20
        lines = []
        while port is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            doc = json.loads(line)
            if doc.get("event") == "start":
                port = doc["port"]
        assert port, lines
        review = json.loads((ADMISSION / "node-label-exclude-empty.json").read_text())["review"]
        with httpx.Client(verify=pki.client_context(), timeout=10) as client:
            resp = client.post(f"https://127.0.0.1:{port}{MUTATE_NODE}?timeout=3s", json=review)
        check_response(review, resp.json())
        assert "moves from worker-1 to worker-2" in resp.json()["response"]["warnings"][1]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        decision = [json.loads(line) for line in proc.stderr.read().splitlines() if '"admission"' in line]
        assert decision and decision[0]["node"] == "worker-1" and decision[0]["outcome"] == "warned"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_cli_bad_settings_exit_2_with_one_line(tmp_path: Path, pki: PKI) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("L2GUARD_")}
    cases = [
        (["--node-policy", "nuke", "--cert-file", "c", "--key-file", "k"], "--node-policy must be"),
        (["--cert-file", str(tmp_path / "missing.crt"), "--key-file", "k"], "cannot read"),
        (
            [
                "--cert-file",
                str(pki.cert_file),
                "--key-file",
                str(pki.key_file),
                "--cluster-state",
                str(tmp_path / "nope.yaml"),
            ],
            "nope.yaml: cannot read",
        ),
    ]
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    pair = ["--cert-file", str(pki.cert_file), "--key-file", str(pki.key_file), "--host", "127.0.0.1"]
    state = ["--cluster-state", str(_cluster_state(tmp_path))]
    cases.append(([*pair, *state, "--port", str(port)], f"cannot listen on 127.0.0.1:{port}"))
    cases.append(([*pair, *state, "--port", str(port)], "--port"))
    # An address that is not this host's: the flag to change is --host, not --port (found in review). Binding
    # fails locally; nothing is sent.
    other = ["--cert-file", str(pki.cert_file), "--key-file", str(pki.key_file), "--host", "203.0.113.5", *state]
    cases.append((other, "the address is not one of this host's (set another with --host)"))
    for argv, message in cases:
        done = subprocess.run(
            [sys.executable, "-m", "webhook", *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 2, done.stderr
        assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "Traceback" not in done.stderr
    busy.close()


def test_file_mode_uses_the_metallb_namespace_setting(pki: PKI, tmp_path: Path) -> None:
    """The process's own wiring (webhook.cli.build): --metallb-namespace decides which pools the view reads."""
    import threading

    import uvloop

    from webhook.app import VALIDATE_POOL
    from webhook.cli import build

    state = tmp_path / "state.json"
    pools = [
        {
            "apiVersion": "metallb.io/v1beta1",
            "kind": "IPAddressPool",
            "metadata": {"name": "lan", "namespace": ns},
            "spec": {"addresses": [cidr]},
        }
        for ns, cidr in (("metallb-system", "198.51.100.0/24"), ("lb", "203.0.113.0/24"))
    ]
    state.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": pools}))
    settings = parse(
        [
            *("--host", "127.0.0.1", "--port", "0", "--health-port", "0"),
            *("--cert-file", str(pki.cert_file), "--key-file", str(pki.key_file)),
            *("--cluster-state", str(state), "--metallb-namespace", "lb"),
        ],
        {},
    )
    server, source, _ = build(settings)
    assert source is None
    thread = threading.Thread(target=lambda: uvloop.run(server.run(install_signals=False)), daemon=True)
    thread.start()

    def create(cidr: str) -> dict[str, Any]:
        review = json.loads((ADMISSION / "ipaddresspool-create.json").read_text())["review"]
        obj = review["request"]["object"]
        obj["metadata"].update({"name": "other", "namespace": "lb"})
        review["request"]["namespace"] = "lb"
        obj["spec"]["addresses"] = [cidr]
        with httpx.Client(verify=pki.client_context(), timeout=10) as client:
            body: dict[str, Any] = client.post(
                f"https://127.0.0.1:{server.port}{VALIDATE_POOL}?timeout=3s", json=review
            ).json()
        check_response(review, body)
        return dict(body["response"])

    try:
        assert server.started.wait(10), "server did not start"
        assert create("198.51.100.128/25")["allowed"] is True  # only metallb-system/lan holds it: not read
        denied = create("203.0.113.128/25")
        assert denied["allowed"] is False
        assert "overlaps 203.0.113.0/24 of pool lb/lan" in denied["status"]["message"]
    finally:
        server.stop()
        thread.join(10)
