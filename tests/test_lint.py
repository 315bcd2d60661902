"""ruff and mypy --strict must stay clean on the package code (the foundation issue); CI runs this suite, so a
regression fails CI instead of waiting for someone to remember the commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_is_clean() -> None:
    proc = run(str(BIN / "ruff"), "check", "--no-cache", ".")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_strict_is_clean_on_the_packages() -> None:
    proc = run(sys.executable, "-m", "mypy", "--strict")  # packages and settings come from pyproject.toml
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success" in proc.stdout
