"""The Python snippets of docs/benchmarks.md (outside the proxy load-test section) run as written.

Snippets whose first line is ``# e2e`` load the real models and run in the e2e group.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"


def own_sections(text: str) -> str:
    """The document without the ``## Proxy load test`` section (another part of the project)."""
    return re.sub(r"^## Proxy load test\n.*?(?=^## |\Z)", "", text, flags=re.S | re.M)


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", own_sections(DOC.read_text(encoding="utf-8")), re.S)


FAST = [b for b in blocks() if not b.startswith("# e2e")]
SLOW = [b for b in blocks() if b.startswith("# e2e")]


def test_doc_has_fast_and_e2e_snippets() -> None:
    assert FAST and SLOW
    assert "## Evaluation" in DOC.read_text() and "## Benchmark results" in DOC.read_text()


@pytest.mark.parametrize("code", FAST, ids=[f"fast-{i}" for i in range(len(FAST))])
def test_fast_snippet_runs(code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "<docs/benchmarks.md>", "exec"), {"__name__": "__docs__"})


@pytest.mark.e2e
@pytest.mark.parametrize("code", SLOW, ids=[f"e2e-{i}" for i in range(len(SLOW))])
def test_e2e_snippet_runs(code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "<docs/benchmarks.md>", "exec"), {"__name__": "__docs__"})
