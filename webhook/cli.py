"""`l2guard webhook`: parse settings (flags with environment twins), build the cluster view (a file, or the live
API), and serve the admission endpoints until SIGTERM.

`add_parser(subparsers)` and `run(args)` are what `l2guard/cli.py` wires in; `python -m webhook` uses `main`.
This is the edge: the only place that reads `os.environ`, and it does so once. Bad settings or unreadable files
exit 2 with one line, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import uvloop

from l2guard import logs
from l2guard.listen import BindError
from l2guard.loader import InputError, load_documents
from l2guard.view import ClusterView
from webhook.app import AppState
from webhook.metrics import Metrics
from webhook.server import WebhookServer
from webhook.settings import DEFAULT_WEBHOOK_NAMESPACE, SettingsError, WebhookSettings, add_arguments, from_args
from webhook.tls import CertReloader, TLSError

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
EXIT_OK = 0
EXIT_USAGE = 2
SWITCH_INTERVAL = 0.001  # seconds
DESCRIPTION = (
    "Serve the admission webhook: the exclude-label policy on Nodes (off, warn, strip, deny) and MetalLB "
    "IPAddressPool/L2Advertisement validation, over HTTPS. Every flag has an environment twin, "
    "e.g. --node-policy <-> L2GUARD_NODE_POLICY."
)


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("webhook", help="serve the admission webhook", description=DESCRIPTION)
    add_arguments(p)
    p.set_defaults(run=run)


def build(
    settings: WebhookSettings, *, metrics: Metrics | None = None
) -> tuple[WebhookServer, Any, SelfManaged | None]:
    """Everything but the event loop: TLS, cluster view (file mode loads here), server. Returns the server, the
    live source (None in file mode) and the self-managed certificates (None unless --self-signed-secret), not
    started. Raises TLSError, InputError, or SettingsError (no usable kubeconfig)."""
    metrics = metrics or Metrics()
    reloader = CertReloader(
        settings.cert_file,
        settings.key_file,
        interval=settings.cert_reload_interval,
        on_expiry=metrics.cert_expiry.set,
        on_reload=metrics.cert_reloads.inc,
        origin=f"Secret {settings.webhook_namespace}/{settings.self_signed_secret}"
        if settings.self_signed_secret
        else "",
    )
    view = ClusterView(settings.eligibility)
    source = None
    certs: SelfManaged | None = None
    if settings.cluster_state:
        parsed = view.load(load_documents(settings.cluster_state), metallb_namespace=settings.metallb_namespace)
        for p in parsed.problems:
            log.warning(
                "cluster state object skipped: %s",
                p,
                extra={"fields": {"event": "cluster-state-problem", "reason": str(p)}},
            )
        for p in parsed.refusals:
            log.warning(
                "cluster state: MetalLB would refuse this configuration: %s",
                p,
                extra={"fields": {"event": "cluster-state-refused"}},
            )
        if parsed.outside_namespace:
            log.info(
                "cluster state: %s", parsed.outside_namespace_text(), extra={"fields": {"event": "cluster-state-scope"}}
            )
    else:
        from l2guard.kube import resources as table
        from l2guard.kube.client import KubeconfigError, make_api_client
        from l2guard.kube.source import KubeSource

        try:
            api = make_api_client(settings.kubeconfig)
        except KubeconfigError as exc:  # imported here: file mode never loads the kubernetes client
            raise SettingsError(str(exc)) from exc
        # Leases too: the view counts only speakers whose lease is alive (every node while none exists).
        resources = table.resources(api, metallb_namespace=settings.metallb_namespace, namespace=settings.namespace)
        leases = {r.name for r in resources if r.kind == table.LEASE}

        def failed(resource: str, reason: str) -> None:
            metrics.watch_errors.labels(resource).inc()
            if resource in leases:  # renewals are missed, not absent: keep who was alive (l2core.liveness.freeze)
                view.freeze()

        def recovered(resource: str) -> None:
            if resource in leases:
                view.thaw()

        source = KubeSource(view, resources, on_error=failed, on_recovered=recovered)
        if settings.self_signed_secret:
            # A client of its own: its own connection pool for three more watches and the writes, so that they
            # neither wait for nor overflow the pool of the cluster view's six watches and live reads.
            certs = _self_signed(settings, make_api_client(settings.kubeconfig))
    state = AppState(
        settings,
        view,
        metrics,
        tls_loaded=lambda: reloader.loaded,
        tls_problem=reloader.problem,
        read_config=source.read_config if source is not None else None,
        ca_problem=certs.problem if certs is not None else lambda: None,
    )
    return WebhookServer(state, reloader), source, certs


def _self_signed(settings: WebhookSettings, api: Any) -> SelfManaged:
    """Self-managed mode: the manager of the Secret and the caBundles, and the source that follows them by name."""
    from l2guard import pki
    from l2guard.kube import webhookcerts as wc
    from l2guard.kube.source import KubeSource
    from webhook.selfsigned import SelfSigned

    namespace = settings.webhook_namespace
    manager = SelfSigned(
        api,
        namespace=namespace,
        secret=settings.self_signed_secret,
        policy=pki.Policy(
            names=tuple(pki.service_names(settings.service_name, namespace)),
            lifetime=datetime.timedelta(days=settings.self_signed_days),
            key_type="rsa" if settings.self_signed_key_type == "rsa" else "ecdsa",
        ),
        configurations={
            wc.MUTATING: settings.mutating_webhook_configuration,
            wc.VALIDATING: settings.validating_webhook_configuration,
        },
    )
    resources = wc.named_resources(
        api,
        namespace=namespace,
        secret=settings.self_signed_secret,
        mutating=settings.mutating_webhook_configuration,
        validating=settings.validating_webhook_configuration,
    )
    return SelfManaged(manager, KubeSource(manager, resources, request_timeout=10.0))


@dataclass(frozen=True)
class SelfManaged:
    """Self-managed certificates: the manager and the source that feeds it."""

    manager: Any  # webhook.selfsigned.SelfSigned, imported only in this mode
    source: Any  # l2guard.kube.source.KubeSource

    def problem(self) -> str | None:
        problem: str | None = self.manager.problem()
        return problem


def service_account_namespace(path: str = SERVICE_ACCOUNT_NAMESPACE) -> str:
    """The pod's namespace from its service account token mount, or "" outside a pod (or unreadable)."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read(254).strip()
    except (OSError, UnicodeError):
        return ""
    return text if text and len(text) <= 63 else ""


def run(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    err = err or sys.stderr
    try:
        settings = from_args(args, os.environ)
    except SettingsError as exc:
        err.write(f"l2guard webhook: {exc}\n")
        return EXIT_USAGE
    logs.setup(settings.log_format, settings.log_level)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)  # one line per request is too many
    if settings.self_signed_secret and not settings.webhook_namespace:
        namespace = service_account_namespace() or DEFAULT_WEBHOOK_NAMESPACE
        settings = dataclasses.replace(settings, webhook_namespace=namespace)
    try:
        server, source, certs = build(settings)
    except BindError as exc:
        if exc.address_unavailable:
            flag = "--host"
        elif exc.port == settings.health_port and exc.port != settings.port:
            flag = "--health-port"
        else:
            flag = "--port"
        err.write(f"l2guard webhook: {exc} (set another with {flag})\n")
        return EXIT_USAGE
    except (TLSError, InputError, OSError, SettingsError) as exc:
        err.write(f"l2guard webhook: {exc}\n")
        return EXIT_USAGE
    if source is not None:
        source.start()
    background: tuple[Any, ...] = ()
    if certs is not None:
        certs.source.start()
        background = (certs.manager.serve(server.reloader),)
    # A decision on a worker thread holds the GIL for up to the switch interval before the event loop gets it back
    # (5 ms by default): 1 ms keeps /healthz and the Node fast path near their idle latency meanwhile.
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        uvloop.run(server.run(background=background))
    finally:
        if source is not None:
            source.stop()
        if certs is not None:
            certs.source.stop()
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="l2guard webhook", description=DESCRIPTION)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        return 130
