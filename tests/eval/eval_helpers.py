"""Real LangChain chat models driven by a rule, and tiny squads, for the eval tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from tests.conftest import RANDOM_MODEL


class RuleChatModel(BaseChatModel):
    """A LangChain chat model whose reply is ``rule(last message text)``; counts its calls."""

    rule: Callable[[str], str]
    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "rule"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        self.calls += 1
        text = self.rule(str(messages[-1].content))
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])


def keyword_judge(keyword: str) -> RuleChatModel:
    """A judge preferring the response that contains ``keyword`` (C when both or neither)."""

    def rule(prompt: str) -> str:
        first = prompt.split("[Response A]")[1].split("[End of Response A]")[0]
        second = prompt.split("[Response B]")[1].split("[End of Response B]")[0]
        a, b = keyword in first, keyword in second
        return "A" if a and not b else "B" if b and not a else "C"

    return RuleChatModel(rule=rule)


def tiny_squad(
    lm_dir: Path,
    encoder_dir: Path,
    criteria: tuple[str, ...] = ("ethical", "helpful"),
    threshold: float = 1.0,
) -> Any:
    """Tiny random aligners gated by zero-shot inspectors on a tiny encoder.

    ``threshold=1.0`` makes every inspector flag every answer, so every aligner runs.
    """
    from aligners import Aligner, EncoderHeadInspector, SentenceEncoder, Squad, SquadMember
    from aligners.criteria import get_criterion

    encoder = SentenceEncoder(str(encoder_dir))
    return Squad(
        [
            SquadMember(
                get_criterion(c),
                Aligner(str(lm_dir), format="chat", criterion=c, max_new_tokens=6, **RANDOM_MODEL),
                EncoderHeadInspector.zero_shot(c, encoder=encoder),
                threshold,
            )
            for c in criteria
        ]
    )
