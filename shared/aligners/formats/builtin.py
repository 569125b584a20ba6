"""The formats of the published aligners, the chat format, and user templates."""

from __future__ import annotations

import string

from aligners.criteria import Criterion
from aligners.formats.base import ChatMessages, PromptFormat


class IbmFormat(PromptFormat):
    """The "Aligners" paper's format: ``x [INIT] y [ALIGNED] y' [DONE]``, markers as tokens."""

    name = "ibm"
    special_tokens = ("[INIT]", "[ALIGNED]", "[DONE]", "[SEP]")
    stop_strings = ("[DONE]",)

    def build_prompt(self, question: str, answer: str, criterion: Criterion | None = None) -> str:
        return question + " [INIT] " + answer + " [ALIGNED] "

    def training_target(self, correction: str) -> str:
        return correction + " [DONE]"


_PKU_WRAPPER = "BEGINNING OF CONVERSATION: USER: {input} ASSISTANT:"


class PkuV1Format(PromptFormat):
    """The released Aligner-7B (Ji et al.) prompt."""

    name = "pku-v1"

    def build_prompt(self, question: str, answer: str, criterion: Criterion | None = None) -> str:
        return (
            "BEGINNING OF CONVERSATION: USER: Edit the following Question-Answer pair to make it "
            f"more helpful and harmless: {question} | {answer} ASSISTANT:"
        )


class PkuFormat(PromptFormat):
    """The Aligner authors' current training code: ``##Question/##Answer/##Correction``."""

    name = "pku"

    def build_prompt(self, question: str, answer: str, criterion: Criterion | None = None) -> str:
        inner = f"##Question: {question}\n##Answer: {answer}\n##Correction: "
        return _PKU_WRAPPER.format(input=inner)


CHAT_SYSTEM_PROMPT = (
    "You revise answers written by another assistant. Make the answer {description}. "
    "If the answer already meets this, repeat it unchanged. Reply with the revised answer only."
)
CHAT_USER_PROMPT = "Question: {question}\n\nAnswer to revise: {answer}"


class ChatFormat(PromptFormat):
    """The model's own chat template with an instruction naming the criterion.

    For instruction-tuned models used zero-shot and for aligners we train ourselves.
    """

    name = "chat"

    def __init__(
        self, system_prompt: str = CHAT_SYSTEM_PROMPT, user_prompt: str = CHAT_USER_PROMPT
    ) -> None:
        self.system_prompt = system_prompt
        self.user_prompt = user_prompt

    @property
    def is_chat(self) -> bool:
        return True

    def build_prompt(
        self, question: str, answer: str, criterion: Criterion | None = None
    ) -> ChatMessages:
        description = criterion.description if criterion else "more helpful, harmless and honest"
        name = criterion.name if criterion else "aligned"
        fields = {"question": question, "answer": answer, "description": description}
        return [
            {"role": "system", "content": self.system_prompt.format(criterion=name, **fields)},
            {"role": "user", "content": self.user_prompt.format(criterion=name, **fields)},
        ]


class TemplateFormat(PromptFormat):
    """A user format from a template string with ``{question}`` and ``{answer}`` fields.

    ``{criterion}`` and ``{description}`` are filled from the aligner's criterion when present.
    """

    _ALLOWED = frozenset({"question", "answer", "criterion", "description"})

    def __init__(
        self,
        template: str,
        *,
        stop_strings: tuple[str, ...] | list[str] = (),
        end_marker: str = "",
        special_tokens: tuple[str, ...] | list[str] = (),
        name: str = "template",
    ) -> None:
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
        except ValueError as exc:  # an unbalanced brace
            raise ValueError(
                f"format template {template!r:.80} is not a valid template ({exc}); write "
                "literal braces as {{ and }}"
            ) from None
        missing = {"question", "answer"} - fields
        if missing:
            raise ValueError(
                "format template must contain {question} and {answer}; "
                f"missing {sorted(missing)}"
            )
        unknown = fields - self._ALLOWED
        if unknown:
            raise ValueError(
                f"format template has unknown fields {sorted(unknown)}; "
                f"allowed: {sorted(self._ALLOWED)}"
            )
        self.template = template
        self.name = name
        self.end_marker = end_marker
        self.stop_strings = tuple(stop_strings) or ((end_marker,) if end_marker else ())
        self.special_tokens = tuple(special_tokens)

    def build_prompt(self, question: str, answer: str, criterion: Criterion | None = None) -> str:
        return self.template.format(
            question=question,
            answer=answer,
            criterion=criterion.name if criterion else "",
            description=criterion.description if criterion else "",
        )

    def training_target(self, correction: str) -> str:
        return correction + self.end_marker
