"""llamaindex_aligners: aligners for LlamaIndex RAG pipelines.

- :class:`AlignerPostprocessor`: inspect retrieved nodes (annotate, drop or rewrite failing ones).
- :class:`AlignedQueryEngine` / :class:`AlignedChatEngine`: align the final answer of any engine.
- :class:`AlignersEmbedding` / :class:`AlignersLLM`: offline MiniLM embeddings and a local LLM
  (SmolLM2) over the engine's backends.
- :mod:`llamaindex_aligners.instrumentation`: the squad span and its events.

Every wrapper takes ``on_flag`` (rewrite, block, raise, rewrite_or_block) and
``blocked_message``; the engine wrappers also take ``check_request`` (a request inspector run
before the wrapped engine) and ``request_threshold``.
"""

from llamaindex_aligners.answers import METADATA_KEY
from llamaindex_aligners.chat_engine import AlignedChatEngine, AlignedStreamingChatResponse
from llamaindex_aligners.embedding import AlignersEmbedding
from llamaindex_aligners.instrumentation import (
    AlignerAppliedEvent,
    AlignmentEndEvent,
    AlignmentErrorEvent,
    AlignmentStartEvent,
    AlignmentViolationEvent,
    InspectorScoresEvent,
    RequestBlockedEvent,
    RequestCheckEvent,
)
from llamaindex_aligners.llm import AlignersLLM
from llamaindex_aligners.postprocessor import AlignerPostprocessor
from llamaindex_aligners.query_engine import AlignedQueryEngine
from llamaindex_aligners.settings import AlignmentSettings

__all__ = [
    "METADATA_KEY",
    "AlignedChatEngine",
    "AlignedQueryEngine",
    "AlignedStreamingChatResponse",
    "AlignerAppliedEvent",
    "AlignerPostprocessor",
    "AlignersEmbedding",
    "AlignersLLM",
    "AlignmentEndEvent",
    "AlignmentErrorEvent",
    "AlignmentSettings",
    "AlignmentStartEvent",
    "AlignmentViolationEvent",
    "InspectorScoresEvent",
    "RequestBlockedEvent",
    "RequestCheckEvent",
]
