"""What :class:`~langchain_aligners.AlignerSquad` hands back: its outputs (text, message,
record), its stream's chunks and its custom events, built from a result without I/O."""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.callbacks.manager import adispatch_custom_event, dispatch_custom_event
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import RunnableConfig

from aligners import AlignmentResult, AlignmentViolation, Work
from langchain_aligners._inputs import (
    METADATA_KEY,
    record_of,
    record_passed,
    stream_chunk,
    tool_call_chunks_of,
    with_result,
)

#: Custom event with the inspector scores of one answer (``astream_events`` name).
SCORES_EVENT = "aligners_scores"
#: Custom event naming the aligners that rewrote one answer.
APPLIED_EVENT = "aligners_applied"

OutputMode = Literal["auto", "text", "message", "record"]


def output_of(mode: OutputMode, answer: Any, result: AlignmentResult) -> Any:
    """The output for ``answer`` aligned into ``result`` (``mode`` as ``AlignerSquad.output``)."""
    if mode == "auto":
        if isinstance(answer, BaseMessage):
            mode = "message"
        else:
            mode = "record" if result.check_only else "text"
    if mode == "record":
        return record_of(result)
    if mode == "text":
        return result.text
    if isinstance(answer, BaseMessage):
        return with_result(answer, result.text, record_of(result), blocked=result.blocked)
    return AIMessage(content=result.text, response_metadata={METADATA_KEY: record_of(result)})


def output_or_violation(mode: OutputMode, answer: Any, result: AlignmentResult) -> Any:
    """A raised answer becomes its own error (``return_exceptions=True`` returns it in
    place; otherwise the batch raises the first one), so one answer cannot hide others."""
    if result.action == "raised":
        return AlignmentViolation(result)
    return output_of(mode, answer, result)


def events_of(result: AlignmentResult) -> list[tuple[str, dict[str, Any]]]:
    """The custom events of one result: its scores, then what was applied."""
    scores = {
        "scores": result.initial_scores,
        "final_scores": result.final_scores,
        "thresholds": result.thresholds,
        "flagged": result.flagged,
        "question_provided": result.question_provided,
        "check_only": result.check_only,
    }
    applied = {
        "applied": result.applied,
        "changed": result.changed,
        "passed": record_passed(result),
        "failures": result.failures,
        "action": result.action,
        "on_flag": result.on_flag,
    }
    return [(SCORES_EVENT, scores), (APPLIED_EVENT, applied)]


def emit(result: AlignmentResult, config: RunnableConfig) -> None:
    for name, data in events_of(result):
        dispatch_custom_event(name, data, config=config)


async def aemit(result: AlignmentResult, config: RunnableConfig) -> None:
    for name, data in events_of(result):
        await adispatch_custom_event(name, data, config=config)


def emit_step(result: AlignmentResult, config: RunnableConfig) -> Work:
    """The step that dispatches one result's events (sync or async, as the driver runs)."""
    return Work(lambda: emit(result, config), lambda: aemit(result, config))


def stream_mode(output: OutputMode, original: Any, check_only: bool) -> OutputMode:
    """What a stream sends: ``output``, or in auto mode the answer's own type (the record of a
    str answer when ``check_only``)."""
    if output != "auto":
        return output
    if isinstance(original, BaseMessage):
        return "message"
    return "record" if check_only else "text"


def piece_chunks(mode: OutputMode, template: BaseMessage | None, piece: str) -> list[Any]:
    """What one streamed piece of text becomes."""
    if mode == "text":
        return [piece]
    if mode == "message":
        return [stream_chunk(piece, template)]
    return []


def stream_tail(
    mode: OutputMode, template: BaseMessage | None, result: AlignmentResult
) -> list[Any]:
    """What a stream sends after the text: the record, or a message chunk carrying it."""
    if mode == "record":
        return [record_of(result)]
    if mode == "message":
        # Metadata goes on one chunk only: chunk addition would concatenate repeated strings.
        metadata = dict(getattr(template, "response_metadata", {}) or {})
        metadata[METADATA_KEY] = record_of(result)
        # Tool calls ride on the last chunk, after the aligned text (not when blocked).
        calls = [] if result.blocked else tool_call_chunks_of(template)
        return [stream_chunk("", template, response_metadata=metadata, tool_call_chunks=calls)]
    return []
