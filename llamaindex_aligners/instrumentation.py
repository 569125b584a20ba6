"""Squad runs inside llama-index instrumentation: one span per squad call, events for its record.

Every squad call (answer, chat reply, or a batch of retrieved nodes) opens a span on this
module's dispatcher (a child of llama-index's root dispatcher, so handlers attached there see
it). Inside the span it emits :class:`AlignmentStartEvent`, one :class:`InspectorScoresEvent` per
scoring pass (before the first stage and after each), one :class:`AlignerAppliedEvent` per
aligner that rewrote, and :class:`AlignmentEndEvent` (or :class:`AlignmentErrorEvent`; under
``on_flag="raise"`` a flagged text gives :class:`AlignmentViolationEvent`, a subclass of it).
A request check (``check_request=``) opens its own span and emits :class:`RequestCheckEvent`,
plus :class:`RequestBlockedEvent` when the request is turned away.
The squad runs as one engine call, so the score and aligner events are emitted from its record
when that call returns, not while it runs.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from functools import partial
from typing import Any, Literal

import llama_index.core.instrumentation as instrument
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.span import active_span_id

from aligners import (
    AlignmentResult,
    AlignmentViolation,
    Machine,
    RequestCheck,
    RequestInspector,
    Squad,
    StreamRewrite,
    Work,
    adrive,
    adrive_stream,
    drive,
    drive_stream,
)

dispatcher = instrument.get_dispatcher(__name__)

Target = Literal["answer", "chat", "nodes"]
#: Where a request check runs: before a query engine or before a chat engine.
RequestTarget = Literal["answer", "chat"]


class AlignmentStartEvent(BaseEvent):
    """A squad starts on ``len(answers)`` texts; ``contexts`` holds each one's passages (the
    retrieved nodes' text) when it has sources."""

    target: str
    criteria: list[str]
    thresholds: dict[str, float]
    check_only: bool
    questions: list[str]
    answers: list[str]
    contexts: list[list[str]] | None = None

    @classmethod
    def class_name(cls) -> str:
        return "AlignmentStartEvent"


class InspectorScoresEvent(BaseEvent):
    """The inspectors' P(aligned) for one text at one point (``stage`` 0 = before any aligner)."""

    target: str
    item: int
    stage: int
    scores: dict[str, float]
    thresholds: dict[str, float]
    failing: list[str]

    @classmethod
    def class_name(cls) -> str:
        return "InspectorScoresEvent"


class AlignerAppliedEvent(BaseEvent):
    """An aligner rewrote one text."""

    target: str
    item: int
    stage: int
    criterion: str
    score_before: float | None
    truncated: bool

    @classmethod
    def class_name(cls) -> str:
        return "AlignerAppliedEvent"


class AlignmentEndEvent(BaseEvent):
    """The squad finished one text; ``record`` is ``AlignmentResult.to_record()``."""

    target: str
    item: int
    applied: list[str]
    changed: bool
    passed: bool
    record: dict[str, Any]

    @classmethod
    def class_name(cls) -> str:
        return "AlignmentEndEvent"


class AlignmentErrorEvent(BaseEvent):
    """The squad call failed (the integration then keeps or raises, per ``on_error``)."""

    target: str
    error: str

    @classmethod
    def class_name(cls) -> str:
        return "AlignmentErrorEvent"


class AlignmentViolationEvent(AlignmentErrorEvent):
    """The squad's policy is ``on_flag="raise"`` and it flagged a text: the integration raises
    ``aligners.AlignmentViolation`` (never kept by ``on_error``). ``record`` is the first flagged
    text's record, ``records`` every record of the batch (flagged ones have action ``raised``)."""

    record: dict[str, Any]
    records: list[dict[str, Any]]

    @classmethod
    def class_name(cls) -> str:
        return "AlignmentViolationEvent"


class RequestCheckEvent(BaseEvent):
    """A request inspector scored the request; ``record`` is ``RequestCheck.to_record()``."""

    target: str
    allowed: bool
    record: dict[str, Any]

    @classmethod
    def class_name(cls) -> str:
        return "RequestCheckEvent"


class RequestBlockedEvent(BaseEvent):
    """The request was turned away: no retrieval, no LLM call; the reply is ``blocked_message``."""

    target: str
    record: dict[str, Any]
    blocked_message: str

    @classmethod
    def class_name(cls) -> str:
        return "RequestBlockedEvent"


def _emit_start(
    squad: Squad,
    questions: Sequence[str],
    answers: Sequence[str],
    target: str,
    contexts: Sequence[Sequence[str] | None] | None = None,
    **kw: Any,
) -> None:
    dispatcher.event(
        AlignmentStartEvent(
            target=target,
            criteria=squad.criteria,
            thresholds=squad.thresholds,
            check_only=squad.config.check_only,
            questions=list(questions),
            answers=list(answers),
            contexts=None if contexts is None else [_listed(c) for c in contexts],
            **kw,
        )
    )


def _listed(context: Sequence[str] | str | None) -> list[str]:
    if context is None:
        return []
    return [context] if isinstance(context, str) else list(context)


def _emit_results(results: Sequence[AlignmentResult], target: str, **kw: Any) -> None:
    for item, result in enumerate(results):
        for stage, scores in enumerate(result.trajectory):
            failing = [n for n, s in scores.items() if s < result.thresholds.get(n, 0.5)]
            dispatcher.event(
                InspectorScoresEvent(
                    target=target,
                    item=item,
                    stage=stage,
                    scores=scores,
                    thresholds=result.thresholds,
                    failing=failing,
                    **kw,
                )
            )
        for record in result.stages:
            if record.applied:
                dispatcher.event(
                    AlignerAppliedEvent(
                        target=target,
                        item=item,
                        stage=record.stage,
                        criterion=record.criterion,
                        score_before=record.score_before,
                        truncated=record.truncated,
                        **kw,
                    )
                )
        dispatcher.event(
            AlignmentEndEvent(
                target=target,
                item=item,
                applied=list(result.applied),
                changed=result.changed,
                passed=result.passed,
                record=result.to_record(),
                **kw,
            )
        )


def _error_event(error: Exception, target: str, **kw: Any) -> AlignmentErrorEvent:
    message = f"{type(error).__name__}: {error}"
    if isinstance(error, AlignmentViolation):
        return AlignmentViolationEvent(
            target=target,
            error=message,
            record=error.result.to_record(),
            records=[r.to_record() for r in error.results],
            **kw,
        )
    return AlignmentErrorEvent(target=target, error=message, **kw)


def _run_squad_steps(
    squad: Squad,
    questions: Sequence[str],
    answers: Sequence[str],
    target: Target,
    contexts: Sequence[Sequence[str] | None] | None,
) -> Machine[list[AlignmentResult]]:
    _emit_start(squad, questions, answers, target, contexts)
    try:
        results = yield Work(
            partial(squad.align_batch, questions, answers, contexts),
            partial(squad.aalign_batch, questions, answers, contexts),
        )
    except Exception as error:
        dispatcher.event(_error_event(error, target))
        raise
    _emit_results(results, target)
    return results


@dispatcher.span
def run_squad(
    squad: Squad,
    questions: Sequence[str],
    answers: Sequence[str],
    target: Target = "answer",
    contexts: Sequence[Sequence[str] | None] | None = None,
) -> list[AlignmentResult]:
    """``squad.align_batch`` inside a span, with events (``check_only`` squads only score);
    ``contexts``: each answer's passages (None: no sources)."""
    return drive(_run_squad_steps(squad, questions, answers, target, contexts))


@dispatcher.span
async def arun_squad(
    squad: Squad,
    questions: Sequence[str],
    answers: Sequence[str],
    target: Target = "answer",
    contexts: Sequence[Sequence[str] | None] | None = None,
) -> list[AlignmentResult]:
    """Async :func:`run_squad` (``squad.aalign_batch``; the event loop stays free)."""
    return await adrive(_run_squad_steps(squad, questions, answers, target, contexts))


def stream_squad(question: str, answer: str) -> None:
    """Stand-in whose signature names the arguments of a streaming squad span."""


class _StreamSpan:
    """A span opened by hand: a generator's span must last until it is consumed, which the
    decorator cannot do (it closes when the generator object is returned)."""

    def __init__(self, question: str, answer: str) -> None:
        self.id_ = f"stream_squad-{uuid.uuid4()}"
        self.bound = inspect.signature(stream_squad).bind(question, answer)
        dispatcher.span_enter(
            id_=self.id_, bound_args=self.bound, parent_id=active_span_id.get(), tags={}
        )

    def exit(self, result: Any) -> None:
        dispatcher.span_exit(id_=self.id_, bound_args=self.bound, result=result)

    def drop(self, error: BaseException) -> None:
        dispatcher.span_drop(id_=self.id_, bound_args=self.bound, err=error)


def _stream_failed(span: _StreamSpan, target: str, error: BaseException) -> None:
    if isinstance(error, Exception):
        dispatcher.event(_error_event(error, target, span_id=span.id_))
    span.drop(error)


def _squad_stream_steps(
    squad: Squad,
    question: str,
    answer: str,
    on_done: Callable[[AlignmentResult], None],
    target: Target,
    context: Sequence[str] | None,
) -> Machine[None]:
    span = _StreamSpan(question, answer)
    contexts = None if context is None else [context]
    _emit_start(squad, [question], [answer], target, contexts, span_id=span.id_)
    stream = squad.stream(question, answer, context)
    try:
        _, error = yield StreamRewrite(lambda: iter(stream), lambda: stream.__aiter__())
    except BaseException as stopped:  # GeneratorExit: a consumer that stopped early
        _stream_failed(span, target, stopped)
        raise
    if error is not None:
        _stream_failed(span, target, error)
        raise error
    assert stream.result is not None
    _emit_results([stream.result], target, span_id=span.id_)
    on_done(stream.result)
    span.exit(stream.result)


def iter_squad_stream(
    squad: Squad,
    question: str,
    answer: str,
    on_done: Callable[[AlignmentResult], None],
    target: Target = "answer",
    context: Sequence[str] | None = None,
) -> Iterator[str]:
    """Yield ``squad.stream(question, answer, context)`` pieces in a span; ``on_done(result)``
    at the end."""
    return drive_stream(_squad_stream_steps(squad, question, answer, on_done, target, context))


def aiter_squad_stream(
    squad: Squad,
    question: str,
    answer: str,
    on_done: Callable[[AlignmentResult], None],
    target: Target = "answer",
    context: Sequence[str] | None = None,
) -> AsyncIterator[str]:
    """Async :func:`iter_squad_stream` (the squad's async stream; the loop stays free)."""
    return adrive_stream(_squad_stream_steps(squad, question, answer, on_done, target, context))


def emit_violation(error: AlignmentViolation, target: Target) -> None:
    """The event of a violation the integration raises itself (not from inside a squad call)."""
    dispatcher.event(_error_event(error, target))


def _emit_check(check: RequestCheck, target: str, blocked_message: str) -> None:
    record = check.to_record()
    dispatcher.event(RequestCheckEvent(target=target, allowed=check.allowed, record=record))
    if not check.allowed:
        dispatcher.event(
            RequestBlockedEvent(target=target, record=record, blocked_message=blocked_message)
        )


def _check_steps(
    inspector: RequestInspector,
    request: str,
    threshold: float | None,
    blocked_message: str,
    target: RequestTarget,
) -> Machine[RequestCheck]:
    try:
        check = yield Work(
            partial(inspector.check, request, threshold),
            partial(inspector.acheck, request, threshold),
        )
    except Exception as error:
        dispatcher.event(_error_event(error, "request"))
        raise
    _emit_check(check, target, blocked_message)
    return check


@dispatcher.span
def check_request(
    inspector: RequestInspector,
    request: str,
    threshold: float | None,
    blocked_message: str,
    target: RequestTarget = "answer",
) -> RequestCheck:
    """``inspector.check(request, threshold)`` inside a span, with its events."""
    return drive(_check_steps(inspector, request, threshold, blocked_message, target))


@dispatcher.span
async def acheck_request(
    inspector: RequestInspector,
    request: str,
    threshold: float | None,
    blocked_message: str,
    target: RequestTarget = "answer",
) -> RequestCheck:
    """Async :func:`check_request` (``inspector.acheck``: the encoder runs off the event loop)."""
    return await adrive(_check_steps(inspector, request, threshold, blocked_message, target))
