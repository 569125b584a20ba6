"""The offline default squad: what ``Squad.default()`` and the CLI use without options."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aligners.aligner.model import Aligner
from aligners.criteria import BUILTIN_CRITERIA, get_criterion
from aligners.inspector.base import Inspector
from aligners.inspector.encoder_head import INSPECTOR_CONFIG, EncoderHeadInspector
from aligners.squad.squad import SquadMember

DEFAULT_MODELS_DIR = Path(__file__).resolve().parent.parent / "default_models"
DEFAULT_ALIGNER_DIR = DEFAULT_MODELS_DIR / "aligner"
DEFAULT_INSPECTORS_DIR = DEFAULT_MODELS_DIR / "inspectors"


def default_aligner(criterion: str, **options: Any) -> Aligner:
    """The shipped trained aligner if present, else SmolLM2-135M-Instruct zero-shot (chat format).

    ``options`` are :class:`~aligners.aligner.AlignerConfig` fields, e.g. ``max_new_tokens=64``.
    """
    if (DEFAULT_ALIGNER_DIR / "aligner_config.json").exists():
        return Aligner.from_pretrained(DEFAULT_ALIGNER_DIR, criterion=criterion, **options)
    return Aligner("smollm2", format="chat", criterion=criterion, **options)


def default_inspector(criterion: str) -> Inspector:
    """The shipped MiniLM head for a built-in criterion, else a zero-shot MiniLM inspector."""
    directory = DEFAULT_INSPECTORS_DIR / criterion
    if (directory / INSPECTOR_CONFIG).exists():
        return EncoderHeadInspector.from_pretrained(directory)
    return EncoderHeadInspector.zero_shot(criterion)


def default_members(
    criteria: Sequence[str] | None = None,
    *,
    threshold: float = 0.5,
    aligner_options: dict[str, Any] | None = None,
) -> list[SquadMember]:
    """Members for the named criteria (default: ethical, factuality, helpful)."""
    names = list(BUILTIN_CRITERIA if criteria is None else criteria)
    if isinstance(criteria, str):
        names = [criteria]
    return [
        SquadMember(
            get_criterion(name),
            default_aligner(name, **(aligner_options or {})),
            default_inspector(name),
            threshold,
        )
        for name in names
    ]
