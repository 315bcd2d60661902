"""The alerts component (manifests/components/alerts/) stays true to the code: every metric its rules, its promtool
unit tests and its Grafana dashboard name is one that l2guard exports, with the labels it exports (read from the
metrics' own registries, so a renamed metric or label fails here), `promtool check rules` and `promtool test rules`
pass (promtool: Debian's `prometheus` package, installed by .ci/run), the PrometheusRule holds exactly the groups of
the plain rules file, and every runbook an alert points at is a section of docs/operations.md."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import exported_metrics

from .conftest import MANIFESTS, ROOT, Doc, of_kind

ALERTS = MANIFESTS / "components" / "alerts"
RULES = ALERTS / "l2guard.rules.yaml"
RULE_TESTS = ALERTS / "l2guard.rules.test.yaml"
DASHBOARD = ALERTS / "dashboard.json"
OPERATIONS = ROOT / "docs" / "operations.md"
# Labels a scrape adds (Prometheus: job, instance; the prometheus-operator: namespace, pod, container, endpoint;
# the component's PodMonitors: node), on top of those a metric is exported with.
TARGET_LABELS = frozenset({"job", "instance", "namespace", "pod", "container", "endpoint", "node"})
NAME = re.compile(r"\bl2guard_[a-z0-9_]+\b")


EXPORTED = exported_metrics.series()


def unknown(expr: str, series: dict[str, frozenset[str]]) -> list[str]:
    """What in a PromQL expression is not exported: metric names, and labels (in `by`/`without` and matchers) that
    neither its metrics nor a scrape carry. An expression that names no l2guard metric at all is unknown too."""
    names = set(NAME.findall(expr))
    problems = sorted(n for n in names if n not in series)
    if not names:
        problems.append(f"no l2guard metric in {expr!r}")
    allowed = TARGET_LABELS.union(*(series.get(n, frozenset()) for n in names))
    used = {
        label.strip() for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr) for label in group.split(",")
    }
    for matchers in re.findall(r"\{([^}]*)\}", expr):
        used |= set(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", matchers))
    problems += sorted(f"label {label}" for label in used - allowed if label)
    return problems


def rule_exprs() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    def walk(panels: list[dict[str, Any]]) -> Iterator[str]:
        for panel in panels:
            yield from (target["expr"] for target in panel.get("targets", ()))
            yield from walk(panel.get("panels", []))

    return list(walk(json.loads(DASHBOARD.read_text())["panels"]))


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert shutil.which("promtool"), "promtool is missing: apt-get install --no-install-recommends prometheus"
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_the_exported_series_are_read_from_the_code() -> None:
    """A sanity check of the source of truth: a few series as docs/speaker.md and docs/webhook.md name them."""
    assert EXPORTED["l2guard_speaker_eligible_nodes"] == {"service"}
    assert EXPORTED["l2guard_speaker_conflicts_handled_total"] == {"action"}
    assert EXPORTED["l2guard_speaker_requests_answered_total"] == {"family", "interface"}
    assert EXPORTED["l2guard_webhook_request_seconds_bucket"] == {"endpoint", "le"}
    assert EXPORTED["l2guard_webhook_cert_expiry_seconds"] == frozenset()


def test_the_name_check_fails_on_a_renamed_metric_or_label() -> None:
    expr = "max by (service) (l2guard_speaker_eligible_nodes) == 0"
    assert unknown(expr, EXPORTED) == []
    assert unknown(expr.replace("eligible_nodes", "eligible"), EXPORTED) == [
        "l2guard_speaker_eligible",
        "label service",
    ]
    assert unknown(expr.replace("(service)", "(svc)"), EXPORTED) == ["label svc"]
    assert unknown('up{job="x"}', EXPORTED) == ["no l2guard metric in 'up{job=\"x\"}'"]


def test_every_alert_names_only_exported_metrics_and_labels() -> None:
    assert {expr: unknown(expr, EXPORTED) for expr in rule_exprs()} == {expr: [] for expr in rule_exprs()}


def test_every_dashboard_expression_names_only_exported_metrics_and_labels() -> None:
    exprs = dashboard_exprs()
    assert len(exprs) >= 20
    assert {expr: unknown(expr, EXPORTED) for expr in exprs} == {expr: [] for expr in exprs}


def test_the_dashboard_covers_every_exported_metric() -> None:
    """A new metric gets a panel (or this test names it). Histograms count once, by their buckets."""
    named = {n for expr in dashboard_exprs() for n in NAME.findall(expr)}
    wanted = {n for n in EXPORTED if not n.endswith(("_created", "_sum", "_count"))}
    assert sorted(wanted - named) == []


def test_promtool_checks_the_rules() -> None:
    result = promtool("check", "rules", RULES.name, cwd=ALERTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    result = promtool("test", "rules", RULE_TESTS.name, cwd=ALERTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_use_series_shaped_like_the_exported_ones() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())
    assert tests["rule_files"] == [RULES.name]
    series = [s["series"] for test in tests["tests"] for s in test["input_series"]]
    tested = {a["alertname"] for test in tests["tests"] for a in test.get("alert_rule_test", ())}
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    assert tested == alerts
    for text in series:
        match = re.fullmatch(r"(\w+)\{(.*)\}", text)
        assert match, text
        name, labels = match[1], set(re.findall(r"(\w+)=\"", match[2]))
        assert name in EXPORTED, f"{name} is not exported"
        assert labels - TARGET_LABELS == EXPORTED[name], f"{text}: not the labels {name} is exported with"


def test_promtool_parses_every_dashboard_expression(tmp_path: Path) -> None:
    """Grafana's $__rate_interval stands for a range; with a fixed one each expression must be valid PromQL."""
    rules = [
        {"record": f"l2guard:dashboard:{i}", "expr": e.replace("$__rate_interval", "5m")}
        for i, e in enumerate(dashboard_exprs())
    ]
    (tmp_path / "dashboard.rules.yaml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", "dashboard.rules.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_prometheusrule_holds_the_rules_file(renders: dict[str, list[Doc]]) -> None:
    (rule,) = of_kind(renders["every-component"], "PrometheusRule")
    assert (rule["apiVersion"], rule["metadata"]["namespace"]) == ("monitoring.coreos.com/v1", "l2guard-system")
    assert rule["spec"] == yaml.safe_load(RULES.read_text())


def test_the_component_ships_the_dashboard_and_scrapes_both_programs(renders: dict[str, list[Doc]]) -> None:
    docs = renders["every-component"]
    (dashboard,) = [d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"] == "l2guard-dashboard"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["l2guard.json"]) == json.loads(DASHBOARD.read_text())
    monitors = {m["metadata"]["name"]: m["spec"] for m in of_kind(docs, "PodMonitor")}
    workloads = {w["metadata"]["name"]: w for w in of_kind(docs, "Deployment") + of_kind(docs, "DaemonSet")}
    assert set(monitors) == set(workloads) == {"l2guard-webhook", "l2guard-speaker"}
    for name, spec in monitors.items():
        workload = workloads[name]
        assert spec["selector"]["matchLabels"] == workload["spec"]["selector"]["matchLabels"]
        assert spec["namespaceSelector"]["matchNames"] == [workload["metadata"]["namespace"]]
        ports = {p["name"] for c in workload["spec"]["template"]["spec"]["containers"] for p in c.get("ports", ())}
        assert {e["port"] for e in spec["podMetricsEndpoints"]} <= ports


@pytest.mark.parametrize("anchor", sorted(set(re.findall(r"docs/operations\.md#([a-z0-9-]+)", RULES.read_text()))))
def test_every_runbook_is_a_section_of_the_operations_guide(anchor: str) -> None:
    # GitHub's heading anchors: lower case, punctuation but hyphens dropped, spaces to hyphens
    headings = re.findall(r"^#+ (.+)$", OPERATIONS.read_text(), re.MULTILINE)
    slugs = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}
    assert anchor in slugs
