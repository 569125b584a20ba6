"""Where the original answers come from: the local default model, any LangChain chat model,
or any :class:`~aligners.backends.GenerationBackend`.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from aligners.backends.base import GenerationBackend, GenerationConfig


def message_text(message: Any) -> str:
    """The text of a LangChain message (string content or a list of content blocks)."""
    content = getattr(message, "content", message)
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, dict) and block.get("type") == "text":
                parts.append(str(block.get("text", "")))
        return "".join(parts)
    raise TypeError(f"cannot read text from a {type(message).__name__}")


def is_chat_model(obj: Any) -> bool:
    """Whether ``obj`` is a LangChain chat model (checked without importing langchain)."""
    try:
        from langchain_core.language_models import BaseChatModel
    except ImportError:  # langchain-core is an optional extra
        return False
    return isinstance(obj, BaseChatModel)


def chat_model_batch(
    model: Any, conversations: Sequence[list[dict[str, str]]], max_concurrency: int
) -> list[str]:
    """Run a LangChain chat model on several conversations (role/content dicts) at once."""
    inputs = [[(m["role"], m["content"]) for m in conv] for conv in conversations]
    replies = model.batch(inputs, config={"max_concurrency": max_concurrency})
    return [message_text(r) for r in replies]


async def achat_model_batch(
    model: Any, conversations: Sequence[list[dict[str, str]]], max_concurrency: int
) -> list[str]:
    """Async :func:`chat_model_batch`."""
    inputs = [[(m["role"], m["content"]) for m in conv] for conv in conversations]
    replies = await model.abatch(inputs, config={"max_concurrency": max_concurrency})
    return [message_text(r) for r in replies]


class Upstream(ABC):
    """Answers questions: the model whose answers the squad then aligns."""

    name: str = "upstream"

    @abstractmethod
    def answer_batch(self, questions: Sequence[str]) -> list[str]:
        """One answer per question, in order."""

    async def aanswer_batch(self, questions: Sequence[str]) -> list[str]:
        """Async :meth:`answer_batch` (the default runs it in a worker thread)."""
        return await asyncio.to_thread(self.answer_batch, questions)


class LocalUpstream(Upstream):
    """A local causal LM answering in its chat format (default: SmolLM2-135M-Instruct), greedy.

    Example:
        >>> upstream = LocalUpstream("smollm2", max_new_tokens=64)  # loads nothing yet
    """

    def __init__(
        self,
        model: str = "smollm2",
        *,
        backend: GenerationBackend | None = None,
        max_new_tokens: int = 128,
        batch_size: int = 8,
        system_prompt: str | None = None,
    ) -> None:
        from aligners.backends.transformers import TransformersBackend

        self.backend = backend if backend is not None else TransformersBackend(model)
        self.config = GenerationConfig(max_new_tokens=max_new_tokens, batch_size=batch_size)
        self.system_prompt = system_prompt
        self.name = f"local:{model}" if backend is None else f"backend:{backend.name}"

    def messages(self, question: str) -> list[dict[str, str]]:
        """The chat messages for one question."""
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return [*system, {"role": "user", "content": question}]

    def answer_batch(self, questions: Sequence[str]) -> list[str]:
        outputs = self.backend.generate([self.messages(q) for q in questions], self.config)
        return [o.strip() for o in outputs]

    async def aanswer_batch(self, questions: Sequence[str]) -> list[str]:
        outputs = await self.backend.agenerate([self.messages(q) for q in questions], self.config)
        return [o.strip() for o in outputs]


class ChatModelUpstream(Upstream):
    """Any LangChain chat model (``BaseChatModel``) as the upstream model."""

    def __init__(
        self, model: Any, *, max_concurrency: int = 4, system_prompt: str | None = None
    ) -> None:
        if not is_chat_model(model):
            raise TypeError(
                f"ChatModelUpstream needs a LangChain BaseChatModel, got {type(model).__name__}"
            )
        self.model = model
        self.max_concurrency = max_concurrency
        self.system_prompt = system_prompt
        self.name = f"langchain:{type(model).__name__}"

    def _conversations(self, questions: Sequence[str]) -> list[list[dict[str, str]]]:
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return [[*system, {"role": "user", "content": q}] for q in questions]

    def answer_batch(self, questions: Sequence[str]) -> list[str]:
        texts = chat_model_batch(self.model, self._conversations(questions), self.max_concurrency)
        return [t.strip() for t in texts]

    async def aanswer_batch(self, questions: Sequence[str]) -> list[str]:
        texts = await achat_model_batch(
            self.model, self._conversations(questions), self.max_concurrency
        )
        return [t.strip() for t in texts]


def make_upstream(upstream: Any, **options: Any) -> Upstream:
    """An :class:`Upstream` from a model alias/path, a LangChain chat model, or a backend."""
    if isinstance(upstream, Upstream):
        return upstream
    if isinstance(upstream, GenerationBackend):
        return LocalUpstream(backend=upstream, **options)
    if is_chat_model(upstream):
        return ChatModelUpstream(
            upstream, **{k: v for k, v in options.items() if k == "system_prompt"}
        )
    if isinstance(upstream, str):
        return LocalUpstream(upstream, **options)
    raise TypeError(
        "upstream must be a model alias or path, a LangChain chat model, a GenerationBackend or an "
        f"Upstream, got {type(upstream).__name__}"
    )
