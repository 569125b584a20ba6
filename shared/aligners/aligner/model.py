"""The aligner: reads a question and an answer, writes a corrected answer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aligners.aligner.config import CONFIG_NAME, AlignerConfig
from aligners.backends.base import Generation, GenerationBackend, GenerationConfig
from aligners.backends.transformers import TransformersBackend
from aligners.criteria import Criterion, get_criterion
from aligners.errors import InputTooLongError
from aligners.formats import PromptFormat, get_format
from aligners.formats.base import Prompt
from aligners.formats.stops import StopCutter
from aligners.validation import validate_batch, validate_pair


@dataclass(frozen=True)
class Correction:
    """One aligner output with what happened on the way."""

    text: str
    #: The answer's middle was cut to fit the aligner's context.
    truncated: bool = False
    #: The output stopped at ``max_new_tokens`` before it ended (its end is missing).
    hit_token_limit: bool = False
    #: The reply was forced to begin with this text (:meth:`Aligner.correct` ``opening``).
    opening: str | None = None


class Aligner:
    """A correction model for one criterion (or for all, like the "Aligner" paper's single model).

    Construction is cheap: weights load on first use and are shared process-wide.

    Example:
        >>> aligner = Aligner(model="smollm2", format="chat", criterion="ethical")
        >>> aligner.align("How do I pick a lock?", "Break it with a hammer.")  # doctest: +SKIP
    """

    def __init__(
        self,
        model: str = "smollm2",
        *,
        format: str | PromptFormat = "chat",
        criterion: str | Criterion | None = None,
        backend: GenerationBackend | None = None,
        **config: Any,
    ) -> None:
        self.prompt_format = get_format(format)
        self.criterion = get_criterion(criterion) if criterion is not None else None
        self.config = AlignerConfig(
            model=model,
            format=format if isinstance(format, str) else self.prompt_format.name,
            criterion=self.criterion.name if self.criterion else None,
            **config,
        )
        self.backend = backend if backend is not None else self._default_backend()
        if self.prompt_format.special_tokens:
            self.backend.ensure_special_tokens(self.prompt_format.special_tokens)

    def _default_backend(self) -> GenerationBackend:
        return TransformersBackend(
            self.config.model,
            gguf_file=self.config.gguf_file,
            adapter=self.config.adapter,
            device_map=self.config.device_map,
            dtype=self.config.dtype,
        )

    @classmethod
    def from_config(cls, config: AlignerConfig, **overrides: Any) -> Aligner:
        """Build an aligner from an :class:`AlignerConfig` (overrides win)."""
        values = config.model_dump() | overrides
        return cls(values.pop("model"), **values)

    @classmethod
    def from_pretrained(cls, path: str | Path, **overrides: Any) -> Aligner:
        """Load an aligner saved with :meth:`save_pretrained`, or any causal LM directory/hub id.

        A directory with ``aligner_config.json`` restores its model, adapter, format and criterion;
        relative paths inside it are resolved against the directory.
        """
        directory = Path(path).expanduser()
        config_file = directory / CONFIG_NAME
        if not config_file.exists():
            return cls(str(path), **overrides)
        values = json.loads(config_file.read_text())
        for key in ("model", "adapter"):
            value = values.get(key)
            if value and not Path(value).is_absolute() and (directory / value).exists():
                values[key] = str((directory / value).resolve())
        return cls.from_config(AlignerConfig(**values), **overrides)

    def save_pretrained(self, path: str | Path) -> Path:
        """Write ``aligner_config.json`` so :meth:`from_pretrained` rebuilds this aligner."""
        directory = Path(path).expanduser()
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / CONFIG_NAME
        target.write_text(self.config.model_dump_json(indent=2) + "\n")
        return target

    # -- prompts -------------------------------------------------------------------------------

    @property
    def generation_config(self) -> GenerationConfig:
        return GenerationConfig(
            max_new_tokens=self.config.max_new_tokens,
            stop_strings=self.prompt_format.stop_strings,
            copy_aware=self.config.copy_aware,
            batch_size=self.config.batch_size,
        )

    def _config_for(self, answers: Sequence[str], opening: str | None = None) -> GenerationConfig:
        if opening is not None:
            # A forced opening starts a new text: drafts from the answer would all be rejected.
            return self.generation_config.model_copy(update={"copy_aware": False})
        # The answers are the drafts of copy-aware decoding (the model mostly copies them).
        return self.generation_config.model_copy(update={"sources": tuple(answers)})

    def _prompts(self, built: Sequence[tuple[Prompt, bool]], opening: str | None) -> list[Prompt]:
        if opening is None:
            return [p for p, _ in built]
        if not isinstance(opening, str) or not opening.strip():
            raise ValueError(f"opening must be a non-empty string, got {opening!r}")
        return [self.prompt_format.open_reply(p, opening) for p, _ in built]

    def build_prompt(self, question: str, answer: str) -> tuple[Prompt, bool]:
        """The prompt for one pair, fitted to the context; also whether the answer was cut."""
        validate_pair(question, answer)
        prompt = self.prompt_format.build_prompt(question, answer, self.criterion)
        budget = self._prompt_budget()
        if budget is None:
            return prompt, False
        used = self.backend.count_tokens(prompt)
        if used is None or used <= budget:
            return prompt, False
        if self.config.overflow == "error":
            raise InputTooLongError(
                f"answer does not fit the aligner's context: prompt is {used} tokens, budget "
                f"{budget} (set overflow='truncate' to cut the answer's middle)"
            )
        answer_tokens = self.backend.count_tokens(answer) or 0
        keep = answer_tokens - (used - budget) - 8
        if keep < 16:
            raise InputTooLongError(
                f"question alone nearly fills the aligner's context "
                f"({used} tokens, budget {budget})"
            )
        short = self.backend.truncate_middle(answer, keep)
        return self.prompt_format.build_prompt(question, short, self.criterion), True

    def _prompt_budget(self) -> int | None:
        limit = self.config.max_input_tokens
        if limit is None:
            context = self.backend.context_length
            if context is None:
                return None
            limit = context - self.config.max_new_tokens
        return limit

    # -- aligning ------------------------------------------------------------------------------

    def correct(
        self, questions: Sequence[str], answers: Sequence[str], *, opening: str | None = None
    ) -> list[Correction]:
        """Align a batch with details (was the answer truncated?); one batched generation.

        ``opening`` forces every reply to begin with that text (the model writes the rest),
        e.g. a refusal opening when the aligner handed back an answer it should have fixed.
        """
        validate_batch(questions, answers)
        built = [self.build_prompt(q, a) for q, a in zip(questions, answers)]
        prompts = self._prompts(built, opening)
        outputs = self.backend.generate_detailed(prompts, self._config_for(answers, opening))
        return self._corrections(outputs, built, opening)

    def _corrections(
        self,
        outputs: Sequence[Generation],
        built: Sequence[tuple[Prompt, bool]],
        opening: str | None = None,
    ) -> list[Correction]:
        return [
            Correction(
                self.prompt_format.parse_output((opening or "") + out.text),
                truncated,
                out.hit_token_limit,
                opening,
            )
            for out, (_, truncated) in zip(outputs, built)
        ]

    def align_batch(self, questions: Sequence[str], answers: Sequence[str]) -> list[str]:
        """Corrected answers for a batch of (question, answer) pairs."""
        return [c.text for c in self.correct(questions, answers)]

    def align(self, question: str, answer: str) -> str:
        """The corrected answer for one pair."""
        return self.align_batch([question], [answer])[0]

    def stream(self, question: str, answer: str) -> Iterator[str]:
        """Yield the corrected answer piece by piece as the model writes it."""
        prompt, _ = self.build_prompt(question, answer)
        cutter = StopCutter(self.prompt_format.stop_strings, strip=True)
        for piece in self.backend.stream(prompt, self._config_for([answer])):
            out = cutter.feed(piece)
            if out:
                yield out
            if cutter.stopped:
                break
        tail = cutter.flush()
        if tail:
            yield tail

    async def acorrect(
        self, questions: Sequence[str], answers: Sequence[str], *, opening: str | None = None
    ) -> list[Correction]:
        """Async :meth:`correct`."""
        validate_batch(questions, answers)
        built = await asyncio.to_thread(
            lambda: [self.build_prompt(q, a) for q, a in zip(questions, answers)]
        )
        prompts = self._prompts(built, opening)
        outputs = await self.backend.agenerate_detailed(prompts, self._config_for(answers, opening))
        return self._corrections(outputs, built, opening)

    async def aalign_batch(self, questions: Sequence[str], answers: Sequence[str]) -> list[str]:
        """Async :meth:`align_batch`."""
        return [c.text for c in await self.acorrect(questions, answers)]

    async def aalign(self, question: str, answer: str) -> str:
        """Async :meth:`align`."""
        return (await self.aalign_batch([question], [answer]))[0]

    async def astream(self, question: str, answer: str) -> AsyncIterator[str]:
        """Async :meth:`stream`."""
        prompt, _ = await asyncio.to_thread(self.build_prompt, question, answer)
        cutter = StopCutter(self.prompt_format.stop_strings, strip=True)
        async for piece in self.backend.astream(prompt, self._config_for([answer])):
            out = cutter.feed(piece)
            if out:
                yield out
            if cutter.stopped:
                break
        tail = cutter.flush()
        if tail:
            yield tail

    @property
    def name(self) -> str:
        return self.criterion.name if self.criterion else "aligner"

    def __repr__(self) -> str:
        return (
            f"Aligner(model={self.config.model!r}, format={self.prompt_format.name!r}, "
            f"criterion={self.config.criterion!r})"
        )
