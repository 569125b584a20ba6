"""General adapter vs zero-shot SmolLM2 (chat) on 20 held-out triples, 128 new tokens, on CPU.

Usage: python scripts/compare_default_aligner.py HELDOUT.jsonl OUT.json
(HELDOUT is the aligner_heldout.jsonl and the adapter the one written by
``scripts/train_defaults.sh general``; the general adapter is not shipped.)
"""

from __future__ import annotations

import json
import random
import sys
import time
from typing import Any

from aligners import Aligner
from aligners.data import read_triples
from aligners.squad.defaults import DEFAULT_ALIGNER_DIR
from aligners.training.evaluate import evaluate_aligner


def main(heldout: str, output: str) -> None:
    if not (DEFAULT_ALIGNER_DIR / "aligner_config.json").exists():
        sys.exit(f"no aligner in {DEFAULT_ALIGNER_DIR}: run scripts/train_defaults.sh general")
    held = [t for t in read_triples(heldout).records if not t.unchanged]
    rng = random.Random(0)
    subset = {
        crit: rng.sample([t for t in held if t.criterion == crit], 10)
        for crit in ("helpful", "ethical")
    }
    results: dict[str, Any] = {}
    for name in ("trained", "zero_shot"):
        start = time.time()
        results[name] = {}
        for crit, triples in subset.items():
            # The chat prompt names the criterion, so each group runs with its own.
            if name == "trained":
                aligner = Aligner.from_pretrained(
                    DEFAULT_ALIGNER_DIR, criterion=crit, max_new_tokens=128, batch_size=10
                )
            else:
                aligner = Aligner(
                    "smollm2", format="chat", criterion=crit, max_new_tokens=128, batch_size=10
                )
            report = evaluate_aligner(aligner, triples, batch_size=10)
            report["outputs"] = [row["output"] for row in report.pop("examples")]
            results[name][crit] = report
        results[name]["seconds"] = round(time.time() - start, 1)
        print(name, json.dumps({c: r for c, r in results[name].items() if c != "seconds"})[:2000])
    with open(output, "w") as handle:
        json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
