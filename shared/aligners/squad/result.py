"""What a squad returns: the final text and a record of why it changed."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from aligners.sources import GroundingReport
from aligners.squad.policy import OnError, OnFlag

#: What happened to one answer: nothing flagged it (``passed``), aligners changed its text
#: (``rewritten``; aligners that ran and handed it back unchanged leave it ``flagged``),
#: it was replaced by the blocked message (``blocked``), the squad raised (``raised``), it was
#: flagged but left as it was (``flagged``: check-only, every aligner failed or handed the text
#: back), there was no text to inspect (``skipped``, e.g. a message holding only tool calls),
#: or the squad could not process it and returned it as it was (``failed``, under
#: ``on_error="return_original"``).
Action = Literal["passed", "rewritten", "blocked", "raised", "flagged", "skipped", "failed"]

__all__ = ["Action", "AlignmentResult", "OnError", "OnFlag", "StageRecord"]


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
    hit_token_limit: bool = Field(
        default=False,
        description="The accepted rewrite stopped at max_new_tokens before it ended "
        "(on_token_limit='accept'); under the default such a rewrite is rejected (see error).",
    )
    opening: str | None = Field(
        default=None,
        description="The accepted rewrite was forced to begin with this text: the aligner had "
        "handed back an answer the policy would block (the aligner's handback_opening).",
    )


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
    on_flag: OnFlag = Field(default="rewrite", description="The policy the squad ran under.")
    action: Action = Field(default="passed", description="What the policy did to this answer.")
    block_reason: str | None = Field(
        default=None, description="Why the answer was blocked (action ``blocked``)."
    )
    skipped_reason: str | None = Field(
        default=None, description="Why nothing was inspected (action ``skipped``)."
    )
    stage: Literal["answer", "request"] = Field(
        default="answer",
        description="Where the decision was taken: on the answer, or on the request before any "
        "model ran (a request check).",
    )
    request_check: dict[str, Any] | None = Field(
        default=None, description="The request inspector's verdict, when the request was checked."
    )
    grounding: GroundingReport | None = Field(
        default=None,
        description="Per answer sentence, whether the sources support it and by which passage: "
        "the check of the text the grounded repair acted on (its unsupported sentences are "
        "what it dropped), else of the answer as it came in; None without a context.",
    )
    not_inspected: dict[str, str] = Field(
        default_factory=dict,
        description="Criteria of the squad not inspected for this answer, with why (e.g. "
        "grounded without a context).",
    )

    @classmethod
    def skipped(cls, question: str, original: str, reason: str) -> AlignmentResult:
        """The record of an answer with nothing to inspect (e.g. a reply holding only tool
        calls): passed through as it was."""
        return cls(
            question=question,
            original=original,
            text=original,
            question_provided=bool(question.strip()),
            action="skipped",
            skipped_reason=reason,
        )

    @classmethod
    def blocked_request(cls, request: str, text: str, check: dict[str, Any]) -> AlignmentResult:
        """The record of a request the request inspector turned away: nothing else ran, and
        ``text`` (the blocked message) is the answer."""
        return cls(
            question=request,
            original="",
            text=text,
            question_provided=bool(request.strip()),
            action="blocked",
            stage="request",
            request_check=check,
            block_reason=_request_reason(check),
        )

    @classmethod
    def failed(
        cls, question: Any, original: Any, error: BaseException | str, **fields: Any
    ) -> AlignmentResult:
        """The record of an answer the squad could not process, returned as it was."""
        reason = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        text = original if isinstance(original, str) else ""
        asked = question if isinstance(question, str) else ""
        return cls(
            question=asked,
            original=text,
            text=text,
            question_provided=bool(asked.strip()),
            action="failed",
            failures=[f"squad failed ({reason}); kept the original answer"],
            **fields,
        )

    @property
    def blocked(self) -> bool:
        """Whether the answer was replaced by the blocked message."""
        return self.action == "blocked"

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
            passed=self.passed if self.trajectory else None,  # None: nothing was inspected
            blocked=self.blocked,
            initial_scores=self.initial_scores,
            final_scores=self.final_scores,
        )
        return record


def _request_reason(check: dict[str, Any]) -> str:
    score, threshold = check.get("score"), check.get("threshold")
    if isinstance(score, (int, float)) and isinstance(threshold, (int, float)):
        return f"the request inspector scored the request {score:.2f}, under {threshold:.2f}"
    return "the request inspector turned the request away"
