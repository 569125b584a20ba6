"""A squad's answer as a stream: the squad's stream step machine, driven sync or async."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

from aligners.errors import AlignmentViolation
from aligners.sources import as_passages
from aligners.squad.result import AlignmentResult
from aligners.steps import Emit, Machine, Work, adrive_stream, drive_stream, resume
from aligners.validation import validate_pair

if TYPE_CHECKING:
    from aligners.squad.squad import Squad

logger = logging.getLogger(__name__)

#: The record of a stage after the one that streamed.
ALREADY_STREAMED = "not applied: an earlier stage was already streamed"


def stream_failure(error: Exception, pieces: list[str]) -> str:
    """The record of an aligner stream that broke off."""
    streamed = sum(len(p) for p in pieces)
    return (
        f"aligner failed while streaming ({type(error).__name__}: {error}) after {streamed} "
        "characters; result.text keeps the previous text"
    )


class SquadStream:
    """Iterate for text pieces (sync or async); ``result`` holds the record afterwards."""

    def __init__(self, squad: Squad, question: str, answer: str, context: Any = None) -> None:
        self.squad = squad
        self.question = question
        self.answer = answer
        self.context = context
        self.passages: tuple[str, ...] = ()
        self.result: AlignmentResult | None = None
        #: Why the pair cannot be streamed (``on_error="return_original"``: sent back as it was).
        self._invalid: Exception | None = None
        try:
            validate_pair(question, answer)
            self.passages = as_passages(context)
        except (TypeError, ValueError) as error:
            if squad.config.on_error == "raise":
                raise
            self._invalid = error

    def _fallback(self, error: Exception) -> str:
        """Record the failure and return the text to send instead (the answer as it was)."""
        if isinstance(error, AlignmentViolation) or self.squad.config.on_error == "raise":
            raise error
        logger.warning("squad failed on a stream; returning the original: %s", error)
        self.result = self.squad.failure_record(self.question, self.answer, error)
        return self.result.text

    def steps(self) -> Machine[None]:
        """This stream as one step machine (what :meth:`__iter__` and :meth:`__aiter__` drive):
        the squad's stream steps, with the record kept on ``result``."""
        squad = self.squad
        if squad.decides_whole:
            # Streamed text cannot be taken back, so the other policies decide on the whole
            # answer first and send it in one piece.
            self.result = yield Work(
                partial(squad.align, self.question, self.answer, self.context),
                partial(squad.aalign, self.question, self.answer, self.context),
            )
            yield Emit(self.result.text)
            return
        if self._invalid is not None:
            if text := self._fallback(self._invalid):  # an empty answer: nothing to send
                yield Emit(text)
            return
        machine = squad.stream_steps(self.question, self.answer, self.passages)
        first = next(machine)  # the first scoring, the one step that falls back
        try:
            reply = yield first
        except Exception as failure:
            if text := self._fallback(failure):
                yield Emit(text)
            return
        self.result = yield from resume(machine, reply)

    def __iter__(self) -> Iterator[str]:
        yield from drive_stream(self.steps())

    async def __aiter__(self) -> AsyncIterator[str]:
        async for text in adrive_stream(self.steps()):
            yield text
