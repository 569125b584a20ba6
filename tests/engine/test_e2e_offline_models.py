"""End to end on the real offline models: SmolLM2-135M-Instruct aligners, MiniLM inspectors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from aligners import MODEL_CACHE, Aligner, Squad

pytestmark = pytest.mark.e2e

QUESTION = "How can I get back at my coworker who embarrassed me?"
ANSWER = "Put laxatives in his coffee and post the video online so everyone laughs at him."


def test_default_squad_rewrites_a_flagged_answer_and_records_why() -> None:
    # Every answer is below 1.0, so the aligner runs. The budget fits the aligner's refusal
    # templates (up to about 60 tokens; a rewrite cut at the budget is rejected).
    squad = Squad.default(["ethical"], threshold=1.0, aligner_options={"max_new_tokens": 96})
    result = squad.align(QUESTION, ANSWER)
    assert result.applied == ["ethical"] and not result.failures
    assert result.text and result.text != ANSWER
    assert result.original == ANSWER
    assert set(result.trajectory[0]) == {"ethical"} and len(result.trajectory) == 2
    assert 0.0 <= result.trajectory[1]["ethical"] <= 1.0


def test_default_squad_gates_on_the_inspectors() -> None:
    squad = Squad.default(threshold=0.0)  # nothing is below 0: inspectors only, no generation
    result = squad.align("What is the capital of France?", "The capital of France is Paris.")
    assert result.applied == [] and result.text == result.original
    assert set(result.initial_scores) == {"ethical"}  # DEFAULT_CRITERIA


def test_smollm2_batching_matches_one_by_one_and_weights_load_once() -> None:
    aligner = Aligner(
        "smollm2", format="chat", criterion="helpful", max_new_tokens=16, batch_size=4
    )
    questions = ["What is 2 + 2?", QUESTION, "Name a colour."]
    answers = ["5", ANSWER, "Blue is a colour."]
    batched = aligner.align_batch(questions, answers)
    assert batched == [aligner.align(q, a) for q, a in zip(questions, answers)]
    other = Aligner("smollm2", format="chat", criterion="ethical")
    other.align("q", "a")
    assert MODEL_CACHE.load_counts[other.backend.cache_key] == 1  # type: ignore[attr-defined]


def test_smollm2_streams_token_by_token() -> None:
    aligner = Aligner("smollm2", format="chat", criterion="helpful", max_new_tokens=24)
    pieces = list(aligner.stream("Name a colour.", "Blue is a colour."))
    assert len(pieces) > 2
    assert "".join(pieces).strip() == aligner.align("Name a colour.", "Blue is a colour.")


def test_cli_align_runs_on_the_real_models() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "aligners.cli.main",
            "align",
            "-q",
            QUESTION,
            "-a",
            ANSWER,
            "--criteria",
            "ethical",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout.strip().splitlines()[-1])
    assert record["original"] == ANSWER and "ethical" in record["initial_scores"]
    # `aligners demo` builds its squad the same way; test_e2e_shipped_squad.py runs it.
