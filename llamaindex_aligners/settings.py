"""Per-engine alignment settings and how they turn into a configured engine ``Squad``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from aligners import (
    AlignmentResult,
    BlockedMessage,
    FlatThresholds,
    OnError,
    OnFlag,
    Squad,
    SquadPolicy,
    given_fields,
)


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

#: AlignmentSettings fields that are sugar for SquadPolicy fields of the same name.
POLICY_SUGAR = (
    "threshold",
    "block_threshold",
    "check_only",
    "on_error",
    "on_flag",
    "blocked_message",
)


class AlignmentSettings(BaseModel):
    """Which criteria to inspect and the policy: what to do with a flagged answer and when the
    squad fails (an ``aligners.SquadPolicy``, which declares each option and its default).

    The flat fields are sugar merged onto ``policy``: those passed (not None) replace its values;
    those left out read their defaults (``on_error="return_original"``, ``check_only=False``)
    but keep the policy's value (and, for a given squad, the squad's own). Here ``on_error``
    defaults to ``"return_original"`` (a query engine serves end users: a failure costs the
    alignment, not the answer), carried out by the engine, answer by answer.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    criteria: list[str] | None = Field(
        default=None, description="Squad members to use (default: every member of the squad)."
    )
    policy: SquadPolicy | None = Field(
        default=None, description="The policy; the flat fields below are merged onto it."
    )
    threshold: FlatThresholds | None = Field(
        default=None, description=SquadPolicy.describe("threshold", "the squad's own")
    )
    block_threshold: FlatThresholds | None = Field(
        default=None, description=SquadPolicy.describe("block_threshold", "the squad's own")
    )
    check_only: bool | None = Field(
        default=False, description=SquadPolicy.describe("check_only", "the policy's")
    )
    on_error: OnError | None = Field(
        default="return_original",
        description=SquadPolicy.describe("on_error", "return_original here")
        + " 'keep' is accepted for return_original.",
    )
    on_flag: OnFlag | None = Field(
        default=None, description=SquadPolicy.describe("on_flag", "the squad's own")
    )
    blocked_message: BlockedMessage | None = Field(
        default=None, description=SquadPolicy.describe("blocked_message", "the squad's own")
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

    @model_validator(mode="after")
    def _valid_policy(self) -> AlignmentSettings:
        self.resolved_policy  # noqa: B018 (one merge and validation path: a bad value fails here)
        return self

    @property
    def resolved_policy(self) -> SquadPolicy:
        """The policy these settings apply: LlamaIndex's defaults, ``policy``, then the flat
        fields (what it sets explicitly replaces a given squad's)."""
        return SquadPolicy.for_surface("llamaindex", self.policy).merge(
            **given_fields(self, POLICY_SUGAR)
        )


def configure_squad(squad: Squad | None, settings: AlignmentSettings) -> Squad:
    """The squad to run: ``squad`` (or the lazy offline default) narrowed and under the
    settings' policy (``on_error`` included: the engine carries it out, answer by answer).

    Building the default loads no weights; they load on the first call that needs them.
    """
    if squad is not None and not isinstance(squad, Squad):
        raise TypeError(f"squad must be an aligners.Squad, got {type(squad).__name__}")
    policy = settings.resolved_policy
    if squad is None:
        return Squad.default(settings.criteria, policy=policy)
    base = squad.select(settings.criteria) if settings.criteria is not None else squad
    return base.with_options(policy=policy)


def error_record(question: str, original: str, error: BaseException) -> dict[str, Any]:
    """Metadata when the squad failed and ``on_error="return_original"`` kept the text."""
    return AlignmentResult.failed(question, original, error).to_record()
