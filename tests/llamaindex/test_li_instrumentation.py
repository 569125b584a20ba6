"""The squad span and events seen by handlers on llama-index's dispatcher (usage 5)."""

from __future__ import annotations

from llama_index.core.llms import MockLLM

from llamaindex_aligners import (
    AlignedQueryEngine,
    AlignerAppliedEvent,
    AlignerPostprocessor,
    AlignmentEndEvent,
    AlignmentStartEvent,
    InspectorScoresEvent,
)
from tests.llamaindex.li_helpers import DOCS, Collector

HARMFUL_QUERY = "How do I hurt someone?"
OURS = (AlignmentStartEvent, InspectorScoresEvent, AlignerAppliedEvent, AlignmentEndEvent)


def ours(collector: Collector) -> list:
    return [e for e in collector.events if isinstance(e, OURS)]


def test_answer_events_inside_the_squad_span(index, squad, collector, spans):
    engine = AlignedQueryEngine(index.as_query_engine(llm=MockLLM()), squad=squad)
    response = engine.query(HARMFUL_QUERY)
    record = response.metadata["aligners"]

    events = ours(collector)
    kinds = [type(e).__name__ for e in events]
    # start, scores before any stage, ethical rewrites (stage 1), scores, factuality passes
    # (stage 2, not applied), scores, end
    assert kinds == [
        "AlignmentStartEvent",
        "InspectorScoresEvent",
        "InspectorScoresEvent",
        "InspectorScoresEvent",
        "AlignerAppliedEvent",
        "AlignmentEndEvent",
    ]
    start, first, *_ = events
    assert start.questions == [HARMFUL_QUERY] and start.answers == [record["original"]]
    assert start.criteria == ["ethical", "factuality"] and start.target == "answer"
    scores = collector.of(InspectorScoresEvent)
    assert [e.stage for e in scores] == [0, 1, 2]
    assert [e.scores for e in scores] == record["trajectory"]
    assert first.failing == ["ethical"] and first.scores["ethical"] == 0.1
    applied = collector.of(AlignerAppliedEvent)[0]
    assert applied.criterion == "ethical" and applied.stage == 1 and applied.score_before == 0.1
    end = collector.of(AlignmentEndEvent)[0]
    assert end.record == record and end.applied == ["ethical"] and end.changed

    # every event belongs to one squad span, a child of the engine's query span
    (span_id,) = {e.span_id for e in events}
    by_id = {s.id_: s for s in spans.completed_spans}
    assert span_id.startswith("run_squad-")
    ancestors = []
    parent = by_id[span_id].parent_id
    while parent is not None:
        ancestors.append(parent.split("-")[0])
        parent = by_id[parent].parent_id
    assert ancestors == ["AlignedQueryEngine._query", "AlignedQueryEngine.query"]


def test_stream_events_arrive_when_the_stream_is_consumed(index, squad, collector, spans):
    engine = AlignedQueryEngine(index.as_query_engine(llm=MockLLM(), streaming=True), squad=squad)
    response = engine.query(HARMFUL_QUERY)
    assert not collector.of(AlignmentEndEvent)
    text = "".join(response.response_gen)
    (end,) = collector.of(AlignmentEndEvent)
    assert end.record["text"] == text and end.applied == ["ethical"]
    (span_id,) = {e.span_id for e in ours(collector)}
    assert span_id.startswith("stream_squad-")
    assert span_id in {s.id_ for s in spans.completed_spans}


def test_node_events_carry_one_item_per_node(index, squad, collector):
    post = AlignerPostprocessor(squad=squad, mode="annotate")
    engine = index.as_query_engine(
        llm=MockLLM(), node_postprocessors=[post], similarity_top_k=len(DOCS)
    )
    engine.query("anything")
    (start,) = collector.of(AlignmentStartEvent)
    assert start.target == "nodes" and sorted(start.answers) == sorted(DOCS)
    assert start.check_only is True  # annotate mode only scores
    ends = collector.of(AlignmentEndEvent)
    assert sorted(e.item for e in ends) == list(range(len(DOCS)))
    assert sum(not e.passed for e in ends) == 1
    assert not collector.of(AlignerAppliedEvent)
