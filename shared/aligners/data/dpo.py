"""Preference export for bootstrapping the upstream model (the "Aligner" paper's multi-round idea).

Each triple becomes ``{"prompt", "chosen", "rejected"}`` with chosen = correction and rejected =
the original answer: the standard (non-conversational) layout TRL's ``DPOTrainer`` reads, e.g.
``datasets.load_dataset("json", data_files="dpo.jsonl")``. ``conversational=True`` writes the
conversational layout instead (lists of ``{"role", "content"}`` messages).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aligners.data.records import CorrectionTriple


def dpo_records(
    triples: Iterable[CorrectionTriple], *, conversational: bool = False
) -> tuple[list[dict[str, Any]], int]:
    """DPO rows from triples, and how many unchanged triples were left out (no preference)."""
    rows: list[dict[str, Any]] = []
    skipped = 0
    for t in triples:
        if t.unchanged:
            skipped += 1
            continue
        if conversational:
            rows.append(
                {
                    "prompt": [{"role": "user", "content": t.question}],
                    "chosen": [{"role": "assistant", "content": t.correction}],
                    "rejected": [{"role": "assistant", "content": t.answer}],
                }
            )
        else:
            rows.append({"prompt": t.question, "chosen": t.correction, "rejected": t.answer})
    return rows, skipped


def write_dpo(
    path: str | Path, triples: Iterable[CorrectionTriple], *, conversational: bool = False
) -> tuple[int, int]:
    """Write DPO rows as JSONL; returns (rows written, unchanged triples skipped)."""
    rows, skipped = dpo_records(triples, conversational=conversational)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    tmp.replace(path)
    return len(rows), skipped
