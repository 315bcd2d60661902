"""The `l2guard` command: one entry point, one subcommand per job.

Argument errors print one line and exit 2; no subcommand lets a traceback reach the user. Output never fails to
encode: a character the terminal's encoding cannot write (a lone surrogate from JSON such as "\\udfff", or any
non-ASCII under an ASCII locale) is written as a backslash escape.
"""

from __future__ import annotations

import argparse
import importlib
import io
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import NoReturn

EXIT_USAGE = 2
EXIT_INTERNAL = 70  # EX_SOFTWARE


def _version() -> str:
    try:
        return metadata.version("l2guard")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see --help)\n")


# Subcommand -> (module with add_parser(subparsers), one-line help). Modules load only when their command runs,
# so `l2guard explain` does not pay for importing FastAPI, uvicorn or the Kubernetes client.
COMMANDS = {
    "explain": ("l2guard.explain", "explain which node announces each LoadBalancer IP, or why none does"),
    "webhook": ("webhook.cli", "serve the admission webhook (HTTPS)"),
    "announce": ("speaker.announce_cli", "answer ARP/NDP for IPs on this node until interrupted"),
    "speaker": ("l2guard.control.command", "announce the LoadBalancer IPs this node wins (the DaemonSet's command)"),
    "demo": ("l2guard.demo.command", "the whole story on one machine: namespaces, webhook, speakers (root)"),
    "certs": ("l2guard.certs_cli", "make the webhook's CA and serving certificate, or set a caBundle, by hand"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only `command`'s module is imported (every module when command is None)."""
    parser = _Parser(prog="l2guard", description="Guard bare-metal LoadBalancer IPs at layer 2.")
    parser.add_argument("--version", action="version", version=f"l2guard {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (module, help_text) in COMMANDS.items():
        if command == name:
            importlib.import_module(module).add_parser(sub)
        else:
            sub.add_parser(name, help=help_text)
    return parser


def _escape_unencodable(*streams: object) -> None:
    """Write what the stream's encoding cannot encode as a backslash escape instead of raising
    UnicodeEncodeError (exit 70) halfway through the output; Python does so for stderr already, not for stdout."""
    for stream in streams:
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _escape_unencodable(sys.stdout, sys.stderr)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:  # a usage error (exit 2), but one that shows what there is to run
        width = max(len(name) for name in COMMANDS)
        lines = [f"  {name:<{width}}  {help_text}" for name, (_, help_text) in COMMANDS.items()]
        sys.stderr.write(
            "usage: l2guard [--version] COMMAND ...\n\ncommands:\n" + "\n".join(lines) + "\n\n"
            "l2guard COMMAND --help shows a command's options.\n"
        )
        return EXIT_USAGE
    try:
        code: int = args.run(args, out=sys.stdout, err=sys.stderr)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # the last guard: a bug must still not print a traceback at an operator
        sys.stderr.write(f"l2guard: internal error: {type(exc).__name__}: {exc} (please report this)\n")
        return EXIT_INTERNAL
    return code


if __name__ == "__main__":
    sys.exit(main())
