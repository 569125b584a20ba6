"""Generating with a local model the way an OpenAI-compatible server answers: stop strings cut,
a true ``finish_reason``, token counts and a context check before generating."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from aligners.backends.base import GenerationBackend, GenerationConfig, iterate_in_thread
from aligners.backends.transformers import TransformersBackend
from aligners.errors import InputTooLongError
from aligners.formats.base import Prompt
from aligners.formats.stops import StopCutter, cut_at_stop


@dataclass
class Completion:
    """One generated text and why it ended (``stop`` or ``length``), with token counts if known."""

    text: str
    finish_reason: str = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class LocalGenerator:
    """Generates with an in-process backend the way an OpenAI-compatible server answers.

    With a :class:`~aligners.backends.TransformersBackend` it runs ``model.generate`` with exactly
    the backend's decoding settings (so greedy outputs match the in-process backend token for
    token), counts tokens, and reports ``finish_reason="length"`` when the limit cut the text.
    Any other backend works too, with the ``finish_reason`` it reports (``stop`` where it cannot
    tell) and no token counts.
    """

    def __init__(self, backend: GenerationBackend) -> None:
        self.backend = backend

    @staticmethod
    def one_token_limit(data: Any) -> Any:
        """A model validator's input, unless it names both ``max_tokens`` and
        ``max_new_tokens``: both at once would make one of them silently lose."""
        if isinstance(data, dict) and "max_tokens" in data and "max_new_tokens" in data:
            raise ValueError("pass max_tokens or max_new_tokens, not both (they are one setting)")
        return data

    @property
    def _transformers(self) -> TransformersBackend | None:
        return self.backend if isinstance(self.backend, TransformersBackend) else None

    def warmup(self) -> None:
        """Load the weights now rather than on the first request."""
        if self._transformers is not None:
            self._transformers.load()

    def check_fits(self, prompt: Prompt, config: GenerationConfig) -> int | None:
        """The prompt's length in tokens; raises :class:`InputTooLongError` when it and
        ``max_new_tokens`` do not fit the model's context (checked before any generation)."""
        used = self.backend.count_tokens(prompt)
        if used is not None:
            self._check_length(used, config)
        return used

    def _check_length(self, used: int, config: GenerationConfig) -> None:
        context = self.backend.context_length
        if context is not None and used + config.max_new_tokens > context:
            raise InputTooLongError(
                f"this model's context is {context} tokens; the messages take {used} and "
                f"max_tokens asks for {config.max_new_tokens} more. Shorten the messages or "
                "lower max_tokens"
            )

    async def acheck_fits(self, prompt: Prompt, config: GenerationConfig) -> int | None:
        """Async :meth:`check_fits` (tokenizing runs in a worker thread)."""
        return await asyncio.to_thread(self.check_fits, prompt, config)

    def _prepare(
        self, prompt: Prompt, config: GenerationConfig
    ) -> tuple[Any, Any, dict[str, Any], int]:
        import torch

        backend = self._transformers
        assert backend is not None
        loaded = backend.load()
        ids = backend._encode(prompt)  # the backend's own rendering: chat template, BOS handling
        self._check_length(len(ids), config)
        kwargs = backend._generate_kwargs(config, 1)
        device = loaded.model.device
        inputs = {
            "input_ids": torch.tensor([ids], device=device),
            "attention_mask": torch.ones(1, len(ids), dtype=torch.long, device=device),
        }
        return loaded, inputs, kwargs, len(ids)

    def complete(self, prompt: Prompt, config: GenerationConfig) -> Completion:
        """Generate one completion, cut at the first stop string."""
        backend = self._transformers
        if backend is None:
            self.check_fits(prompt, config)
            # generate_detailed: a backend that knows why it stopped (a remote server) says so.
            generation = self.backend.generate_detailed([prompt], config)[0]
            text, stopped = cut_at_stop(generation.text, config.stop_strings)
            finish = "stop" if stopped else (generation.finish_reason or "stop")
            return Completion(text, finish)
        import torch

        loaded, inputs, kwargs, prompt_tokens = self._prepare(prompt, config)
        with loaded.lock, torch.inference_mode():
            output = loaded.model.generate(**inputs, **kwargs)
        new = output[0, prompt_tokens:].tolist()
        text = loaded.tokenizer.decode(new, skip_special_tokens=True)
        text, stopped = cut_at_stop(text, config.stop_strings)
        ended = bool(new) and new[-1] in kwargs["eos_token_id"]
        # It ends at an end-of-sequence id, a stop string, max_new_tokens or max_time: the
        # last two cut the text.
        finish = "stop" if (stopped or ended) else "length"
        return Completion(text, finish, prompt_tokens, len(new))

    def stream(self, prompt: Prompt, config: GenerationConfig, state: Completion) -> Iterator[str]:
        """Yield text pieces; ``state`` holds the finish reason and counts once it is exhausted."""
        backend = self._transformers
        cutter = StopCutter(config.stop_strings)
        if backend is None:
            self.check_fits(prompt, config)
            for piece in self.backend.stream(prompt, config):
                out = cutter.feed(piece)
                if out:
                    state.text += out
                    yield out
                if cutter.stopped:
                    break
            tail = cutter.flush()
            if tail:
                state.text += tail
                yield tail
            return
        yield from self._stream_transformers(prompt, config, state, cutter)

    def _stream_transformers(
        self, prompt: Prompt, config: GenerationConfig, state: Completion, cutter: StopCutter
    ) -> Iterator[str]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        loaded, inputs, kwargs, prompt_tokens = self._prepare(prompt, config)
        tokens: list[int] = []
        cancel = threading.Event()

        class Counting(TextIteratorStreamer):  # type: ignore[misc]
            def put(self, value: Any) -> None:
                if not self.next_tokens_are_prompt:
                    tokens.extend(int(t) for t in value.reshape(-1).tolist())
                super().put(value)

        class Cancelled(StoppingCriteria):  # type: ignore[misc]
            # A client that hangs up should free the model, not wait for max_new_tokens.
            def __call__(self, input_ids: Any, scores: Any, **_: Any) -> Any:
                return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool)

        streamer = Counting(loaded.tokenizer, skip_prompt=True, skip_special_tokens=True)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with loaded.lock, torch.inference_mode():
                    loaded.model.generate(
                        **inputs,
                        **kwargs,
                        streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([Cancelled()]),
                    )
            except BaseException as exc:  # re-raised in the consumer below
                errors.append(exc)
                streamer.end()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            for piece in streamer:
                out = cutter.feed(piece)
                if out:
                    state.text += out
                    yield out
                if cutter.stopped:
                    cancel.set()
            tail = cutter.flush()
            if tail:
                state.text += tail
                yield tail
        finally:
            cancel.set()
        thread.join()
        if errors:
            raise errors[0]
        ended = bool(tokens) and tokens[-1] in kwargs["eos_token_id"]
        state.finish_reason = "stop" if (cutter.stopped or ended) else "length"
        state.prompt_tokens = prompt_tokens
        state.completion_tokens = len(tokens)

    async def acomplete(self, prompt: Prompt, config: GenerationConfig) -> Completion:
        """Async :meth:`complete` (generation runs in a worker thread)."""
        return await asyncio.to_thread(self.complete, prompt, config)

    async def astream(
        self, prompt: Prompt, config: GenerationConfig, state: Completion
    ) -> AsyncIterator[str]:
        """Async :meth:`stream`: a worker thread generates, the event loop stays free."""
        async for piece in iterate_in_thread(lambda: self.stream(prompt, config, state)):
            yield piece
