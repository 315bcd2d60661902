"""The settings every `l2guard` command shares, defined once: one table of flags, each with an environment twin
(`--label-semantics` <-> `L2GUARD_LABEL_SEMANTICS`), read into one frozen `SharedSettings` with `validate()`.

The eligibility flags (`--label-semantics`, `--ignore-exclude-lb`, `--load-balancer-class`, `--metallb-namespace`)
decide which node may announce which IP. `explain`, the webhook and the speaker take them from this table, so one
name means one thing everywhere and an operator's diagnosis cannot disagree with the speaker's verdict. The same
machinery (`add_options`, `read_options`) reads each command's own flags, so that every flag of every command
follows one precedence: the command line wins, then the environment variable, then the default.

This module converts and checks text; it must not read `os.environ` itself (the command's `run` passes the
mapping in, once), open files or log. Every problem is one line naming where the value came from (the flag or its
variable); all problems are collected, and the command exits 2 with them.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from l2core.model import METALLB_NAMESPACE, EligibilitySettings, LabelSemantics

ENV_PREFIX = "L2GUARD_"
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", ""})
MAX_SHOWN = 40  # characters of a refused value quoted in a message; an environment variable can hold megabytes

LOG_FORMATS = ("auto", "json", "text")
LOG_LEVELS = ("debug", "info", "warning", "error")

Kind = Literal["str", "int", "float", "bool", "list"]


class SettingsError(Exception):
    """Bad settings; the message is one line."""


def env_name(flag: str) -> str:
    """`--node-policy` -> `L2GUARD_NODE_POLICY`."""
    return ENV_PREFIX + flag.lstrip("-").upper().replace("-", "_")


def _one_of(words: Sequence[str]) -> str:
    """`a, b or c`."""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


@dataclass(frozen=True, slots=True)
class Option:
    """One flag. kind: str, int, float, bool (`--x` and `--no-x`) or list (repeatable and comma-separated).
    `choices`, when given, are the only accepted values (checked here, for the flag and its variable alike)."""

    flag: str
    kind: Kind
    default: Any
    help: str
    choices: tuple[str, ...] = ()

    @property
    def env(self) -> str:
        return env_name(self.flag)

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


# The shared table. Defaults and names are part of the interface: the manifests, docs/webhook.md and the README
# list them.
SHARED: Mapping[str, Option] = {
    o.flag: o
    for o in (
        Option(
            "--label-semantics",
            "str",
            LabelSemantics.PRESENCE.value,
            "presence: the exclude label excludes whatever its value (MetalLB, default); true-only: the value "
            "'false' does not exclude (Kubernetes cloud providers)",
            choices=tuple(s.value for s in LabelSemantics),
        ),
        Option(
            "--ignore-exclude-lb",
            "bool",
            False,
            "ignore the exclude label, as MetalLB's speaker flag of that name; the speakers, the webhook and "
            "explain must agree on it",
        ),
        Option(
            "--load-balancer-class",
            "str",
            "",
            "services of this spec.loadBalancerClass are ours (default: only services without a class)",
        ),
        Option(
            "--metallb-namespace",
            "str",
            METALLB_NAMESPACE,
            "read IPAddressPools and L2Advertisements only from this namespace, as MetalLB does",
        ),
        Option(
            "--kubeconfig",
            "str",
            "",
            "kubeconfig for the live view (default: in-cluster, then $KUBECONFIG or ~/.kube/config)",
        ),
        Option("--context", "str", "", "kubeconfig context for the live view (default: its current context)"),
        Option("--namespace", "str", "l2guard-system", "namespace of the speakers' Leases and Events"),
        Option(
            "--cluster-state",
            "list",
            (),
            "files of Kubernetes objects (as for `l2guard explain`) instead of a live view",
        ),
        Option(
            "--log-format",
            "str",
            "auto",
            "json (one object per line), text, or auto (text when stderr is a terminal, else JSON)",
            choices=LOG_FORMATS,
        ),
        Option("--log-level", "str", "info", "debug, info, warning or error", choices=LOG_LEVELS),
    )
}

ELIGIBILITY_FLAGS = ("--label-semantics", "--ignore-exclude-lb", "--load-balancer-class", "--metallb-namespace")
CLUSTER_FLAGS = ("--kubeconfig", "--cluster-state")  # --context is not here: only explain --live honours it yet
LOG_FLAGS = ("--log-format", "--log-level")


@dataclass(frozen=True, slots=True)
class SharedSettings:
    """The shared settings of one command run. Flags a command does not take keep their defaults here."""

    eligibility: EligibilitySettings = field(default_factory=EligibilitySettings)
    metallb_namespace: str = METALLB_NAMESPACE
    kubeconfig: str = ""
    context: str = ""
    cluster_state: tuple[str, ...] = ()
    log_format: str = "auto"
    log_level: str = "info"

    def validate(self) -> list[str]:
        errors = list(self.eligibility.validate())
        if not self.metallb_namespace:
            errors.append("--metallb-namespace must not be empty")
        if self.log_format not in LOG_FORMATS:
            errors.append(f"--log-format must be {_one_of(LOG_FORMATS)}")
        if self.log_level not in LOG_LEVELS:
            errors.append(f"--log-level must be {_one_of(LOG_LEVELS)}")
        return errors


def add_options(parser: argparse.ArgumentParser, options: Iterable[Option]) -> None:
    """Flags only; defaults are applied by `read_options`, so that the environment can sit between them."""
    for opt in options:
        text = f"{opt.help} [env {opt.env}]"
        metavar = opt.dest.upper()
        if opt.kind == "bool":  # --x and --no-x, so a flag can also switch off what the environment switched on
            parser.add_argument(opt.flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif opt.kind == "list":  # repeatable and comma-separated: --cluster-state a.yaml --cluster-state b,c
            parser.add_argument(opt.flag, action="append", default=None, metavar=metavar, help=text)
        else:
            parser.add_argument(opt.flag, default=None, metavar=metavar, help=text)


def add_shared_arguments(parser: argparse.ArgumentParser, flags: Iterable[str]) -> None:
    """Add these flags of the shared table (e.g. `ELIGIBILITY_FLAGS + LOG_FLAGS`) to `parser`."""
    add_options(parser, (SHARED[f] for f in flags))


def _shown(value: str) -> str:
    return repr(value if len(value) <= MAX_SHOWN else value[:MAX_SHOWN] + "...")


def _convert(source: str, kind: Kind, value: str | list[str]) -> Any:
    """One setting's text as its kind; `source` names where it came from. Raises SettingsError."""
    if kind == "list":
        parts = value if isinstance(value, list) else [value]
        return tuple(v.strip() for part in parts for v in part.split(",") if v.strip())
    assert isinstance(value, str)
    if kind == "int":
        try:
            return int(value)
        except ValueError:
            raise SettingsError(f"{source}: {_shown(value)} is not an integer") from None
    if kind == "float":
        try:
            return float(value)
        except ValueError:
            raise SettingsError(f"{source}: {_shown(value)} is not a number") from None
    if kind == "bool":
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise SettingsError(f"{source}: {_shown(value)} is not true or false")
    return value


def read_options(
    args: argparse.Namespace, environ: Mapping[str, str], options: Iterable[Option]
) -> tuple[dict[str, Any], list[str]]:
    """Each option's value by `dest` (flag, then environment, then default) and the problems found. A value that
    cannot be read is reported and replaced by the default, so that every problem is reported at once."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for opt in options:
        given = getattr(args, opt.dest, None)
        if given is not None:
            source, raw = opt.flag, given
        elif opt.env in environ:
            source, raw = opt.env, environ[opt.env]
        else:
            values[opt.dest] = opt.default
            continue
        try:
            value = raw if isinstance(raw, bool) else _convert(source, opt.kind, raw)
        except SettingsError as exc:
            problems.append(str(exc))
            value = opt.default
        if opt.choices and value not in opt.choices:
            problems.append(f"{source} must be {_one_of(opt.choices)}, not {_shown(str(value))}")
            value = opt.default
        values[opt.dest] = value
    return values, problems


def shared_from(values: Mapping[str, Any]) -> SharedSettings:
    """SharedSettings from `read_options` values of the shared table; absent ones keep their defaults."""

    def get(flag: str) -> Any:
        opt = SHARED[flag]
        return values.get(opt.dest, opt.default)

    return SharedSettings(
        eligibility=EligibilitySettings(
            label_semantics=LabelSemantics(get("--label-semantics")),
            ignore_exclude_label=bool(get("--ignore-exclude-lb")),
            load_balancer_class=get("--load-balancer-class") or None,
        ),
        metallb_namespace=get("--metallb-namespace"),
        kubeconfig=get("--kubeconfig"),
        context=get("--context"),
        cluster_state=tuple(get("--cluster-state")),
        log_format=get("--log-format"),
        log_level=get("--log-level"),
    )


def read_shared(
    args: argparse.Namespace, environ: Mapping[str, str], flags: Iterable[str]
) -> tuple[SharedSettings, list[str]]:
    """The shared `flags` a command took (see `add_shared_arguments`), read from `args` and `environ`, and every
    problem (conversion and `validate()`), each one line. The command exits 2 when there is any."""
    values, problems = read_options(args, environ, (SHARED[f] for f in flags))
    settings = shared_from(values)
    return settings, problems + settings.validate()
