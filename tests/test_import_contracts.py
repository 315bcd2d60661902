"""Architecture contracts: the core is pure, each third-party adapter library stays in its adapter modules, only
`l2guard/kube/` talks to Kubernetes, the speaker's data plane never reads the cluster, and the cluster view
stands apart from the webhook and the client (issue 8, part 1)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["l2core", "l2guard", "webhook", "speaker"]

# Which modules may import each adapter library (path prefixes, relative to the repository root).
ADAPTERS = {
    "kubernetes": ("l2guard/kube/",),
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


def dotted_imports(path: Path) -> set[str]:
    """The absolute module names `path` imports, in full (`l2guard.kube.source`, not `l2guard`)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
            found.add(node.module)
    return found


def loaded_after_import(modules: list[str]) -> set[str]:
    """Every module a fresh interpreter has loaded after importing `modules`: the transitive imports."""
    code = "import importlib, sys\nfor m in sys.argv[1:]: importlib.import_module(m)\nprint('\\n'.join(sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", code, *modules], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    return set(done.stdout.split())


def within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


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


def test_only_the_adapter_package_imports_the_kubernetes_client() -> None:
    for package in PACKAGES:
        for path in modules(package):
            rel = path.relative_to(ROOT).as_posix()
            if not rel.startswith("l2guard/kube/"):
                assert "kubernetes" not in imports(path), f"{rel} imports kubernetes; only l2guard/kube/ may"


def test_the_speaker_data_plane_never_reads_the_cluster() -> None:
    banned = ("kubernetes", "l2guard.kube", "l2guard.view")
    for path in modules("speaker"):
        used = {m for m in dotted_imports(path) if within(m, banned)}
        assert not used, f"{path.relative_to(ROOT)} imports {sorted(used)}"
    names = [".".join(p.relative_to(ROOT).with_suffix("").parts) for p in modules("speaker")]
    loaded = loaded_after_import([n.removesuffix(".__init__") for n in names if not n.endswith("__main__")])
    assert not {m for m in loaded if within(m, banned)}


def test_the_cluster_view_imports_neither_the_webhook_nor_the_client() -> None:
    banned = ("webhook", "kubernetes", "l2guard.kube")
    used = {m for m in dotted_imports(ROOT / "l2guard" / "view.py") if within(m, banned)}
    assert not used, sorted(used)
    loaded = loaded_after_import(["l2guard.view"])
    assert not {m for m in loaded if within(m, banned)}, "l2guard.view pulls them in through another module"


def test_the_dotted_checker_sees_full_module_names(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("import l2guard.kube.source\nfrom l2guard import view\nfrom . import sibling\n")
    assert dotted_imports(probe) == {"l2guard.kube.source", "l2guard", "l2guard.view"}
