"""Input checks shared by aligners, inspectors and squads: clear errors before any model runs."""

from __future__ import annotations

import sys
import unicodedata
import warnings
from collections.abc import Sequence
from typing import Any

#: Packages whose frames a deprecation warning skips, so that it names the caller's line.
_INTERNAL = ("aligners", "langchain_aligners", "llamaindex_aligners", "pydantic", "pydantic_core")


def _package(frame: Any) -> str:
    return str(frame.f_globals.get("__name__", "")).partition(".")[0]


def warn_deprecated(message: str) -> None:
    """A ``DeprecationWarning`` (``message`` says what changes and what to do instead),
    attributed to the first caller outside this project and pydantic (a validator runs a few
    frames below the line that built the object)."""
    level, frame = 2, sys._getframe(1)
    while frame.f_back is not None and _package(frame) in _INTERNAL:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, DeprecationWarning, stacklevel=level)


def is_blank(text: str) -> bool:
    """Whether ``text`` shows nothing: only whitespace and invisible format characters
    (Unicode category Cf: zero-width space U+200B, joiners U+200C/U+200D, word joiner U+2060,
    the byte-order mark U+FEFF, soft hyphen U+00AD, direction marks...)."""
    return all(c.isspace() or unicodedata.category(c) == "Cf" for c in text)


def _invisible(text: str) -> str:
    """The code points of the format characters in ``text`` (for an error message)."""
    points = sorted({f"U+{ord(c):04X}" for c in text if unicodedata.category(c) == "Cf"})
    return ", ".join(points[:5]) + (", ..." if len(points) > 5 else "")


def validate_text(text: str, field: str) -> None:
    """Raise ``ValueError`` for text no tokenizer can take (lone surrogates, e.g. from bytes
    decoded with ``surrogateescape``), naming the field and the position."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(
            f"{field} is not valid Unicode text: a lone surrogate {text[error.start]!r} at "
            f"position {error.start} (decode input bytes as UTF-8 with errors='replace')"
        ) from None


def validate_pair(question: Any, answer: Any) -> None:
    """Raise ``TypeError``/``ValueError`` naming the field for a pair nothing can align."""
    if not isinstance(question, str):
        raise TypeError(f"question must be a str, got {type(question).__name__}")
    if not isinstance(answer, str):
        raise TypeError(f"answer must be a str, got {type(answer).__name__}")
    if not answer.strip():
        raise ValueError("answer is empty: there is nothing to align")
    if is_blank(answer):
        raise ValueError(
            f"answer is empty: it holds only invisible characters ({_invisible(answer)}) and "
            "whitespace; there is nothing to align"
        )
    validate_text(question, "question")
    validate_text(answer, "answer")


def validate_containers(questions: Sequence[Any], answers: Sequence[Any]) -> None:
    """Check that two batches are sequences of the same length (not their items)."""
    for field, value in (("questions", questions), ("answers", answers)):
        if isinstance(value, (str, bytes)):
            kind = "str" if isinstance(value, str) else "bytes object"
            raise TypeError(f"questions and answers must be sequences of str, not a single {kind}")
        if not hasattr(value, "__len__"):  # None, a number, a generator: name it, not len()
            raise TypeError(
                f"{field} must be a sequence of str (a list or tuple), got {type(value).__name__}"
            )
    if len(questions) != len(answers):
        raise ValueError(
            f"questions and answers differ in length ({len(questions)} vs {len(answers)})"
        )


def validate_batch(questions: Sequence[Any], answers: Sequence[Any]) -> None:
    """Check that two batches are sequences of the same length holding valid pairs."""
    validate_containers(questions, answers)
    for i, (question, answer) in enumerate(zip(questions, answers)):
        validate_item(i, question, answer)


def validate_item(index: int, question: Any, answer: Any) -> None:
    """:func:`validate_pair` for item ``index`` of a batch; the error names the item."""
    try:
        validate_pair(question, answer)
    except (TypeError, ValueError) as error:
        field = "questions" if str(error).startswith("question") else "answers"
        raise type(error)(f"{field}[{index}]: {error}") from None
