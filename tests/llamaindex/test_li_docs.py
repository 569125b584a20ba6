"""The snippets of docs/llamaindex.md run as written.

Blocks run in document order; a ``<!-- doctest: NAME -->`` marker starts a group, and each group
runs in one fresh namespace. Groups named ``e2e...`` load the real offline models.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "llamaindex.md"
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
            assert current is not None, "a python block in docs/llamaindex.md has no doctest marker"
            groups[current].append(value)
    return groups


GROUPS = doc_groups()


def run_group(name: str) -> None:
    namespace: dict[str, object] = {"__name__": f"docs_llamaindex_{name.replace('-', '_')}"}
    for number, code in enumerate(GROUPS[name], 1):
        exec(compile(code, f"{DOC.name}[{name} #{number}]", "exec"), namespace)


def test_docs_have_the_expected_groups():
    assert set(GROUPS) == {"fast", "e2e-query", "e2e-chat"}
    assert all(GROUPS.values())


def test_fast_snippets():
    run_group("fast")


@pytest.mark.e2e
@pytest.mark.parametrize("name", ["e2e-query", "e2e-chat"])
def test_e2e_snippets(name):
    run_group(name)
