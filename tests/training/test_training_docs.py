"""docs/training.md: its Python snippets run as written (real MiniLM/shipped models: e2e)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "training.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
# The first snippet uses no model; the others load MiniLM or the shipped defaults.
FAST = {0}


def test_snippets_compile() -> None:
    assert len(SNIPPETS) >= 3
    for i, block in enumerate(SNIPPETS):
        compile(block, f"{DOC.name}[{i}]", "exec")


def _run(index: int, capsys: Any) -> str:
    exec(compile(SNIPPETS[index], f"{DOC.name}[{index}]", "exec"), {"__name__": "docs_training"})
    return str(capsys.readouterr().out)


def test_data_snippet_runs(capsys: Any) -> None:
    out = _run(0, capsys)
    assert "1 triple;" in out and "triples.jsonl:2: missing field(s) ['correction']" in out
    assert "Ask your neighbour" in out


@pytest.mark.e2e
@pytest.mark.parametrize("index", [i for i in range(len(SNIPPETS)) if i not in FAST])
def test_model_snippets_run(index: int, capsys: Any) -> None:
    out = _run(index, capsys)
    assert out.strip()


@pytest.mark.e2e
def test_documented_numbers_match_shipped_metrics() -> None:
    """The inspector tables quote the metrics stored next to the shipped models."""
    import json

    from aligners.squad.defaults import DEFAULT_INSPECTORS_DIR

    text = DOC.read_text()
    stored = {}
    for criterion in ("helpful", "factuality"):
        stored[criterion] = json.loads(
            (DEFAULT_INSPECTORS_DIR / criterion / "inspector_config.json").read_text()
        )["metrics"]
    for criterion, metrics in stored.items():
        row = next(line for line in text.splitlines() if line.startswith(f"| {criterion} |"))
        accuracy, auroc = (float(x) for x in re.findall(r"\*\*([0-9.]+)\*\*", row))
        assert abs(accuracy - metrics["accuracy"]) <= 0.0006
        assert abs(auroc - metrics["auroc"]) <= 0.0006
