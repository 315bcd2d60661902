"""`l2guard explain`: why is (or isn't) each LoadBalancer IP announced, and what would fix it.

Reads Kubernetes objects (files or stdin, or with `--live` the live cluster through the adapter, `--kubeconfig`
and `--context` as kubectl has them), asks the core for the plan, and renders it as a short table or as the stable
JSON documented in the README. Exit status: 0 when every LoadBalancer service that is ours has an announcer, 3 when
at least one has none (or MetalLB would refuse the configuration, so none is announced from it), 2 for unreadable
input, bad usage, or a live read that failed (unreachable, forbidden, bad kubeconfig: one line).

`--live` lists every kind once (`l2guard.kube.snapshot`) and hands the lists to the same loader as files, so the
verdicts for the same objects are the same; the speakers' Leases decide who is alive, as the view decides for the
webhook and the speaker (no speaker Lease at all: every node counts as alive; otherwise only alive leases count),
except that a single read cannot observe renewals: a lease is alive while renewTime + leaseDurationSeconds is later
than the API server's clock (`l2core.liveness.judge_snapshot`). `--alive` is refused with `--live`: the Leases say
who is alive, and two answers to one question would make the output ambiguous.

This module renders; it decides nothing. Eligibility, election and remedies come from `l2core`.

Names and values come from the input, and a terminal obeys what they hold: an escape sequence recolours or hides
text, U+202E reverses it, a carriage return overwrites the line. The table and the error line therefore show every
non-printable character as its Python escape (`\\x1b`, `\\u202e`, `\\r`). The JSON output is escaped by `json`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any, TextIO

from l2core.diagnose import fixes
from l2core.eligibility import REASON_TEXT, NodeVerdict, Reason
from l2core.liveness import STATE_EXPIRED, SnapshotVerdict, judge_snapshot
from l2core.model import EXCLUDE_LABEL, Node
from l2core.parse import ParsedCluster, build_cluster
from l2core.plan import Plan, Status, plan
from l2core.problems import total as problem_count
from l2core.text import and_more, escaped
from l2guard.loader import InputError, load_documents, parse_text
from l2guard.settings import ELIGIBILITY_FLAGS, SHARED, SharedSettings, add_shared_arguments, read_options, read_shared

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_NOBODY = 3
SCHEMA_VERSION = 1
SAMPLES = ("kubeadm-single-node", "karpenter-drain")
NODES_PER_LINE = 6
# Every flag that decides eligibility, as the webhook and the speaker take them, and the live source's.
LIVE_FLAGS = ("--kubeconfig", "--context", "--namespace")
SHARED_FLAGS = (*ELIGIBILITY_FLAGS, *LIVE_FLAGS)


class UsageError(Exception):
    """Bad command-line usage; the message is one line."""


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "explain",
        help="explain which node announces each LoadBalancer IP, or why none does",
        description="Explain which node announces each LoadBalancer IP, or why none does. Input: Kubernetes "
        "objects as multi-document YAML, a List, or `kubectl get nodes,svc,endpointslices,ipaddresspools,"
        "l2advertisements -A -o json`. Exit status: 0 all announced, 3 some IP has no announcer, 2 bad input.",
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="input files; '-' or none reads stdin")
    p.add_argument("--sample", choices=SAMPLES, help="explain a bundled sample cluster instead of FILEs")
    p.add_argument(
        "--live",
        action="store_true",
        help="read the live cluster (speaker Leases included) instead of FILEs, through --kubeconfig and --context "
        "as kubectl does; the Leases in --namespace say which speakers are alive",
    )
    p.add_argument(
        "--alive", metavar="NODE,NODE,...", help="nodes whose speaker runs (default: every node); not with --live"
    )
    add_shared_arguments(p, SHARED_FLAGS)
    p.add_argument("-o", "--output", choices=("table", "json"), default="table")
    p.set_defaults(run=run)


def _sample_text(name: str) -> str:
    return resources.files("l2guard").joinpath("samples", f"{name}.yaml").read_text(encoding="utf-8")


class LiveError(Exception):
    """The live read failed (no usable kubeconfig, the API unreachable, forbidden, ...); the message is one line."""


@dataclass(frozen=True)
class Speakers:
    """The speakers' Leases as the live read found them, judged at the API server's time."""

    namespace: str
    server_time: float | None  # POSIX seconds on the API server's clock; None when it sent no usable Date
    verdicts: Mapping[str, SnapshotVerdict]  # by node

    @property
    def alive(self) -> frozenset[str] | None:
        """What the plan is made with: None (every node counts) when no speaker Lease exists, as in the view."""
        if not self.verdicts:
            return None
        return frozenset(node for node, v in self.verdicts.items() if v.alive)


def namespace_from(args: argparse.Namespace, environ: Mapping[str, str]) -> str:
    """The speakers' namespace for --live (--namespace, then its environment twin, then the default)."""
    option = SHARED["--namespace"]
    values, problems = read_options(args, environ, [option])  # a str option: nothing to convert
    if problems or not values[option.dest]:
        raise UsageError("; ".join(problems) or f"{option.env} must not be empty")
    return str(values[option.dest])


def load_live(shared: SharedSettings, *, namespace: str) -> tuple[ParsedCluster, Speakers]:
    """The live cluster through the adapter (imported here: only `--live` needs the kubernetes client)."""
    from l2guard.kube.client import KubeconfigError, make_api_client
    from l2guard.kube.errors import KubeError
    from l2guard.kube.snapshot import read_cluster
    from l2guard.view import lease_record

    try:
        api = make_api_client(shared.kubeconfig, context=shared.context)
    except KubeconfigError as exc:
        raise LiveError(
            f"--live: kubeconfig {exc.path}: {exc.reason}; give a working --kubeconfig FILE and --context NAME, "
            "or explain FILEs from kubectl get -o json"
        ) from exc
    try:
        with api:
            read = read_cluster(api, metallb_namespace=shared.metallb_namespace, namespace=namespace)
    except KubeError as exc:
        raise LiveError(f"--live: {exc.reason}") from exc
    parsed = build_cluster(read.documents, metallb_namespace=shared.metallb_namespace)
    records = dict(r for r in (lease_record(raw) for raw in read.leases) if r is not None)
    renewed = {node: t for node, r in records.items() if (t := micro_time(r.renew_time)) is not None}
    return parsed, Speakers(namespace, read.server_time, judge_snapshot(records, renewed, read.server_time))


def micro_time(text: str | None) -> float | None:
    """A Kubernetes MicroTime (RFC 3339 with an offset, `2026-11-27T06:30:00.000000Z`) as POSIX seconds, or None
    when it is absent or not one."""
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when.timestamp() if when.tzinfo is not None else None


def load(args: argparse.Namespace, *, metallb_namespace: str) -> ParsedCluster:
    if args.sample:
        if args.files:
            raise UsageError("give either --sample or FILEs, not both")
        docs = parse_text(_sample_text(args.sample), source=f"sample {args.sample}")
    else:
        if not args.files and sys.stdin.isatty():
            raise UsageError("no input: give FILEs, '-' for stdin, or --sample NAME")
        docs = load_documents(args.files or ["-"])
    parsed = build_cluster(docs, metallb_namespace=metallb_namespace)
    _check_found(parsed)
    return parsed


def _check_found(parsed: ParsedCluster) -> None:
    """Nothing that is even a broken object of ours (only scalars, lists, other kinds): unreadable input, not a
    cluster in which "every LoadBalancer IP has an announcer". Raises InputError."""
    if parsed.object_count == 0 and parsed.outside_namespace and all(not p.obj for p in parsed.problems):
        raise InputError(
            f"nothing MetalLB reads in the input: {parsed.outside_namespace_text()} (see --metallb-namespace)"
        )
    if parsed.object_count == 0 and all(not p.obj for p in parsed.problems):
        raise InputError(
            "no Node, Service, EndpointSlice, IPAddressPool or L2Advertisement found in the input"
            + (f" (ignored {sum(parsed.ignored.values())} object(s) of other kinds)" if parsed.ignored else "")
        )


def settings_from(args: argparse.Namespace, environ: Mapping[str, str]) -> SharedSettings:
    """The shared flags explain takes, from the command line and then the environment, as every command reads
    them, and the choice of input checked. Raises UsageError with every problem on one line."""
    settings, problems = read_shared(args, environ, SHARED_FLAGS)
    problems += _source_problems(args)
    if problems:
        raise UsageError("; ".join(problems))
    return settings


def _source_problems(args: argparse.Namespace) -> list[str]:
    """One input: FILEs (or stdin), --sample, or --live. --kubeconfig, --context and --namespace on the command line
    choose the live cluster, so they need --live; their environment twins may be set for other commands and are
    ignored without it. --alive is for files only."""
    problems = []
    if args.live and (args.files or args.sample):
        problems.append("--live reads the cluster: give it without FILEs or --sample")
    if args.live and args.alive is not None:
        problems.append("--alive is for FILEs: with --live the speakers' Leases say who is alive")
    given = {flag: value for flag in LIVE_FLAGS if (value := getattr(args, SHARED[flag].dest)) is not None}
    if given and not args.live:
        verb = "chooses" if len(given) == 1 else "choose"
        problems.append(f"{' and '.join(given)} {verb} the live cluster: add --live")
    problems += [f"{flag} must not be empty" for flag, value in given.items() if not value]
    return problems


def alive_from(args: argparse.Namespace, parsed: ParsedCluster) -> frozenset[str] | None:
    if args.alive is None:
        return None
    names = frozenset(n.strip() for n in args.alive.split(",") if n.strip())
    unknown = sorted(names - parsed.cluster.nodes.keys())
    if unknown:
        raise UsageError(f"--alive names node(s) not in the input: {', '.join(unknown)}")
    return names


def run(args: argparse.Namespace, *, out: TextIO, err: TextIO) -> int:
    speakers: Speakers | None = None
    try:
        shared = settings_from(args, os.environ)
        if args.live:
            parsed, speakers = load_live(shared, namespace=namespace_from(args, os.environ))
            _check_found(parsed)
            alive = speakers.alive
        else:
            parsed = load(args, metallb_namespace=shared.metallb_namespace)
            alive = alive_from(args, parsed)
    except (InputError, UsageError, LiveError) as exc:
        err.write(escaped(f"l2guard explain: {exc}") + "\n")
        return EXIT_USAGE
    result = plan(parsed.cluster, shared.eligibility, alive=alive)
    if args.output == "json":
        json.dump(to_json(result, parsed, alive=alive, speakers=speakers), out, indent=2)
        out.write("\n")
    else:
        out.write(render_table(result, parsed, speakers=speakers))
    nobody = any(sp.status is Status.NOBODY for sp in result.services.values())
    return EXIT_NOBODY if nobody or parsed.pool_overlaps or parsed.invalid_config else EXIT_OK


# ----- JSON -------------------------------------------------------------------------------------------------------


def _label_value(node: Node | None) -> str | None:
    return node.labels.get(EXCLUDE_LABEL) if node is not None else None


def _unschedulable(node: Node | None) -> bool:
    return node is not None and node.unschedulable


def _server_time(speakers: Speakers) -> str | None:
    if speakers.server_time is None:
        return None
    return datetime.fromtimestamp(speakers.server_time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def speakers_json(speakers: Speakers | None) -> dict[str, Any] | None:
    """The `speakers` key: null unless --live."""
    if speakers is None:
        return None
    return {
        "namespace": speakers.namespace,
        "serverTime": _server_time(speakers),
        "leases": [
            {
                "node": node,
                "alive": v.alive,
                "state": v.state,
                "seconds": round(v.seconds, 1) if v.seconds is not None else None,
            }
            for node, v in sorted(speakers.verdicts.items())
        ],
    }


def to_json(
    result: Plan, parsed: ParsedCluster, *, alive: frozenset[str] | None, speakers: Speakers | None = None
) -> dict[str, Any]:
    services = []
    for key in sorted(result.services):
        sp = result.services[key]
        namespace, _, name = key.partition("/")
        ours = sp.status in (Status.ANNOUNCED, Status.NOBODY)
        services.append(
            {
                "namespace": namespace,
                "name": name,
                "ips": list(sp.ips),
                "pool": sp.pool,
                "status": sp.status.value,
                "announcer": sp.announcer,
                "loadBalancerClass": sp.load_balancer_class,
                "serviceReasons": sorted(r.value for r in sp.service_reasons),
                "nodes": [
                    {
                        "name": v.name,
                        "eligible": v.eligible,
                        "reasons": [r.value for r in v.sorted_reasons()],
                        "excludeLabel": _label_value(parsed.cluster.nodes.get(v.name)),
                        "unschedulable": _unschedulable(parsed.cluster.nodes.get(v.name)),
                    }
                    for v in (result.verdicts(key) if ours else [])
                ],
                "fixes": fixes(result, key, nodes=parsed.cluster.nodes, pool_overlaps=parsed.pool_overlaps),
            }
        )
    summary_key = {
        Status.ANNOUNCED: "announced",
        Status.NOBODY: "nobody",
        Status.NOT_OURS: "notOurs",
        Status.NO_IP: "noIP",
    }
    counts = dict.fromkeys(summary_key.values(), 0)
    for sp in result.services.values():
        counts[summary_key[sp.status]] += 1
    return {
        "schemaVersion": SCHEMA_VERSION,
        "settings": {
            "labelSemantics": result.settings.label_semantics.value,
            "ignoreExcludeLabel": result.settings.ignore_exclude_label,
            "loadBalancerClass": result.settings.load_balancer_class,
            "alive": sorted(alive) if alive is not None else None,
            "metallbNamespace": parsed.metallb_namespace,
        },
        "summary": {"nodes": len(result.node_reasons), "services": len(result.services), **counts},
        "speakers": speakers_json(speakers),
        "services": services,
        "problems": [
            {"object": p.obj, "field": p.path, "message": p.message} for p in parsed.problems if not p.omitted
        ],
        "problemsOmitted": sum(p.omitted for p in parsed.problems),
        "refusals": [{"object": p.obj, "field": p.path, "message": p.message} for p in parsed.refusals],
        "notes": [{"object": p.obj, "field": p.path, "message": p.message} for p in parsed.warnings],
        "ignored": dict(sorted(parsed.ignored.items())),
        "outsideMetallbNamespace": dict(sorted(parsed.outside_namespace.items())),
    }


# ----- table ------------------------------------------------------------------------------------------------------


def _node_list(names: list[str]) -> str:
    return and_more(names, NODES_PER_LINE)


MAX_VALUE_SHOWN = 63  # the longest label value Kubernetes accepts


def _node_state(node: Node | None) -> str:
    """`[label "karpenter", unschedulable]`: what the drain policy reads, or "" for a node with neither."""
    parts = []
    value = _label_value(node)
    if value is not None:
        shown = value if len(value) <= MAX_VALUE_SHOWN else value[:MAX_VALUE_SHOWN] + "…"
        parts.append(f"label {json.dumps(shown, ensure_ascii=False)}")
    if _unschedulable(node):
        parts.append("unschedulable")
    return f" [{', '.join(parts)}]" if parts else ""


def _verdict_lines(
    verdicts: Sequence[NodeVerdict], announcer: str | None, nodes: Mapping[str, Node] | None = None
) -> list[str]:
    """Nodes grouped by identical verdict, so 500 healthy nodes take one line, not 500. Each name shows the exclude
    label's value and `unschedulable` when set, so a node being drained is recognisable."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for v in verdicts:
        label = v.name + _node_state((nodes or {}).get(v.name)) + (" (announcer)" if v.name == announcer else "")
        groups.setdefault(tuple(r.value for r in v.sorted_reasons()), []).append(label)
    lines = []
    for reasons, names in sorted(groups.items(), key=lambda kv: (bool(kv[0]), kv[0])):
        if not reasons:
            lines.append(f"    eligible  {_node_list(names)}")
        else:
            text = "; ".join(REASON_TEXT[Reason(r)] for r in reasons)
            lines.append(f"    rejected  {_node_list(names)}: {text}")
    return lines


def speaker_lines(speakers: Speakers, nodes: Mapping[str, Node]) -> list[str]:
    """Which speakers are alive, from the Leases; every line starts with "speakers"."""
    where = f"Leases in namespace {speakers.namespace}"
    if not speakers.verdicts:
        return [f"speakers: no speaker Lease ({where}): every node counts as alive"]
    if speakers.server_time is None:
        clock = "the API server sent no Date, so every held Lease counts as alive"
    else:
        clock = f"by the API server's clock, {_server_time(speakers)}"
    alive = sorted(node for node, v in speakers.verdicts.items() if v.alive)
    lines = [f"speakers alive ({where}, {clock}): {_node_list(alive) if alive else 'none'}"]
    dead = []
    for node, v in sorted(speakers.verdicts.items()):
        if v.alive:
            continue
        if v.state == STATE_EXPIRED and v.seconds is not None:
            dead.append(f"{node} (expired {v.seconds:.0f} s ago)")
        else:
            dead.append(f"{node} ({v.state})")
    dead += [f"{node} (no Lease)" for node in sorted(nodes.keys() - speakers.verdicts.keys())]
    if dead:
        lines.append(f"speakers not alive: {_node_list(dead)}")
    return lines


def render_table(result: Plan, parsed: ParsedCluster, *, speakers: Speakers | None = None) -> str:
    lines: list[str] = []
    s = result.settings
    mode = "ignored (--ignore-exclude-lb)" if s.ignore_exclude_label else f"label semantics {s.label_semantics}"
    ours = f"; ours: loadBalancerClass {s.load_balancer_class}" if s.load_balancer_class is not None else ""
    lines.append(
        f"{len(result.node_reasons)} node(s), {len(result.services)} LoadBalancer service(s); exclude label: {mode}"
        + ours
    )
    if speakers is not None:
        lines.extend(speaker_lines(speakers, parsed.cluster.nodes))
    if parsed.pool_overlaps:
        lines.append(
            "MetalLB REFUSES this configuration (overlapping IPAddressPools, listed below) and keeps the one it had: "
            "the verdicts hold only once the pools are disjoint"
        )
    for key in sorted(result.services):
        sp = result.services[key]
        ips = ", ".join(sp.ips) or "-"
        lines.append("")
        if sp.status is Status.NOT_OURS:
            theirs = f"loadBalancerClass {sp.load_balancer_class}" if sp.load_balancer_class else "no loadBalancerClass"
            lines.append(f"{key}  {ips}  not ours ({theirs})")
            continue
        if sp.status is Status.NO_IP:
            lines.append(f"{key}  pending: no IP assigned yet, nothing to announce")
            continue
        owner = sp.announcer if sp.announcer else "NOBODY"
        pool = f"pool {sp.pool}" if sp.pool else "no pool"
        lines.append(f"{key}  {ips}  ({pool})  announcer: {owner}")
        lines.extend(_verdict_lines(result.verdicts(key), sp.announcer, parsed.cluster.nodes))
        for fix in fixes(result, key, nodes=parsed.cluster.nodes, pool_overlaps=parsed.pool_overlaps):
            lines.append(f"    fix: {fix}")
    if parsed.problems:
        lines.append("")
        lines.append(f"{problem_count(parsed.problems)} problem(s) in the input (those objects were left out):")
        if parsed.invalid_config:
            lines.append(
                "  MetalLB refuses a configuration with an invalid IPAddressPool or L2Advertisement and keeps running"
                " its last valid one; the plan above is the configuration without them"
            )
        lines.extend(f"  - {p}" for p in parsed.problems)
    if parsed.warnings:
        lines.append("")
        lines.append(f"{len(parsed.warnings)} note(s) on the input (accepted, as MetalLB does):")
        lines.extend(f"  - {p}" for p in parsed.warnings)
    if parsed.refusals:
        lines.append("")
        lines.append(f"{len(parsed.pool_overlaps)} overlap(s) between IPAddressPools (MetalLB refuses them all):")
        lines.extend(f"  - {p}" for p in parsed.refusals)
    if parsed.ignored:
        total = sum(parsed.ignored.values())
        kinds = ", ".join(f"{k} x{n}" for k, n in sorted(parsed.ignored.items()))
        lines.append("")
        lines.append(f"ignored {total} object(s) of other kinds: {kinds}")
    if parsed.outside_namespace:
        lines.append("")
        lines.append(parsed.outside_namespace_text())
    nobody = sum(1 for sp in result.services.values() if sp.status is Status.NOBODY)
    lines.append("")
    if parsed.pool_overlaps:
        lines.append("MetalLB refuses this configuration: nothing in it is announced until the pools are disjoint")
    elif nobody:
        lines.append(f"{nobody} LoadBalancer service(s) have NO announcer")
    else:
        lines.append("every LoadBalancer IP has an announcer")
    return "".join(escaped(line) + "\n" for line in lines)
