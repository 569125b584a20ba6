"""Training the ``grounded`` cross-encoder: P(claim supported by passage) from MiniLM read as
``[CLS] passage [SEP] claim [SEP]`` (the CrossEncoderConfig format, one head ``grounded``).

The pairs come from :mod:`aligners.data.grounding` with their split: ``train`` is trained on
(subsampled to ``max_train_pairs`` so a 2-core CPU finishes in minutes), ``validation``
calibrates the head (Platt) and chooses the shipped threshold, ``heldout`` is only measured.
Answer-level numbers come from :class:`GroundedInspector` itself (each sentence's best
supported source window; the answer's least supported sentence).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from aligners.data.grounding import GROUNDED, GroundedAnswer, GroundingPair
from aligners.inspector.cross_encoder import (
    CrossEncoderConfig,
    read_cross_encoder_config,
    write_cross_encoder_config,
)
from aligners.inspector.grounded import GroundedInspector, GroundingSettings
from aligners.training.cross_encoder import (
    METRICS_FILE,
    CrossEncoderTrainingConfig,
    train_cross_encoder,
)
from aligners.training.metrics import auroc, classification_metrics

#: Scores (passage, claim) pairs: P(supported) per pair.
PairScorer = Callable[[Sequence[str], Sequence[str]], list[float]]


class GroundedTrainingConfig(BaseModel):
    """Settings for :func:`train_grounded`; the CLI exposes each as a flag."""

    model_config = ConfigDict(extra="forbid")

    encoder: str = "minilm"
    trained_layers: int = Field(default=2, ge=1, description="Top MiniLM layers fine-tuned.")
    max_length: int = Field(default=160, gt=16, description="Tokens of passage + claim.")
    epochs: float = Field(default=2.0, gt=0)
    learning_rate: float = Field(default=1e-4, gt=0)
    head_learning_rate: float = Field(default=1e-3, gt=0)
    batch_size: int = Field(default=32, gt=0)
    max_train_pairs: int | None = Field(
        default=12000, gt=0, description="Subsample the training pairs (twins kept together)."
    )
    max_validation_pairs: int | None = Field(default=2000, gt=0)
    save_steps: int = Field(default=100, ge=0, description="Checkpoint every N steps (0: never).")
    chunk_words: int = Field(default=60, gt=0, description="Inspector: words per window.")
    top_passages: int = Field(default=2, ge=1, description="Inspector: windows read per claim.")
    missing_cap: float | None = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="Inspector: score cap of a sentence with numbers or names no passage holds.",
    )
    check_names: bool = Field(default=True, description="Inspector: names count for the cap.")
    seed: int = 0


def _subsample(pairs: Sequence[GroundingPair], limit: int | None, seed: int) -> list[GroundingPair]:
    """At most ``limit`` pairs, keeping each supported claim with its unsupported twin (they
    are written one after the other) so labels and lengths stay balanced."""
    twins = [list(pairs[i : i + 2]) for i in range(0, len(pairs), 2)]
    if limit is not None and len(pairs) > limit:
        twins = random.Random(seed).sample(twins, k=limit // 2)
    return [p for twin in twins for p in twin]


def best_balanced_threshold(labels: Sequence[int], scores: Sequence[float]) -> float:
    """The threshold on P(supported) (score >= threshold passes) with the best balanced
    accuracy; ties go to the threshold nearest 0.5."""
    candidates = sorted({round(s, 3) for s in scores} | {0.5})
    best, best_value = 0.5, -1.0
    for t in candidates:
        value = balanced_accuracy(labels, scores, t)
        if value > best_value + 1e-9 or (
            abs(value - best_value) <= 1e-9 and abs(t - 0.5) < abs(best - 0.5)
        ):
            best, best_value = t, value
    return round(min(0.99, max(0.01, best)), 3)


def balanced_accuracy(labels: Sequence[int], scores: Sequence[float], threshold: float) -> float:
    """Mean of the recall of supported (score >= threshold) and unsupported rows."""
    pos = [s for s, y in zip(scores, labels) if y == 1]
    neg = [s for s, y in zip(scores, labels) if y == 0]
    if not pos or not neg:
        return float("nan")
    tpr = sum(s >= threshold for s in pos) / len(pos)
    tnr = sum(s < threshold for s in neg) / len(neg)
    return (tpr + tnr) / 2


def score_answers(
    answers: Sequence[GroundedAnswer], inspector: GroundedInspector
) -> list[dict[str, Any]]:
    """Answer scores from the grounded inspector (its least supported sentence) and, per scored
    sentence, (label where known, score): labels come from the rows' unsupported sentences."""
    reports = inspector.verify(
        [a.question for a in answers],
        [a.answer for a in answers],
        [tuple(a.passages) for a in answers],
    )
    results = []
    for answer, report in zip(answers, reports):
        row = answer.to_row()
        bad = {" ".join(u.split()) for u in row["unsupported"] or []}
        known = row["unsupported"] is not None
        sentences = [
            (int(" ".join(s.text.split()) not in bad) if known else None, float(s.score))
            for s in report.sentences
            if s.score is not None
        ]
        results.append({"score": report.score, "sentences": sentences})
    return results


def answer_metrics(
    answers: Sequence[GroundedAnswer], scores: Sequence[float], threshold: float
) -> dict[str, Any]:
    """Balanced accuracy at ``threshold``, AUROC, and the AUROC of answer length as the score
    (a length-only baseline: near 0.5 when length cannot tell the labels apart)."""
    labels = [a.label for a in answers]
    area = auroc(labels, scores)
    length_area = auroc(labels, [float(len(a.answer)) for a in answers])
    return {
        "n": len(answers),
        "balanced_accuracy": round(balanced_accuracy(labels, scores, threshold), 4),
        "auroc": None if area is None else round(area, 4),
        "length_auroc": None if length_area is None else round(length_area, 4),
    }


def inspector_scorer(directory: str | Path) -> PairScorer:
    """Calibrated P(supported) of (passage, claim) pairs from a saved grounded directory."""
    return GroundedInspector.from_pretrained(directory).support


def evaluate_grounded(
    directory: str | Path,
    pairs: Sequence[GroundingPair],
    answers: Sequence[GroundedAnswer] = (),
    *,
    threshold: float | None = None,
) -> dict[str, Any]:
    """Pair-level AUROC per source, and answer-level balanced accuracy, AUROC and the length
    baseline per source, of a saved grounded model on the given rows."""
    config = read_cross_encoder_config(Path(directory))
    if threshold is None:
        threshold = config.thresholds.get(GROUNDED, 0.5)
    score = inspector_scorer(directory)
    report: dict[str, Any] = {"threshold": threshold, "pairs": {}, "answers": {}}
    pair_scores = score([p.passage for p in pairs], [p.claim for p in pairs]) if pairs else []
    for source in sorted({p.source for p in pairs}) + ["all"]:
        rows = [(p, s) for p, s in zip(pairs, pair_scores) if source in ("all", p.source)]
        labels = [p.label for p, _ in rows]
        area = auroc(labels, [s for _, s in rows])
        report["pairs"][source] = {
            "n": len(rows),
            "auroc": None if area is None else round(area, 4),
            "balanced_accuracy": round(
                balanced_accuracy(labels, [s for _, s in rows], threshold), 4
            ),
        }
    inspector = GroundedInspector.from_pretrained(directory)
    answer_scores = score_answers(answers, inspector) if answers else []
    for source in sorted({a.source for a in answers}) + ["all"]:
        chosen = [(a, r) for a, r in zip(answers, answer_scores) if source in ("all", a.source)]
        report["answers"][source] = answer_metrics(
            [a for a, _ in chosen], [r["score"] for _, r in chosen], threshold
        )
        known = [(y, s) for _, r in chosen for y, s in r["sentences"] if y is not None]
        if known:
            area = auroc([y for y, _ in known], [s for _, s in known])
            report["answers"][source]["sentence_auroc"] = None if area is None else round(area, 4)
    return report


def train_grounded(
    pairs: Sequence[GroundingPair],
    output_dir: str | Path,
    config: GroundedTrainingConfig | None = None,
    *,
    answers: Sequence[GroundedAnswer] = (),
    progress: bool = True,
    max_steps: int = -1,
    resume: bool = False,
) -> dict[str, Any]:
    """Train, calibrate (validation split), choose the threshold (validation answers, else
    validation pairs), measure on the held-out split, and save the directory with one head
    ``grounded``. Returns the metrics also written to ``metrics.json``."""
    config = config or GroundedTrainingConfig()
    train = _subsample(
        [p for p in pairs if p.split == "train"], config.max_train_pairs, config.seed
    )
    validation = _subsample(
        [p for p in pairs if p.split == "validation"], config.max_validation_pairs, config.seed
    )
    heldout = [p for p in pairs if p.split == "heldout"]
    if not train or not validation:
        raise ValueError("grounding pairs need train and validation rows (see their 'split')")
    started = time.perf_counter()
    inner = CrossEncoderTrainingConfig(
        encoder=config.encoder,
        criterion=GROUNDED,
        trained_layers=config.trained_layers,
        max_length=config.max_length,
        epochs=config.epochs,
        learning_rate=config.learning_rate,
        head_learning_rate=config.head_learning_rate,
        batch_size=config.batch_size,
        seed=config.seed,
    )
    output = Path(output_dir).expanduser()
    train_cross_encoder(
        [p.to_example() for p in train],
        output,
        inner,
        calibration=[p.to_example() for p in validation],
        progress=progress,
        max_steps=max_steps,
        save_steps=config.save_steps,
        resume=resume,
    )
    train_seconds = time.perf_counter() - started
    ce_config = read_cross_encoder_config(output)
    # How the inspector cuts answers and sources, stored beside the weights (GroundingSettings).
    settings = GroundingSettings(
        chunk_words=config.chunk_words,
        top_passages=config.top_passages,
        missing_cap=config.missing_cap,
        check_names=config.check_names,
    )
    ce_config = CrossEncoderConfig.model_validate(
        ce_config.model_dump() | {"grounding": settings.model_dump()}
    )
    write_cross_encoder_config(output, ce_config)
    score = inspector_scorer(output)
    valid_answers = [a for a in answers if a.split == "validation"]
    if valid_answers:
        results = score_answers(valid_answers, GroundedInspector.from_pretrained(output))
        chosen_on = "validation answers"
        threshold = best_balanced_threshold(
            [a.label for a in valid_answers], [r["score"] for r in results]
        )
    else:
        chosen_on = "validation pairs"
        probs = score([p.passage for p in validation], [p.claim for p in validation])
        threshold = best_balanced_threshold([p.label for p in validation], probs)
    ce_config.thresholds[GROUNDED] = threshold
    validation_probs = score([p.passage for p in validation], [p.claim for p in validation])
    metrics: dict[str, Any] = {
        "n_train": len(train),
        "n_validation": len(validation),
        "train_seconds": round(train_seconds, 1),
        "threshold_chosen_on": chosen_on,
        "validation": classification_metrics([p.label for p in validation], validation_probs),
    }
    if valid_answers:
        valid_scores = [r["score"] for r in results]
        metrics["validation_answers"] = answer_metrics(valid_answers, valid_scores, threshold)
    write_cross_encoder_config(output, ce_config)
    held_answers = [a for a in answers if a.split == "heldout"]
    if heldout or held_answers:
        metrics["heldout"] = evaluate_grounded(output, heldout, held_answers, threshold=threshold)
    ce_config.metrics = {GROUNDED: metrics}
    write_cross_encoder_config(output, ce_config)
    record = {"kind": "cross-encoder", "metrics": metrics, "training": config.model_dump()}
    (output / METRICS_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return metrics


def measure_latency(
    directory: str | Path, answer: GroundedAnswer, *, repeats: int = 20
) -> dict[str, float]:
    """Milliseconds for the grounded inspector to score one answer (model loaded and warmed
    first): median and 90th percentile of ``repeats`` runs."""
    inspector = GroundedInspector.from_pretrained(directory)
    args = ([answer.question], [answer.answer], [tuple(answer.passages)])
    inspector.verify(*args)  # warm-up: load, first-call costs
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        inspector.verify(*args)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {
        "p50_ms": round(times[len(times) // 2], 1),
        "p90_ms": round(times[min(len(times) - 1, math.ceil(0.9 * len(times)) - 1)], 1),
        "runs": repeats,
    }


def latency_answer(
    answers: Sequence[GroundedAnswer], directory: str | Path, *, tokens: int = 1000
) -> tuple[GroundedAnswer, int]:
    """A 5-sentence answer from ``answers`` with its passages topped up by other rows'
    passages to about ``tokens`` tokens of context (the latency case); returns it and its
    context size in tokens."""
    from transformers import AutoTokenizer

    from aligners.backends.models import resolve_model

    config = read_cross_encoder_config(Path(directory))
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(config.encoder).path)

    def count(texts: Sequence[str]) -> int:
        return sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)

    five = [a for a in answers if a.sentence_labels and len(a.sentence_labels) == 5]
    if not five:
        raise ValueError("no 5-sentence answer rows to time")
    answer = five[0]
    passages = list(answer.passages)
    others = [p for a in answers for p in a.passages if p not in passages]
    while count(passages) < tokens and others:
        passages.append(others.pop(0))
    # Trim the last passage so the context lands near ``tokens``.
    excess = count(passages) - tokens
    if excess > 0:
        ids = tokenizer(passages[-1], add_special_tokens=False)["input_ids"]
        passages[-1] = str(tokenizer.decode(ids[: max(1, len(ids) - excess)]))
    timed = answer.model_copy(update={"passages": passages})
    return timed, count(passages)


__all__ = [
    "GroundedTrainingConfig",
    "answer_metrics",
    "balanced_accuracy",
    "best_balanced_threshold",
    "evaluate_grounded",
    "latency_answer",
    "measure_latency",
    "score_answers",
    "train_grounded",
]
