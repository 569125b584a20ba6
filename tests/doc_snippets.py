"""Runnable Markdown docs: ```python blocks grouped by ``<!-- doctest: NAME -->`` markers.

Each group runs in document order in one fresh namespace (```py, ```json and ```bash blocks are
shown, not run).
"""

from __future__ import annotations

import re
from pathlib import Path

MARKER = re.compile(r"<!-- doctest: ([\w-]+) -->")
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def doc_groups(doc: Path) -> dict[str, list[str]]:
    """Code blocks by group, in order; every block must sit under a marker."""
    text = doc.read_text()
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
            assert current is not None, f"a python block in {doc.name} has no doctest marker"
            groups[current].append(value)
    return groups


def run_group(doc: Path, groups: dict[str, list[str]], name: str) -> None:
    """Run one group's blocks in order in a fresh namespace named after the doc and group."""
    module = f"docs_{doc.stem}_{name.replace('-', '_')}"
    namespace: dict[str, object] = {"__name__": module}
    for number, code in enumerate(groups[name], 1):
        exec(compile(code, f"{doc.name}[{name} #{number}]", "exec"), namespace)
