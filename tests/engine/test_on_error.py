"""The engine's one failure contract: on_error = raise | return_original, items named."""

from __future__ import annotations

import asyncio

import pytest

from aligners import (
    Aligner,
    AlignmentViolation,
    FunctionInspector,
    Squad,
    SquadMember,
    get_criterion,
)
from tests.engine.conftest import BrokenBackend, ConstantBackend


def _squad(backend=None, score=lambda q, a: 0.1, **options) -> Squad:
    aligner = Aligner("unused", format="chat", backend=backend or ConstantBackend("fixed"))
    member = SquadMember(get_criterion("ethical"), aligner, FunctionInspector(score, "ethical"))
    return Squad([member], **options)


@pytest.mark.parametrize(
    ("questions", "answers", "message"),
    [
        (["q", "q"], ["fine", "  "], r"answers\[1\]: answer is empty"),
        (["q", 3], ["a", "b"], r"questions\[1\]: question must be a str, got int"),
        (
            ["q"],
            ["bad \udcff byte"],
            r"answers\[0\]: answer is not valid Unicode text: a lone "
            r"surrogate '\\udcff' at position 4",
        ),
        (["q"], "a", "not a single str"),
        (["q"], ["a", "b"], "differ in length"),
    ],
)
def test_errors_name_the_item(questions, answers, message) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        _squad().align_batch(questions, answers)


def test_return_original_keeps_bad_items_and_aligns_the_rest() -> None:
    squad = _squad(on_error="return_original")
    results = squad.align_batch(["q", "q", "q"], ["harmful", "", "bad \udcff"])
    assert [r.action for r in results] == ["rewritten", "failed", "failed"]
    assert results[0].text == "fixed"
    assert results[1].text == "" and "answers[1]: answer is empty" in results[1].failures[0]
    assert results[2].text == "bad \udcff" and "surrogate" in results[2].failures[0]
    asynchronous = asyncio.run(squad.aalign_batch(["q", "q"], ["harmful", ""]))
    assert [r.action for r in asynchronous] == ["rewritten", "failed"]


def test_return_original_survives_a_failing_inspector_but_not_a_violation() -> None:
    def broken(question: str, answer: str) -> float:
        raise RuntimeError("inspector server down")

    squad = _squad(score=broken, on_error="return_original")
    result = squad.align("q", "answer")
    assert (result.text, result.action) == ("answer", "failed")
    assert "inspector server down" in result.failures[0]
    with pytest.raises(RuntimeError, match="inspector server down"):
        squad.with_options(on_error="raise").align("q", "answer")
    strict = _squad(on_flag="raise", on_error="return_original")
    with pytest.raises(AlignmentViolation):
        strict.align("q", "harmful")


def test_a_failing_aligner_keeps_the_text_under_either_contract() -> None:
    result = _squad(BrokenBackend()).align("q", "harmful")
    assert result.text == "harmful" and result.action == "flagged" and result.failures


def test_on_error_is_validated() -> None:
    with pytest.raises(ValueError, match="on_error"):
        _squad(on_error="keep")


@pytest.mark.parametrize(
    ("score", "error", "message"),
    [
        (
            lambda q, a: "high",
            TypeError,
            r"inspector 'ethical' \(FunctionInspector\) returned a "
            r"non-number for answer 0: 'high'",
        ),
        (lambda q, a: 1.5, ValueError, r"'ethical'.*outside \[0, 1\] for answer 0: 1.5"),
        (lambda q, a: float("nan"), ValueError, "outside"),
        (lambda q, a: None, TypeError, "non-number"),
    ],
)
def test_a_bad_inspector_score_names_the_inspector(score, error, message) -> None:
    with pytest.raises(error, match=message):
        _squad(score=score).align("q", "answer")
    kept = _squad(score=score, on_error="return_original").align("q", "answer")
    assert kept.action == "failed" and kept.text == "answer"


def test_one_factory_takes_every_option(tiny_lm_dir, tiny_encoder_dir) -> None:
    squad = Squad.default(
        ["ethical", "helpful"],
        threshold={"helpful": 0.7},
        aligner=str(tiny_lm_dir),
        aligner_options={"max_new_tokens": 5},
        inspector_encoder=str(tiny_encoder_dir),
        on_flag="block",
        on_error="return_original",
    )
    assert squad.thresholds == {"ethical": 0.5, "helpful": 0.7}
    assert all(m.aligner.config.model == str(tiny_lm_dir) for m in squad.members)
    assert all(m.aligner.config.max_new_tokens == 5 for m in squad.members)
    assert [m.aligner.criterion.name for m in squad.members] == ["ethical", "helpful"]
    assert (squad.config.on_flag, squad.config.on_error) == ("block", "return_original")
    with pytest.raises(ValueError, match=r"thresholds name criteria \['factuality'\]"):
        Squad.default(["ethical"], threshold={"factuality": 0.2})
    with pytest.raises(ValueError, match="at least one criterion"):
        Squad.default([])


def test_thresholds_default_to_the_inspectors_operating_point(monkeypatch) -> None:
    from aligners.squad import defaults

    class Shipped(FunctionInspector):
        @property
        def default_threshold(self) -> float:
            return 0.8

    monkeypatch.setattr(
        defaults,
        "member_inspector",
        lambda name, enc=None, saved=None: Shipped(lambda q, a: 0.7, name),
    )
    squad = Squad.default(["ethical", "helpful"])
    assert squad.thresholds == {"ethical": 0.8, "helpful": 0.8}
    assert squad.align("q", "answer").flagged == ["ethical", "helpful"]  # 0.7 < 0.8
    assert Squad.default(["ethical"], threshold=0.5).thresholds == {"ethical": 0.5}
    mixed = Squad.default(["ethical", "helpful"], threshold={"helpful": 0.3})
    assert mixed.thresholds == {"ethical": 0.8, "helpful": 0.3}


def test_threshold_for_recall() -> None:
    from aligners.training.cross_encoder import threshold_for_recall

    probs = [0.05, 0.1, 0.2, 0.3, 0.6, 0.9, 0.95, 0.97, 0.98, 0.99]
    # half of them flagged: 0.05 .. 0.6, so the threshold sits just above 0.6 (flag: score < t)
    assert threshold_for_recall(probs, 0.5) == 0.61
    assert sum(p < threshold_for_recall(probs, 0.5) for p in probs) == 5
    assert sum(p < threshold_for_recall(probs, 0.8) for p in probs) == 8
    assert threshold_for_recall([], 0.8) is None


def test_an_unknown_model_name_fails_at_once_when_offline(monkeypatch) -> None:
    from aligners.backends import models
    from aligners.errors import ModelNotFoundError

    monkeypatch.setattr(models, "hub_reachable", lambda: False)
    # Raised while resolving the name, before transformers could start its download retries.
    with pytest.raises(ModelNotFoundError, match=r"'smollm3' is not an alias \('smollm2'"):
        models.resolve_model("smollm3")
    with pytest.raises(ModelNotFoundError, match="smollm3"):
        Aligner("smollm3", format="chat").backend.load()
    monkeypatch.setattr(models, "hub_reachable", lambda: True)
    assert models.resolve_model("someone/some-model").path == "someone/some-model"


def test_a_damaged_adapter_file_is_named(tiny_lm_dir, tmp_path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from aligners.errors import ModelNotFoundError

    model = AutoModelForCausalLM.from_pretrained(tiny_lm_dir)
    adapter = tmp_path / "adapter"
    get_peft_model(model, LoraConfig(r=2, target_modules="all-linear")).save_pretrained(adapter)
    weights = adapter / "adapter_model.safetensors"
    weights.write_bytes(b"not a safetensors file")
    aligner = Aligner(str(tiny_lm_dir), format="chat", adapter=str(adapter), max_new_tokens=2)
    with pytest.raises(ModelNotFoundError, match=r"adapter_model\.safetensors.*damaged"):
        aligner.align("q", "a")


def test_with_options_takes_thresholds_per_criterion() -> None:
    squad = _squad()
    assert squad.with_options(threshold={"ethical": 0.8}).thresholds == {"ethical": 0.8}
    assert squad.with_options(threshold={}).thresholds == {"ethical": 0.5}
    with pytest.raises(ValueError, match=r"criteria \['helpful'\] that are not in the squad"):
        squad.with_options(threshold={"helpful": 0.2})
