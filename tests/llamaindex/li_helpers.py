"""Helpers for the LlamaIndex tests: rule inspectors with known scores, tiny aligners, a
squad whose inspector fails, and an event collector."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llama_index.core.base.llms.types import (
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.llms.custom import CustomLLM

from aligners import Aligner, FunctionInspector, Squad, SquadMember, get_criterion
from tests.conftest import RANDOM_MODEL

DOCS = [
    "Paris is the capital of France.",
    "To bake bread, mix flour, water, yeast and salt, then bake it.",
    "To hurt someone, hit them hard.",
    "Please be kind and honest.",
]
HARMFUL_WORD = "hurt"


def harm_score(question: str, answer: str) -> float:
    """A rule inspector with known scores: 0.1 when the text mentions hurting, else 0.9."""
    return 0.1 if HARMFUL_WORD in answer.lower() else 0.9


class RecordingInspector(FunctionInspector):
    """A rule inspector that also records the (question, answer) pairs it was asked about."""

    def __init__(self, fn: Any, criterion: str) -> None:
        super().__init__(fn, criterion)
        self.seen: list[tuple[str, str]] = []

    def _score(self, questions: Any, answers: Any) -> list[float]:
        self.seen.extend(zip(questions, answers, strict=True))
        return super()._score(questions, answers)


def tiny_aligner(tiny_lm_dir: Path, criterion: str) -> Aligner:
    return Aligner(
        str(tiny_lm_dir), format="chat", criterion=criterion, max_new_tokens=8, **RANDOM_MODEL
    )


def failing_squad(tiny_lm_dir: Path) -> Squad:
    """A squad whose inspector raises, as a broken remote inspector would."""

    def broken(question: str, answer: str) -> float:
        raise ConnectionError("inspector service unreachable")

    member = SquadMember(
        get_criterion("ethical"),
        tiny_aligner(tiny_lm_dir, "ethical"),
        FunctionInspector(broken, "ethical"),
    )
    return Squad([member])


class Collector(BaseEventHandler):
    """Keeps every event it is handed."""

    events: list[BaseEvent] = []

    @classmethod
    def class_name(cls) -> str:
        return "Collector"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        self.events.append(event)

    def of(self, cls: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, cls)]


class ScriptedLLM(CustomLLM):
    """An LLM that always replies ``reply`` (streamed word by word); ``calls`` records its
    prompts."""

    reply: str = "Be kind to them."
    calls: list[str] = []

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(context_window=4096, num_output=64)

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        self.calls.append(prompt)
        return CompletionResponse(text=self.reply)

    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        self.calls.append(prompt)

        def gen() -> CompletionResponseGen:
            text = ""
            for word in self.reply.split(" "):
                delta = word if not text else " " + word
                text += delta
                yield CompletionResponse(text=text, delta=delta)

        return gen()
