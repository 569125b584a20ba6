"""The snippets of docs/llamaindex.md run as written.

Blocks run in document order; a ``<!-- doctest: NAME -->`` marker starts a group, and each group
runs in one fresh namespace. Groups named ``e2e...`` load the real offline models.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.doc_snippets import doc_groups
from tests.doc_snippets import run_group as run_snippets

DOC = Path(__file__).resolve().parents[2] / "docs" / "llamaindex.md"
GROUPS = doc_groups(DOC)


def run_group(name: str) -> None:
    run_snippets(DOC, GROUPS, name)


def test_docs_have_the_expected_groups():
    assert set(GROUPS) == {"fast", "e2e-query", "e2e-chat"}
    assert all(GROUPS.values())


def test_fast_snippets():
    run_group("fast")


@pytest.mark.e2e
@pytest.mark.parametrize("name", ["e2e-query", "e2e-chat"])
def test_e2e_snippets(name):
    run_group(name)
