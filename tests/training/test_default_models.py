"""The shipped artifacts: small, complete, measured, and what Squad.default() uses."""

from __future__ import annotations

import json

import pytest

from aligners.squad.defaults import (
    DEFAULT_ALIGNER_DIR,
    DEFAULT_CRITERIA,
    DEFAULT_INSPECTORS_DIR,
    DEFAULT_MODELS_DIR,
    SAFETY_ALIGNER_DIR,
    SAFETY_GATE_DIR,
)

FROZEN_HEADS = ("factuality", "helpful")


@pytest.mark.parametrize("criterion", FROZEN_HEADS)
def test_frozen_head_artifacts_carry_metrics(criterion: str) -> None:
    directory = DEFAULT_INSPECTORS_DIR / criterion
    config = json.loads((directory / "inspector_config.json").read_text())
    assert config["kind"] == "encoder-head" and config["criterion"] == criterion
    assert config["encoder"] == "minilm"
    metrics = config["metrics"]
    assert metrics["accuracy"] > metrics["majority_baseline_accuracy"]
    assert metrics["auroc"] > 0.5
    assert (directory / "head.safetensors").stat().st_size < 100_000
    assert "Held-out metrics" in (directory / "MODEL_CARD.md").read_text()


def test_default_criteria_are_the_ones_that_met_the_targets() -> None:
    config = json.loads((SAFETY_GATE_DIR / "inspector_config.json").read_text())
    assert config["kind"] == "safety-gate" and config["encoder"] == "minilm"
    assert (config["criterion"],) == DEFAULT_CRITERIA
    metrics = config["metrics"]
    # Held out by style family, writer and topic (docs/training.md, "The safety gate"): harder
    # than the topic-only split the cross-encoder was measured on (it scores 0.868 here).
    assert metrics["heldout"]["auroc"] >= 0.88, metrics["heldout"]
    assert metrics["validation"]["aligned_flag_rate"] <= 0.02  # the threshold's rule
    assert metrics["heldout"]["flag_rate"]["safe"] <= 0.02  # refusals are left alone
    assert set(metrics["heldout_by_family"]) >= {"title", "code", "disclaimer-then-steps"}
    assert "Held-out metrics" in (SAFETY_GATE_DIR / "MODEL_CARD.md").read_text()


def test_all_default_model_files_fit_their_budgets() -> None:
    # Issue 21: all default model files <= 30 MB; issue 22: the grounded model <= 15 MB of it
    # (tests/training/test_e2e_grounded_model.py holds that folder to it too).
    files = [p for p in DEFAULT_MODELS_DIR.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 30_000_000
    grounded = DEFAULT_MODELS_DIR / "inspectors" / "grounded"
    assert sum(p.stat().st_size for p in files if grounded in p.parents) <= 15_000_000
    assert all(p.stat().st_size < 20 * 2**20 for p in files)  # no file over 20 MiB


def test_safety_aligner_artifact_is_small_and_relative() -> None:
    directory = SAFETY_ALIGNER_DIR
    config = json.loads((directory / "aligner_config.json").read_text())
    assert config["model"] == "smollm2" and config["format"] == "chat"
    assert config["adapter"] == "adapter"  # relative: resolved against the folder
    assert (directory / "adapter" / "adapter_model.safetensors").stat().st_size < 12_000_000
    assert (directory / "MODEL_CARD.md").exists()


def test_default_squad_uses_the_shipped_artifacts() -> None:
    from aligners import EncoderHeadInspector, SafetyGateInspector, Squad

    squad = Squad.default()  # lazy: nothing loads here
    assert squad.criteria == list(DEFAULT_CRITERIA)
    (member,) = squad.members
    assert isinstance(member.inspector, SafetyGateInspector)
    # the gate's shipped operating point; what it flags and the aligner cannot fix is blocked
    config = json.loads((SAFETY_GATE_DIR / "inspector_config.json").read_text())
    assert member.threshold == config["threshold"] == member.block_threshold
    assert squad.decides_whole  # may block, so a stream is decided before any text goes out
    assert member.aligner.config.adapter == str((SAFETY_ALIGNER_DIR / "adapter").resolve())
    others = Squad.default(["helpful", "factuality"])
    for m in others.members:
        assert isinstance(m.inspector, EncoderHeadInspector)
        assert m.block_threshold is None  # only a gate that ships one may block
        # the general adapter is not shipped: SmolLM2 zero-shot, unless a user trained one
        expected = (DEFAULT_ALIGNER_DIR / "adapter").resolve()
        assert m.aligner.config.adapter == (str(expected) if expected.exists() else None)


@pytest.mark.e2e
def test_shipped_aligner_copies_a_good_answer_and_stops() -> None:
    from aligners import Aligner

    aligner = Aligner.from_pretrained(SAFETY_ALIGNER_DIR, criterion="ethical", max_new_tokens=24)
    answer = "The capital of France is Paris."
    out = aligner.align("What is the capital of France?", answer)
    assert out.strip() and "<|im" not in out and "\nuser" not in out  # ends its turn cleanly
    assert len(out) < 4 * len(answer)
