"""Answer-level alignment shared by the query-engine and chat-engine wrappers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from aligners import AlignmentResult, Squad
from llamaindex_aligners.instrumentation import (
    Target,
    aiter_squad_stream,
    arun_squad,
    iter_squad_stream,
    run_squad,
)
from llamaindex_aligners.settings import AlignmentSettings, configure_squad, error_record

logger = logging.getLogger(__name__)

#: The key under which wrappers put the squad's record in ``response.metadata``.
METADATA_KEY = "aligners"

Record = dict[str, Any]


def skipped_record(question: str, answer: str, reason: str) -> Record:
    """The record of an answer the squad did not look at (empty, or not text)."""
    return {
        "question": question,
        "original": answer,
        "text": answer,
        "applied": [],
        "changed": False,
        "passed": None,
        "skipped": reason,
    }


class AnswerAligner:
    """Runs a squad on one (question, answer) and returns the text to show plus its record."""

    def __init__(self, squad: Squad | None, settings: AlignmentSettings, target: Target) -> None:
        self.settings = settings
        self.target: Target = target
        self._raw = squad
        # A given squad is configured now, so bad criteria or thresholds fail at construction.
        self._squad = configure_squad(squad, settings) if squad is not None else None

    @property
    def squad(self) -> Squad:
        """The configured squad (the offline default is built on first use; no weights yet)."""
        if self._squad is None:
            self._squad = configure_squad(self._raw, self.settings)
        return self._squad

    def _failed(self, question: str, answer: str, error: Exception) -> tuple[str, Record]:
        if self.settings.on_error == "raise":
            raise error
        logger.warning("aligner squad failed; returning the original answer: %s", error)
        return answer, error_record(question, answer, error)

    def align(self, question: str, answer: str) -> tuple[str, Record]:
        """The text to return and the record for ``response.metadata``."""
        if not answer.strip():
            return answer, skipped_record(question, answer, "empty answer")
        squad = self.squad
        try:
            result = run_squad(squad, [question], [answer], target=self.target)[0]
        except Exception as error:
            return self._failed(question, answer, error)
        return result.text, result.to_record()

    async def aalign(self, question: str, answer: str) -> tuple[str, Record]:
        """Async :meth:`align`."""
        if not answer.strip():
            return answer, skipped_record(question, answer, "empty answer")
        squad = self.squad
        try:
            result = (await arun_squad(squad, [question], [answer], target=self.target))[0]
        except Exception as error:
            return self._failed(question, answer, error)
        return result.text, result.to_record()

    def stream(
        self, question: str, answer: str, on_done: Callable[[Record], None]
    ) -> Iterator[str]:
        """Yield the aligned text piece by piece; ``on_done(record)`` once it has all streamed."""
        if not answer.strip():
            on_done(skipped_record(question, answer, "empty answer"))
            if answer:
                yield answer
            return
        squad = self.squad
        started = False

        def done(result: AlignmentResult) -> None:
            on_done(result.to_record())

        try:
            for piece in iter_squad_stream(squad, question, answer, done, target=self.target):
                started = True
                yield piece
        except Exception as error:
            # The squad keeps aligner failures itself; what lands here is the inspectors failing
            # before any text streamed. Once text has gone out it cannot be replaced: re-raise.
            if started:
                raise
            text, record = self._failed(question, answer, error)
            on_done(record)
            yield text

    async def astream(
        self, question: str, answer: str, on_done: Callable[[Record], None]
    ) -> AsyncIterator[str]:
        """Async :meth:`stream`."""
        if not answer.strip():
            on_done(skipped_record(question, answer, "empty answer"))
            if answer:
                yield answer
            return
        squad = self.squad
        started = False

        def done(result: AlignmentResult) -> None:
            on_done(result.to_record())

        try:
            async for piece in aiter_squad_stream(
                squad, question, answer, done, target=self.target
            ):
                started = True
                yield piece
        except Exception as error:
            if started:
                raise
            text, record = self._failed(question, answer, error)
            on_done(record)
            yield text


def settings_from(
    settings: AlignmentSettings | None,
    criteria: list[str] | str | None,
    threshold: float | dict[str, float] | None,
    check_only: bool,
    on_error: str,
) -> AlignmentSettings:
    """Settings from keyword arguments (or a ready :class:`AlignmentSettings`)."""
    if settings is not None:
        return settings
    return AlignmentSettings(
        criteria=criteria,  # type: ignore[arg-type]  # a str is accepted and wrapped
        threshold=threshold,
        check_only=check_only,
        on_error=on_error,  # type: ignore[arg-type]
    )
