"""`l2guard explain` as an operator runs it: a real process, real files, real exit codes."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.builders import DATA, advertisement, endpoints, node, pool, service

EXCLUDE = "node.kubernetes.io/exclude-from-external-load-balancers"


def l2guard(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "l2guard.cli", *args], input=stdin, capture_output=True, text=True, timeout=60
    )


def assert_no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stdout + proc.stderr


def test_the_bundled_kubeadm_sample_shows_nobody_and_names_the_label() -> None:
    proc = l2guard("explain", "--sample", "kubeadm-single-node")
    assert proc.returncode == 3, proc.stderr
    assert "default/web  192.0.2.100  (pool lan)  announcer: NOBODY" in proc.stdout
    assert f'cp-1 [label ""]: excluded by label {EXCLUDE}' in proc.stdout
    assert f"fix: remove label {EXCLUDE} from node cp-1, or start the speaker with --ignore-exclude-lb" in proc.stdout
    assert max(len(line) for line in proc.stdout.splitlines()) <= 160


def test_the_ignore_switch_fixes_the_sample() -> None:
    proc = l2guard("explain", "--sample", "kubeadm-single-node", "--ignore-exclude-lb")
    assert proc.returncode == 0
    assert "announcer: cp-1" in proc.stdout and "every LoadBalancer IP has an announcer" in proc.stdout


def test_json_output_follows_the_documented_schema() -> None:
    proc = l2guard("explain", "--sample", "karpenter-drain", "-o", "json")
    assert proc.returncode == 3
    doc = json.loads(proc.stdout)
    assert doc["schemaVersion"] == 1
    assert doc["summary"] == {"nodes": 3, "services": 3, "announced": 2, "nobody": 1, "notOurs": 0, "noIP": 0}
    by_name = {s["name"]: s for s in doc["services"]}
    ingress = by_name["ingress"]
    assert set(ingress) >= {"namespace", "name", "ips", "pool", "announcer", "nodes"}
    assert (ingress["namespace"], ingress["ips"], ingress["pool"], ingress["announcer"]) == (
        "edge",
        ["192.0.2.101"],
        "lan",
        None,
    )
    assert {n["name"]: n["reasons"] for n in ingress["nodes"]} == {
        "cp-1": ["excluded-by-label", "no-serving-local-endpoint"],
        "worker-1": ["excluded-by-label"],
        "worker-2": ["no-serving-local-endpoint"],
    }
    assert all(n["eligible"] is False for n in ingress["nodes"])
    assert by_name["dns"]["ips"] == ["192.0.2.102", "2001:db8::102"] and by_name["dns"]["announcer"] == "worker-2"


def test_kubectl_get_json_of_the_captured_lists_from_stdin() -> None:
    items = []
    for name in ["nodes", "services", "endpointslices", "ipaddresspools", "l2advertisements"]:
        lst = json.loads((DATA / f"api/list-{name}.json").read_text())
        kind = lst["kind"][: -len("List")]
        items += [{"apiVersion": lst["apiVersion"], "kind": kind, **i} for i in lst["items"]]
    items.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})
    kubectl_json = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    proc = l2guard("explain", "-", stdin=kubectl_json)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "default/web  192.0.2.100  (pool lan)  announcer: worker-" in proc.stdout
    assert "ignored 1 object(s) of other kinds: v1 ConfigMap x1" in proc.stdout


def test_several_files_and_the_alive_option(tmp_path: Path) -> None:
    files = []
    for name in ["nodes", "services", "endpointslices", "ipaddresspools", "l2advertisements"]:
        files.append(str(DATA / f"api/list-{name}.json"))
    proc = l2guard("explain", *files, "--alive", "cp-1")
    assert proc.returncode == 3
    assert "speaker not alive on this node" in proc.stdout
    proc = l2guard("explain", *files, "--alive", "worker-1", "--ignore-exclude-lb")
    assert proc.returncode == 0 and "announcer: worker-1" in proc.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty input"),
        ("kind: Node\n  bad: [indent\n", "malformed YAML at line"),
        ("---\n---\n", "no documents found"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", "no Node, Service, EndpointSlice"),
        ("apiVersion: v1\nkind: Node\nmetadata: {name: a, creationTimestamp: 2024-02-30}\n", "invalid YAML value"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("&l {apiVersion: v1, kind: List, items: [*l]}\n", "no Node, Service, EndpointSlice"),  # a List holding itself
        ("!!python/object:os.system {}\n", "malformed YAML"),
        ("hello\n", "no Node, Service, EndpointSlice"),  # echo hello | l2guard explain
        ("- 1\n- two\n", "no Node, Service, EndpointSlice"),  # a top-level list of scalars
        ("42\n", "no Node, Service, EndpointSlice"),
        (
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: a}\n"
            "spec: {addresses: [192.0.2.0/24]}\n",
            "nothing MetalLB reads in the input: 1 IPAddressPool outside metallb-system ignored, as MetalLB does",
        ),
    ],
)
def test_unreadable_input_is_one_line_and_exit_2(tmp_path: Path, content: str, message: str) -> None:
    f = tmp_path / "in.yaml"
    f.write_text(content)
    proc = l2guard("explain", str(f))
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr
    assert_no_traceback(proc)


def test_missing_file_bad_usage_and_unknown_alive_nodes_exit_2() -> None:
    for args in (
        ["explain", "/nonexistent/cluster.yaml"],
        ["explain", "--label-semantics", "sometimes", "--sample", "kubeadm-single-node"],
        ["explain", "--sample", "kubeadm-single-node", "--alive", "ghost"],
        ["explain", "--sample", "kubeadm-single-node", "extra.yaml"],
        ["frobnicate"],
        [],
    ):
        proc = l2guard(*args)
        assert proc.returncode == 2, args
        assert_no_traceback(proc)
        assert proc.stderr.strip(), args


def test_a_pool_with_a_broken_cidr_is_listed_not_crashed_on(tmp_path: Path) -> None:
    sample = (Path(__file__).resolve().parent.parent / "l2guard/samples/kubeadm-single-node.yaml").read_text()
    broken = sample.replace("192.0.2.100-192.0.2.120", "192.0.2.300/24")
    f = tmp_path / "broken.yaml"
    f.write_text(broken)
    proc = l2guard("explain", str(f), "--ignore-exclude-lb")
    assert_no_traceback(proc)
    assert proc.returncode == 3  # the pool is refused as a whole, like MetalLB refuses an invalid config
    assert "IPAddressPool metallb-system/lan: spec.addresses[0]: '192.0.2.300/24' is not a valid CIDR" in proc.stdout
    assert "the IP is in no IPAddressPool" in proc.stdout


def test_version_and_the_bare_command_list_the_subcommands() -> None:
    version = l2guard("--version")
    assert version.returncode == 0 and version.stdout.strip() == "l2guard 0.2.0"
    bare = l2guard()
    assert bare.returncode == 2 and bare.stdout == ""
    for line in (
        "explain   explain which node announces each LoadBalancer IP, or why none does",
        "webhook   serve the admission webhook (HTTPS)",
        "announce  answer ARP/NDP for IPs on this node until interrupted",
    ):
        assert line in bare.stderr
    assert_no_traceback(bare)


def _yaml_docs(*docs: dict[str, object]) -> str:
    return "\n---\n".join(json.dumps(d) for d in docs) + "\n"


def test_pools_and_advertisements_outside_the_metallb_namespace_are_ignored_as_metallb_does(tmp_path: Path) -> None:
    f = tmp_path / "cluster.yaml"
    f.write_text(
        _yaml_docs(
            node("n1"),
            service("web", "198.51.100.10"),
            endpoints("web", ["n1"]),
            # Only the default namespace holds a pool and an advertisement for the IP: MetalLB never reads them.
            pool("team", "198.51.100.0/24", namespace="default"),
            advertisement("team", namespace="default"),
        )
    )
    proc = l2guard("explain", str(f))
    assert_no_traceback(proc)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "default/web  198.51.100.10  (no pool)  announcer: NOBODY" in proc.stdout
    assert "1 IPAddressPool and 1 L2Advertisement outside metallb-system ignored, as MetalLB does" in proc.stdout
    doc = json.loads(l2guard("explain", str(f), "-o", "json").stdout)
    assert doc["outsideMetallbNamespace"] == {"IPAddressPool": 1, "L2Advertisement": 1}
    assert doc["settings"]["metallbNamespace"] == "metallb-system"
    # A MetalLB installed in "default" reads exactly these.
    proc = l2guard("explain", str(f), "--metallb-namespace", "default")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "default/web  198.51.100.10  (pool team)  announcer: n1" in proc.stdout
    assert "outside" not in proc.stdout
    empty = l2guard("explain", str(f), "--metallb-namespace", "")
    assert empty.returncode == 2 and "--metallb-namespace must not be empty" in empty.stderr


def test_overlapping_pools_are_named_as_a_refused_configuration_with_no_useless_fix(tmp_path: Path) -> None:
    f = tmp_path / "cluster.yaml"
    docs = [
        node("n1"),
        service("web", "198.51.100.5"),
        endpoints("web", ["n1"]),
        pool("a", "198.51.100.0/24"),
        pool("b", "198.51.100.5/32"),
        advertisement("b", ipAddressPools=["b"]),
        pool("c", "198.51.100.0/24", namespace="default"),  # not read by MetalLB: no overlap of its own
    ]
    f.write_text(_yaml_docs(*docs))
    proc = l2guard("explain", str(f))
    assert_no_traceback(proc)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "create an L2Advertisement" not in proc.stdout
    fix = [line.strip() for line in proc.stdout.splitlines() if line.strip().startswith("fix:")]
    assert fix == [
        "fix: MetalLB refuses the whole configuration: pool metallb-system/b entry 198.51.100.5/32 overlaps "
        "198.51.100.0/24 of pool metallb-system/a (both hold 198.51.100.5); make the pools disjoint, nothing else "
        "takes effect until then"
    ]
    assert "pool default/c" not in proc.stdout and "metallb-system/c" not in proc.stdout
    assert "every LoadBalancer IP has an announcer" not in proc.stdout
    doc = json.loads(l2guard("explain", str(f), "-o", "json").stdout)
    assert doc["refusals"] == [
        {
            "object": "IPAddressPool metallb-system/b",
            "field": "spec.addresses[0]",
            "message": "198.51.100.5/32 overlaps 198.51.100.0/24 of pool metallb-system/a (both hold 198.51.100.5): "
            "MetalLB refuses the whole configuration",
        }
    ]
    assert doc["problems"] == []
    # Without the overlap the same cluster is announced: the refusal was the only thing wrong.
    f.write_text(_yaml_docs(*docs[:3], docs[4], advertisement("b", ipAddressPools=["b"])))
    fixed = l2guard("explain", str(f))
    assert fixed.returncode == 0 and "announcer: n1" in fixed.stdout, fixed.stdout


def test_an_interface_listed_twice_is_a_note_not_a_problem(tmp_path: Path) -> None:
    f = tmp_path / "cluster.yaml"
    f.write_text(
        _yaml_docs(
            node("n1"),
            service("web", "198.51.100.5"),
            endpoints("web", ["n1"]),
            pool("a", "198.51.100.0/24"),
            advertisement("a", interfaces=["eth0", "eth0"]),
        )
    )
    proc = l2guard("explain", str(f))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "announcer: n1" in proc.stdout
    assert "  - L2Advertisement metallb-system/a: spec.interfaces: interface eth0 is listed twice" in proc.stdout
    doc = json.loads(l2guard("explain", str(f), "-o", "json").stdout)
    assert doc["problems"] == []
    assert doc["notes"] == [
        {
            "object": "L2Advertisement metallb-system/a",
            "field": "spec.interfaces",
            "message": "interface eth0 is listed twice",
        }
    ]


def test_the_karpenter_sample_says_the_draining_node_leaves_instead_of_removing_its_label() -> None:
    proc = l2guard("explain", "--sample", "karpenter-drain")
    assert proc.returncode == 3, proc.stderr
    assert f"remove label {EXCLUDE} from node worker-1" not in proc.stdout
    assert (
        "    fix: node worker-1 is being disrupted by Karpenter (label value karpenter) and is expected to leave: "
        "keep its label and let the IP move to another node\n"
        "    fix: run a ready pod of the service on node worker-2\n"
    ) in proc.stdout
    assert f'    rejected  worker-1 [label "karpenter", unschedulable]: excluded by label {EXCLUDE}\n' in proc.stdout
    doc = json.loads(l2guard("explain", "--sample", "karpenter-drain", "-o", "json").stdout)
    ingress = next(s for s in doc["services"] if s["name"] == "ingress")
    state = {n["name"]: (n["excludeLabel"], n["unschedulable"]) for n in ingress["nodes"]}
    assert state == {"cp-1": ("", False), "worker-1": ("karpenter", True), "worker-2": (None, False)}


# The command as `python -m l2guard.cli` runs it, but with PyYAML's libyaml extension made unimportable: the
# pure-Python fallback loader, as on a machine where PyYAML was built without libyaml.
WITHOUT_LIBYAML = "import sys; sys.modules['yaml._yaml'] = None; from l2guard.cli import main; sys.exit(main())"


def l2guard_capped(*args: str, libyaml: bool = True) -> subprocess.CompletedProcess[str]:
    """As `l2guard`, under a 1 GiB address-space cap and a 30 s timeout: an input that explodes fails the test
    instead of the machine (the alias bomb below once took 100 s and 10.7 GB)."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    start = ["-m", "l2guard.cli"] if libyaml else ["-c", WITHOUT_LIBYAML]
    return subprocess.run([sys.executable, *start, *args], capture_output=True, text=True, timeout=30, preexec_fn=cap)


def alias_bomb(levels: int, width: int) -> str:
    """A pool whose spec.autoAssign is `levels` nested lists of `width` aliases each: width**levels strings."""
    lines = [
        "apiVersion: metallb.io/v1beta1",
        "kind: IPAddressPool",
        "metadata: {name: lan, namespace: metallb-system}",
    ]
    lines.append("x:")
    lines.append("  l0: &l0 [" + ", ".join(["lol"] * width) + "]")
    for level in range(1, levels + 1):
        lines.append(f"  l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * width) + "]")
    lines.append(f"spec: {{addresses: [192.0.2.0/24], autoAssign: *l{levels}}}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("libyaml", [True, False], ids=["libyaml", "pure-python"])
@pytest.mark.parametrize(("levels", "width"), [(8, 9), (50, 2)], ids=["billion-laughs", "doubling-chain"])
def test_a_yaml_alias_bomb_is_refused_with_one_line_and_exit_2(
    tmp_path: Path, levels: int, width: int, libyaml: bool
) -> None:
    f = tmp_path / "bomb.yaml"
    f.write_text(alias_bomb(levels, width))
    assert f.stat().st_size < 1500
    proc = l2guard_capped("explain", str(f), libyaml=libyaml)
    assert_no_traceback(proc)
    assert proc.returncode == 2, proc.stderr[-500:]
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"l2guard explain: {f}: refused: YAML aliases would expand to more than 10,000 nodes (an alias bomb?)"
    ]


def test_a_few_yaml_aliases_as_manifests_use_them_still_load(tmp_path: Path) -> None:
    labels = ["&labels {zone: a}"] + ["*labels"] * 49  # one anchor, 49 aliases to it
    items = "".join(
        f"  - {{kind: Node, apiVersion: v1, metadata: {{name: n{i}, labels: {lab}}}}}\n" for i, lab in enumerate(labels)
    )
    f = tmp_path / "nodes.yaml"
    f.write_text("apiVersion: v1\nkind: List\nitems:\n" + items)
    proc = l2guard("explain", str(f))
    assert_no_traceback(proc)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("50 node(s), 0 LoadBalancer service(s)")


LONE_SURROGATE_CLUSTER = (
    '{"apiVersion": "v1", "kind": "List", "items": ['
    '{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n\\udfff1"}},'
    '{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web\\udfff", "namespace": "default"},'
    ' "spec": {"type": "LoadBalancer"}, "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.100"}]}}},'
    '{"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool", "metadata": {"name": "lan",'
    ' "namespace": "metallb-system"}, "spec": {"addresses": ["192.0.2.0/24"]}}]}'
)


def test_a_lone_surrogate_in_a_name_is_printed_as_an_escape_not_exit_70() -> None:
    proc = l2guard("explain", "-", stdin=LONE_SURROGATE_CLUSTER)
    assert_no_traceback(proc)
    assert proc.returncode == 3, proc.stderr  # no L2Advertisement: nobody announces, as for any such cluster
    assert "default/web\\udfff  192.0.2.100  (pool lan)  announcer: NOBODY" in proc.stdout
    assert "n\\udfff1" in proc.stdout
    as_json = l2guard("explain", "-", "-o", "json", stdin=LONE_SURROGATE_CLUSTER)
    assert as_json.returncode == 3, as_json.stderr
    assert json.loads(as_json.stdout)["services"][0]["name"] == "web\udfff"


def test_characters_an_ascii_terminal_cannot_show_are_escaped() -> None:
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    cluster = LONE_SURROGATE_CLUSTER.replace("web\\udfff", "caf\\u00e9")
    proc = subprocess.run(
        [sys.executable, "-m", "l2guard.cli", "explain", "-"],
        input=cluster.encode(),
        capture_output=True,
        timeout=60,
        env=env,
    )
    assert b"Traceback" not in proc.stdout + proc.stderr
    assert proc.returncode == 3, proc.stderr
    assert b"default/caf\\xe9  192.0.2.100" in proc.stdout


def test_control_and_bidirectional_characters_from_the_input_are_escaped_in_the_table() -> None:
    hostile = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1\x1b[31m"}},
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web\u202eevil", "namespace": "default\r"},
                "spec": {"type": "LoadBalancer"},
                "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.100"}]}},
            },
            {
                "apiVersion": "metallb.io/v1beta1",
                "kind": "IPAddressPool",
                "metadata": {"name": "lan\u2028x", "namespace": "metallb-system"},
                "spec": {"addresses": ["192.0.2.0/24"]},
            },
            {
                "apiVersion": "metallb.io/v1beta1",
                "kind": "IPAddressPool",
                "metadata": {"name": "bad\nline", "namespace": "metallb-system"},
            },
            {"apiVersion": "v1", "kind": "Conf\x07igMap\u200f", "metadata": {"name": "x"}},
        ],
    }
    proc = l2guard("explain", "-", stdin=json.dumps(hostile))
    assert_no_traceback(proc)
    assert proc.returncode == 3, proc.stderr
    out = proc.stdout
    assert all(c.isprintable() for c in out.replace("\n", "")), [c for c in out if not c.isprintable()]
    assert "1 node(s), 1 LoadBalancer service(s)" in out
    assert "default\\r/web\\u202eevil  192.0.2.100  (pool lan\\u2028x)  announcer: NOBODY" in out
    assert "IPAddressPool metallb-system/bad\\nline: spec.addresses: must list at least one CIDR or range" in out
    assert "ignored 1 object(s) of other kinds: v1 Conf\\x07igMap\\u200f x1" in out


def test_the_error_line_escapes_control_characters_from_a_file_name(tmp_path: Path) -> None:
    f = tmp_path / "in\x1b[2J\n.yaml"
    f.write_text("")
    proc = l2guard("explain", str(f))
    assert proc.returncode == 2
    assert proc.stderr.endswith("in\\x1b[2J\\n.yaml: empty input (expected Kubernetes objects as YAML or JSON)\n")
    assert len(proc.stderr.splitlines()) == 1


def test_yaml_is_read_with_libyaml_when_pyyaml_has_it() -> None:
    # 100k small objects took 46 s with the pure-Python loader; libyaml's parser takes a fraction of that.
    assert yaml.__with_libyaml__, "this PyYAML has no libyaml: explain reads large YAML several times slower"
    from l2guard import loader

    assert issubclass(loader._BoundedLoader, yaml.CSafeLoader)


@pytest.mark.parametrize("sample", ["kubeadm-single-node", "karpenter-drain"])
def test_the_pure_python_fallback_reads_yaml_as_libyaml_does(sample: str) -> None:
    with_c = l2guard_capped("explain", "--sample", sample, "-o", "json")
    without = l2guard_capped("explain", "--sample", sample, "-o", "json", libyaml=False)
    assert with_c.returncode == without.returncode == 3, with_c.stderr + without.stderr
    assert json.loads(with_c.stdout) == json.loads(without.stdout)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--live", "cluster.yaml"], "--live reads the cluster: give it without FILEs or --sample"),
        (["--live", "--sample", "kubeadm-single-node"], "--live reads the cluster: give it without FILEs or --sample"),
        (["--kubeconfig", "k.yaml", "--sample", "kubeadm-single-node"], "--kubeconfig chooses the live cluster: add"),
        (
            ["--kubeconfig", "k.yaml", "--context", "prod", "--sample", "kubeadm-single-node"],
            "--kubeconfig and --context choose the live cluster: add --live",
        ),
        (["--live", "--context", ""], "--context must not be empty"),
        (["--live", "--kubeconfig", ""], "--kubeconfig must not be empty"),
        (["--live", "--namespace", ""], "--namespace must not be empty"),
        (["--live", "--alive", "cp-1"], "--alive is for FILEs: with --live the speakers' Leases say who is alive"),
        (["--namespace", "lb", "--sample", "kubeadm-single-node"], "--namespace chooses the live cluster: add --live"),
    ],
)
def test_live_and_files_are_one_or_the_other_with_one_line(args: list[str], message: str) -> None:
    proc = l2guard("explain", *args)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr, proc.stderr
    assert_no_traceback(proc)


def test_the_kubeconfig_twin_set_for_other_commands_does_not_stop_explain_from_reading_files() -> None:
    env = dict(os.environ, L2GUARD_KUBECONFIG="/nonexistent/kubeconfig", L2GUARD_CONTEXT="prod")
    proc = subprocess.run(
        [sys.executable, "-m", "l2guard.cli", "explain", "--sample", "kubeadm-single-node", "--ignore-exclude-lb"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr


def test_an_endless_or_huge_input_is_refused_not_read_into_memory() -> None:
    """/dev/zero used to fill the memory (MemoryError, exit 70 under a cap); now it is one line and exit 2."""
    proc = l2guard("explain", "/dev/zero")
    assert_no_traceback(proc)
    assert proc.returncode == 2
    assert proc.stderr == "l2guard explain: /dev/zero: larger than 64 MiB; refused\n"


def test_a_capped_problem_list_counts_every_problem_and_an_invalid_pool_is_a_refused_configuration(
    tmp_path: Path,
) -> None:
    """1,000 repeated 10.0.0.0/8 entries are 999 overlaps within one pool: 20 listed, 979 counted (the table said
    '21 problem(s)' and the JSON listed the count as a 21st problem). MetalLB's config.For refuses the whole
    configuration for one invalid pool, so explain exits 3 (it exited 0). Found in review."""
    f = tmp_path / "cluster.yaml"
    docs = [node("n1"), service("web", "198.51.100.10"), endpoints("web", ["n1"]), pool("bad", *["10.0.0.0/8"] * 1000)]
    f.write_text(_yaml_docs(*docs))
    proc = l2guard("explain", str(f))
    assert_no_traceback(proc)
    assert proc.returncode == 3
    assert "999 problem(s) in the input (those objects were left out):" in proc.stdout
    assert "MetalLB refuses a configuration with an invalid IPAddressPool or L2Advertisement" in proc.stdout
    doc = json.loads(l2guard("explain", str(f), "-o", "json").stdout)
    assert len(doc["problems"]) == 20 and doc["problemsOmitted"] == 979
    assert all("more problems" not in p["message"] for p in doc["problems"])
