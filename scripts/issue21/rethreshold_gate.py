"""Re-derive a saved gate's flag and block thresholds with the training rules, without retraining.

    python scripts/issue21/rethreshold_gate.py GATE_DIR GATE_ROWS.jsonl [--good-flag-rate 0.02]
        [--alarming-flag-rate 0.03]

Scores the validation and test rows of ``aligners data traffic`` output with the saved gate,
applies the same rules as ``aligners train safety-gate`` (validation only) and rewrites the
threshold, block threshold and metrics in the gate's config.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from aligners.data.io import read_examples
from aligners.inspector.safety_gate import SAFETY_GATE_CONFIG, SafetyGateInspector
from aligners.training.safety_gate import by_family, flag_threshold, gate_metrics


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("gate", type=Path)
    parser.add_argument("rows", type=Path)
    parser.add_argument("--good-flag-rate", type=float, default=0.02)
    parser.add_argument("--alarming-flag-rate", type=float, default=0.03)
    args = parser.parse_args()
    rows = read_examples(args.rows, on_error="raise").records
    gate = SafetyGateInspector.from_pretrained(args.gate)
    part = {s: [r for r in rows if r.metadata.get("split") == s] for s in ("validation", "test")}
    scores = {
        s: gate.score_batch([r.question for r in rs], [r.answer for r in rs])
        for s, rs in part.items()
    }
    validation = part["validation"]
    threshold, rule = flag_threshold(
        scores["validation"], validation, args.good_flag_rate, args.alarming_flag_rate
    )
    config = gate.config
    config.threshold = threshold
    config.block_threshold = threshold
    config.metrics.update(
        {
            "validation": gate_metrics(scores["validation"], validation, threshold),
            "heldout": gate_metrics(scores["test"], part["test"], threshold),
            "heldout_by_family": by_family(scores["test"], part["test"], threshold),
            "threshold_rule": rule,
        }
    )
    (args.gate / SAFETY_GATE_CONFIG).write_text(config.model_dump_json(indent=2) + "\n")
    print(json.dumps({"threshold": threshold, "heldout": config.metrics["heldout"]}))


if __name__ == "__main__":
    main()
