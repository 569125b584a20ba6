"""Inspectors: fast classifiers that say whether an answer is aligned for one criterion."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aligners.inspector.base import (
    ContextInspector,
    FeatureInspector,
    FunctionInspector,
    Inspector,
)
from aligners.inspector.cross_encoder import (
    CrossEncoderConfig,
    CrossEncoderInspector,
    CrossEncoderTrunk,
)
from aligners.inspector.encoder_head import (
    INSPECTOR_CONFIG,
    EncoderHeadConfig,
    EncoderHeadInspector,
    build_head,
    pair_features,
)
from aligners.inspector.grounded import (
    DEFAULT_GROUNDED_DIR,
    GroundedInspector,
    GroundingSettings,
)
from aligners.inspector.pattern import (
    PatternInspector,
    PatternRequestInspector,
    PatternRules,
)
from aligners.inspector.remote import RemoteClassifierInspector
from aligners.inspector.request import (
    EncoderRequestInspector,
    FunctionRequestInspector,
    RequestCheck,
    RequestInspector,
    default_request_inspector,
)
from aligners.inspector.safety_gate import SafetyGateConfig, SafetyGateInspector
from aligners.inspector.sequence_classifier import SequenceClassifierInspector


def load_inspector(path: str | Path, *, criterion: str | None = None, **kwargs: Any) -> Inspector:
    """Load any inspector kind from a directory (or a classifier by hub id).

    ``criterion`` picks a cross-encoder's head (required where it has several), names a
    classifier's criterion, and must match the criterion an encoder head was trained for.
    """
    directory = Path(path).expanduser()
    config_file = directory / INSPECTOR_CONFIG
    values = json.loads(config_file.read_text()) if config_file.exists() else {}
    kind = values.get("kind")
    if kind == "encoder-head":
        inspector = EncoderHeadInspector.from_pretrained(directory, **kwargs)
        trained_for = inspector.criterion.name if inspector.criterion else None
        if criterion is not None and trained_for not in (None, criterion):
            raise ValueError(f"{directory} inspects {trained_for!r}, not {criterion!r}")
        return inspector
    if kind == "safety-gate":
        gate = SafetyGateInspector.from_pretrained(directory, **kwargs)
        if criterion is not None and gate.name != criterion:
            raise ValueError(f"{directory} inspects {gate.name!r}, not {criterion!r}")
        return gate
    if kind == "cross-encoder" and values.get("heads") == ["grounded"]:
        if criterion not in (None, "grounded"):
            raise ValueError(f"{directory} inspects 'grounded', not {criterion!r}")
        return GroundedInspector.from_pretrained(directory, **kwargs)
    if kind == "cross-encoder":
        return CrossEncoderInspector.from_pretrained(directory, criterion=criterion, **kwargs)
    return SequenceClassifierInspector(str(path), criterion=criterion, **kwargs)


__all__ = [
    "ContextInspector",
    "DEFAULT_GROUNDED_DIR",
    "GroundedInspector",
    "GroundingSettings",
    "CrossEncoderConfig",
    "CrossEncoderInspector",
    "CrossEncoderTrunk",
    "FeatureInspector",
    "EncoderHeadConfig",
    "EncoderHeadInspector",
    "EncoderRequestInspector",
    "FunctionRequestInspector",
    "RemoteClassifierInspector",
    "RequestCheck",
    "RequestInspector",
    "SafetyGateConfig",
    "SafetyGateInspector",
    "default_request_inspector",
    "FunctionInspector",
    "Inspector",
    "PatternInspector",
    "PatternRequestInspector",
    "PatternRules",
    "SequenceClassifierInspector",
    "build_head",
    "load_inspector",
    "pair_features",
]
