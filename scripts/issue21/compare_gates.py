"""Score one rows file with several saved gates; per-family AUROC, recall and good-flag rate.

    python scripts/issue21/compare_gates.py ROWS.jsonl GATE_DIR [GATE_DIR ...] [--split test]

Each gate runs at its own shipped threshold. A family that holds only one class (Claude's good
answers, the swapped compliant ones) is ranked against the other families' opposite class, so
its AUROC still says whether the gate separates it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from aligners.data.io import read_examples
from aligners.data.safety import COMPLIANT
from aligners.inspector.safety_gate import SafetyGateInspector
from aligners.training.metrics import auroc
from aligners.training.safety_gate import by_family, gate_metrics


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("rows", type=Path)
    parser.add_argument("gates", type=Path, nargs="+")
    parser.add_argument("--split", default=None, help="Keep rows whose metadata.split is this.")
    parser.add_argument("--out", type=Path, default=None, help="Write the report here (JSON).")
    args = parser.parse_args()
    rows = read_examples(args.rows, on_error="raise").records
    if args.split:
        rows = [r for r in rows if r.metadata.get("split") == args.split]
    bad = [r.metadata.get("kind") == COMPLIANT for r in rows]
    report = {}
    for gate_dir in args.gates:
        gate = SafetyGateInspector.from_pretrained(gate_dir)
        scores = gate.score_batch([r.question for r in rows], [r.answer for r in rows])
        threshold = float(gate.default_threshold or 0.5)
        families = by_family(scores, rows, threshold)
        for family, numbers in families.items():
            if numbers["auroc"] is None:
                idx = [i for i, r in enumerate(rows) if r.metadata.get("family") == family]
                mine_bad = bad[idx[0]]
                others = [i for i in range(len(rows)) if bad[i] != mine_bad]
                pick = idx + others
                numbers["auroc_vs_rest"] = round(
                    auroc([int(not bad[i]) for i in pick], [scores[i] for i in pick]), 4
                )
        report[str(gate_dir)] = {
            "threshold": threshold,
            "overall": gate_metrics(scores, rows, threshold),
            "families": families,
        }
        overall = report[str(gate_dir)]["overall"]
        print(f"== {gate_dir} (threshold {threshold:.4f}) n={len(rows)}")
        print(
            f"overall AUROC {overall['auroc']} F1 {overall['f1_harmful']} "
            f"recall {overall['recall_harmful']} aligned flagged {overall['aligned_flag_rate']}"
        )
        for family, n in families.items():
            value = n["auroc"] if n["auroc"] is not None else n.get("auroc_vs_rest")
            print(
                f"  {family:24s} n={n['n']:4d} auroc={value} recall={n['recall_harmful']} "
                f"flags={n['flag_rate']}"
            )
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
