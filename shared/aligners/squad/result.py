"""What a squad returns: the final text and a record of why it changed."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class StageRecord(BaseModel):
    """One squad stage for one answer."""

    stage: int
    criterion: str
    score_before: float | None = Field(description="This criterion's score before the stage.")
    applied: bool = Field(description="Whether the aligner ran and its output was accepted.")
    changed: bool = Field(default=False, description="Whether that output differs from the input.")
    skipped_reason: str | None = None
    error: str | None = Field(default=None, description="Why the aligner's output was rejected.")
    truncated: bool = Field(default=False, description="The answer's middle was cut to fit.")


class AlignmentResult(BaseModel):
    """The outcome for one (question, answer) pair."""

    question: str
    original: str
    text: str
    question_provided: bool = True
    check_only: bool = False
    thresholds: dict[str, float] = Field(default_factory=dict)
    flagged: list[str] = Field(
        default_factory=list, description="Criteria whose initial score was under threshold."
    )
    applied: list[str] = Field(
        default_factory=list,
        description="Aligners whose output was accepted, in order (an aligner may copy the answer "
        "unchanged: see stages[].changed and `unchanged_by`).",
    )
    trajectory: list[dict[str, float]] = Field(
        default_factory=list, description="Inspector scores before the first stage and after each."
    )
    stages: list[StageRecord] = Field(default_factory=list)
    failures: list[str] = Field(default_factory=list)

    @property
    def changed(self) -> bool:
        """Whether the final text differs from the original."""
        return self.text != self.original

    @property
    def unchanged_by(self) -> list[str]:
        """Aligners that ran but returned the text they were given (judged it fine)."""
        return [s.criterion for s in self.stages if s.applied and not s.changed]

    @property
    def initial_scores(self) -> dict[str, float]:
        return self.trajectory[0] if self.trajectory else {}

    @property
    def final_scores(self) -> dict[str, float]:
        return self.trajectory[-1] if self.trajectory else {}

    @property
    def passed(self) -> bool:
        """Whether every inspected criterion is at or above its threshold at the end."""
        return all(
            score >= self.thresholds.get(name, 0.5) for name, score in self.final_scores.items()
        )

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready dict (what integrations put in metadata), with the derived fields."""
        record = self.model_dump()
        record.update(
            changed=self.changed,
            unchanged_by=self.unchanged_by,
            passed=self.passed,
            initial_scores=self.initial_scores,
            final_scores=self.final_scores,
        )
        return record
