"""The squad algorithm with inspectors of known scores and real tiny aligners."""

from __future__ import annotations

from pathlib import Path

import pytest

from aligners import Aligner, FunctionInspector, Squad, SquadMember, get_criterion
from tests.conftest import RANDOM_MODEL
from tests.engine.conftest import BrokenBackend, ConstantBackend


def _member(name: str, aligner: Aligner | None, scores: dict[str, float], threshold: float = 0.5):
    """A member whose inspector scores original answers from a table and rewritten ones 0.9."""
    inspector = FunctionInspector(lambda q, a: scores.get(a, 0.9), criterion=name)
    return SquadMember(get_criterion(name), aligner, inspector, threshold)


@pytest.fixture
def tiny_aligner(tiny_lm_dir: Path) -> Aligner:
    return Aligner(str(tiny_lm_dir), format="chat", max_new_tokens=6, **RANDOM_MODEL)


def test_batch_mean_ordering_gating_and_rescoring(tiny_aligner: Aligner) -> None:
    # Batch means: helpful 0.3, ethical 0.5, factuality 0.75 -> helpful, ethical, factuality.
    members = [
        _member("ethical", tiny_aligner, {"a1": 0.2, "a2": 0.8}),
        _member("factuality", tiny_aligner, {"a1": 0.9, "a2": 0.6}),
        _member("helpful", tiny_aligner, {"a1": 0.1, "a2": 0.5}),
    ]
    results = Squad(members).align_batch(["q1", "q2"], ["a1", "a2"])
    first, second = results
    assert [s.criterion for s in first.stages] == ["helpful", "ethical", "factuality"]
    # a1 fails helpful; once rewritten it scores 0.9 everywhere, so ethical no longer fires.
    assert first.applied == ["helpful"]
    assert first.flagged == ["ethical", "helpful"]
    # a2 passes everything (0.5 is not below the threshold).
    assert second.applied == [] and second.text == "a2"
    assert first.trajectory[0] == {"ethical": 0.2, "factuality": 0.9, "helpful": 0.1}
    assert first.trajectory[1] == {"ethical": 0.9, "factuality": 0.9, "helpful": 0.9}
    assert len(first.trajectory) == 4  # initial + one per stage
    assert first.text == tiny_aligner.align("q1", "a1")
    assert first.stages[0].applied and not first.stages[1].applied
    assert first.stages[1].skipped_reason == "score at or above threshold"
    assert first.passed and first.changed


def test_each_aligner_runs_once_on_the_answers_below_its_threshold(tiny_lm_dir: Path) -> None:
    backend = ConstantBackend("fixed text")
    aligner = Aligner("unused", format="chat", backend=backend)
    members = [_member("ethical", aligner, {"a1": 0.2, "a2": 0.1, "a3": 0.9})]
    results = Squad(members).align_batch(["q"] * 3, ["a1", "a2", "a3"])
    assert backend.calls == [2]  # one batched call with exactly the two failing answers
    assert [r.text for r in results] == ["fixed text", "fixed text", "a3"]


def test_per_answer_ordering(tiny_aligner: Aligner) -> None:
    members = [
        _member("ethical", tiny_aligner, {"a1": 0.3, "a2": 0.1}),
        _member("helpful", tiny_aligner, {"a1": 0.1, "a2": 0.3}),
    ]
    squad = Squad(members, ordering="per-answer")
    first, second = squad.align_batch(["q", "q"], ["a1", "a2"])
    assert first.applied == ["helpful"] and second.applied == ["ethical"]
    assert [s.criterion for s in first.stages] == ["helpful", "ethical"]
    assert [s.criterion for s in second.stages] == ["ethical", "helpful"]


def test_repeat_until_clean_respects_the_round_limit() -> None:
    calls: list[str] = []

    def stubborn(question: str, answer: str) -> float:
        calls.append(answer)
        return 0.1  # never satisfied

    aligner = Aligner("unused", format="chat", backend=ConstantBackend("rewritten"))
    squad = Squad(
        [SquadMember(get_criterion("ethical"), aligner, FunctionInspector(stubborn, "ethical"))],
        max_rounds=3,
    )
    result = squad.align("q", "a")
    assert result.applied == ["ethical"] * 3
    assert len(result.stages) == 3 and not result.passed
    clean = Squad([_member("ethical", aligner, {"a": 0.1})], max_rounds=3).align("q", "a")
    assert clean.applied == ["ethical"]  # clean after round one: no more rounds


def test_squad_without_inspectors_always_applies(tiny_aligner: Aligner) -> None:
    squad = Squad.from_aligner(tiny_aligner)
    result = squad.align("q", "a")
    assert result.applied == ["aligner"]
    assert result.text == tiny_aligner.align("q", "a")
    assert result.trajectory == [{}, {}]


def test_check_only_never_rewrites(tiny_aligner: Aligner) -> None:
    members = [_member("ethical", tiny_aligner, {"bad": 0.1, "good": 0.9})]
    checks = Squad(members).check_batch(["q", "q"], ["bad", "good"])
    assert [c.text for c in checks] == ["bad", "good"]
    assert checks[0].flagged == ["ethical"] and not checks[0].passed
    assert checks[1].flagged == [] and checks[1].passed
    assert all(c.check_only and not c.applied for c in checks)


@pytest.mark.parametrize(
    ("backend", "message"),
    [(BrokenBackend(), "ConnectionError"), (ConstantBackend("   "), "empty text")],
)
def test_failed_aligner_keeps_the_previous_text(backend, message: str) -> None:
    aligner = Aligner("unused", format="chat", backend=backend)
    squad = Squad([_member("ethical", aligner, {"bad": 0.1, "worse": 0.0})])
    results = squad.align_batch(["q", "q"], ["bad", "worse"])
    assert [r.text for r in results] == ["bad", "worse"]
    for result in results:
        assert result.applied == []
        assert len(result.failures) == 1 and message in result.failures[0]
        assert result.stages[0].error and not result.stages[0].applied


def test_one_bad_answer_does_not_sink_the_batch(tiny_lm_dir: Path) -> None:
    aligner = Aligner(
        str(tiny_lm_dir),
        format="ibm",
        max_new_tokens=4,
        max_input_tokens=60,
        overflow="error",
        **RANDOM_MODEL,
    )
    long_answer = "word " * 300
    squad = Squad([_member("ethical", aligner, {"short": 0.1, long_answer: 0.1})])
    short, long = squad.align_batch(["q", "q"], ["short", long_answer])
    assert short.applied == ["ethical"] and not short.failures
    assert long.text == long_answer and "InputTooLongError" in long.failures[0]


def test_streaming_matches_the_batch_result(tiny_lm_dir: Path) -> None:
    aligner = Aligner(str(tiny_lm_dir), format="chat", max_new_tokens=12, **RANDOM_MODEL)
    question, answer = "What is the capital of France?", "Paris is the capital."
    squad = Squad(
        [_member("ethical", aligner, {answer: 0.1}), _member("helpful", aligner, {answer: 0.9})]
    )
    stream = squad.stream(question, answer)
    pieces = list(stream)
    assert len(pieces) > 1  # token by token, not one final chunk
    assert stream.result is not None
    assert "".join(pieces).strip() == stream.result.text == squad.align(question, answer).text
    assert stream.result.applied == ["ethical"]
    passing = squad.stream("q", "fine answer")
    assert list(passing) == ["fine answer"]


async def test_async_matches_sync(tiny_aligner: Aligner) -> None:
    squad = Squad([_member("ethical", tiny_aligner, {"a": 0.1, "b": 0.9})])
    sync = squad.align_batch(["q", "q"], ["a", "b"])
    result = await squad.aalign_batch(["q", "q"], ["a", "b"])
    assert [r.model_dump() for r in result] == [r.model_dump() for r in sync]
    stream = squad.stream("q", "a")
    pieces = [p async for p in stream]
    assert "".join(pieces).strip() == sync[0].text and stream.result is not None


def test_select_and_options_share_members(tiny_aligner: Aligner) -> None:
    squad = Squad([_member("ethical", tiny_aligner, {}), _member("helpful", tiny_aligner, {})])
    only = squad.select(["helpful"])
    assert only.criteria == ["helpful"] and only.members[0] is squad.members[1]
    assert squad.with_options(threshold=0.8).thresholds == {"ethical": 0.8, "helpful": 0.8}
    with pytest.raises(ValueError, match="not in this squad"):
        squad.select(["factuality"])
    with pytest.raises(ValueError, match="distinct"):
        Squad([squad.members[0], squad.members[0]])
    with pytest.raises(ValueError, match="threshold"):
        SquadMember(get_criterion("ethical"), tiny_aligner, None, threshold=2.0)


def test_default_squad_loads_nothing_at_construction() -> None:
    import subprocess
    import sys

    # A fresh process: in this one, other tests may already have loaded the default models.
    code = (
        "from aligners import MODEL_CACHE, Squad\n"
        "squad = Squad.default()\n"
        "assert squad.criteria == ['ethical'], squad.criteria\n"
        "assert MODEL_CACHE.load_counts == {}, MODEL_CACHE.load_counts\n"
        "assert not any(m.aligner.backend.is_loaded for m in squad.members)\n"
        "print('lazy')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "lazy"


def test_an_aligner_that_copies_is_recorded_as_unchanged() -> None:
    copier = Aligner("unused", format="chat", backend=ConstantBackend("same answer"))
    rewriter = Aligner("unused", format="chat", backend=ConstantBackend("new answer"))
    squad = Squad(
        [
            _member("ethical", copier, {"same answer": 0.1}),
            _member("helpful", rewriter, {"same answer": 0.2}),
        ],
        ordering="fixed",
    )
    result = squad.align("q", "same answer")
    assert result.applied == ["ethical", "helpful"]
    assert [s.changed for s in result.stages] == [False, True]
    assert result.unchanged_by == ["ethical"]
    assert result.to_record()["unchanged_by"] == ["ethical"]
