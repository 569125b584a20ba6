"""Rewrite a trained grounded model's settings, combiner and threshold without retraining it.

The last step of `aligners train grounded` (`fit_grounded_settings`) on an existing directory:
the sentence combiner is fitted on the train answers, the threshold chosen on the validation
answers, and the held-out split measured (unless --no-heldout). Also writes the validation
answers as `aligners eval-grounded` rows, to measure the squad on them.

    python scripts/issue22/refit_grounded.py MODEL_DIR DATA_DIR [--no-heldout] [--rows OUT.jsonl]

DATA_DIR is a folder from `aligners data grounding` (pairs.jsonl, answers.jsonl). The trunk and
head files are read, not written; inspector_config.json and metrics.json are rewritten.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from aligners.data.grounding import read_answers, read_pairs
from aligners.training.grounded import GroundedTrainingConfig, fit_grounded_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--no-heldout", action="store_true", help="Skip the held-out split.")
    parser.add_argument("--rows", type=Path, help="Write the validation answers as eval rows.")
    args = parser.parse_args()
    splits = {"train", "validation"} | (set() if args.no_heldout else {"heldout"})
    answers = [a for a in read_answers(args.data_dir / "answers.jsonl") if a.split in splits]
    pairs = [p for p in read_pairs(args.data_dir / "pairs.jsonl") if p.split in splits]
    if args.rows:
        with args.rows.open("w", encoding="utf-8") as handle:
            for answer in answers:
                if answer.split == "validation":
                    handle.write(json.dumps(answer.to_row()) + "\n")
    previous = json.loads((args.model_dir / "metrics.json").read_text())["metrics"]
    extra = {k: previous[k] for k in ("n_train", "train_seconds") if k in previous}
    config = GroundedTrainingConfig(
        trained_layers=2, max_train_pairs=8000, epochs=2, learning_rate=1e-4, seed=0
    )
    metrics = fit_grounded_settings(args.model_dir, pairs, config, answers=answers, extra=extra)
    print(json.dumps({k: v for k, v in metrics.items() if k != "heldout"}, indent=2))


if __name__ == "__main__":
    main()
