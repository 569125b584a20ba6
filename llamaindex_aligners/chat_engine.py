"""Answer-level alignment for chat engines: the last user message is the question."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from dataclasses import dataclass
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, ChatResponse, MessageRole
from llama_index.core.chat_engine.types import (
    AgentChatResponse,
    BaseChatEngine,
    StreamingAgentChatResponse,
)
from llama_index.core.memory import BaseMemory

from aligners import AlignmentViolation, RequestInspector, Squad, SquadPolicy
from llamaindex_aligners.answers import (
    METADATA_KEY,
    AnswerAligner,
    Record,
    RequestGate,
    Sources,
    request_blocked_record,
    request_violation,
    settings_from,
    with_request_check,
)
from llamaindex_aligners.settings import AlignmentSettings, OnFlag


@dataclass
class AlignedStreamingChatResponse(StreamingAgentChatResponse):
    """A streaming chat reply with the squad's record in ``metadata`` once it has streamed."""

    metadata: dict[str, Any] | None = None


class AlignedChatEngine(BaseChatEngine):
    """Runs ``chat_engine``, then aligns its reply with the user's message as the question.

    The reply's ``metadata["aligners"]`` holds the squad record, and the chat history (the
    inner engine's memory) is updated to hold the aligned reply, so later turns build on it.
    The reply's ``source_nodes`` (what a context or condense-plus-context engine retrieved)
    are its context, one passage per node, as for
    :class:`~llamaindex_aligners.AlignedQueryEngine`: ``grounded`` checks the reply against
    them, and ``grounding.sentences[i].passage`` indexes ``source_nodes``.

    ``on_flag`` (``None``: the squad's own, ``"rewrite"`` by default) as for
    :class:`~llamaindex_aligners.AlignedQueryEngine`: a blocked reply is replaced by
    ``blocked_message`` in the reply and in the history; under ``"raise"`` the
    ``aligners.AlignmentViolation`` propagates out of ``chat``/``achat``/``stream_chat``/
    ``astream_chat`` and the turn (the user's message and the flagged reply) is taken out of
    the history again, so the flagged reply never stays in it.

    ``check_request`` checks the user's message before the inner engine runs: a blocked message
    gets the blocked message as its reply without calling the inner engine (no retrieval, no
    LLM), and the history is left as it was: neither the request nor the refusal is stored, so
    a later turn cannot point the model back at the request. Under ``on_flag="raise"`` such a
    request raises ``aligners.AlignmentViolation`` (``result.stage == "request"``) instead.

    Example:
        >>> chat = AlignedChatEngine(index.as_chat_engine(chat_mode="context"))  # doctest: +SKIP
        >>> chat.chat("Tell me how to hurt someone").metadata["aligners"]  # doctest: +SKIP
    """

    def __init__(
        self,
        chat_engine: BaseChatEngine,
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
        update_memory: bool = True,
    ) -> None:
        if not isinstance(chat_engine, BaseChatEngine):
            raise TypeError(
                "AlignedChatEngine wraps a llama-index BaseChatEngine, "
                f"got {type(chat_engine).__name__}"
            )
        self._chat_engine = chat_engine
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
        if not isinstance(update_memory, bool):
            raise TypeError(f"update_memory must be True or False, got {update_memory!r}")
        self.update_memory = update_memory
        self._aligner = AnswerAligner(squad, self.settings, target="chat")
        self._gate = RequestGate(self.settings.resolved_policy, target="chat")

    @property
    def chat_engine(self) -> BaseChatEngine:
        """The wrapped engine."""
        return self._chat_engine

    @property
    def squad(self) -> Squad:
        """The configured squad that aligns the replies."""
        return self._aligner.squad

    @property
    def request_inspector(self) -> RequestInspector | None:
        """The inspector that checks each user message first (None: no request check)."""
        return self._gate.inspector

    @property
    def request_threshold(self) -> float | None:
        """The request check's threshold (None: the inspector's own)."""
        return self._gate.threshold

    def reset(self) -> None:
        self._chat_engine.reset()

    @property
    def chat_history(self) -> list[ChatMessage]:
        return self._chat_engine.chat_history

    # -- memory --------------------------------------------------------------------------------

    def _memory(self) -> BaseMemory | None:
        if not self.update_memory:
            return None
        # Every core chat engine keeps its history in ``_memory``; others keep the original.
        memory = getattr(self._chat_engine, "_memory", None)
        return memory if isinstance(memory, BaseMemory) else None

    def _memory_to_update(self, original: str, text: str) -> BaseMemory | None:
        return None if text == original else self._memory()

    @staticmethod
    def _last_reply(messages: list[ChatMessage], original: str) -> int | None:
        """The index of the last assistant message, if it is the inner engine's reply."""
        for i in range(len(messages) - 1, -1, -1):
            message = messages[i]
            if message.role == MessageRole.ASSISTANT:
                return i if (message.content or "").strip() == original.strip() else None
        return None

    @classmethod
    def _replace(cls, messages: list[ChatMessage], original: str, text: str) -> bool:
        i = cls._last_reply(messages, original)
        if i is None:
            return False
        messages[i] = ChatMessage(role=MessageRole.ASSISTANT, content=text)
        return True

    @classmethod
    def _drop_turn(cls, messages: list[ChatMessage], message: str, original: str) -> bool:
        """Remove the flagged reply and the user's message just before it."""
        i = cls._last_reply(messages, original)
        if i is None:
            return False
        del messages[i]
        before = messages[i - 1] if i > 0 else None
        if before is not None and before.role == MessageRole.USER and before.content == message:
            del messages[i - 1]
        return True

    def _update_memory(self, original: str, text: str) -> None:
        memory = self._memory_to_update(original, text)
        if memory is None:
            return
        messages = list(memory.get_all())
        if self._replace(messages, original, text):
            memory.set(messages)

    async def _aupdate_memory(self, original: str, text: str) -> None:
        memory = self._memory_to_update(original, text)
        if memory is None:
            return
        messages = list(await memory.aget_all())
        if self._replace(messages, original, text):
            await memory.aset(messages)

    def _forget_turn(self, message: str, original: str) -> None:
        """Under ``on_flag="raise"``: the turn did not happen, as far as the history goes."""
        memory = self._memory()
        if memory is None:
            return
        messages = list(memory.get_all())
        if self._drop_turn(messages, message, original):
            memory.set(messages)

    async def _aforget_turn(self, message: str, original: str) -> None:
        memory = self._memory()
        if memory is None:
            return
        messages = list(await memory.aget_all())
        if self._drop_turn(messages, message, original):
            await memory.aset(messages)

    # -- the request check ---------------------------------------------------------------------

    def _blocked_record(self, message: str, check: Record) -> Record:
        if self._aligner.raises:  # on_flag="raise": a turned-away request is the error
            raise request_violation(message, self._aligner.blocked_message, check)
        return request_blocked_record(message, self._aligner.blocked_message, check)

    def _blocked_reply(self, message: str, check: Record) -> AgentChatResponse:
        record = self._blocked_record(message, check)
        return AgentChatResponse(response=record["text"], metadata={METADATA_KEY: record})

    def _blocked_stream(
        self, message: str, check: Record, asynchronous: bool
    ) -> AlignedStreamingChatResponse:
        """The blocked message as a stream of one piece (and ``response`` already set)."""
        record = self._blocked_record(message, check)
        text = record["text"]
        out = AlignedStreamingChatResponse(
            response=text, metadata={METADATA_KEY: record}, is_writing_to_memory=False
        )
        if asynchronous:
            out.achat_stream = _achunks([text])
        else:
            out.chat_stream = _chunks([text])
        return out

    # -- chat ----------------------------------------------------------------------------------

    def _reply(self, response: AgentChatResponse, text: str, record: Record) -> AgentChatResponse:
        return AgentChatResponse(
            response=text,
            sources=response.sources,
            source_nodes=response.source_nodes,
            metadata={**(response.metadata or {}), METADATA_KEY: record},
        )

    def chat(
        self, message: str, chat_history: list[ChatMessage] | None = None
    ) -> AgentChatResponse:
        _check_message(message)
        check = self._gate.check(message, self._aligner.blocked_message)
        if check is not None and not check["allowed"]:
            return self._blocked_reply(message, check)
        response = self._chat_engine.chat(message, chat_history)
        if isinstance(response, StreamingAgentChatResponse):  # some engines stream regardless
            response = AgentChatResponse(
                response="".join(response.response_gen),
                sources=response.sources,
                source_nodes=response.source_nodes,
            )
        try:
            sources = Sources.of(response.source_nodes)
            text, record = self._aligner.align(message, response.response, sources)
        except AlignmentViolation:
            self._forget_turn(message, response.response)
            raise
        self._update_memory(response.response, text)
        return self._reply(response, text, with_request_check(record, check))

    async def achat(
        self, message: str, chat_history: list[ChatMessage] | None = None
    ) -> AgentChatResponse:
        _check_message(message)
        check = await self._gate.acheck(message, self._aligner.blocked_message)
        if check is not None and not check["allowed"]:
            return self._blocked_reply(message, check)
        response = await self._chat_engine.achat(message, chat_history)
        if isinstance(response, StreamingAgentChatResponse):
            pieces = [piece async for piece in response.async_response_gen()]
            response = AgentChatResponse(
                response="".join(pieces),
                sources=response.sources,
                source_nodes=response.source_nodes,
            )
        try:
            sources = Sources.of(response.source_nodes)
            text, record = await self._aligner.aalign(message, response.response, sources)
        except AlignmentViolation:
            await self._aforget_turn(message, response.response)
            raise
        await self._aupdate_memory(response.response, text)
        return self._reply(response, text, with_request_check(record, check))

    def stream_chat(
        self, message: str, chat_history: list[ChatMessage] | None = None
    ) -> AlignedStreamingChatResponse:
        _check_message(message)
        check = self._gate.check(message, self._aligner.blocked_message)
        if check is not None and not check["allowed"]:
            return self._blocked_stream(message, check, asynchronous=False)
        inner = self._chat_engine.stream_chat(message, chat_history)
        # Reading the whole stream also waits for the inner engine to write its history.
        original = "".join(inner.response_gen)
        sources = Sources.of(inner.source_nodes)
        metadata: dict[str, Any] = {}
        out = AlignedStreamingChatResponse(
            sources=inner.sources,
            source_nodes=inner.source_nodes,
            metadata=metadata,
            is_writing_to_memory=False,
        )

        def done(record: Record) -> None:
            metadata[METADATA_KEY] = with_request_check(record, check)

        if self._aligner.decides_whole:
            # Decided before returning, so a violation raises from stream_chat itself.
            try:
                pieces = list(self._aligner.stream(message, original, done, sources))
            except AlignmentViolation:
                self._forget_turn(message, original)
                raise
            self._update_memory(original, metadata[METADATA_KEY]["text"])
            out.chat_stream = _chunks(pieces)
            return out

        def gen() -> Generator[ChatResponse, None, None]:
            text = ""
            for piece in self._aligner.stream(message, original, done, sources):
                text += piece
                yield _chunk(text, piece)
            self._update_memory(original, metadata[METADATA_KEY]["text"])

        out.chat_stream = gen()
        return out

    async def astream_chat(
        self, message: str, chat_history: list[ChatMessage] | None = None
    ) -> AlignedStreamingChatResponse:
        _check_message(message)
        check = await self._gate.acheck(message, self._aligner.blocked_message)
        if check is not None and not check["allowed"]:
            return self._blocked_stream(message, check, asynchronous=True)
        inner = await self._chat_engine.astream_chat(message, chat_history)
        original = "".join([piece async for piece in inner.async_response_gen()])
        sources = Sources.of(inner.source_nodes)
        metadata: dict[str, Any] = {}

        def done(record: Record) -> None:
            metadata[METADATA_KEY] = with_request_check(record, check)

        stream: AsyncGenerator[ChatResponse, None]
        if self._aligner.decides_whole:
            try:
                pieces = [p async for p in self._aligner.astream(message, original, done, sources)]
            except AlignmentViolation:
                await self._aforget_turn(message, original)
                raise
            await self._aupdate_memory(original, metadata[METADATA_KEY]["text"])
            stream = _achunks(pieces)
        else:

            async def gen() -> AsyncGenerator[ChatResponse, None]:
                text = ""
                async for piece in self._aligner.astream(message, original, done, sources):
                    text += piece
                    yield _chunk(text, piece)
                await self._aupdate_memory(original, metadata[METADATA_KEY]["text"])

            stream = gen()

        return AlignedStreamingChatResponse(
            sources=inner.sources,
            source_nodes=inner.source_nodes,
            metadata=metadata,
            is_writing_to_memory=False,
            achat_stream=stream,
        )


def _check_message(message: Any) -> None:
    """The user's message is the squad's question: anything but text is named before the inner
    engine runs (not a validation error from deep inside an instrumentation event)."""
    if not isinstance(message, str):
        raise TypeError(f"the chat message must be a str, got {type(message).__name__}")


def _chunk(text: str, delta: str) -> ChatResponse:
    return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=delta)


def _chunks(pieces: list[str]) -> Generator[ChatResponse, None, None]:
    text = ""
    for piece in pieces:
        text += piece
        yield _chunk(text, piece)


async def _achunks(pieces: list[str]) -> AsyncGenerator[ChatResponse, None]:
    for chunk in _chunks(pieces):
        yield chunk
