"""The snippets of docs/rag.md run as written.

Only ```python blocks run (```py, ```json and ```bash blocks are shown, not run), in document
order; a ``<!-- doctest: NAME -->`` marker starts a group, and each group runs in one fresh
namespace. The ``shipped`` group needs the shipped grounded model and the offline models: it is
skipped, saying so, until they are installed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aligners import ModelNotFoundError, Squad
from tests.doc_snippets import doc_groups
from tests.doc_snippets import run_group as run_snippets

DOC = Path(__file__).resolve().parents[1] / "docs" / "rag.md"
GROUPS = doc_groups(DOC)


def run_group(name: str) -> None:
    run_snippets(DOC, GROUPS, name)


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
