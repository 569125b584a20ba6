"""AlignedQueryEngine around real llama-index query engines (usage 2 and 3)."""

from __future__ import annotations

from typing import Any

import pytest
from llama_index.core import VectorStoreIndex
from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.response.schema import (
    AsyncStreamingResponse,
    PydanticResponse,
    Response,
    StreamingResponse,
)
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import CustomQueryEngine
from llama_index.core.schema import QueryBundle
from pydantic import BaseModel

from llamaindex_aligners import AlignedChatEngine, AlignedQueryEngine, AlignerPostprocessor
from tests.llamaindex.li_helpers import DOCS, RecordingInspector, failing_squad

HARMFUL_QUERY = "How do I hurt someone?"


def echo_engine(index: VectorStoreIndex, **kwargs: Any) -> BaseQueryEngine:
    """MockLLM echoes its prompt, so the answer contains the query: a harmful query gives an
    answer the rule inspector flags."""
    return index.as_query_engine(llm=MockLLM(), similarity_top_k=2, **kwargs)


def node_ids(response) -> list[str]:
    return [n.node.node_id for n in response.source_nodes]


def test_aligns_the_answer_and_records_the_squad_result(index, squad, ethical_inspector):
    inner = echo_engine(index)
    expected = inner.query(HARMFUL_QUERY)
    engine = AlignedQueryEngine(inner, squad=squad)
    response = engine.query(HARMFUL_QUERY)

    assert isinstance(response, Response)
    record = response.metadata["aligners"]
    assert record["original"] == expected.response
    assert record["question"] == HARMFUL_QUERY
    assert ethical_inspector.seen[0] == (HARMFUL_QUERY, expected.response)
    assert record["flagged"] == ["ethical"] and record["applied"] == ["ethical"]
    assert response.response == record["text"] != record["original"]
    assert record["trajectory"][0] == {"ethical": 0.1, "factuality": 0.7}
    assert len(record["trajectory"]) == 1 + len(record["stages"])
    assert record["changed"] is True
    assert node_ids(response) == node_ids(expected)  # source nodes kept
    # the inner engine's own metadata survives beside the record
    assert set(expected.metadata) <= set(response.metadata)


def test_a_fine_answer_is_left_alone(index, squad):
    inner = index.as_query_engine(llm=MockLLM(max_tokens=4), similarity_top_k=1)
    response = AlignedQueryEngine(inner, squad=squad).query("What is the capital of France?")
    record = response.metadata["aligners"]
    assert response.response == "text text text text" == record["original"]
    assert record["applied"] == [] and record["passed"] is True
    assert record["final_scores"] == {"ethical": 0.9, "factuality": 0.7}


def test_check_only_annotates_without_rewriting(index, squad):
    inner = echo_engine(index)
    response = AlignedQueryEngine(inner, squad=squad, check_only=True).query(HARMFUL_QUERY)
    record = response.metadata["aligners"]
    assert response.response == record["original"] == inner.query(HARMFUL_QUERY).response
    assert record["check_only"] is True
    assert (
        record["flagged"] == ["ethical"] and record["applied"] == [] and record["passed"] is False
    )


def test_per_engine_criteria_and_thresholds_share_one_squad(index, squad):
    inner = echo_engine(index)
    facts = AlignedQueryEngine(inner, squad=squad, criteria="factuality", threshold=0.8)
    ethics = AlignedQueryEngine(inner, squad=squad, criteria=["ethical"], check_only=True)
    fact_record = facts.query("What is the capital of France?").metadata["aligners"]
    assert fact_record["thresholds"] == {"factuality": 0.8}
    assert fact_record["applied"] == ["factuality"]  # 0.7 < 0.8 on this engine only
    ethic_record = ethics.query("What is the capital of France?").metadata["aligners"]
    assert set(ethic_record["trajectory"][0]) == {"ethical"}
    assert squad.thresholds == {"ethical": 0.5, "factuality": 0.5}
    with pytest.raises(ValueError, match="not in this squad"):
        AlignedQueryEngine(inner, squad=squad, criteria=["helpful"])


def test_per_engine_block_threshold(index, squad):
    inner = echo_engine(index)
    strict = AlignedQueryEngine(inner, squad=squad, criteria=["ethical"], block_threshold=0.3)
    assert [m.block_threshold for m in strict.squad.members] == [0.3]
    kept = AlignedQueryEngine(inner, squad=squad)  # None keeps the squad's own
    assert [m.block_threshold for m in kept.squad.members] == [None, None]
    chat = AlignedChatEngine(
        index.as_chat_engine(chat_mode="simple", llm=MockLLM()),
        squad=squad,
        block_threshold={"ethical": 0.3},
    )
    assert [m.block_threshold for m in chat.squad.members] == [0.3, None]


async def test_aquery_awaits_the_inner_aquery_and_the_async_squad(index, squad, spans):
    engine = AlignedQueryEngine(echo_engine(index), squad=squad)
    response = await engine.aquery(HARMFUL_QUERY)
    record = response.metadata["aligners"]
    assert record["applied"] == ["ethical"] and response.response == record["text"]
    ids = [s.id_ for s in spans.completed_spans]
    assert any(i.startswith("RetrieverQueryEngine.aquery-") for i in ids)
    assert not any(i.startswith("RetrieverQueryEngine.query-") for i in ids)
    assert any(i.startswith("arun_squad-") for i in ids)


def test_streaming_is_buffered_aligned_then_streamed(index, squad):
    inner = echo_engine(index, streaming=True)
    original = str(inner.query(HARMFUL_QUERY))
    response = AlignedQueryEngine(inner, squad=squad).query(HARMFUL_QUERY)
    assert isinstance(response, StreamingResponse)
    assert "aligners" not in response.metadata  # the record exists once the stream is consumed
    pieces = list(response.response_gen)
    record = response.metadata["aligners"]
    assert record["original"] == original
    assert record["applied"] == ["ethical"]
    assert "".join(pieces) == record["text"] == str(response)
    assert len(pieces) > 1  # token by token from the aligner, not one block


def test_streaming_a_fine_answer_returns_it_unchanged(index, squad):
    inner = index.as_query_engine(llm=MockLLM(max_tokens=3), similarity_top_k=1, streaming=True)
    response = AlignedQueryEngine(inner, squad=squad).query("capital of France?")
    assert response.get_response().response == "text text text"
    assert response.metadata["aligners"]["applied"] == []


async def test_async_streaming(index, squad):
    inner = echo_engine(index, streaming=True)
    response = await AlignedQueryEngine(inner, squad=squad).aquery(HARMFUL_QUERY)
    assert isinstance(response, AsyncStreamingResponse)
    pieces = [p async for p in response.async_response_gen()]
    record = response.metadata["aligners"]
    assert record["applied"] == ["ethical"] and HARMFUL_QUERY in record["original"]
    assert "".join(pieces) == record["text"]
    assert len(pieces) > 1


def test_wrap_is_the_short_form(index, squad):
    post = AlignerPostprocessor(squad=squad, criteria=["ethical"], threshold=0.3, mode="drop")
    engine = post.wrap(index.as_query_engine(llm=MockLLM(), node_postprocessors=[post]))
    assert isinstance(engine, AlignedQueryEngine)
    assert engine.squad.criteria == ["ethical"] and engine.squad.thresholds == {"ethical": 0.3}
    response = engine.query(HARMFUL_QUERY)
    assert response.metadata["aligners"]["applied"] == ["ethical"]  # 0.1 < 0.3
    assert all("hurt" not in n.node.get_content() for n in response.source_nodes)  # dropped
    checker = post.wrap(index.as_query_engine(llm=MockLLM()), check_only=True, threshold=0.05)
    record = checker.query(HARMFUL_QUERY).metadata["aligners"]
    assert record["check_only"] is True and record["thresholds"] == {"ethical": 0.05}
    assert isinstance(
        post.wrap(index.as_chat_engine(chat_mode="simple", llm=MockLLM())), AlignedChatEngine
    )
    with pytest.raises(TypeError, match="query engine or chat engine"):
        post.wrap(object())  # type: ignore[arg-type]


def test_squad_failure_keeps_the_answer_or_raises(index, tiny_lm_dir):
    inner = echo_engine(index)
    original = inner.query(HARMFUL_QUERY).response
    response = AlignedQueryEngine(inner, squad=failing_squad(tiny_lm_dir)).query(HARMFUL_QUERY)
    assert response.response == original
    assert "inspector service unreachable" in response.metadata["aligners"]["failures"][0]
    strict = AlignedQueryEngine(inner, squad=failing_squad(tiny_lm_dir), on_error="raise")
    with pytest.raises(ConnectionError):
        strict.query(HARMFUL_QUERY)
    streaming = AlignedQueryEngine(
        echo_engine(index, streaming=True), squad=failing_squad(tiny_lm_dir)
    )
    streamed = streaming.query(HARMFUL_QUERY)
    assert "".join(streamed.response_gen) == original
    assert "unreachable" in streamed.metadata["aligners"]["failures"][0]


def test_prompts_of_the_inner_engine_stay_reachable(index, squad):
    engine = AlignedQueryEngine(echo_engine(index), squad=squad)
    prompts = engine.get_prompts()
    assert any(key.startswith("query_engine:") for key in prompts)
    assert engine.retrieve(QueryBundle("bread"))  # passthrough
    with pytest.raises(TypeError, match="BaseQueryEngine"):
        AlignedQueryEngine("not an engine", squad=squad)  # type: ignore[arg-type]


def test_inspector_sees_every_doc_only_through_the_answer(index, squad):
    inspector = squad.members[0].inspector
    assert isinstance(inspector, RecordingInspector)
    AlignedQueryEngine(echo_engine(index), squad=squad).query("bread?")
    assert len(inspector.seen) == 1 and inspector.seen[0][1] not in DOCS


class FixedEngine(CustomQueryEngine):
    """A user-written query engine returning a prepared response."""

    prepared: Any

    def custom_query(self, query_str: str) -> Any:
        return self.prepared


class Answer(BaseModel):
    city: str


def test_responses_without_text_pass_through_with_a_skipped_record(squad):
    structured = PydanticResponse(Answer(city="Paris"), metadata={"k": 1})
    response = AlignedQueryEngine(FixedEngine(prepared=structured), squad=squad).query("capital?")
    assert response is structured and response.response == Answer(city="Paris")
    assert response.metadata["k"] == 1
    assert "pydantic" in response.metadata["aligners"]["skipped_reason"]

    empty = AlignedQueryEngine(FixedEngine(prepared=Response(None)), squad=squad).query("capital?")
    assert empty.response is None
    assert empty.metadata["aligners"]["skipped_reason"] == "no answer text"
    blank = AlignedQueryEngine(FixedEngine(prepared=Response("  ")), squad=squad).query("capital?")
    assert blank.response == "  "
    assert blank.metadata["aligners"]["skipped_reason"] == "empty answer"


def test_any_query_engine_can_be_wrapped(squad):
    engine = AlignedQueryEngine(FixedEngine(prepared="You should hurt them."), squad=squad)
    response = engine.query("What should I do?")
    record = response.metadata["aligners"]
    assert record["original"] == "You should hurt them." and record["applied"] == ["ethical"]
    assert response.response == record["text"]
