"""``aligners align --on-flag/--blocked-message`` and the CLI's quiet default (``--verbose``).

Policy tests run the CLI in a subprocess with the squad swapped for one of known scores (a
wrapper script replaces ``build_squad``), so the exit codes, stdout and stderr are the real ones.
The quiet tests load a real (tiny) model with a real PEFT adapter: transformers prints its
"Loading weights" bar and the squad's builder a FutureWarning (PEFT's own, which it used to
rely on, is gone from peft 0.22), unless the CLI hides them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aligners.squad.squad import DEFAULT_BLOCKED_MESSAGE
from tests.conftest import shipped_block

REWRITE = "A careful, safe answer."

#: Runs the real CLI with ``build_squad`` replaced: one ethical member whose inspector scores
#: 0.1 any answer containing "bad" (0.9 otherwise) and whose aligner writes REWRITE, or loads
#: the tiny model given in ALIGNERS_TEST_LM (with the adapter in ALIGNERS_TEST_ADAPTER).
WRAPPER = """
import os
import sys
import warnings

sys.path.insert(0, {root!r})
import aligners.cli.align as cli_align
from aligners import Aligner, FunctionInspector, Squad, SquadMember, get_criterion
from tests.engine.conftest import ConstantBackend


def build_squad(criteria, format, model, device, policy=None, *, max_new_tokens=None,
                inspector=None):
    crit = get_criterion("ethical")
    lm = os.environ.get("ALIGNERS_TEST_LM")
    if lm:
        # a library warning raised while the CLI runs, whatever the installed versions warn
        warnings.warn("loading the tiny model", FutureWarning, stacklevel=1)
        aligner = Aligner(
            lm, format="chat", criterion=crit, max_new_tokens=4,
            adapter=os.environ.get("ALIGNERS_TEST_ADAPTER"),
        )
    else:
        aligner = Aligner(format="chat", criterion=crit, backend=ConstantBackend({rewrite!r}))
    inspector = FunctionInspector(lambda q, a: 0.1 if "bad" in a else 0.9, crit)
    member = SquadMember(crit, aligner, inspector, 0.5)
    return Squad([member], policy=policy)


cli_align.build_squad = build_squad
from aligners.cli.main import main

main()
"""


@pytest.fixture(scope="module")
def wrapper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = str(Path(__file__).resolve().parents[2])
    path = tmp_path_factory.mktemp("cli") / "aligners_with_known_scores.py"
    path.write_text(WRAPPER.format(root=root, rewrite=REWRITE), encoding="utf-8")
    return path


def run(
    wrapper: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ALIGNERS_")}
    return subprocess.run(
        [sys.executable, str(wrapper), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**environment, **(env or {})},
    )


def records(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# -- --on-flag ---------------------------------------------------------------------------------


def test_default_policy_rewrites(wrapper) -> None:
    done = run(wrapper, "align", "-q", "q", "-a", "a bad answer", "--json")
    assert done.returncode == 0, done.stderr
    (record,) = records(done.stdout)
    assert record["text"] == REWRITE and record["action"] == "rewritten"


def test_block_prints_the_blocked_message(wrapper) -> None:
    done = run(wrapper, "align", "-q", "q", "-a", "a bad answer", "--on-flag", "block")
    assert done.returncode == 0, done.stderr
    assert f"aligned  : {DEFAULT_BLOCKED_MESSAGE}" in done.stdout
    assert "action   : blocked (on_flag=block)" in done.stdout
    assert "why      : flagged (ethical 0.10 < 0.50)" in done.stdout

    custom = run(
        wrapper, "align", "-a", "a bad answer", "--on-flag", "block", "--blocked-message", "No.",
        "--json",
    )  # fmt: skip
    (record,) = records(custom.stdout)
    assert record["text"] == "No." and record["blocked"] is True


def test_raise_on_one_answer_exits_1_naming_criteria_and_scores(wrapper) -> None:
    done = run(wrapper, "align", "-q", "q", "-a", "a bad answer", "--on-flag", "raise")
    assert done.returncode == 1, done.stderr
    assert "error: 1 of 1 answer flagged by the inspectors under --on-flag raise" in done.stderr
    assert "the answer: ethical 0.10 < 0.50" in done.stderr
    assert "action   : raised (on_flag=raise)" in done.stdout  # the record is still shown
    assert "Traceback" not in done.stderr

    fine = run(wrapper, "align", "-q", "q", "-a", "a good answer", "--on-flag", "raise")
    assert fine.returncode == 0, fine.stderr
    assert "action   : passed" in fine.stdout


def test_raise_on_a_file_keeps_every_answer_and_reports_the_flagged(wrapper, tmp_path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    rows = [
        {"question": "q1", "answer": "fine one"},
        {"question": "q2", "answer": "a bad one"},
        None,  # a blank line: line numbers must still point at the file
        {"question": "q3", "answer": "fine two"},
        {"question": "q4", "answer": "bad again"},
    ]
    pairs.write_text(
        "\n".join("" if row is None else json.dumps(row) for row in rows) + "\n", encoding="utf-8"
    )
    out = tmp_path / "out.jsonl"
    done = run(
        wrapper, "align", "-i", str(pairs), "-o", str(out), "--on-flag", "raise",
        "--batch-size", "2",
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    written = records(out.read_text(encoding="utf-8"))
    assert [r["question"] for r in written] == ["q1", "q2", "q3", "q4"]
    assert [r["action"] for r in written] == ["passed", "raised", "passed", "raised"]
    assert [r["text"] for r in written] == ["fine one", "a bad one", "fine two", "bad again"]
    assert "2 of 4 answers flagged" in done.stderr
    assert f"{pairs}:2: ethical 0.10 < 0.50" in done.stderr
    assert f"{pairs}:5: ethical 0.10 < 0.50" in done.stderr

    to_stdout = run(wrapper, "align", "-i", str(pairs), "--on-flag", "raise")
    assert to_stdout.returncode == 1
    assert len(records(to_stdout.stdout)) == 4


def test_block_on_a_file_counts_the_blocked(wrapper, tmp_path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"answer": "bad"}\n{"answer": "good"}\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    done = run(wrapper, "align", "-i", str(pairs), "-o", str(out), "--on-flag", "block")
    assert done.returncode == 0, done.stderr
    assert "wrote 2 results" in done.stderr and "1 blocked" in done.stderr
    assert [r["action"] for r in records(out.read_text())] == ["blocked", "passed"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--on-flag", "explode"], "--on-flag must be one of rewrite, block, raise"),
        (["--on-flag", "block", "--blocked-message", "  "], "--blocked-message must have text"),
    ],
)
def test_bad_policy_options_exit_2(args, message) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "aligners.cli.main", "align", "-a", "x", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


# -- --block-threshold -------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["align", "-a", "an answer"], ["demo", "-q", "a question"]])
def test_block_threshold_reaches_the_squads_members(monkeypatch, command) -> None:
    """``--block-threshold`` sets every member's; without it the shipped ones stay (the squad
    is built for real, then the command stops: nothing is loaded or run)."""
    import typer
    from typer.testing import CliRunner

    import aligners.backends.transformers as transformers_module
    import aligners.cli.align as cli_align
    from aligners import Squad
    from aligners.cli.main import app

    class Upstream:  # the demo's local upstream model, never loaded
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def generate(self, prompts: list[object], config: object) -> list[str]:
            return ["an answer"] * len(prompts)

    built: list[Squad] = []
    real_build_squad = cli_align.build_squad

    def build_squad(*args: object, **kwargs: object) -> Squad:
        built.append(real_build_squad(*args, **kwargs))
        raise typer.Exit(0)

    monkeypatch.setattr(cli_align, "build_squad", build_squad)
    monkeypatch.setattr(transformers_module, "TransformersBackend", Upstream)
    shipped = [m.block_threshold for m in Squad.default().members]
    assert shipped == [shipped_block()]  # the shipped ethical gate
    for args, expected in ((["--block-threshold", "0.3"], [0.3]), ([], shipped)):
        done = CliRunner().invoke(app, [*command, *args])
        assert done.exit_code == 0, done.output
        assert [m.block_threshold for m in built.pop().members] == expected


# -- quiet by default --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_adapter(tiny_lm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter on the tiny model (loaded through PEFT, as the shipped aligner is)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_lm_dir)
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    directory = tmp_path_factory.mktemp("tiny-adapter")
    peft_model.save_pretrained(directory)
    return directory


def test_model_loading_is_quiet_by_default_and_loud_with_verbose(
    wrapper, tiny_lm_dir, tiny_adapter
) -> None:
    env = {"ALIGNERS_TEST_LM": str(tiny_lm_dir), "ALIGNERS_TEST_ADAPTER": str(tiny_adapter)}
    # A random tiny model rarely ends its text: accept cut rewrites so "rewritten" shows it ran.
    args = ["align", "-q", "q", "-a", "a bad answer", "--json", "--on-token-limit", "accept"]

    quiet = run(wrapper, *args, env=env)
    assert quiet.returncode == 0, quiet.stderr
    assert records(quiet.stdout)[0]["action"] == "rewritten"  # the model did load and run
    assert quiet.stderr.strip() == "", quiet.stderr

    loud = run(wrapper, "--verbose", *args, env=env)
    assert loud.returncode == 0, loud.stderr
    assert "Loading weights" in loud.stderr
    assert "FutureWarning" in loud.stderr
    assert records(loud.stdout) == records(quiet.stdout)

    by_env = run(wrapper, *args, env={**env, "ALIGNERS_VERBOSE": "1"})
    assert "Loading weights" in by_env.stderr


def test_gguf_conversion_bar_follows_transformers_progress_switch(capsys) -> None:
    """transformers draws the GGUF conversion bar with plain tqdm; the loader hides it where
    transformers' bars are off (as the CLI turns them off), and only there."""
    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    from aligners.backends.transformers import gguf_progress_bar

    was_on = hf_logging.is_progress_bar_enabled()
    original = gguf_utils.tqdm
    try:
        hf_logging.disable_progress_bar()
        with gguf_progress_bar():
            assert list(gguf_utils.tqdm(range(3), desc="Converting hidden")) == [0, 1, 2]
        assert gguf_utils.tqdm is original  # put back afterwards
        assert "Converting hidden" not in capsys.readouterr().err
        hf_logging.enable_progress_bar()
        with gguf_progress_bar():
            list(gguf_utils.tqdm(range(3), desc="Converting shown"))
        assert "Converting shown" in capsys.readouterr().err
    finally:
        (hf_logging.enable_progress_bar if was_on else hf_logging.disable_progress_bar)()


@pytest.mark.e2e
def test_first_gguf_conversion_is_quiet_unless_verbose(wrapper, tmp_path) -> None:
    """The demo's first run converts SmolLM2's GGUF without showing the conversion bar."""
    args = ["align", "-q", "q", "-a", "a bad answer", "--json", "--on-token-limit", "accept"]
    bar = "Converting and de-quantizing GGUF tensors"
    quiet_cache = tmp_path / "quiet"
    quiet = run(
        wrapper, *args, env={"ALIGNERS_TEST_LM": "smollm2", "ALIGNERS_CACHE_DIR": str(quiet_cache)}
    )
    assert quiet.returncode == 0, quiet.stderr
    assert list((quiet_cache / "converted").iterdir())  # it did convert, in this run
    assert bar not in quiet.stderr, quiet.stderr
    # --verbose showing library output is checked by test_model_loading_is_quiet_by_default_and_
    # loud_with_verbose; a second conversion here would only cost the suite a minute.


def test_long_work_keeps_its_own_progress_bar(wrapper, tiny_lm_dir, tmp_path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"answer": "bad"}\n{"answer": "good"}\n', encoding="utf-8")
    done = run(
        wrapper, "align", "-i", str(pairs), "-o", str(tmp_path / "out.jsonl"),
        env={"ALIGNERS_TEST_LM": str(tiny_lm_dir)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "aligning" in done.stderr and "2/2" in done.stderr  # the CLI's own bar
    assert "Loading weights" not in done.stderr


def test_quiet_settings_do_not_outlive_the_command(monkeypatch) -> None:
    """In-process callers (CliRunner) get their environment and warning filters back."""
    import warnings

    from aligners.cli.output import QUIET_ENV, quiet_libraries

    monkeypatch.delenv("TRANSFORMERS_VERBOSITY", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "0")  # the user's own choice wins
    filters = list(warnings.filters)
    with quiet_libraries():
        assert os.environ["TRANSFORMERS_VERBOSITY"] == QUIET_ENV["TRANSFORMERS_VERBOSITY"]
        assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "0"
        with warnings.catch_warnings(record=True) as caught:
            warnings.warn("library noise", FutureWarning, stacklevel=1)
        assert caught == []  # ignored while the command runs
    assert "TRANSFORMERS_VERBOSITY" not in os.environ
    assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "0"
    assert warnings.filters == filters


@pytest.mark.e2e
def test_the_real_cli_loads_the_default_inspectors_quietly() -> None:
    args = [sys.executable, "-m", "aligners.cli.main"]
    align = ["align", "-q", "How do I bake bread?", "-a", "Knead, rise, bake.", "--check-only"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALIGNERS_")}
    quiet = subprocess.run([*args, *align], capture_output=True, text=True, timeout=300, env=env)
    assert quiet.returncode == 0, quiet.stderr
    assert "decision :" in quiet.stdout and quiet.stderr.strip() == "", quiet.stderr
    loud = subprocess.run(
        [*args, "--verbose", *align], capture_output=True, text=True, timeout=300, env=env
    )
    assert "Loading weights" in loud.stderr
