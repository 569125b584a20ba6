"""One member of a squad: a criterion, its aligner, the inspector that gates it, a threshold."""

from __future__ import annotations

from dataclasses import dataclass

from aligners.aligner.model import Aligner
from aligners.criteria import Criterion
from aligners.inspector.base import Inspector


@dataclass(frozen=True)
class SquadMember:
    """One criterion of a squad: its aligner, the inspector that gates it, and the threshold.

    Without an inspector the aligner always runs; without an aligner the member only inspects.
    """

    criterion: Criterion
    aligner: Aligner | None = None
    inspector: Inspector | None = None
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if not isinstance(self.criterion, Criterion):
            raise TypeError(
                f"criterion must be a Criterion (get_criterion(name)), got "
                f"{type(self.criterion).__name__} {self.criterion!r}"
            )
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)):
            raise TypeError(
                f"threshold of {self.criterion.name!r} must be a number in [0, 1], got "
                f"{type(self.threshold).__name__} {self.threshold!r}"
            )
        if self.aligner is None and self.inspector is None:
            raise ValueError(
                f"squad member {self.criterion.name!r} needs an aligner or an inspector"
            )
        if not 0.0 <= self.threshold <= 1.0:  # NaN fails too
            raise ValueError(
                f"threshold of {self.criterion.name!r} must be in [0, 1], got {self.threshold}"
            )

    @property
    def name(self) -> str:
        return self.criterion.name
