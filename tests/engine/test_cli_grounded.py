"""``aligners align`` with sources: a ``context`` field per JSONL row (``--context`` for one
``--answer``), passed to the squad; the records carry the grounding report.

The squad is the word-overlap grounded member (verdicts readable by eye) in place of the
default one, or the real ``build_squad`` with ``--inspector`` naming the tiny grounded directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import aligners.cli.align as cli_align
from aligners import DEFAULT_NOT_COVERED, Squad
from aligners.cli.main import app
from tests.grounding_helpers import (
    GROUNDED_ANSWER,
    MIXED_ANSWER,
    PASSAGES,
    REPAIRED_ANSWER,
    UNSUPPORTED,
    grounded_squad,
)

BREAD = "To bake bread, mix flour, water, yeast and salt."


@pytest.fixture
def word_overlap(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """``build_squad`` gives the word-overlap grounded squad; the options it got are kept."""
    seen: list[dict[str, Any]] = []

    def build_squad(*args: Any, **options: Any) -> Squad:
        policy = args[4] if len(args) > 4 else options.get("policy")
        seen.append(options | {"on_flag": policy.on_flag, "on_error": policy.on_error})
        return grounded_squad(on_flag=policy.on_flag, on_error=policy.on_error)

    monkeypatch.setattr(cli_align, "build_squad", build_squad)
    return seen


def rows_file(tmp_path: Path, rows: list[dict[str, Any]]) -> str:
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def records(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_rows_with_a_context_are_checked_against_it(word_overlap, tmp_path) -> None:
    path = rows_file(
        tmp_path,
        [
            {"question": "q", "answer": MIXED_ANSWER, "context": PASSAGES},
            {"question": "q", "answer": GROUNDED_ANSWER, "context": " ".join(PASSAGES)},
            {"question": "q", "answer": MIXED_ANSWER},  # no sources: grounded is skipped
            {"question": "q", "answer": MIXED_ANSWER, "context": [BREAD]},
        ],
    )
    done = CliRunner().invoke(app, ["align", "--input", path, "--batch-size", "3"])
    assert done.exit_code == 0, done.output
    out = records(done.stdout)
    assert [r["text"] for r in out] == [
        REPAIRED_ANSWER,
        GROUNDED_ANSWER,
        MIXED_ANSWER,
        DEFAULT_NOT_COVERED,
    ]
    first = out[0]["grounding"]
    assert first["passages"] == 2
    # The report the repair acted on: the unsupported sentence is the one it dropped.
    claims = [s for s in first["sentences"] if not s["trivial"]]
    assert [s["passage"] for s in claims] == [0, 0, 1]
    assert [s["text"] for s in claims if not s["supported"]] == [UNSUPPORTED]
    assert out[1]["grounding"]["passages"] == 1
    assert out[2]["grounding"] is None and "no context" in out[2]["not_inspected"]["grounded"]


def test_bad_contexts_name_their_line(word_overlap, tmp_path) -> None:
    path = rows_file(
        tmp_path,
        [
            {"answer": MIXED_ANSWER, "context": PASSAGES},
            {"answer": MIXED_ANSWER, "context": [PASSAGES[0], 3]},
            {"answer": MIXED_ANSWER, "context": "bad \udc80"},
        ],
    )
    done = CliRunner().invoke(app, ["align", "--input", path])
    # In process the error is the exception `aligners` prints (tests/engine/test_cli_inputs.py
    # checks the printed form).
    assert done.exit_code != 0 and isinstance(done.exception, ValueError)
    message = "rows.jsonl:2: field 'context' must be a string or a list of strings"
    assert message in str(done.exception)
    skipped = CliRunner().invoke(app, ["align", "--input", path, "--skip-invalid"])
    assert skipped.exit_code == 0, skipped.output
    assert [r["text"] for r in records(skipped.stdout)] == [REPAIRED_ANSWER]
    assert "rows.jsonl:3: " in skipped.stderr and "lone surrogate" in skipped.stderr


def test_one_answer_takes_context_options(word_overlap) -> None:
    args = ["align", "-q", "q", "-a", MIXED_ANSWER, "-x", PASSAGES[0], "-x", PASSAGES[1]]
    done = CliRunner().invoke(app, [*args, "--json"])
    assert done.exit_code == 0, done.output
    (record,) = records(done.stdout)
    assert record["text"] == REPAIRED_ANSWER and record["grounding"]["passages"] == 2
    shown = CliRunner().invoke(app, args)
    assert "sources  : 2 of 3 claims supported by 2 passages" in shown.stdout
    bare = CliRunner().invoke(app, ["align", "-a", MIXED_ANSWER])
    assert "skipped  : grounded (" in bare.stdout and "no context" in bare.stdout
    both = CliRunner().invoke(app, ["align", "-i", __file__, "-x", "a passage"])
    assert both.exit_code == 2 and "--context goes with --answer" in both.output


def test_the_inspector_option_builds_the_trained_grounded_member(tiny_grounded_dir, tmp_path):
    path = rows_file(tmp_path, [{"question": "q", "answer": MIXED_ANSWER, "context": PASSAGES}])
    args = ["align", "-i", path, "--criteria", "grounded", "--inspector", str(tiny_grounded_dir)]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    (record,) = records(done.stdout)
    report = record["grounding"]
    assert report["passages"] == 2 and report["sentences"]
    for sentence in report["sentences"]:
        assert record["original"][sentence["start"] : sentence["end"]] == sentence["text"]
        if not sentence["trivial"]:
            assert sentence["passage"] in (0, 1)
