"""Fixtures for the LlamaIndex integration: a real VectorStoreIndex over a real (tiny) encoder,
squads of tiny random aligners gated by rule inspectors with known scores, and handlers attached
to llama-index's root instrumentation dispatcher."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import llama_index.core.instrumentation as instrument
import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.instrumentation.span_handlers import SimpleSpanHandler

from aligners import FunctionInspector, Squad, SquadMember, get_criterion
from llamaindex_aligners import AlignersEmbedding
from tests.llamaindex.li_helpers import (
    DOCS,
    Collector,
    RecordingInspector,
    harm_score,
    tiny_aligner,
)


@pytest.fixture(scope="session")
def embed_model(tiny_encoder_dir: Path) -> AlignersEmbedding:
    return AlignersEmbedding(str(tiny_encoder_dir))


@pytest.fixture(scope="session")
def index(embed_model: AlignersEmbedding) -> VectorStoreIndex:
    return VectorStoreIndex.from_documents(
        [Document(text=t) for t in DOCS], embed_model=embed_model
    )


@pytest.fixture
def ethical_inspector() -> RecordingInspector:
    return RecordingInspector(harm_score, "ethical")


@pytest.fixture
def squad(tiny_lm_dir: Path, ethical_inspector: RecordingInspector) -> Squad:
    """ethical: fires on texts that mention hurting; factuality: a constant 0.7 (passes at 0.5)."""
    return Squad(
        [
            SquadMember(
                get_criterion("ethical"), tiny_aligner(tiny_lm_dir, "ethical"), ethical_inspector
            ),
            SquadMember(
                get_criterion("factuality"),
                tiny_aligner(tiny_lm_dir, "factuality"),
                FunctionInspector(lambda q, a: 0.7, "factuality"),
            ),
        ],
        ordering="fixed",
    )


@pytest.fixture
def collector() -> Iterator[Collector]:
    """An event handler on llama-index's root dispatcher (where users attach theirs)."""
    root = instrument.get_dispatcher()
    handler = Collector(events=[])
    root.add_event_handler(handler)
    try:
        yield handler
    finally:
        root.event_handlers.remove(handler)


@pytest.fixture
def spans() -> Iterator[SimpleSpanHandler]:
    """A span handler on the root dispatcher recording every completed span."""
    root = instrument.get_dispatcher()
    handler = SimpleSpanHandler()
    root.add_span_handler(handler)
    try:
        yield handler
    finally:
        root.span_handlers.remove(handler)
