"""README's "Reliability guarantees": every line names tests, and every named test exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## Reliability guarantees")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def _named_tests(section: str) -> list[tuple[str, str]]:
    """(file, test name) for every `path::name` and every following `::name` (same file)."""
    found: list[tuple[str, str]] = []
    current = ""
    for path, name in re.findall(r"`(tests/[\w/]+\.py)?::(\w+)`", section):
        current = path or current
        assert current, f"::{name} names no file before it"
        found.append((current, name))
    return found


def _functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}


def test_every_guarantee_names_a_test_that_exists() -> None:
    section = _section()
    bullets = [b for b in re.split(r"\n- ", section)[1:]]
    assert len(bullets) >= 15
    for bullet in bullets:
        assert "::test_" in bullet, f"a guarantee without a test: {bullet[:80]}"
    named = _named_tests(section)
    assert len(named) >= 30
    missing = [f"{f}::{n}" for f, n in named if n not in _functions(ROOT / f)]
    assert not missing, f"README names tests that do not exist: {missing}"
