"""The shipped artifacts: small, complete, and what Squad.default() uses."""

from __future__ import annotations

import json

import pytest

from aligners.squad.defaults import DEFAULT_ALIGNER_DIR, DEFAULT_INSPECTORS_DIR

CRITERIA = ("ethical", "factuality", "helpful")


@pytest.mark.parametrize("criterion", CRITERIA)
def test_inspector_artifacts_carry_metrics(criterion: str) -> None:
    directory = DEFAULT_INSPECTORS_DIR / criterion
    config = json.loads((directory / "inspector_config.json").read_text())
    assert config["kind"] == "encoder-head" and config["criterion"] == criterion
    assert config["encoder"] == "minilm"
    metrics = config["metrics"]
    assert metrics["accuracy"] > metrics["majority_baseline_accuracy"]
    assert metrics["auroc"] > 0.5
    assert (directory / "head.safetensors").stat().st_size < 100_000
    assert "Held-out metrics" in (directory / "MODEL_CARD.md").read_text()


def test_aligner_artifact_is_small_and_relative() -> None:
    config = json.loads((DEFAULT_ALIGNER_DIR / "aligner_config.json").read_text())
    assert config["model"] == "smollm2" and config["format"] == "chat"
    assert config["adapter"] == "adapter"  # relative: resolved against the folder
    assert (
        DEFAULT_ALIGNER_DIR / "adapter" / "adapter_model.safetensors"
    ).stat().st_size < 20_000_000
    assert (DEFAULT_ALIGNER_DIR / "MODEL_CARD.md").exists()


def test_default_squad_uses_the_shipped_artifacts() -> None:
    from aligners import Squad

    squad = Squad.default()  # lazy: nothing loads here
    for member in squad.members:
        assert member.inspector.config.metrics.get("auroc") is not None  # trained, not zero-shot
        assert member.aligner.config.adapter == str((DEFAULT_ALIGNER_DIR / "adapter").resolve())


@pytest.mark.e2e
def test_shipped_aligner_copies_a_good_answer_and_stops() -> None:
    from aligners import Aligner

    aligner = Aligner.from_pretrained(
        DEFAULT_ALIGNER_DIR, criterion="factuality", max_new_tokens=24
    )
    answer = "The capital of France is Paris."
    out = aligner.align("What is the capital of France?", answer)
    assert out.strip() and "<|im" not in out and "\nuser" not in out  # ends its turn cleanly
    assert len(out) < 4 * len(answer)
