"""Training the ``grounded`` cross-encoder: P(claim supported by passage) from MiniLM read as
``[CLS] passage [SEP] claim [SEP]`` (the CrossEncoderConfig format, one head ``grounded``).

The pairs come from :mod:`aligners.data.grounding` with their split: ``train`` is trained on
(subsampled to ``max_train_pairs`` so a 2-core CPU finishes in minutes), ``validation``
calibrates the head (Platt) and chooses the shipped threshold, ``heldout`` is only measured.
The sentence combiner is fitted on the ``train`` answers' labelled sentences. Answer-level
numbers come from :class:`GroundedInspector` itself (each sentence's combined score; the
answer's least supported sentence).
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
from aligners.inspector.grounded import (
    SENTENCE_FEATURES,
    GroundedInspector,
    GroundingSettings,
    SupportCombiner,
)
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
    keep_sources: list[str] = Field(
        default_factory=list,
        description="Sources whose train pairs are all trained on; the others fill the rest of "
        "max_train_pairs (small human-labelled sets are not thinned out by the large ones).",
    )
    max_validation_pairs: int | None = Field(default=2000, gt=0)
    save_steps: int = Field(default=100, ge=0, description="Checkpoint every N steps (0: never).")
    chunk_words: int = Field(default=60, gt=0, description="Inspector: words per window.")
    top_passages: int = Field(default=2, ge=1, description="Inspector: windows read per claim.")
    one_window_coverage: float | None = Field(
        default=1.0,
        ge=0.0,
        le=1.0,
        description="Inspector: a claim whose best window holds this share of its content words "
        "is read against that window alone.",
    )
    missing_cap: float | None = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="Inspector: score cap of a sentence with numbers or names no passage holds.",
    )
    check_names: bool = Field(default=True, description="Inspector: names count for the cap.")
    quantized: bool = Field(
        default=True, description="Inspector: the encoder's linear layers run in int8 (CPU)."
    )
    combiner: bool = Field(
        default=True,
        description="Fit a SupportCombiner (logistic regression over the model's logit and the "
        "lexical evidence) on the train answers' labelled sentences; it replaces missing_cap.",
    )
    combiner_l2: float = Field(default=1.0, ge=0.0, description="L2 penalty of the combiner.")
    unchanged_target: float = Field(
        default=0.97,
        ge=0.0,
        le=1.0,
        description="Repair target on the validation answers: grounded answers left unchanged.",
    )
    kept_target: float = Field(
        default=0.95,
        ge=0.0,
        le=1.0,
        description="Repair target on the validation answers: supported sentences kept.",
    )
    seed: int = 0


def _subsample(
    pairs: Sequence[GroundingPair],
    limit: int | None,
    seed: int,
    keep_sources: Sequence[str] = (),
) -> list[GroundingPair]:
    """At most ``limit`` pairs, keeping each supported claim with its unsupported twin (they
    are written one after the other) so labels and lengths stay balanced. Pairs of
    ``keep_sources`` are all kept (in front) and count towards ``limit``."""
    kept = [p for p in pairs if p.source in keep_sources]
    rest = [p for p in pairs if p.source not in keep_sources]
    twins = [list(rest[i : i + 2]) for i in range(0, len(rest), 2)]
    room = None if limit is None else max(0, limit - len(kept))
    if room is not None and len(rest) > room:
        twins = random.Random(seed).sample(twins, k=room // 2)
    return kept + [p for twin in twins for p in twin]


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


def labelled_evidence(
    answers: Sequence[GroundedAnswer], inspector: GroundedInspector
) -> list[tuple[int, dict[str, float], int | None]]:
    """Per scored sentence of ``answers``: (answer index, its evidence, its label where known:
    the row's sentence labels, else 1 for every sentence of a grounded answer)."""
    rows = inspector.evidence(
        [a.question for a in answers], [a.answer for a in answers], [a.passages for a in answers]
    )
    found = []
    for index, (answer, sentences) in enumerate(zip(answers, rows)):
        labels = answer.sentence_labels
        if labels is not None and len(labels) != len(sentences):
            labels = None
        if labels is None and answer.label == 1:
            labels = [1] * len(sentences)
        for position, (_, _, evidence, _) in enumerate(sentences):
            if evidence is not None:
                found.append((index, evidence, None if labels is None else labels[position]))
    return found


def fit_logistic(
    rows: Sequence[Sequence[float]], labels: Sequence[int], l2: float = 1.0, steps: int = 50
) -> tuple[list[float], float]:
    """Weights and bias of an L2-penalised logistic regression (Newton's method; the bias is
    not penalised)."""
    import numpy as np

    x = np.hstack([np.asarray(rows, dtype=float), np.ones((len(rows), 1))])
    y = np.asarray(labels, dtype=float)
    penalty = l2 * np.diag([1.0] * (x.shape[1] - 1) + [0.0])
    w = np.zeros(x.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        gradient = x.T @ (p - y) + penalty @ w
        hessian = x.T @ (x * (p * (1 - p))[:, None]) + penalty + 1e-9 * np.eye(x.shape[1])
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    return [round(float(v), 6) for v in w[:-1]], round(float(w[-1]), 6)


def fit_combiner(
    answers: Sequence[GroundedAnswer], inspector: GroundedInspector, l2: float = 1.0
) -> SupportCombiner:
    """A :class:`SupportCombiner` over every sentence feature, fitted on the labelled sentences
    of ``answers`` (the train split's)."""
    labelled = [(e, y) for _, e, y in labelled_evidence(answers, inspector) if y is not None]
    if len({y for _, y in labelled}) < 2:
        raise ValueError("the combiner needs supported and unsupported labelled sentences")
    features = list(SENTENCE_FEATURES)
    weights, bias = fit_logistic(
        [[e[f] for f in features] for e, _ in labelled], [y for _, y in labelled], l2
    )
    return SupportCombiner(
        features=features,
        weights=weights,
        bias=bias,
        fitted_on=f"{len(labelled)} labelled sentences of {len(answers)} train answers",
    )


def repair_rates(
    answers: Sequence[GroundedAnswer], results: Sequence[dict[str, Any]], threshold: float
) -> dict[str, float | None]:
    """What the drop-only repair would do at ``threshold``: the share of grounded answers left
    unchanged (no sentence under it) and of labelled supported sentences kept."""
    grounded = [r for a, r in zip(answers, results) if a.label == 1]
    unchanged = [all(s >= threshold for _, s in r["sentences"]) for r in grounded]
    kept = [s >= threshold for r in results for y, s in r["sentences"] if y == 1]
    return {
        "grounded_unchanged": round(sum(unchanged) / len(unchanged), 4) if unchanged else None,
        "supported_kept": round(sum(kept) / len(kept), 4) if kept else None,
    }


def repair_aware_threshold(
    answers: Sequence[GroundedAnswer],
    results: Sequence[dict[str, Any]],
    unchanged_target: float,
    kept_target: float,
) -> tuple[float, bool]:
    """The threshold with the best balanced accuracy among those at which the drop-only repair
    meets its targets (grounded answers unchanged, supported sentences kept); ties go to the
    threshold nearest 0.5. Returns it and whether the targets could be met (when not: the
    best balanced accuracy over all thresholds)."""
    labels = [a.label for a in answers]
    scores = [r["score"] for r in results]
    candidates = sorted({round(s, 3) for s in scores} | {0.5})

    def meets(t: float) -> bool:
        rates = repair_rates(answers, results, t)
        unchanged, kept = rates["grounded_unchanged"], rates["supported_kept"]
        return (unchanged is None or unchanged >= unchanged_target) and (
            kept is None or kept >= kept_target
        )

    allowed = [t for t in candidates if meets(t)]
    if not allowed:
        return best_balanced_threshold(labels, scores), False
    best = max(
        allowed, key=lambda t: (round(balanced_accuracy(labels, scores, t), 9), -abs(t - 0.5))
    )
    return round(min(0.99, max(0.01, best)), 3), True


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
    """Train, calibrate (validation split), then :func:`fit_grounded_settings`: the combiner
    (train answers), the threshold (validation answers, else validation pairs) and the held-out
    measures. Saves the directory with one head ``grounded``; returns the metrics also written
    to ``metrics.json``."""
    config = config or GroundedTrainingConfig()
    train = _subsample(
        [p for p in pairs if p.split == "train"],
        config.max_train_pairs,
        config.seed,
        config.keep_sources,
    )
    validation = _subsample(
        [p for p in pairs if p.split == "validation"], config.max_validation_pairs, config.seed
    )
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
    extra = {"n_train": len(train), "train_seconds": round(time.perf_counter() - started, 1)}
    return fit_grounded_settings(output, pairs, config, answers=answers, extra=extra)


def fit_grounded_settings(
    directory: str | Path,
    pairs: Sequence[GroundingPair],
    config: GroundedTrainingConfig | None = None,
    *,
    answers: Sequence[GroundedAnswer] = (),
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything after the cross-encoder's weights, on a trained directory: how answers and
    sources are cut (:class:`GroundingSettings`), the combiner fitted on the train answers'
    labelled sentences, the threshold with the best balanced accuracy on the validation answers
    (with the repair rates there), and the held-out measures. Rewrites its config and
    ``metrics.json``; returns the metrics."""
    config = config or GroundedTrainingConfig()
    output = Path(directory).expanduser()
    validation = _subsample(
        [p for p in pairs if p.split == "validation"], config.max_validation_pairs, config.seed
    )
    heldout = [p for p in pairs if p.split == "heldout"]
    ce_config = read_cross_encoder_config(output)
    settings = GroundingSettings(
        chunk_words=config.chunk_words,
        top_passages=config.top_passages,
        one_window_coverage=config.one_window_coverage,
        missing_cap=None if config.combiner else config.missing_cap,
        check_names=config.check_names,
        quantized=config.quantized,
    )
    train_answers = [a for a in answers if a.split == "train"]
    combiner = None
    if config.combiner and train_answers:
        plain = GroundedInspector.from_pretrained(output)
        plain.settings = settings
        plain.trunk = type(plain.trunk)(
            plain.trunk.config, plain.trunk.directory, quantized=settings.quantized
        )
        try:
            combiner = fit_combiner(train_answers, plain, config.combiner_l2)
        except ValueError:  # one class only among the labelled sentences: nothing to fit
            combiner = None
    if combiner is not None:
        settings = settings.model_copy(update={"combiner": combiner})
    else:  # no combiner: the model's score, capped where the sentence names what is missing
        settings = settings.model_copy(update={"missing_cap": config.missing_cap})
    # How the inspector cuts answers and sources, stored beside the weights (GroundingSettings).
    ce_config = CrossEncoderConfig.model_validate(
        ce_config.model_dump() | {"grounding": settings.model_dump()}
    )
    write_cross_encoder_config(output, ce_config)
    score = inspector_scorer(output)
    valid_answers = [a for a in answers if a.split == "validation"]
    metrics: dict[str, Any] = dict(extra or {})
    if valid_answers:
        results = score_answers(valid_answers, GroundedInspector.from_pretrained(output))
        threshold, met = repair_aware_threshold(
            valid_answers, results, config.unchanged_target, config.kept_target
        )
        chosen_on = (
            "validation answers: best balanced accuracy where the repair keeps "
            f">= {config.unchanged_target:.0%} of grounded answers unchanged and "
            f">= {config.kept_target:.0%} of supported sentences"
            if met
            else "validation answers: best balanced accuracy (the repair targets were not met "
            "at any threshold)"
        )
    else:
        chosen_on = "validation pairs"
        probs = score([p.passage for p in validation], [p.claim for p in validation])
        threshold = best_balanced_threshold([p.label for p in validation], probs)
    ce_config.thresholds[GROUNDED] = threshold
    validation_probs = score([p.passage for p in validation], [p.claim for p in validation])
    metrics |= {
        "n_validation": len(validation),
        "threshold_chosen_on": chosen_on,
        "validation": classification_metrics([p.label for p in validation], validation_probs),
    }
    if settings.combiner is not None:
        metrics["combiner"] = settings.combiner.model_dump()
    if valid_answers:
        valid_scores = [r["score"] for r in results]
        metrics["validation_answers"] = answer_metrics(valid_answers, valid_scores, threshold)
        metrics["validation_answers"] |= repair_rates(valid_answers, results, threshold)
        known = [(y, s) for r in results for y, s in r["sentences"] if y is not None]
        area = auroc([y for y, _ in known], [s for _, s in known]) if known else None
        metrics["validation_answers"]["sentence_auroc"] = None if area is None else round(area, 4)
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
    "fit_combiner",
    "fit_grounded_settings",
    "fit_logistic",
    "labelled_evidence",
    "latency_answer",
    "measure_latency",
    "repair_aware_threshold",
    "repair_rates",
    "score_answers",
    "train_grounded",
]
