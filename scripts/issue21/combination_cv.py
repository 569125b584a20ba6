"""Gate combinations compared on out-of-fold head logits of train + validation (test never read).

    python scripts/issue21/combination_cv.py TRAFFIC_DIR [--logits OOF.pt]

The folds of ``joint_cv.py`` (each holds out two SmolLM2 style families and a quarter of the
other rows by question hash), except that a ``swapped`` row (a compliant answer given to a
harmless question) is held out with the row its answer came from: folded by its own question it
let the fold's gate train on its exact answer (swapped recall 0.69 then, 0.33 without the leak).
The fourth logit is the request head on each answer's lead (``harm_lead``). Per fold the
shipped design (``train_safety_gate --trunk-on-answers``: trunk fine-tuned on requests and
answers, answer heads through it) is
trained on the other folds and scores the fold's rows (about 4 minutes a fold on 2 CPU cores;
``--logits`` keeps them, and a rerun reads them; ``--content-head-from-reviews``: the content
head learns only reviewed harm, as the shipped gate's does). Each combination of
:data:`aligners.inspector.safety_gate.COMBINE_FEATURES` is then fitted out of fold, its threshold
set by the shipped rules (2 % of aligned answers, 3 % of good alarming ones) on the pooled
scores, and compared with the legacy four by a paired bootstrap over the rows.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch
from joint_cv import fold_of  # scripts/issue21, beside this file

from aligners.backends.encoder import SentenceEncoder
from aligners.data.io import read_examples
from aligners.inspector.safety_gate import (
    LEGACY_COMBINE_FEATURES,
    SafetyGateConfig,
    SafetyGateInspector,
    combine_features,
)
from aligners.training.metrics import auroc
from aligners.training.safety_gate import (
    COMPLIANT,
    SafetyGateTrainingConfig,
    _alarming_good,
    _fit_heads,
    _head_targets,
    by_family,
    fine_tune_request_model,
    fit_logistic,
    flag_threshold,
    gate_metrics,
)

CANDIDATES = {
    "legacy four": list(LEGACY_COMBINE_FEATURES),
    "legacy four + harm_either": [*LEGACY_COMBINE_FEATURES, "harm_either"],
    "harm_either": ["harm_either"],
    "request_and_complies + harm_either": ["request_and_complies", "harm_either"],
    "request + complies + harm_either": ["request", "complies", "harm_either"],
    "request + complies + harm_lead": ["request", "complies", "harm_lead"],
    "request + complies + harm_either + lead_request": [
        "request",
        "complies",
        "harm_either",
        "lead_request",
    ],
}


def out_of_fold_logits(
    traffic: Path, rows: list, fold: list[int], reviewed_head: bool
) -> torch.Tensor:
    """Each row's four head logits (the lead's last) from the gate trained without its fold."""
    lines = (traffic / "requests.jsonl").read_text(encoding="utf-8").splitlines()
    requests = [json.loads(line) for line in lines if line.strip()]
    requests = [r for r in requests if r["split"] in ("train", "validation")]
    encoder = SentenceEncoder("minilm")
    config = SafetyGateTrainingConfig(
        request_trained_layers=2, trunk_on_answers=True, content_head_from_reviews=reviewed_head
    )
    logits = torch.zeros(len(rows), 4)
    for k in range(4):
        train = [r for r, f in zip(rows, fold) if f != k]
        held = [i for i, f in enumerate(fold) if f == k]
        left_out = {rows[i].question for i in held}
        targets = _head_targets(train, [r for r in requests if r["request"] not in left_out])
        model, request_head, layers = fine_tune_request_model(
            targets["request"] + targets["content"], config, progress=False
        )
        heads = SafetyGateInspector.build_heads(encoder.dimension)
        heads["request"].load_state_dict(request_head.state_dict())
        gate_config = SafetyGateConfig(
            request_trained_layers=layers,
            answers_through_trunk=True,
            request_max_length=config.request_max_length,
            answer_max_length=config.answer_max_length,
        )
        gate = SafetyGateInspector(heads, gate_config, encoder=encoder, request_model=model)
        if reviewed_head:
            targets["content"] = _head_targets(train, [], content_from_reviews=True)["content"]
        _fit_heads(heads, targets, ("complies", "content"), gate.answer_features, config, print)
        answers = [rows[i].answer for i in held]
        logits[held] = gate.head_logits(
            gate.request_features([rows[i].question for i in held]),
            gate.answer_features(answers),
            gate.lead_features(answers),
        )
        print(f"fold {k}: {len(held)} rows", flush=True)
    return logits


def folds_with_sources(rows: list) -> list[int]:
    """:func:`fold_of` each row, a swapped row in the fold of the row its answer came from."""
    fold = [fold_of(r) for r in rows]
    source = {}
    for row, k in zip(rows, fold):
        if row.metadata["kind"] == COMPLIANT and row.metadata.get("writer") != "swapped":
            source.setdefault(row.answer, k)
    return [
        source.get(row.answer, k) if row.metadata.get("writer") == "swapped" else k
        for row, k in zip(rows, fold)
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("traffic", type=Path)
    parser.add_argument("--logits", type=Path, default=None)
    parser.add_argument("--content-head-from-reviews", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = read_examples(args.traffic / "gate_rows.jsonl", on_error="raise").records
    rows = [r for r in rows if r.metadata["split"] in ("train", "validation")]
    fold = folds_with_sources(rows)
    if args.logits is not None and args.logits.exists():
        logits = torch.load(args.logits)["logits"]
    else:
        logits = out_of_fold_logits(args.traffic, rows, fold, args.content_head_from_reviews)
        if args.logits is not None:
            torch.save({"logits": logits, "fold": fold, "done": 4}, args.logits)
    labels = [int(r.metadata["kind"] == COMPLIANT) for r in rows]
    alarming = sum(_alarming_good(r) for r in rows)
    print(f"{len(rows)} rows, {sum(labels)} compliant, {alarming} good alarming")
    scored = {}
    for name, names in CANDIDATES.items():
        features = combine_features(logits, names)
        scores = torch.zeros(len(rows))
        for k in range(4):
            fit = [i for i in range(len(rows)) if fold[i] != k]
            held = [i for i in range(len(rows)) if fold[i] == k]
            w, b = fit_logistic(
                features[fit], [labels[i] for i in fit], weight_decay=1e-4, balanced=False
            )
            scores[held] = 1 - torch.sigmoid(features[held] @ w + b)
        values = [float(v) for v in scores]
        threshold, _ = flag_threshold(values, rows, 0.02, 0.03)
        overall = gate_metrics(values, rows, threshold)
        swapped = by_family(values, rows, threshold).get("swapped", {})
        scored[name] = (values, threshold)
        print(
            f"{name:36s} threshold {threshold:.4f} AUROC {overall['auroc']} "
            f"F1 {overall['f1_harmful']} recall {overall['recall_harmful']} "
            f"aligned flagged {overall['aligned_flag_rate']} "
            f"swapped recall {swapped.get('recall_harmful')}"
        )
    harmful = [i for i in range(len(rows)) if labels[i]]
    aligned = [i for i in range(len(rows)) if not labels[i]]
    base, base_threshold = scored["legacy four"]
    for name, (values, threshold) in scored.items():
        if name == "legacy four":
            continue
        rng = random.Random(0)
        recall, area = [], []
        for _ in range(1000):
            pick = [rng.choice(harmful) for _ in harmful]
            recall.append(
                sum((values[i] < threshold) - (base[i] < base_threshold) for i in pick) / len(pick)
            )
            both = pick + [rng.choice(aligned) for _ in aligned]
            truth = [1 - labels[i] for i in both]
            area.append(
                auroc(truth, [values[i] for i in both]) - auroc(truth, [base[i] for i in both])
            )
        recall.sort()
        area.sort()
        print(
            f"{name} vs legacy four, 95 %: recall {recall[25]:+.3f}..{recall[975]:+.3f}, "
            f"AUROC {area[25]:+.4f}..{area[975]:+.4f}"
        )


if __name__ == "__main__":
    main()
