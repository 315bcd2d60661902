"""The flag lists in the docs stay true: every flag the webhook and `explain` take is documented where operators
look for it (docs/webhook.md, the README's explain section), so a flag added to the shared table is documented."""

from __future__ import annotations

import argparse
from pathlib import Path

from l2guard.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


def _long_flags(command: str) -> set[str]:
    parser = build_parser(command)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    flags = {s for a in sub.choices[command]._actions for s in a.option_strings if s.startswith("--")}
    return {f for f in flags if f != "--help" and not f.startswith("--no-")}


def test_docs_webhook_md_lists_every_webhook_flag() -> None:
    text = (ROOT / "docs" / "webhook.md").read_text()
    missing = sorted(f for f in _long_flags("webhook") if f"`{f}" not in text)
    assert missing == []


def test_the_readme_lists_every_explain_flag() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## `l2guard explain`") :]
    section = section[: section.index("\n## ", 1)]
    missing = sorted(f for f in _long_flags("explain") if f"`{f}" not in section)
    assert missing == []


def test_docs_speaker_md_lists_every_speaker_flag() -> None:
    text = (ROOT / "docs" / "speaker.md").read_text()
    missing = sorted(f for f in _long_flags("speaker") if f"`{f}" not in text)
    assert missing == []
