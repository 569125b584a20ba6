"""Answer-level alignment: a query engine that aligns the answer of any other query engine."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
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

from aligners import Squad
from llamaindex_aligners.answers import (
    METADATA_KEY,
    AnswerAligner,
    Record,
    settings_from,
    skipped_record,
)
from llamaindex_aligners.settings import AlignmentSettings


class AlignedQueryEngine(BaseQueryEngine):
    """Runs ``query_engine``, then aligns ``response.response`` with the query as the question.

    ``source_nodes`` are kept; ``response.metadata["aligners"]`` holds the squad's record
    (``AlignmentResult.to_record()``: original, text, applied, trajectory, ...). Streaming
    responses are read whole, aligned, then streamed again piece by piece; their record is in
    the metadata once the stream has been consumed.

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
        check_only: bool = False,
        on_error: str = "keep",
        settings: AlignmentSettings | None = None,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        if not isinstance(query_engine, BaseQueryEngine):
            raise TypeError(
                "AlignedQueryEngine wraps a llama-index BaseQueryEngine, "
                f"got {type(query_engine).__name__}"
            )
        self._query_engine = query_engine
        self.settings = settings_from(settings, criteria, threshold, check_only, on_error)
        self._aligner = AnswerAligner(squad, self.settings, target="answer")
        super().__init__(callback_manager or query_engine.callback_manager)

    @property
    def query_engine(self) -> BaseQueryEngine:
        """The wrapped engine."""
        return self._query_engine

    @property
    def squad(self) -> Squad:
        """The configured squad that aligns the answers."""
        return self._aligner.squad

    def _get_prompt_modules(self) -> PromptMixinType:
        return {"query_engine": self._query_engine}

    def retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        """The inner engine's retrieval (answers are aligned, retrieved nodes are not)."""
        return self._query_engine.retrieve(query_bundle)

    # -- querying ------------------------------------------------------------------------------

    def _query(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        response = self._query_engine.query(query_bundle)
        question = query_bundle.query_str
        if isinstance(response, StreamingResponse):
            answer = _drain(response)
            return _restream(response, self._aligner.stream, question, answer)
        if isinstance(response, Response):
            if response.response is None:
                return _annotate(response, skipped_record(question, "", "no answer text"))
            text, record = self._aligner.align(question, response.response)
            return Response(text, response.source_nodes, _metadata(response.metadata, record))
        return _unsupported(response, question)

    async def _aquery(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        response = await self._query_engine.aquery(query_bundle)
        question = query_bundle.query_str
        if isinstance(response, AsyncStreamingResponse):
            answer = await _adrain(response)
            return _arestream(response, self._aligner.astream, question, answer)
        if isinstance(response, StreamingResponse):  # a sync stream from an async call
            answer = _drain(response)
            return _restream(response, self._aligner.stream, question, answer)
        if isinstance(response, Response):
            if response.response is None:
                return _annotate(response, skipped_record(question, "", "no answer text"))
            text, record = await self._aligner.aalign(question, response.response)
            return Response(text, response.source_nodes, _metadata(response.metadata, record))
        return _unsupported(response, question)


def _metadata(metadata: dict[str, Any] | None, record: Record) -> dict[str, Any]:
    return {**(metadata or {}), METADATA_KEY: record}


def _annotate(response: Response, record: Record) -> Response:
    return Response(response.response, response.source_nodes, _metadata(response.metadata, record))


def _unsupported(response: RESPONSE_TYPE, question: str) -> RESPONSE_TYPE:
    """Structured (pydantic) answers pass through: an aligner rewrites text, not objects."""
    if isinstance(response, PydanticResponse):
        response.metadata = _metadata(
            response.metadata,
            skipped_record(question, str(response), "structured (pydantic) response"),
        )
        return response
    raise TypeError(f"cannot align a response of type {type(response).__name__}")


def _drain(response: StreamingResponse) -> str:
    """The whole streamed answer (an aligner needs all of it before it can rewrite)."""
    if response.response_txt is not None:
        return response.response_txt
    return "".join(response.response_gen)


async def _adrain(response: AsyncStreamingResponse) -> str:
    pieces = [piece async for piece in response.async_response_gen()]
    return response.response_txt if response.response_txt is not None else "".join(pieces)


def _empty() -> Generator[str, None, None]:
    yield from ()


def _restream(
    response: StreamingResponse, stream: Any, question: str, answer: str
) -> StreamingResponse:
    metadata = dict(response.metadata or {})
    out = StreamingResponse(
        response_gen=_empty(), source_nodes=response.source_nodes, metadata=metadata
    )

    def done(record: Record) -> None:
        metadata[METADATA_KEY] = record

    def gen() -> Generator[str, None, None]:
        pieces = []
        for piece in stream(question, answer, done):
            pieces.append(piece)
            yield piece
        # Set the text so str(response) works after the generator was iterated directly.
        out.response_txt = "".join(pieces)

    out.response_gen = gen()
    return out


def _arestream(
    response: AsyncStreamingResponse, stream: Any, question: str, answer: str
) -> AsyncStreamingResponse:
    metadata = dict(response.metadata or {})

    def done(record: Record) -> None:
        metadata[METADATA_KEY] = record

    async def gen() -> AsyncGenerator[str, None]:
        async for piece in stream(question, answer, done):
            yield piece

    return AsyncStreamingResponse(
        response_gen=gen(), source_nodes=response.source_nodes, metadata=metadata
    )
