"""Trainers: aligner SFT (full or LoRA) and inspectors (encoder head or sequence classifier)."""

from aligners.training.inspector import (
    EmbeddingCache,
    InspectorTrainingConfig,
    split_examples,
    train_inspector,
)
from aligners.training.metrics import (
    auroc,
    chrf,
    classification_metrics,
    expected_calibration_error,
    is_degenerate,
    rouge_l,
)

__all__ = [
    "EmbeddingCache",
    "InspectorTrainingConfig",
    "auroc",
    "chrf",
    "classification_metrics",
    "expected_calibration_error",
    "is_degenerate",
    "rouge_l",
    "split_examples",
    "train_inspector",
]
