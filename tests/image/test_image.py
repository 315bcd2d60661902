"""The image as it ships, built and run by real podman: its metadata, what its layers hold, the webhook container
serving TLS on a read-only root as its non-root user, and the speaker container announcing a VIP with CAP_NET_RAW
alone in a node namespace.

Expected values come from the outside: the version from pyproject.toml, CAP_NET_RAW's bit from
<linux/capability.h>, the MACs from the namespaces the test made, the warning texts written out as literals.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import secrets
import ssl
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.builders import READY, advertisement, endpoints, node, pool, service
from tests.speaker.speaker_netns import VIP4, VIP6, Topology, sh, sn_group, wait_for
from tests.webhook.webhook_process import free_ports

from .conftest import REPO, VERSION, Podman

# The first test here builds the base and the image (about 2 min on a quiet 2-core machine, near 5 under load): a
# bound that only catches a hang, above pyproject's 300 s per test.
pytestmark = [pytest.mark.root, pytest.mark.timeout(900)]

NONROOT = "65532"
CAP_NET_RAW = 1 << 13  # include/uapi/linux/capability.h: #define CAP_NET_RAW 13
DATA = REPO / "tests" / "data"


@contextlib.contextmanager
def container(podman: Podman, *args: str, role: str) -> Iterator[str]:
    """A detached container named after ``role``; removed by name afterwards, its log shown when the test fails."""
    name = f"l2g-{role}-{secrets.token_hex(3)}"
    podman.run(["run", "--detach", "--name", name, "--pull=never", *args])
    try:
        yield name
    finally:
        podman.run(["rm", "--force", "--time", "0", name], check=False)


def logs(podman: Podman, name: str) -> str:
    res = podman.run(["logs", name], check=False)
    return f"--- podman logs {name}\n{res.stdout[-4000:]}{res.stderr[-4000:]}"


def process_status(podman: Podman, name: str) -> dict[str, str]:
    """/proc/PID/status of the container's first process, read from the host: what the kernel really granted."""
    pid = podman.run(["inspect", "--format", "{{.State.Pid}}", name]).stdout.strip()
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, v in (line.split(":", 1) for line in lines)}


def stop(podman: Podman, name: str) -> int:
    """SIGTERM to the container's PID 1 (l2guard itself), then its exit code."""
    podman.run(["stop", "--time", "15", name], timeout=60)
    return int(podman.run(["inspect", "--format", "{{.State.ExitCode}}", name]).stdout.strip())


# ----- what the image is ----------------------------------------------------------------------------------------


def test_the_image_is_labelled_with_the_version_and_runs_l2guard_as_nonroot(image: str, podman: Podman) -> None:
    info = json.loads(podman.run(["image", "inspect", image]).stdout)[0]
    config = info["Config"]
    assert config["User"] == f"{NONROOT}:{NONROOT}"
    assert config["Entrypoint"] == ["l2guard"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.title"] == "l2guard"
    assert labels["org.opencontainers.image.base.name"] == podman.base
    res = podman.run(["run", "--rm", "--pull=never", "--network=none", "--read-only", image, "--version"])
    assert res.stdout.strip() == f"l2guard {VERSION}"


def layer_findings(podman: Podman, image: str, archive: Path) -> dict[str, list[str]]:
    """What must not be in ``image``, layer by layer of `podman save` (a file deleted later is still in its layer)."""
    podman.run(["save", "--format", "docker-archive", "--output", str(archive), image], timeout=300)
    base_layers = len(json.loads(podman.run(["image", "inspect", podman.base]).stdout)[0]["RootFS"]["Layers"])
    with tarfile.open(archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        layers: list[list[str]] = []
        for layer in manifest[0]["Layers"]:
            with tarfile.open(fileobj=outer.extractfile(layer)) as inner:
                layers.append([m.name.removeprefix("./") for m in inner.getmembers()])
    archive.unlink()
    ours = [name for layer in layers[base_layers:] for name in layer]
    everything = [name for layer in layers for name in layer]
    venv = "opt/l2guard/lib/python3.11/site-packages/"
    compilers = {f"usr/bin/{tool}" for tool in ("gcc", "cc", "c++", "g++", "make", "ld", "as")}
    return {
        "venv": [n for n in ours if n == "opt/l2guard/bin/l2guard"],
        "wheels": [n for n in everything if n.endswith(".whl") and "l2guard" in n.rsplit("/", 1)[-1]],
        "build dirs": [n for n in ours if n.split("/", 1)[0] in ("wheels", "src", "root", "tmp")],
        # The installer and build tools left the venv; the mounted CA bundle is in no layer the build added.
        "installers": [n for n in ours if n.startswith((f"{venv}pip/", f"{venv}setuptools/", "opt/l2guard/bin/pip"))],
        "compilers": [n for n in everything if n in compilers],
        "CA bundle": [n for n in ours if n.startswith("etc/ssl")],
    }


def test_no_layer_holds_the_wheel_the_sources_or_build_tools(image: str, podman: Podman, tmp_path: Path) -> None:
    history = podman.run(["history", "--no-trunc", "--format", "{{.CreatedBy}}", image]).stdout
    assert "pip wheel" not in history and "COPY l2core" not in history, history  # the build stage stayed behind
    found = layer_findings(podman, image, tmp_path / "image.tar")
    assert found == {
        "venv": ["opt/l2guard/bin/l2guard"],
        "wheels": [],
        "build dirs": [],
        "installers": [],
        "compilers": [],
        "CA bundle": [],
    }


# ----- the webhook container ------------------------------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def throwaway_pki(directory: Path) -> Path:
    """A CA and a serving pair for 127.0.0.1 in ``directory`` (tls.crt, tls.key readable by the image's user only);
    returns the CA file, which stays outside the container."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("l2guard image test CA"))
        .issuer_name(_name("l2guard image test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("l2guard-webhook"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("l2guard-webhook.l2guard-system.svc"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    tls = directory / "tls"
    tls.mkdir(mode=0o755)
    (tls / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file = tls / "tls.key"
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    # As a Secret volume with fsGroup gives it: the key is readable by the webhook's user and nobody else.
    os.chown(key_file, int(NONROOT), int(NONROOT))
    key_file.chmod(0o400)
    ca_file = directory / "ca.crt"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return ca_file


def captured_cluster_state(path: Path) -> None:
    """The cluster captured from a real API server (tests/data/api) as one kind: List file."""
    names = ("list-nodes", "list-services", "list-endpointslices", "list-ipaddresspools", "list-l2advertisements")
    items = [json.loads((DATA / "api" / f"{name}.json").read_text()) for name in names]
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    path.chmod(0o644)


def test_the_webhook_container_serves_tls_on_a_read_only_root_as_nonroot(
    image: str, podman: Podman, tmp_path: Path
) -> None:
    tmp_path.chmod(0o755)
    ca_file = throwaway_pki(tmp_path)
    captured_cluster_state(tmp_path / "state.json")
    port, health_port = free_ports(2)
    args = ["--read-only", "--read-only-tmpfs=false", "--cap-drop=all", "--network=host"]
    args += ["-v", f"{tmp_path / 'tls'}:/tls:ro", "-v", f"{tmp_path / 'state.json'}:/state/state.json:ro"]
    args += [image, "webhook", "--host=127.0.0.1", f"--port={port}", f"--health-port={health_port}"]
    args += ["--cert-file=/tls/tls.crt", "--key-file=/tls/tls.key", "--cluster-state=/state/state.json"]
    args += ["--log-format=json"]
    with container(podman, *args, role="webhook") as name:

        def healthy() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"http://127.0.0.1:{health_port}/healthz", timeout=2).status_code == 200
            return False

        assert wait_for(healthy, timeout=60, interval=0.2), logs(podman, name)
        status = process_status(podman, name)
        assert status["Uid"].split() == [NONROOT] * 4 and status["Gid"].split() == [NONROOT] * 4
        assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0
        written = podman.run(["exec", name, "touch", "/opt/l2guard/x"], check=False)
        assert written.returncode != 0 and "Read-only file system" in written.stderr

        review = json.loads((DATA / "admission" / "node-label-exclude-empty.json").read_text())["review"]
        verify = ssl.create_default_context(cafile=str(ca_file))
        with httpx.Client(verify=verify, timeout=10) as client:
            resp = client.post(f"https://127.0.0.1:{port}/mutate-v1-node?timeout=3s", json=review)
            assert resp.status_code == 200, resp.text
            body = resp.json()
        assert body["response"]["uid"] == review["request"]["uid"]
        assert body["response"]["allowed"] is True
        assert body["response"]["warnings"] == [
            "node worker-1 excluded from LoadBalancer announcements: 1 service moves to another node",
            "LoadBalancer 192.0.2.100 (default/web) moves from worker-1 to worker-2",
        ]
        # Verification is real: the system's CAs alone do not trust this server.
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"https://127.0.0.1:{port}/mutate-v1-node", timeout=5)

        assert stop(podman, name) == 0, logs(podman, name)
        assert "Traceback" not in logs(podman, name)


# ----- the speaker container ------------------------------------------------------------------------------------


@pytest.fixture
def topo() -> Iterator[Topology]:
    """client, node-a and node-b on a snooping bridge (tests/speaker/speaker_netns.py), deleted afterwards."""
    topology = Topology()
    try:
        topology.build()

        def joined() -> bool:  # snooping is trustworthy once the bridge has seen every host's MLD report
            return all(h.port in topology.mdb_ports(sn_group(h.ip6)) for h in topology.hosts.values())

        assert wait_for(joined, timeout=10), sh(["ip", "netns", "exec", topology.br, "bridge", "mdb", "show"]).stdout
        yield topology
    finally:
        topology.destroy()


def speaker_state(path: Path) -> None:
    docs: list[dict[str, Any]] = [
        node("node-a"),
        service("web", [VIP4, VIP6]),
        endpoints("web", {"node-a": READY}),
        pool("lan", "192.0.2.100/32", "2001:db8::100/128"),
        advertisement("l2", ipAddressPools=["lan"]),
    ]
    path.write_text("\n---\n".join(json.dumps(d) for d in docs) + "\n")
    path.chmod(0o644)


# Kubernetes grants an added capability to a non-root container's bounding set only (kubernetes/kubernetes#56374;
# containerd and CRI-O set no ambient capabilities), so the speaker's DaemonSet runs it as UID 0 with every other
# capability dropped. podman also sets the ambient set, so under podman the image's own non-root user works too.
@pytest.mark.parametrize("user", ["0", NONROOT], ids=["uid-0-as-the-daemonset", "image-user-under-podman"])
def test_the_speaker_container_announces_the_vip_with_net_raw_alone(
    image: str, podman: Podman, topo: Topology, tmp_path: Path, user: str
) -> None:
    tmp_path.chmod(0o755)
    speaker_state(tmp_path / "state.yaml")
    node_a, client = topo.node_a, topo.client
    args = ["--user", f"{user}:{user}", "--read-only", "--read-only-tmpfs=false", "--cap-drop=all", "--cap-add=NET_RAW"]
    args += ["--network", f"ns:/run/netns/{node_a.ns}", "-v", f"{tmp_path / 'state.yaml'}:/state/state.yaml:ro"]
    args += [image, "speaker", "--node-name=node-a", "--cluster-state=/state/state.yaml", "--log-format=json"]
    with container(podman, *args, role="speaker") as name:
        status = process_status(podman, name)
        assert status["Uid"].split() == [user] * 4
        assert (int(status["CapEff"], 16), int(status["CapBnd"], 16)) == (CAP_NET_RAW, CAP_NET_RAW)

        def arping() -> str:
            argv = ["arping", "-c", "1", "-w", "2", "-I", "eth0", VIP4]
            res = subprocess.run(client.cmd(argv), capture_output=True, text=True, timeout=10, check=False)
            return res.stdout.lower()

        assert wait_for(lambda: node_a.mac in arping(), timeout=30, interval=0.2), logs(podman, name)
        # The kernel as a client: ping makes it ARP; the VIP is nowhere, so only the answer fills the table.
        client.run(["ping", "-c", "1", "-W", "1", VIP4], check=False)
        assert client.neigh(VIP4)[0] == node_a.mac, logs(podman, name)
        # ndisc6 takes only a solicited NA sourced from the VIP (FIELD-NOTES), and prints the MAC alone with -q.
        na = client.run(["ndisc6", "-q", "-r", "3", "-w", "1000", VIP6, "eth0"], check=False)
        assert na.strip().lower() == node_a.mac, logs(podman, name)
        report = node_a.run(["curl", "-s", "--max-time", "5", "http://127.0.0.1:7473/status"])
        assert sorted(a["ip"] for a in json.loads(report)["announced"]) == sorted([VIP4, VIP6])

        started = time.monotonic()
        assert stop(podman, name) == 0, logs(podman, name)
        assert time.monotonic() - started < 15, "SIGTERM did not stop the speaker; podman killed it"
        assert "Traceback" not in logs(podman, name)
