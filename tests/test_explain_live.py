"""`l2guard explain --live`, as a process, against the API double (tests/webhook/apidouble.py: no kube-apiserver
can run here, so a local HTTP server replays the captured lists, tests/data/api) through a real kubeconfig and the
real kubernetes client.

The captured cluster has cp-1 (exclude label), worker-1 and worker-2, and one LoadBalancer service default/web on
192.0.2.100, whose election order is cp-1, worker-1, worker-2 (tests/core/test_election.py's literal vectors): with
every speaker alive worker-1 announces it; with worker-1's speaker dead, worker-2 does.

The expected output of each live run is explain's own output for the same captured lists given as FILEs (with
`--alive` naming the speakers the Leases make alive): the live read must not change a verdict.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.control.test_speaker_command import REPO, clean_env, free_port
from tests.kube.scripts import API_DATA, LEASES, quiet_scripts, speaker_lease
from tests.webhook.apidouble import APIDouble, Reply, captured_json, list_reply

CAPTURED = [
    API_DATA / f"list-{kind}.json"
    for kind in ("nodes", "services", "endpointslices", "ipaddresspools", "l2advertisements")
]
LEASE_PATH = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/l2guard-speaker-{node}"


def kubeconfig(tmp_path: Path, servers: dict[str, str], current: str) -> Path:
    """A kubeconfig with one context per server (same user), `current` the current one."""
    clusters = "".join(f"- name: {n}\n  cluster:\n    server: {url}\n" for n, url in servers.items())
    contexts = "".join(f"- name: {n}\n  context:\n    cluster: {n}\n    user: me\n" for n in servers)
    path = tmp_path / "kubeconfig"
    path.write_text(
        f"apiVersion: v1\nkind: Config\ncurrent-context: {current}\nclusters:\n{clusters}"
        f"users:\n- name: me\n  user:\n    token: not-a-secret\ncontexts:\n{contexts}"
    )
    return path


def explain(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "l2guard.cli", "explain", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        cwd=REPO,
    )


def micro_time(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def store_lease(
    double: APIDouble, node: str, *, renewed: datetime, duration: int = 3600, namespace: str = "l2guard-system"
) -> None:
    """The captured Lease, renamed for `node`'s speaker, renewed at `renewed`, stored in the double. The default
    duration is an hour, so that a lease renewed now stays alive however slow the machine is."""
    lease = speaker_lease(node, str(2000 + len(double.store.objects)), duration=duration)
    lease["metadata"]["namespace"] = namespace
    lease["spec"]["renewTime"] = micro_time(renewed)
    double.store.objects[LEASE_PATH.format(namespace=namespace, node=node)] = lease


@pytest.fixture
def double() -> Iterator[APIDouble]:
    """The captured lists (each answered the same every time); the Leases are the double's stored objects."""
    script = quiet_scripts()
    with APIDouble(script) as d:
        yield d


def without_speaker_lines(table: str) -> str:
    return "".join(line for line in table.splitlines(keepends=True) if not line.startswith("speakers"))


def test_the_live_explain_gives_the_verdicts_explain_gives_for_the_same_objects_from_files(
    tmp_path: Path, double: APIDouble
) -> None:
    """worker-2's speaker renewed its 1-hour lease a second ago, worker-1's its 6 s lease two hours ago (dead),
    cp-1 has none: only worker-2 is alive, so it announces 192.0.2.100, and the table and the JSON are those of the
    files with --alive worker-2."""
    now = datetime.now(UTC)
    store_lease(double, "worker-2", renewed=now - timedelta(seconds=1))
    store_lease(double, "worker-1", renewed=now - timedelta(hours=2), duration=6)
    config = str(kubeconfig(tmp_path, {"double": double.url}, "double"))
    files = [str(p) for p in CAPTURED]

    live = explain("--live", "--kubeconfig", config)
    from_files = explain(*files, "--alive", "worker-2")
    assert live.returncode == from_files.returncode == 0, live.stderr
    assert live.stderr == ""
    assert without_speaker_lines(live.stdout) == from_files.stdout
    assert "default/web  192.0.2.100  (pool lan)  announcer: worker-2" in live.stdout
    speaker_lines = [line for line in live.stdout.splitlines() if line.startswith("speakers")]
    assert len(speaker_lines) == 2, live.stdout
    assert re.fullmatch(
        r"speakers alive \(Leases in namespace l2guard-system, by the API server's clock, "
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\): worker-2",
        speaker_lines[0],
    ), speaker_lines[0]
    assert re.fullmatch(r"speakers not alive: worker-1 \(expired \d+ s ago\), cp-1 \(no Lease\)", speaker_lines[1])

    live_json = json.loads(explain("--live", "--kubeconfig", config, "-o", "json").stdout)
    files_json = json.loads(explain(*files, "--alive", "worker-2", "-o", "json").stdout)
    speakers = live_json.pop("speakers")
    assert files_json.pop("speakers") is None
    assert live_json == files_json
    assert live_json["settings"]["alive"] == ["worker-2"]
    assert speakers["namespace"] == "l2guard-system"
    assert [(s["node"], s["alive"], s["state"]) for s in speakers["leases"]] == [
        ("worker-1", False, "expired"),
        ("worker-2", True, "alive"),
    ]
    expired, alive = (s["seconds"] for s in speakers["leases"])
    # generous bounds only: two hours ago minus the 6 s lease, and at most the hour of the lease left
    assert 7000 < expired < 7400 and 0 < alive < 3600, speakers


def test_with_no_speaker_lease_every_node_counts_as_alive_as_in_the_view(tmp_path: Path, double: APIDouble) -> None:
    """Only the captured MetalLB Lease (`speaker-worker-1`, no l2guard speaker's) in the namespace: liveness is
    unknown and every node counts, as the webhook's view counts them; the output is that of the files."""
    double.scripts[(LEASES, False)] = [list_reply("list-leases.json")]
    config = str(kubeconfig(tmp_path, {"double": double.url}, "double"))
    live = explain("--live", "--kubeconfig", config)
    from_files = explain(*(str(p) for p in CAPTURED))
    assert live.returncode == from_files.returncode == 0, live.stderr
    assert without_speaker_lines(live.stdout) == from_files.stdout
    assert "announcer: worker-1" in live.stdout
    assert (
        "speakers: no speaker Lease (Leases in namespace l2guard-system): every node counts as alive\n" in live.stdout
    )


def test_a_released_lease_is_not_alive_and_namespace_chooses_where_the_leases_are(
    tmp_path: Path, double: APIDouble
) -> None:
    """worker-1's speaker stopped cleanly (released: no holder, 1 s), worker-2's runs; both in namespace `lb`."""
    now = datetime.now(UTC)
    store_lease(double, "worker-2", renewed=now, namespace="lb")
    store_lease(double, "worker-1", renewed=now, namespace="lb")
    released = double.store.objects[LEASE_PATH.format(namespace="lb", node="worker-1")]
    released["spec"] = {"leaseDurationSeconds": 1, "renewTime": micro_time(now)}
    config = str(kubeconfig(tmp_path, {"double": double.url}, "double"))

    live = explain("--live", "--kubeconfig", config, "--namespace", "lb")
    assert live.returncode == 0, live.stderr
    assert "announcer: worker-2" in live.stdout
    assert "speakers not alive: worker-1 (released), cp-1 (no Lease)\n" in live.stdout
    # The default namespace holds no speaker Lease here.
    assert (
        "speakers: no speaker Lease (Leases in namespace l2guard-system)"
        in explain("--live", "--kubeconfig", config).stdout
    )


def test_context_chooses_the_cluster_as_kubectl_does(tmp_path: Path, double: APIDouble) -> None:
    """The current context points at a closed port; --context double reaches the double."""
    dead = f"http://127.0.0.1:{free_port()}"
    config = str(kubeconfig(tmp_path, {"dead": dead, "double": double.url}, "dead"))
    chosen = explain("--live", "--kubeconfig", config, "--context", "double")
    assert chosen.returncode == 0, chosen.stderr
    assert "announcer: worker-1" in chosen.stdout
    current = explain("--live", "--kubeconfig", config)
    assert current.returncode == 2
    assert current.stdout == ""
    assert current.stderr.count("\n") == 1 and "unreachable" in current.stderr, current.stderr


def forbidden(resource: str) -> Reply:
    """A 403 Status, shaped like the captured Status of lease-update-conflict.json, as RBAC answers it."""
    body = captured_json("lease-update-conflict.json")
    body.update(
        reason="Forbidden",
        code=403,
        message=f'{resource} is forbidden: User "system:serviceaccount:default:me" cannot list resource '
        f'"{resource}" in API group "" at the cluster scope',
        details={"kind": resource},
    )
    return Reply(status=403, body=json.dumps(body).encode())


def test_a_forbidden_list_is_one_line_and_exit_2(tmp_path: Path, double: APIDouble) -> None:
    double.scripts[("/api/v1/services", False)] = [forbidden("services")]
    proc = explain("--live", "--kubeconfig", str(kubeconfig(tmp_path, {"double": double.url}, "double")))
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == (
        "l2guard explain: --live: list services: HTTP 403: services is forbidden: User "
        '"system:serviceaccount:default:me" cannot list resource "services" in API group "" at the cluster scope\n'
    )


def test_metallb_missing_is_one_line_and_exit_2(tmp_path: Path, double: APIDouble) -> None:
    """No metallb.io resources: the API server answers 404 (the double's answer for an unscripted path)."""
    del double.scripts[("/apis/metallb.io/v1beta1/namespaces/metallb-system/ipaddresspools", False)]
    proc = explain("--live", "--kubeconfig", str(kubeconfig(tmp_path, {"double": double.url}, "double")))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("l2guard explain: --live: list ipaddresspools: HTTP 404")
    assert proc.stderr.endswith("(is MetalLB installed?)\n")


def test_an_unreachable_api_server_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = kubeconfig(tmp_path, {"gone": f"http://127.0.0.1:{free_port()}"}, "gone")
    proc = explain("--live", "--kubeconfig", str(config))
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("l2guard explain: --live: list nodes: API server unreachable: "), proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "no such file"),
        ("hello\n", "not a usable kubeconfig"),
        ("apiVersion: v1\nkind: Config\n", "not a usable kubeconfig"),
    ],
)
def test_a_bad_kubeconfig_is_one_line_and_exit_2(tmp_path: Path, content: str | None, reason: str) -> None:
    config = tmp_path / "kubeconfig"
    if content is not None:
        config.write_text(content)
    proc = explain("--live", "--kubeconfig", str(config))
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"l2guard explain: --live: kubeconfig {config}: {reason}"), proc.stderr
    assert proc.stderr.endswith("or explain FILEs from kubectl get -o json\n")
    assert proc.stderr.count("\n") == 1


def test_an_unknown_context_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = kubeconfig(tmp_path, {"double": "http://127.0.0.1:1"}, "double")
    proc = explain("--live", "--kubeconfig", str(config), "--context", "prod")
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"l2guard explain: --live: kubeconfig {config}: not a usable kubeconfig")
    assert "prod" in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
