"""`l2guard certs`: certificates for the webhook by hand, for clusters that use neither self-managed mode nor
cert-manager, and for rotating by hand (certs/README.md).

- `generate --service NAME --namespace NS` writes a CA and a serving certificate for the Service's DNS names (plus
  `--dns`/`--ip`) as ca.crt, ca.key, tls.crt and tls.key: keys mode 0600, each file written to a temporary name
  and renamed into place (a reader never sees half a key), existing files kept unless `--force`. It prints the
  base64 caBundle; `--secret-yaml [NAME]` prints a kubernetes.io/tls Secret (tls.crt, tls.key, ca.crt) as YAML
  on stdout instead, and the caBundle on stderr.
- `inject --ca-bundle-file FILE --mutating NAME --validating NAME` sets the caBundle of every webhook of those
  configurations (through `l2guard.kube`).

Bad input exits 2 with one line; an API failure exits 1 with one line.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import os
import re
import sys
import tempfile
from typing import Any, TextIO

import yaml

from l2guard import pki

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
MAX_DAYS = 3650
MAX_NAMES = 100  # --dns and --ip together
MAX_BUNDLE = 1024 * 1024  # bytes: a caBundle larger than a Secret's limit is not a CA bundle
DEFAULT_SECRET = "l2guard-webhook-tls"
REQUEST_TIMEOUT = 10.0
RETRIES = 5  # patches refused because the configuration changed since it was read
# An object name (a DNS subdomain, as the API server checks metadata.name): it goes into the request path.
NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "certs",
        help="make the webhook's CA and serving certificate, or set a caBundle",
        description="Certificates for the webhook by hand (the webhook manages its own with --self-signed-secret).",
    )
    sub = p.add_subparsers(dest="certs_command", metavar="ACTION", parser_class=type(p))
    gen = sub.add_parser(
        "generate", help="write a CA and a serving certificate for the webhook's Service", description=__doc__
    )
    gen.add_argument("--service", required=True, help="the webhook's Service name")
    gen.add_argument("--namespace", required=True, help="the Service's namespace")
    gen.add_argument("--out", default=None, help="directory for ca.crt, ca.key, tls.crt, tls.key (default: .)")
    gen.add_argument("--days", type=int, default=365, help="lifetime of the CA and the certificate (default 365)")
    gen.add_argument("--key-type", choices=pki.KEY_TYPES, default="ecdsa", help="ecdsa (P-256, default) or rsa")
    gen.add_argument("--dns", action="append", default=[], metavar="NAME", help="another DNS name (repeatable)")
    gen.add_argument("--ip", action="append", default=[], metavar="IP", help="an IP address SAN (repeatable)")
    gen.add_argument(
        "--secret-yaml",
        nargs="?",
        const=DEFAULT_SECRET,
        default=None,
        metavar="NAME",
        help=f"print a kubernetes.io/tls Secret (default name {DEFAULT_SECRET}) as YAML on stdout; files are then "
        "written only with --out",
    )
    gen.add_argument("--force", action="store_true", help="overwrite existing files")
    gen.set_defaults(run=run_generate)
    inj = sub.add_parser("inject", help="set the caBundle of webhook configurations")
    inj.add_argument("--ca-bundle-file", required=True, help="PEM file of the CA certificate(s) to trust")
    inj.add_argument("--mutating", action="append", default=[], metavar="NAME", help="a MutatingWebhookConfiguration")
    inj.add_argument(
        "--validating", action="append", default=[], metavar="NAME", help="a ValidatingWebhookConfiguration"
    )
    inj.add_argument("--kubeconfig", default="", help="kubeconfig (default: in-cluster, then $KUBECONFIG)")
    inj.set_defaults(run=run_inject)
    p.set_defaults(run=_usage(p))


def _usage(parser: argparse.ArgumentParser) -> Any:
    def run(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
        (err or sys.stderr).write(parser.format_usage())
        return EXIT_USAGE

    return run


def _write_atomically(directory: str, name: str, data: bytes, *, mode: int, force: bool) -> None:
    final = os.path.join(directory, name)
    if not force and os.path.lexists(final):
        raise FileExistsError(final)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if force:
            os.replace(tmp, final)
        else:
            os.link(tmp, final)  # fails if the file appeared meanwhile: never overwrite without --force
            os.unlink(tmp)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def run_generate(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr

    def usage(message: str) -> int:
        err.write(f"l2guard certs generate: {message}\n")
        return EXIT_USAGE

    if not 1 <= args.days <= MAX_DAYS:
        return usage(f"--days must be between 1 and {MAX_DAYS}")
    if len(args.dns) + len(args.ip) > MAX_NAMES:
        return usage(f"at most {MAX_NAMES} --dns and --ip in all")
    try:
        for flag, value in (("--service", args.service), ("--namespace", args.namespace)):
            if "." in value or not value:
                raise pki.PKIError(f"{flag}: {value[:40]!r} is not a Kubernetes name")
            pki.check_names([value])
        names = pki.service_names(args.service, args.namespace)
        names += [n for n in pki.check_names(args.dns) if n not in names]
        ips = pki.check_ips(args.ip)
    except pki.PKIError as exc:
        return usage(str(exc))
    if args.secret_yaml is not None and (len(args.secret_yaml) > 253 or not NAME.fullmatch(args.secret_yaml)):
        return usage(f"--secret-yaml {args.secret_yaml[:60]!r} is not a Kubernetes name (lower-case DNS subdomain)")
    directory = args.out if args.out is not None else (None if args.secret_yaml else ".")
    if directory is not None and not os.path.isdir(directory):
        return usage(f"--out {directory}: not a directory")
    now = datetime.datetime.now(datetime.UTC)
    lifetime = datetime.timedelta(days=args.days)
    ca = pki.new_ca(now=now, lifetime=lifetime, key_type=args.key_type, name=f"{args.service}.{args.namespace} CA")
    pair = pki.issue_server(ca, names=names, ips=ips, now=now, lifetime=lifetime, key_type=args.key_type)
    if directory is not None:
        files = [(pki.CA_CRT, ca.cert, 0o644), (pki.CA_KEY, ca.key, 0o600)]
        files += [(pki.TLS_CRT, pair.cert, 0o644), (pki.TLS_KEY, pair.key, 0o600)]
        existing = [n for n, _, _ in files if os.path.lexists(os.path.join(directory, n))]
        if existing and not args.force:
            return usage(f"{', '.join(existing)} already in {directory}; --force overwrites")
        try:
            for name, data, mode in files:
                _write_atomically(directory, name, data, mode=mode, force=args.force)
        except FileExistsError as exc:
            return usage(f"{exc} appeared meanwhile; --force overwrites")
        except OSError as exc:
            return usage(f"cannot write to {directory}: {exc.strerror or exc}")
    bundle = base64.b64encode(ca.cert).decode()
    if args.secret_yaml is not None:
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": args.secret_yaml, "namespace": args.namespace},
            "type": "kubernetes.io/tls",
            "data": {
                pki.TLS_CRT: base64.b64encode(pair.cert).decode(),
                pki.TLS_KEY: base64.b64encode(pair.key).decode(),
                pki.CA_CRT: bundle,
            },
        }
        out.write(yaml.safe_dump(secret, sort_keys=False))
        err.write(f"caBundle: {bundle}\n")
    else:
        out.write(bundle + "\n")
    return EXIT_OK


def run_inject(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr

    def fail(message: str, code: int) -> int:
        err.write(f"l2guard certs inject: {message}\n")
        return code

    if not args.mutating and not args.validating:
        return fail("name at least one --mutating or --validating configuration", EXIT_USAGE)
    for flag, names in (("--mutating", args.mutating), ("--validating", args.validating)):
        for name in names:
            if len(name) > 253 or not NAME.fullmatch(name):
                return fail(f"{flag} {name[:60]!r} is not a Kubernetes name (lower-case DNS subdomain)", EXIT_USAGE)
    try:
        with open(args.ca_bundle_file, "rb") as fh:
            bundle = fh.read(MAX_BUNDLE + 1)
    except OSError as exc:
        return fail(f"{args.ca_bundle_file}: cannot read: {exc.strerror or exc}", EXIT_USAGE)
    if len(bundle) > MAX_BUNDLE:
        return fail(f"{args.ca_bundle_file}: larger than {MAX_BUNDLE} bytes", EXIT_USAGE)
    try:
        certs = pki.load_bundle(bundle)
    except pki.PKIError as exc:
        return fail(f"{args.ca_bundle_file}: {exc}", EXIT_USAGE)
    bundle = pki.pem(*certs)  # exactly the certificates, whatever else the file held

    from l2guard.kube import webhookcerts as wc
    from l2guard.kube.client import KubeconfigError, make_api_client
    from l2guard.kube.errors import Conflict, Invalid, KubeError, NotFound

    try:
        api = make_api_client(args.kubeconfig)
    except KubeconfigError as exc:
        return fail(f"kubeconfig {exc.path}: {exc.reason}", EXIT_USAGE)
    targets = [(wc.MUTATING, n) for n in args.mutating] + [(wc.VALIDATING, n) for n in args.validating]
    for kind, name in targets:
        try:
            for _ in range(RETRIES):
                obj = wc.read_configuration(api, kind, name, timeout=REQUEST_TIMEOUT)
                try:
                    patched = wc.inject_ca_bundle(api, obj, bundle, timeout=REQUEST_TIMEOUT)
                except (Invalid, Conflict):
                    continue  # changed since we read it: read again
                hooks = len(wc.ca_bundles(obj))
                out.write(f"{kind} {name}: {'set' if patched else 'already set'} in {hooks} webhook(s)\n")
                break
            else:
                return fail(f"{kind} {name} kept changing; try again", EXIT_FAILED)
        except NotFound:
            return fail(f"{kind} {name} not found", EXIT_USAGE)
        except KubeError as exc:
            return fail(f"{kind} {name}: {exc.reason}", EXIT_FAILED)
    return EXIT_OK
