"""Should the gate's answer heads read the answer through the fine-tuned request model?

    python scripts/issue21/content_trunk.py TRAFFIC_DIR GATE_DIR [--max-length 128]

The shipped gate reads the question through MiniLM whose top layers were fine-tuned on labelled
requests, and the answer through the frozen MiniLM. That trunk learnt what a harmful request is
about ("kill a person" vs "kill a process"), which is also what harmful content is about, so the
``complies`` / ``content`` heads may read answers through it too. Candidates (heads fitted on
the train split, combination and flag threshold chosen on validation, as training does; the test
split is never read):

- ``shipped``: request head on the tuned trunk, answer heads on the frozen encoder;
- ``content-tuned``: the content head reads the answer through the tuned trunk;
- ``answers-tuned``: both answer heads read it (one encoder pass per text, as cheap as today);
- ``plus-tuned-content``: the shipped features plus a tuned-trunk content logit (5 features);
- with ``--joint``, ``joint-*``: the same on a trunk fine-tuned on requests *and* answers at once
  (one "is this text harmful?" head: harmful requests and compliant answers are positive), so
  the answer heads read a trunk that has seen answers from every training writer.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from aligners.backends.encoder import SentenceEncoder
from aligners.data.io import read_examples
from aligners.data.records import InspectorExample
from aligners.inspector.safety_gate import SafetyGateInspector, combine_features
from aligners.inspector.tuned_trunk import mean_pooled
from aligners.training.metrics import auroc
from aligners.training.safety_gate import (
    COMPLIANT,
    EmbeddingCache,
    SafetyGateTrainingConfig,
    _head_targets,
    by_family,
    fine_tune_request_model,
    fit_logistic,
    flag_threshold,
    gate_metrics,
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("traffic", type=Path)
    parser.add_argument("gate", type=Path)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--joint", action="store_true", help="Also fine-tune a joint trunk.")
    parser.add_argument("--out", type=Path, default=Path("/tmp/exp21/content_trunk.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = read_examples(args.traffic / "gate_rows.jsonl", on_error="raise").records
    train = [r for r in rows if r.metadata["split"] == "train"]
    validation = [r for r in rows if r.metadata["split"] == "validation"]
    lines = (args.traffic / "requests.jsonl").read_text(encoding="utf-8").splitlines()
    requests = [json.loads(line) for line in lines if line.strip()]
    targets = _head_targets(train, [r for r in requests if r["split"] == "train"])

    gate = SafetyGateInspector.from_pretrained(args.gate)
    frozen = EmbeddingCache(SentenceEncoder("minilm"), args.traffic / "embeddings.pt")
    model, tokenizer = gate._request_model()
    tuned = trunk_embedder(model, tokenizer, args.max_length)

    request_logit = (
        gate.request_features([r.question for r in validation])
        @ gate.heads["request"].weight.data.squeeze(0)
        + gate.heads["request"].bias.data
    )
    answers = [r.answer for r in validation]
    frozen_embed = lambda texts: frozen(texts, False)  # noqa: E731
    logits = {
        ("complies", "frozen"): logistic_head(targets["complies"], frozen_embed)(answers),
        ("content", "frozen"): logistic_head(targets["content"], frozen_embed)(answers),
        ("complies", "tuned"): logistic_head(targets["complies"], tuned)(answers),
        ("content", "tuned"): logistic_head(targets["content"], tuned)(answers),
    }

    def features(complies: str, content: str, extra: Any = None) -> Any:
        three = torch.stack(
            [request_logit, logits[("complies", complies)], logits[("content", content)]], -1
        )
        out = combine_features(three)
        return out if extra is None else torch.cat([out, extra.unsqueeze(-1)], -1)

    candidates = {
        "shipped": features("frozen", "frozen"),
        "content-tuned": features("frozen", "tuned"),
        "answers-tuned": features("tuned", "tuned"),
        "plus-tuned-content": features("frozen", "frozen", logits[("content", "tuned")]),
        "content-tuned-alone": None,
    }
    if args.joint:
        joint_model, joint_head = fine_tune_joint(targets, args.max_length)
        joint = trunk_embedder(joint_model, tokenizer, args.max_length)
        joint_request = (
            joint([r.question for r in validation]) @ joint_head.weight.data.squeeze(0)
            + joint_head.bias.data
        )
        joint_logits = {
            name: logistic_head(targets[name], joint)(answers) for name in ("complies", "content")
        }
        three = torch.stack([joint_request, joint_logits["complies"], joint_logits["content"]], -1)
        candidates["joint-all"] = combine_features(three)
        candidates["joint-request-only"] = combine_features(
            torch.stack(
                [joint_request, logits[("complies", "frozen")], logits[("content", "frozen")]], -1
            )
        )
        candidates["shipped-plus-joint-content"] = features(
            "frozen", "frozen", joint_logits["content"]
        )
        request_rows = [r for r in requests if r["split"] == "validation"]
        for label, logit_of in (
            ("shipped", lambda t: tuned(t) @ gate.heads["request"].weight.data.squeeze(0)),
            ("joint", lambda t: joint(t) @ joint_head.weight.data.squeeze(0)),
        ):
            harmful = logit_of([r["request"] for r in request_rows])
            fine = [int(r["label"]) for r in request_rows]
            value = auroc(fine, [-float(x) for x in harmful])
            print(f"request check {label}: validation AUROC {value:.4f}")
    labels = [int(r.metadata["kind"] == COMPLIANT) for r in validation]
    report = {}
    for name, feats in candidates.items():
        if feats is None:
            scores = [float(x) for x in 1 - torch.sigmoid(logits[("content", "tuned")])]
        else:
            w, b = fit_logistic(feats, labels, weight_decay=1e-4, balanced=False)
            scores = [float(x) for x in 1 - torch.sigmoid(feats @ w + b)]
        report[name] = summarise(name, scores, validation)
        report[name]["scores"] = scores
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


def logistic_head(pairs: Sequence[tuple[str, int]], embed: Any) -> Any:
    """A ``texts -> logits`` reader: a logistic head fitted on ``embed`` of ``pairs``' texts."""
    w, b = fit_logistic(embed([t for t, _ in pairs]), [y for _, y in pairs], weight_decay=1e-3)
    return lambda texts: embed(texts) @ w + b


def trunk_embedder(model: Any, tokenizer: Any, max_length: int) -> Any:
    """A cached ``texts -> (n, 384)`` reader of mean-pooled states of ``model``."""
    cache: dict[str, Any] = {}

    def embed(texts: Sequence[str]) -> Any:
        missing = sorted({t for t in texts if t not in cache}, key=len)
        if missing:
            pooled = mean_pooled(model, tokenizer, missing, max_length=max_length, dim=384)
            cache.update(zip(missing, pooled))
        return torch.stack([cache[t] for t in texts])

    return embed


def fine_tune_joint(targets: dict[str, list[tuple[str, int]]], max_length: int) -> Any:
    """A trunk fine-tuned on requests and answers at once (harmful request / harmful content)."""
    pairs = targets["request"] + targets["content"]
    config = SafetyGateTrainingConfig(request_trained_layers=2, request_max_length=max_length)
    model, head, _ = fine_tune_request_model(pairs, config)
    return model, head


def summarise(name: str, scores: list[float], rows: Sequence[InspectorExample]) -> dict[str, Any]:
    """Overall and per-family numbers at the shipped threshold rule (2 % good, 3 % alarming)."""
    threshold, _ = flag_threshold(scores, rows, 0.02, 0.03)
    overall = gate_metrics(scores, rows, threshold)
    for rate in (0.02, 0.05):
        alone, _ = flag_threshold(scores, rows, rate, None)
        at = gate_metrics(scores, rows, alone)
        print(
            f"   (good-flag rule alone, {rate:.0%}: threshold {alone} F1 {at['f1_harmful']} "
            f"recall {at['recall_harmful']} flags {at['flag_rate']})"
        )
    families = by_family(scores, rows, threshold)
    print(
        f"== {name}: threshold {threshold} AUROC {overall['auroc']} F1 {overall['f1_harmful']} "
        f"recall {overall['recall_harmful']} aligned flagged {overall['aligned_flag_rate']}"
    )
    for family, n in families.items():
        print(f"   {family:24s} n={n['n']:3d} auroc={n['auroc']} recall={n['recall_harmful']}")
    return {"threshold": threshold, "overall": overall, "families": families}


if __name__ == "__main__":
    main()
