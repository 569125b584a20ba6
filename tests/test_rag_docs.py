"""The snippets of docs/rag.md run as written.

Only ```python blocks run (```py, ```json and ```bash blocks are shown, not run), in document
order; a ``<!-- doctest: NAME -->`` marker starts a group, and each group runs in one fresh
namespace. The ``shipped`` group needs the shipped grounded model and the offline models: it is
skipped, saying so, until they are installed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aligners import ModelNotFoundError, Squad

DOC = Path(__file__).resolve().parents[1] / "docs" / "rag.md"
MARKER = re.compile(r"<!-- doctest: ([\w-]+) -->")
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def doc_groups() -> dict[str, list[str]]:
    """Code blocks by group, in order; every block must sit under a marker."""
    text = DOC.read_text()
    events = sorted(
        [(m.start(), "marker", m.group(1)) for m in MARKER.finditer(text)]
        + [(m.start(), "code", m.group(1)) for m in BLOCK.finditer(text)]
    )
    groups: dict[str, list[str]] = {}
    current = None
    for _, kind, value in events:
        if kind == "marker":
            current = value
            groups.setdefault(current, [])
        else:
            assert current is not None, "a python block in docs/rag.md has no doctest marker"
            groups[current].append(value)
    return groups


GROUPS = doc_groups()


def run_group(name: str) -> None:
    namespace: dict[str, object] = {"__name__": f"docs_rag_{name}"}
    for number, code in enumerate(GROUPS[name], 1):
        exec(compile(code, f"{DOC.name}[{name} #{number}]", "exec"), namespace)


def test_docs_have_the_expected_groups() -> None:
    assert set(GROUPS) == {"fast", "shipped"}
    assert len(GROUPS["fast"]) == 4 and len(GROUPS["shipped"]) == 2


def test_fast_snippets() -> None:
    run_group("fast")


def test_the_one_line_is_the_one_the_snippets_run() -> None:
    """The documented LangChain line is the one the fast group runs."""
    text = DOC.read_text()
    line = "chain = AlignerSquad(squad=squad).grounded_chain(retriever, prompt | llm)"
    assert f"```py\n{line}\n```" in text
    assert any(line in block for block in GROUPS["fast"])


def test_the_readme_and_the_integration_docs_link_the_page() -> None:
    root = DOC.parents[1]
    for page in ("README.md", "docs/llamaindex.md", "docs/langchain.md"):
        assert "rag.md" in (root / page).read_text(), page


@pytest.mark.e2e
def test_shipped_model_snippets() -> None:
    try:
        Squad.default(["grounded"])
    except ModelNotFoundError as error:
        pytest.skip(f"the shipped grounded model is not installed yet ({error})")
    run_group("shipped")
