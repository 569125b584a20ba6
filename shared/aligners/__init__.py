"""aligners: small aligner models after any LLM.

>>> from aligners import Squad
>>> squad = Squad.default()                       # lazy: no weights loaded yet
>>> squad.align("question", "answer").text        # doctest: +SKIP
"""

from aligners.aligner import Aligner, AlignerConfig, Correction
from aligners.backends import GenerationBackend, GenerationConfig, TransformersBackend
from aligners.backends.cache import MODEL_CACHE
from aligners.backends.encoder import SentenceEncoder
from aligners.criteria import Criterion, get_criterion, list_criteria, register_criterion
from aligners.errors import (
    AlignersError,
    AlignmentViolation,
    GenerationError,
    InputTooLongError,
    ModelNotFoundError,
    UnknownCriterionError,
    UnknownFormatError,
)
from aligners.formats import PromptFormat, TemplateFormat, get_format, list_formats, register_format
from aligners.inspector import (
    CrossEncoderInspector,
    EncoderHeadInspector,
    EncoderRequestInspector,
    FunctionInspector,
    FunctionRequestInspector,
    Inspector,
    PatternInspector,
    PatternRequestInspector,
    RequestCheck,
    RequestInspector,
    SequenceClassifierInspector,
    load_inspector,
)
from aligners.squad import AlignmentResult, Squad, SquadMember, StageRecord

__version__ = "0.1.0"

__all__ = [
    "MODEL_CACHE",
    "Aligner",
    "AlignerConfig",
    "AlignersError",
    "AlignmentResult",
    "AlignmentViolation",
    "Correction",
    "Criterion",
    "CrossEncoderInspector",
    "EncoderHeadInspector",
    "EncoderRequestInspector",
    "FunctionInspector",
    "FunctionRequestInspector",
    "GenerationBackend",
    "GenerationConfig",
    "GenerationError",
    "InputTooLongError",
    "Inspector",
    "ModelNotFoundError",
    "PatternInspector",
    "PatternRequestInspector",
    "PromptFormat",
    "RequestCheck",
    "RequestInspector",
    "SentenceEncoder",
    "SequenceClassifierInspector",
    "Squad",
    "SquadMember",
    "StageRecord",
    "TemplateFormat",
    "TransformersBackend",
    "UnknownCriterionError",
    "UnknownFormatError",
    "get_criterion",
    "get_format",
    "list_criteria",
    "list_formats",
    "load_inspector",
    "register_criterion",
    "register_format",
]
