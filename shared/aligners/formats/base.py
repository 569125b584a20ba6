"""The prompt-format interface: how a (question, answer) pair becomes model input."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Union

from aligners.criteria import Criterion
from aligners.formats.stops import cut_at_stop

ChatMessages = list[dict[str, str]]
Prompt = Union[str, ChatMessages]  # noqa: UP007 (a runtime alias; `|` needs 3.10 objects)
"""A raw text prompt, or chat messages that the backend renders with the model's chat template."""


class PromptFormat(ABC):
    """How an aligner checkpoint expects its input, where its output ends, and how it is trained.

    Released checkpoints only work with the exact format they were trained on, so every format
    is byte-exact and tested as such. Subclass this (or use :class:`TemplateFormat`) for your own.
    """

    name: str = "custom"
    #: Extra tokens the format needs in the vocabulary (added as special tokens when missing).
    special_tokens: tuple[str, ...] = ()
    #: Strings that end the correction; generation stops there and the text is cut before them.
    stop_strings: tuple[str, ...] = ()

    @property
    def is_chat(self) -> bool:
        """True when :meth:`build_prompt` returns chat messages instead of raw text."""
        return False

    @abstractmethod
    def build_prompt(
        self, question: str, answer: str, criterion: Criterion | None = None
    ) -> Prompt:
        """The inference prompt for one pair."""

    def open_reply(self, prompt: Prompt, opening: str) -> Prompt:
        """``prompt`` with the reply forced to begin with ``opening``: raw text gets it appended;
        chat messages end with an assistant message holding it, which backends continue (the
        ``continue_final_message`` convention of transformers and vLLM)."""
        if isinstance(prompt, str):
            return prompt + opening
        return [*prompt, {"role": "assistant", "content": opening}]

    def training_target(self, correction: str) -> str:
        """The text the model learns to produce after the prompt (loss is only on this)."""
        return correction

    def inspector_text(self, question: str, answer: str) -> str:
        """The single text a sequence-classification inspector reads."""
        return f"{question} [SEP] {answer}"

    def parse_output(self, text: str) -> str:
        """Cut generated text at the first stop string and strip surrounding whitespace."""
        return cut_at_stop(text, self.stop_strings)[0].strip()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
