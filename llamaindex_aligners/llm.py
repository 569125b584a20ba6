"""A LlamaIndex LLM over the engine's generation backends (SmolLM2 offline by default).

Any :class:`aligners.GenerationBackend` works: the in-process ``TransformersBackend`` (the
default, with the process-wide model cache shared with the aligners) or any other backend.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Generator, Sequence
from functools import partial
from typing import Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.bridge.pydantic import ConfigDict, Field, PrivateAttr
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.custom import CustomLLM
from pydantic import AliasChoices, model_validator

from aligners import (
    Completion,
    Emit,
    GenerationBackend,
    GenerationConfig,
    InputTooLongError,
    LocalGenerator,
    Machine,
    StreamRewrite,
    TransformersBackend,
    adrive_stream,
    drive_stream,
)

Messages = list[dict[str, str]]
#: Keyword arguments a call may pass (``llm.complete(prompt, max_tokens=5)``).
CALL_OPTIONS = ("max_tokens", "max_new_tokens", "temperature")


class AlignersLLM(CustomLLM):
    """A local chat model for LlamaIndex: generation through an ``aligners`` backend.

    Prompts go through the model's chat template (``complete(prompt)`` sends one user
    message). Greedy by default, ``max_new_tokens`` (or its alias ``max_tokens``) per reply. A
    prompt that does not fit the context window with the reply raises ``InputTooLongError``
    before anything is generated. Responses carry the token counts (``prompt_tokens``,
    ``completion_tokens``, ``total_tokens``), ``finish_reason`` (``stop`` or ``length``) and
    ``model_name`` in ``additional_kwargs`` (and the OpenAI-shaped ``usage`` in ``raw``); a
    stream's last response carries them. An unknown keyword is an error naming it.

    Example:
        >>> llm = AlignersLLM("smollm2", max_tokens=32)  # loads on first use
        >>> llm.complete("What is the capital of France?").text  # doctest: +SKIP
    """

    # extra="forbid": a misspelt option (max_new_token=5) must fail, not be silently ignored.
    model_config = ConfigDict(extra="forbid")

    model: str = Field(default="smollm2", description="Alias, local directory, .gguf or hub id.")
    max_new_tokens: int = Field(
        default=128,
        gt=0,
        validation_alias=AliasChoices("max_new_tokens", "max_tokens"),
        description="Most tokens per reply (max_tokens is the same setting).",
    )
    temperature: float = Field(default=0.0, ge=0.0)
    context_window: int | None = Field(
        default=None, gt=0, description="Prompt + reply tokens; None reads it from the model."
    )
    _backend: GenerationBackend = PrivateAttr()

    @model_validator(mode="before")
    @classmethod
    def _one_token_limit(cls, data: Any) -> Any:
        return LocalGenerator.one_token_limit(data)

    def __init__(
        self, model: str = "smollm2", *, backend: GenerationBackend | None = None, **kwargs: Any
    ) -> None:
        super().__init__(model=model, **kwargs)
        if backend is not None and not isinstance(backend, GenerationBackend):
            raise TypeError(
                f"backend must be an aligners GenerationBackend, got {type(backend).__name__}"
            )
        self._backend = backend if backend is not None else TransformersBackend(model)

    @classmethod
    def class_name(cls) -> str:
        return "AlignersLLM"

    @property
    def backend(self) -> GenerationBackend:
        return self._backend

    @property
    def max_tokens(self) -> int:
        """The OpenAI name of :attr:`max_new_tokens`."""
        return self.max_new_tokens

    @property
    def metadata(self) -> LLMMetadata:
        context = self.context_window or self._backend.context_length or 2048
        return LLMMetadata(
            context_window=context,
            num_output=self.max_new_tokens,
            is_chat_model=True,
            model_name=self.model,
        )

    def _config(self, options: dict[str, Any]) -> GenerationConfig:
        """The decoding settings, with a call's ``max_tokens``/``temperature`` over the fields."""
        unknown = sorted(set(options) - set(CALL_OPTIONS))
        if unknown:
            raise TypeError(
                f"AlignersLLM got unknown keyword argument(s) {', '.join(unknown)}; a call takes "
                f"{', '.join(CALL_OPTIONS)}"
            )
        limit = options.get("max_tokens", options.get("max_new_tokens", self.max_new_tokens))
        temperature = options.get("temperature", self.temperature)
        return GenerationConfig(max_new_tokens=limit, temperature=temperature)

    # -- prompts -------------------------------------------------------------------------------

    def _messages(self, messages: Sequence[ChatMessage]) -> Messages:
        out = []
        for message in messages:
            role = (
                message.role.value if isinstance(message.role, MessageRole) else str(message.role)
            )
            out.append({"role": role, "content": message.content or ""})
        if not out:
            raise ValueError("chat needs at least one message")
        return out

    def _prompt(self, prompt: str) -> Messages:
        messages = [{"role": "user", "content": prompt}]
        if self.system_prompt:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        return messages

    def check_fits(self, prompt: Messages, config: GenerationConfig) -> None:
        """Raise :class:`InputTooLongError` when ``prompt`` and the reply do not fit the context.

        Past its context a model writes noise (and slowly), so it never just runs; this is the
        check ``ChatAlignersLocal`` makes (with ``overflow="error"``).
        """
        context = self.context_window or self._backend.context_length
        used = self._backend.count_tokens(prompt)
        if context is None or used is None or used + config.max_new_tokens <= context:
            return
        raise InputTooLongError(
            f"the prompt is {used} tokens; with max_new_tokens={config.max_new_tokens} it does "
            f"not fit {self.model!r}'s {context}-token context: shorten it or lower "
            "max_new_tokens"
        )

    def _run(self, prompt: Messages, config: GenerationConfig) -> Completion:
        self.check_fits(prompt, config)
        return LocalGenerator(self._backend).complete(prompt, config)

    async def _arun(self, prompt: Messages, config: GenerationConfig) -> Completion:
        return await asyncio.to_thread(self._run, prompt, config)

    def _chat_chunk(self, text: str, delta: str | None, done: Completion | None) -> ChatResponse:
        """A chat stream's response: a piece (``delta``) with the text so far, or the last one
        (``done``: the finished :class:`Completion`)."""
        message = ChatMessage(role=MessageRole.ASSISTANT, content=text)
        if done is None:
            return ChatResponse(message=message, delta=delta)
        return ChatResponse(message=message, delta="", **self._extras(done))

    def _completion_chunk(
        self, text: str, delta: str | None, done: Completion | None
    ) -> CompletionResponse:
        """:meth:`_chat_chunk` for a completion stream."""
        if done is None:
            return CompletionResponse(text=text, delta=delta)
        return CompletionResponse(text=text, delta="", **self._extras(done))

    def _extras(self, done: Completion) -> dict[str, Any]:
        """``additional_kwargs`` and ``raw`` of a finished reply."""
        details: dict[str, Any] = {"finish_reason": done.finish_reason, "model_name": self.model}
        raw: dict[str, Any] = {"model": self.model, "finish_reason": done.finish_reason}
        if done.prompt_tokens is not None and done.completion_tokens is not None:
            counts = {
                "prompt_tokens": done.prompt_tokens,
                "completion_tokens": done.completion_tokens,
                "total_tokens": done.prompt_tokens + done.completion_tokens,
            }
            details.update(counts)
            raw["usage"] = counts
        return {"additional_kwargs": details, "raw": raw}

    def _stream_steps(
        self,
        prompt: Messages,
        config: GenerationConfig,
        respond: Callable[[str, str | None, Completion | None], Any],
    ) -> Machine[None]:
        """A stream as a stream machine: ``respond(text so far, piece, None)`` for every piece,
        then ``respond(text, None, completion)``."""
        done = Completion("")
        local = LocalGenerator(self._backend)
        text = ""

        def each(piece: str) -> list[Any]:
            nonlocal text
            text += piece
            return [respond(text, piece, None)]

        _, error = yield StreamRewrite(
            partial(local.stream, prompt, config, done),
            partial(local.astream, prompt, config, done),
            each=each,
        )
        if error is not None:
            raise error
        yield Emit(respond(text, None, done))

    def _stream(
        self, prompt: Messages, config: GenerationConfig, respond: Any
    ) -> Generator[Any, None, None]:
        """The sync stream; checks the context at once (not on the first ``next``)."""
        self.check_fits(prompt, config)
        return drive_stream(self._stream_steps(prompt, config, respond))

    async def _astream(
        self, prompt: Messages, config: GenerationConfig, respond: Any
    ) -> AsyncGenerator[Any, None]:
        await asyncio.to_thread(self.check_fits, prompt, config)
        return adrive_stream(self._stream_steps(prompt, config, respond))

    # -- completion ----------------------------------------------------------------------------

    def _completion(self, done: Completion) -> CompletionResponse:
        return CompletionResponse(text=done.text.strip(), **self._extras(done))

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return self._completion(self._run(self._prompt(prompt), self._config(kwargs)))

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        return self._stream(self._prompt(prompt), self._config(kwargs), self._completion_chunk)

    @llm_completion_callback()
    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        return self._completion(await self._arun(self._prompt(prompt), self._config(kwargs)))

    @llm_completion_callback()
    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        rendered, config = self._prompt(prompt), self._config(kwargs)
        return await self._astream(rendered, config, self._completion_chunk)

    # -- chat ----------------------------------------------------------------------------------

    def _chat(self, done: Completion) -> ChatResponse:
        message = ChatMessage(role=MessageRole.ASSISTANT, content=done.text.strip())
        return ChatResponse(message=message, **self._extras(done))

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self._chat(self._run(self._messages(messages), self._config(kwargs)))

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        return self._stream(self._messages(messages), self._config(kwargs), self._chat_chunk)

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self._chat(await self._arun(self._messages(messages), self._config(kwargs)))

    @llm_chat_callback()
    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        rendered, config = self._messages(messages), self._config(kwargs)
        return await self._astream(rendered, config, self._chat_chunk)
