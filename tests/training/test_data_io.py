"""Readers and writers: our layouts, the published ones, and malformed rows."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest

from aligners.data import (
    CorrectionTriple,
    DataFormatError,
    InspectorExample,
    dpo_records,
    factuality_proxy_examples,
    read_examples,
    read_triples,
    split_hh_transcript,
    triples_to_examples,
    write_dpo,
    write_records,
)


def _triples() -> list[CorrectionTriple]:
    return [
        CorrectionTriple(
            question="Q1?", answer="bad one", correction="good one", criterion="ethical"
        ),
        CorrectionTriple(question="Q2?", answer="same", correction="same", metadata={"k": 1}),
    ]


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".jsonl.gz"])
def test_round_trip_every_file_type(tmp_path: Path, suffix: str) -> None:
    path = write_records(tmp_path / f"t{suffix}", _triples())
    result = read_triples(path)
    assert result.errors == []
    assert [t.model_dump() for t in result.records] == [t.model_dump() for t in _triples()]


def test_examples_round_trip_csv(tmp_path: Path) -> None:
    rows = [
        InspectorExample(question="q", answer="a", label=1),
        InspectorExample(question="q", answer="b", label=0),
    ]
    path = write_records(tmp_path / "e.csv", rows)
    assert [e.label for e in read_examples(path).records] == [1, 0]


def test_hh_rlhf_split_at_last_assistant_turn(tmp_path: Path) -> None:
    dialogue = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how do I hurt him?"
    row = {
        "chosen": dialogue + "\n\nAssistant: I won't help with that.",
        "rejected": dialogue + "\n\nAssistant: Hit him.",
    }
    path = tmp_path / "hh.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(json.dumps(row) + "\n")
    (triple,) = read_triples(path, criterion="ethical").records
    assert triple.question == dialogue.strip()
    assert "Assistant: hello" in triple.question  # earlier turns stay in the question
    assert triple.answer == "Hit him."
    assert triple.correction == "I won't help with that."
    assert triple.criterion == "ethical"
    assert split_hh_transcript("\n\nHuman: a\n\nAssistant: b") == ("Human: a", "b")


def test_published_layouts(tmp_path: Path) -> None:
    ibm = tmp_path / "ibm.csv"
    with open(ibm, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["input", "initial_response", "aligned_response"])
        writer.writerow(["Is it safe?", "Sure, go ahead.", "Please be careful."])
    alpaca = tmp_path / "model_outputs.json"
    alpaca.write_text(
        json.dumps([{"instruction": "I", "original_output": "O", "output": "C", "generator": "g"}])
    )
    pku = tmp_path / "pku.json"
    pku.write_text(json.dumps([{"question": "q", "answer": "a", "correction": "c"}]))
    assert read_triples(ibm).records[0].correction == "Please be careful."
    assert read_triples(alpaca, layout="alpacaeval").records[0].metadata == {"generator": "g"}
    assert read_triples(pku, layout="pku").records[0].answer == "a"


def test_malformed_rows_are_reported_with_line_or_fatal(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(
        json.dumps({"question": "q", "answer": "a", "correction": "c"}) + "\n"
        "{not json\n"
        + json.dumps({"question": "q", "answer": "a"})
        + "\n"
        + json.dumps({"question": "q", "answer": "a", "correction": "   "})
        + "\n"
    )
    result = read_triples(path, layout="triples")
    assert len(result.records) == 1
    assert [e.line for e in result.errors] == [2, 3, 4]
    assert "not valid JSON" in result.errors[0].message
    assert "correction" in result.errors[1].message
    assert str(result.errors[0]).startswith(f"{path}:2:")
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:2"):
        read_triples(path, layout="triples", on_error="raise")


def test_unknown_layout_and_file_type(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"foo": 1}) + "\n")
    result = read_triples(path)
    assert len(result.errors) == 1 and "cannot tell the layout" in result.errors[0].message
    with pytest.raises(DataFormatError, match="unknown file type"):
        read_triples(tmp_path / "x.txt") if (tmp_path / "x.txt").write_text("a") else None
    with pytest.raises(FileNotFoundError):
        read_triples(tmp_path / "missing.jsonl")


def test_triples_to_examples_and_labels(tmp_path: Path) -> None:
    examples = triples_to_examples(_triples())
    assert [(e.answer, e.label) for e in examples] == [("good one", 1), ("bad one", 0)]
    path = write_records(tmp_path / "t.jsonl", _triples())
    assert len(read_examples(path).records) == 2  # the unchanged triple carries no contrast
    bad = tmp_path / "labels.jsonl"
    bad.write_text(json.dumps({"question": "q", "answer": "a", "label": 3}) + "\n")
    assert "label must be 0 or 1" in read_examples(bad).errors[0].message


def test_dpo_export_in_trl_layout(tmp_path: Path) -> None:
    rows, skipped = dpo_records(_triples())
    assert rows == [{"prompt": "Q1?", "chosen": "good one", "rejected": "bad one"}]
    assert skipped == 1
    written, _ = write_dpo(tmp_path / "dpo.jsonl", _triples(), conversational=True)
    row = json.loads((tmp_path / "dpo.jsonl").read_text().splitlines()[0])
    assert written == 1
    assert row["chosen"] == [{"role": "assistant", "content": "good one"}]
    assert row["prompt"][0]["role"] == "user"


def test_factuality_proxy_is_balanced_and_tampered() -> None:
    triples = [
        CorrectionTriple(
            question=f"q{i}",
            answer="x",
            correction=f"Paris is the capital of France since {1800 + i}.",
        )
        for i in range(6)
    ]
    examples = factuality_proxy_examples(triples, seed=1)
    positives = [e for e in examples if e.label == 1]
    negatives = [e for e in examples if e.label == 0]
    assert len(positives) == len(negatives) == 6
    for pos, neg in zip(positives, negatives):
        assert pos.question == neg.question and pos.answer != neg.answer
        assert neg.metadata["perturbation"] in {"numbers", "names", "negation", "mismatch"}
