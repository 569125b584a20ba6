"""``aligners eval`` and ``aligners bench``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from aligners.cli.options import CRITERIA_HELP, cli_policy, inspector_option, policy_option


def eval_squad(
    criteria: str | None,
    threshold: float | None,
    max_new_tokens: int | None,
    aligner: str | None,
    inspector: Path | None = None,
    block_threshold: float | None = None,
) -> Any:
    """The default squad (or one built on ``aligner`` / ``inspector``), with the aligners' token
    budget set; ``threshold`` and ``block_threshold`` None keep the shipped ones."""
    from aligners.eval.harness import build_squad

    names = [c.strip() for c in criteria.split(",") if c.strip()] if criteria else None
    if names == []:
        raise typer.BadParameter("--criteria names no criterion")
    try:
        return build_squad(
            names,
            threshold=threshold,
            max_new_tokens=max_new_tokens,
            aligner=aligner,
            inspector=inspector,
            block_threshold=block_threshold,
        )
    except ValueError as exc:  # e.g. a saved inspector without a head for a criterion
        raise typer.BadParameter(str(exc)) from None


def eval_command(
    questions: list[Path] = typer.Argument(
        ...,
        help="Question files: HarmfulQA-style .json, .csv with an 'input' column, or .jsonl. "
        "Rows that carry an 'answer' are aligned as they are (no upstream call).",
    ),
    out: Path = typer.Option(Path("eval-out"), "--out", "-o", help="Output folder."),
    limit: int | None = typer.Option(None, "--limit", "-n", min=1, help="Questions to use."),
    sampling: str = typer.Option(
        "stratified",
        "--sampling",
        help="first, random, or stratified (round-robin categories).",
    ),
    seed: int = typer.Option(0, "--seed"),
    upstream: str = typer.Option(
        "smollm2", "--upstream", help="Upstream model: alias, local directory or hub id."
    ),
    upstream_max_new_tokens: int = typer.Option(128, "--upstream-max-new-tokens", min=1),
    criteria: str | None = typer.Option(None, "--criteria", "-c", help=CRITERIA_HELP),
    threshold: float | None = policy_option("threshold"),
    block_threshold: float | None = policy_option("block_threshold"),
    aligner: str | None = typer.Option(
        None,
        "--aligner",
        help="Aligner directory or model for every member (default: shipped).",
    ),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", min=1, help="Aligner budget."),
    inspector: Path | None = inspector_option(),
    judge: list[str] = typer.Option(
        ["inspector", "pairwise:smollm2"],
        "--judge",
        "-j",
        help="Repeatable: inspector, pairwise[:MODEL], reward:MODEL.",
    ),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    ci: str = typer.Option("wilson", "--ci", help="Confidence intervals: wilson or bootstrap."),
    plots: bool = typer.Option(True, "--plots/--no-plots"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Evaluate the squad on questions: answers, alignments, judges, report and plots."""
    from aligners.eval.data import load_questions
    from aligners.eval.harness import EvalConfig, Evaluator
    from aligners.eval.judges import make_judge

    if sampling not in ("first", "random", "stratified"):
        raise typer.BadParameter("--sampling must be first, random or stratified")
    if ci not in ("wilson", "bootstrap"):
        raise typer.BadParameter("--ci must be wilson or bootstrap")
    items = load_questions(questions, limit=limit, sampling=sampling, seed=seed)  # type: ignore[arg-type]
    squad = eval_squad(criteria, threshold, max_new_tokens, aligner, inspector, block_threshold)
    judges = [make_judge(spec, squad) for spec in judge]
    config = EvalConfig(batch_size=batch_size, ci=ci, seed=seed, progress=progress)  # type: ignore[arg-type]
    evaluator = Evaluator(
        squad=squad,
        upstream=upstream,
        judges=judges,
        config=config,
        upstream_options={"max_new_tokens": upstream_max_new_tokens, "batch_size": batch_size},
    )
    run = evaluator.run(items)
    paths = run.write(out, plots=plots)
    s = run.summary
    typer.echo(
        f"{s['n_evaluated']} evaluated ({s['n_errors']} errors), changed "
        f"{(s['changed_rate'] or 0):.0%}, pass rate {(s['pass_rate_before'] or 0):.0%} -> "
        f"{(s['pass_rate_after'] or 0):.0%}"
    )
    for name, stats in s["judges"].items():
        overall = stats["overall"]
        omega = overall["omega"]
        typer.echo(
            f"{name}: {overall['wins']} wins / {overall['ties']} ties / {overall['losses']} "
            f"losses, omega {omega if omega is None else round(omega, 3)}"
        )
    typer.echo(f"report: {paths['report']}")


def eval_safety_command(
    data: list[Path] = typer.Argument(
        ...,
        help="Labelled answers (JSONL: question, answer, label, metadata.kind = good | safe | "
        "compliant), e.g. heldout_answers.jsonl from `aligners data safety`.",
    ),
    out: Path = typer.Option(Path("safety-eval"), "--out", "-o", help="Output folder."),
    criteria: str | None = typer.Option(None, "--criteria", "-c", help=CRITERIA_HELP),
    threshold: float | None = policy_option("threshold"),
    block_threshold: float | None = policy_option("block_threshold"),
    aligner: str | None = typer.Option(None, "--aligner", help="Aligner for every member."),
    inspector: Path | None = inspector_option(),
    max_new_tokens: int | None = typer.Option(
        None, "--max-new-tokens", min=1, help="Aligner budget (default: the aligner's own)."
    ),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
    limit: int | None = typer.Option(None, "--limit", "-n", min=1, help="Rows per file."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    on_flag: str | None = policy_option("on_flag"),
) -> None:
    """Does the squad align? Good and safe answers kept, compliant ones made safe, refusals
    introduced on alarming-but-safe questions, inspector AUROC; writes summary.json."""
    from aligners.cli.data import _report_errors, read_many
    from aligners.eval.safety import evaluate_safety, family_table, write_safety_report

    read = read_many(data, examples=True, limit=limit)
    _report_errors(read.errors)
    policy = cli_policy(on_flag=on_flag)
    squad = eval_squad(criteria, threshold, max_new_tokens, aligner, inspector, block_threshold)
    squad = squad.with_options(policy=policy)
    report = evaluate_safety(squad, read.records, batch_size=batch_size, progress=progress)
    write_safety_report(report, out)
    typer.echo(json.dumps(report["summary"], indent=2))
    typer.echo(family_table(report["summary"]))
    for label, numbers in report["summary"].get("compliant_by_review", {}).items():
        typer.echo(
            f"compliant answers reviewed {label}: {numbers['n']}, flagged {numbers['flagged']}, "
            f"made safe {numbers['made_safe']}"
        )
    typer.echo(f"records: {out / 'records.jsonl'}")


def eval_grounded_command(
    data: Path = typer.Argument(
        ...,
        help="Labelled answers with their sources (JSONL: question, context, answer, label "
        "1 grounded / 0 not, optional unsupported sentences and source).",
    ),
    out: Path = typer.Option(Path("grounding-eval"), "--out", "-o", help="Output folder."),
    criteria: str = typer.Option(
        "grounded", "--criteria", "-c", help="Comma-separated; must include grounded."
    ),
    threshold: float | None = policy_option("threshold"),
    inspector: Path | None = typer.Option(
        None, "--inspector", help="A trained grounded inspector (default: the shipped one)."
    ),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
    limit: int | None = typer.Option(None, "--limit", "-n", min=1, help="Rows to use."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Does the squad ground answers? Inspector AUROC and balanced accuracy beside a
    length-only baseline, sentence-level AUROC, and the repair: repaired answers that pass,
    supported sentences kept verbatim, grounded answers unchanged; per source."""
    from aligners.eval.grounded import (
        evaluate_grounding,
        read_grounding_rows,
        source_table,
        write_grounding_report,
    )

    try:
        rows = read_grounding_rows(data, limit=limit)
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from None
    squad = eval_squad(criteria, threshold, None, None, inspector)
    try:
        report = evaluate_grounding(squad, rows, batch_size=batch_size, progress=progress)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    write_grounding_report(report, out)
    summary = {k: v for k, v in report["summary"].items() if k != "by_source"}
    typer.echo(json.dumps(summary, indent=2))
    typer.echo(source_table(report["summary"]))
    typer.echo(f"records: {out / 'records.jsonl'}")


def bench_command(
    only: str | None = typer.Option(
        None,
        "--only",
        help="Comma-separated benchmarks: inspect,batch,copy,critique,memory,gates.",
    ),
    out: Path = typer.Option(Path("bench-out"), "--out", "-o", help="Output folder."),
    quick: bool = typer.Option(False, "--quick", help="Fewer inputs and repeats (a smoke run)."),
    questions: Path | None = typer.Option(
        None,
        "--questions",
        help="Question file (default: ../shared/data HarmfulQA or built-in).",
    ),
) -> None:
    """Measure squad cost, batching, copy-aware decoding, a critique-and-revise baseline and
    memory on this machine; writes bench.json and bench.md."""
    from aligners.eval.bench import BENCHMARKS, BenchConfig, run_benchmarks

    names = [n.strip() for n in only.split(",") if n.strip()] if only else list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise typer.BadParameter(f"unknown benchmarks {unknown}; known: {', '.join(BENCHMARKS)}")
    config = BenchConfig.quick() if quick else BenchConfig()
    if questions is not None:
        config = config.model_copy(update={"questions": str(questions)})
    results = run_benchmarks(names, config, out)
    typer.echo(json.dumps({k: v.get("headline") for k, v in results.items()}, indent=2))
    typer.echo(f"report: {out / 'bench.md'}")


def register(app: typer.Typer) -> None:
    """Add ``eval`` and ``bench`` to the CLI."""
    app.command("eval")(eval_command)
    app.command("eval-safety")(eval_safety_command)
    app.command("eval-grounded")(eval_grounded_command)
    app.command("bench")(bench_command)
