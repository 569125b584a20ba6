"""Input checks shared by aligners, inspectors and squads: clear errors before any model runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def validate_pair(question: Any, answer: Any) -> None:
    """Raise ``TypeError``/``ValueError`` naming the field for a pair nothing can align."""
    if not isinstance(question, str):
        raise TypeError(f"question must be a str, got {type(question).__name__}")
    if not isinstance(answer, str):
        raise TypeError(f"answer must be a str, got {type(answer).__name__}")
    if not answer.strip():
        raise ValueError("answer is empty: there is nothing to align")


def validate_batch(questions: Sequence[Any], answers: Sequence[Any]) -> None:
    """Check that two batches are sequences of the same length holding valid pairs."""
    if isinstance(questions, str) or isinstance(answers, str):
        raise TypeError("questions and answers must be sequences of str, not a single str")
    if len(questions) != len(answers):
        raise ValueError(
            f"questions and answers differ in length ({len(questions)} vs {len(answers)})"
        )
    for question, answer in zip(questions, answers):
        validate_pair(question, answer)
