"""Squads: inspectors gate aligners so answers that are already fine cost one inspector pass."""

from aligners.squad.policy import SquadPolicy
from aligners.squad.result import AlignmentResult, StageRecord
from aligners.squad.squad import Squad, SquadConfig, SquadMember
from aligners.squad.stream import SquadStream

__all__ = [
    "AlignmentResult",
    "Squad",
    "SquadConfig",
    "SquadMember",
    "SquadPolicy",
    "SquadStream",
    "StageRecord",
]
