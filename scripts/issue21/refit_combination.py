"""Refit a saved gate's combination (and threshold) on a rows file's validation split.

    python scripts/issue21/refit_combination.py GATE ROWS.jsonl OUT \\
        [--combine-features request_and_complies,harm_either]

The trunk and the three heads stay as saved; the combination over the named features
(:data:`aligners.inspector.safety_gate.COMBINE_FEATURES`) and the flag threshold are fitted on
the validation rows by the training rules (:func:`aligners.training.safety_gate.fit_combination`).
Prints the validation metrics; the saved config's ``metrics`` gains ``refit``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aligners.data.io import read_examples
from aligners.inspector.safety_gate import SafetyGateInspector
from aligners.training.safety_gate import (
    SafetyGateTrainingConfig,
    fit_combination,
    gate_metrics,
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("gate", type=Path)
    parser.add_argument("rows", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--combine-features", default="request_and_complies,harm_either")
    args = parser.parse_args()
    gate = SafetyGateInspector.from_pretrained(args.gate)
    rows = read_examples(args.rows, on_error="raise").records
    validation = [r for r in rows if r.metadata["split"] == "validation"]
    config = SafetyGateTrainingConfig(combine_features=args.combine_features.split(","))
    logits = gate.head_logits(
        gate.request_features([r.question for r in validation]),
        gate.answer_features([r.answer for r in validation]),
    )
    scores, rule = fit_combination(gate, logits, validation, config)
    metrics = gate_metrics(scores, validation, gate.config.threshold)
    gate.config.metrics = {
        **gate.config.metrics,
        "refit": {"rows": str(args.rows), "validation": metrics, "threshold_rule": rule},
    }
    print("threshold", gate.config.threshold, metrics)
    gate.save_pretrained(args.out)


if __name__ == "__main__":
    main()
