"""Does the squad ground answers in their sources? Inspector and repair metrics on labelled rows.

A row is JSON with ``question``, ``context`` (a str or a list of passages), ``answer``,
``label`` (1: every claim is supported; 0: something is not), optional ``unsupported`` (the
answer's unsupported sentences, as text, where known: sentence-level labels) and optional
``source`` (where the row comes from; the metrics are also reported per source).

What is measured, beside the issue's targets: the answer-level AUROC and balanced accuracy at
the squad's threshold; a length-only baseline (answer length as the score) on the same rows,
so a score that only tracks length is seen; sentence-level AUROC where sentences are labelled;
and for the repair: how many repaired answers pass the inspector, how many supported sentences
are kept verbatim, how many grounded answers come back unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from aligners.eval.safety import write_report
from aligners.sources import Context, as_passages, claim_words, is_trivial, split_sentences
from aligners.squad.squad import Squad
from aligners.training.metrics import auroc

GROUNDED = "grounded"


class GroundingRow(BaseModel):
    """One labelled answer with its sources."""

    model_config = ConfigDict(extra="ignore")

    question: str = ""
    context: Context
    answer: str = Field(min_length=1)
    label: int = Field(ge=0, le=1, description="1: grounded; 0: something is unsupported.")
    unsupported: list[str] | None = Field(
        default=None, description="The answer's unsupported sentences, where labelled."
    )
    source: str = "unknown"


def read_grounding_rows(path: str | Path, limit: int | None = None) -> list[GroundingRow]:
    """Rows of a JSONL file; a bad line is an error naming the file and line."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                rows.append(GroundingRow.model_validate_json(line))
            except ValueError as error:
                raise ValueError(f"{path}:{number}: not a grounding row: {error}") from None
            if limit is not None and len(rows) >= limit:
                break
    return rows


def _balanced_accuracy(labels: Sequence[int], flagged: Sequence[bool]) -> float | None:
    rates = []
    for label in (0, 1):
        picked = [f for y, f in zip(labels, flagged) if y == label]
        if not picked:
            return None
        rates.append(sum((not f) if label else f for f in picked) / len(picked))
    return sum(rates) / 2


def _sentence_labels(row: GroundingRow, report: dict[str, Any]) -> list[tuple[int, float]]:
    """(supported?, score) for the scored sentences of a row with sentence labels."""
    if row.unsupported is None:
        return []
    bad = [" ".join(u.split()) for u in row.unsupported if u.strip()]
    pairs = []
    for sentence in report["sentences"]:
        if sentence["score"] is None:
            continue
        text = " ".join(sentence["text"].split())
        unsupported = any(b in text or text in b for b in bad)
        pairs.append((0 if unsupported else 1, float(sentence["score"])))
    return pairs


def word_overlap(row: GroundingRow) -> float:
    """The baseline: the least share of a sentence's words found in the passages."""
    found = set(claim_words(" ".join(as_passages(row.context))))
    shares = [
        sum(w in found for w in words) / len(words)
        for span in split_sentences(row.answer)
        if not is_trivial(span.text) and (words := claim_words(span.text))
    ]
    return min(shares, default=1.0)


def _share(flags: Iterable[bool]) -> float | None:
    values = list(flags)
    return round(sum(values) / len(values), 4) if values else None


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _numbers(rows: Sequence[GroundingRow], records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    labels = [r.label for r in rows]
    scores = [rec["initial_scores"].get(GROUNDED) for rec in records]
    threshold = records[0]["thresholds"].get(GROUNDED, 0.5) if records else 0.5
    scored = [(y, s) for y, s in zip(labels, scores) if s is not None]
    sentence_pairs = [
        pair
        for row, rec in zip(rows, records)
        if rec.get("grounding")
        for pair in _sentence_labels(row, rec["grounding"])
    ]
    repaired = [rec for rec in records if rec["action"] == "rewritten"]
    kept: list[bool] = []
    for row, rec in zip(rows, records):
        if row.unsupported is None or rec["action"] in ("blocked", "failed"):
            continue
        bad = [" ".join(u.split()) for u in row.unsupported]
        for span in split_sentences(row.answer):
            flat = " ".join(span.text.split())
            if not is_trivial(span.text) and not any(b in flat or flat in b for b in bad):
                kept.append(span.text in rec["text"])
    return {
        "n": len(rows),
        "n_grounded": sum(labels),
        "n_ungrounded": len(labels) - sum(labels),
        "threshold": threshold,
        "auroc": _rounded(auroc([y for y, _ in scored], [s for _, s in scored])),
        "balanced_accuracy": _rounded(
            _balanced_accuracy([y for y, _ in scored], [s < threshold for _, s in scored])
        ),
        "length_only_auroc": _rounded(
            auroc(labels, [-float(len(r.answer)) for r in rows])  # shorter = grounded
        ),
        "word_overlap_auroc": _rounded(auroc(labels, [word_overlap(r) for r in rows])),
        "sentence_auroc": _rounded(
            auroc([y for y, _ in sentence_pairs], [s for _, s in sentence_pairs])
        ),
        "n_labelled_sentences": len(sentence_pairs),
        "repaired": len(repaired),
        "repaired_pass": _share(
            rec["final_scores"].get(GROUNDED, 0.0) >= threshold for rec in repaired
        ),
        "supported_sentences_kept": _share(kept),
        "grounded_unchanged": _share(
            rec["text"] == row.answer for row, rec in zip(rows, records) if row.label == 1
        ),
    }


def evaluate_grounding(
    squad: Squad, rows: Sequence[GroundingRow], *, batch_size: int = 16, progress: bool = True
) -> dict[str, Any]:
    """Run ``squad`` (it must have a ``grounded`` member) on ``rows``; the summary (overall and
    per source) and one record per row."""
    from tqdm.auto import tqdm

    if GROUNDED not in squad.criteria:
        raise ValueError(f"the squad has no {GROUNDED!r} member (it has {squad.criteria})")
    if not rows:
        raise ValueError("no rows to evaluate")
    records: list[dict[str, Any]] = []
    started = time.perf_counter()
    bar = tqdm(total=len(rows), desc="grounding", unit="answer", disable=not progress)
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        args = ([r.question for r in batch], [r.answer for r in batch], [r.context for r in batch])
        records.extend(result.to_record() for result in squad.align_batch(*args))
        bar.update(len(batch))
    bar.close()
    seconds = time.perf_counter() - started
    summary = _numbers(rows, records)
    summary["seconds_per_answer"] = round(seconds / len(rows), 4)
    sources = sorted({r.source for r in rows})
    summary["by_source"] = {source: _numbers(*_pick(rows, records, source)) for source in sources}
    return {"summary": summary, "records": records}


def _pick(
    rows: Sequence[GroundingRow], records: Sequence[dict[str, Any]], source: str
) -> tuple[list[GroundingRow], list[dict[str, Any]]]:
    chosen = [i for i, r in enumerate(rows) if r.source == source]
    return [rows[i] for i in chosen], [records[i] for i in chosen]


def source_table(summary: dict[str, Any]) -> str:
    """The per-source numbers and the overall row as a Markdown table."""
    header = (
        "| source | n | grounded | AUROC | balanced acc. | length-only AUROC | word-overlap AUROC "
        "| sentence AUROC | repaired pass | supported kept | grounded unchanged |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|"
    )

    def cell(value: Any) -> str:
        return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = [header]
    for name, numbers in [*summary.get("by_source", {}).items(), ("overall", summary)]:
        lines.append(
            f"| {name} | {numbers['n']} | {numbers['n_grounded']} | {cell(numbers['auroc'])} | "
            f"{cell(numbers['balanced_accuracy'])} | {cell(numbers['length_only_auroc'])} | "
            f"{cell(numbers['word_overlap_auroc'])} | "
            f"{cell(numbers['sentence_auroc'])} | {cell(numbers['repaired_pass'])} | "
            f"{cell(numbers['supported_sentences_kept'])} | "
            f"{cell(numbers['grounded_unchanged'])} |"
        )
    return "\n".join(lines) + "\n"


def write_grounding_report(report: dict[str, Any], out: str | Path) -> Path:
    """``summary.json``, ``by_source.md`` and ``records.jsonl`` in ``out``."""
    return write_report(report, out, {"by_source.md": source_table(report["summary"])})
