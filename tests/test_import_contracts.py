"""Architecture contracts: the core is pure, and each third-party adapter library stays in its adapter modules."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["l2core", "l2guard", "webhook", "speaker"]

# Which modules may import each adapter library (path prefixes, relative to the repository root).
ADAPTERS = {
    "kubernetes": ("l2guard/kube/", "webhook/kube", "speaker/kube"),
    "scapy": ("speaker/templates",),
    "fastapi": ("webhook/app",),
}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_the_core_imports_only_the_standard_library_and_itself() -> None:
    assert modules("l2core"), "the core package is missing"
    for path in modules("l2core"):
        foreign = {m for m in imports(path) if m not in sys.stdlib_module_names and m != "l2core"}
        assert not foreign, f"{path.relative_to(ROOT)} imports {sorted(foreign)}"


def test_the_core_does_no_io() -> None:
    banned = {
        "socket",
        "subprocess",
        "os",
        "sys",
        "io",
        "pathlib",
        "shutil",
        "logging",
        "time",
        "datetime",
        "random",
        "threading",
        "asyncio",
        "signal",
        "select",
        "selectors",
        "tempfile",
        "urllib",
        "http",
    }
    for path in modules("l2core"):
        used = imports(path) & banned
        assert not used, f"{path.relative_to(ROOT)} imports {sorted(used)}"


def test_adapter_libraries_stay_in_their_adapter_modules() -> None:
    for package in PACKAGES:
        for path in modules(package):
            rel = path.relative_to(ROOT).as_posix()
            for library, allowed in ADAPTERS.items():
                if library in imports(path):
                    assert rel.startswith(allowed), f"{rel} imports {library}; only {allowed} may"


def test_the_contract_checker_sees_imports(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("import scapy.all\nfrom kubernetes import client\nfrom . import sibling\n")
    assert imports(probe) == {"scapy", "kubernetes"}


def test_the_core_calls_no_builtin_io() -> None:
    """`open`, `input`, `print`, `exec`/`eval` and `__import__` are I/O or escape hatches; the core uses none."""
    banned = {"open", "input", "print", "exec", "eval", "__import__", "breakpoint"}
    for path in modules("l2core"):
        tree = ast.parse(path.read_text(), filename=str(path))
        calls = {
            node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        }
        assert not calls & banned, f"{path.relative_to(ROOT)} calls {sorted(calls & banned)}"


def test_the_speakers_data_plane_imports_no_command_or_webhook_code() -> None:
    """The data plane never reads the cluster; of `speaker/`, only the `announce` command's glue imports `l2guard`
    (its settings table and logging set-up)."""
    glue = {"speaker/announce_cli.py"}
    for path in modules("speaker"):
        rel = path.relative_to(ROOT).as_posix()
        banned = {"webhook", "kubernetes"} | ({"l2guard"} if rel not in glue else set())
        assert not imports(path) & banned, f"{rel} imports {sorted(imports(path) & banned)}"
