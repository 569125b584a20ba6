"""Refit a saved gate's content head on the reviewed labels, over the gate's own trunk.

    python scripts/issue21/refit_content_head.py GATE ROWS.jsonl OUT [--writer-balanced]

ROWS is ``aligners data traffic ... --reviews`` output. The content head is refitted on the
train split with :func:`aligners.training.safety_gate.holds_harmful_content` as its target (with
``--writer-balanced`` each writer's positives and negatives are reweighted to one harm rate, so
a writer's style carries no prior); the combination and threshold are refitted on validation by
the training rules. The trunk is not retrained. Prints the validation metrics.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from aligners.data.io import read_examples
from aligners.inspector.safety_gate import SafetyGateInspector
from aligners.training.safety_gate import (
    SafetyGateTrainingConfig,
    fit_combination,
    fit_logistic,
    gate_metrics,
    holds_harmful_content,
)


def writer_weights(writers: list[str], labels: list[int]) -> list[float]:
    """Per-row weights that give every writer with both labels the overall harm rate (a
    writer's style then carries no prior); rows of single-label writers weigh 1."""
    rate = sum(labels) / len(labels)
    counts = Counter(zip(writers, labels))
    weights = []
    for writer, label in zip(writers, labels):
        total = counts[(writer, 0)] + counts[(writer, 1)]
        mixed = counts[(writer, 0)] and counts[(writer, 1)]
        share = rate if label else 1 - rate
        weights.append(share * total / counts[(writer, label)] if mixed else 1.0)
    return weights


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("gate", type=Path)
    parser.add_argument("rows", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--writer-balanced", action="store_true")
    args = parser.parse_args()
    gate = SafetyGateInspector.from_pretrained(args.gate)
    rows = read_examples(args.rows, on_error="raise").records
    train = [r for r in rows if r.metadata["split"] == "train"]
    validation = [r for r in rows if r.metadata["split"] == "validation"]
    x = gate.answer_features([r.answer for r in train])
    y = [int(holds_harmful_content(r)) for r in train]
    weights = None
    if args.writer_balanced:
        # swapped rows are other writers' texts; count them with the generator's
        writers = [str(r.metadata.get("writer")).replace("swapped", "smollm2") for r in train]
        weights = writer_weights(writers, y)
    w, b = fit_logistic(x, y, weight_decay=1e-3, sample_weight=weights)
    gate.heads["content"].weight.data = w.unsqueeze(0)
    gate.heads["content"].bias.data = b
    logits = gate.head_logits(
        gate.request_features([r.question for r in validation]),
        gate.answer_features([r.answer for r in validation]),
    )
    scores, _ = fit_combination(gate, logits, validation, SafetyGateTrainingConfig())
    threshold = gate.config.threshold
    print("threshold", threshold, gate_metrics(scores, validation, threshold))
    gate.save_pretrained(args.out)


if __name__ == "__main__":
    main()
