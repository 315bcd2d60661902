"""Import contracts of the webhook and its core modules: fastapi only in `webhook/app.py`, no kubernetes client
in `webhook/` at all (it lives in `l2guard/kube/`), and `l2core.policy`/`l2core.validate` on the standard library
and `l2core` alone."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def test_fastapi_and_kubernetes_stay_in_their_adapter_modules() -> None:
    for path in sorted((ROOT / "webhook").glob("*.py")):
        found = _imports(path)
        if path.name != "app.py":
            assert "fastapi" not in found and "starlette" not in found, path
        assert "kubernetes" not in found and "urllib3" not in found, path


def test_policy_and_validation_are_pure() -> None:
    for name in ("policy.py", "validate.py"):
        found = _imports(ROOT / "l2core" / name) - {"__future__"}
        third_party = {m for m in found if m not in sys.stdlib_module_names and m != "l2core"}
        assert not third_party, (name, third_party)
        assert not found & {"logging", "os", "time", "socket", "random", "datetime", "io"}, (name, found)
