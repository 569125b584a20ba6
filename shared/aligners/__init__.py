"""aligners: small aligner models after any LLM.

>>> from aligners import Squad
>>> squad = Squad.default()                       # lazy: no weights loaded yet
>>> squad.align("question", "answer").text        # doctest: +SKIP

The integrations (``langchain_aligners``, ``llamaindex_aligners``) import only the names
exported here; an import contract in pyproject.toml (``make lint``) keeps it that way.
"""

from aligners.aligner import Aligner, AlignerConfig, Correction
from aligners.aligner.grounded import DEFAULT_NOT_COVERED, GroundedRepair
from aligners.backends import GenerationBackend, GenerationConfig, TransformersBackend
from aligners.backends.cache import MODEL_CACHE
from aligners.backends.encoder import SentenceEncoder
from aligners.backends.local import Completion, LocalGenerator
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
    ContextInspector,
    CrossEncoderInspector,
    EncoderHeadInspector,
    EncoderRequestInspector,
    FunctionInspector,
    FunctionRequestInspector,
    GroundedInspector,
    Inspector,
    PatternInspector,
    PatternRequestInspector,
    RequestCheck,
    RequestInspector,
    SafetyGateInspector,
    SequenceClassifierInspector,
    load_inspector,
)
from aligners.inspector.request import resolve_request_inspector
from aligners.sources import Context, GroundingReport, SentenceSupport, as_passages
from aligners.squad import AlignmentResult, Squad, SquadMember, SquadStream, StageRecord
from aligners.squad.defaults import DEFAULT_CRITERIA, default_members
from aligners.squad.policy import (
    DEFAULT_BLOCKED_MESSAGE,
    BlockedMessage,
    FlatThresholds,
    OnError,
    OnFlag,
    OnTokenLimit,
    SquadPolicy,
    Thresholds,
    given_fields,
)
from aligners.steps import (
    Emit,
    Machine,
    StreamRewrite,
    Work,
    adrive,
    adrive_stream,
    drive,
    drive_stream,
    emitting,
    mapped,
    resume,
)
from aligners.validation import validate_pair

__version__ = "0.1.0"

__all__ = [
    "Context",
    "ContextInspector",
    "DEFAULT_NOT_COVERED",
    "GroundedInspector",
    "GroundedRepair",
    "GroundingReport",
    "SentenceSupport",
    "as_passages",
    "DEFAULT_BLOCKED_MESSAGE",
    "Completion",
    "LocalGenerator",
    "DEFAULT_CRITERIA",
    "MODEL_CACHE",
    "Aligner",
    "AlignerConfig",
    "AlignersError",
    "AlignmentResult",
    "AlignmentViolation",
    "BlockedMessage",
    "Correction",
    "Criterion",
    "CrossEncoderInspector",
    "EncoderHeadInspector",
    "EncoderRequestInspector",
    "FlatThresholds",
    "FunctionInspector",
    "FunctionRequestInspector",
    "GenerationBackend",
    "GenerationConfig",
    "GenerationError",
    "InputTooLongError",
    "Inspector",
    "ModelNotFoundError",
    "OnError",
    "OnFlag",
    "OnTokenLimit",
    "PatternInspector",
    "PatternRequestInspector",
    "PromptFormat",
    "RequestCheck",
    "RequestInspector",
    "SafetyGateInspector",
    "SentenceEncoder",
    "SequenceClassifierInspector",
    "Squad",
    "SquadMember",
    "SquadPolicy",
    "SquadStream",
    "StageRecord",
    "TemplateFormat",
    "Thresholds",
    "TransformersBackend",
    "UnknownCriterionError",
    "UnknownFormatError",
    "default_members",
    "get_criterion",
    "get_format",
    "given_fields",
    "list_criteria",
    "list_formats",
    "load_inspector",
    "register_criterion",
    "register_format",
    "resolve_request_inspector",
    "validate_pair",
    # the step machines' parts: one sync and one async driver for every integration
    "Emit",
    "Machine",
    "StreamRewrite",
    "Work",
    "adrive",
    "adrive_stream",
    "drive",
    "drive_stream",
    "emitting",
    "mapped",
    "resume",
]
