"""The Python snippets in README.md and docs/engine.md run as written (on the real models)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


SNIPPETS = [
    pytest.param(code, id=f"{path.name}-{i}")
    for path in (ROOT / "README.md", ROOT / "docs" / "engine.md")
    for i, code in enumerate(python_blocks(path))
]


def test_docs_have_snippets() -> None:
    assert len(SNIPPETS) >= 7


@pytest.mark.e2e
@pytest.mark.parametrize("code", SNIPPETS)
def test_snippet_runs(code: str) -> None:
    exec(compile(code, "<docs>", "exec"), {"__name__": "__docs__"})
