"""The `l2guard` command: one entry point, one subcommand per job.

Argument errors print one line and exit 2; no subcommand lets a traceback reach the user.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from l2guard import explain

EXIT_USAGE = 2
EXIT_INTERNAL = 70  # EX_SOFTWARE


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="l2guard", description="Guard bare-metal LoadBalancer IPs at layer 2.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    explain.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_usage(sys.stderr)
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
