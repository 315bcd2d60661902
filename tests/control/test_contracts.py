"""Import contracts of the control plane: it reaches the cluster only through `l2guard.kube`, knows no web framework
and opens no raw sockets (the data plane in `speaker/` does)."""

from __future__ import annotations

import ast
from pathlib import Path

CONTROL = Path(__file__).resolve().parents[2] / "l2guard" / "control"
FORBIDDEN = {"kubernetes", "urllib3", "fastapi", "starlette", "webhook", "scapy"}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_the_control_plane_imports_no_cluster_client_web_framework_or_packet_library() -> None:
    paths = sorted(CONTROL.rglob("*.py"))
    assert paths, "l2guard/control is missing"
    for path in paths:
        assert not _imports(path) & FORBIDDEN, f"{path.name} imports {sorted(_imports(path) & FORBIDDEN)}"


def test_the_control_plane_opens_no_raw_sockets() -> None:
    for path in sorted(CONTROL.rglob("*.py")):
        text = path.read_text()
        assert "AF_PACKET" not in text and "SOCK_RAW" not in text, path.name
