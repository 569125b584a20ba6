"""``aligners align`` and ``aligners demo``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from aligners.cli.options import (
    CRITERIA_HELP,
    POLICY_FLAGS,
    inspector_option,
    policy_options,
)
from aligners.squad.policy import SquadPolicy
from aligners.squad.result import AlignmentResult

#: What ``--on-flag`` adds for ``align``.
ON_FLAG_NOTE = "Under raise the exit code is 1, naming the flagged criteria."
#: Exit code of ``align`` when answers were flagged under ``--on-flag raise``.
EXIT_FLAGGED = 1


def flag_summary(result: AlignmentResult) -> str:
    """``ethical 0.12 < 0.50, helpful 0.30 < 0.50``: why an answer was flagged."""
    return ", ".join(
        f"{name} {result.initial_scores.get(name, float('nan')):.2f} < "
        f"{result.thresholds.get(name, 0.5):.2f}"
        for name in result.flagged
    )


def build_squad(
    criteria: str | None,
    format: str | None,
    model: str | Any | None,
    device: str | None,
    policy: SquadPolicy | None = None,
    *,
    max_new_tokens: int | None = None,
    inspector: Path | None = None,
) -> Any:
    """The squad the CLI options describe: ``Squad.default`` under ``policy`` (from
    :func:`~aligners.cli.options.cli_policy`: thresholds, on_flag, on_error, ...).

    ``model`` replaces every member's aligner (an alias, a path, a saved aligner directory or
    an ``Aligner``); ``inspector`` a saved inspector directory for every member (None: the
    shipped ones)."""
    from aligners.squad.squad import Squad

    names = [c.strip() for c in criteria.split(",") if c.strip()] if criteria else None
    if names == []:
        raise typer.BadParameter("--criteria names no criterion")
    options: dict[str, Any] = {}
    if format:
        options["format"] = format
    if device:
        options["device_map"] = device
    if max_new_tokens:
        options["max_new_tokens"] = max_new_tokens
    return Squad.default(
        names, aligner=model, aligner_options=options, inspector=inspector, policy=policy
    )


#: Requests written for the demo (in no training set): one the squad must make safe, one it
#: must leave alone. Chosen among several tried: of six harmful requests the gate flagged
#: SmolLM2's answer to all six and the aligner rewrote three, and SmolLM2's French-press answer
#: scored 0.48 (flagged, then handed back unchanged); docs/training.md has the held-out rates.
DEMO_QUESTIONS = (
    "How do I hurt someone and make it look like an accident?",
    "What are some good stretches after a run?",
)


def _print_result(result: AlignmentResult, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(result.to_record(), ensure_ascii=False))
        return
    scores = ", ".join(f"{k}={v:.2f}" for k, v in result.initial_scores.items())
    final = ", ".join(f"{k}={v:.2f}" for k, v in result.final_scores.items())
    typer.echo(f"question : {result.question}")
    typer.echo(f"original : {result.original}")
    flagged = ", ".join(f"{k} < {result.thresholds[k]:.2f}" for k in result.flagged)
    typer.echo(f"scores   : {scores}  (P(aligned) per inspector)")
    typer.echo(f"decision : {'flagged: ' + flagged if flagged else 'passed every inspector'}")
    unchanged = set(result.unchanged_by)
    applied = [f"{name} (kept the text)" if name in unchanged else name for name in result.applied]
    typer.echo(f"applied  : {', '.join(applied) or _why_none_applied(result)}")
    if result.on_flag != "rewrite" or result.blocked:
        typer.echo(f"action   : {result.action} (on_flag={result.on_flag})")
    if result.block_reason:
        typer.echo(f"why      : {result.block_reason}")
    typer.echo(f"aligned  : {result.text}")
    typer.echo(f"final    : {final}")
    if result.grounding is not None:
        report = result.grounding
        claims = [s for s in report.sentences if not s.trivial]
        supported = sum(s.supported for s in claims)
        typer.echo(
            f"sources  : {supported} of {len(claims)} claims supported by {report.passages} "
            f"passage{'s' if report.passages != 1 else ''}"
        )
    for name, why in result.not_inspected.items():
        typer.echo(f"skipped  : {name} ({why})")
    for failure in result.failures:
        typer.echo(f"failure  : {failure}")


def _why_none_applied(result: AlignmentResult) -> str:
    """The ``applied`` line when no aligner's text was taken: passed, or why a flagged answer
    was not rewritten."""
    if not result.flagged:
        return "none (answer passed the inspectors)"
    if result.check_only:
        return "none (flagged, not rewritten: --check-only scores only)"
    if result.on_flag in ("block", "raise"):
        return f"none (flagged, not rewritten: on_flag={result.on_flag} runs no aligner)"
    see = "; see failure below" if result.failures else ""
    return f"none (flagged, but no rewrite was accepted{see})"


def _read_pairs(path: Path) -> list[tuple[str, str]]:
    return [(row[1], row[2]) for row in _read_numbered_pairs(path)[0]]


#: One usable JSONL row: line number, question, answer, context (None: the row has none).
Row = tuple[int, str, str, Any]


def _read_numbered_pairs(path: Path, *, skip_invalid: bool = False) -> tuple[list[Row], list[str]]:
    """``(line number, question, answer, context)`` for each non-blank line of a JSONL file,
    and the problems of the lines skipped (``skip_invalid``; otherwise the first problem
    raises), each naming its file and line. ``context`` is the row's optional sources."""
    from aligners.sources import as_passages
    from aligners.validation import validate_pair

    pairs: list[Row] = []
    problems: list[str] = []
    for number, raw in enumerate(path.read_bytes().splitlines(), 1):
        problem: str | None
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            problem = (
                f"{path}:{number}: not valid UTF-8 (byte {raw[error.start]:#04x} at position "
                f"{error.start})"
            )
        else:
            if not line.strip():
                continue
            problem = _line_problem(line)
            if problem is None:
                row = json.loads(line)
                question, answer = row.get("question", ""), row["answer"]
                context = row.get("context")
                try:
                    validate_pair(question, answer)
                    as_passages(context)
                except ValueError as error:
                    problem = str(error)
                else:
                    pairs.append((number, question, answer, context))
                    continue
            problem = f"{path}:{number}: {problem}"
        if not skip_invalid:
            raise ValueError(problem)
        problems.append(str(problem))
    return pairs, problems


def _line_problem(line: str) -> str | None:
    """What is wrong with one JSONL line's shape (None: a usable row)."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        return f"not valid JSON ({error.msg})"
    if not isinstance(row, dict) or not isinstance(row.get("answer"), str):
        return "each line needs a string field 'answer'"
    if not isinstance(row.get("question", ""), str):
        return "field 'question' must be a string"
    context = row.get("context")
    if not (
        context is None
        or isinstance(context, str)
        or (isinstance(context, list) and all(isinstance(c, str) for c in context))
    ):
        return "field 'context' must be a string or a list of strings (the answer's sources)"
    return None


def _report_violations(raised: list[tuple[str, AlignmentResult]], total: int) -> None:
    """Name every answer flagged under ``--on-flag raise`` on stderr, with its scores."""
    typer.echo(
        f"error: {len(raised)} of {total} answer{'s' if total != 1 else ''} flagged by the "
        "inspectors under --on-flag raise:",
        err=True,
    )
    for where, result in raised:
        typer.echo(f"  {where}: {flag_summary(result)}", err=True)


#: The policy options of ``align`` (all but the request check: it has no request to check).
ALIGN_POLICY = tuple(f for f in POLICY_FLAGS if f not in ("check_request", "request_threshold"))


@policy_options("cli", ALIGN_POLICY, notes={"on_flag": ON_FLAG_NOTE})
def align(
    question: str = typer.Option("", "--question", "-q", help="The question (may be empty)."),
    answer: str | None = typer.Option(None, "--answer", "-a", help="The answer to align."),
    input: Path | None = typer.Option(
        None,
        "--input",
        "-i",
        help="JSONL with 'question', 'answer' and optional 'context' (the answer's sources: "
        "a string or a list of passages) per line.",
        exists=True,
        dir_okay=False,
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write JSONL results here.", dir_okay=False
    ),
    context: list[str] | None = typer.Option(
        None,
        "--context",
        "-x",
        help="With --answer: a passage of the answer's sources (repeatable). Criteria that "
        "read sources (grounded) check the answer against them.",
    ),
    inspector: Path | None = inspector_option(),
    criteria: str | None = typer.Option(None, "--criteria", "-c", help=CRITERIA_HELP),
    format: str | None = typer.Option(None, "--format", help="Aligner prompt format."),
    model: str | None = typer.Option(None, "--model", help="Aligner model (alias, path, hub id)."),
    device: str | None = typer.Option(None, "--device", help="device_map, e.g. cpu, cuda, auto."),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    as_json: bool = typer.Option(False, "--json", help="Print JSON records."),
    max_new_tokens: int | None = typer.Option(
        None, "--max-new-tokens", min=1, help="Aligner budget (default: the aligner's own)."
    ),
    skip_invalid: bool = typer.Option(
        False,
        "--skip-invalid",
        help="With --input: align the valid lines and report the invalid ones on stderr "
        "(default: stop at the first, naming its line).",
    ),
    policy: SquadPolicy | None = None,
) -> None:
    """Align one answer (--answer) or a JSONL file of pairs (--input).

    Under --on-flag raise, flagged answers are reported on stderr (criteria and scores) and
    the exit code is 1; with --input every answer's record is still written, the flagged
    ones with action "raised" and their original text."""
    from aligners.errors import AlignmentViolation

    if (answer is None) == (input is None):
        raise typer.BadParameter("give exactly one of --answer or --input")
    if output is not None and input is None:
        raise typer.BadParameter("--output goes with --input (one --answer prints its result)")
    if context and input is not None:
        raise typer.BadParameter("--context goes with --answer (--input rows hold 'context')")
    if output is not None and output.parent and not output.parent.is_dir():
        raise typer.BadParameter(f"--output: folder {output.parent} does not exist")
    squad = build_squad(
        criteria,
        format,
        model,
        device,
        policy,
        max_new_tokens=max_new_tokens,
        inspector=inspector,
    )
    if answer is not None:
        try:
            single = squad.align(question, answer, context or None)
        except AlignmentViolation as violation:
            _print_result(violation.result, as_json)
            _report_violations([("the answer", violation.result)], 1)
            raise typer.Exit(EXIT_FLAGGED) from None
        _print_result(single, as_json)
        return
    assert input is not None
    _align_file(squad, input, output, batch_size=batch_size, skip_invalid=skip_invalid)


def _align_file(
    squad: Any, input: Path, output: Path | None, *, batch_size: int, skip_invalid: bool
) -> None:
    """``align --input``: every row's record to ``output`` (or stdout); under
    ``--on-flag raise`` the flagged rows are reported and the exit code is 1."""
    from tqdm import tqdm

    from aligners.errors import AlignmentViolation

    pairs, problems = _read_numbered_pairs(input, skip_invalid=skip_invalid)
    for problem in problems:
        typer.echo(f"skipped {problem}", err=True)
    results: list[AlignmentResult] = []
    with tqdm(total=len(pairs), desc="aligning", unit="answer") as bar:
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            questions, answers = [p[1] for p in chunk], [p[2] for p in chunk]
            given = [p[3] for p in chunk]
            contexts = given if any(c is not None for c in given) else None
            try:
                results.extend(squad.align_batch(questions, answers, contexts))
            except AlignmentViolation as violation:  # keep the batch's other answers
                results.extend(violation.results)
            bar.update(len(chunk))
    lines = [json.dumps(r.to_record(), ensure_ascii=False) for r in results]
    if output is not None:
        output.write_text("\n".join(lines) + "\n", encoding="utf-8")
        changed = sum(r.changed for r in results)
        blocked = sum(r.blocked for r in results)
        note = f", {blocked} blocked" if blocked else ""
        typer.echo(f"wrote {len(results)} results to {output} ({changed} changed{note})", err=True)
    else:
        typer.echo("\n".join(lines))
    raised = [
        (f"{input}:{number}", result)
        for (number, *_), result in zip(pairs, results)
        if result.action == "raised"
    ]
    if raised:
        _report_violations(raised, len(results))
        raise typer.Exit(EXIT_FLAGGED)


@policy_options("cli", ("threshold", "block_threshold"))
def demo(
    question: list[str] = typer.Option(
        list(DEMO_QUESTIONS),
        "--question",
        "-q",
        help="Repeatable; default: one harmful and one ordinary request.",
    ),
    criteria: str | None = typer.Option(None, "--criteria", "-c", help=CRITERIA_HELP),
    max_new_tokens: int = typer.Option(96, "--max-new-tokens", min=1),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON records."),
    policy: SquadPolicy | None = None,
) -> None:
    """Answer real questions with a local upstream model, then align the answers with the
    squad: what it flagged, the scores that decided it, and what it wrote."""
    from aligners.backends.base import GenerationConfig
    from aligners.backends.transformers import TransformersBackend

    upstream = TransformersBackend("smollm2")
    typer.echo("upstream model: SmolLM2-135M-Instruct (local)", err=True)
    answers = upstream.generate(
        [[{"role": "user", "content": q}] for q in question],
        GenerationConfig(max_new_tokens=max_new_tokens, batch_size=len(question)),
    )
    squad = build_squad(criteria, None, None, None, policy)
    results = squad.align_batch(
        question, [a.strip() or "(the upstream model gave no answer)" for a in answers]
    )
    for number, result in enumerate(results):
        if number and not as_json:
            typer.echo("")
        _print_result(result, as_json)


def register(app: typer.Typer) -> None:
    """Add ``align`` and ``demo`` to the CLI."""
    app.command()(align)
    app.command()(demo)
