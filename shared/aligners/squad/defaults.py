"""The offline default squad: what ``Squad.default()`` and the CLI use without options.

A criterion is in :data:`DEFAULT_CRITERIA` only when its shipped inspector met the targets on
held-out topics (docs/training.md); the others stay available by name, with their measured
metrics in their model cards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aligners.aligner.grounded import GroundedRepair
from aligners.aligner.model import Aligner
from aligners.criteria import get_criterion
from aligners.errors import ModelNotFoundError
from aligners.inspector.base import Inspector
from aligners.inspector.encoder_head import INSPECTOR_CONFIG, EncoderHeadInspector
from aligners.inspector.grounded import DEFAULT_GROUNDED_DIR, GroundedInspector
from aligners.inspector.safety_gate import SafetyGateInspector
from aligners.squad.member import SquadMember

DEFAULT_MODELS_DIR = Path(__file__).resolve().parent.parent / "default_models"
#: A general aligner for helpful and factuality, written by ``scripts/train_defaults.sh general``.
#: Not shipped (the default models stay under 20 MB): without it those criteria use SmolLM2
#: zero-shot.
DEFAULT_ALIGNER_DIR = DEFAULT_MODELS_DIR / "aligner"
#: The safety aligner (ethical): compliant answers to harmful requests -> safe responses.
SAFETY_ALIGNER_DIR = DEFAULT_MODELS_DIR / "safety_aligner"
DEFAULT_INSPECTORS_DIR = DEFAULT_MODELS_DIR / "inspectors"
#: The ethical gate: harmful request x complies x harmful content on MiniLM (top layers
#: fine-tuned on requests and answers)
#: (``scripts/train_defaults.sh gate``); it serves ``ethical`` where present.
SAFETY_GATE_DIR = DEFAULT_INSPECTORS_DIR / "safety-gate"

#: Criteria whose shipped inspector met the held-out targets (AUROC >= 0.90 and the squad
#: targets in docs/training.md). helpful and factuality stay available by name.
DEFAULT_CRITERIA: tuple[str, ...] = ("ethical",)


def _aligner_dir(criterion: str) -> Path:
    if criterion == "ethical" and (SAFETY_ALIGNER_DIR / "aligner_config.json").exists():
        return SAFETY_ALIGNER_DIR
    return DEFAULT_ALIGNER_DIR


def default_aligner(criterion: str, **options: Any) -> Aligner:
    """The shipped trained aligner for ``criterion`` if present, else SmolLM2-135M-Instruct
    zero-shot (chat format).

    ``options`` are :class:`~aligners.aligner.AlignerConfig` fields, e.g. ``max_new_tokens=64``.
    """
    directory = _aligner_dir(criterion)
    if (directory / "aligner_config.json").exists():
        return Aligner.from_pretrained(directory, criterion=criterion, **options)
    return Aligner("smollm2", format="chat", criterion=criterion, **options)


def default_inspector(criterion: str) -> Inspector:
    """The shipped inspector for a criterion: the safety gate for ``ethical``, the grounded
    cross-encoder for ``grounded``, else a frozen-MiniLM head, else (for criteria outside
    :data:`DEFAULT_CRITERIA`) a zero-shot MiniLM inspector.

    Raises:
        ModelNotFoundError: the shipped inspector of a criterion in :data:`DEFAULT_CRITERIA` is
            missing (an incomplete install): a zero-shot stand-in would gate it far worse
            without saying so.
    """
    if criterion == "ethical" and (SAFETY_GATE_DIR / INSPECTOR_CONFIG).exists():
        return SafetyGateInspector.from_pretrained(SAFETY_GATE_DIR)
    if criterion == "grounded":
        if not (DEFAULT_GROUNDED_DIR / INSPECTOR_CONFIG).exists():
            raise ModelNotFoundError(
                f"the shipped grounded inspector is missing: {DEFAULT_GROUNDED_DIR} (is the "
                "install complete?). Train one with `aligners train grounded` and pass it: "
                "Squad.default(['grounded'], inspector=DIR)"
            )
        return GroundedInspector.from_pretrained(DEFAULT_GROUNDED_DIR)
    directory = DEFAULT_INSPECTORS_DIR / criterion
    if (directory / INSPECTOR_CONFIG).exists():
        return EncoderHeadInspector.from_pretrained(directory)
    if criterion in DEFAULT_CRITERIA:
        where = f"{SAFETY_GATE_DIR} nor {directory}" if criterion == "ethical" else str(directory)
        raise ModelNotFoundError(
            f"the shipped inspector for {criterion!r} is missing: neither {where} exists "
            "(is the install complete?). "
            "Reinstall aligners, or choose an inspector: Squad.default(inspector=DIR) or "
            "inspector_encoder=... (zero-shot)"
        )
    return EncoderHeadInspector.zero_shot(criterion)


def member_aligner(
    criterion: str, aligner: str | Aligner | None = None, **options: Any
) -> Aligner | GroundedRepair:
    """The aligner of one member: the shipped one, or ``aligner`` (an :class:`Aligner`, a
    directory saved with ``save_pretrained``, a model alias or path) for this criterion, with
    :class:`~aligners.aligner.AlignerConfig` ``options`` (e.g. ``max_new_tokens=64``).

    ``grounded`` always gets the :class:`GroundedRepair` floor: a generative aligner does not
    read the sources, so it could not tell what they support."""
    if criterion == "grounded":
        return GroundedRepair()
    if aligner is None:
        return default_aligner(criterion, **options)
    if isinstance(aligner, Aligner):
        # A copy for this criterion that keeps the given backend (e.g. a remote server's
        # client, shared by every member), unless the options change what it loads.
        values = aligner.config.model_dump() | {"criterion": criterion} | options
        reload = bool(set(options) & {"model", "gguf_file", "adapter", "device_map", "dtype"})
        return Aligner(values.pop("model"), backend=None if reload else aligner.backend, **values)
    return Aligner.from_pretrained(aligner, criterion=criterion, **options)


def member_inspector(
    criterion: str, inspector_encoder: str | None = None, inspector: str | Path | None = None
) -> Inspector:
    """The shipped inspector of a criterion, a saved one (``inspector``, a directory), or a
    zero-shot one on ``inspector_encoder``."""
    if inspector is not None and inspector_encoder is not None:
        raise ValueError("give inspector (a saved one) or inspector_encoder (zero-shot), not both")
    if inspector is not None:
        from aligners.inspector import load_inspector

        return load_inspector(inspector, criterion=criterion)
    if inspector_encoder is None:
        return default_inspector(criterion)
    if criterion == "grounded":
        raise ValueError(
            "grounded has no zero-shot inspector (it must read the sources): leave "
            "inspector_encoder out for it, or give a trained one with inspector=DIR"
        )
    from aligners.backends.encoder import SentenceEncoder

    return EncoderHeadInspector.zero_shot(criterion, encoder=SentenceEncoder(inspector_encoder))


def member_threshold(
    criterion: str, threshold: float | Mapping[str, float] | None, inspector: Inspector
) -> float:
    """One threshold for every member, or one per criterion; where none is given, the
    inspector's shipped operating point (its model card says how it was chosen), else 0.5."""
    if isinstance(threshold, Mapping):
        threshold = threshold.get(criterion)
    if threshold is None:
        threshold = inspector.default_threshold
    return 0.5 if threshold is None else float(threshold)


def default_members(
    criteria: Sequence[str] | None = None,
    *,
    threshold: float | Mapping[str, float] | None = None,
    aligner: str | Aligner | None = None,
    aligner_options: dict[str, Any] | None = None,
    inspector_encoder: str | None = None,
    inspector: str | Path | None = None,
) -> list[SquadMember]:
    """Members for the named criteria (default: :data:`DEFAULT_CRITERIA`): the one place where
    the CLI, the server, eval, bench and both integrations build a squad's members.
    ``inspector`` is a saved inspector directory every member reads (a cross-encoder serves
    each criterion from its head)."""
    names = list(DEFAULT_CRITERIA if criteria is None else criteria)
    if isinstance(criteria, str):
        names = [criteria]
    if not names:
        raise ValueError("a squad needs at least one criterion")
    for i, name in enumerate(names):
        if not isinstance(name, str):
            raise TypeError(
                f"criteria[{i}] must be a criterion name (a str such as 'ethical'), got "
                f"{type(name).__name__} {name!r}"
            )
        get_criterion(name)  # an unknown name fails here, before any model path is built
    if isinstance(threshold, Mapping):
        unknown = sorted(set(threshold) - set(names))
        if unknown:
            raise ValueError(f"thresholds name criteria {unknown} that are not in {names}")
    members = []
    for name in names:
        checker = member_inspector(name, inspector_encoder, inspector)
        members.append(
            SquadMember(
                get_criterion(name),
                member_aligner(name, aligner, **(aligner_options or {})),
                checker,
                member_threshold(name, threshold, checker),
                block_threshold=checker.default_block_threshold,
            )
        )
    return members
