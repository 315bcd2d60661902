"""`l2guard demo`: the whole story on one machine, with no cluster. The kubeadm exclude label silently kills a
LoadBalancer IP; l2guard warns about it, explains it, moves the IP, or prevents the breakage.

It builds a client, a control-plane node cp-1 and a worker-1 as network namespaces on a snooping bridge
(topology.py), writes a cluster-state file, and runs the real commands on it: `l2guard webhook` in file mode over
HTTPS with freshly generated certificates (warn, and strip), one `l2guard speaker` per node namespace with the real
data plane, a tiny HTTP server behind the VIP on each node (web.py), and `l2guard explain`. Every step checks what
it shows and fails loudly (exit 1, the step `ok: false` in `--summary-json`).

Without root only the parts that need no namespaces run (the webhook's answers and explain). Everything it starts
is killed and every `l2demo-*` namespace deleted on exit, on error, on Ctrl-C and on SIGTERM; a namespace left by an
earlier run that was killed is removed first. It must not touch anything outside its namespaces, its temporary
directory and the loopback ports it picked.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import io
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from l2core.model import EXCLUDE_LABEL
from l2guard.demo import topology
from l2guard.demo.review import Answer, ReviewError, apply_patch, kubectl_lines, label_review, post
from l2guard.demo.topology import CLIENT, NODES, VIP4, VIP6, Host, TopologyError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
PROG = "l2guard demo"
TOOLS = {"ip": "iproute2", "sysctl": "procps"}  # command -> Debian/Ubuntu package
PR_SET_PDEATHSIG = 1  # prctl(2)
START_TIMEOUT = 20.0  # seconds for a process or the first answer; far above the ~1-3 s it takes here
# Per-request timeouts of the client's loops: FAST measures an interruption to within 5 ms; an ORDINARY client
# waits a second, so that a busy machine's scheduling is not counted as a failed request.
FAST = 0.05
ORDINARY = 1.0
STREAK = 40  # answers in a row from the new node that end a request loop (200 ms of answers)

DESCRIPTION = __doc__.split("\n\n")[0] if __doc__ else ""


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("demo", help="the whole story on one machine", description=DESCRIPTION)
    p.add_argument("--non-interactive", action="store_true", help="do not wait for Enter between the steps")
    p.add_argument("--summary-json", metavar="FILE", help="write every step (name, ok, measured figures) to FILE")
    p.set_defaults(run=run)


class StepFailed(Exception):
    """A step's claim did not hold; the message says which, in one line."""


class Interrupted(Exception):
    """SIGINT (Ctrl-C) or SIGTERM: clean up and exit 130."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise Interrupted()


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the demo dies, even by SIGKILL, so no process outlives it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# ----- the cluster state ------------------------------------------------------------------------------------------


def node_object(host: Host, *, excluded: bool) -> dict[str, Any]:
    labels = {"kubernetes.io/hostname": host.name, "kubernetes.io/os": "linux"}
    if host.name.startswith("cp-"):
        labels["node-role.kubernetes.io/control-plane"] = ""
    if excluded:
        labels[EXCLUDE_LABEL] = ""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": host.name, "labels": labels},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "addresses": [{"type": "InternalIP", "address": host.ip4}, {"type": "Hostname", "address": host.name}],
        },
    }


def cluster_state(nodes: list[dict[str, Any]]) -> str:
    """The two nodes, default/web on both VIPs with endpoints on both nodes, a pool and an L2Advertisement."""
    endpoints = [
        {"addresses": [f"10.244.{i}.5"], "conditions": {"ready": True}, "nodeName": host.name}
        for i, host in enumerate(NODES, start=1)
    ]
    docs: list[dict[str, Any]] = [
        *nodes,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "type": "LoadBalancer",
                "externalTrafficPolicy": "Cluster",
                "ipFamilyPolicy": "RequireDualStack",
                "ports": [{"port": 80, "targetPort": 8080}],
            },
            "status": {"loadBalancer": {"ingress": [{"ip": VIP4}, {"ip": VIP6}]}},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": "web-1", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": endpoints,
        },
        {
            "apiVersion": "metallb.io/v1beta1",
            "kind": "IPAddressPool",
            "metadata": {"name": "lan", "namespace": "metallb-system"},
            "spec": {"addresses": ["192.0.2.100-192.0.2.120", "2001:db8::100/120"]},
        },
        {
            "apiVersion": "metallb.io/v1beta1",
            "kind": "L2Advertisement",
            "metadata": {"name": "lan", "namespace": "metallb-system"},
            "spec": {"ipAddressPools": ["lan"]},
        },
    ]
    return "---\n".join(json.dumps(d) + "\n" for d in docs)


# ----- narration --------------------------------------------------------------------------------------------------


@dataclass
class Narrator:
    out: TextIO
    colour: bool
    started: float = field(default_factory=time.monotonic)

    def _paint(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.colour else text

    def clock(self) -> str:
        return f"{time.monotonic() - self.started:5.1f}s"

    def title(self, text: str) -> None:
        self.out.write("\n" + self._paint("1", f"{self.clock()}  {text}") + "\n")
        self.out.flush()

    def say(self, text: str, *, dim: bool = False) -> None:
        for line in text.splitlines() or [""]:
            self.out.write("        " + (self._paint("2", line) if dim else line) + "\n")
        self.out.flush()

    def verdict(self, ok: bool, text: str) -> None:
        mark = self._paint("32", "ok") if ok else self._paint("31;1", "NOT OK")
        self.out.write(f"        {mark}: {text}\n")
        self.out.flush()

    def wait(self, what: str, predicate: Callable[[], object], *, timeout: float) -> float:
        """Poll `predicate` until true (returns the seconds it took) or `timeout` (raises StepFailed). After a
        second a progress line shows: updated in place on a terminal, written once when piped."""
        start = time.monotonic()
        shown = False
        while True:
            if predicate():
                if shown and self.colour:
                    self.out.write("\r\033[K")
                    self.out.flush()
                return time.monotonic() - start
            waited = time.monotonic() - start
            if waited >= timeout:
                if shown and self.colour:
                    self.out.write("\n")
                raise StepFailed(f"{what}: not within {timeout:.0f} s")
            if waited >= 1.0 and (self.colour or not shown):
                line = f"        ... waiting for {what} ({waited:.1f} s)"
                self.out.write(("\r\033[K" + line) if self.colour else line + "\n")
                self.out.flush()
                shown = True
            time.sleep(0.05)


# ----- the demo ---------------------------------------------------------------------------------------------------


@dataclass
class Step:
    name: str
    ok: bool = False
    seconds: float = 0.0
    figures: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "figures": self.figures,
            "error": self.error,
        }


def check(condition: bool, message: str) -> None:
    if not condition:
        raise StepFailed(message)


@dataclass
class Probe:
    proc: subprocess.Popen[bytes]
    path: Path
    limit: float  # seconds to wait for it at most


@dataclass
class Webhook:
    port: int
    proc: subprocess.Popen[bytes]


class Demo:
    def __init__(self, say: Narrator, *, root: bool, interactive: bool, workdir: Path) -> None:
        self.say = say
        self.root = root
        self.interactive = interactive
        self.dir = workdir
        self.state_file = workdir / "cluster.yaml"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: dict[int, Path] = {}
        self.speakers: dict[str, subprocess.Popen[bytes]] = {}
        self.webhooks: dict[str, Webhook] = {}
        self.steps: list[Step] = []
        self.probes = 0
        self.hosts = {h.name: h for h in NODES}
        self.owner = ""
        self.other = ""

    # --- processes

    def spawn(self, argv: list[str], log_name: str) -> subprocess.Popen[bytes]:
        with (self.dir / log_name).open("wb") as log:
            try:
                proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
                )
            except OSError as exc:
                raise StepFailed(f"cannot start {argv[0]}: {exc}") from exc
        self.procs.append(proc)
        self.logs[proc.pid] = self.dir / log_name
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 3.0
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.procs.clear()

    def l2guard(self, *argv: str) -> tuple[int, str]:
        """Run an `l2guard` subcommand in this process (explain, certs) and return its exit code and output."""
        from l2guard.cli import build_parser

        args = build_parser(argv[0]).parse_args(list(argv))
        out, err = io.StringIO(), io.StringIO()
        code: int = args.run(args, out=out, err=err)
        return code, out.getvalue() + err.getvalue()

    def write_state(self, *, excluded: set[str]) -> None:
        text = cluster_state([node_object(h, excluded=h.name in excluded) for h in NODES])
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.state_file)  # the speakers never read half a file

    def explain(self) -> dict[str, Any]:
        code, table = self.l2guard("explain", str(self.state_file))
        self.say.say("$ l2guard explain cluster.yaml", dim=True)
        self.say.say("\n".join(line for line in table.splitlines() if line.strip()))
        _, text = self.l2guard("explain", str(self.state_file), "-o", "json")
        data: dict[str, Any] = json.loads(text)
        service = next(s for s in data["services"] if s["name"] == "web")
        return {"exit": code, "status": service["status"], "announcer": service["announcer"], "fixes": service["fixes"]}

    def start_probe(
        self, vip: str, seconds: float, *, timeout: float = ORDINARY, until: str | None = None, count: int = 1
    ) -> Probe:
        """The client's request loop (web.py) in the background; its answer goes to a file, as a pipe could fill."""
        argv = [sys.executable, "-m", "l2guard.demo.web", "probe", vip, str(seconds), str(timeout)]
        if until:
            argv += [until, str(count)]
        self.probes += 1
        path = self.dir / f"probe-{self.probes}.json"
        with path.open("wb") as out:
            try:
                proc = subprocess.Popen(CLIENT.cmd(argv), stdout=out, stderr=subprocess.DEVNULL,
                                        preexec_fn=_die_with_parent)  # fmt: skip
            except OSError as exc:
                raise StepFailed(f"cannot start the client's requests: {exc}") from exc
        self.procs.append(proc)
        return Probe(proc, path, seconds + 15)

    def finish_probe(self, probe: Probe, what: str) -> list[tuple[float, Any]]:
        """Wait for the loop (a progress line after a second) and return [(start time, who answered or None)]."""
        self.say.wait(what, lambda: probe.proc.poll() is not None, timeout=probe.limit)
        try:
            return [(float(t), who) for t, who in json.loads(probe.path.read_text())]
        except (OSError, ValueError, TypeError) as exc:
            raise StepFailed(f"the client's request loop failed (exit {probe.proc.returncode}): {exc}") from exc

    def probe(
        self, vip: str, seconds: float, *, timeout: float = ORDINARY, until: str | None = None, count: int = 1
    ) -> list[tuple[float, Any]]:
        return self.finish_probe(self.start_probe(vip, seconds, timeout=timeout, until=until, count=count),
                                 f"the client's requests to {vip}")  # fmt: skip

    def neighbour_is(self, vip: str, node: str) -> bool:
        return CLIENT.neighbour(vip)[0] == self.hosts[node].mac

    def neighbour(self, vip: str) -> str:
        mac, state = CLIENT.neighbour(vip)
        who = next((h.name for h in NODES if h.mac == mac), "?")
        return f"{vip} lladdr {mac} {state} ({who})" if mac else f"{vip} {state}"

    def start_webhook(self, name: str, *, policy: str, state: Path, certs: Path) -> None:
        port = free_port()
        argv = [
            sys.executable,
            "-m",
            "l2guard.cli",
            "webhook",
            "--cert-file",
            str(certs / "tls.crt"),
            "--key-file",
            str(certs / "tls.key"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--health-port",
            "0",
            "--cluster-state",
            str(state),
            "--node-policy",
            policy,
            "--log-format",
            "json",
        ]
        self.webhooks[name] = Webhook(port, self.spawn(argv, f"webhook-{name}.log"))

    def webhook_ready(self, hook: Webhook, ca: Path) -> bool:
        if hook.proc.poll() is not None:
            raise StepFailed(f"the webhook exited: {self.tail(hook.proc)}")
        try:
            with socket.create_connection(("127.0.0.1", hook.port), timeout=1) as raw:
                ssl.create_default_context(cafile=str(ca)).wrap_socket(raw, server_hostname="127.0.0.1").close()
        except OSError:
            return False
        return True

    def tail(self, proc: subprocess.Popen[bytes]) -> str:
        """The last line `proc` wrote, shortened."""
        lines = self.logs[proc.pid].read_text(errors="replace").strip().splitlines()
        return lines[-1][:300] if lines else "no output"

    def review(self, hook: str, node: str) -> tuple[dict[str, Any], Answer]:
        review = label_review(node_object(self.hosts[node], excluded=False))
        self.say.say(f"$ kubectl label node {node} {EXCLUDE_LABEL}=", dim=True)
        try:
            answer = post(review, port=self.webhooks[hook].port, ca_file=str(self.dir / "certs" / "ca.crt"))
        except ReviewError as exc:
            raise StepFailed(str(exc)) from exc
        self.say.say("\n".join(kubectl_lines(answer, node)))
        self.say.say(f"(AdmissionReview answered over HTTPS in {answer.seconds * 1000:.0f} ms)", dim=True)
        return review, answer

    def speaker_logged(self, node: str, event: str) -> list[str]:
        lines = []
        for line in (self.dir / f"speaker-{node}.log").read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                rec = json.loads(line)
                if isinstance(rec, dict) and rec.get("event") == event:
                    lines.append(f"{str(rec.get('level', '?')).upper()} {rec.get('msg', '')}: {rec.get('reason', '')}")
        return lines

    # --- the steps

    def run_step(self, name: str, title: str, body: Callable[[Step], None]) -> None:
        step = Step(name)
        self.steps.append(step)
        self.say.title(title)
        start = time.monotonic()
        try:
            body(step)
            step.ok = True
        except StepFailed as exc:
            step.error = str(exc)
            raise
        except (KeyboardInterrupt, Interrupted):
            step.error = "interrupted"
            raise
        except Exception as exc:  # a command or file that failed in a way no check foresaw: still this step's failure
            step.error = f"{type(exc).__name__}: {exc}"
            raise StepFailed(step.error) from exc
        finally:
            step.seconds = time.monotonic() - start
            self.say.verdict(step.ok, step.error or f"{name} ({step.seconds:.1f} s)")
        if self.interactive:
            with contextlib.suppress(EOFError):
                input("        [Enter] for the next step ")

    def setup(self, step: Step) -> None:
        certs = self.dir / "certs"
        certs.mkdir()
        code, text = self.l2guard(
            "certs",
            "generate",
            "--service",
            "l2guard-webhook",
            "--namespace",
            "l2guard-system",
            "--ip",
            "127.0.0.1",
            "--out",
            str(certs),
        )
        check(code == 0, f"l2guard certs generate failed: {text.strip()}")
        self.say.say("certificates: a fresh CA and serving pair (l2guard certs generate), for 127.0.0.1")
        self.write_state(excluded=set())
        _, text = self.l2guard("explain", str(self.state_file), "-o", "json")
        service = next(s for s in json.loads(text)["services"] if s["name"] == "web")
        check(bool(service["announcer"]), f"no announcer in the initial state: {service['fixes']}")
        self.owner = service["announcer"]
        self.other = next(n for n in self.hosts if n != self.owner)
        # The webhook reads its file once in file mode: one per cluster state the demo asks about.
        labelled = self.dir / "owner-labelled.yaml"
        labelled.write_text(cluster_state([node_object(h, excluded=h.name == self.owner) for h in NODES]))
        self.start_webhook("warn", policy="warn", state=self.state_file, certs=certs)
        self.start_webhook("warn-after", policy="warn", state=labelled, certs=certs)
        self.start_webhook("strip", policy="strip", state=self.state_file, certs=certs)
        if self.root:
            removed = topology.remove_all()
            if removed:
                self.say.say(f"removed namespaces an earlier run left: {', '.join(removed)}")
            try:
                topology.build()
            except TopologyError as exc:
                raise StepFailed(f"building the namespaces: {exc}") from exc
            self.say.say(
                f"namespaces: {CLIENT.ns} {CLIENT.ip4}, "
                + ", ".join(f"{h.ns} {h.ip4}" for h in NODES)
                + f", on bridge {topology.BRIDGE_NS} (multicast snooping, querier on)"
            )
            for host in NODES:
                self.spawn(
                    host.cmd([sys.executable, "-m", "l2guard.demo.web", "serve", host.name]), f"web-{host.name}.log"
                )
                argv = [
                    sys.executable,
                    "-m",
                    "l2guard.cli",
                    "speaker",
                    "--node-name",
                    host.name,
                    "--cluster-state",
                    str(self.state_file),
                    "--poll-interval",
                    "0.1",
                    "--log-format",
                    "json",
                ]
                self.speakers[host.name] = self.spawn(host.cmd(argv), f"speaker-{host.name}.log")
            self.say.say("one l2guard speaker per node (file mode, real data plane) and an HTTP server behind the VIPs")
        ca = certs / "ca.crt"
        for name, hook in self.webhooks.items():
            step.figures[f"webhook_{name}_start_s"] = round(
                self.say.wait(
                    f"webhook {name}", functools.partial(self.webhook_ready, hook, ca), timeout=START_TIMEOUT
                ),
                3,
            )
        self.say.say(
            f"l2guard webhook (file mode, HTTPS on 127.0.0.1): warn on ports "
            f"{self.webhooks['warn'].port}/{self.webhooks['warn-after'].port}, strip on {self.webhooks['strip'].port}"
        )

    def speakers_running(self) -> None:
        for node, proc in self.speakers.items():
            if proc.poll() is not None:
                raise StepFailed(f"speaker {node} exited ({proc.returncode}): {self.tail(proc)}")

    def step_owner(self, step: Step) -> None:
        result = self.explain()
        check(result["announcer"] == self.owner, f"explain shows {result['announcer']}, not {self.owner}")
        step.figures.update(owner=self.owner, explain_exit=result["exit"])
        if not self.root:
            return
        for vip in (VIP4, VIP6):
            log = self.probe(vip, START_TIMEOUT, until=self.owner, count=1)
            self.speakers_running()
            who = log[-1][1]
            check(who == self.owner, f"the client's request to {vip} was answered by {who}, not {self.owner}")
            key = "ipv4" if vip == VIP4 else "ipv6"
            step.figures[f"{key}_served_by"] = who
            step.figures[f"{key}_first_answer_s"] = round(log[-1][0] - log[0][0], 3)
            self.say.say(
                f"client: GET http://{vip if key == 'ipv4' else '[' + vip + ']'}/ -> {who!r}"
                f" (after {log[-1][0] - log[0][0]:.2f} s); neighbour {self.neighbour(vip)}"
            )
            mac, _ = CLIENT.neighbour(vip)
            check(mac == self.hosts[self.owner].mac, f"the client's neighbour entry for {vip} is {mac}")

    def step_label_owner(self, step: Step) -> None:
        _, answer = self.review("warn", self.owner)
        check(answer.allowed and bool(answer.warnings), "the webhook gave no warning for the owner's label")
        step.figures["warnings"] = answer.warnings
        if not self.root:
            self.write_state(excluded={self.owner})
            result = self.explain()
            check(result["announcer"] == self.other, f"explain shows {result['announcer']}, not {self.other}")
            step.figures["announcer_after"] = result["announcer"]
            return
        before = {vip: self.neighbour(vip) for vip in (VIP4, VIP6)}
        loop = self.start_probe(VIP4, 15, timeout=FAST, until=self.other, count=STREAK)
        time.sleep(0.5)  # pacing: the loop is up and served by the owner before the label lands
        self.say.say(f"the label lands (state file updated); the client requests {VIP4} every 5 ms")
        self.write_state(excluded={self.owner})
        log = self.finish_probe(loop, f"{self.other} to answer {STREAK} requests in a row")
        figures = interruption(log, self.owner, self.other)
        check(figures["served_by_new_owner"] >= STREAK, f"the request loop never settled on {self.other}: {figures}")
        for vip in (VIP4, VIP6):
            self.say.wait(
                f"the client's {vip} entry to flip",
                functools.partial(self.neighbour_is, vip, self.other),
                timeout=10,
            )
            self.say.say(f"neighbour {before[vip]}\n       -> {self.neighbour(vip)}")
        six = self.probe(VIP6, 5, until=self.other, count=1)[-1][1]
        check(six == self.other, f"{VIP6} is answered by {six}, not {self.other}")
        step.figures.update(figures, ipv6_served_by=six)
        self.say.say(
            f"interruption: {figures['interruption_ms']:.0f} ms, {figures['failed']} failed of "
            f"{figures['attempts']} requests; now served by {self.other!r}"
        )

    def step_label_both(self, step: Step) -> None:
        _, answer = self.review("warn-after", self.other)
        step.figures["warnings"] = answer.warnings
        check(any("NO announcing node" in w for w in answer.warnings), "the webhook did not warn NO announcing node")
        self.write_state(excluded={self.owner, self.other})
        if self.root:
            for node in self.hosts:
                self.say.wait(
                    f"speaker {node} to log it",
                    functools.partial(self.speaker_logged, node, "no-announcer"),
                    timeout=10,
                )
            line = self.speaker_logged(self.other, "no-announcer")[-1]
            self.say.say(f"speaker {self.other} logs: {line}")
            step.figures["speakers_logged"] = sorted(self.hosts)
        result = self.explain()
        check(result["status"] == "nobody" and bool(result["fixes"]), f"explain shows {result['status']}")
        step.figures.update(explain_status=result["status"], explain_exit=result["exit"], fixes=result["fixes"])
        if not self.root:
            return
        # A client that still has the MAC cached keeps reaching the old node until its entry expires (~30 s);
        # flushing the entries stands in for that wait, or for a new client.
        self.say.wait("the speakers to stop answering", lambda: not self._answering(), timeout=10)
        CLIENT.flush_neighbours()
        answered = 0
        attempts = 0
        for vip in (VIP4, VIP6):
            log = self.probe(vip, 1.0, timeout=FAST)
            attempts += len(log)
            answered += sum(who is not None for _, who in log)
        check(answered == 0, f"{answered} of {attempts} requests were answered although nobody announces")
        unresolved = {vip: CLIENT.neighbour(vip)[0] is None for vip in (VIP4, VIP6)}
        check(all(unresolved.values()), f"the client resolved a VIP although nobody announces: {unresolved}")
        step.figures.update(attempts=attempts, answered=answered)
        self.say.say(
            f"client (neighbour cache flushed, as after ~30 s): {attempts} requests, {answered} answered; "
            f"neighbour {self.neighbour(VIP4)}"
        )

    def _answering(self) -> bool:
        """Whether a speaker still announces anything, from its /status (health port 7473 in its namespace)."""
        for host in NODES:
            argv = host.cmd(
                [
                    sys.executable,
                    "-c",
                    "import urllib.request,sys;sys.stdout.write(urllib.request."
                    "urlopen('http://127.0.0.1:7473/status',timeout=2).read().decode())",
                ]
            )
            res = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
            with contextlib.suppress(ValueError):
                if json.loads(res.stdout).get("announced"):
                    return True
        return False

    def step_strip(self, step: Step) -> None:
        self.say.say("back to the start (both labels removed); now the webhook runs with --node-policy strip")
        self.write_state(excluded=set())
        if self.root:
            self.say.wait(
                f"{self.owner} to answer again",
                lambda: self.probe(VIP4, 0.3, until=self.owner)[-1][1] == self.owner,
                timeout=10,
            )
        review, answer = self.review("strip", self.owner)
        check(answer.allowed and bool(answer.patch), "the webhook in strip mode answered with no patch")
        self.say.say("patch: " + json.dumps(answer.patch))
        try:
            stored = apply_patch(review["request"]["object"], answer.patch)
        except ReviewError as exc:
            raise StepFailed(str(exc)) from exc
        landed = EXCLUDE_LABEL in stored["metadata"]["labels"]
        check(not landed, "the label landed although the patch removes it")
        self.say.say(f"the API server applies the patch: node {self.owner} is stored without the label")
        step.figures.update(patch=answer.patch, label_landed=landed, warnings=answer.warnings)
        result = self.explain()
        check(result["announcer"] == self.owner, f"explain shows {result['announcer']}, not {self.owner}")
        if not self.root:
            return
        log = self.probe(VIP4, 1.0)
        answered = sum(who == self.owner for _, who in log)
        check(answered == len(log), f"only {answered} of {len(log)} requests were answered by {self.owner}")
        step.figures.update(attempts=len(log), served_by_owner=answered)
        self.say.say(f"client: {answered} of {len(log)} requests answered by {self.owner!r}")

    def step_node_dies(self, step: Step) -> None:
        loop = self.start_probe(VIP4, 15, timeout=FAST, until=self.other, count=STREAK)
        time.sleep(0.5)  # pacing: the loop is up and served by the owner
        killed = time.monotonic()
        self.speakers[self.owner].send_signal(signal.SIGKILL)
        topology.kill_node_link(self.hosts[self.owner])
        self.say.say(f"{self.owner}: speaker killed (SIGKILL), link down; {self.other} probes it every 0.3 s")
        log = self.finish_probe(loop, f"{self.other} to take over")
        figures = interruption(log, self.owner, self.other)
        check(figures["served_by_new_owner"] >= STREAK, f"{self.other} never took over: {figures}")
        first_new = next(t for t, who in log if who == self.other)
        figures["takeover_after_kill_ms"] = round((first_new - killed) * 1000, 1)
        step.figures.update(figures)
        self.say.say(f"neighbour {self.neighbour(VIP4)}")
        self.say.say(
            f"gap: {figures['interruption_ms']:.0f} ms without answers ({figures['failed']} failed "
            f"requests); {self.other!r} answers {figures['takeover_after_kill_ms']:.0f} ms after the kill"
        )

    def run(self) -> None:
        self.run_step(
            "setup",
            "Setting up: certificates, cluster state, webhooks" + (", namespaces, speakers" if self.root else ""),
            self.setup,
        )
        self.run_step(
            "owner",
            f"1. explain shows the owner of {VIP4} and {VIP6}" + ("; the client reaches it" if self.root else ""),
            self.step_owner,
        )
        self.run_step(
            "label-owner", f"2. Someone labels the owner, {self.owner}, with the exclude label", self.step_label_owner
        )
        self.run_step("label-both", f"3. Someone labels the other node, {self.other}, too", self.step_label_both)
        self.run_step("strip", "4. With --node-policy strip: the same label request", self.step_strip)
        if self.root:
            self.run_step("node-dies", f"5. The owner's node, {self.owner}, dies", self.step_node_dies)


def interruption(log: list[tuple[float, Any]], old: str, new: str) -> dict[str, Any]:
    """Figures of a request loop across a move from `old` to `new`: the gap between the last answer from `old`
    before `new` first answered and that first answer, the failed requests, and how many `new` answered."""
    first_new = next((i for i, (_, who) in enumerate(log) if who == new), None)
    last_old = None if first_new is None else next((i for i in range(first_new, -1, -1) if log[i][1] == old), None)
    gap = None
    if first_new is not None and last_old is not None:
        gap = round((log[first_new][0] - log[last_old][0]) * 1000, 1)
    return {
        "attempts": len(log),
        "failed": sum(who is None for _, who in log),
        "served_by_old_owner": sum(who == old for _, who in log),
        "served_by_new_owner": sum(who == new for _, who in log),
        "interruption_ms": gap,
    }


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """SIGINT and SIGTERM raise Interrupted while the demo runs (also where SIGINT was inherited as ignored, as in
    a background job), so that the cleanup runs."""
    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(args: argparse.Namespace, *, out: TextIO, err: TextIO) -> int:
    root = os.geteuid() == 0
    colour = out.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
    say = Narrator(out, colour)
    if args.summary_json:  # a path it cannot write is a usage error before anything starts, not after the demo
        try:
            Path(args.summary_json).touch()
        except OSError as exc:
            err.write(f"{PROG}: --summary-json: cannot write {args.summary_json}: {exc.strerror or exc}\n")
            return EXIT_USAGE
    if root and (missing := missing_tools()):
        err.write(
            f"{PROG}: missing tools: {', '.join(f'{t} (package {TOOLS[t]})' for t in missing)} "
            f"(on Debian/Ubuntu: apt-get install {' '.join(TOOLS[t] for t in missing)})\n"
        )
        return EXIT_FAILED
    if not root:
        out.write(
            f"{PROG}: not root, so no network namespaces (run it with sudo for the whole story); "
            "showing the webhook's answers and explain only\n"
        )
    # The story is told with the defaults: the settings' environment twins would change what the speakers, the
    # webhook and explain decide (L2GUARD_IGNORE_EXCLUDE_LB=true, and no IP moves), for this process and its children.
    ignored = sorted(k for k in os.environ if k.startswith("L2GUARD_"))
    for key in ignored:
        del os.environ[key]
    if ignored:
        out.write(f"{PROG}: ignoring {', '.join(ignored)}: the demo runs with the defaults\n")
    interactive = not args.non_interactive and sys.stdin.isatty()
    code = EXIT_FAILED
    with tempfile.TemporaryDirectory(prefix="l2demo-") as tmp:
        demo = Demo(say, root=root, interactive=interactive, workdir=Path(tmp))
        try:
            with signals_raise():
                demo.run()
            code = EXIT_OK
        except StepFailed:
            code = EXIT_FAILED
        except (KeyboardInterrupt, Interrupted):
            err.write(f"\n{PROG}: interrupted; cleaning up\n")
            code = EXIT_INTERRUPTED
        finally:
            with contextlib.suppress(KeyboardInterrupt, Interrupted):
                demo.stop_all()
                if root:
                    topology.remove_all()
        total = time.monotonic() - say.started
        summary = {
            "schemaVersion": 1,
            "ok": code == EXIT_OK,
            "root": root,
            "seconds": round(total, 3),
            "owner": demo.owner or None,
            "steps": [s.as_json() for s in demo.steps],
        }
        if code == EXIT_INTERRUPTED:
            summary["interrupted"] = True
    if args.summary_json:
        try:
            Path(args.summary_json).write_text(json.dumps(summary, indent=2) + "\n")
        except OSError as exc:
            err.write(f"{PROG}: --summary-json: cannot write {args.summary_json}: {exc.strerror or exc}\n")
            code = code or EXIT_FAILED
    failed = ", ".join(s.name for s in demo.steps if not s.ok)
    verdict = {EXIT_OK: "all steps ok", EXIT_INTERRUPTED: "interrupted, cleaned up"}.get(code, f"FAILED: {failed}")
    say.title(f"{verdict} in {total:.1f} s" + ("" if root else " (no root: the data-plane parts did not run)"))
    return code
