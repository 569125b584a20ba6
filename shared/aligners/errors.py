"""Errors raised by the engine. All subclass the built-in type a user would catch anyway."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class AlignersError(Exception):
    """Base class for errors specific to this library."""


class UnknownCriterionError(AlignersError, ValueError):
    """A criterion name that is neither built in nor registered."""


class UnknownFormatError(AlignersError, ValueError):
    """A prompt format name that is not registered."""


class ModelNotFoundError(AlignersError, FileNotFoundError):
    """A model id or path that cannot be loaded."""


class InputTooLongError(AlignersError, ValueError):
    """An answer does not fit the model's context and the overflow policy is ``"error"``."""


class GenerationError(AlignersError, RuntimeError):
    """A backend failed to produce text (server down, malformed output, ...)."""


class AlignmentViolation(AlignersError):  # noqa: N818 (the name says what happened, like Guardrails AI's)
    """An inspector flagged an answer and the squad's policy is ``on_flag="raise"``.

    ``result`` is the first flagged answer's full record (scores, thresholds, which criteria
    flagged it); ``results`` holds the record of every answer in the batch, so a caller can keep
    the answers that passed.
    """

    def __init__(self, result: Any, results: Sequence[Any] | None = None) -> None:
        self.result = result
        self.results = list(results) if results is not None else [result]
        if getattr(result, "stage", "answer") == "request":  # a request check turned it away
            reason = getattr(result, "block_reason", None) or "the request inspector turned it away"
            super().__init__(f"request turned away before any model ran ({reason})")
            return
        scores = ", ".join(
            f"{name} {result.initial_scores.get(name, float('nan')):.2f} < "
            f"{result.thresholds.get(name, 0.5):.2f}"
            for name in result.flagged
        )
        super().__init__(f"answer flagged by the inspectors ({scores})")

    def __reduce__(self) -> Any:  # picklable across processes, like the built-in errors
        return (type(self), (self.result, self.results))
