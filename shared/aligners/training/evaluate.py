"""Held-out evaluation of an aligner: closer to the reference, copies good answers, no junk."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aligners.data.records import CorrectionTriple
from aligners.training.metrics import chrf, is_degenerate, rouge_l


def _same(a: str, b: str) -> bool:
    return " ".join(a.split()) == " ".join(b.split())


def evaluate_aligner(
    aligner: Any,
    triples: Sequence[CorrectionTriple],
    *,
    good_answers: Sequence[CorrectionTriple] | None = None,
    progress: bool = False,
    batch_size: int = 8,
) -> dict[str, Any]:
    """Score an :class:`~aligners.Aligner` on held-out triples.

    - ``chrf_gain`` / ``rouge_l_gain``: mean similarity of the output to the reference correction
      minus that of the original answer (positive = the aligner moved towards the reference);
    - ``unchanged_rate``: on ``good_answers`` (pairs whose answer is already the reference; the
      triples' corrections by default) the share returned unchanged, and ``near_unchanged_rate``
      with chrF >= 90 against the input;
    - ``degenerate_rate``: empty or looping outputs over all generations.
    Per-example rows are returned under ``examples`` for inspection.
    """
    triples = [t for t in triples if not t.unchanged]
    if not triples:
        raise ValueError("no held-out triples with a correction that differs from the answer")
    if good_answers is None:
        good_answers = [t.model_copy(update={"answer": t.correction}) for t in triples]
    else:
        good_answers = list(good_answers)

    def run(items: Sequence[CorrectionTriple]) -> list[str]:
        outputs: list[str] = []
        chunks = range(0, len(items), batch_size)
        if progress:
            from tqdm.auto import tqdm

            chunks = tqdm(chunks, desc="evaluating", unit="batch")
        for start in chunks:
            part = items[start : start + batch_size]
            outputs.extend(
                aligner.align_batch([t.question for t in part], [t.answer for t in part])
            )
        return outputs

    corrected = run(triples)
    copied = run(good_answers)
    rows: list[dict[str, Any]] = []
    for t, out in zip(triples, corrected):
        rows.append(
            {
                "question": t.question[:200],
                "answer_chrf": chrf(t.answer, t.correction),
                "output_chrf": chrf(out, t.correction),
                "answer_rouge_l": rouge_l(t.answer, t.correction),
                "output_rouge_l": rouge_l(out, t.correction),
                "unchanged_output": _same(out, t.answer),
                "degenerate": is_degenerate(out),
                "output": out,
            }
        )
    n = len(rows)
    copy_rows = [(g, out) for g, out in zip(good_answers, copied)]
    outputs_all = corrected + copied

    def mean(key: str) -> float:
        return round(sum(float(r[key]) for r in rows) / n, 4)

    result: dict[str, Any] = {
        "n_triples": n,
        "n_good_answers": len(copy_rows),
        "answer_chrf": mean("answer_chrf"),
        "output_chrf": mean("output_chrf"),
        "chrf_gain": round(mean("output_chrf") - mean("answer_chrf"), 4),
        "answer_rouge_l": mean("answer_rouge_l"),
        "output_rouge_l": mean("output_rouge_l"),
        "rouge_l_gain": round(mean("output_rouge_l") - mean("answer_rouge_l"), 4),
        "improved_rate": round(sum(r["output_chrf"] > r["answer_chrf"] for r in rows) / n, 4),
        "copied_misaligned_rate": round(sum(r["unchanged_output"] for r in rows) / n, 4),
        "unchanged_rate": round(
            sum(_same(o, g.answer) for g, o in copy_rows) / max(1, len(copy_rows)), 4
        ),
        "near_unchanged_rate": round(
            sum(chrf(o, g.answer) >= 90 for g, o in copy_rows) / max(1, len(copy_rows)), 4
        ),
        "degenerate_rate": round(sum(is_degenerate(o) for o in outputs_all) / len(outputs_all), 4),
        "empty_rate": round(sum(not o.strip() for o in outputs_all) / len(outputs_all), 4),
        "examples": rows,
    }
    return result
