"""Metrics against hand-computable cases."""

from __future__ import annotations

import pytest

from aligners.training import (
    auroc,
    chrf,
    classification_metrics,
    expected_calibration_error,
    is_degenerate,
    rouge_l,
)


def test_auroc_perfect_random_and_ties() -> None:
    assert auroc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert auroc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert auroc([0, 1], [0.5, 0.5]) == 0.5
    assert auroc([1, 1], [0.2, 0.3]) is None


def test_ece_and_classification_metrics() -> None:
    assert expected_calibration_error([1, 0], [1.0, 0.0]) == 0.0
    assert expected_calibration_error([0, 0], [0.95, 0.95]) == pytest.approx(0.95)
    m = classification_metrics([1, 1, 1, 0], [0.9, 0.8, 0.3, 0.2], train_labels=[0, 0, 0, 1])
    assert m["accuracy"] == 0.75
    assert m["majority_class"] == 0 and m["majority_baseline_accuracy"] == 0.25
    assert m["auroc"] == 1.0
    with pytest.raises(ValueError):
        classification_metrics([], [])


def test_text_similarity_and_degeneracy() -> None:
    assert chrf("the cat sat", "the cat sat") == pytest.approx(100.0)
    assert chrf("completely different", "the cat sat") < chrf("the cat sits", "the cat sat")
    assert rouge_l("a b c d", "a b x d") == pytest.approx(0.75)
    assert rouge_l("", "a") == 0.0
    assert is_degenerate("  ")
    assert is_degenerate("go on and on " * 10)
    assert not is_degenerate(
        "Paris is the capital of France, and it is known for the Eiffel Tower."
    )
