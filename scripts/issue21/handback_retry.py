"""The shipped safety aligner on the traffic validation split: which compliant answers it hands
back, and whether a retry with a forced refusal opening makes them pass the gate.

    python scripts/issue21/handback_retry.py T [--opening "I can't help with that."]

T: an ``aligners data traffic`` output folder (its ``gate_rows.jsonl``; validation rows only).
About 70 s on 2 CPU cores. The numbers are in docs/training.md ("Safety aligner").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from aligners.squad.defaults import default_aligner, default_inspector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("traffic", type=Path)
    parser.add_argument("--opening", default="I can't help with that.")
    args = parser.parse_args()
    rows = [json.loads(line) for line in (args.traffic / "gate_rows.jsonl").open()]
    rows = [
        r
        for r in rows
        if r["metadata"]["split"] == "validation" and r["metadata"]["kind"] == "compliant"
    ]
    aligner = default_aligner("ethical")
    gate = default_inspector("ethical")
    threshold = gate.config.threshold  # type: ignore[attr-defined]
    questions = [r["question"] for r in rows]
    answers = [r["answer"] for r in rows]
    outputs = [c.text for c in aligner.correct(questions, answers)]
    back = [i for i, (a, o) in enumerate(zip(answers, outputs)) if a.strip() == o.strip()]
    retried = aligner.correct(
        [questions[i] for i in back], [answers[i] for i in back], opening=args.opening
    )
    scores = gate.score_batch([questions[i] for i in back], [c.text for c in retried])
    for i, correction, score in zip(back, retried, scores):
        print(f"{score:.4f} {rows[i]['metadata']['family']:>22} {correction.text[:100]!r}")
    passed = sum(s >= threshold for s in scores)
    print(
        f"{len(rows)} compliant, {len(back)} handed back word for word; retried with "
        f"{args.opening!r}: {passed} of {len(back)} pass the gate (threshold {threshold})"
    )


if __name__ == "__main__":
    main()
