"""``aligners eval-grounded``: inspector, baseline and repair metrics on labelled rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aligners.cli.main import app
from aligners.eval.grounded import evaluate_grounding, read_grounding_rows, source_table
from tests.engine.test_grounded import PASSAGES, grounded_squad

ROWS = [
    {
        "question": "Where?",
        "context": PASSAGES,
        "answer": "The Eiffel Tower is in Paris.",
        "label": 1,
        "unsupported": [],
        "source": "a",
    },
    {
        "question": "When?",
        "context": PASSAGES,
        "answer": "The Eiffel Tower is in Paris. It was completed in 1925 by Napoleon.",
        "label": 0,
        "unsupported": ["It was completed in 1925 by Napoleon."],
        "source": "a",
    },
    {
        "question": "Who?",
        "context": " ".join(PASSAGES),
        "answer": "Sure! Gustave Eiffel's company built the tower.",
        "label": 1,
        "source": "b",
    },
    {
        "question": "Who?",
        "context": PASSAGES,
        "answer": "Napoleon built it.",
        "label": 0,
        "source": "b",
    },
]


@pytest.fixture()
def rows_file(tmp_path: Path) -> Path:
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def test_metrics_cover_inspector_baseline_and_repair(rows_file: Path) -> None:
    rows = read_grounding_rows(rows_file)
    report = evaluate_grounding(grounded_squad(), rows, batch_size=3, progress=False)
    s = report["summary"]
    assert (s["n"], s["n_grounded"], s["n_ungrounded"]) == (4, 2, 2)
    assert s["auroc"] == 1.0 and s["balanced_accuracy"] == 1.0
    # one ungrounded answer is the longest and the other the shortest: length says nothing
    assert s["length_only_auroc"] == 0.5
    # the word-overlap baseline separates these hand-made rows too (both bad ones add words)
    assert s["word_overlap_auroc"] == 1.0
    assert s["n_labelled_sentences"] == 3 and s["sentence_auroc"] == 1.0
    assert s["repaired"] == 2 and s["repaired_pass"] == 1.0
    assert s["supported_sentences_kept"] == 1.0 and s["grounded_unchanged"] == 1.0
    assert set(s["by_source"]) == {"a", "b"} and s["by_source"]["b"]["n"] == 2
    repaired = [r["text"] for r in report["records"]]
    assert repaired[1] == "The Eiffel Tower is in Paris."
    assert repaired[3] == "The provided sources do not cover this question."
    assert "| overall | 4 | 2 | 1.000 |" in source_table(s)


def test_bad_rows_and_squads_fail_clearly(tmp_path: Path, rows_file: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q", "answer": "a", "label": 1}) + "\n")
    with pytest.raises(ValueError, match=r"(?s)bad.jsonl:1: not a grounding row.*context"):
        read_grounding_rows(bad)
    from aligners import FunctionInspector, Squad, SquadMember, get_criterion

    other = Squad([SquadMember(get_criterion("helpful"), None, FunctionInspector(lambda q, a: 1))])
    with pytest.raises(ValueError, match="has no 'grounded' member"):
        evaluate_grounding(other, read_grounding_rows(rows_file), progress=False)


def test_cli_writes_the_report(tmp_path: Path, rows_file: Path, tiny_grounded_dir: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "eval-grounded",
            str(rows_file),
            "-o",
            str(out),
            "--inspector",
            str(tiny_grounded_dir),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 4 and "length_only_auroc" in summary
    assert len((out / "records.jsonl").read_text().splitlines()) == 4
    assert "| overall | 4 |" in (out / "by_source.md").read_text()
    assert "| source |" in result.output


def test_bench_inputs_are_a_five_sentence_answer_and_a_long_context(
    tiny_encoder_dir: Path,
) -> None:
    from transformers import AutoTokenizer

    from aligners.eval.bench import grounding_inputs
    from aligners.sources import split_sentences

    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder_dir)
    answer, passages = grounding_inputs(tokenizer, context_tokens=1000)
    assert len(split_sentences(answer)) == 5
    tokens = len(tokenizer(" ".join(passages))["input_ids"])
    assert 1000 <= tokens < 1000 + len(tokenizer(passages[-1])["input_ids"]) + 2
