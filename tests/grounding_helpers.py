"""Sources in tests: a word-overlap context inspector (verdicts a reader can check by eye), the
answers and passages the grounded tests share (the tiny grounded directory is the
``tiny_grounded_dir`` fixture of tests/conftest.py).

Shared by the engine, integration, proxy and CLI tests of the ``grounded`` criterion.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aligners import ContextInspector, GroundedRepair, Squad, SquadMember, get_criterion
from aligners.sources import (
    GroundingReport,
    SentenceSupport,
    claim_words,
    is_trivial,
    split_sentences,
)

PASSAGES = [
    "The Eiffel Tower is in Paris. It was completed in 1889 for the World's Fair.",
    "Gustave Eiffel's company designed and built the tower.",
]
GROUNDED_ANSWER = "Sure! The Eiffel Tower is in Paris.\nIt was completed in 1889."
MIXED_ANSWER = (
    "The Eiffel Tower is in Paris. It was completed in 1925 by Napoleon. "
    "Gustave Eiffel's company built the tower. I hope this helps!"
)
#: MIXED_ANSWER without its unsupported sentence, as the grounded repair leaves it.
REPAIRED_ANSWER = (
    "The Eiffel Tower is in Paris. Gustave Eiffel's company built the tower. I hope this helps!"
)
UNSUPPORTED = "It was completed in 1925 by Napoleon."


class WordOverlapInspector(ContextInspector):
    """Supported: every content word of the sentence is in one passage (a rule users could
    write; it makes the expected verdicts readable)."""

    def __init__(self) -> None:
        super().__init__("grounded")
        self.calls = 0
        #: The passages of every answer it was asked about, in order.
        self.seen: list[tuple[str, ...]] = []

    def verify(
        self,
        questions: Sequence[str],
        answers: Sequence[str],
        contexts: Sequence[tuple[str, ...]],
        threshold: float | None = None,
    ) -> list[GroundingReport]:
        self.calls += 1
        self.seen.extend(contexts)
        limit = 0.5 if threshold is None else threshold
        reports = []
        for answer, passages in zip(answers, contexts):
            sentences = []
            for span in split_sentences(answer):
                if is_trivial(span.text):
                    sentences.append(
                        SentenceSupport(
                            text=span.text, start=span.start, end=span.end, trivial=True
                        )
                    )
                    continue
                words = set(claim_words(span.text))
                shares = [len(words & set(claim_words(p))) / len(words) for p in passages]
                best = max(range(len(passages)), key=shares.__getitem__)
                score = 1.0 if shares[best] == 1.0 else 0.1
                sentences.append(
                    SentenceSupport(
                        text=span.text,
                        start=span.start,
                        end=span.end,
                        score=score,
                        supported=score >= limit,
                        passage=best,
                    )
                )
            reports.append(GroundingReport.of(sentences, threshold=limit, passages=len(passages)))
        return reports


def grounded_member(inspector: ContextInspector | None = None) -> SquadMember:
    """The grounded criterion with the repair floor over ``inspector`` (default: word overlap)."""
    return SquadMember(
        get_criterion("grounded"), GroundedRepair(), inspector or WordOverlapInspector(), 0.5
    )


def grounded_squad(**options: Any) -> Squad:
    """A squad of one grounded member (word overlap); ``options`` go to the squad."""
    return Squad([grounded_member()], **options)
