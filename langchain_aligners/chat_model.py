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
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import AliasChoices, ConfigDict, Field, PrivateAttr, model_validator

from aligners import (
    Completion,
    GenerationConfig,
    InputTooLongError,
    LocalGenerator,
    TransformersBackend,
)
from langchain_aligners._inputs import message_text

# langchain-core 1.x marks a stream's closing chunk (chunk_position="last"); 0.3 has no field.
_LAST: dict[str, Any] = (
    {"chunk_position": "last"} if "chunk_position" in AIMessageChunk.model_fields else {}
)


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


#: Keyword arguments a call may pass (``llm.invoke(messages, max_tokens=5)``, ``.bind(...)``).
CALL_OPTIONS = ("max_tokens", "max_new_tokens", "temperature")


class ChatAlignersLocal(BaseChatModel):
    """A local chat model (default SmolLM2-135M-Instruct) run in-process through transformers.

    LangChain's standard parameters work: ``max_tokens`` (an alias of ``max_new_tokens``),
    ``temperature``, ``stop``, ``timeout`` (seconds of generation, then the reply ends as
    ``length``) and ``streaming``. Replies carry ``usage_metadata`` (on the last chunk of a
    stream) and ``finish_reason`` and ``model_name`` in ``response_metadata``. An unknown
    keyword is an error naming it.

    Example:
        >>> llm = ChatAlignersLocal(model="smollm2", max_tokens=32)
        >>> llm.invoke("What is the capital of France?").content  # doctest: +SKIP
    """

    # extra="forbid": a misspelt option (max_new_token=5) must fail, not be silently ignored.
    model_config = ConfigDict(extra="forbid")

    model: str = Field(default="smollm2", description="Alias, directory or .gguf file.")
    max_new_tokens: int = Field(
        default=256,
        gt=0,
        validation_alias=AliasChoices("max_new_tokens", "max_tokens"),
        description="Most tokens per reply; LangChain's max_tokens is the same setting.",
    )
    temperature: float = Field(default=0.0, ge=0.0, description="0: greedy decoding.")
    stop: list[str] | None = Field(
        default=None, description="Stop strings for every call (a call's stop= adds to them)."
    )
    timeout: float | None = Field(
        default=None, gt=0, description="Seconds a reply may generate; then it ends as 'length'."
    )
    streaming: bool = Field(default=False, description="invoke() streams internally.")
    device_map: str | None = None
    overflow: Literal["error", "truncate"] = Field(
        default="error",
        description="When the conversation and max_new_tokens do not fit the model's context: "
        "raise InputTooLongError, or drop the oldest turns (then cut the middle of the last) "
        "until they fit. Past its context a model writes noise, so it never just runs.",
    )

    _backend: TransformersBackend | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _one_token_limit(cls, data: Any) -> Any:
        return LocalGenerator.one_token_limit(data)

    @property
    def max_tokens(self) -> int:
        """LangChain's name for :attr:`max_new_tokens` (tracing reads it as ``ls_max_tokens``)."""
        return self.max_new_tokens

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

    def _prompt(
        self, messages: list[BaseMessage], max_new_tokens: int | None = None
    ) -> list[dict[str, str]]:
        """The chat messages to send, checked (or cut) against the model's context."""
        max_new_tokens = max_new_tokens or self.max_new_tokens
        chat = to_chat_messages(messages)
        loaded = self.backend.load()
        context = self.backend.context_length
        if not context:
            return chat
        budget = context - max_new_tokens
        length = _prompt_tokens(loaded.tokenizer, chat)
        if length <= budget:
            return chat
        if self.overflow == "error":
            raise InputTooLongError(
                f"the conversation is {length} tokens; with max_new_tokens={max_new_tokens} "
                f"it does not fit {self.model!r}'s {context}-token context: shorten it, lower "
                "max_new_tokens, or set overflow='truncate'"
            )
        return _truncate(loaded.tokenizer, chat, budget)

    def _config(self, stop: list[str] | None, options: dict[str, Any]) -> GenerationConfig:
        unknown = sorted(set(options) - set(CALL_OPTIONS))
        if unknown:
            raise TypeError(
                f"ChatAlignersLocal got unknown keyword argument(s) {', '.join(unknown)}; a call "
                f"takes stop= and {', '.join(CALL_OPTIONS)}"
            )
        if "max_tokens" in options and "max_new_tokens" in options:
            raise TypeError("pass max_tokens or max_new_tokens, not both (they are one setting)")
        limit = options.get("max_tokens", options.get("max_new_tokens", self.max_new_tokens))
        return GenerationConfig(
            max_new_tokens=limit,
            stop_strings=tuple([*(self.stop or ()), *(stop or ())]),
            temperature=options.get("temperature", self.temperature),
            max_time=self.timeout,
        )

    def _metadata(self, done: Completion) -> dict[str, Any]:
        return {"model_name": self.model, "finish_reason": done.finish_reason}

    @staticmethod
    def _usage(done: Completion) -> UsageMetadata | None:
        if done.prompt_tokens is None or done.completion_tokens is None:
            return None
        return UsageMetadata(
            input_tokens=done.prompt_tokens,
            output_tokens=done.completion_tokens,
            total_tokens=done.prompt_tokens + done.completion_tokens,
        )

    def _result(self, done: Completion) -> ChatResult:
        message = AIMessage(
            content=done.text.strip(),
            response_metadata=self._metadata(done),
            usage_metadata=self._usage(done),
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        config = self._config(stop, kwargs)
        prompt = self._prompt(messages, config.max_new_tokens)
        return self._result(LocalGenerator(self.backend).complete(prompt, config))

    # _agenerate: LangChain's default runs _generate in a worker thread (the prompt rendering
    # and the generation both off the event loop), which is what an async twin did by hand.

    def _last_chunk(self, done: Completion) -> ChatGenerationChunk:
        """The closing chunk: empty text, the usage (once per stream, as LangChain sums chunks)
        and the finish reason."""
        message = AIMessageChunk(
            content="",
            response_metadata=self._metadata(done),
            usage_metadata=self._usage(done),
            **_LAST,
        )
        return ChatGenerationChunk(message=message)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        config = self._config(stop, kwargs)
        prompt = self._prompt(messages, config.max_new_tokens)
        done = Completion("")
        for piece in LocalGenerator(self.backend).stream(prompt, config, done):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk
        yield self._last_chunk(done)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        config = self._config(stop, kwargs)
        prompt = await asyncio.to_thread(self._prompt, messages, config.max_new_tokens)
        done = Completion("")
        async for piece in LocalGenerator(self.backend).astream(prompt, config, done):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager:
                await run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk
        yield self._last_chunk(done)
