"""The ``grounded`` aligner's deterministic floor: keep what the sources support, drop the rest.

It generates nothing, so it cannot invent what it removes: every sentence it keeps is the
answer's own, byte for byte, with the whitespace that stood before it. Where nothing the
sources support remains, the answer becomes a sentence saying the sources do not cover the
question. A trained rewriter must beat this floor on held-out data to replace it.
"""

from __future__ import annotations

from collections.abc import Sequence

from aligners.aligner.model import Correction
from aligners.criteria import Criterion, get_criterion
from aligners.sources import GroundingReport

#: What an answer with no supported sentence becomes.
DEFAULT_NOT_COVERED = "The provided sources do not cover this question."


class GroundedRepair:
    """Repairs an answer from its :class:`~aligners.sources.GroundingReport`: drops the
    unsupported sentences and keeps the others unchanged.

    Example:
        >>> repair = GroundedRepair()
        >>> repair.repair(answer, report).text  # doctest: +SKIP
    """

    #: The squad hands this aligner the inspector's report instead of generating.
    needs_report = True

    def __init__(self, not_covered: str = DEFAULT_NOT_COVERED) -> None:
        if not isinstance(not_covered, str) or not not_covered.strip():
            raise ValueError("not_covered must have text (it replaces an answer with no support)")
        self.not_covered = not_covered
        self.criterion: Criterion = get_criterion("grounded")

    @property
    def name(self) -> str:
        return self.criterion.name

    def repair(self, answer: str, report: GroundingReport) -> Correction:
        """The answer without its unsupported sentences (unchanged when all are supported)."""
        if not report.unsupported:
            return Correction(answer)
        kept: list[str] = []
        previous_end = 0
        for sentence in report.sentences:
            if sentence.supported:
                gap = answer[previous_end : sentence.start] if kept else ""
                kept.append(gap + answer[sentence.start : sentence.end])
            previous_end = sentence.end
        claims = [s for s in report.sentences if s.supported and not s.trivial]
        if not claims:
            return Correction(self.not_covered)
        return Correction("".join(kept))

    def repair_batch(
        self, answers: Sequence[str], reports: Sequence[GroundingReport]
    ) -> list[Correction]:
        """:meth:`repair` for every answer, in order."""
        if len(answers) != len(reports):
            raise ValueError(f"{len(answers)} answers but {len(reports)} grounding reports")
        return [self.repair(a, r) for a, r in zip(answers, reports)]

    def __repr__(self) -> str:
        return f"GroundedRepair(not_covered={self.not_covered!r})"
