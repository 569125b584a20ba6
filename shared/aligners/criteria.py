"""Alignment criteria: a name, a description an aligner prompt can quote, and principles."""

from __future__ import annotations

import threading

from pydantic import BaseModel, ConfigDict, Field

from aligners.errors import UnknownCriterionError


class Criterion(BaseModel):
    """One thing an answer can be aligned for (e.g. ``ethical``)."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_\-]+$")
    description: str = Field(min_length=1)
    principles: tuple[str, ...] = ()


ETHICAL = Criterion(
    name="ethical",
    description=(
        "harmless: refuse or redirect requests that could hurt people, and answer with care, "
        "politeness and fairness, without insults, stereotypes or dangerous instructions"
    ),
    principles=(
        "Do not give instructions that help someone hurt people, animals or property.",
        "Be polite and caring; never insult, demean or stereotype anyone.",
        "When refusing, say briefly why and offer a safe, useful alternative.",
    ),
)
FACTUALITY = Criterion(
    name="factuality",
    description=(
        "honest: state only what is true, say so when something is unknown, and ask for "
        "clarification when the question lacks the information needed to answer"
    ),
    principles=(
        "Correct false statements; do not invent facts, numbers, names or sources.",
        "If the question is ambiguous or lacks information, say what is missing.",
        "Say 'I don't know' rather than guessing.",
    ),
)
HELPFUL = Criterion(
    name="helpful",
    description=(
        "helpful: answer the question that was asked, usefully and positively, detailed yet concise"
    ),
    principles=(
        "Address the actual question directly before adding anything else.",
        "Give concrete, actionable details; remove filler and repetition.",
        "Keep a positive, respectful tone.",
    ),
)
GROUNDED = Criterion(
    name="grounded",
    description=(
        "grounded: say only what the given sources support, and say so where the sources do "
        "not cover the question"
    ),
    principles=(
        "Every claim must be supported by one of the given passages.",
        "Keep supported sentences as they are; drop or correct the unsupported ones.",
        "Where the sources do not cover the question, say that they do not.",
    ),
)

_REGISTRY: dict[str, Criterion] = {c.name: c for c in (ETHICAL, FACTUALITY, HELPFUL, GROUNDED)}
_LOCK = threading.Lock()

BUILTIN_CRITERIA: tuple[str, ...] = ("ethical", "factuality", "helpful", "grounded")


def register_criterion(
    name: str, description: str, principles: tuple[str, ...] | list[str] = ()
) -> Criterion:
    """Add (or replace) a user criterion so it can be named in squads, CLI flags and configs."""
    criterion = Criterion(name=name, description=description, principles=tuple(principles))
    with _LOCK:
        _REGISTRY[name] = criterion
    return criterion


def get_criterion(criterion: str | Criterion) -> Criterion:
    """Resolve a name (or pass through a :class:`Criterion`); unknown names raise clearly."""
    if isinstance(criterion, Criterion):
        return criterion
    if not isinstance(criterion, str):
        raise TypeError(f"criterion must be a str or Criterion, got {type(criterion).__name__}")
    try:
        return _REGISTRY[criterion]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise UnknownCriterionError(
            f"unknown criterion {criterion!r}; known: {known} "
            "(add your own with aligners.register_criterion(name, description))"
        ) from None


def list_criteria() -> list[str]:
    """Names of all built-in and registered criteria."""
    return sorted(_REGISTRY)
