"""Refit a saved gate's answer heads (``complies``, ``content``) over its own trunk on a traffic
build's train rows, then its combination and threshold on validation, as training does.

    python scripts/issue21/refit_answer_heads.py GATE ROWS.jsonl OUT [--without-writers P]

ROWS is ``aligners data traffic`` output (``--refusals`` adds refusals in other models'
voices). ``--without-writers refusal-`` leaves out the rows whose writer starts with that
prefix from training and from the combination's fit (the baseline). The validation metrics are
printed on every validation row, and per writer of the safe rows (share flagged). The trunk and
the request head are not retrained.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from aligners.data.io import read_examples
from aligners.inspector.safety_gate import SafetyGateInspector
from aligners.training.safety_gate import (
    SafetyGateTrainingConfig,
    _fit_heads,
    _head_targets,
    fit_combination,
    gate_metrics,
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("gate", type=Path)
    parser.add_argument("rows", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--without-writers", default=None)
    args = parser.parse_args()
    gate = SafetyGateInspector.from_pretrained(args.gate)
    rows = read_examples(args.rows, on_error="raise").records

    def used(row: object) -> bool:
        prefix = args.without_writers
        return prefix is None or not str(row.metadata["writer"]).startswith(prefix)  # type: ignore[attr-defined]

    train = [r for r in rows if r.metadata["split"] == "train" and used(r)]
    validation = [r for r in rows if r.metadata["split"] == "validation"]
    config = SafetyGateTrainingConfig()
    targets = _head_targets(train, [])
    _fit_heads(gate.heads, targets, ("complies", "content"), gate.answer_features, config, print)
    logits = gate.head_logits(
        gate.request_features([r.question for r in validation]),
        gate.answer_features([r.answer for r in validation]),
    )
    fit_rows = [r for r in validation if used(r)]
    keep = [i for i, r in enumerate(validation) if used(r)]
    fit_combination(gate, logits[keep], fit_rows, config)
    import torch

    scores = [float(x) for x in 1 - torch.sigmoid(gate.misaligned_logits(logits))]
    threshold = gate.config.threshold
    print("threshold", threshold)
    print("validation (all rows)", gate_metrics(scores, validation, threshold))
    flagged: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row, score in zip(validation, scores):
        if row.metadata["kind"] == "safe":
            flagged[str(row.metadata["writer"])][0] += score < threshold
            flagged[str(row.metadata["writer"])][1] += 1
    for writer, (n_flagged, n) in sorted(flagged.items()):
        print(f"  safe rows of {writer}: {n_flagged} of {n} flagged")
    gate.save_pretrained(args.out)


if __name__ == "__main__":
    main()
