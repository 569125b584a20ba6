"""One member of a squad: a criterion, its aligner, the inspector that gates it, a threshold."""

from __future__ import annotations

from dataclasses import dataclass

from aligners.aligner.grounded import GroundedRepair
from aligners.aligner.model import Aligner
from aligners.criteria import Criterion
from aligners.inspector.base import Inspector


@dataclass(frozen=True)
class SquadMember:
    """One criterion of a squad: its aligner, the inspector that gates it, and the threshold.

    Without an inspector the aligner always runs; without an aligner the member only inspects.
    ``block_threshold`` (``None``: never) is how sure the inspector must be that an answer is
    still misaligned after the aligners ran for the squad to block it rather than let it
    through: under ``on_flag="rewrite"`` an answer still scoring under
    ``min(block_threshold, threshold)`` is replaced by the blocked message. It catches what the
    aligner hands back or cannot fix while leaving borderline flags to the aligner's judgement.
    """

    criterion: Criterion
    aligner: Aligner | GroundedRepair | None = None
    inspector: Inspector | None = None
    threshold: float = 0.5
    block_threshold: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.criterion, Criterion):
            raise TypeError(
                f"criterion must be a Criterion (get_criterion(name)), got "
                f"{type(self.criterion).__name__} {self.criterion!r}"
            )
        self._check_unit("threshold", self.threshold)
        if self.block_threshold is not None:
            self._check_unit("block_threshold", self.block_threshold)
            if self.inspector is None:
                raise ValueError(
                    f"squad member {self.criterion.name!r} has a block_threshold but no inspector "
                    "to score its answers"
                )
        if self.aligner is None and self.inspector is None:
            raise ValueError(
                f"squad member {self.criterion.name!r} needs an aligner or an inspector"
            )

    def _check_unit(self, field: str, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(
                f"{field} of {self.criterion.name!r} must be a number in [0, 1], got "
                f"{type(value).__name__} {value!r}"
            )
        if not 0.0 <= value <= 1.0:  # NaN fails too
            raise ValueError(f"{field} of {self.criterion.name!r} must be in [0, 1], got {value}")

    @classmethod
    def from_rule(
        cls, inspector: Inspector, *, block: bool = True, threshold: float = 0.5
    ) -> SquadMember:
        """A member without an aligner for a rule inspector (e.g. a ``PatternInspector``): a
        match flags the answer, and with ``block=True`` blocks it on its own (at the
        inspector's ``default_block_threshold``, 0.5 for patterns); otherwise only the
        ``on_flag`` policy acts on the flag."""
        if inspector.criterion is None:
            raise ValueError("a rule member needs an inspector with a criterion")
        block_threshold = inspector.default_block_threshold if block else None
        if block and block_threshold is None:
            block_threshold = threshold
        return cls(inspector.criterion, None, inspector, threshold, block_threshold=block_threshold)

    @property
    def block_limit(self) -> float | None:
        """The score under which a rewritten answer is blocked under ``on_flag="rewrite"``."""
        if self.block_threshold is None:
            return None
        return min(self.block_threshold, self.threshold)

    @property
    def name(self) -> str:
        return self.criterion.name
