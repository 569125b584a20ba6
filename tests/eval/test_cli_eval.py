"""``aligners eval`` / ``aligners bench``: input errors fast, a real run on 3 questions (e2e)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import shipped_block


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aligners.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
    )


def test_eval_reports_bad_input_in_one_line(tmp_path: Path) -> None:
    missing = cli("eval", str(tmp_path / "nope.json"), "-o", str(tmp_path / "o"))
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question": "hi?"}\n')
    bad = cli("eval", str(questions), "--sampling", "best")
    assert bad.returncode == 2 and "--sampling must be" in bad.stderr
    judge = cli("eval", str(questions), "--judge", "vibes")
    assert judge.returncode == 2 and "unknown judge" in judge.stderr


@pytest.mark.parametrize("command", ["eval", "eval-safety"])
def test_block_threshold_reaches_the_squads_members(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, command: str
) -> None:
    """``--block-threshold`` sets every member's; without it the shipped ones stay (the squad
    is built for real, then the command stops: nothing is loaded or run)."""
    import typer
    from typer.testing import CliRunner

    import aligners.cli.eval as cli_eval
    from aligners import Squad
    from aligners.cli.main import app

    rows = tmp_path / "rows.jsonl"
    row = {"question": "hi?", "answer": "Hello.", "label": 1, "metadata": {"kind": "good"}}
    rows.write_text(json.dumps(row) + "\n")
    built: list[Squad] = []
    real_eval_squad = cli_eval.eval_squad

    def eval_squad(*args: object, **kwargs: object) -> Squad:
        built.append(real_eval_squad(*args, **kwargs))  # type: ignore[arg-type]
        raise typer.Exit(0)

    monkeypatch.setattr(cli_eval, "eval_squad", eval_squad)
    base = [command, str(rows), "-o", str(tmp_path / "out"), "--criteria", "ethical,helpful"]
    cases = ((["--block-threshold", "0.3"], [0.3, 0.3]), ([], [shipped_block(), None]))
    for args, expected in cases:
        done = CliRunner().invoke(app, [*base, *args])
        assert done.exit_code == 0, done.output
        assert [m.block_threshold for m in built.pop().members] == expected


def test_bench_rejects_unknown_benchmarks() -> None:
    done = cli("bench", "--only", "speed")
    assert done.returncode == 2 and "unknown benchmarks" in done.stderr


@pytest.mark.e2e
def test_eval_on_three_harmfulqa_questions(tmp_path: Path, shared_data: Path) -> None:
    out = tmp_path / "out"
    done = cli(
        "eval",
        str(shared_data / "prompts" / "harmfulqa.json"),
        "-n",
        "3",
        "-o",
        str(out),
        "--upstream-max-new-tokens",
        "16",
        "--max-new-tokens",
        "16",
        "--threshold",
        "0.95",
        "--criteria",
        "ethical",
        "--judge",
        "inspector",
        "--judge",
        "pairwise:smollm2",
        "--no-progress",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "report:" in done.stdout
    lines = (out / "examples.jsonl").read_text().splitlines()
    assert len(lines) == 3
    examples = [json.loads(line) for line in lines]
    assert all(e["original"] for e in examples)
    assert len({e["category"] for e in examples}) == 3  # stratified: three topics
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["judges"]) == {"inspector", "pairwise:smollm2"}
    assert summary["judges"]["inspector"]["overall"]["total"] == 3
    for name in ("trajectories", "categories", "edit_sizes"):
        assert (out / "plots" / f"{name}.png").stat().st_size > 5000
    assert "# Aligners evaluation" in (out / "report.md").read_text()
