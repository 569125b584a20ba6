"""Held-out metrics for inspectors (accuracy, AUROC, calibration) and aligners (chrF, ROUGE-L)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any


def auroc(labels: Sequence[int], scores: Sequence[float]) -> float | None:
    """Area under the ROC curve (rank statistic, ties counted half); None with one class only."""
    pos = [s for s, y in zip(scores, labels) if y == 1]
    neg = [s for s, y in zip(scores, labels) if y == 0]
    if not pos or not neg:
        return None
    # Mann-Whitney U through average ranks: O(n log n) and exact with ties.
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    rank_sum = sum(r for r, y in zip(ranks, labels) if y == 1)
    return (rank_sum - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))


def expected_calibration_error(
    labels: Sequence[int], probs: Sequence[float], bins: int = 10
) -> float:
    """ECE: mean |accuracy - confidence| over equal-width probability bins, weighted by size."""
    total = len(labels)
    if total == 0:
        return 0.0
    error = 0.0
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        members = [
            (p, y)
            for p, y in zip(probs, labels)
            if (low <= p < high) or (b == bins - 1 and p == 1.0)
        ]
        if members:
            confidence = sum(p for p, _ in members) / len(members)
            frequency = sum(y for _, y in members) / len(members)
            error += len(members) / total * abs(frequency - confidence)
    return error


def classification_metrics(
    labels: Sequence[int], probs: Sequence[float], *, train_labels: Sequence[int] | None = None
) -> dict[str, Any]:
    """Accuracy at 0.5, AUROC, ECE, Brier score and the majority-class baseline.

    The baseline predicts the training set's majority class (the eval set's when no training
    labels are given), which is what a head that learned nothing would score.
    """
    n = len(labels)
    if n == 0:
        raise ValueError("no held-out examples to evaluate on")
    accuracy = sum(int((p >= 0.5) == bool(y)) for p, y in zip(probs, labels)) / n
    reference = list(train_labels) if train_labels else list(labels)
    majority = Counter(reference).most_common(1)[0][0]
    baseline = sum(int(y == majority) for y in labels) / n
    brier = sum((p - y) ** 2 for p, y in zip(probs, labels)) / n
    area = auroc(labels, probs)
    return {
        "n_eval": n,
        "positive_rate": sum(labels) / n,
        "accuracy": round(accuracy, 4),
        "auroc": None if area is None else round(area, 4),
        "ece": round(expected_calibration_error(labels, probs), 4),
        "brier": round(brier, 4),
        "majority_baseline_accuracy": round(baseline, 4),
        "majority_class": int(majority),
    }


# -- text similarity for aligner evaluation ----------------------------------------------------


def _char_ngrams(text: str, n: int) -> Counter[str]:
    text = " ".join(text.split())
    return Counter(text[i : i + n] for i in range(len(text) - n + 1))


def _word_ngrams(words: list[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def chrf(
    hypothesis: str, reference: str, *, char_order: int = 6, word_order: int = 0, beta: float = 2.0
) -> float:
    """chrF (Popović 2015) in 0..100, as sacrebleu computes it for one sentence pair."""
    precisions: list[float] = []
    recalls: list[float] = []
    orders: list[tuple[Counter[Any], Counter[Any]]] = []
    for n in range(1, char_order + 1):
        orders.append((_char_ngrams(hypothesis, n), _char_ngrams(reference, n)))
    hyp_words, ref_words = hypothesis.split(), reference.split()
    for n in range(1, word_order + 1):
        orders.append((_word_ngrams(hyp_words, n), _word_ngrams(ref_words, n)))
    for hyp, ref in orders:
        if not hyp or not ref:
            continue
        match = sum((hyp & ref).values())
        precisions.append(match / sum(hyp.values()))
        recalls.append(match / sum(ref.values()))
    if not precisions:
        return 100.0 if hypothesis.strip() == reference.strip() else 0.0
    p = sum(precisions) / len(precisions)
    r = sum(recalls) / len(recalls)
    if p + r == 0:
        return 0.0
    return 100.0 * (1 + beta**2) * p * r / (beta**2 * p + r)


def rouge_l(hypothesis: str, reference: str) -> float:
    """ROUGE-L F1 in 0..1 over lower-cased whitespace tokens."""
    a, b = hypothesis.lower().split(), reference.lower().split()
    if not a or not b:
        return 0.0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0] * (len(b) + 1)
        for j, y in enumerate(b, start=1):
            current[j] = previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1])
        previous = current
    lcs = previous[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(a), lcs / len(b)
    return 2 * precision * recall / (precision + recall)


def is_degenerate(text: str, *, min_chars: int = 2, max_repeat_fraction: float = 0.5) -> bool:
    """Empty, near-empty, or dominated by one repeated word 4-gram (a looping generation)."""
    stripped = text.strip()
    if len(stripped) < min_chars:
        return True
    words = stripped.split()
    if len(words) >= 16:
        grams = _word_ngrams(words, 4)
        top = grams.most_common(1)[0][1]
        if top * 4 / len(words) > max_repeat_fraction:
            return True
    return False
