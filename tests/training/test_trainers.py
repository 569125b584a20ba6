"""End to end on tiny random models: data -> CLI training -> artifacts the engine loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aligners import Aligner, EncoderHeadInspector, SentenceEncoder, load_inspector
from aligners.data import CorrectionTriple, InspectorExample, write_records
from aligners.formats import get_format
from aligners.training.aligner import (
    AlignerTrainingConfig,
    LengthBucketSampler,
    build_stages,
    encode_triple,
    train_aligner,
)
from aligners.training.inspector import InspectorTrainingConfig, split_examples, train_inspector

runner = CliRunner()

GOOD = "I cannot help with that, but I can help you stay safe."
BAD = "Tell me how to hurt someone."


def _triples(n: int = 12) -> list[CorrectionTriple]:
    return [
        CorrectionTriple(
            question=f"How do I bake bread {i}?", answer=BAD, correction=GOOD, criterion="ethical"
        )
        for i in range(n)
    ]


def _app():  # type: ignore[no-untyped-def]
    from aligners.cli.main import app

    return app


def test_encode_triple_masks_the_prompt(tiny_lm_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_lm_dir)
    encoded = encode_triple(_triples(1)[0], get_format("chat"), tokenizer)
    assert encoded is not None
    target = [t for t, label in zip(encoded.input_ids, encoded.labels) if label != -100]
    # Loss covers exactly the correction and the chat template's end-of-turn token.
    assert tokenizer.decode(target) == GOOD + "<|im_end|>"
    assert encoded.labels[: len(encoded.labels) - len(target)] == [-100] * (
        len(encoded.labels) - len(target)
    )
    assert encode_triple(_triples(1)[0], get_format("chat"), tokenizer, max_length=10) is None
    raw = encode_triple(_triples(1)[0], get_format("ibm"), tokenizer)
    assert raw is not None and raw.labels[-1] == tokenizer.eos_token_id


def test_stages_identity_warmup_and_copies() -> None:
    config = AlignerTrainingConfig(warmup_fraction=0.25, copy_fraction=0.5)
    warmup, main = build_stages(_triples(8), config)
    assert len(warmup) == 2 and all(t.answer == t.correction == BAD for t in warmup)
    copies = [t for t in main if t.metadata.get("stage") == "copy"]
    assert len(main) == 12 and len(copies) == 4 and all(t.answer == GOOD for t in copies)


@pytest.mark.parametrize("fmt", ["chat", "ibm"])
def test_cli_trains_a_lora_aligner_the_engine_loads(
    tiny_lm_dir: Path, tmp_path: Path, fmt: str
) -> None:
    data = write_records(tmp_path / "train.jsonl", _triples())
    out = tmp_path / f"aligner-{fmt}"
    result = runner.invoke(
        _app(),
        [
            "train",
            "aligner",
            str(data),
            "-o",
            str(out),
            "--model",
            str(tiny_lm_dir),
            "--format",
            fmt,
            "--epochs",
            "3",
            "--batch-size",
            "4",
            "--learning-rate",
            "5e-3",
            "--eval-fraction",
            "0.25",
            "--save-steps",
            "4",
            "--max-new-tokens",
            "8",
            "--lora-r",
            "4",
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert metrics["n_eval_triples"] == 3 and metrics["n_warmup_examples"] == 2
    assert metrics["main"]["eval_loss"] < metrics["eval_loss_before"]  # it learned something
    assert (out / "adapter" / "adapter_model.safetensors").exists()
    assert json.loads((out / "aligner_config.json").read_text())["adapter"] == "adapter"
    if fmt == "ibm":  # marker tokens travel with the adapter
        assert (
            "[DONE]"
            in (out / "adapter" / "tokenizer_config.json").read_text()
            + (out / "adapter" / "tokenizer.json").read_text()
        )
    aligner = Aligner.from_pretrained(out)
    assert aligner.prompt_format.name == fmt
    assert isinstance(aligner.align("How do I bake bread?", BAD), str)


def test_full_finetune_and_resume(tiny_lm_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "full"
    config = AlignerTrainingConfig(
        model=str(tiny_lm_dir),
        method="full",
        epochs=2,
        batch_size=4,
        save_steps=2,
        warmup_fraction=0.0,
        eval_fraction=0.0,
        learning_rate=1e-3,
        max_new_tokens=4,
    )
    first = train_aligner(_triples(8), out, config, progress=False)
    assert first["main"]["steps"] == 4
    assert (out / "model" / "config.json").exists()
    again = train_aligner(_triples(8), out, config, resume=True, progress=False)
    assert again["main"]["resumed_from"] == "checkpoint-4"  # nothing left to do: resumed at the end
    assert Aligner.from_pretrained(out).config.model.endswith("model")


def test_length_buckets_pad_less_visit_every_example_and_replay_per_epoch() -> None:
    import random

    rng = random.Random(0)
    lengths = [rng.choice([rng.randint(20, 60), rng.randint(200, 300)]) for _ in range(203)]
    sampler = LengthBucketSampler(lengths, batch_size=8, seed=0, window=10)

    def padded(order: list[int]) -> int:
        return sum(
            max(lengths[i] for i in order[s : s + 8]) * len(order[s : s + 8])
            for s in range(0, len(order), 8)
        )

    sampler.set_epoch(0)
    first = list(sampler)
    assert sorted(first) == list(range(203))  # every example once per epoch
    shuffled = list(range(203))
    rng.shuffle(shuffled)
    assert padded(first) < 0.8 * padded(shuffled)
    # batch order is shuffled, not long-to-short waves: the long and short batches interleave
    kinds = [lengths[first[s]] > 100 for s in range(0, 200, 8)]
    assert sum(a != b for a, b in zip(kinds, kinds[1:])) >= 4
    sampler.set_epoch(1)
    second = list(sampler)
    assert second != first
    sampler.set_epoch(0)
    assert list(sampler) == first  # a resumed epoch replays its order


def test_lora_training_with_length_buckets(
    tiny_lm_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    epochs_seen: list[int] = []
    original = LengthBucketSampler.set_epoch

    def spy(self: LengthBucketSampler, epoch: int) -> None:
        epochs_seen.append(epoch)
        original(self, epoch)

    monkeypatch.setattr(LengthBucketSampler, "set_epoch", spy)
    triples = _triples(8) + [
        t.model_copy(update={"answer": BAD + " " + "and more words " * 10}) for t in _triples(8)
    ]
    config = AlignerTrainingConfig(
        model=str(tiny_lm_dir),
        batching="length_buckets",
        epochs=2,
        batch_size=4,
        warmup_fraction=0.0,
        eval_fraction=0.0,
        max_new_tokens=4,
    )
    metrics = train_aligner(triples, tmp_path / "lb", config, progress=False)
    assert metrics["main"]["steps"] == 8
    assert sorted(set(epochs_seen)) == [0, 1]  # batches came from the bucket sampler
    assert Aligner.from_pretrained(tmp_path / "lb").config.adapter.endswith("adapter")
    with pytest.raises(ValueError, match="batching"):
        AlignerTrainingConfig(batching="sorted")  # type: ignore[arg-type]


def test_train_aligner_rejects_overlong_data(tiny_lm_dir: Path, tmp_path: Path) -> None:
    config = AlignerTrainingConfig(model=str(tiny_lm_dir), max_length=12, eval_fraction=0.0)
    with pytest.raises(ValueError, match="longer than max_length"):
        train_aligner(_triples(4), tmp_path / "x", config, progress=False)


# The tiny fixture tokenizer maps most words to [UNK], so its embeddings mostly encode length:
# the two classes differ in length to give the head something to learn.
SAFE = "Sorry, no."
UNSAFE = "Tell me how to hurt someone, the quick brown fox jumps over the lazy dog again."


def _examples() -> list[InspectorExample]:
    rows = []
    for i in range(20):
        q = f"question {i}: how do I bake bread?"
        rows.append(InspectorExample(question=q, answer=SAFE, label=1))
        rows.append(InspectorExample(question=q, answer=UNSAFE, label=0))
    return rows


def test_split_keeps_questions_on_one_side() -> None:
    train, held = split_examples(_examples(), 0.25, seed=0)
    assert len(held) == 10
    assert not {e.question for e in train} & {e.question for e in held}


def test_encoder_head_inspector_training(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    encoder = SentenceEncoder(str(tiny_encoder_dir))
    config = InspectorTrainingConfig(
        criterion="ethical",
        encoder=str(tiny_encoder_dir),
        epochs=60,
        learning_rate=0.05,
        standardize=True,
        cache_dir=str(tmp_path / "cache"),
    )
    metrics = train_inspector(
        _examples(), tmp_path / "insp", config, encoder=encoder, progress=False
    )
    assert metrics["accuracy"] > metrics["majority_baseline_accuracy"]
    assert metrics["auroc"] == 1.0  # two fixed answer texts: trivially separable
    saved = json.loads((tmp_path / "insp" / "inspector_config.json").read_text())
    assert saved["metrics"]["auroc"] == metrics["auroc"] and saved["criterion"] == "ethical"
    assert json.loads((tmp_path / "insp" / "metrics.json").read_text())["metrics"]["ece"] >= 0
    assert list((tmp_path / "cache").glob("embeddings-*.safetensors"))  # embeddings cached
    inspector = load_inspector(tmp_path / "insp", encoder=encoder)
    assert isinstance(inspector, EncoderHeadInspector)
    good = inspector.score("question 99: how do I bake bread?", SAFE)
    bad = inspector.score("question 99: how do I bake bread?", UNSAFE)
    assert good > 0.5 > bad


def test_inspector_needs_both_labels(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="both labels"):
        train_inspector([e for e in _examples() if e.label == 1], tmp_path / "x")


def test_cli_sequence_classifier_inspector(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    data = write_records(tmp_path / "ex.jsonl", _examples())
    out = tmp_path / "clf"
    result = runner.invoke(
        _app(),
        [
            "train",
            "inspector",
            str(data),
            "-o",
            str(out),
            "--kind",
            "sequence-classifier",
            "--encoder",
            str(tiny_encoder_dir),
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--learning-rate",
            "1e-3",
            "--criterion",
            "ethical",
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert metrics["n_eval"] == 8 and 0 <= metrics["accuracy"] <= 1
    inspector = load_inspector(out, criterion="ethical")
    assert 0.0 <= inspector.score("q?", "a") <= 1.0


def test_cli_data_convert_split_and_errors(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(
        json.dumps({"instruction": "I?", "original_output": "O", "output": "C"})
        + "\n"
        + json.dumps({"instruction": "J?", "original_output": "O2", "output": "O2"})
        + "\n"
        + "oops\n"
    )
    out = tmp_path / "ex.jsonl"
    result = runner.invoke(
        _app(), ["data", "convert", str(src), "-o", str(out), "--to", "examples"]
    )
    assert result.exit_code == 0, result.output
    assert "in.jsonl:3" in result.output and "skipped 1 malformed" in result.output
    assert len(out.read_text().splitlines()) == 2
    ident = tmp_path / "id.jsonl"
    assert (
        runner.invoke(
            _app(), ["data", "convert", str(src), "-o", str(ident), "--identity"]
        ).exit_code
        == 0
    )
    assert all(
        json.loads(x)["answer"] == json.loads(x)["correction"]
        for x in ident.read_text().splitlines()
    )
    fatal = runner.invoke(
        _app(), ["data", "convert", str(src), "-o", str(out), "--on-error", "raise"]
    )
    assert fatal.exit_code != 0
    res = runner.invoke(
        _app(),
        [
            "data",
            "split",
            str(src),
            "-o",
            str(tmp_path / "a.jsonl"),
            "--eval-output",
            str(tmp_path / "b.jsonl"),
            "--eval-fraction",
            "0.5",
        ],
    )
    assert res.exit_code == 0 and "1 training triples" in res.output
    dpo = runner.invoke(_app(), ["data", "dpo-export", str(src), "-o", str(tmp_path / "d.jsonl")])
    assert dpo.exit_code == 0 and "1 unchanged" in dpo.output
