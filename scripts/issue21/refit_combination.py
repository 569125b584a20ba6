"""Refit a saved gate's combination (and threshold) on a rows file's validation split.

    python scripts/issue21/refit_combination.py GATE ROWS.jsonl OUT \\
        [--combine-features request_and_complies,harm_either]

The trunk and the three heads stay as saved; the combination over the named features
(:data:`aligners.inspector.safety_gate.COMBINE_FEATURES`) and the flag threshold are fitted on
the validation rows by the training rules (:func:`aligners.training.safety_gate.fit_combination`).
Prints the validation metrics. The saved config's ``metrics`` keep the trunk's ``counts``;
``validation`` and ``threshold_rule`` become the refit's; with ``--heldout`` (measured after the
fit, nothing chosen on it) ``heldout`` and ``heldout_by_family`` are re-measured on that file,
else they are dropped (they described the old combination).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from aligners.data.io import read_examples
from aligners.inspector.safety_gate import DEFAULT_COMBINE_FEATURES, SafetyGateInspector
from aligners.training.safety_gate import (
    SafetyGateTrainingConfig,
    by_family,
    fit_combination,
    gate_metrics,
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("gate", type=Path)
    parser.add_argument("rows", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--combine-features", default=",".join(DEFAULT_COMBINE_FEATURES))
    parser.add_argument("--heldout", type=Path, default=None, help="Held-out rows to measure.")
    args = parser.parse_args()
    gate = SafetyGateInspector.from_pretrained(args.gate)
    rows = read_examples(args.rows, on_error="raise").records
    validation = [r for r in rows if r.metadata["split"] == "validation"]
    config = SafetyGateTrainingConfig(combine_features=args.combine_features.split(","))
    # the new combination decides whether the answers' lead features are read
    gate.config.combine_features = config.combine_features
    logits = gate.head_logits(
        *gate.embed([r.question for r in validation], [r.answer for r in validation])
    )
    scores, rule = fit_combination(gate, logits, validation, config)
    threshold = gate.config.threshold
    metrics = gate_metrics(scores, validation, threshold)
    print("threshold", threshold, metrics)
    refit: dict[str, Any] = {
        "counts": gate.config.metrics.get("counts", {}),
        "combination_refit_on": f"{args.rows.name}, validation split ({len(validation)} rows)",
        "validation": metrics,
        "threshold_rule": rule,
    }
    if args.heldout is not None:
        heldout = read_examples(args.heldout, on_error="raise").records
        held_scores = gate.score_batch([r.question for r in heldout], [r.answer for r in heldout])
        refit["heldout_rows"] = args.heldout.name
        refit["heldout"] = gate_metrics(held_scores, heldout, threshold)
        refit["heldout_by_family"] = by_family(held_scores, heldout, threshold)
        print("held out", refit["heldout"])
    gate.config.metrics = refit
    gate.save_pretrained(args.out)


if __name__ == "__main__":
    main()
