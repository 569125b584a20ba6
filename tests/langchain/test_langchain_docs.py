"""The snippets of docs/langchain.md run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "langchain.md"


def snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def test_docs_snippets_are_valid_python():
    blocks = snippets()
    assert len(blocks) >= 9
    for i, block in enumerate(blocks):
        compile(block, f"{DOC.name}[{i}]", "exec")


@pytest.mark.e2e
def test_docs_snippets_run_in_order(capsys):
    namespace: dict[str, object] = {"__name__": "docs_langchain"}
    for i, block in enumerate(snippets()):
        exec(compile(block, f"{DOC.name}[{i}]", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "aligners_scores" in printed and "aligners_applied" in printed
    assert "Name a colour." in printed  # the wrapped chain's question reached the record
