"""The two record types every reader, writer, recipe and trainer shares."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class CorrectionTriple(BaseModel):
    """A Question-Answer-Correction training triple for an aligner."""

    model_config = ConfigDict(extra="forbid")

    question: str
    answer: str = Field(description="The upstream model's answer (may be misaligned).")
    correction: str = Field(description="The aligned rewrite the aligner learns to produce.")
    criterion: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("answer", "correction")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @property
    def unchanged(self) -> bool:
        """True when the correction is the answer itself (an identity example)."""
        return self.answer.strip() == self.correction.strip()


class InspectorExample(BaseModel):
    """A labelled (question, answer) pair for an inspector; ``label`` 1 = aligned."""

    model_config = ConfigDict(extra="forbid")

    question: str
    answer: str
    label: int = Field(ge=0, le=1)
    criterion: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("answer")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value


class RequestExample(BaseModel):
    """A labelled request for a request inspector; ``label`` 1 = fine to answer, 0 = harmful."""

    model_config = ConfigDict(extra="forbid")

    request: str
    label: int = Field(ge=0, le=1)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("request")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value


def triples_to_examples(
    triples: list[CorrectionTriple], *, include_unchanged: bool = False
) -> list[InspectorExample]:
    """Inspector pairs from triples: the correction is aligned (1), the answer misaligned (0).

    Unchanged triples carry no contrast and are dropped unless ``include_unchanged`` (then only
    the aligned copy is kept, so no text has both labels).
    """
    examples: list[InspectorExample] = []
    for t in triples:
        meta = dict(t.metadata)
        if t.unchanged:
            if include_unchanged:
                examples.append(
                    InspectorExample(
                        question=t.question,
                        answer=t.correction,
                        label=1,
                        criterion=t.criterion,
                        metadata=meta,
                    )
                )
            continue
        examples.append(
            InspectorExample(
                question=t.question,
                answer=t.correction,
                label=1,
                criterion=t.criterion,
                metadata=meta,
            )
        )
        examples.append(
            InspectorExample(
                question=t.question,
                answer=t.answer,
                label=0,
                criterion=t.criterion,
                metadata=meta,
            )
        )
    return examples
