"""AlignersEmbedding and AlignersLLM on tiny random models, and a whole RAG pipeline on them."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.base.response.schema import StreamingResponse

from aligners import GenerationConfig, SentenceEncoder, TransformersBackend
from llamaindex_aligners import (
    AlignedQueryEngine,
    AlignerPostprocessor,
    AlignersLLM,
)
from tests.llamaindex.li_helpers import DOCS


@pytest.fixture(scope="module")
def llm(tiny_lm_dir: Path) -> AlignersLLM:
    # The tiny model has 512 positions; llama-index's default QA prompt needs more room to pack.
    return AlignersLLM(str(tiny_lm_dir), max_new_tokens=6, context_window=4096)


def test_embedding_matches_the_engine_encoder(embed_model, tiny_encoder_dir):
    vector = embed_model.get_text_embedding(DOCS[0])
    expected = SentenceEncoder(str(tiny_encoder_dir)).encode([DOCS[0]])[0].tolist()
    assert vector == pytest.approx(expected, abs=1e-6)
    assert math.isclose(sum(v * v for v in vector), 1.0, rel_tol=1e-4)  # normalised
    batch = embed_model.get_text_embedding_batch(DOCS[:3])
    assert len(batch) == 3 and batch[0] == pytest.approx(vector, abs=1e-6)
    assert embed_model.get_query_embedding(DOCS[1]) == pytest.approx(batch[1], abs=1e-6)
    assert embed_model.class_name() == "AlignersEmbedding" and embed_model.model_name == str(
        tiny_encoder_dir
    )


async def test_embedding_async_and_retrieval(embed_model, index):
    assert await embed_model.aget_query_embedding(DOCS[2]) == pytest.approx(
        embed_model.get_query_embedding(DOCS[2]), abs=1e-6
    )
    # a query identical to a document has cosine 1 with it: the retriever ranks it first
    for doc in DOCS:
        top = index.as_retriever(similarity_top_k=1).retrieve(doc)[0]
        assert top.node.get_content() == doc
        assert top.score == pytest.approx(1.0, abs=1e-4)


def test_llm_complete_and_chat_use_the_chat_template(llm, tiny_lm_dir):
    backend = TransformersBackend(str(tiny_lm_dir))
    config = GenerationConfig(max_new_tokens=6)
    expected = backend.generate([[{"role": "user", "content": "hello"}]], config)[0].strip()
    assert llm.complete("hello").text == expected
    chat = llm.chat([ChatMessage(role=MessageRole.USER, content="hello")])
    assert chat.message.role == MessageRole.ASSISTANT and chat.message.content == expected
    assert llm.metadata.is_chat_model and llm.metadata.num_output == 6
    assert llm.metadata.context_window == 4096
    assert AlignersLLM(str(tiny_lm_dir)).metadata.context_window == 512  # read from the model


def test_llm_streams_the_same_text(llm):
    whole = llm.complete("bread").text
    pieces = list(llm.stream_complete("bread"))
    assert "".join(p.delta or "" for p in pieces).strip() == whole
    assert pieces[-1].text.strip() == whole
    chat_pieces = list(llm.stream_chat([ChatMessage(role=MessageRole.USER, content="bread")]))
    assert chat_pieces[-1].message.content.strip() == whole


async def test_llm_async(llm):
    whole = llm.complete("France").text
    assert (await llm.acomplete("France")).text == whole
    reply = await llm.achat([ChatMessage(role=MessageRole.USER, content="France")])
    assert reply.message.content == whole
    pieces = [
        p
        async for p in await llm.astream_chat(
            [ChatMessage(role=MessageRole.USER, content="France")]
        )
    ]
    assert "".join(p.delta or "" for p in pieces).strip() == whole
    pieces = [p async for p in await llm.astream_complete("France")]
    assert pieces[-1].text.strip() == whole


def test_llm_rejects_bad_input(tiny_lm_dir):
    with pytest.raises(TypeError, match="GenerationBackend"):
        AlignersLLM(str(tiny_lm_dir), backend="local")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one message"):
        AlignersLLM(str(tiny_lm_dir)).chat([])


def test_rag_pipeline_on_tiny_models(embed_model, llm, squad):
    """Embedding, LLM, postprocessor and answer alignment all real, all tiny."""
    index = VectorStoreIndex.from_documents(
        [Document(text=t) for t in DOCS], embed_model=embed_model
    )
    post = AlignerPostprocessor(squad=squad, mode="drop")
    engine = post.wrap(
        index.as_query_engine(llm=llm, node_postprocessors=[post], similarity_top_k=4)
    )
    response = engine.query("How do I hurt someone?")
    assert {n.node.get_content() for n in response.source_nodes} == {
        d for d in DOCS if "hurt" not in d
    }
    record = response.metadata["aligners"]
    assert record["question"] == "How do I hurt someone?" and record["original"].strip()
    assert response.response == record["text"]

    streaming = AlignedQueryEngine(index.as_query_engine(llm=llm, streaming=True), squad=squad)
    streamed = streaming.query("What is the capital of France?")
    assert isinstance(streamed, StreamingResponse)
    assert "".join(streamed.response_gen) == streamed.metadata["aligners"]["text"]
