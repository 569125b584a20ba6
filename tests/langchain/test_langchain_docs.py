"""The snippets of docs/langchain.md run as written, in order, sharing one namespace."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "langchain.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)

# What some snippets must print: (a line of the snippet, a string its output contains).
EXPECTED_OUTPUT = [
    ('version="v2"', "aligners_scores"),
    ('version="v2"', "aligners_applied"),
    ("wrapped.invoke", "Name a colour."),  # the chain's question reached the record
    ("guard = AlignerSquad(check_only=True)", "ethical"),
]


def test_docs_snippets_are_valid_python():
    assert len(SNIPPETS) >= 9
    for i, block in enumerate(SNIPPETS):
        compile(block, f"{DOC.name}[{i}]", "exec")


@pytest.fixture(scope="module")
def namespace() -> dict[str, Any]:
    return {"__name__": "docs_langchain"}


@pytest.mark.e2e
@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_docs_snippet_runs(index: int, namespace: dict[str, Any], capsys: Any) -> None:
    if index and not namespace.get(f"_ok_{index - 1}"):
        pytest.skip("an earlier snippet failed; this one builds on it")
    block = SNIPPETS[index]
    exec(compile(block, f"{DOC.name}[{index}]", "exec"), namespace)
    printed = capsys.readouterr().out
    for marker, expected in EXPECTED_OUTPUT:
        if marker in block:
            assert expected in printed
    namespace[f"_ok_{index}"] = True
