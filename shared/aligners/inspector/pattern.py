"""Pattern rules: regular expressions and keyword lists, as answer and request inspectors.

Text is normalised before matching (Unicode NFKC, invisible format characters removed, casefold,
whitespace runs collapsed), so ``ＢＯＭＢ``, ``Bo\u200bmb`` and ``BOMB`` all match the keyword
``bomb``. A rule that matches scores ``match_score`` (0.0: misaligned, or not fine to answer);
text that matches no rule scores 1.0. In a squad a pattern member needs no aligner: with a
``block_threshold`` (:meth:`PatternInspector.member` sets one) a match blocks the answer on its
own, next to trained inspectors and aligners.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Literal

from aligners.criteria import Criterion, get_criterion
from aligners.inspector.base import Inspector
from aligners.inspector.request import RequestInspector

#: The criterion of a pattern member (the default of :class:`PatternInspector`).
RULES = Criterion(
    name="rules",
    description="matches none of the configured rules (banned words, regular expressions)",
)

_SPACES = re.compile(r"\s+")


def normalise(text: str) -> str:
    """``text`` as rules see it: NFKC, without format characters (zero-width spaces, joiners,
    bidi marks: invisible, so they are a cheap way around a keyword), casefolded, single spaces."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    return _SPACES.sub(" ", text.casefold()).strip()


class PatternRules:
    """Compiled rules: regular expressions and whole-word keywords, matched on normalised text.

    Args:
        patterns: Regular expressions (strings or compiled), searched in the normalised text
            with ``re.IGNORECASE``.
        keywords: Words or phrases; normalised the same way and matched as whole words
            (``"bomb"`` matches "a bomb!" but not "bombastic").
    """

    def __init__(
        self, patterns: Sequence[str | re.Pattern[str]] = (), keywords: Sequence[str] = ()
    ) -> None:
        for name, value in (("patterns", patterns), ("keywords", keywords)):
            if isinstance(value, (str, bytes)):
                raise TypeError(
                    f"{name} must be a list of strings, got one string {value!r}: "
                    f"write {name}=[{value!r}]"
                )
        self.rules: list[tuple[str, re.Pattern[str]]] = []
        for i, pattern in enumerate(patterns):
            if isinstance(pattern, re.Pattern):
                self.rules.append((f"pattern {pattern.pattern!r}", pattern))
                continue
            if not isinstance(pattern, str) or not pattern:
                raise TypeError(f"patterns[{i}] must be a non-empty string, got {pattern!r}")
            try:
                compiled = re.compile(pattern, re.IGNORECASE)
            except re.error as exc:
                raise ValueError(f"patterns[{i}] {pattern!r} is not a valid regex: {exc}") from None
            self.rules.append((f"pattern {pattern!r}", compiled))
        for i, keyword in enumerate(keywords):
            if not isinstance(keyword, str) or not normalise(keyword):
                raise TypeError(f"keywords[{i}] must be a non-empty string, got {keyword!r}")
            word = re.escape(normalise(keyword))
            self.rules.append((f"keyword {keyword!r}", re.compile(rf"(?<!\w){word}(?!\w)")))
        if not self.rules:
            raise ValueError("pattern rules need at least one pattern or keyword")

    def matches(self, text: str) -> list[str]:
        """The rules ``text`` matches, described (``"keyword 'bomb'"``), in rule order."""
        seen = normalise(text)
        return [name for name, rule in self.rules if rule.search(seen)]


def _score(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


class PatternInspector(Inspector):
    """An answer inspector from pattern rules: ``match_score`` where a rule matches, else 1.0.

    Example:
        >>> rules = PatternInspector(keywords=["pipe bomb"], patterns=[r"\\bkill (him|her)\\b"])
        >>> rules.score("q", "How to build a PIPE  BOMB")
        0.0
        >>> member = SquadMember.from_rule(rules)  # a squad member that blocks on a match
    """

    def __init__(
        self,
        patterns: Sequence[str | re.Pattern[str]] = (),
        keywords: Sequence[str] = (),
        *,
        criterion: str | Criterion = RULES,
        target: Literal["answer", "question", "both"] = "answer",
        match_score: float = 0.0,
    ) -> None:
        super().__init__(get_criterion(criterion))
        if target not in ("answer", "question", "both"):
            raise ValueError(f"target must be 'answer', 'question' or 'both', got {target!r}")
        self.rules = PatternRules(patterns, keywords)
        self.target = target
        self.match_score = _score(match_score, "match_score")

    def _text(self, question: str, answer: str) -> str:
        if self.target == "answer":
            return answer
        if self.target == "question":
            return question
        return f"{question}\n{answer}"

    def matches(self, question: str, answer: str) -> list[str]:
        """The rules the pair matches (what the inspector read: see ``target``)."""
        return self.rules.matches(self._text(question, answer))

    def _score(self, questions: Sequence[str], answers: Sequence[str]) -> list[float]:
        return [self.match_score if self.matches(q, a) else 1.0 for q, a in zip(questions, answers)]

    @property
    def default_block_threshold(self) -> float | None:
        """A rule is sure: any match is blocked under ``on_flag="rewrite"`` if it survives."""
        return 0.5

    def for_requests(self) -> PatternRequestInspector:
        """The same rules as a request inspector (for ``check_request``)."""
        inspector = PatternRequestInspector.__new__(PatternRequestInspector)
        inspector.rules = self.rules
        inspector.match_score = self.match_score
        inspector.threshold = 0.5
        return inspector


class PatternRequestInspector(RequestInspector):
    """A request inspector from pattern rules: a request a rule matches scores ``match_score``
    (turned away at the default threshold 0.5), any other request 1.0."""

    def __init__(
        self,
        patterns: Sequence[str | re.Pattern[str]] = (),
        keywords: Sequence[str] = (),
        *,
        match_score: float = 0.0,
        threshold: float = 0.5,
    ) -> None:
        self.rules = PatternRules(patterns, keywords)
        self.match_score = _score(match_score, "match_score")
        self.threshold = _score(threshold, "threshold")

    def matches(self, request: str) -> list[str]:
        """The rules ``request`` matches."""
        return self.rules.matches(request)

    def _score(self, requests: Sequence[str]) -> list[float]:
        return [self.match_score if self.matches(r) else 1.0 for r in requests]
