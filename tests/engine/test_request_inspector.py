"""Request inspectors: training on a tiny random encoder, save/load, checks and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aligners import EncoderRequestInspector, FunctionRequestInspector, RequestCheck
from aligners.backends.encoder import SentenceEncoder
from aligners.cli.main import app
from aligners.data.records import RequestExample
from aligners.inspector.request import resolve_request_inspector
from aligners.training.request_inspector import (
    RequestInspectorTrainingConfig,
    train_request_inspector,
)

# The tiny random encoder knows no meanings; short vs long requests give it something to learn.
HARMFUL = ["hurt someone", "hurt them", "hurt the dog", "hurt a fox"]
ORDINARY = [
    "what is the capital of france and how do i bake bread at home",
    "please be kind honest and helpful and tell me about the quick brown fox",
    "how do i bake bread with flour water yeast and salt then let it rise",
    "question answer correction aligned and the lazy dog jumps over the fox",
]


def _rows(copies: int = 10) -> list[RequestExample]:
    rows = []
    for i in range(copies):
        rows += [RequestExample(request=f"{r} {i}", label=0) for r in HARMFUL]
        rows += [RequestExample(request=f"{r} {i}", label=1) for r in ORDINARY]
    return rows


@pytest.fixture(scope="module")
def trained(tiny_encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("request-inspector")
    config = RequestInspectorTrainingConfig(
        encoder=str(tiny_encoder_dir), weight_decay=1e-4, calibration_fraction=0.3
    )
    train_request_inspector(_rows(), _rows(2), out, config, progress=False)
    return out


def test_training_separates_requests_and_round_trips(trained: Path, tiny_encoder_dir: Path) -> None:
    config = json.loads((trained / "inspector_config.json").read_text())
    assert config["kind"] == "request-head"
    metrics = config["metrics"]
    assert metrics["n_calibration"] > 0 and metrics["heldout"]["auroc"] > 0.9
    assert set(metrics["heldout_blocked_by_source"]) == {"harmful/None", "ordinary/None"}
    encoder = SentenceEncoder(str(tiny_encoder_dir))
    loaded = EncoderRequestInspector.from_pretrained(trained, encoder=encoder)
    again_dir = loaded.save_pretrained(trained.parent / "again")
    again = EncoderRequestInspector.from_pretrained(again_dir, encoder=encoder)
    requests = [f"{HARMFUL[0]} 0", f"{ORDINARY[0]} 0"]
    assert loaded.score_batch(requests) == pytest.approx(again.score_batch(requests))
    harmful, ordinary = loaded.check_batch(requests)
    assert isinstance(harmful, RequestCheck)
    assert harmful.score < ordinary.score
    assert ordinary.to_record()["allowed"] is True


def test_checks_take_a_threshold_and_validate_input() -> None:
    inspector = FunctionRequestInspector(lambda r: 0.3)
    assert inspector.check("x").allowed is False
    assert inspector.check("x", threshold=0.2).allowed is True
    with pytest.raises(ValueError, match="threshold"):
        inspector.check("x", threshold=2)
    with pytest.raises(TypeError, match="list of requests"):
        inspector.score_batch("one request")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="request 1 must be a str"):
        inspector.score_batch(["ok", 3])  # type: ignore[list-item]
    assert inspector.score_batch([]) == []


def test_check_request_option_values() -> None:
    custom = FunctionRequestInspector(lambda r: 1.0)
    assert resolve_request_inspector(False) is None and resolve_request_inspector(None) is None
    assert resolve_request_inspector(custom) is custom
    with pytest.raises(TypeError, match="check_request must be"):
        resolve_request_inspector("yes")  # type: ignore[arg-type]


def test_loading_errors_name_the_problem(trained: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="inspector_config.json"):
        EncoderRequestInspector.from_pretrained(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    (other / "inspector_config.json").write_text(json.dumps({"kind": "cross-encoder"}))
    with pytest.raises(ValueError, match="kind"):
        EncoderRequestInspector.from_pretrained(other)


def test_training_needs_both_labels(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    rows = [RequestExample(request="a", label=1), RequestExample(request="b", label=1)]
    with pytest.raises(ValueError, match="both harmful and fine"):
        train_request_inspector(rows, [], tmp_path, progress=False)


def test_cli_trains_and_reports_bad_rows(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "requests.jsonl"
    data.write_text("".join(r.model_dump_json() + "\n" for r in _rows(4)))
    out = tmp_path / "head"
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "train",
            "request-inspector",
            str(data),
            "-o",
            str(out),
            "--encoder",
            str(tiny_encoder_dir),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (out / "request_head.safetensors").exists()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"request": "ok", "label": 1}\n{"request": "x", "label": 7}\n')
    # typer boxes the message at the terminal's width; a wide one keeps the long tmp path whole
    wide = {"COLUMNS": "400", "TERMINAL_WIDTH": "400"}
    result = runner.invoke(app, ["train", "request-inspector", str(bad), "-o", str(out)], env=wide)
    assert result.exit_code != 0
    assert "bad.jsonl:2" in result.output and "label" in result.output
