"""Answer-level alignment for chat engines: the last user message is the question."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Generator
from dataclasses import dataclass
from functools import partial
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, ChatResponse, MessageRole
from llama_index.core.chat_engine.types import (
    AgentChatResponse,
    BaseChatEngine,
    StreamingAgentChatResponse,
)
from llama_index.core.memory import BaseMemory

from aligners import (
    AlignmentViolation,
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
    mapped,
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

    def _history_steps(
        self, memory: BaseMemory | None, edit: Callable[[list[ChatMessage]], bool]
    ) -> Machine[None]:
        """Read the history, ``edit`` it in place, write it back if ``edit`` says it changed."""
        if memory is None:
            return
        messages = list((yield Work(memory.get_all, memory.aget_all)))
        if edit(messages):
            yield Work(partial(memory.set, messages), partial(memory.aset, messages))

    def _remember_steps(self, original: str, text: str) -> Machine[None]:
        """The history holds the aligned reply instead of the inner engine's."""
        memory = self._memory_to_update(original, text)
        yield from self._history_steps(memory, lambda m: self._replace(m, original, text))

    def _forget_steps(self, message: str, original: str) -> Machine[None]:
        """Under ``on_flag="raise"``: the turn did not happen, as far as the history goes."""
        memory = self._memory()
        yield from self._history_steps(memory, lambda m: self._drop_turn(m, message, original))

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
            out.achat_stream = adrive_stream(emitting(_chunks([text])))
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

    def _chat_steps(
        self, message: str, chat_history: list[ChatMessage] | None
    ) -> Machine[AgentChatResponse]:
        """One turn as a step machine: ``chat`` drives it in this thread, ``achat`` on the event
        loop (the same checks, calls, history edits and records)."""
        _check_message(message)
        check = yield from self._gate.check_steps(message, self._aligner.blocked_message)
        if check is not None and not check["allowed"]:
            return self._blocked_reply(message, check)
        inner, history = self._chat_engine, chat_history
        response = yield Work(
            partial(inner.chat, message, history), partial(inner.achat, message, history)
        )
        if isinstance(response, StreamingAgentChatResponse):  # some engines stream regardless
            response = AgentChatResponse(
                response=(yield Work(partial(_join, response), partial(_ajoin, response))),
                sources=response.sources,
                source_nodes=response.source_nodes,
            )
        try:
            sources = Sources.of(response.source_nodes)
            text, record = yield from self._aligner.align_steps(message, response.response, sources)
        except AlignmentViolation:
            yield from self._forget_steps(message, response.response)
            raise
        yield from self._remember_steps(response.response, text)
        return self._reply(response, text, with_request_check(record, check))

    def chat(
        self, message: str, chat_history: list[ChatMessage] | None = None
    ) -> AgentChatResponse:
        return drive(self._chat_steps(message, chat_history))

    async def achat(
        self, message: str, chat_history: list[ChatMessage] | None = None
    ) -> AgentChatResponse:
        return await adrive(self._chat_steps(message, chat_history))

    def _stream_chat_steps(
        self, message: str, chat_history: list[ChatMessage] | None, asynchronous: bool
    ) -> Machine[AlignedStreamingChatResponse]:
        """One streamed turn as a step machine (``stream_chat``, ``astream_chat``)."""
        _check_message(message)
        check = yield from self._gate.check_steps(message, self._aligner.blocked_message)
        if check is not None and not check["allowed"]:
            return self._blocked_stream(message, check, asynchronous)
        engine, history = self._chat_engine, chat_history
        inner = yield Work(
            partial(engine.stream_chat, message, history),
            partial(engine.astream_chat, message, history),
        )
        # Reading the whole stream also waits for the inner engine to write its history.
        original = yield Work(partial(_join, inner), partial(_ajoin, inner))
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

        def steps() -> Machine[None]:
            return self._aligner.stream_steps(message, original, done, sources)

        if self._aligner.decides_whole:
            # Decided before returning, so a violation raises from stream_chat itself.
            try:
                pieces = yield Work(
                    lambda: list(drive_stream(steps())), lambda: _alist(adrive_stream(steps()))
                )
            except AlignmentViolation:
                yield from self._forget_steps(message, original)
                raise
            yield from self._remember_steps(original, metadata[METADATA_KEY]["text"])
            reply = emitting(_chunks(pieces))
        else:
            reply = self._reply_steps(steps(), original, metadata)
        if asynchronous:
            out.achat_stream = adrive_stream(reply)
        else:
            out.chat_stream = drive_stream(reply)
        return out

    def _reply_steps(
        self, aligned: Machine[None], original: str, metadata: dict[str, Any]
    ) -> Machine[None]:
        """The aligned reply's pieces as chat chunks, then the history updated to hold it."""
        text = ""

        def chunk(piece: str) -> list[ChatResponse]:
            nonlocal text
            text += piece
            return [_chunk(text, piece)]

        yield from mapped(aligned, chunk)
        yield from self._remember_steps(original, metadata[METADATA_KEY]["text"])

    def stream_chat(
        self, message: str, chat_history: list[ChatMessage] | None = None
    ) -> AlignedStreamingChatResponse:
        return drive(self._stream_chat_steps(message, chat_history, asynchronous=False))

    async def astream_chat(
        self, message: str, chat_history: list[ChatMessage] | None = None
    ) -> AlignedStreamingChatResponse:
        return await adrive(self._stream_chat_steps(message, chat_history, asynchronous=True))


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


def _join(response: StreamingAgentChatResponse) -> str:
    return "".join(response.response_gen)


async def _ajoin(response: StreamingAgentChatResponse) -> str:
    return "".join([piece async for piece in response.async_response_gen()])


async def _alist(pieces: AsyncIterator[str]) -> list[str]:
    return [piece async for piece in pieces]
