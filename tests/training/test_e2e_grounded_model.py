"""The shipped grounded model holds its held-out sentence-level AUROC on a committed sample.

tests/data/grounded_heldout_pairs.jsonl: 150 (supported, unsupported) twins from each held-out
source of `aligners data grounding --seed 0` (HaluEval QA passages in the held-out hash slice,
HaluEval dialogue, synthetic edits over Claude 3 Opus answers), none trained or chosen on.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aligners.data.grounding import read_pairs
from aligners.inspector.grounded import DEFAULT_GROUNDED_DIR, GroundedInspector
from aligners.training.metrics import auroc

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "grounded_heldout_pairs.jsonl"
#: Bars a little under what the shipped model measured on this sample (MODEL_CARD.md).
#: Measured (int8 trunk): all 0.798, halueval_qa 0.933, synthetic_claude 0.753,
#: halueval_dialogue 0.644 (float32: 0.808, 0.951, 0.759, 0.629).
BARS = {"all": 0.78, "halueval_qa": 0.92, "synthetic_claude": 0.72, "halueval_dialogue": 0.58}


def test_shipped_grounded_model_is_small_and_measured() -> None:
    files = [p for p in DEFAULT_GROUNDED_DIR.iterdir() if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 15_000_000
    config = json.loads((DEFAULT_GROUNDED_DIR / "inspector_config.json").read_text())
    assert config["heads"] == ["grounded"] and config["kind"] == "cross-encoder"
    assert 0 < config["thresholds"]["grounded"] < 1
    assert config["metrics"]["grounded"]["n_train"] > 0
    assert "Held-out metrics" in (DEFAULT_GROUNDED_DIR / "MODEL_CARD.md").read_text()


@pytest.mark.e2e
def test_shipped_grounded_model_holds_its_heldout_auroc() -> None:
    pairs = read_pairs(SAMPLE)
    assert {p.split for p in pairs} == {"heldout"}
    inspector = GroundedInspector.from_pretrained()
    scores = inspector.support([p.passage for p in pairs], [p.claim for p in pairs])
    measured = {}
    for source in BARS:
        rows = [(p.label, s) for p, s in zip(pairs, scores) if source in ("all", p.source)]
        measured[source] = auroc([y for y, _ in rows], [s for _, s in rows])
    assert all(measured[s] is not None and measured[s] >= BARS[s] for s in BARS), measured
