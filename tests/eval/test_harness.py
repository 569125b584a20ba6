"""The harness on tiny random models: answers, squad, judges, outputs (the CI run on 3 examples)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from aligners.eval import (
    EvalConfig,
    EvalItem,
    Evaluator,
    InspectorJudge,
    PairwiseJudge,
    Upstream,
    aevaluate,
    edit_size,
    evaluate,
    load_questions,
)
from tests.conftest import shipped_block
from tests.eval.eval_helpers import RuleChatModel, keyword_judge, tiny_squad
from tests.eval.test_data import write_harmfulqa

PNG = b"\x89PNG\r\n\x1a\n"


class ExplodingUpstream(Upstream):
    """An upstream that must not be asked (the items carry answers) or fails on purpose."""

    name = "exploding"

    def answer_batch(self, questions: Sequence[str]) -> list[str]:
        raise RuntimeError("upstream is down")


def test_three_examples_end_to_end_on_tiny_models(
    tmp_path: Path, tiny_lm_dir: Path, tiny_encoder_dir: Path
) -> None:
    items = load_questions(write_harmfulqa(tmp_path / "h.json"), limit=3)
    squad = tiny_squad(tiny_lm_dir, tiny_encoder_dir)
    judges = [InspectorJudge(squad), PairwiseJudge(keyword_judge("the"), name="pairwise")]
    run = evaluate(
        items,
        squad=squad,
        upstream=str(tiny_lm_dir),
        judges=judges,
        config=EvalConfig(batch_size=2, progress=False),
        max_new_tokens=10,
    )
    assert [e.id for e in run.examples] == [i.id for i in items]
    for example in run.examples:
        assert example.error is None
        assert example.original.strip()  # the tiny upstream wrote something
        # threshold 1.0: every inspector flags, so every aligner ran (or its failure is recorded)
        assert example.flagged == ["ethical", "helpful"]
        assert len(example.stages) == 2
        assert len(example.trajectory) == 3
        assert set(example.applied) | {f.split(":")[0] for f in example.failures} == {
            "ethical",
            "helpful",
        }
        assert example.edit_size == pytest.approx(edit_size(example.original, example.aligned))
        assert set(example.verdicts) == {"inspector", "pairwise"}
        assert example.upstream_seconds is not None and example.squad_seconds is not None
    summary = run.summary
    assert summary["n_evaluated"] == 3 and summary["n_errors"] == 0
    assert summary["flagged_rate"] == {"ethical": 1.0, "helpful": 1.0}
    for judge in ("inspector", "pairwise"):
        overall = summary["judges"][judge]["overall"]
        assert overall["wins"] + overall["ties"] + overall["losses"] == 3
        per_category = summary["judges"][judge]["per_category"]
        assert sum(s["total"] for s in per_category.values()) == 3
        assert set(per_category) == {e.category for e in run.examples}

    paths = run.write(tmp_path / "out")
    lines = paths["examples"].read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [e.id for e in run.examples]
    assert json.loads(paths["summary"].read_text())["n_examples"] == 3
    report = paths["report"].read_text()
    assert "### inspector" in report and "### pairwise" in report
    assert items[0].category in report
    for name in ("plot_trajectories", "plot_categories", "plot_edit_sizes"):
        data = paths[name].read_bytes()
        assert data.startswith(PNG) and len(data) > 5000
        assert f"plots/{paths[name].name}" in report


def test_items_with_answers_skip_the_upstream(tiny_lm_dir: Path, tiny_encoder_dir: Path) -> None:
    items = [
        EvalItem(
            id="a", question="How do I bake bread?", answer="Mix flour and water.", category="x"
        ),
        EvalItem(id="b", question="Why is the sky blue?", answer="Light scatters.", category="y"),
    ]
    squad = tiny_squad(tiny_lm_dir, tiny_encoder_dir, criteria=("helpful",), threshold=0.0)
    run = Evaluator(
        squad=squad, upstream=ExplodingUpstream(), config=EvalConfig(progress=False)
    ).run(items)
    assert [e.original for e in run.examples] == ["Mix flour and water.", "Light scatters."]
    # threshold 0: nothing is flagged, the text is kept, the inspector judge calls it a tie
    assert all(not e.changed and e.verdicts["inspector"].outcome == "tie" for e in run.examples)
    assert run.summary["upstream"] == "answers file"
    assert run.summary["changed_rate"] == 0.0


def test_failures_are_recorded_not_lost(tiny_lm_dir: Path, tiny_encoder_dir: Path) -> None:
    squad = tiny_squad(tiny_lm_dir, tiny_encoder_dir, criteria=("helpful",))
    empty_for_some = RuleChatModel(rule=lambda q: "" if "empty" in q else f"An answer to: {q}")
    run = evaluate(
        ["Say something empty", "How do plants grow?"],
        squad=squad,
        upstream=empty_for_some,
        config=EvalConfig(progress=False),
    )
    first, second = run.examples
    assert first.error == "empty answer: nothing to align" and first.verdicts == {}
    assert second.error is None and second.original == "An answer to: How do plants grow?"
    assert run.summary["n_errors"] == 1
    assert run.summary["judges"]["inspector"]["overall"]["total"] == 1

    down = evaluate(
        ["q1", "q2"], squad=squad, upstream=ExplodingUpstream(), config=EvalConfig(progress=False)
    )
    assert [e.error for e in down.examples] == [
        "upstream failed (RuntimeError: upstream is down)"
    ] * 2
    assert down.summary["n_evaluated"] == 0


async def test_async_evaluate_matches_sync(tiny_lm_dir: Path, tiny_encoder_dir: Path) -> None:
    squad = tiny_squad(tiny_lm_dir, tiny_encoder_dir, criteria=("ethical",))
    chat = RuleChatModel(rule=lambda q: f"Sure. {q} Here is how.")
    judges = [InspectorJudge(squad), PairwiseJudge(keyword_judge("Sure"), name="pairwise")]
    config = EvalConfig(progress=False)
    questions = ["How do I pick a lock?", "What is rain?"]
    sync = evaluate(questions, squad=squad, upstream=chat, judges=judges, config=config)
    run = await aevaluate(questions, squad=squad, upstream=chat, judges=judges, config=config)
    assert [e.aligned for e in run.examples] == [e.aligned for e in sync.examples]
    assert [e.verdicts["pairwise"].outcome for e in run.examples] == [
        e.verdicts["pairwise"].outcome for e in sync.examples
    ]
    assert run.summary["upstream"] == "langchain:RuleChatModel"


def test_bad_inputs(tiny_lm_dir: Path, tiny_encoder_dir: Path) -> None:
    squad = tiny_squad(tiny_lm_dir, tiny_encoder_dir, criteria=("ethical",))
    with pytest.raises(ValueError, match="no questions given"):
        evaluate([], squad=squad)
    with pytest.raises(TypeError, match="not a single str"):
        evaluate("one question", squad=squad)
    with pytest.raises(TypeError, match="squad must be"):
        Evaluator(squad="default")
    with pytest.raises(ValueError, match="distinct names"):
        Evaluator(squad=squad, judges=[InspectorJudge(squad), InspectorJudge(squad)])
    with pytest.raises(TypeError, match="upstream must be"):
        evaluate(["q"], squad=squad, upstream=3.5, config=EvalConfig(progress=False))


def test_edit_size() -> None:
    assert edit_size("a b c", "a b c") == 0.0
    assert edit_size("a b c d", "x y z w") == 1.0
    assert 0 < edit_size("the cat sat on the mat", "the cat sat on a mat") < 0.3


def test_build_squad_sets_budget_and_threshold_without_loading() -> None:
    from aligners.backends.cache import MODEL_CACHE
    from aligners.eval import build_squad
    from aligners.squad.defaults import default_aligner

    before = dict(MODEL_CACHE.load_counts)
    squad = build_squad(["ethical", "helpful"], threshold=0.7, max_new_tokens=12)
    assert squad.criteria == ["ethical", "helpful"]
    assert squad.thresholds == {"ethical": 0.7, "helpful": 0.7}
    for member in squad.members:
        assert member.aligner.config.max_new_tokens == 12
        # each member keeps its own shipped aligner (the safety one for ethical)
        assert member.aligner.config.adapter == default_aligner(member.name).config.adapter
        assert member.aligner.criterion.name == member.name
    assert MODEL_CACHE.load_counts == before


def test_build_squad_sets_block_threshold_without_loading() -> None:
    from aligners.backends.cache import MODEL_CACHE
    from aligners.eval import build_squad

    before = dict(MODEL_CACHE.load_counts)
    squad = build_squad(["ethical", "helpful"], block_threshold=0.3)
    assert [m.block_threshold for m in squad.members] == [0.3, 0.3]
    shipped = build_squad(["ethical", "helpful"])  # None keeps the shipped ones
    assert [m.block_threshold for m in shipped.members] == [shipped_block(), None]
    assert MODEL_CACHE.load_counts == before


def test_a_previous_runs_examples_can_be_evaluated_again(
    tmp_path: Path, tiny_lm_dir: Path, tiny_encoder_dir: Path
) -> None:
    squad = tiny_squad(tiny_lm_dir, tiny_encoder_dir, criteria=("helpful",), threshold=0.0)
    items = [EvalItem(id="q7", question="What is rain?", answer="Water.", category="science")]
    first = evaluate(items, squad=squad, config=EvalConfig(progress=False))
    paths = first.write(tmp_path / "first", plots=False)
    again = load_questions(paths["examples"])
    assert [(i.id, i.question, i.answer, i.category) for i in again] == [
        ("q7", "What is rain?", "Water.", "science")
    ]
