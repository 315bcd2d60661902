"""Fixtures for the speaker tests: root gating and the namespace topology (see speaker_netns.py)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def need_root() -> None:
    """Skip without root, except in CI (env CI set), where missing root must fail loudly."""
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("this test needs root (CI is set, so it may not be skipped)")
        pytest.skip("needs root and network namespaces")
