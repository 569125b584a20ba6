"""Inspectors: fast classifiers that say whether an answer is aligned for one criterion."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aligners.inspector.base import FeatureInspector, FunctionInspector, Inspector
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
from aligners.inspector.remote import RemoteClassifierInspector
from aligners.inspector.request import (
    EncoderRequestInspector,
    FunctionRequestInspector,
    RequestCheck,
    RequestInspector,
    default_request_inspector,
)
from aligners.inspector.sequence_classifier import SequenceClassifierInspector


def load_inspector(path: str | Path, **kwargs: Any) -> Inspector:
    """Load any inspector kind from a directory (or a classifier by hub id).

    A cross-encoder directory with several heads needs ``criterion=`` to pick one.
    """
    directory = Path(path).expanduser()
    config_file = directory / INSPECTOR_CONFIG
    kind = json.loads(config_file.read_text()).get("kind") if config_file.exists() else None
    if kind == "encoder-head":
        return EncoderHeadInspector.from_pretrained(directory, **kwargs)
    if kind == "cross-encoder":
        return CrossEncoderInspector.from_pretrained(directory, **kwargs)
    return SequenceClassifierInspector(str(path), **kwargs)


__all__ = [
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
    "default_request_inspector",
    "FunctionInspector",
    "Inspector",
    "SequenceClassifierInspector",
    "build_head",
    "load_inspector",
    "pair_features",
]
