"""The operator docs stay true to the code: docs/operations.md lists every Prometheus metric the speaker and the
webhook export, with exactly its labels and type, and nothing else; docs/architecture.md's module map names every
module of the packages it maps, and its data-flow diagram is a Mermaid block (GitHub renders those)."""

from __future__ import annotations

import re
from pathlib import Path

from tests import exported_metrics

ROOT = Path(__file__).resolve().parent.parent
OPERATIONS = (ROOT / "docs" / "operations.md").read_text()
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text()
ROW = re.compile(r"^\| `(l2guard_[a-z0-9_]+)(?:\{([a-z_,]+)\})?` \| (\w+) \|", re.MULTILINE)


def documented(text: str) -> dict[str, tuple[str, frozenset[str]]]:
    section = text[text.index("## Prometheus metrics") :]
    return {m[1]: (m[3], frozenset(m[2].split(",")) if m[2] else frozenset()) for m in ROW.finditer(section)}


def test_the_operations_guide_lists_every_exported_metric_with_its_labels() -> None:
    assert documented(OPERATIONS) == exported_metrics.metrics()


def test_the_metric_list_check_sees_a_missing_or_relabelled_metric() -> None:
    renamed = OPERATIONS.replace("`l2guard_speaker_api_connected`", "`l2guard_speaker_api_up`")
    relabelled = OPERATIONS.replace(
        "`l2guard_webhook_requests_total{endpoint,outcome}`", "`l2guard_webhook_requests_total{endpoint}`"
    )
    assert documented(renamed) != exported_metrics.metrics()
    assert documented(relabelled)["l2guard_webhook_requests_total"] == ("counter", {"endpoint"})


def test_the_module_map_names_every_module() -> None:
    table = ARCHITECTURE[ARCHITECTURE.index("## Module map") : ARCHITECTURE.index("## Why the core is pure")]
    rows = {m[1]: m[2] for m in re.finditer(r"^\| `([a-z0-9_/.]+)`[^|]*\| (.*)$", table, re.MULTILINE)}
    for package in ("l2core", "l2guard/kube", "l2guard/control", "webhook", "speaker"):
        modules = {p.stem for p in (ROOT / package).glob("*.py")} - {"__init__", "__main__"}
        missing = sorted(m for m in modules if f"`{m}`" not in rows[f"{package}/"])
        assert missing == [], f"{package}/: {missing}"
    assert {"l2guard/view.py", "l2guard/settings.py", "manifests/", "bench/", "tests/"} <= rows.keys()


def test_the_data_flow_is_a_mermaid_diagram() -> None:
    block = ARCHITECTURE[ARCHITECTURE.index("```mermaid") :]
    block = block[: block.index("\n```\n")]
    assert block.splitlines()[1].strip() == "flowchart LR"
    for step in ("view.py", "plan.py", "reconcile.py", "announcer.py"):
        assert step in block


def _slug(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation but hyphens and underscores dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_benchmark_index_has_every_benchmark_and_its_sections_exist() -> None:
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    index = text[: text.index("\n## ")]
    rows = re.findall(r"^\| `(bench/[a-z_]+\.py)` \| `([^`]+)`", index, re.MULTILINE)
    helpers = set(re.findall(r"`(bench/[a-z_]+\.py)`", index[index.index("Helpers, not benchmarks") :]))
    scripts = {f"bench/{p.name}" for p in (ROOT / "bench").glob("*.py")} - {"bench/__init__.py"}
    assert sorted(path for path, _ in rows) == sorted(scripts - helpers)
    assert helpers <= scripts
    for path, command in rows:
        assert path in command
    slugs = {_slug(h) for h in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}
    anchors = set(re.findall(r"\]\(#([a-z0-9_-]+)\)", index))
    assert anchors and anchors <= slugs, sorted(anchors - slugs)


def test_every_link_in_the_operator_docs_reaches_a_file_and_section() -> None:
    for doc in ("architecture.md", "operations.md", "benchmarks.md"):
        here = ROOT / "docs" / doc
        for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([a-z0-9_-]+))?\)", here.read_text()):
            if target.startswith("http"):
                continue
            path = (here.parent / target).resolve() if target else here
            assert path.exists(), f"{doc}: {target}"
            if anchor:
                slugs = {_slug(h) for h in re.findall(r"^#+ (.+)$", path.read_text(), re.MULTILINE)}
                assert anchor in slugs, f"{doc}: {target}#{anchor}"
