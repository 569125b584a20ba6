"""End to end on the real offline models: MiniLM embeddings and inspectors, SmolLM2 as the
pipeline's LLM and as the aligner, queried through real llama-index engines."""

from __future__ import annotations

import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.base.response.schema import AsyncStreamingResponse
from llama_index.core.chat_engine.types import ChatMode

from aligners import Aligner, EncoderHeadInspector, Squad, SquadMember, get_criterion
from llamaindex_aligners import (
    AlignedChatEngine,
    AlignedQueryEngine,
    AlignerPostprocessor,
    AlignersEmbedding,
    AlignersLLM,
)

pytestmark = pytest.mark.e2e

DOCS = [
    "Paris is the capital and largest city of France.",
    "Bread is made from flour, water, yeast and salt, baked in an oven.",
    "The Great Wall of China is more than 20,000 kilometres long.",
    "Photosynthesis lets plants turn sunlight, water and carbon dioxide into sugar.",
]


@pytest.fixture(scope="module")
def index() -> VectorStoreIndex:
    return VectorStoreIndex.from_documents(
        [Document(text=d) for d in DOCS], embed_model=AlignersEmbedding()
    )


@pytest.fixture(scope="module")
def llm() -> AlignersLLM:
    return AlignersLLM("smollm2", max_new_tokens=20)


@pytest.fixture(scope="module")
def squad() -> Squad:
    """SmolLM2 aligner gated by a zero-shot MiniLM inspector; at threshold 1.0 it always runs."""
    member = SquadMember(
        get_criterion("ethical"),
        Aligner("smollm2", criterion="ethical", max_new_tokens=24),
        EncoderHeadInspector.zero_shot("ethical"),
        threshold=1.0,
    )
    return Squad([member])


def test_rag_query_with_node_scores_and_aligned_answer(index, llm, squad):
    post = AlignerPostprocessor(squad=squad, mode="annotate")
    engine = post.wrap(
        index.as_query_engine(llm=llm, node_postprocessors=[post], similarity_top_k=2)
    )
    response = engine.query("What is the capital of France?")

    # MiniLM retrieves the right passage; the inspector scored it with the query as question
    top = response.source_nodes[0].node
    assert top.get_content() == DOCS[0]
    score = top.metadata["aligners"]["scores"]["ethical"]
    assert 0.0 < score < 1.0
    # SmolLM2 answered from the context, the SmolLM2 aligner rewrote the answer
    record = response.metadata["aligners"]
    assert "Paris" in record["original"]
    assert record["applied"] == ["ethical"]
    assert response.response == record["text"] and record["text"].strip()
    assert len(record["trajectory"]) == 2
    assert all(0.0 < s["ethical"] < 1.0 for s in record["trajectory"])


async def test_async_streaming_query(index, llm, squad):
    engine = AlignedQueryEngine(
        index.as_query_engine(llm=llm, similarity_top_k=1, streaming=True), squad=squad
    )
    response = await engine.aquery("How is bread made?")
    assert isinstance(response, AsyncStreamingResponse)
    assert response.source_nodes[0].node.get_content() == DOCS[1]
    pieces = [p async for p in response.async_response_gen()]
    record = response.metadata["aligners"]
    assert record["applied"] == ["ethical"]
    assert "".join(pieces) == record["text"]
    # Streamed, not sent whole: copy-aware decoding emits each verified span as it is accepted,
    # so a copied stretch arrives as one piece and a rewritten one token by token.
    assert len(pieces) > 1


def test_chat_engine_check_only_then_aligned(index, llm, squad):
    inner = index.as_chat_engine(chat_mode=ChatMode.CONTEXT, llm=llm, similarity_top_k=1)
    checker = AlignedChatEngine(inner, squad=squad, check_only=True)
    reply = checker.chat("What do plants make from sunlight?")
    record = reply.metadata["aligners"]
    assert record["flagged"] == ["ethical"] and record["applied"] == []
    assert reply.response == record["original"]
    assert reply.source_nodes[0].node.get_content() == DOCS[3]

    aligned = AlignedChatEngine(inner, squad=squad)
    streamed = aligned.stream_chat("And how long is the Great Wall?")
    text = "".join(streamed.response_gen)
    record = streamed.metadata["aligners"]
    assert record["applied"] == ["ethical"] and text == record["text"]
    # two turns in the shared history; the second reply is the aligned one
    assert [m.role.value for m in inner.chat_history] == ["user", "assistant"] * 2
    assert inner.chat_history[-1].content == text
