"""A LlamaIndex LLM over the engine's generation backends (SmolLM2 offline by default).

Any :class:`aligners.GenerationBackend` works: the in-process ``TransformersBackend`` (the
default, with the process-wide model cache shared with the aligners) or any other backend.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator, Sequence
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
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.custom import CustomLLM

from aligners import GenerationBackend, GenerationConfig, TransformersBackend

Messages = list[dict[str, str]]


class AlignersLLM(CustomLLM):
    """A local chat model for LlamaIndex: generation through an ``aligners`` backend.

    Prompts go through the model's chat template (``complete(prompt)`` sends one user
    message). Greedy by default, ``max_new_tokens`` per reply.

    Example:
        >>> llm = AlignersLLM("smollm2", max_new_tokens=32)  # loads on first use
        >>> llm.complete("What is the capital of France?").text  # doctest: +SKIP
    """

    model: str = Field(default="smollm2", description="Alias, local directory, .gguf or hub id.")
    max_new_tokens: int = Field(default=128, gt=0)
    temperature: float = Field(default=0.0, ge=0.0)
    context_window: int | None = Field(
        default=None, gt=0, description="Prompt + reply tokens; None reads it from the model."
    )
    _backend: GenerationBackend = PrivateAttr()

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
    def metadata(self) -> LLMMetadata:
        context = self.context_window or self._backend.context_length or 2048
        return LLMMetadata(
            context_window=context,
            num_output=self.max_new_tokens,
            is_chat_model=True,
            model_name=self.model,
        )

    @property
    def _config(self) -> GenerationConfig:
        return GenerationConfig(max_new_tokens=self.max_new_tokens, temperature=self.temperature)

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

    # -- completion ----------------------------------------------------------------------------

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        text = self._backend.generate([self._prompt(prompt)], self._config)[0]
        return CompletionResponse(text=text.strip())

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        def gen() -> Generator[CompletionResponse, None, None]:
            text = ""
            for piece in self._backend.stream(self._prompt(prompt), self._config):
                text += piece
                yield CompletionResponse(text=text, delta=piece)

        return gen()

    @llm_completion_callback()
    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        text = (await self._backend.agenerate([self._prompt(prompt)], self._config))[0]
        return CompletionResponse(text=text.strip())

    @llm_completion_callback()
    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        async def gen() -> AsyncGenerator[CompletionResponse, None]:
            text = ""
            async for piece in self._backend.astream(self._prompt(prompt), self._config):
                text += piece
                yield CompletionResponse(text=text, delta=piece)

        return gen()

    # -- chat ----------------------------------------------------------------------------------

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        text = self._backend.generate([self._messages(messages)], self._config)[0]
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text.strip()))

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        prompt = self._messages(messages)

        def gen() -> Generator[ChatResponse, None, None]:
            text = ""
            for piece in self._backend.stream(prompt, self._config):
                text += piece
                yield ChatResponse(
                    message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=piece
                )

        return gen()

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        text = (await self._backend.agenerate([self._messages(messages)], self._config))[0]
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text.strip()))

    @llm_chat_callback()
    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        prompt = self._messages(messages)

        async def gen() -> AsyncGenerator[ChatResponse, None]:
            text = ""
            async for piece in self._backend.astream(prompt, self._config):
                text += piece
                yield ChatResponse(
                    message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=piece
                )

        return gen()
