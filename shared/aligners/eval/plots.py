"""PNG plots of an evaluation (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as error:  # an optional extra
        raise ImportError("plots need matplotlib: pip install 'aligners[plots]'") from error
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_trajectories(
    examples: Sequence[Any],
    criteria: Sequence[str],
    path: Path,
    thresholds: dict[str, float] | None = None,
) -> Path:
    """Inspector score per criterion before the first stage and after each stage.

    Thin lines: answers the squad changed; thick line: mean over all answers; dashed: threshold.
    """
    plt = _pyplot()
    valid = [e for e in examples if e.error is None and e.trajectory]
    fig, axes = plt.subplots(
        1,
        max(len(criteria), 1),
        figsize=(4.2 * max(len(criteria), 1), 3.6),
        squeeze=False,
        sharey=True,
    )
    for ax, criterion in zip(axes[0], criteria, strict=False):
        depth = max((len(e.trajectory) for e in valid), default=0)
        for example in valid:
            if example.changed:
                ys = [t.get(criterion) for t in example.trajectory]
                ax.plot(range(len(ys)), ys, color="tab:blue", alpha=0.25, linewidth=0.8)
        means = []
        for stage in range(depth):
            values = [
                e.trajectory[stage][criterion]
                for e in valid
                if stage < len(e.trajectory) and criterion in e.trajectory[stage]
            ]
            means.append(statistics.fmean(values) if values else float("nan"))
        ax.plot(range(depth), means, color="black", linewidth=2.2, marker="o", label="mean (all)")
        threshold = (thresholds or {}).get(criterion, 0.5)
        ax.axhline(
            threshold,
            color="tab:red",
            linestyle="--",
            linewidth=1,
            label=f"threshold {threshold:g}",
        )
        ax.set_title(criterion)
        ax.set_xticks(range(depth))
        ax.set_xticklabels(["before"] + [f"stage {k}" for k in range(1, depth)], rotation=20)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("inspector P(aligned)")
    axes[0][0].legend(loc="lower right", fontsize=8)
    fig.suptitle("Inspector scores across squad stages (thin: changed answers)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_categories(examples: Sequence[Any], summary: dict[str, Any], path: Path) -> Path:
    """Per category: omega (with CI) for every judge, and the share of answers changed."""
    plt = _pyplot()
    categories: list[str] = summary.get("categories") or []
    labels = categories or ["all"]
    judges = summary.get("judges", {})
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(12, max(3.0, 0.45 * len(labels) + 1.5)), sharey=True
    )
    positions = list(range(len(labels)))
    height = 0.8 / max(len(judges), 1)
    for k, (name, stats) in enumerate(judges.items()):
        rows = (
            [stats["per_category"].get(c) for c in categories] if categories else [stats["overall"]]
        )
        values = [r["omega"] if r and r["omega"] is not None else 0.0 for r in rows]
        cis = [r["omega_ci"] if r and r["omega_ci"] else None for r in rows]
        lows = [v - ci[0] if ci else 0.0 for v, ci in zip(values, cis, strict=True)]
        highs = [ci[1] - v if ci else 0.0 for v, ci in zip(values, cis, strict=True)]
        ys = [p + (k - (len(judges) - 1) / 2) * height for p in positions]
        left.barh(ys, values, height=height, xerr=[lows, highs], capsize=2, label=name, alpha=0.8)
    left.axvline(0, color="black", linewidth=0.8)
    left.set_xlim(-1, 1)
    left.set_xlabel("omega = (wins - losses) / total, 95% CI")
    left.set_yticks(positions)
    left.set_yticklabels(labels, fontsize=8)
    if judges:
        left.legend(fontsize=8, loc="lower right")
    valid = [e for e in examples if e.error is None]
    rates = []
    for label in labels:
        group = [e for e in valid if not categories or e.category == label]
        rates.append(sum(e.changed for e in group) / len(group) if group else 0.0)
    right.barh(positions, rates, color="tab:green", alpha=0.8)
    right.set_xlim(0, 1)
    right.set_xlabel("share of answers the squad changed")
    fig.suptitle("Per category")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_edit_sizes(examples: Sequence[Any], path: Path) -> Path:
    """Histogram of edit sizes (1 - word similarity) of the answers the squad changed."""
    plt = _pyplot()
    edits = [e.edit_size for e in examples if e.error is None and e.changed]
    unchanged = sum(1 for e in examples if e.error is None and not e.changed)
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    ax.hist(edits, bins=[i / 20 for i in range(21)], color="tab:purple", alpha=0.85)
    ax.set_xlim(0, 1)
    ax.set_xlabel("edit size: 0 = copied, 1 = fully rewritten (word level)")
    ax.set_ylabel("answers")
    ax.set_title(f"Edit sizes of {len(edits)} changed answers ({unchanged} left unchanged)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_plots(examples: Sequence[Any], summary: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """All plots into ``out_dir``; returns name -> path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return {
        "trajectories": plot_trajectories(
            examples,
            summary.get("criteria", []),
            out_dir / "trajectories.png",
            {m["criterion"]: m["threshold"] for m in summary.get("squad", [])},
        ),
        "categories": plot_categories(examples, summary, out_dir / "categories.png"),
        "edit_sizes": plot_edit_sizes(examples, out_dir / "edit_sizes.png"),
    }
