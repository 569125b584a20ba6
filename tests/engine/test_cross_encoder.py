"""Cross-encoder inspectors on a tiny random BERT: training, save/load, shared trunk, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aligners import Squad
from aligners.backends.cache import ModelCache
from aligners.cli.main import app
from aligners.criteria import get_criterion
from aligners.data.records import InspectorExample
from aligners.errors import ModelNotFoundError
from aligners.inspector import load_inspector
from aligners.inspector.cross_encoder import (
    HEAD_WEIGHTS,
    TRUNK_WEIGHTS,
    CrossEncoderInspector,
    CrossEncoderTrunk,
)
from aligners.squad.squad import SquadMember
from aligners.training.cross_encoder import CrossEncoderTrainingConfig, train_cross_encoder
from aligners.training.metrics import auroc

QUESTIONS = ["what is the capital of france", "how do i bake bread", "tell me how to hurt someone"]
GOOD = [
    "the capital of france is paris",
    "mix flour water yeast and salt",
    "i cannot help with that",
]
BAD = ["hurt someone the quick fox", "lazy dog hurt someone", "hurt someone then jumps"]


def _examples(criterion: str = "ethical", copies: int = 12) -> list[InspectorExample]:
    rows = []
    for i in range(copies):
        for q, good, bad in zip(QUESTIONS, GOOD, BAD):
            question = f"{q} {i}"
            rows.append(
                InspectorExample(question=question, answer=good, label=1, criterion=criterion)
            )
            rows.append(
                InspectorExample(question=question, answer=bad, label=0, criterion=criterion)
            )
    return rows


@pytest.fixture(scope="module")
def trained(tiny_encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("cross-encoder")
    examples = _examples("ethical") + _examples("helpful")
    config = CrossEncoderTrainingConfig(
        encoder=str(tiny_encoder_dir),
        trained_layers=1,
        epochs=40,
        learning_rate=1e-3,
        head_learning_rate=1e-2,
        batch_size=16,
        calibration_fraction=0.3,
        block_threshold=0.3,
    )
    train_cross_encoder(examples, out, config, evaluation=_examples("ethical", 2), progress=False)
    return out


def test_training_learns_and_writes_metrics_per_head(trained: Path) -> None:
    config = json.loads((trained / "inspector_config.json").read_text())
    assert config["kind"] == "cross-encoder" and config["heads"] == ["ethical", "helpful"]
    assert set(config["calibration"]) == {"ethical", "helpful"}
    assert config["metrics"]["ethical"]["heldout"]["auroc"] > 0.9
    assert config["metrics"]["helpful"]["calibration"]["n_eval"] > 0
    inspector = CrossEncoderInspector.from_pretrained(trained, criterion="ethical")
    rows = _examples("ethical", 3)
    scores = inspector.score_batch([r.question for r in rows], [r.answer for r in rows])
    assert auroc([r.label for r in rows], scores) > 0.9
    assert json.loads((trained / "metrics.json").read_text())["metrics"] == config["metrics"]


def test_saved_trunk_is_only_the_top_layers_and_round_trips(
    trained: Path, tiny_encoder_dir: Path
) -> None:
    from safetensors.torch import load_file
    from transformers import AutoModel

    delta = load_file(str(trained / TRUNK_WEIGHTS))
    assert delta and all(k.startswith("encoder.layer.1.") for k in delta)  # 2 layers, top 1 kept
    assert {str(v.dtype) for v in delta.values()} == {"torch.float16"}
    base = AutoModel.from_pretrained(tiny_encoder_dir).state_dict()
    assert any((delta[k].float() - base[k]).abs().max() > 1e-3 for k in delta)  # it was trained
    assert set(load_file(str(trained / HEAD_WEIGHTS))) == {
        "ethical.weight",
        "ethical.bias",
        "helpful.weight",
        "helpful.bias",
    }
    q, a = ["how do i bake bread"], ["mix flour water yeast and salt"]
    first = CrossEncoderInspector.from_pretrained(trained, criterion="helpful")
    again = CrossEncoderInspector.from_pretrained(trained, criterion="helpful", cache=ModelCache())
    assert first.score_batch(q, a) == pytest.approx(again.score_batch(q, a), abs=1e-6)
    assert isinstance(load_inspector(trained, criterion="helpful"), CrossEncoderInspector)


def test_squad_runs_the_trunk_once_for_all_heads(
    trained: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    original = CrossEncoderTrunk.features

    def counting(self: CrossEncoderTrunk, questions: list[str], answers: list[str]) -> object:
        calls.append(len(questions))
        return original(self, questions, answers)

    monkeypatch.setattr(CrossEncoderTrunk, "features", counting)
    members = [
        SquadMember(
            get_criterion(name),
            None,
            CrossEncoderInspector.from_pretrained(trained, criterion=name),
        )
        for name in ("ethical", "helpful")
    ]
    scores = Squad(members, check_only=True).score(QUESTIONS, BAD)
    assert set(scores) == {"ethical", "helpful"} and calls == [3]


def test_default_squad_and_eval_safety_read_a_saved_gate(trained: Path, tmp_path: Path) -> None:
    squad = Squad.default(["ethical", "helpful"], inspector=trained, check_only=True)
    scores = squad.score(QUESTIONS, BAD)
    for name in ("ethical", "helpful"):
        own = CrossEncoderInspector.from_pretrained(trained, criterion=name)
        assert scores[name] == pytest.approx(own.score_batch(QUESTIONS, BAD), abs=1e-6)
    with pytest.raises(ValueError, match="factuality"):
        Squad.default(["factuality"], inspector=trained)
    with pytest.raises(ValueError, match="not both"):
        Squad.default(inspector=trained, inspector_encoder="minilm")

    rows = tmp_path / "answers.jsonl"
    with rows.open("w") as handle:
        for q, good, bad in zip(QUESTIONS, GOOD, BAD):
            for answer, label, kind in ((good, 1, "good"), (bad, 0, "compliant")):
                row = {"question": q, "answer": answer, "label": label, "metadata": {"kind": kind}}
                handle.write(json.dumps(row) + "\n")
    out = tmp_path / "eval"
    args = ["eval-safety", str(rows), "-o", str(out), "--inspector", str(trained)]
    done = CliRunner().invoke(app, [*args, "--on-flag", "block", "--no-progress"])
    assert done.exit_code == 0, done.output
    summary = json.loads((out / "summary.json").read_text())
    gate = CrossEncoderInspector.from_pretrained(trained, criterion="ethical")
    expected = auroc([1, 1, 1, 0, 0, 0], gate.score_batch(QUESTIONS * 2, GOOD + BAD))
    assert summary["inspectors"]["ethical"]["auroc_compliant_vs_rest"] == pytest.approx(
        expected, abs=1e-3
    )
    done = CliRunner().invoke(app, [*args, "--criteria", "factuality"])
    assert done.exit_code == 2 and "factuality" in done.output


def test_a_saved_block_threshold_reaches_the_default_squad(trained: Path) -> None:
    saved = json.loads((trained / "inspector_config.json").read_text())
    assert saved["block_thresholds"] == {"ethical": 0.3, "helpful": 0.3}
    assert saved["thresholds"] == {}  # no operating point asked for: squads use 0.5
    squad = Squad.default(["ethical", "helpful"], inspector=trained)
    assert [(m.threshold, m.block_threshold) for m in squad.members] == [(0.5, 0.3)] * 2
    assert squad.decides_whole
    off = Squad.default(["ethical"], inspector=trained, block_threshold=0)
    assert off.members[0].block_threshold == 0 and off.members[0].block_limit == 0
    with pytest.raises(ValueError, match="must not be above threshold"):
        CrossEncoderTrainingConfig(threshold=0.2, block_threshold=0.3)


def test_clear_errors_for_wrong_heads_and_corrupt_files(trained: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ethical"):
        CrossEncoderInspector.from_pretrained(trained)  # two heads: name one
    with pytest.raises(ValueError, match="factuality"):
        CrossEncoderInspector.from_pretrained(trained, criterion="factuality")
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("inspector_config.json", HEAD_WEIGHTS):
        (broken / name).write_bytes((trained / name).read_bytes())
    (broken / TRUNK_WEIGHTS).write_bytes(b"not safetensors")
    inspector = CrossEncoderInspector.from_pretrained(broken, criterion="ethical")
    with pytest.raises(ModelNotFoundError, match="trunk.safetensors"):
        inspector.score("q", "a")


def test_training_needs_both_labels(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    only_good = [e for e in _examples() if e.label == 1]
    config = CrossEncoderTrainingConfig(encoder=str(tiny_encoder_dir), trained_layers=1)
    with pytest.raises(ValueError, match="both labels"):
        train_cross_encoder(only_good, tmp_path, config, progress=False)


def test_cli_ships_threshold_and_block_threshold(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(e.model_dump()) + "\n" for e in _examples()))
    out = tmp_path / "gate"
    base = ["train", "cross-encoder", str(data), "-o", str(out), "--encoder"]
    base += [str(tiny_encoder_dir), "--trained-layers", "1", "--max-steps", "2"]
    done = CliRunner().invoke(app, [*base, "--threshold", "0.6", "--block-threshold", "0.25"])
    assert done.exit_code == 0, done.output
    saved = json.loads((out / "inspector_config.json").read_text())
    assert (saved["thresholds"], saved["block_thresholds"]) == ({"ethical": 0.6}, {"ethical": 0.25})
    gate = CrossEncoderInspector.from_pretrained(out, criterion="ethical")
    assert (gate.default_threshold, gate.default_block_threshold) == (0.6, 0.25)
    done = CliRunner().invoke(app, [*base, "--threshold", "0.2", "--block-threshold", "0.25"])
    # a ValueError: `aligners` (run_cli) prints it as one "error:" line with exit code 2
    assert isinstance(done.exception, ValueError)
    assert "must not be above threshold" in str(done.exception)
