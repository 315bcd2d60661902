"""The shared settings table (`l2guard.settings`): each shared flag and its environment twin mean the same in every
command that takes it, so `explain`, the webhook and the speaker cannot disagree on who may announce (issue 8,
part 1: explain lacked `--load-balancer-class`)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from l2core.model import EligibilitySettings, LabelSemantics
from l2guard.cli import build_parser
from l2guard.settings import SettingsError, SharedSettings
from tests.builders import advertisement, endpoints, node, pool, service

ROOT = Path(__file__).resolve().parent.parent
CLASS = "example.com/l2guard"


def _explain(argv: list[str], environ: dict[str, str]) -> SharedSettings:
    from l2guard import explain

    args = build_parser("explain").parse_args(["explain", *argv])
    try:
        return explain.settings_from(args, environ)
    except explain.UsageError as exc:
        raise SettingsError(str(exc)) from None


def _webhook(argv: list[str], environ: dict[str, str]) -> SharedSettings:
    from webhook.settings import from_args

    args = build_parser("webhook").parse_args(["webhook", "--cert-file", "c", "--key-file", "k", *argv])
    return from_args(args, environ).shared


# Every command that takes the eligibility flags, read as its `run` reads them.
COMMANDS: dict[str, Callable[[list[str], dict[str, str]], SharedSettings]] = {
    "explain": _explain,
    "webhook": _webhook,
}

PRESENCE = EligibilitySettings()
# (flag arguments, environment, expected eligibility, expected MetalLB namespace). The expectations are written out
# here, not computed by the code under test.
CASES = [
    ([], {}, PRESENCE, "metallb-system"),
    (["--label-semantics", "true-only"], {}, EligibilitySettings(label_semantics=LabelSemantics.TRUE_ONLY), None),
    ([], {"L2GUARD_LABEL_SEMANTICS": "true-only"}, EligibilitySettings(label_semantics=LabelSemantics.TRUE_ONLY), None),
    (["--label-semantics", "presence"], {"L2GUARD_LABEL_SEMANTICS": "true-only"}, PRESENCE, None),
    (["--ignore-exclude-lb"], {}, EligibilitySettings(ignore_exclude_label=True), None),
    ([], {"L2GUARD_IGNORE_EXCLUDE_LB": "yes"}, EligibilitySettings(ignore_exclude_label=True), None),
    (["--no-ignore-exclude-lb"], {"L2GUARD_IGNORE_EXCLUDE_LB": "true"}, PRESENCE, None),
    (["--load-balancer-class", CLASS], {}, EligibilitySettings(load_balancer_class=CLASS), None),
    ([], {"L2GUARD_LOAD_BALANCER_CLASS": CLASS}, EligibilitySettings(load_balancer_class=CLASS), None),
    (
        ["--load-balancer-class", "a/b"],
        {"L2GUARD_LOAD_BALANCER_CLASS": CLASS},
        EligibilitySettings(load_balancer_class="a/b"),
        None,
    ),
    (["--metallb-namespace", "lb"], {}, PRESENCE, "lb"),
    ([], {"L2GUARD_METALLB_NAMESPACE": "lb"}, PRESENCE, "lb"),
    (["--metallb-namespace", "lb"], {"L2GUARD_METALLB_NAMESPACE": "other"}, PRESENCE, "lb"),
]


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize(("argv", "environ", "eligibility", "namespace"), CASES)
def test_every_command_reads_each_eligibility_flag_and_its_twin_alike(
    command: str, argv: list[str], environ: dict[str, str], eligibility: EligibilitySettings, namespace: str | None
) -> None:
    settings = COMMANDS[command](argv, environ)
    assert settings.eligibility == eligibility
    assert settings.metallb_namespace == (namespace or "metallb-system")


ERRORS = [
    (["--label-semantics", "sometimes"], {}, "--label-semantics must be presence or true-only, not 'sometimes'"),
    ([], {"L2GUARD_LABEL_SEMANTICS": "x"}, "L2GUARD_LABEL_SEMANTICS must be presence or true-only, not 'x'"),
    ([], {"L2GUARD_IGNORE_EXCLUDE_LB": "maybe"}, "L2GUARD_IGNORE_EXCLUDE_LB: 'maybe' is not true or false"),
    (["--metallb-namespace", ""], {}, "--metallb-namespace must not be empty"),
    ([], {"L2GUARD_METALLB_NAMESPACE": ""}, "--metallb-namespace must not be empty"),
    ([], {"L2GUARD_LABEL_SEMANTICS": "x" * 100_000}, "not '" + "x" * 40 + "...'"),
]


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize(("argv", "environ", "message"), ERRORS)
def test_every_command_refuses_a_bad_shared_value_with_the_same_line(
    command: str, argv: list[str], environ: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError) as info:
        COMMANDS[command](argv, environ)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert len(str(info.value)) < 300  # a huge variable is quoted in part, not echoed


def test_every_problem_is_reported_at_once() -> None:
    environ = {"L2GUARD_LABEL_SEMANTICS": "x", "L2GUARD_IGNORE_EXCLUDE_LB": "maybe"}
    for command in COMMANDS:
        with pytest.raises(SettingsError) as info:
            COMMANDS[command](["--metallb-namespace", ""], environ)
        text = str(info.value)
        assert "L2GUARD_LABEL_SEMANTICS" in text and "L2GUARD_IGNORE_EXCLUDE_LB" in text, command
        assert "--metallb-namespace must not be empty" in text, command


def test_every_eligibility_flag_names_its_twin_in_each_commands_help() -> None:
    for command in COMMANDS:
        parser = build_parser(command)
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        text = sub.choices[command].format_help()
        for flag, env in [
            ("--label-semantics", "L2GUARD_LABEL_SEMANTICS"),
            ("--ignore-exclude-lb", "L2GUARD_IGNORE_EXCLUDE_LB"),
            ("--load-balancer-class", "L2GUARD_LOAD_BALANCER_CLASS"),
            ("--metallb-namespace", "L2GUARD_METALLB_NAMESPACE"),
        ]:
            assert flag in text and env in " ".join(text.split()), (command, flag)


def _cluster(tmp_path: Path) -> Path:
    docs = [
        node("worker-1"),
        pool("lan", "192.0.2.0/24"),
        advertisement("l2", ipAddressPools=["lan"]),
        service("plain", "192.0.2.10"),
        endpoints("plain", ["worker-1"]),
        service("classy", "192.0.2.11", lb_class=CLASS),
        endpoints("classy", ["worker-1"]),
    ]
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
    return path


def _explain_json(*argv: str, environ: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("L2GUARD_")}
    proc = subprocess.run(
        [sys.executable, "-m", "l2guard.cli", "explain", "-o", "json", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**env, **(environ or {})},
    )
    assert proc.returncode == 0, proc.stderr
    return {s["name"]: s["status"] for s in json.loads(proc.stdout)["services"]}


def test_explain_load_balancer_class_makes_services_of_another_class_not_ours(tmp_path: Path) -> None:
    state = str(_cluster(tmp_path))
    assert _explain_json(state) == {"classy": "not-ours", "plain": "announced"}
    assert _explain_json(state, "--load-balancer-class", CLASS) == {"classy": "announced", "plain": "not-ours"}
    assert _explain_json(state, environ={"L2GUARD_LOAD_BALANCER_CLASS": CLASS}) == {
        "classy": "announced",
        "plain": "not-ours",
    }


def test_explain_table_names_the_class_it_judges_by(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "l2guard.cli", "explain", str(_cluster(tmp_path)), "--load-balancer-class", CLASS],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"ours: loadBalancerClass {CLASS}" in proc.stdout.splitlines()[0]
    assert "default/plain  192.0.2.10  not ours (no loadBalancerClass)" in proc.stdout


def _announce_log_format(argv: list[str], environ: dict[str, str]) -> str:
    from l2guard.settings import read_shared
    from speaker import announce_cli

    args = build_parser("announce").parse_args(["announce", *argv, "192.0.2.1"])
    settings, problems = read_shared(args, environ, announce_cli.SHARED_FLAGS)
    assert problems == []
    return settings.log_format


@pytest.mark.parametrize(
    ("argv", "environ", "expected"),
    [
        ([], {}, "auto"),
        (["--log-format", "json"], {}, "json"),
        ([], {"L2GUARD_LOG_FORMAT": "text"}, "text"),
        (["--log-format", "json"], {"L2GUARD_LOG_FORMAT": "text"}, "json"),
    ],
)
def test_the_log_format_and_its_twin_mean_the_same_in_the_webhook_and_announce(
    argv: list[str], environ: dict[str, str], expected: str
) -> None:
    assert _webhook(argv, environ).log_format == expected
    assert _announce_log_format(argv, environ) == expected


@pytest.mark.parametrize(
    ("argv", "environ", "kubeconfig", "context"),
    [
        (["--live"], {}, "", ""),
        (["--live", "--kubeconfig", "/etc/k.yaml", "--context", "prod"], {}, "/etc/k.yaml", "prod"),
        (["--live"], {"L2GUARD_KUBECONFIG": "/etc/k.yaml", "L2GUARD_CONTEXT": "prod"}, "/etc/k.yaml", "prod"),
        (["--live", "--context", "dev"], {"L2GUARD_CONTEXT": "prod"}, "", "dev"),
    ],
)
def test_explain_live_reads_kubeconfig_and_context_from_the_shared_table(
    argv: list[str], environ: dict[str, str], kubeconfig: str, context: str
) -> None:
    settings = _explain(argv, environ)
    assert (settings.kubeconfig, settings.context) == (kubeconfig, context)
