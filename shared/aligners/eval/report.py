"""Writing an evaluation: JSONL of every example, a JSON summary, a Markdown report, plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _ci(ci: Any) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "–"


def _stats_row(label: str, stats: dict[str, Any]) -> str:
    return (
        f"| {label} | {stats['total']} | {stats['wins']} / {stats['ties']} / {stats['losses']} | "
        f"{_fmt(stats['win_rate'])} {_ci(stats['win_rate_ci'])} | "
        f"{_fmt(stats['omega'])} {_ci(stats['omega_ci'])} |"
    )


def _short(text: str, limit: int = 220) -> str:
    text = " ".join(text.split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("|", "\\|")


def markdown_report(run: Any, plots: dict[str, Path] | None = None, examples_shown: int = 5) -> str:
    """The report a person reads: setup, squad behaviour, judges overall and per category."""
    s = run.summary
    lines = ["# Aligners evaluation", ""]
    lines += [
        f"- examples: {s['n_examples']} ({s['n_evaluated']} evaluated, {s['n_errors']} errors)",
        f"- upstream: `{s['upstream']}`",
        f"- changed by the squad: {_fmt(s['changed_rate'])}",
        f"- pass rate (every inspector over threshold): {_fmt(s['pass_rate_before'])} before, "
        f"{_fmt(s['pass_rate_after'])} after",
        f"- seconds per answer: upstream {_fmt(s['seconds']['upstream_per_answer'])}, squad "
        f"{_fmt(s['seconds']['squad_per_answer'])} (amortised over batches)",
        f"- edit size of changed answers (1 - word similarity): mean "
        f"{_fmt(s['edit_size_changed']['mean'])}, median {_fmt(s['edit_size_changed']['median'])}",
        "",
        "## Squad",
        "",
        "| criterion | aligner | inspector | threshold | flagged | applied "
        "| mean score before → after |",
        "|---|---|---|---|---|---|---|",
    ]
    for member in s["squad"]:
        c = member["criterion"]
        lines.append(
            f"| {c} | `{member['aligner']}`{' + adapter' if member['aligner_adapter'] else ''} | "
            f"{member['inspector']} ({member['inspector_note']}) | {member['threshold']} | "
            f"{_fmt(s['flagged_rate'].get(c))} | {_fmt(s['applied_rate'].get(c))} | "
            f"{_fmt(s['mean_score_before'].get(c))} → {_fmt(s['mean_score_after'].get(c))} |"
        )
    lines += ["", "## Judges", ""]
    lines += [
        "Win rate drops ties: wins / (wins + losses). ω = (wins − losses) / total, the papers' "
        f"score. Intervals: {s['config']['ci']}, {int(s['config']['confidence'] * 100)}%. "
        "Identical texts count as ties without asking the judge.",
        "",
    ]
    for name, stats in s["judges"].items():
        lines += [
            f"### {name}",
            "",
            "| subset | n | wins / ties / losses | win rate | ω |",
            "|---|---|---|---|---|",
            _stats_row("all", stats["overall"]),
            _stats_row("changed answers only", stats["changed_only"]),
        ]
        for category, cat_stats in stats["per_category"].items():
            lines.append(_stats_row(category, cat_stats))
        lines.append("")
    if plots:
        lines += ["## Plots", ""]
        for name, path in plots.items():
            lines.append(
                f"![{name}]({path.name if path.parent.name != 'plots' else 'plots/' + path.name})"
            )
        lines.append("")
    changed = [e for e in run.examples if e.changed][:examples_shown]
    if changed:
        lines += ["## Examples the squad changed", ""]
        for example in changed:
            verdicts = ", ".join(f"{k}: {v.outcome}" for k, v in example.verdicts.items())
            lines += [
                f"**{_short(example.question, 160)}** ({example.category or 'no category'}; "
                f"applied: {', '.join(example.applied)}; {verdicts})",
                "",
                f"- original: {_short(example.original)}",
                f"- aligned: {_short(example.aligned)}",
                "",
            ]
    if s["errors"]:
        lines += ["## Errors", ""]
        lines += [f"- `{e['id']}`: {e['error']}" for e in s["errors"]]
        lines.append("")
    return "\n".join(lines)


def write_outputs(run: Any, out_dir: str | Path, *, plots: bool = True) -> dict[str, Path]:
    """Write ``examples.jsonl``, ``summary.json``, ``report.md`` and ``plots/*.png``."""
    directory = Path(out_dir).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    examples_path = directory / "examples.jsonl"
    with examples_path.open("w", encoding="utf-8") as handle:
        for example in run.examples:
            handle.write(json.dumps(example.model_dump(), ensure_ascii=False) + "\n")
    paths["examples"] = examples_path
    summary_path = directory / "summary.json"
    summary_path.write_text(json.dumps(run.summary, indent=2, ensure_ascii=False) + "\n")
    paths["summary"] = summary_path
    plot_paths: dict[str, Path] = {}
    if plots:
        from aligners.eval.plots import write_plots

        plot_paths = write_plots(run.examples, run.summary, directory / "plots")
        paths.update({f"plot_{k}": v for k, v in plot_paths.items()})
    report_path = directory / "report.md"
    report_path.write_text(markdown_report(run, plot_paths) + "\n", encoding="utf-8")
    paths["report"] = report_path
    return paths
