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


def _counts(details: dict) -> tuple[int, int]:
    assert details["total_tokens"] == details["prompt_tokens"] + details["completion_tokens"]
    return details["prompt_tokens"], details["completion_tokens"]


def test_llm_reports_usage_finish_reason_and_model_name(llm, tiny_lm_dir):
    backend = TransformersBackend(str(tiny_lm_dir))
    response = llm.complete("hello")
    prompt_tokens, completion_tokens = _counts(response.additional_kwargs)
    assert prompt_tokens == backend.count_tokens([{"role": "user", "content": "hello"}])
    assert 1 <= completion_tokens <= 6
    assert response.additional_kwargs["model_name"] == str(tiny_lm_dir)
    finish = response.additional_kwargs["finish_reason"]
    assert (finish == "length") == (completion_tokens == 6)
    assert response.raw["usage"]["completion_tokens"] == completion_tokens
    chat = llm.chat([ChatMessage(role=MessageRole.USER, content="hello")])
    assert chat.additional_kwargs == response.additional_kwargs


async def test_llm_streams_end_with_the_usage(llm):
    expected = llm.complete("hello").additional_kwargs
    pieces = list(llm.stream_complete("hello"))
    assert pieces[-1].additional_kwargs == expected and pieces[-1].delta == ""
    assert all(not p.additional_kwargs for p in pieces[:-1])
    chats = list(llm.stream_chat([ChatMessage(role=MessageRole.USER, content="hello")]))
    assert chats[-1].additional_kwargs == expected
    assert chats[-1].message.content == "".join(c.delta or "" for c in chats)
    apieces = [p async for p in await llm.astream_complete("hello")]
    assert apieces[-1].additional_kwargs == expected
    achats = await llm.astream_chat([ChatMessage(role=MessageRole.USER, content="hello")])
    assert [c async for c in achats][-1].additional_kwargs == expected
    assert (await llm.acomplete("hello")).additional_kwargs == expected


def test_llm_max_tokens_alias_and_unknown_keywords(tiny_lm_dir):
    from pydantic import ValidationError

    llm = AlignersLLM(str(tiny_lm_dir), max_tokens=2)
    assert llm.max_new_tokens == 2 == llm.metadata.num_output
    assert _counts(llm.complete("hello").additional_kwargs)[1] <= 2
    assert _counts(llm.complete("hello", max_tokens=1).additional_kwargs)[1] == 1
    with pytest.raises(ValidationError, match="max_new_token"):
        AlignersLLM(str(tiny_lm_dir), max_new_token=5)
    with pytest.raises(TypeError, match="unknown keyword argument.*top_q"):
        llm.complete("hello", top_q=0.5)


def test_llm_checks_the_context_before_generating(tiny_lm_dir, monkeypatch):
    import time

    from aligners import InputTooLongError

    llm = AlignersLLM(str(tiny_lm_dir), max_new_tokens=8)
    calls: list[int] = []
    model = llm.backend.load().model
    generate = model.generate
    monkeypatch.setattr(model, "generate", lambda *a, **k: calls.append(1) or generate(*a, **k))
    llm.complete("hello")
    assert calls == [1]  # the spy sees generations
    calls.clear()
    start = time.perf_counter()
    for run in (
        lambda: llm.complete("word " * 600),
        lambda: llm.stream_complete("word " * 600),
        lambda: llm.chat([ChatMessage(role=MessageRole.USER, content="word " * 600)]),
    ):
        with pytest.raises(InputTooLongError, match="512-token context"):
            run()
    assert time.perf_counter() - start < 10 and not calls
    # the ChatAlignersLocal check: the same limit, the same error type
    from langchain_aligners import ChatAlignersLocal

    with pytest.raises(InputTooLongError, match="512-token context"):
        ChatAlignersLocal(model=str(tiny_lm_dir), max_tokens=8).invoke("word " * 600)


def test_llamaindex_token_counting_reads_the_reported_usage(tiny_lm_dir):
    from llama_index.core.callbacks import CallbackManager, TokenCountingHandler

    counter = TokenCountingHandler()
    llm = AlignersLLM(str(tiny_lm_dir), max_tokens=4, callback_manager=CallbackManager([counter]))
    details = llm.complete("hello").additional_kwargs
    event = counter.llm_token_counts[-1]
    assert (event.prompt_token_count, event.completion_token_count) == (
        details["prompt_tokens"],
        details["completion_tokens"],
    )


def test_llm_over_another_backend_reports_its_finish_reason():
    from aligners.backends.base import Generation
    from tests.engine.conftest import ConstantBackend

    class CutBackend(ConstantBackend):
        """A backend that says its completions were cut (as a remote server can)."""

        def generate_detailed(self, prompts, config):
            return [Generation(text, "length") for text in self.generate(prompts, config)]

    llm = AlignersLLM("remote", backend=CutBackend("a cut answer"), max_tokens=3)
    response = llm.complete("hello")
    assert response.text == "a cut answer"
    assert response.additional_kwargs == {"finish_reason": "length", "model_name": "remote"}
    plain = AlignersLLM("remote", backend=ConstantBackend("fine"), max_tokens=3)
    assert plain.complete("hello").additional_kwargs["finish_reason"] == "stop"
