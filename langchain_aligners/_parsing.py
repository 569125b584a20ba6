"""How :class:`~langchain_aligners.AlignerSquad` reads its input: one value becomes a
:class:`Pair` (question, answer text, answer object, a record decided without the squad, the
answer's sources)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from langchain_core.messages import BaseMessage

from aligners import AlignmentResult, validate_pair
from langchain_aligners._inputs import (
    Sources,
    answer_text,
    context_passages,
    question_from_input,
    tool_calls_only,
)


class Pair(NamedTuple):
    """One parsed input: the question, the answer's text, the answer object, a record
    already decided without the squad (tool calls only; an invalid answer handed back), and the
    answer's sources (None: none given)."""

    question: str
    text: str
    answer: Any
    preset: AlignmentResult | None = None
    context: Sources | None = None


class InputKeys(NamedTuple):
    """The keys of a dict input."""

    question: str = "question"
    answer: str = "answer"
    context: str = "context"


def parse_input(value: Any, keys: InputKeys) -> Pair:
    """The pair in one input (a str, a message, or a dict holding them); raises a clear
    TypeError or ValueError if there is none."""
    question: Any = ""
    answer = value
    context: Sources | None = None
    if isinstance(value, Mapping):
        if keys.answer not in value:
            raise ValueError(
                f"AlignerSquad got a dict without an {keys.answer!r} key "
                f"(keys: {sorted(map(str, value))}); set answer_key= to the right one"
            )
        answer = value[keys.answer]
        if value.get(keys.question) is not None:
            question = question_from_input(value[keys.question], keys.question)
        context = context_passages(value.get(keys.context), keys.context)
    text = answer_text(answer)
    if tool_calls_only(answer, text):
        skipped = AlignmentResult.skipped(question, text, "tool calls only: no text to inspect")
        return Pair(question, text, answer, skipped)
    validate_pair(question, text)
    return Pair(question, text, answer, None, context)


def input_fallback(value: Any, keys: InputKeys) -> tuple[str, str, Any] | None:
    """What an invalid input still holds: its answer (a str or a message), if any."""
    answer = value.get(keys.answer) if isinstance(value, Mapping) else value
    if not isinstance(answer, (str, BaseMessage)):
        return None
    question = value.get(keys.question) if isinstance(value, Mapping) else ""
    return (question if isinstance(question, str) else ""), answer_text(answer), answer


def pair_contexts(pairs: Sequence[Pair]) -> list[tuple[str, ...] | None] | None:
    """The pairs' contexts for the engine (None when no pair has one)."""
    contexts = [None if p.context is None else p.context.passages for p in pairs]
    return contexts if any(c is not None for c in contexts) else None


def renumbered(pair: Pair, result: AlignmentResult) -> AlignmentResult:
    """The result with its grounding passages numbered as the pair's own sources."""
    return result if pair.context is None else pair.context.renumber(result)
