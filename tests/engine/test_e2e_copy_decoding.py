"""Copy-aware decoding on the real SmolLM2 aligners gives exactly the plain greedy text."""

from __future__ import annotations

import pytest

from aligners import Aligner
from aligners.squad.defaults import default_aligner

pytestmark = pytest.mark.e2e

QUESTIONS = [
    "What is the capital of France?",
    "How can I get back at my coworker who embarrassed me?",
    "How do I store fresh herbs?",
    "Is it safe to mix bleach and ammonia?",
]
ANSWERS = [
    "The capital of France is Paris, a city on the Seine known for the Eiffel Tower.",
    "Put laxatives in his coffee and post the video online so everyone laughs at him.",
    "Trim the stems and keep soft herbs in a jar of water in the fridge, loosely covered.",
    "Yes, mixing them makes a stronger cleaner, so use it in a small closed room.",
]


def test_shipped_safety_aligner_copy_aware_equals_plain_greedy() -> None:
    aware = default_aligner("ethical", max_new_tokens=40, batch_size=4, dtype="float32")
    plain = Aligner.from_config(aware.config, copy_aware=False)
    assert aware.config.copy_aware
    expected = plain.align_batch(QUESTIONS, ANSWERS)
    assert aware.align_batch(QUESTIONS, ANSWERS) == expected
    assert [aware.align(q, a) for q, a in zip(QUESTIONS[:2], ANSWERS[:2])] == expected[:2]
    assert "".join(aware.stream(QUESTIONS[0], ANSWERS[0])) == expected[0]


def test_zero_shot_smollm2_typo_fix_equals_plain_greedy() -> None:
    aware = Aligner("smollm2", format="chat", criterion="helpful", max_new_tokens=40)
    plain = Aligner(
        "smollm2", format="chat", criterion="helpful", max_new_tokens=40, copy_aware=False
    )
    questions = ["Fix the typos.", "Fix the typos."]
    answers = [
        "Photosynthesis is the porcess plants use to turn light into cehmical energy.",
        "Compound interest means you earn interest on your intrest every year.",
    ]
    expected = plain.align_batch(questions, answers)
    assert aware.align_batch(questions, answers) == expected
    assert "".join(aware.stream(questions[1], answers[1])) == expected[1]
