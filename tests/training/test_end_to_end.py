"""The documented commands on the team data: tiny models (fast) and the real ones (e2e)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aligners import Aligner

runner = CliRunner()


def _app():  # type: ignore[no-untyped-def]
    from aligners.cli.main import app

    return app


def _invoke(args: list[str]) -> str:
    result = runner.invoke(_app(), args)
    assert result.exit_code == 0, result.output
    return str(result.output)


def test_small_sample_of_team_data_end_to_end(
    shared_data: Path, tiny_lm_dir: Path, tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    """convert -> split -> train aligner + inspector -> load, on 24 real HH-RLHF rows."""
    hh = shared_data / "hh_rlhf" / "harmless-base-test.jsonl.gz"
    triples = tmp_path / "hh.jsonl"
    _invoke(
        [
            "data",
            "convert",
            str(hh),
            "-o",
            str(triples),
            "--criterion",
            "ethical",
            "--limit",
            "24",
            "--max-chars",
            "1200",
        ]
    )
    train, held = tmp_path / "train.jsonl", tmp_path / "held.jsonl"
    _invoke(
        [
            "data",
            "split",
            str(triples),
            "-o",
            str(train),
            "--eval-output",
            str(held),
            "--eval-fraction",
            "0.2",
        ]
    )
    out = tmp_path / "aligner"
    _invoke(
        [
            "train",
            "aligner",
            str(train),
            "--eval-data",
            str(held),
            "-o",
            str(out),
            "--model",
            str(tiny_lm_dir),
            "--max-steps",
            "3",
            "--batch-size",
            "4",
            "--max-length",
            "2048",
            "--max-new-tokens",
            "8",
            "--handback-opening",
            "I can't help with that.",
        ]
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["metrics"]["main"]["steps"] == 3
    assert metrics["data"]["eval_files"] == ["held.jsonl"]
    trained = Aligner.from_pretrained(out)
    assert isinstance(trained.align("Hi?", "Hello."), str)
    assert trained.config.handback_opening == "I can't help with that."
    report = tmp_path / "report.json"
    _invoke(
        [
            "train",
            "evaluate-aligner",
            str(out),
            str(held),
            "-o",
            str(report),
            "--max-new-tokens",
            "4",
            "--limit",
            "3",
        ]
    )
    summary = json.loads(report.read_text())
    assert summary["n_triples"] >= 1 and 0 <= summary["degenerate_rate"] <= 1
    insp = tmp_path / "inspector"
    _invoke(
        [
            "train",
            "inspector",
            str(triples),
            "-o",
            str(insp),
            "--criterion",
            "ethical",
            "--encoder",
            str(tiny_encoder_dir),
            "--epochs",
            "5",
            "--max-length",
            "128",  # the tiny encoder has 128 positions
        ]
    )
    assert json.loads((insp / "inspector_config.json").read_text())["metrics"]["n_eval"] > 0


@pytest.mark.e2e
def test_real_smollm2_lora_step_on_cpu(tmp_path: Path) -> None:
    """The shipped aligner's command, cut to one step: it runs on this CPU with the real model."""
    data = tmp_path / "t.jsonl"
    rows = [
        {
            "question": f"What is {i} plus {i}?",
            "answer": "No idea.",
            "correction": f"It is {2 * i}.",
            "criterion": "helpful",
        }
        for i in range(4)
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "smol"
    _invoke(
        ["train", "aligner", str(data), "-o", str(out), "--model", "smollm2", "--format", "chat",
         "--max-steps", "1", "--batch-size", "2", "--warmup-fraction", "0", "--copy-fraction",
         "0.5", "--eval-fraction", "0.25", "--max-length", "256", "--max-new-tokens", "8"]
    )  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert metrics["main"]["steps"] == 1 and metrics["n_eval_examples"] == 1
    assert (out / "adapter" / "adapter_model.safetensors").stat().st_size < 20_000_000
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "smollm2"


@pytest.mark.e2e
def test_synth_with_the_local_langchain_generator(tmp_path: Path) -> None:
    """Two questions through SmolLM2 (LangChain chat model): the run completes and reports every
    generation in some bucket; the 135M model rarely follows the layout, so no count is fixed."""
    questions = tmp_path / "q.csv"
    questions.write_text(
        "input\nHow do I stay safe online?\nWhat should I do if I find a wallet?\n"
    )
    out = tmp_path / "synth"
    _invoke(
        [
            "data",
            "synth",
            "-o",
            str(out),
            "--criterion",
            "ethical",
            "--questions-file",
            str(questions),
            "--max-new-tokens",
            "40",
            "--batch-size",
            "2",
        ]
    )
    report = json.loads((out / "report.json").read_text())
    assert report["generations"] == 2
    removed = sum(v for k, v in report["removed"].items() if k != "near_duplicate")
    assert removed + report["triples"] == 2
    assert len((out / "generations.jsonl").read_text().splitlines()) == 2
    again = _invoke(
        [
            "data",
            "synth",
            "-o",
            str(out),
            "--criterion",
            "ethical",
            "--questions-file",
            str(questions),
        ]
    )
    assert '"generations": 2' in again  # resumed: nothing regenerated, same report
    assert len((out / "generations.jsonl").read_text().splitlines()) == 2
