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

SHARED_FLAGS = (*ELIGIBILITY_FLAGS, *CLUSTER_FLAGS, "--namespace", *LOG_FLAGS)

DEFAULT_WEBHOOK_NAMESPACE = "l2guard-system"
MIN_SELF_SIGNED_DAYS = 10 / 86400  # ten seconds: short lifetimes are for tests of the rotation
MAX_SELF_SIGNED_DAYS = 3650.0
# A DNS-1123 subdomain (Secret and webhook configuration names) and label (namespaces, Services).
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

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
        "--self-signed-secret",
        "str",
        "",
        "self-managed certificates: keep a CA and the serving pair in this kubernetes.io/tls Secret (created and "
        "rotated here) and the caBundle of the webhook configurations up to date; instead of --cert-file/--key-file",
    ),
    Option(
        "--webhook-namespace",
        "str",
        "",
        "the webhook's own namespace, where the self-signed Secret lives (default: the service account's "
        f"namespace, else {DEFAULT_WEBHOOK_NAMESPACE})",
    ),
    Option("--service-name", "str", "l2guard-webhook", "the webhook's Service, whose DNS names the certificate holds"),
    Option(
        "--mutating-webhook-configuration",
        "str",
        "l2guard",
        "the MutatingWebhookConfiguration whose caBundle self-managed mode keeps (empty: none)",
    ),
    Option(
        "--validating-webhook-configuration",
        "str",
        "l2guard",
        "the ValidatingWebhookConfiguration whose caBundle self-managed mode keeps (empty: none)",
    ),
    Option(
        "--self-signed-days",
        "float",
        365.0,
        "lifetime of each self-signed CA and serving certificate in days (fractions allowed); each is rotated when "
        "a third of it is left",
    ),
    Option(
        "--self-signed-key-type", "str", "ecdsa", "key type of the self-signed certificates", choices=("ecdsa", "rsa")
    ),
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
    namespace: str = DEFAULT_WEBHOOK_NAMESPACE  # the speakers' Leases (shared --namespace)
    self_signed_secret: str = ""
    webhook_namespace: str = ""  # empty: the service account's namespace, else DEFAULT_WEBHOOK_NAMESPACE
    service_name: str = "l2guard-webhook"
    mutating_webhook_configuration: str = "l2guard"
    validating_webhook_configuration: str = "l2guard"
    self_signed_days: float = 365.0
    self_signed_key_type: str = "ecdsa"
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
        if self.self_signed_secret:
            if self.cert_file or self.key_file:
                errors.append("give either --self-signed-secret or --cert-file and --key-file, not both")
            if self.cluster_state:
                errors.append("--self-signed-secret keeps its Secret in the API: it cannot run with --cluster-state")
            if not MIN_SELF_SIGNED_DAYS <= self.self_signed_days <= MAX_SELF_SIGNED_DAYS:
                errors.append(f"--self-signed-days must be between {MIN_SELF_SIGNED_DAYS:.6f} (ten seconds) and 3650")
            names = [("--self-signed-secret", self.self_signed_secret, _SUBDOMAIN)]
            names += [("--mutating-webhook-configuration", self.mutating_webhook_configuration, _SUBDOMAIN)]
            names += [("--validating-webhook-configuration", self.validating_webhook_configuration, _SUBDOMAIN)]
            names += [
                ("--service-name", self.service_name, _LABEL),
                ("--webhook-namespace", self.webhook_namespace, _LABEL),
            ]
            for flag, value, pattern in names:
                if (value and (len(value) > 253 or not pattern.match(value))) or (
                    flag == "--service-name" and not value
                ):
                    errors.append(f"{flag}: {value[:40]!r} is not a Kubernetes name (lower-case letters, digits, '-')")
        elif not self.cert_file or not self.key_file:
            errors.append(
                "--cert-file and --key-file are required, or --self-signed-secret NAME (the API server only calls "
                "webhooks over HTTPS)"
            )
        if not self.namespace or not _LABEL.match(self.namespace):
            errors.append(f"--namespace: {self.namespace[:40]!r} is not a Kubernetes namespace name")
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
        namespace=values["namespace"],
        self_signed_secret=values["self_signed_secret"],
        webhook_namespace=values["webhook_namespace"],
        service_name=values["service_name"],
        mutating_webhook_configuration=values["mutating_webhook_configuration"],
        validating_webhook_configuration=values["validating_webhook_configuration"],
        self_signed_days=values["self_signed_days"],
        self_signed_key_type=values["self_signed_key_type"],
        log_format=shared.log_format,
        log_level=shared.log_level,
    )
    errors += settings.validate()
    if errors:
        raise SettingsError("; ".join(errors))
    return settings
