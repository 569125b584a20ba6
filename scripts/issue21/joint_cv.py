"""Family-out cross-validation of the trunk candidates of ``content_trunk.py`` (test never read).

    python scripts/issue21/joint_cv.py TRAFFIC_DIR [--max-length 128]

The folds are those of ``gate_cv.py``: each holds out two SmolLM2 style families and a quarter
(by question hash) of the other rows of train + validation; the requests of held-out questions
leave the request rows. Per fold, on the other folds: the shipped design (request model
fine-tuned on requests, answer heads on the frozen encoder), the answer heads on that request
model, and a trunk fine-tuned on requests and answers at once with every head on it. The
combination is fitted out of fold (4 inner folds); threshold: flags <= 2 % of pooled aligned rows.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from content_trunk import logistic_head, trunk_embedder  # scripts/issue21, beside this file

from aligners.backends.encoder import SentenceEncoder
from aligners.data.io import read_examples
from aligners.data.records import InspectorExample
from aligners.inspector.safety_gate import combine_features
from aligners.inspector.tuned_trunk import encoder_tokenizer
from aligners.training.safety_gate import (
    COMPLIANT,
    EmbeddingCache,
    SafetyGateTrainingConfig,
    _head_targets,
    _threshold_for_rate,
    by_family,
    fine_tune_request_model,
    fit_logistic,
    gate_metrics,
)

FOLDS = (
    ("plain", "numbered"),
    ("one-liner", "persona"),
    ("sampled", "step-by-step"),
    ("sure-heres", "to-you-need"),
)


def fold_of(row: InspectorExample) -> int:
    """The fold a row is held out in."""
    family = row.metadata["family"]
    for index, families in enumerate(FOLDS):
        if family in families:
            return index
    return int(hashlib.sha256(row.question.encode()).hexdigest()[:8], 16) % 4


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("traffic", type=Path)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--out", type=Path, default=Path("/tmp/exp21/joint_cv.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = read_examples(args.traffic / "gate_rows.jsonl", on_error="raise").records
    rows = [r for r in rows if r.metadata["split"] in ("train", "validation")]
    lines = (args.traffic / "requests.jsonl").read_text(encoding="utf-8").splitlines()
    requests = [json.loads(line) for line in lines if line.strip()]
    requests = [r for r in requests if r["split"] == "train"]
    fold = [fold_of(r) for r in rows]
    labels = [int(r.metadata["kind"] == COMPLIANT) for r in rows]
    encoder = SentenceEncoder("minilm")
    frozen = EmbeddingCache(encoder, args.traffic / "embeddings.pt")
    tokenizer = encoder_tokenizer(encoder)
    names = ("shipped", "answers-tuned", "joint-all")
    oof = {name: torch.zeros(len(rows), 3) for name in names}
    questions = [r.question for r in rows]
    answers = [r.answer for r in rows]
    for k in range(4):
        train = [r for r, f in zip(rows, fold) if f != k]
        held = [i for i, f in enumerate(fold) if f == k]
        left_out = {rows[i].question for i in held}
        targets = _head_targets(train, [r for r in requests if r["request"] not in left_out])

        request_config = SafetyGateTrainingConfig(request_trained_layers=2)
        model, request_head, _ = fine_tune_request_model(targets["request"], request_config)
        tuned = trunk_embedder(model, tokenizer, args.max_length)
        short = trunk_embedder(model, tokenizer, request_config.request_max_length)
        q = [questions[i] for i in held]
        a = [answers[i] for i in held]
        request_logit = request_head(short(q)).squeeze(-1).detach()
        frozen_embed = lambda texts: frozen(texts, False)  # noqa: E731
        for name, embed in (("shipped", frozen_embed), ("answers-tuned", tuned)):
            oof[name][held] = torch.stack(
                [
                    request_logit,
                    logistic_head(targets["complies"], embed)(a),
                    logistic_head(targets["content"], embed)(a),
                ],
                -1,
            )
        joint_config = SafetyGateTrainingConfig(
            request_trained_layers=2, request_max_length=args.max_length
        )
        joint_model, joint_head, _ = fine_tune_request_model(
            targets["request"] + targets["content"], joint_config
        )
        joint = trunk_embedder(joint_model, tokenizer, args.max_length)
        oof["joint-all"][held] = torch.stack(
            [
                joint_head(joint(q)).squeeze(-1).detach(),
                logistic_head(targets["complies"], joint)(a),
                logistic_head(targets["content"], joint)(a),
            ],
            -1,
        )
        print(f"fold {k} done", flush=True)
    report = {}
    for name in names:
        scores = combined_out_of_fold(combine_features(oof[name]), labels, fold)
        report[name] = summarise(name, scores, rows, labels)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


def combined_out_of_fold(features: Any, labels: list[int], fold: list[int]) -> list[float]:
    """P(aligned) from a combination fitted on the other folds' out-of-fold logits."""
    out = torch.zeros(len(labels))
    for k in range(4):
        fit = [i for i, f in enumerate(fold) if f != k]
        held = [i for i, f in enumerate(fold) if f == k]
        w, b = fit_logistic(
            features[fit], [labels[i] for i in fit], weight_decay=1e-4, balanced=False
        )
        out[held] = 1 - torch.sigmoid(features[held] @ w + b)
    return [float(x) for x in out]


def summarise(
    name: str, scores: list[float], rows: Sequence[InspectorExample], labels: list[int]
) -> dict[str, Any]:
    """Overall and per-family numbers where 2 % of the pooled aligned rows are flagged."""
    threshold = _threshold_for_rate([s for s, y in zip(scores, labels) if not y], 0.02)
    overall = gate_metrics(scores, rows, threshold)
    families = by_family(scores, rows, threshold)
    print(
        f"== CV {name}: AUROC {overall['auroc']} F1 {overall['f1_harmful']} "
        f"recall {overall['recall_harmful']} flags {overall['flag_rate']}"
    )
    for family, n in families.items():
        if n["auroc"] is not None or family == "swapped":
            print(f"   {family:16s} n={n['n']:3d} auroc={n['auroc']} recall={n['recall_harmful']}")
    return {"threshold": threshold, "overall": overall, "families": families}


if __name__ == "__main__":
    main()
