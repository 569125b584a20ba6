"""The generation interface every backend implements (in-process transformers, remote servers)."""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from aligners.formats.base import Prompt


class GenerationConfig(BaseModel):
    """Decoding settings for one generation call. Greedy by default, as both papers decode."""

    model_config = ConfigDict(frozen=True)

    max_new_tokens: int = Field(default=256, gt=0)
    stop_strings: tuple[str, ...] = ()
    #: Greedy decoding that drafts the rest of the source answer and verifies it in one pass
    #: (identical text; batches and streams too): a correction mostly copies the answer.
    copy_aware: bool = False
    #: First draft length (grows while drafts are accepted, shrinks after rejections).
    prompt_lookup_num_tokens: int = Field(default=10, gt=0)
    #: The answer each prompt asks to correct, in prompt order (None where unknown); copy-aware
    #: decoding drafts from it. Without it, drafts come from the prompt itself.
    sources: tuple[str | None, ...] | None = None
    batch_size: int = Field(default=8, gt=0)
    temperature: float = Field(default=0.0, ge=0.0)
    #: Seconds after which generation stops (ending as ``length``); None: no time limit.
    #: Servers set it so that no request holds a model for longer than its timeout.
    max_time: float | None = Field(default=None, gt=0)


#: Why a generation ended: ``stop`` (end of sequence or a stop string), ``length`` (it reached
#: ``max_new_tokens`` mid-text), or None where the backend cannot tell.
FinishReason = Literal["stop", "length"] | None


@dataclass(frozen=True)
class Generation:
    """One completion and why it ended."""

    text: str
    finish_reason: FinishReason = None

    @property
    def hit_token_limit(self) -> bool:
        """Whether it stopped at ``max_new_tokens`` before it ended (the text is cut off)."""
        return self.finish_reason == "length"


class GenerationBackend(ABC):
    """Turns prompts into completions. Implementations must be safe to call from several threads."""

    name: str = "backend"

    @abstractmethod
    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[str]:
        """Complete every prompt; the i-th output belongs to the i-th prompt (batched inside)."""

    def generate_detailed(
        self, prompts: Sequence[Prompt], config: GenerationConfig
    ) -> list[Generation]:
        """:meth:`generate` with why each completion ended (None where this backend cannot
        tell); never raises because an output was cut at the token limit."""
        return [Generation(text) for text in self.generate(prompts, config)]

    @abstractmethod
    def stream(self, prompt: Prompt, config: GenerationConfig) -> Iterator[str]:
        """Yield the completion of one prompt piece by piece as it is generated."""

    def count_tokens(self, prompt: Prompt) -> int | None:
        """Number of tokens the prompt takes, or None when the backend cannot tell."""
        return None

    def truncate_middle(self, text: str, max_tokens: int) -> str:
        """Shorten ``text`` to about ``max_tokens`` tokens by dropping its middle."""
        keep = max(max_tokens, 0) * 4  # about four characters a token when no tokenizer is at hand
        if len(text) <= keep:
            return text
        head = keep // 2
        return text[:head] + " ... " + text[len(text) - (keep - head) :]

    @property
    def context_length(self) -> int | None:
        """Maximum prompt + completion length in tokens, or None when unknown."""
        return None

    def ensure_special_tokens(self, tokens: Sequence[str]) -> None:  # noqa: B027
        """Make sure the vocabulary holds these marker tokens (the ``ibm`` format needs them)."""

    async def agenerate(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[str]:
        """Async :meth:`generate`; the default runs it in a worker thread so the loop stays free."""
        return await asyncio.to_thread(self.generate, prompts, config)

    async def agenerate_detailed(
        self, prompts: Sequence[Prompt], config: GenerationConfig
    ) -> list[Generation]:
        """Async :meth:`generate_detailed`; by default a worker thread runs it."""
        return await asyncio.to_thread(self.generate_detailed, prompts, config)

    async def astream(self, prompt: Prompt, config: GenerationConfig) -> AsyncIterator[str]:
        """Async :meth:`stream`; the default pumps the sync stream from a worker thread."""
        async for piece in iterate_in_thread(lambda: self.stream(prompt, config)):
            yield str(piece)


T = TypeVar("T")


async def iterate_in_thread(make: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
    """The items of the sync iterator ``make()`` returns, produced in a worker thread so the event
    loop stays free: the async side of a sync stream. A consumer that stops early (or an event
    loop that is gone) stops the thread at the next item, and the iterator is closed there."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    stop = threading.Event()

    def put(kind: str, value: Any) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (kind, value))
        except RuntimeError:  # the event loop is gone (server shutting down): drop it
            stop.set()

    def pump() -> None:
        iterator = make()
        try:
            for item in iterator:
                put("item", item)
                if stop.is_set():
                    break
        except BaseException as exc:  # forwarded to the consumer, re-raised there
            put("error", exc)
        else:
            put("done", None)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    threading.Thread(target=pump, daemon=True).start()
    try:
        while True:
            kind, value = await queue.get()
            if kind == "item":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        stop.set()
