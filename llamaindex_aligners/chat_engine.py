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

from aligners import Squad
from llamaindex_aligners.answers import METADATA_KEY, AnswerAligner, Record, settings_from
from llamaindex_aligners.settings import AlignmentSettings


@dataclass
class AlignedStreamingChatResponse(StreamingAgentChatResponse):
    """A streaming chat reply with the squad's record in ``metadata`` once it has streamed."""

    metadata: dict[str, Any] | None = None


class AlignedChatEngine(BaseChatEngine):
    """Runs ``chat_engine``, then aligns its reply with the user's message as the question.

    The reply's ``metadata["aligners"]`` holds the squad record, and the chat history (the
    inner engine's memory) is updated to hold the aligned reply, so later turns build on it.

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
        check_only: bool = False,
        on_error: str = "keep",
        settings: AlignmentSettings | None = None,
        update_memory: bool = True,
    ) -> None:
        if not isinstance(chat_engine, BaseChatEngine):
            raise TypeError(
                "AlignedChatEngine wraps a llama-index BaseChatEngine, "
                f"got {type(chat_engine).__name__}"
            )
        self._chat_engine = chat_engine
        self.settings = settings_from(settings, criteria, threshold, check_only, on_error)
        self.update_memory = update_memory
        self._aligner = AnswerAligner(squad, self.settings, target="chat")

    @property
    def chat_engine(self) -> BaseChatEngine:
        """The wrapped engine."""
        return self._chat_engine

    @property
    def squad(self) -> Squad:
        """The configured squad that aligns the replies."""
        return self._aligner.squad

    def reset(self) -> None:
        self._chat_engine.reset()

    @property
    def chat_history(self) -> list[ChatMessage]:
        return self._chat_engine.chat_history

    # -- memory --------------------------------------------------------------------------------

    def _memory_to_update(self, original: str, text: str) -> BaseMemory | None:
        if not self.update_memory or text == original:
            return None
        # Every core chat engine keeps its history in ``_memory``; others keep the original.
        memory = getattr(self._chat_engine, "_memory", None)
        return memory if isinstance(memory, BaseMemory) else None

    @staticmethod
    def _replace(messages: list[ChatMessage], original: str, text: str) -> bool:
        for i in range(len(messages) - 1, -1, -1):
            message = messages[i]
            if message.role == MessageRole.ASSISTANT:
                if (message.content or "").strip() != original.strip():
                    return False
                messages[i] = ChatMessage(role=MessageRole.ASSISTANT, content=text)
                return True
        return False

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
        response = self._chat_engine.chat(message, chat_history)
        if isinstance(response, StreamingAgentChatResponse):  # some engines stream regardless
            response = AgentChatResponse(
                response="".join(response.response_gen),
                sources=response.sources,
                source_nodes=response.source_nodes,
            )
        text, record = self._aligner.align(message, response.response)
        self._update_memory(response.response, text)
        return self._reply(response, text, record)

    async def achat(
        self, message: str, chat_history: list[ChatMessage] | None = None
    ) -> AgentChatResponse:
        response = await self._chat_engine.achat(message, chat_history)
        if isinstance(response, StreamingAgentChatResponse):
            pieces = [piece async for piece in response.async_response_gen()]
            response = AgentChatResponse(
                response="".join(pieces),
                sources=response.sources,
                source_nodes=response.source_nodes,
            )
        text, record = await self._aligner.aalign(message, response.response)
        await self._aupdate_memory(response.response, text)
        return self._reply(response, text, record)

    def stream_chat(
        self, message: str, chat_history: list[ChatMessage] | None = None
    ) -> AlignedStreamingChatResponse:
        inner = self._chat_engine.stream_chat(message, chat_history)
        # Reading the whole stream also waits for the inner engine to write its history.
        original = "".join(inner.response_gen)
        metadata: dict[str, Any] = {}
        out = AlignedStreamingChatResponse(
            sources=inner.sources,
            source_nodes=inner.source_nodes,
            metadata=metadata,
            is_writing_to_memory=False,
        )

        def done(record: Record) -> None:
            metadata[METADATA_KEY] = record

        def gen() -> Generator[ChatResponse, None, None]:
            text = ""
            for piece in self._aligner.stream(message, original, done):
                text += piece
                yield _chunk(text, piece)
            self._update_memory(original, metadata[METADATA_KEY]["text"])

        out.chat_stream = gen()
        return out

    async def astream_chat(
        self, message: str, chat_history: list[ChatMessage] | None = None
    ) -> AlignedStreamingChatResponse:
        inner = await self._chat_engine.astream_chat(message, chat_history)
        original = "".join([piece async for piece in inner.async_response_gen()])
        metadata: dict[str, Any] = {}

        def done(record: Record) -> None:
            metadata[METADATA_KEY] = record

        async def gen() -> AsyncGenerator[ChatResponse, None]:
            text = ""
            async for piece in self._aligner.astream(message, original, done):
                text += piece
                yield _chunk(text, piece)
            await self._aupdate_memory(original, metadata[METADATA_KEY]["text"])

        return AlignedStreamingChatResponse(
            sources=inner.sources,
            source_nodes=inner.source_nodes,
            metadata=metadata,
            is_writing_to_memory=False,
            achat_stream=gen(),
        )


def _chunk(text: str, delta: str) -> ChatResponse:
    return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=delta)
