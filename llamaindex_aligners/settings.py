"""Per-engine alignment settings and how they turn into a configured engine ``Squad``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from aligners import AlignmentResult, BlockedMessage, OnFlag, Squad

OnError = Literal["return_original", "raise"]


def normalize_on_error(value: Any) -> Any:
    """The engine's two words; ``"keep"`` (this package's earlier spelling) still means
    ``"return_original"``."""
    return "return_original" if value == "keep" else value


__all__ = [
    "AlignmentSettings",
    "OnError",
    "OnFlag",
    "configure_squad",
    "error_record",
    "normalize_on_error",
]


class AlignmentSettings(BaseModel):
    """Which criteria to inspect, their thresholds, what to do with a flagged answer, and what
    to do when the squad fails.

    ``threshold`` is one number for every criterion or a ``{criterion: threshold}`` map;
    ``None`` keeps the squad's own thresholds; ``block_threshold`` takes the same forms
    (``0``: never block an answer the aligners did not fix). ``on_flag`` and
    ``blocked_message`` likewise keep the squad's own when ``None`` (a squad's default policy
    is ``"rewrite"``).
    """

    model_config = ConfigDict(extra="forbid")

    criteria: list[str] | None = Field(
        default=None, description="Squad members to use (default: every member of the squad)."
    )
    threshold: float | dict[str, float] | None = Field(
        default=None, description="P(aligned) under which a criterion's aligner runs."
    )
    block_threshold: float | dict[str, float] | None = Field(
        default=None,
        description=(
            "Under on_flag='rewrite', P(aligned) under which an answer still failing after the "
            "aligners ran is blocked; None: the squad's own (the shipped gate's 0.2), 0: never."
        ),
    )
    check_only: bool = Field(default=False, description="Score and annotate; never rewrite.")
    on_error: OnError = Field(
        default="return_original",
        description=(
            "return_original: if the squad itself fails, return the original text and record "
            "the error (the engine's word; 'keep' is accepted too); "
            "raise: propagate the error. An aligners.AlignmentViolation (on_flag='raise') "
            "always propagates: it is a verdict, not a failure."
        ),
    )
    on_flag: OnFlag | None = Field(
        default=None,
        description=(
            "What happens to a flagged answer. rewrite: the aligners fix it; block: it is "
            "replaced by blocked_message; raise: aligners.AlignmentViolation; rewrite_or_block: "
            "rewrite, re-score, and block what still fails. None: the squad's own (rewrite)."
        ),
    )
    blocked_message: BlockedMessage | None = Field(
        default=None,
        description="The text a blocked answer (or request) is replaced with; None: the squad's.",
    )

    _on_error = field_validator("on_error", mode="before")(normalize_on_error)

    @field_validator("criteria", mode="before")
    @classmethod
    def _one_criterion(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [value]
        if value is not None and len(value) == 0:
            raise ValueError("criteria must name at least one criterion (or be None for all)")
        return value

    @field_validator("threshold", "block_threshold")
    @classmethod
    def _in_unit_interval(cls, value: Any, info: ValidationInfo) -> Any:
        values = value.values() if isinstance(value, dict) else [] if value is None else [value]
        for number in values:
            if not 0.0 <= number <= 1.0:
                raise ValueError(f"{info.field_name} must be in [0, 1], got {number}")
        return value


def configure_squad(squad: Squad | None, settings: AlignmentSettings) -> Squad:
    """The squad to run: ``squad`` (or the lazy offline default) narrowed and re-thresholded.

    Building the default loads no weights; they load on the first call that needs them.
    """
    if squad is not None and not isinstance(squad, Squad):
        raise TypeError(f"squad must be an aligners.Squad, got {type(squad).__name__}")
    base = squad if squad is not None else Squad.default(settings.criteria)
    if settings.criteria is not None and squad is not None:
        base = base.select(settings.criteria)
    if settings.threshold is not None or settings.block_threshold is not None:
        base = base.with_options(  # one number, or per criterion
            threshold=settings.threshold, block_threshold=settings.block_threshold
        )
    options: dict[str, Any] = {}
    if settings.check_only:
        options["check_only"] = True
    if settings.on_flag is not None:
        options["on_flag"] = settings.on_flag
    if settings.blocked_message is not None:
        options["blocked_message"] = settings.blocked_message
    if options:
        base = base.with_options(**options)
    return base


def error_record(question: str, original: str, error: BaseException) -> dict[str, Any]:
    """Metadata when the squad failed and ``on_error="return_original"`` kept the text."""
    return AlignmentResult.failed(question, original, error).to_record()
