"""The console script's error handling, and what the distribution installs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aligners.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["align", "--answer", ""], "answer is empty"),
        (["align", "--answer", "x", "--criteria", "kindness"], "unknown criterion 'kindness'"),
        (["align"], "exactly one of --answer or --input"),
        (["align", "--answer", "x", "--format", "alpaca"], "unknown format 'alpaca'"),
        (["align", "--answer", "x", "--threshold", "3"], "threshold"),
        (["align", "--answer", "x", "--block-threshold", "3"], "--block-threshold"),
    ],
)
def test_errors_are_one_clear_line_with_exit_code_2(args: list[str], message: str) -> None:
    done = run_cli(*args)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert any(message in line for line in lines), done.stderr
    assert "Traceback" not in done.stderr


def test_bad_jsonl_input_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n{not json\n")
    done = run_cli("align", "--input", str(path))
    assert done.returncode == 2
    assert f"{path}:2: not valid JSON" in done.stderr


def test_wheel_installs_the_three_packages_and_no_shared(tmp_path: Path) -> None:
    had_build_dir = (ROOT / "build").exists()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        timeout=300,
    )
    if not had_build_dir:  # setuptools leaves build/ in the source tree
        shutil.rmtree(ROOT / "build", ignore_errors=True)
    wheel = next(tmp_path.glob("aligners-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top_level == {"aligners", "langchain_aligners", "llamaindex_aligners"}
    assert "aligners/squad/squad.py" in names and "aligners/py.typed" in names
