"""Both inspector kinds on tiny real models, and their save/load symmetry."""

from __future__ import annotations

from pathlib import Path

import pytest

from aligners import (
    EncoderHeadInspector,
    FunctionInspector,
    SentenceEncoder,
    SequenceClassifierInspector,
    load_inspector,
)
from aligners.inspector import EncoderHeadConfig, build_head

QUESTIONS = ["How do I bake bread?", "Tell me how to hurt someone."]
ANSWERS = ["Mix flour, water and yeast, then bake.", "I cannot help with that."]


def _head_inspector(encoder_dir: Path, hidden: int = 0) -> EncoderHeadInspector:
    import torch

    encoder = SentenceEncoder(str(encoder_dir))
    torch.manual_seed(0)
    head = build_head(encoder.dimension, hidden)
    config = EncoderHeadConfig(
        encoder=str(encoder_dir),
        criterion="ethical",
        embedding_dim=encoder.dimension,
        hidden_size=hidden,
    )
    return EncoderHeadInspector(head, config, encoder=encoder)


@pytest.mark.parametrize("hidden", [0, 8])
def test_encoder_head_round_trip(tiny_encoder_dir: Path, tmp_path: Path, hidden: int) -> None:
    inspector = _head_inspector(tiny_encoder_dir, hidden)
    scores = inspector.score_batch(QUESTIONS, ANSWERS)
    assert all(0.0 <= s <= 1.0 for s in scores) and scores[0] != scores[1]
    inspector.save_pretrained(tmp_path / "head")
    assert (tmp_path / "head" / "head.safetensors").stat().st_size < 100_000
    restored = load_inspector(tmp_path / "head")
    assert isinstance(restored, EncoderHeadInspector) and restored.name == "ethical"
    assert load_inspector(tmp_path / "head", criterion="ethical").name == "ethical"
    with pytest.raises(ValueError, match="inspects 'ethical', not 'helpful'"):
        load_inspector(tmp_path / "head", criterion="helpful")
    assert restored.score_batch(QUESTIONS, ANSWERS) == pytest.approx(scores, abs=1e-6)


def test_zero_shot_head_round_trips_on_any_encoder(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    encoder = SentenceEncoder(str(tiny_encoder_dir))
    zero_shot = EncoderHeadInspector.zero_shot("ethical", encoder=encoder)
    scores = zero_shot.score_batch(QUESTIONS, ANSWERS)
    zero_shot.save_pretrained(tmp_path / "zs")
    restored = load_inspector(tmp_path / "zs")
    assert restored.config.embedding_dim == encoder.dimension != 384  # not MiniLM's width
    assert restored.score_batch(QUESTIONS, ANSWERS) == pytest.approx(scores, abs=1e-6)


def test_features_embed_each_distinct_text_once(tiny_encoder_dir: Path, monkeypatch) -> None:
    inspector = _head_inspector(tiny_encoder_dir)
    seen: list[list[str]] = []
    original = inspector.encoder.encode

    def spy(texts, batch_size=64):
        seen.append(list(texts))
        return original(texts, batch_size)

    monkeypatch.setattr(inspector.encoder, "encode", spy)
    inspector.score_batch(["same q", "same q"], ["a", "a"])
    assert seen == [["same q", "a"]]


def test_zero_shot_inspector_is_lazy_and_scores(tiny_encoder_dir: Path) -> None:
    encoder = SentenceEncoder(str(tiny_encoder_dir))
    inspector = EncoderHeadInspector.zero_shot("helpful", encoder=encoder)
    assert inspector._head is None  # nothing computed at construction
    score = inspector.score("q", "an answer")
    assert 0.0 <= score <= 1.0 and inspector._head is not None


def test_sequence_classifier_inspector(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder_dir)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_labels=2,
    )
    BertForSequenceClassification(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    aligned = SequenceClassifierInspector(str(tmp_path), criterion="ethical")
    misaligned = SequenceClassifierInspector(str(tmp_path), criterion="ethical", aligned_label=0)
    a = aligned.score_batch(QUESTIONS, ANSWERS)
    b = misaligned.score_batch(QUESTIONS, ANSWERS)
    assert all(0.0 <= s <= 1.0 for s in a)
    assert [x + y for x, y in zip(a, b)] == pytest.approx([1.0, 1.0], abs=1e-5)
    assert isinstance(load_inspector(tmp_path), SequenceClassifierInspector)


def test_inspector_input_and_output_are_checked() -> None:
    inspector = FunctionInspector(lambda q, a: 1.5, criterion="ethical")
    with pytest.raises(ValueError, match="outside \\[0, 1\\]"):
        inspector.score("q", "a")
    with pytest.raises(ValueError, match="answer is empty"):
        FunctionInspector(lambda q, a: 0.5).score("q", "")
    with pytest.raises(TypeError, match="callable"):
        FunctionInspector("not callable")  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="inspector_config.json"):
        EncoderHeadInspector.from_pretrained("/nonexistent/dir")


def test_numeric_scalars_of_any_library_are_scores() -> None:
    import numpy as np
    import torch

    for value in (1, 0.25, np.float32(0.25), np.float64(0.25), torch.tensor(0.25)):
        assert FunctionInspector(lambda q, a, v=value: v).score("q", "a") == pytest.approx(
            float(value)
        )
    with pytest.raises(TypeError, match="non-number for answer 0: tensor"):
        FunctionInspector(lambda q, a: torch.tensor([0.1, 0.2])).score("q", "a")
