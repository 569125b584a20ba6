"""``ChatAlignersLocal``: a LangChain chat model over the engine's in-process transformers backend.

Runs any local causal LM the engine can load (``"smollm2"``, a directory, a ``.gguf`` file) with
its chat template, offline. It shares loaded weights with aligners on the same model through the
engine's ``MODEL_CACHE``. (``langchain-huggingface`` pins ``huggingface-hub<2`` while
transformers 5 uses 2.x, and it cannot load GGUF checkpoints through its chat wrapper.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field, PrivateAttr

from aligners import GenerationConfig, InputTooLongError, TransformersBackend
from langchain_aligners._inputs import message_text


def to_chat_messages(messages: Sequence[BaseMessage]) -> list[dict[str, str]]:
    """LangChain messages as the ``{"role", "content"}`` dicts chat templates take."""
    converted = []
    for message in messages:
        if isinstance(message, SystemMessage):
            role = "system"
        elif isinstance(message, HumanMessage):
            role = "user"
        elif isinstance(message, AIMessage):
            role = "assistant"
        elif isinstance(message, ToolMessage):
            role = "tool"
        elif isinstance(message, ChatMessage):
            role = message.role
        else:
            raise TypeError(f"ChatAlignersLocal cannot send a {type(message).__name__}")
        converted.append({"role": role, "content": message_text(message)})
    return converted


def _prompt_tokens(tokenizer: Any, chat: list[dict[str, str]]) -> int:
    ids = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True)
    if isinstance(ids, Mapping):  # a BatchEncoding in some transformers versions
        ids = ids["input_ids"]
    return len(ids)


def _truncate(tokenizer: Any, chat: list[dict[str, str]], budget: int) -> list[dict[str, str]]:
    """Drop the oldest turns after any system message, then cut the middle of the last turn,
    until the prompt fits ``budget`` tokens."""
    system = [m for m in chat[:1] if m["role"] == "system"]
    turns = chat[len(system) :]
    while len(turns) > 1 and _prompt_tokens(tokenizer, system + turns) > budget:
        turns = turns[1:]
    last = dict(turns[-1])
    over = _prompt_tokens(tokenizer, system + turns) - budget
    if over > 0:
        ids = tokenizer(last["content"], add_special_tokens=False)["input_ids"]
        keep = max(0, len(ids) - over - 8)  # a little room for the marker
        head, tail = ids[: keep // 2], ids[len(ids) - (keep - keep // 2) :] if keep else []
        last["content"] = (
            tokenizer.decode(head) + " [...] " + (tokenizer.decode(tail) if tail else "")
        ).strip()
    return system + turns[:-1] + [last]


def _cut(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the first stop string, and whether one was found."""
    cuts = [i for i in (text.find(s) for s in stops if s) if i != -1]
    return (text[: min(cuts)], True) if cuts else (text, False)


class _StopStream:
    """Turns streamed pieces into safe-to-emit text: cut at a stop string, and hold back a tail
    that could be the start of one (so no part of a stop string is ever emitted)."""

    def __init__(self, stops: Sequence[str] | None) -> None:
        self.stops = [s for s in stops or () if s]
        self.text = ""
        self.emitted = 0
        self.stopped = False

    def _pending(self, text: str) -> int:
        """Length of the longest tail of ``text`` that begins a stop string."""
        return max(
            (k for s in self.stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0
        )

    def feed(self, piece: str) -> str:
        self.text += piece
        visible, self.stopped = _cut(self.text, self.stops)
        if self.stopped:
            return self._take(len(visible))
        return self._take(max(len(visible) - self._pending(visible), self.emitted))

    def flush(self) -> str:
        return self._take(len(_cut(self.text, self.stops)[0]))

    def _take(self, end: int) -> str:
        new = self.text[self.emitted : end]
        self.emitted = max(end, self.emitted)
        return new


class ChatAlignersLocal(BaseChatModel):
    """A local chat model (default SmolLM2-135M-Instruct) run in-process through transformers.

    Example:
        >>> llm = ChatAlignersLocal(model="smollm2", max_new_tokens=32)
        >>> llm.invoke("What is the capital of France?").content  # doctest: +SKIP
    """

    model: str = Field(default="smollm2", description="Alias, directory or .gguf file.")
    max_new_tokens: int = Field(default=256, gt=0)
    temperature: float = Field(default=0.0, ge=0.0, description="0: greedy decoding.")
    device_map: str | None = None
    overflow: Literal["error", "truncate"] = Field(
        default="error",
        description="When the conversation and max_new_tokens do not fit the model's context: "
        "raise InputTooLongError, or drop the oldest turns (then cut the middle of the last) "
        "until they fit. Past its context a model writes noise, so it never just runs.",
    )

    _backend: TransformersBackend | None = PrivateAttr(default=None)

    @property
    def backend(self) -> TransformersBackend:
        """The engine backend (construction is cheap; weights load on first generation)."""
        if self._backend is None:
            self._backend = TransformersBackend(self.model, device_map=self.device_map)
        return self._backend

    @property
    def _llm_type(self) -> str:
        return "aligners-local"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
        }

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        """Not supported: raises with what to use instead.

        SmolLM2-class local models write no reliable tool calls, and the engine's backend has no
        tool-call parser. Run tools with a tool-calling model (e.g. ``ChatOpenAI`` pointed at
        ``aligners serve --upstream ...`` or any provider) and put the squad after it:
        ``create_agent(model, tools, middleware=[AlignerSquadMiddleware()])``.
        """
        raise NotImplementedError(
            "ChatAlignersLocal does not call tools: small local models write no reliable tool "
            "calls. Use a tool-calling chat model for the agent (any provider, or ChatOpenAI "
            "against `aligners serve` in proxy mode) and align its replies with "
            "AlignerSquadMiddleware(...) or `model | AlignerSquad()`."
        )

    def _prompt(self, messages: list[BaseMessage]) -> list[dict[str, str]]:
        """The chat messages to send, checked (or cut) against the model's context."""
        chat = to_chat_messages(messages)
        loaded = self.backend.load()
        context = getattr(loaded.model.config, "max_position_embeddings", None)
        if not context:
            return chat
        budget = context - self.max_new_tokens
        length = _prompt_tokens(loaded.tokenizer, chat)
        if length <= budget:
            return chat
        if self.overflow == "error":
            raise InputTooLongError(
                f"the conversation is {length} tokens; with max_new_tokens={self.max_new_tokens} "
                f"it does not fit {self.model!r}'s {context}-token context: shorten it, lower "
                "max_new_tokens, or set overflow='truncate'"
            )
        return _truncate(loaded.tokenizer, chat, budget)

    def _config(self, stop: list[str] | None) -> GenerationConfig:
        return GenerationConfig(
            max_new_tokens=self.max_new_tokens,
            stop_strings=tuple(stop or ()),
            temperature=self.temperature,
        )

    def _result(self, text: str, stop: list[str] | None) -> ChatResult:
        text, _ = _cut(text, stop or ())
        message = AIMessage(content=text.strip(), response_metadata={"model_name": self.model})
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        text = self.backend.generate([self._prompt(messages)], self._config(stop))[0]
        return self._result(text, stop)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        prompt = await asyncio.to_thread(self._prompt, messages)
        texts = await self.backend.agenerate([prompt], self._config(stop))
        return self._result(texts[0], stop)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        cutter = _StopStream(stop)
        for piece in self.backend.stream(self._prompt(messages), self._config(stop)):
            for chunk in self._chunks(cutter.feed(piece)):
                if run_manager:
                    run_manager.on_llm_new_token(str(chunk.message.content), chunk=chunk)
                yield chunk
            if cutter.stopped:
                break
        for chunk in self._chunks(cutter.flush()):
            if run_manager:
                run_manager.on_llm_new_token(str(chunk.message.content), chunk=chunk)
            yield chunk

    @staticmethod
    def _chunks(text: str) -> list[ChatGenerationChunk]:
        return [ChatGenerationChunk(message=AIMessageChunk(content=text))] if text else []

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        cutter = _StopStream(stop)
        prompt = await asyncio.to_thread(self._prompt, messages)
        async for piece in self.backend.astream(prompt, self._config(stop)):
            for chunk in self._chunks(cutter.feed(piece)):
                if run_manager:
                    await run_manager.on_llm_new_token(str(chunk.message.content), chunk=chunk)
                yield chunk
            if cutter.stopped:
                break
        for chunk in self._chunks(cutter.flush()):
            if run_manager:
                await run_manager.on_llm_new_token(str(chunk.message.content), chunk=chunk)
            yield chunk
