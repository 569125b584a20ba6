"""Sources in LlamaIndex: the wrappers hand the retrieved nodes' text to the squad as the
answer's context, so ``grounded`` checks answers against what was retrieved.

A real VectorStoreIndex (tiny encoder embeddings) retrieves every document; a scripted LLM
answers with one sentence no document supports; the grounded member is the word-overlap rule
inspector (verdicts readable by eye) or the tiny random grounded cross-encoder.
"""

from __future__ import annotations

from typing import Any

import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.base.response.schema import AsyncStreamingResponse, StreamingResponse
from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.core.chat_engine.types import ChatMode
from llama_index.core.schema import NodeWithScore, TextNode

from aligners import DEFAULT_NOT_COVERED, FunctionInspector, Squad, SquadMember, get_criterion
from llamaindex_aligners import AlignedChatEngine, AlignedQueryEngine, AlignerPostprocessor
from llamaindex_aligners.answers import Sources
from llamaindex_aligners.instrumentation import AlignmentStartEvent
from tests.grounding_helpers import (
    GROUNDED_ANSWER,
    MIXED_ANSWER,
    PASSAGES,
    REPAIRED_ANSWER,
    WordOverlapInspector,
    grounded_member,
    grounded_squad,
)
from tests.llamaindex.li_helpers import ScriptedLLM

BREAD = "To bake bread, mix flour, water, yeast and salt."
QUESTION = "Tell me about the Eiffel Tower."
ALL = 3  # every document is retrieved


@pytest.fixture(scope="module")
def rag_index(embed_model: Any) -> VectorStoreIndex:
    docs = [Document(text=t) for t in [*PASSAGES, BREAD]]
    return VectorStoreIndex.from_documents(docs, embed_model=embed_model)


def llm(reply: str) -> ScriptedLLM:
    return ScriptedLLM(reply=reply, calls=[])


def texts(nodes: list[NodeWithScore]) -> list[str]:
    return [n.node.get_content() for n in nodes]


def assert_passages_index_the_nodes(record: dict[str, Any], nodes: list[NodeWithScore]) -> None:
    """Each supported sentence's passage is the source node holding all its words."""
    claims = [s for s in record["grounding"]["sentences"] if not s["trivial"] and s["supported"]]
    assert claims
    for sentence in claims:
        node_text = nodes[sentence["passage"]].node.get_content().lower()
        words = sentence["text"].lower().rstrip(".").replace("'s", "").split()
        assert all(w in node_text for w in words), (sentence, node_text)


def test_query_engine_drops_what_the_retrieved_nodes_do_not_support(rag_index):
    inner = rag_index.as_query_engine(llm=llm(MIXED_ANSWER), similarity_top_k=ALL)
    squad = grounded_squad()
    inspector = squad.members[0].inspector
    assert isinstance(inspector, WordOverlapInspector)
    expected_nodes = texts(inner.query(QUESTION).source_nodes)

    response = AlignedQueryEngine(inner, squad=squad).query(QUESTION)

    assert response.response == REPAIRED_ANSWER
    record = response.metadata["aligners"]
    assert record["original"] == MIXED_ANSWER
    assert record["action"] == "rewritten" and record["flagged"] == ["grounded"]
    assert texts(response.source_nodes) == expected_nodes  # untouched, same order
    assert inspector.seen[0] == tuple(expected_nodes)  # one passage per node, in order
    assert record["grounding"]["passages"] == ALL
    assert_passages_index_the_nodes(record, response.source_nodes)


def test_a_supported_answer_is_unchanged(rag_index):
    inner = rag_index.as_query_engine(llm=llm(GROUNDED_ANSWER), similarity_top_k=ALL)
    response = AlignedQueryEngine(inner, squad=grounded_squad()).query(QUESTION)
    record = response.metadata["aligners"]
    assert response.response == GROUNDED_ANSWER and record["action"] == "passed"
    assert record["grounding"]["sentences"] and not record["not_inspected"]
    assert_passages_index_the_nodes(record, response.source_nodes)


async def test_async_and_streaming_queries_are_grounded_too(rag_index, collector):
    engine = AlignedQueryEngine(
        rag_index.as_query_engine(llm=llm(MIXED_ANSWER), similarity_top_k=ALL),
        squad=grounded_squad(),
    )
    answered = await engine.aquery(QUESTION)
    assert answered.response == REPAIRED_ANSWER
    assert_passages_index_the_nodes(answered.metadata["aligners"], answered.source_nodes)
    start = collector.of(AlignmentStartEvent)[-1]
    assert start.contexts == [texts(answered.source_nodes)]

    streaming = AlignedQueryEngine(
        rag_index.as_query_engine(llm=llm(MIXED_ANSWER), similarity_top_k=ALL, streaming=True),
        squad=grounded_squad(),
    )
    sync = streaming.query(QUESTION)
    assert isinstance(sync, StreamingResponse)
    assert "".join(sync.response_gen) == REPAIRED_ANSWER
    assert sync.metadata["aligners"]["action"] == "rewritten"
    assert_passages_index_the_nodes(sync.metadata["aligners"], sync.source_nodes)

    later = await streaming.aquery(QUESTION)
    assert isinstance(later, AsyncStreamingResponse)
    assert "".join([p async for p in later.async_response_gen()]) == REPAIRED_ANSWER
    assert later.metadata["aligners"]["grounding"] == sync.metadata["aligners"]["grounding"]


def test_blocking_on_an_unsupported_answer(rag_index):
    inner = rag_index.as_query_engine(llm=llm(MIXED_ANSWER), similarity_top_k=ALL)
    blocked = AlignedQueryEngine(inner, squad=grounded_squad(), on_flag="block").query(QUESTION)
    assert blocked.metadata["aligners"]["action"] == "blocked"
    assert blocked.response == blocked.metadata["aligners"]["text"] != MIXED_ANSWER


def test_context_chat_engine_replies_are_grounded_in_its_retrieved_nodes(rag_index):
    def engine() -> Any:
        return rag_index.as_chat_engine(
            chat_mode=ChatMode.CONTEXT, llm=llm(MIXED_ANSWER), similarity_top_k=ALL
        )

    chat = AlignedChatEngine(engine(), squad=grounded_squad())
    reply = chat.chat(QUESTION)
    assert reply.response == REPAIRED_ANSWER
    assert len(reply.source_nodes) == ALL
    assert_passages_index_the_nodes(reply.metadata["aligners"], reply.source_nodes)
    assert chat.chat_history[-1].content == REPAIRED_ANSWER  # later turns build on it

    streamed = AlignedChatEngine(engine(), squad=grounded_squad()).stream_chat(QUESTION)
    assert "".join(streamed.response_gen) == REPAIRED_ANSWER
    assert streamed.metadata is not None
    assert_passages_index_the_nodes(streamed.metadata["aligners"], streamed.source_nodes)


async def test_async_chat_is_grounded(rag_index):
    def engine() -> Any:
        return rag_index.as_chat_engine(
            chat_mode=ChatMode.CONTEXT, llm=llm(MIXED_ANSWER), similarity_top_k=ALL
        )

    reply = await AlignedChatEngine(engine(), squad=grounded_squad()).achat(QUESTION)
    assert reply.response == REPAIRED_ANSWER
    streamed = await AlignedChatEngine(engine(), squad=grounded_squad()).astream_chat(QUESTION)
    assert "".join([p async for p in streamed.async_response_gen()]) == REPAIRED_ANSWER
    assert streamed.metadata is not None
    assert streamed.metadata["aligners"]["grounding"] == reply.metadata["aligners"]["grounding"]


def test_without_retrieved_nodes_grounded_is_skipped_with_the_reason():
    inner = SimpleChatEngine.from_defaults(llm=llm(MIXED_ANSWER))
    chat = AlignedChatEngine(inner, squad=grounded_squad())
    reply = chat.chat(QUESTION)
    record = reply.metadata["aligners"]
    assert reply.response == MIXED_ANSWER and record["action"] == "passed"
    assert "no context" in record["not_inspected"]["grounded"]
    assert record["grounding"] is None


def test_postprocessor_leaves_grounding_to_the_answer(rag_index):
    ethical = SquadMember(
        get_criterion("ethical"),
        inspector=FunctionInspector(lambda q, a: 0.1 if "bread" in a.lower() else 0.9, "ethical"),
    )
    squad = Squad([ethical, grounded_member()])
    post = AlignerPostprocessor(squad=squad, mode="drop")
    inner = rag_index.as_query_engine(
        llm=llm(MIXED_ANSWER), node_postprocessors=[post], similarity_top_k=ALL
    )
    response = post.wrap(inner).query(QUESTION)
    # Nodes: the bread one dropped by the rule; grounded not inspected on nodes (they are the
    # sources), so no node is dropped for it.
    assert sorted(texts(response.source_nodes)) == sorted(PASSAGES)
    for node in response.source_nodes:
        assert "no context" in node.node.metadata["aligners"]["not_inspected"]["grounded"]
    # The answer: checked against the nodes the postprocessor kept.
    assert response.response == REPAIRED_ANSWER
    record = response.metadata["aligners"]
    assert record["grounding"]["passages"] == 2
    assert_passages_index_the_nodes(record, response.source_nodes)


def test_passages_renumbered_past_blank_nodes():
    nodes = [NodeWithScore(node=TextNode(text=t)) for t in [PASSAGES[0], "  ", PASSAGES[1]]]
    sources = Sources.of(nodes)
    assert sources.passages == tuple(PASSAGES) and sources.nodes == (0, 2)
    result = grounded_squad().align(QUESTION, MIXED_ANSWER, context=sources.context)
    record = sources.record(result)
    claims = [s for s in record["grounding"]["sentences"] if not s["trivial"]]
    assert [s["passage"] for s in claims if s["supported"]] == [0, 2]
    assert Sources.of([]).context is None


def test_tiny_grounded_inspector_through_the_query_engine(rag_index, tiny_grounded_dir):
    squad = Squad.default(["grounded"], inspector=tiny_grounded_dir)
    inner = rag_index.as_query_engine(llm=llm(MIXED_ANSWER), similarity_top_k=ALL)
    response = AlignedQueryEngine(inner, squad=squad).query(QUESTION)
    record = response.metadata["aligners"]
    report = record["grounding"]
    assert report["passages"] == ALL
    assert report["sentences"]  # the check the repair acted on, sentence by sentence
    for sentence in report["sentences"]:
        assert MIXED_ANSWER[sentence["start"] : sentence["end"]] == sentence["text"]
        if not sentence["trivial"]:
            assert 0 <= sentence["passage"] < len(response.source_nodes)
    # The repair only drops sentences: what is left is the answer's own text.
    if response.response != DEFAULT_NOT_COVERED:
        kept = [s["text"] for s in report["sentences"] if s["supported"]]
        assert all(s in response.response for s in kept)
