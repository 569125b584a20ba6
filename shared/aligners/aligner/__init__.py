"""Aligners: correction models that rewrite an answer given its question."""

from aligners.aligner.config import AlignerConfig
from aligners.aligner.model import Aligner, Correction
from aligners.validation import validate_pair

__all__ = ["Aligner", "AlignerConfig", "Correction", "validate_pair"]
