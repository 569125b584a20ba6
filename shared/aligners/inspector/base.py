"""The inspector interface: P(aligned) in [0, 1] for a (question, answer) pair."""

from __future__ import annotations

import asyncio
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from aligners.criteria import Criterion, get_criterion
from aligners.sources import GroundingReport, as_passages
from aligners.validation import validate_batch


def as_score(value: Any, who: str, item: str) -> float:
    """``value`` as a float in [0, 1], or an error naming ``who`` and ``item``.

    Numbers and numpy or torch scalars pass. Bools and strings do not: an inspector returning
    ``True`` or ``"0.5"`` has a bug that a silent ``float()`` would hide.
    """
    is_bool = isinstance(value, bool) or getattr(getattr(value, "dtype", None), "kind", "") == "b"
    if is_bool or isinstance(value, (str, bytes)) or not hasattr(value, "__float__"):
        raise TypeError(f"{who} returned a non-number for {item}: {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):  # e.g. a tensor with several elements
        raise TypeError(f"{who} returned a non-number for {item}: {value!r}") from None
    if math.isnan(number) or not 0.0 <= number <= 1.0:
        raise ValueError(f"{who} returned a score outside [0, 1] for {item}: {value!r}")
    return number


class Inspector(ABC):
    """Scores how aligned an answer is for one criterion; 1.0 = aligned."""

    def __init__(self, criterion: str | Criterion | None = None) -> None:
        self.criterion = get_criterion(criterion) if criterion is not None else None

    @abstractmethod
    def _score(self, questions: Sequence[str], answers: Sequence[str]) -> list[float]:
        """Scores for validated inputs; implementations batch internally."""

    def score_batch(self, questions: Sequence[str], answers: Sequence[str]) -> list[float]:
        """P(aligned) for every pair, in order."""
        validate_batch(questions, answers)
        return self.check_scores(self._score(questions, answers), len(answers))

    def check_scores(self, scores: Any, expected: int) -> list[float]:
        """``scores`` as floats in [0, 1], one per pair, or an error naming this inspector."""
        who = f"inspector {self.name!r} ({type(self).__name__})"
        try:
            values = list(scores)
        except TypeError:
            kind = type(scores).__name__
            raise TypeError(f"{who} returned {kind}, not a list of scores") from None
        if len(values) != expected:
            raise ValueError(f"{who} returned {len(values)} scores for {expected} answers")
        return [as_score(value, who, f"answer {i}") for i, value in enumerate(values)]

    def score(self, question: str, answer: str) -> float:
        """P(aligned) for one pair."""
        return self.score_batch([question], [answer])[0]

    async def ascore_batch(self, questions: Sequence[str], answers: Sequence[str]) -> list[float]:
        """Async :meth:`score_batch` (runs in a worker thread)."""
        return await asyncio.to_thread(self.score_batch, questions, answers)

    @property
    def name(self) -> str:
        return self.criterion.name if self.criterion else type(self).__name__

    @property
    def default_threshold(self) -> float | None:
        """The operating point this inspector ships with (None: the squad's 0.5)."""
        return None

    @property
    def default_block_threshold(self) -> float | None:
        """The block threshold this inspector ships with (None: a squad never blocks on it
        under ``on_flag="rewrite"``; see SquadMember.block_threshold)."""
        return None


class FunctionInspector(Inspector):
    """An inspector from any function ``(question, answer) -> float`` (rules, regexes, APIs)."""

    def __init__(
        self,
        fn: Callable[[str, str], float],
        criterion: str | Criterion | None = None,
    ) -> None:
        super().__init__(criterion)
        if not callable(fn):
            raise TypeError("FunctionInspector needs a callable (question, answer) -> float")
        self.fn = fn

    def _score(self, questions: Sequence[str], answers: Sequence[str]) -> list[float]:
        return [self.fn(q, a) for q, a in zip(questions, answers)]


class FeatureInspector(Inspector):
    """An inspector that scores precomputed features, so inspectors that share a model share
    its pass: a squad computes :meth:`features` once per :attr:`feature_key` and hands the result
    to every inspector with that key.
    """

    @property
    @abstractmethod
    def feature_key(self) -> Hashable:
        """Inspectors with equal keys compute identical features for the same pairs."""

    @abstractmethod
    def features(self, questions: Sequence[str], answers: Sequence[str]) -> Any:
        """Features of validated (question, answer) pairs."""

    @abstractmethod
    def score_features(self, features: Any) -> list[float]:
        """P(aligned) for every row of :meth:`features`."""

    def _score(self, questions: Sequence[str], answers: Sequence[str]) -> list[float]:
        return self.score_features(self.features(questions, answers))


class ContextInspector(Inspector):
    """An inspector that reads the sources an answer should rest on (e.g. ``grounded``).

    It scores only answers given with a context (a str or a list of passages); a squad skips it
    for the others and says so in their records. :meth:`verify` says per sentence what is
    supported and by which passage; the score is the report's.
    """

    @abstractmethod
    def verify(
        self,
        questions: Sequence[str],
        answers: Sequence[str],
        contexts: Sequence[tuple[str, ...]],
        threshold: float | None = None,
    ) -> list[GroundingReport]:
        """Per-sentence support of validated answers by their passages (none empty);
        ``threshold`` (default: the inspector's own) marks the unsupported sentences."""

    def score_batch(
        self,
        questions: Sequence[str],
        answers: Sequence[str],
        contexts: Sequence[Any] | None = None,
    ) -> list[float]:
        """P(aligned) for every pair given its context.

        Raises:
            ValueError: an answer has no context (this inspector has nothing to check it by).
        """
        return self.check_scores(
            [r.score for r in self.verify_batch(questions, answers, contexts)], len(answers)
        )

    def verify_batch(
        self,
        questions: Sequence[str],
        answers: Sequence[str],
        contexts: Sequence[Any] | None,
        threshold: float | None = None,
    ) -> list[GroundingReport]:
        """:meth:`verify` after checking the inputs; every answer needs a context."""
        validate_batch(questions, answers)
        if contexts is None or isinstance(contexts, str) or len(contexts) != len(answers):
            got = "none" if contexts is None else f"{type(contexts).__name__}"
            if contexts is not None and not isinstance(contexts, str):
                got = f"{len(contexts)} for {len(answers)} answers"
            raise ValueError(
                f"inspector {self.name!r} needs one context per answer (a str or a list of "
                f"passages), got {got}"
            )
        passages = [as_passages(c, f"contexts[{i}]") for i, c in enumerate(contexts)]
        empty = [i for i, p in enumerate(passages) if not p]
        if empty:
            raise ValueError(
                f"inspector {self.name!r} has nothing to check answer {empty[0]} by: its "
                "context is None or empty, and it needs the sources the answer rests on"
            )
        return self.verify(questions, answers, passages, threshold)

    def score(self, question: str, answer: str, context: Any = None) -> float:
        """P(aligned) for one pair given its context."""
        return self.score_batch([question], [answer], [context])[0]

    def _score(self, questions: Sequence[str], answers: Sequence[str]) -> list[float]:
        raise ValueError(
            f"inspector {self.name!r} needs the sources the answers rest on: "
            "score_batch(questions, answers, contexts=...)"
        )
