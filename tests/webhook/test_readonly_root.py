"""The webhook starts and serves the way manifests/webhook/deployment.yaml runs it: `readOnlyRootFilesystem: true`,
no writable volume, the certificate Secret mounted read-only at its own mount point, live mode with the cluster
read from the API (issue 7, item 1).

The process runs in a private mount namespace (`unshare --mount --propagation private`) in which every mount but
/proc and /dev (writable in a pod too) is remounted read-only: /, and with it /tmp and the worktree, /sys, the rest.
The certificate directory is a read-only tmpfs laid out as the kubelet lays out a Secret volume (files are symlinks
through `..data` to a timestamped directory). The mounts exist only in that namespace, which dies with the process:
nothing is left mounted on the host whatever happens to the test (checked against the host's mountinfo).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from webhook.app import MUTATE_NODE, VALIDATE_POOL

from .apidouble import APIDouble, Reply, list_reply, watch_reply
from .conftest import PKI, captured, check_response
from .webhook_process import WebhookProcess

pytestmark = pytest.mark.root

# $1: the certificate mount point, $2: the directory whose files the "Secret" holds; the rest: the command to exec.
READ_ONLY_POD = r"""
set -eu
certs=$1 src=$2
shift 2
mount -t tmpfs -o size=1m,mode=0755 l2guard-tls "$certs"
stamp=..2026_12_01_00_00_00.000000001
mkdir "$certs/$stamp"
cp "$src"/* "$certs/$stamp/"
ln -s "$stamp" "$certs/..data"
for f in "$src"/*; do ln -s "..data/${f##*/}" "$certs/${f##*/}"; done
mount -o remount,ro "$certs"
# Every other writable mount read-only, as in a pod with readOnlyRootFilesystem; /proc and /dev stay as in a pod.
# Copies of other tests' network namespaces (nsfs in /run/netns) are dropped, so that this namespace never keeps
# one alive after its owner deleted it.
awk '{for (i = 7; $i != "-"; i++); print $5, $6, $(i + 1)}' /proc/self/mountinfo |
while read -r point opts fstype; do
    case "$point" in /proc|/proc/*|/dev|/dev/*|"$certs") continue ;; esac
    if [ "$fstype" = nsfs ]; then umount -l "$point" 2>/dev/null || true; continue; fi
    case ",$opts," in *,rw,*) mount -o remount,bind,ro "$point" ;; esac
done
exec "$@"
"""

NODES = "/api/v1/nodes"
SERVICES = "/api/v1/services"
SLICES = "/apis/discovery.k8s.io/v1/endpointslices"
POOLS = "/apis/metallb.io/v1beta1/namespaces/metallb-system/ipaddresspools"
ADS = "/apis/metallb.io/v1beta1/namespaces/metallb-system/l2advertisements"


def _scripts() -> dict[tuple[str, bool], list[Reply]]:
    return {
        (NODES, False): [list_reply("list-nodes.json")],
        (NODES, True): [watch_reply(hold=5)],
        (SERVICES, False): [list_reply("list-services.json")],
        (SERVICES, True): [watch_reply(hold=5)],
        (SLICES, False): [list_reply("list-endpointslices.json")],
        (SLICES, True): [watch_reply(hold=5)],
        (POOLS, False): [list_reply("list-ipaddresspools.json")],
        (POOLS, True): [watch_reply(hold=5)],
        (ADS, False): [list_reply("list-l2advertisements.json")],
        (ADS, True): [watch_reply(hold=5)],
    }


def _secret(tmp_path: Path, pki: PKI, api_url: str) -> tuple[Path, Path]:
    """(mount point, source directory): the pair and a kubeconfig for the API double."""
    src = tmp_path / "secret"
    src.mkdir()
    (src / "tls.crt").write_bytes(pki.cert_file.read_bytes())
    (src / "tls.key").write_bytes(pki.key_file.read_bytes())
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "double", "cluster": {"server": api_url}}],
        "users": [{"name": "webhook", "user": {"token": "not-a-secret"}}],
        "contexts": [{"name": "double", "context": {"cluster": "double", "user": "webhook"}}],
        "current-context": "double",
    }
    (src / "kubeconfig").write_text(json.dumps(kubeconfig))
    mount_point = tmp_path / "tls"
    mount_point.mkdir()
    return mount_point, src


def _in_read_only_pod(certs: Path, src: Path) -> list[str]:
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", READ_ONLY_POD, "sh", str(certs), str(src)]


def _host_mounts(tmp_path: Path) -> tuple[list[str], str]:
    """What the test could have left on the host: mounts under `tmp_path`, and the options of / (other tests add
    and remove network namespace mounts meanwhile, so the whole table is no fixed point)."""
    under, root = [], ""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point, options = line.split()[4:6]
        if point == str(tmp_path) or point.startswith(f"{tmp_path}/"):
            under.append(line)
        if point == "/":
            root = options
    return under, root


def test_the_harness_leaves_nothing_writable_but_proc_and_dev(tmp_path: Path, pki: PKI) -> None:
    """The control: in this namespace no write reaches a file system (else the next test proves nothing)."""
    before = _host_mounts(tmp_path)
    certs, src = _secret(tmp_path, pki, "http://127.0.0.1:1")
    probe = (
        'for d in /tmp "$PWD" "$0" /var/tmp; do '
        'if touch "$d/l2guard-probe" 2>/dev/null; then echo "writable $d"; fi; done; '
        'cat "$0/tls.crt" >/dev/null && echo readable'
    )
    done = subprocess.run(
        [*_in_read_only_pod(certs, src), "sh", "-c", probe, str(certs)],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["readable"], done.stdout
    assert _host_mounts(tmp_path) == before
    assert not list(certs.iterdir()), "the tmpfs was mounted on the host"


def test_the_webhook_starts_and_serves_with_a_read_only_root_filesystem(tmp_path: Path, pki: PKI) -> None:
    before = _host_mounts(tmp_path)
    with APIDouble(_scripts()) as double:
        certs, src = _secret(tmp_path, pki, double.url)
        argv = [
            f"--cert-file={certs}/tls.crt",
            f"--key-file={certs}/tls.key",
            f"--kubeconfig={certs}/kubeconfig",
            "--node-policy=warn",
            "--metallb-namespace=metallb-system",
        ]
        with WebhookProcess(argv, prefix=_in_read_only_pod(certs, src)) as proc:
            ready = None
            for _ in range(600):  # bounded: 30 s
                ready = proc.health.get("/readyz")
                if ready.status_code == 200:
                    break
                double.stopping.wait(0.05)
            assert ready is not None and ready.status_code == 200, (ready and ready.text, proc.lines)
            node = captured("node-label-exclude-empty")
            pool = captured("ipaddresspool-create")
            with httpx.Client(verify=pki.client_context(), timeout=10) as client:
                node_resp = client.post(f"{proc.url}{MUTATE_NODE}?timeout=3s", json=node)
                pool_resp = client.post(f"{proc.url}{VALIDATE_POOL}?timeout=3s", json=pool)
            assert node_resp.status_code == 200 and pool_resp.status_code == 200, (node_resp.text, pool_resp.text)
            check_response(node, node_resp.json())
            check_response(pool, pool_resp.json())
            assert node_resp.json()["response"]["allowed"] is True  # --node-policy=warn never denies
            assert any("moves from worker-1 to worker-2" in w for w in node_resp.json()["response"]["warnings"])
            assert proc.stop() == 0, proc.lines
        errors = [d for d in proc.logs() if d.get("level") in ("error", "critical")]
        assert not errors, errors
    assert _host_mounts(tmp_path) == before
    assert not list(certs.iterdir()), "the tmpfs was mounted on the host"
