"""Settings of `l2guard webhook`: command-line flags, each with an environment-variable twin, read once into one
frozen `WebhookSettings` with `validate()`.

Precedence: a flag given on the command line wins, then its variable (`--node-policy` <-> `L2GUARD_NODE_POLICY`),
then the default. This is the only module that looks at the environment, and only through the mapping the CLI
passes in. The label-semantics and ignore flags are named as in `l2guard explain`.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from l2core.model import EligibilitySettings, LabelSemantics
from l2core.policy import Mode, NodePolicy, StripScope
from l2core.selectors import LabelSelector, parse_selector
from l2guard.options import port_problem

ENV_PREFIX = "L2GUARD_"
TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}


class SettingsError(Exception):
    """Bad settings; the message is one line."""


def env_name(flag: str) -> str:
    return ENV_PREFIX + flag.lstrip("-").upper().replace("-", "_")


# flag, type, default, help. type: str, int, float, bool, list (comma-separated).
OPTIONS: tuple[tuple[str, str, Any, str], ...] = (
    ("--cert-file", "str", "", "TLS certificate chain (PEM); re-read when its content changes"),
    ("--key-file", "str", "", "TLS private key (PEM)"),
    ("--host", "str", "0.0.0.0", "address to listen on (both ports)"),
    ("--port", "int", 8443, "HTTPS port for the admission endpoints"),
    ("--health-port", "int", 8080, "plain-HTTP port for /healthz, /readyz and /metrics (0: a free port)"),
    ("--node-policy", "str", Mode.WARN.value, "exclude-label policy on Nodes: off, warn, strip or deny"),
    ("--metallb-namespace", "str", "metallb-system", "namespace of the MetalLB pools and advertisements"),
    (
        "--cluster-state",
        "list",
        (),
        "files of Kubernetes objects (as for `l2guard explain`) instead of a live view",
    ),
    ("--label-semantics", "str", LabelSemantics.PRESENCE.value, "presence (MetalLB, default) or true-only"),
    ("--ignore-exclude-lb", "bool", False, "as the speaker flag: the announcer ignores the exclude label"),
    ("--load-balancer-class", "str", "", "services of this loadBalancerClass are ours (default: those without one)"),
    ("--strip-node-selector", "str", "", "strip/deny only on nodes matching this selector (kubectl syntax)"),
    ("--strip-users", "list", (), "strip/deny only for these usernames (shell patterns, comma-separated)"),
    ("--strip-groups", "list", (), "strip/deny only for requesters in these groups (shell patterns)"),
    ("--exempt-users", "list", (), "never strip/deny for these usernames (shell patterns)"),
    ("--exempt-groups", "list", (), "never strip/deny for requesters in these groups (shell patterns)"),
    (
        "--enforce-on-kubelets",
        "bool",
        False,
        "let strip/deny act on kubelets (group system:nodes) too; by default they only get warnings, because "
        "refusing a Node registration keeps the node out of the cluster",
    ),
    ("--cert-reload-interval", "float", 10.0, "seconds between certificate content checks"),
    (
        "--request-timeout",
        "float",
        10.0,
        "seconds a client has to send a whole request (headers and body) before its connection is closed",
    ),
    ("--kubeconfig", "str", "", "kubeconfig for the live view (default: in-cluster, then ~/.kube/config)"),
    ("--log-format", "str", "auto", "auto (JSON unless stderr is a terminal), json or text"),
    ("--log-level", "str", "info", "debug, info, warning or error"),
)


@dataclass(frozen=True)
class WebhookSettings:
    cert_file: str = ""
    key_file: str = ""
    host: str = "0.0.0.0"
    port: int = 8443
    health_port: int = 8080
    node_policy: Mode = Mode.WARN
    metallb_namespace: str = "metallb-system"
    cluster_state: tuple[str, ...] = ()
    eligibility: EligibilitySettings = field(default_factory=EligibilitySettings)
    scope: StripScope = field(default_factory=StripScope)
    cert_reload_interval: float = 10.0
    request_timeout: float = 10.0
    kubeconfig: str = ""
    log_format: str = "auto"
    log_level: str = "info"

    @property
    def policy(self) -> NodePolicy:
        return NodePolicy(self.node_policy, self.scope, self.eligibility)

    def validate(self) -> list[str]:
        errors = list(self.eligibility.validate())
        if not self.cert_file or not self.key_file:
            errors.append("--cert-file and --key-file are required (the API server only calls webhooks over HTTPS)")
        for name, port in (("--port", self.port), ("--health-port", self.health_port)):
            problem = port_problem(name, port)
            if problem is not None:
                errors.append(problem)
        if self.port and self.port == self.health_port:
            errors.append("--port and --health-port must differ")
        if not self.metallb_namespace:
            errors.append("--metallb-namespace must not be empty")
        if not 0.1 <= self.cert_reload_interval <= 3600:
            errors.append("--cert-reload-interval must be between 0.1 and 3600 seconds")
        if not 0.1 <= self.request_timeout <= 600:
            errors.append("--request-timeout must be between 0.1 and 600 seconds")
        if self.log_format not in ("auto", "json", "text"):
            errors.append("--log-format must be auto, json or text")
        if self.log_level not in ("debug", "info", "warning", "error"):
            errors.append("--log-level must be debug, info, warning or error")
        return errors


_TERM = re.compile(
    r"^\s*(?:(?P<not>!)\s*(?P<nkey>[^=!\s(),]+)"
    r"|(?P<key>[^=!\s(),]+)\s*(?:(?P<op>==|=|!=)\s*(?P<value>[^=!\s(),]*)"
    r"|\s+(?P<setop>in|notin)\s*\((?P<values>[^)]*)\))?)\s*$"
)


def parse_selector_text(text: str) -> LabelSelector:
    """A kubectl-style selector (`a`, `!a`, `a=b`, `a!=b`, `a in (x,y)`, `a notin (x)`, comma-joined) parsed into
    the core's LabelSelector through its validating parser. Raises SettingsError."""
    terms: list[str] = []
    depth, start = 0, 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    labels: dict[str, str] = {}
    exprs: list[dict[str, Any]] = []
    for term in terms:
        m = _TERM.match(term)
        if not m or not term.strip():
            raise SettingsError(f"--strip-node-selector: cannot parse {term.strip()!r}")
        if m["not"]:
            exprs.append({"key": m["nkey"], "operator": "DoesNotExist"})
        elif m["op"] in ("=", "=="):
            labels[m["key"]] = m["value"]
        elif m["op"] == "!=":
            exprs.append({"key": m["key"], "operator": "NotIn", "values": [m["value"]]})
        elif m["setop"]:
            values = [v.strip() for v in m["values"].split(",") if v.strip()]
            exprs.append({"key": m["key"], "operator": "In" if m["setop"] == "in" else "NotIn", "values": values})
        else:
            exprs.append({"key": m["key"], "operator": "Exists"})
    selector, problems = parse_selector(
        {"matchLabels": labels, "matchExpressions": exprs}, obj="--strip-node-selector", path=""
    )
    if selector is None:
        raise SettingsError(str(problems[0]))
    return selector


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags only; defaults are applied in `from_args` so that the environment can sit between them."""
    for flag, typ, _default, help_text in OPTIONS:
        text = f"{help_text} [env {env_name(flag)}]"
        metavar = flag.lstrip("-").upper().replace("-", "_")
        if typ == "bool":  # --x and --no-x, so a flag can also switch off what the environment switched on
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif typ == "list":  # repeatable and comma-separated: --cluster-state a.yaml --cluster-state b.yaml,c.yaml
            parser.add_argument(flag, action="append", default=None, metavar=metavar, help=text)
        else:
            parser.add_argument(flag, default=None, metavar=metavar, help=text)


def _convert(source: str, typ: str, value: str | list[str]) -> Any:
    """Convert one setting's text; `source` names where it came from (the flag or the environment variable)."""
    if typ == "list":
        parts = value if isinstance(value, list) else [value]
        return tuple(v.strip() for part in parts for v in part.split(",") if v.strip())
    assert isinstance(value, str)
    if typ == "int":
        try:
            return int(value)
        except ValueError:
            raise SettingsError(f"{source}: {value!r} is not an integer") from None
    if typ == "float":
        try:
            return float(value)
        except ValueError:
            raise SettingsError(f"{source}: {value!r} is not a number") from None
    if typ == "bool":
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise SettingsError(f"{source}: {value!r} is not true or false")
    return value


def from_args(args: argparse.Namespace, environ: Mapping[str, str]) -> WebhookSettings:
    """Flags, then environment, then defaults, into one frozen object. Raises SettingsError (one line)."""
    values: dict[str, Any] = {}
    for flag, typ, default, _help in OPTIONS:
        attr = flag.lstrip("-").replace("-", "_")
        given = getattr(args, attr, None)
        if given is not None:
            values[attr] = given if typ == "bool" else _convert(flag, typ, given)
        elif env_name(flag) in environ:
            values[attr] = _convert(env_name(flag), typ, environ[env_name(flag)])
        else:
            values[attr] = default
    try:
        mode = Mode(values["node_policy"])
    except ValueError:
        raise SettingsError("--node-policy must be off, warn, strip or deny") from None
    try:
        semantics = LabelSemantics(values["label_semantics"])
    except ValueError:
        raise SettingsError("--label-semantics must be presence or true-only") from None
    selector = parse_selector_text(values["strip_node_selector"]) if values["strip_node_selector"] else None
    settings = WebhookSettings(
        cert_file=values["cert_file"],
        key_file=values["key_file"],
        host=values["host"],
        port=values["port"],
        health_port=values["health_port"],
        node_policy=mode,
        metallb_namespace=values["metallb_namespace"],
        cluster_state=tuple(values["cluster_state"]),
        eligibility=EligibilitySettings(
            label_semantics=semantics,
            ignore_exclude_label=bool(values["ignore_exclude_lb"]),
            load_balancer_class=values["load_balancer_class"] or None,
        ),
        scope=StripScope(
            node_selector=selector,
            users=values["strip_users"],
            groups=values["strip_groups"],
            exempt_users=values["exempt_users"],
            exempt_groups=values["exempt_groups"],
            exempt_kubelets=not values["enforce_on_kubelets"],
        ),
        cert_reload_interval=values["cert_reload_interval"],
        request_timeout=values["request_timeout"],
        kubeconfig=values["kubeconfig"],
        log_format=values["log_format"],
        log_level=values["log_level"],
    )
    errors = settings.validate()
    if errors:
        raise SettingsError("; ".join(errors))
    return settings
