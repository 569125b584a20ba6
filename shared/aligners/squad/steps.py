"""Moved to :mod:`aligners.steps` (the backends use the step machines too); kept so that
``aligners.squad.steps`` imports keep working."""

from aligners.steps import (
    Emit,
    Machine,
    Step,
    StreamRewrite,
    Work,
    adrive,
    adrive_stream,
    arun,
    drive,
    drive_stream,
    emitting,
    mapped,
    resume,
)

__all__ = [
    "Emit",
    "Machine",
    "Step",
    "StreamRewrite",
    "Work",
    "adrive",
    "adrive_stream",
    "arun",
    "drive",
    "drive_stream",
    "emitting",
    "mapped",
    "resume",
]
