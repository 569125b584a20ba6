"""Inspectors: fast classifiers that say whether an answer is aligned for one criterion."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aligners.inspector.base import FunctionInspector, Inspector
from aligners.inspector.encoder_head import (
    INSPECTOR_CONFIG,
    EncoderHeadConfig,
    EncoderHeadInspector,
    build_head,
    pair_features,
)
from aligners.inspector.sequence_classifier import SequenceClassifierInspector


def load_inspector(path: str | Path, **kwargs: Any) -> Inspector:
    """Load either inspector kind from a directory (or a classifier by hub id)."""
    directory = Path(path).expanduser()
    config_file = directory / INSPECTOR_CONFIG
    if config_file.exists() and json.loads(config_file.read_text()).get("kind") == "encoder-head":
        return EncoderHeadInspector.from_pretrained(directory, **kwargs)
    return SequenceClassifierInspector(str(path), **kwargs)


__all__ = [
    "EncoderHeadConfig",
    "EncoderHeadInspector",
    "FunctionInspector",
    "Inspector",
    "SequenceClassifierInspector",
    "build_head",
    "load_inspector",
    "pair_features",
]
