"""Settings of `l2guard webhook`: its own flags, plus the shared ones from `l2guard.settings` (eligibility, cluster
source, logging), each with an environment-variable twin, read once into one frozen `WebhookSettings` with
`validate()`.

Precedence: a flag given on the command line wins, then its variable (`--node-policy` <-> `L2GUARD_NODE_POLICY`),
then the default. This module never looks at the environment itself, only at the mapping the CLI passes in. The
shared flags are defined once in `l2guard.settings`, so they mean here what they mean in `l2guard explain` and
`l2guard speaker`.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from l2core.model import METALLB_NAMESPACE, EligibilitySettings
from l2core.policy import Mode, NodePolicy, StripScope
from l2core.selectors import LabelSelector, parse_selector
from l2guard.options import port_problem
from l2guard.settings import (
    CLUSTER_FLAGS,
    ELIGIBILITY_FLAGS,
    LOG_FLAGS,
    SHARED,
    Option,
    SettingsError,
    SharedSettings,
    add_options,
    read_options,
    shared_from,
)

__all__ = ["SettingsError", "WebhookSettings", "add_arguments", "from_args", "parse_selector_text"]

SHARED_FLAGS = ELIGIBILITY_FLAGS + CLUSTER_FLAGS + LOG_FLAGS

# The webhook's own flags; the shared ones (SHARED_FLAGS) follow them in --help.
OWN_OPTIONS: tuple[Option, ...] = (
    Option("--cert-file", "str", "", "TLS certificate chain (PEM); re-read when its content changes"),
    Option("--key-file", "str", "", "TLS private key (PEM)"),
    Option("--host", "str", "0.0.0.0", "address to listen on (both ports)"),
    Option("--port", "int", 8443, "HTTPS port for the admission endpoints"),
    Option("--health-port", "int", 8080, "plain-HTTP port for /healthz, /readyz and /metrics (0: a free port)"),
    Option(
        "--node-policy",
        "str",
        Mode.WARN.value,
        "exclude-label policy on Nodes: off, warn, strip or deny",
        choices=tuple(m.value for m in Mode),
    ),
    Option("--strip-node-selector", "str", "", "strip/deny only on nodes matching this selector (kubectl syntax)"),
    Option("--strip-users", "list", (), "strip/deny only for these usernames (shell patterns, comma-separated)"),
    Option("--strip-groups", "list", (), "strip/deny only for requesters in these groups (shell patterns)"),
    Option("--exempt-users", "list", (), "never strip/deny for these usernames (shell patterns)"),
    Option("--exempt-groups", "list", (), "never strip/deny for requesters in these groups (shell patterns)"),
    Option(
        "--enforce-on-kubelets",
        "bool",
        False,
        "let strip/deny act on kubelets (group system:nodes) too; by default they only get warnings, because "
        "refusing a Node registration keeps the node out of the cluster",
    ),
    Option("--cert-reload-interval", "float", 10.0, "seconds between certificate content checks"),
    Option(
        "--request-timeout",
        "float",
        10.0,
        "seconds a client has to send a whole request (headers and body) before its connection is closed",
    ),
)
OPTIONS: tuple[Option, ...] = OWN_OPTIONS + tuple(SHARED[f] for f in SHARED_FLAGS)


@dataclass(frozen=True)
class WebhookSettings:
    cert_file: str = ""
    key_file: str = ""
    host: str = "0.0.0.0"
    port: int = 8443
    health_port: int = 8080
    node_policy: Mode = Mode.WARN
    metallb_namespace: str = METALLB_NAMESPACE
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

    @property
    def shared(self) -> SharedSettings:
        return SharedSettings(
            eligibility=self.eligibility,
            metallb_namespace=self.metallb_namespace,
            kubeconfig=self.kubeconfig,
            cluster_state=self.cluster_state,
            log_format=self.log_format,
            log_level=self.log_level,
        )

    def validate(self) -> list[str]:
        errors = self.shared.validate()
        if not self.cert_file or not self.key_file:
            errors.append("--cert-file and --key-file are required (the API server only calls webhooks over HTTPS)")
        for name, port in (("--port", self.port), ("--health-port", self.health_port)):
            problem = port_problem(name, port)
            if problem is not None:
                errors.append(problem)
        if self.port and self.port == self.health_port:
            errors.append("--port and --health-port must differ")
        if not 0.1 <= self.cert_reload_interval <= 3600:
            errors.append("--cert-reload-interval must be between 0.1 and 3600 seconds")
        if not 0.1 <= self.request_timeout <= 600:
            errors.append("--request-timeout must be between 0.1 and 600 seconds")
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
    """The webhook's flags, then the shared ones; defaults are applied in `from_args`."""
    add_options(parser, OPTIONS)


def from_args(args: argparse.Namespace, environ: Mapping[str, str]) -> WebhookSettings:
    """Flags, then environment, then defaults, into one frozen object. Raises SettingsError with every problem,
    on one line."""
    values, errors = read_options(args, environ, OPTIONS)
    selector = None
    if values["strip_node_selector"]:
        try:
            selector = parse_selector_text(values["strip_node_selector"])
        except SettingsError as exc:
            errors.append(str(exc))
    shared = shared_from(values)
    settings = WebhookSettings(
        cert_file=values["cert_file"],
        key_file=values["key_file"],
        host=values["host"],
        port=values["port"],
        health_port=values["health_port"],
        node_policy=Mode(values["node_policy"]),
        metallb_namespace=shared.metallb_namespace,
        cluster_state=shared.cluster_state,
        eligibility=shared.eligibility,
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
        kubeconfig=shared.kubeconfig,
        log_format=shared.log_format,
        log_level=shared.log_level,
    )
    errors += settings.validate()
    if errors:
        raise SettingsError("; ".join(errors))
    return settings
