"""A squad's answer as a stream: two small drivers of the squad's stream step machine."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from aligners.errors import AlignmentViolation
from aligners.sources import as_passages
from aligners.squad.result import AlignmentResult
from aligners.squad.steps import Emit, StreamRewrite, Work
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

    def __iter__(self) -> Iterator[str]:
        squad = self.squad
        if squad.decides_whole:
            # Streamed text cannot be taken back, so the other policies decide on the whole
            # answer first and send it in one piece.
            self.result = squad.align(self.question, self.answer, self.context)
            yield self.result.text
            return
        if self._invalid is not None:
            if text := self._fallback(self._invalid):  # an empty answer: nothing to send
                yield text
            return
        machine = squad.stream_steps(self.question, self.answer, self.passages)
        reply: Any = None
        first = True
        while True:
            try:
                step = machine.send(reply)
            except StopIteration as done:
                self.result = done.value
                return
            reply = None
            if isinstance(step, Emit):
                yield step.text
            elif isinstance(step, StreamRewrite):
                pieces: list[str] = []
                try:
                    for piece in step.pieces():
                        pieces.append(piece)
                        yield piece
                except Exception as error:
                    reply = (pieces, error)
                reply = reply or (pieces, None)
            else:
                try:
                    reply = step.run()
                except Exception as failure:
                    if not first:  # only the first scoring falls back; later steps record
                        raise
                    if text := self._fallback(failure):
                        yield text
                    return
                first = False

    async def __aiter__(self) -> AsyncIterator[str]:
        squad = self.squad
        if squad.decides_whole:
            self.result = await squad.aalign(self.question, self.answer, self.context)
            yield self.result.text
            return
        if self._invalid is not None:
            if text := self._fallback(self._invalid):
                yield text
            return
        machine = squad.stream_steps(self.question, self.answer, self.passages)
        reply: Any = None
        first = True
        while True:
            try:
                step = machine.send(reply)
            except StopIteration as done:
                self.result = done.value
                return
            reply = None
            if isinstance(step, Emit):
                yield step.text
            elif isinstance(step, StreamRewrite):
                pieces: list[str] = []
                try:
                    async for piece in step.apieces():
                        pieces.append(piece)
                        yield piece
                except Exception as error:
                    reply = (pieces, error)
                reply = reply or (pieces, None)
            else:
                try:
                    reply = await _arun(step)
                except Exception as failure:
                    if not first:
                        raise
                    if text := self._fallback(failure):
                        yield text
                    return
                first = False


async def _arun(step: Work) -> Any:
    return await (step.arun() if step.arun else asyncio.to_thread(step.run))
