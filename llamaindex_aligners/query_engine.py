"""Answer-level alignment: a query engine that aligns the answer of any other query engine."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Generator
from functools import partial
from typing import Any

from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.response.schema import (
    RESPONSE_TYPE,
    AsyncStreamingResponse,
    PydanticResponse,
    Response,
    StreamingResponse,
)
from llama_index.core.callbacks.base import CallbackManager
from llama_index.core.prompts.mixin import PromptMixinType
from llama_index.core.schema import NodeWithScore, QueryBundle

from aligners import (
    Machine,
    RequestInspector,
    Squad,
    SquadPolicy,
    Work,
    adrive,
    adrive_stream,
    drive,
    drive_stream,
    emitting,
)
from llamaindex_aligners.answers import (
    METADATA_KEY,
    AnswerAligner,
    Record,
    RequestGate,
    Sources,
    request_blocked_record,
    request_violation,
    settings_from,
    skipped_record,
    with_request_check,
)
from llamaindex_aligners.settings import AlignmentSettings, OnFlag


class AlignedQueryEngine(BaseQueryEngine):
    """Runs ``query_engine``, then aligns ``response.response`` with the query as the question.

    ``source_nodes`` are kept; ``response.metadata["aligners"]`` holds the squad's record
    (``AlignmentResult.to_record()``: original, text, applied, trajectory, ...). The source
    nodes' text is the answer's context, one passage per node in order: criteria that read
    sources (``grounded``) check the answer against what was retrieved, and the record's
    ``grounding.sentences[i].passage`` indexes ``response.source_nodes``. Without source nodes
    such criteria are skipped (the record's ``not_inspected`` says so). Streaming
    responses are read whole, aligned, then streamed again piece by piece; their record is in
    the metadata once the stream has been consumed.

    ``on_flag`` picks what happens to a flagged answer (``None`` keeps the squad's own policy,
    ``"rewrite"`` by default): ``"block"`` replaces it with ``blocked_message`` (the record's
    ``action`` is ``"blocked"``), ``"raise"`` raises ``aligners.AlignmentViolation`` out of
    ``query``/``aquery`` (``on_error`` never keeps it), ``"rewrite_or_block"`` rewrites and blocks
    what still fails. Under those policies a stream is decided before ``query`` returns and comes
    in one piece, with its record already in the metadata.

    ``check_request`` (``True``: the shipped request inspector, or an
    ``aligners.RequestInspector``) checks the query first: a request scored under
    ``request_threshold`` (default: the inspector's own) is answered with the blocked message
    without calling the wrapped engine (no retrieval, no LLM); the record is
    ``{"action": "blocked", "stage": "request", "request_check": {...}, ...}``; under
    ``on_flag="raise"`` the request raises ``aligners.AlignmentViolation`` instead (its
    ``result`` has ``stage: "request"``, ``action: "raised"``), as the proxy answers 422. A
    request that passes has its verdict in the answer's record under ``"request_check"``.

    Example:
        >>> engine = AlignedQueryEngine(qe, criteria=["ethical"])  # doctest: +SKIP
        >>> response = engine.query("How do I pick a lock?")  # doctest: +SKIP
        >>> response.metadata["aligners"]["applied"]  # doctest: +SKIP
    """

    def __init__(
        self,
        query_engine: BaseQueryEngine,
        squad: Squad | None = None,
        *,
        criteria: list[str] | str | None = None,
        threshold: float | dict[str, float] | None = None,
        block_threshold: float | dict[str, float] | None = None,
        check_only: bool | None = None,
        on_error: str | None = None,
        on_flag: OnFlag | None = None,
        blocked_message: str | None = None,
        check_request: bool | RequestInspector | None = None,
        request_threshold: float | None = None,
        policy: SquadPolicy | None = None,
        settings: AlignmentSettings | None = None,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        if not isinstance(query_engine, BaseQueryEngine):
            raise TypeError(
                "AlignedQueryEngine wraps a llama-index BaseQueryEngine, "
                f"got {type(query_engine).__name__}"
            )
        self._query_engine = query_engine
        self.settings = settings_from(
            settings,
            criteria,
            policy,
            threshold=threshold,
            block_threshold=block_threshold,
            check_only=check_only,
            on_error=on_error,
            on_flag=on_flag,
            blocked_message=blocked_message,
            check_request=check_request,
            request_threshold=request_threshold,
        )
        self._aligner = AnswerAligner(squad, self.settings, target="answer")
        self._gate = RequestGate(self.settings.resolved_policy, target="answer")
        super().__init__(callback_manager or query_engine.callback_manager)

    @property
    def query_engine(self) -> BaseQueryEngine:
        """The wrapped engine."""
        return self._query_engine

    @property
    def squad(self) -> Squad:
        """The configured squad that aligns the answers."""
        return self._aligner.squad

    @property
    def request_inspector(self) -> RequestInspector | None:
        """The inspector that checks each query first (None: no request check)."""
        return self._gate.inspector

    @property
    def request_threshold(self) -> float | None:
        """The request check's threshold (None: the inspector's own)."""
        return self._gate.threshold

    def _get_prompt_modules(self) -> PromptMixinType:
        return {"query_engine": self._query_engine}

    def retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        """The inner engine's retrieval (answers are aligned, retrieved nodes are not)."""
        return self._query_engine.retrieve(query_bundle)

    # -- querying ------------------------------------------------------------------------------

    @staticmethod
    def _question(query_bundle: QueryBundle) -> str:
        question = query_bundle.query_str
        if not isinstance(question, str) or not question.strip():
            raise ValueError(
                f"the query is empty ({question!r}): ask a question; nothing was retrieved or "
                "generated"
            )
        return question

    def _query_steps(self, query_bundle: QueryBundle, asynchronous: bool) -> Machine[RESPONSE_TYPE]:
        """One query as a step machine: ``_query`` drives it in this thread, ``_aquery`` on the
        event loop (the same checks, calls and records)."""
        question = self._question(query_bundle)
        check = yield from self._gate.check_steps(question, self._aligner.blocked_message)
        if check is not None and not check["allowed"]:
            return self._blocked(question, check, asynchronous)
        inner, bundle = self._query_engine, query_bundle
        response = yield Work(partial(inner.query, bundle), partial(inner.aquery, bundle))
        if isinstance(response, (StreamingResponse, AsyncStreamingResponse)):
            answer = yield Work(partial(_drain, response), partial(_adrain, response))
            steps = partial(self._aligner.stream_steps, question, answer)
            return (yield from _restream(response, steps, check, self._aligner.decides_whole))
        if isinstance(response, Response):
            if response.response is None:
                record = skipped_record(question, "", "no answer text")
                return _annotate(response, with_request_check(record, check))
            sources = Sources.of(response.source_nodes)
            aligned = self._aligner.align_steps(question, response.response, sources)
            text, record = yield from aligned
            record = with_request_check(record, check)
            return Response(text, response.source_nodes, _metadata(response.metadata, record))
        return _unsupported(response, question, check)

    def _query(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        return drive(self._query_steps(query_bundle, asynchronous=False))

    async def _aquery(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        return await adrive(self._query_steps(query_bundle, asynchronous=True))

    def _blocked(self, question: str, check: Record, asynchronous: bool) -> RESPONSE_TYPE:
        """The reply to a blocked request: the blocked message, streamed if the inner engine
        streams (in one piece), so callers of a streaming engine still get a stream."""
        text = self._aligner.blocked_message
        if self._aligner.raises:
            raise request_violation(question, text, check)
        metadata = {METADATA_KEY: request_blocked_record(question, text, check)}
        if not _streams(self._query_engine):
            return Response(text, [], metadata)
        if asynchronous:
            gen = adrive_stream(emitting([text]))
            return AsyncStreamingResponse(response_gen=gen, metadata=metadata)
        return StreamingResponse(response_gen=_gen([text]), metadata=metadata, response_txt=text)


def _streams(engine: BaseQueryEngine) -> bool:
    """Whether ``engine`` answers with streams (known for engines with a response synthesizer,
    like every index's ``as_query_engine(streaming=True)``)."""
    synthesizer = getattr(engine, "_response_synthesizer", None)
    return bool(getattr(synthesizer, "_streaming", False))


def _metadata(metadata: dict[str, Any] | None, record: Record) -> dict[str, Any]:
    return {**(metadata or {}), METADATA_KEY: record}


def _annotate(response: Response, record: Record) -> Response:
    return Response(response.response, response.source_nodes, _metadata(response.metadata, record))


def _unsupported(
    response: RESPONSE_TYPE, question: str, check: Record | None = None
) -> RESPONSE_TYPE:
    """Structured (pydantic) answers pass through: an aligner rewrites text, not objects."""
    if isinstance(response, PydanticResponse):
        record = skipped_record(question, str(response), "structured (pydantic) response")
        response.metadata = _metadata(response.metadata, with_request_check(record, check))
        return response
    raise TypeError(f"cannot align a response of type {type(response).__name__}")


def _drain(response: StreamingResponse | AsyncStreamingResponse) -> str:
    """The whole streamed answer (an aligner needs all of it before it can rewrite)."""
    if not isinstance(response, StreamingResponse):  # an async stream from a sync call
        raise TypeError(f"cannot align a response of type {type(response).__name__}")
    if response.response_txt is not None:
        return response.response_txt
    return "".join(response.response_gen)


async def _adrain(response: StreamingResponse | AsyncStreamingResponse) -> str:
    """:func:`_drain` on an event loop (a sync stream from an async call drains as it is)."""
    if isinstance(response, StreamingResponse):
        return _drain(response)
    pieces = [piece async for piece in response.async_response_gen()]
    return response.response_txt if response.response_txt is not None else "".join(pieces)


async def _alist(pieces: AsyncIterator[str]) -> list[str]:
    return [piece async for piece in pieces]


def _empty() -> Generator[str, None, None]:
    yield from ()


def _gen(pieces: list[str]) -> Generator[str, None, None]:
    yield from pieces


def _restream(
    response: StreamingResponse | AsyncStreamingResponse,
    steps: Callable[[Callable[[Record], None], Sources], Machine[None]],
    check: Record | None = None,
    whole: bool = False,
) -> Machine[RESPONSE_TYPE]:
    """The aligned stream, of the response's kind; ``steps(done, sources)`` is the aligner's
    stream machine. ``whole`` (an on_flag policy other than rewrite): the squad decides now, so
    a violation raises from the query itself and the record is there at once."""
    metadata = dict(response.metadata or {})
    sources = Sources.of(response.source_nodes)

    def done(record: Record) -> None:
        metadata[METADATA_KEY] = with_request_check(record, check)

    if isinstance(response, AsyncStreamingResponse):
        if whole:
            pieces = yield Work(
                lambda: list(drive_stream(steps(done, sources))),
                lambda: _alist(adrive_stream(steps(done, sources))),
            )
        stream = adrive_stream(emitting(pieces) if whole else steps(done, sources))
        return AsyncStreamingResponse(
            response_gen=stream, source_nodes=response.source_nodes, metadata=metadata
        )
    out = StreamingResponse(
        response_gen=_empty(), source_nodes=response.source_nodes, metadata=metadata
    )
    if whole:  # a sync stream: decided in this thread, as the inner engine answered
        pieces = list(drive_stream(steps(done, sources)))
        out.response_gen = _gen(pieces)
        out.response_txt = "".join(pieces)
        return out

    def gen() -> Generator[str, None, None]:
        pieces = []
        for piece in drive_stream(steps(done, sources)):
            pieces.append(piece)
            yield piece
        # Set the text so str(response) works after the generator was iterated directly.
        out.response_txt = "".join(pieces)

    out.response_gen = gen()
    return out
