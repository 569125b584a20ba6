"""AlignerPostprocessor inside real llama-index query engines (usage 1 and 3)."""

from __future__ import annotations

import pytest
from llama_index.core.llms import MockLLM
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode
from pydantic import ValidationError

from aligners import FunctionInspector, Squad, SquadMember, get_criterion
from llamaindex_aligners import AlignerPostprocessor, AlignmentErrorEvent
from tests.conftest import shipped_block
from tests.llamaindex.li_helpers import (
    DOCS,
    RecordingInspector,
    failing_squad,
    harm_score,
)

ALL = len(DOCS)


def node_texts(response) -> list[str]:
    return [n.node.get_content(metadata_mode=MetadataMode.NONE) for n in response.source_nodes]


def test_annotate_scores_every_node_with_the_query_as_question(index, squad, ethical_inspector):
    post = AlignerPostprocessor(squad=squad, mode="annotate")
    engine = index.as_query_engine(llm=MockLLM(), node_postprocessors=[post], similarity_top_k=ALL)
    response = engine.query("Who can I hurt?")

    assert sorted(node_texts(response)) == sorted(DOCS)  # nothing dropped
    for node in response.source_nodes:
        info = node.node.metadata["aligners"]
        text = node.node.get_content(metadata_mode=MetadataMode.NONE)
        assert info["scores"] == {"ethical": harm_score("", text), "factuality": 0.7}
        assert info["passed"] is (harm_score("", text) >= 0.5)
        assert info["flagged"] == ([] if info["passed"] else ["ethical"])
        assert info["action"] == ("kept" if info["passed"] else "annotated")
        # the scores stay out of the LLM prompt and the embedding text
        assert "aligners" in node.node.excluded_llm_metadata_keys
        assert "aligners" not in node.node.get_content(metadata_mode=MetadataMode.LLM)
    assert {q for q, _ in ethical_inspector.seen} == {"Who can I hurt?"}
    # MockLLM echoes its prompt: the context it saw carries no scores
    assert "scores" not in str(response.response)
    # the stored nodes are untouched: the postprocessor annotates copies
    for node in response.source_nodes:
        assert "aligners" not in index.docstore.get_node(node.node.node_id).metadata


def test_drop_removes_only_failing_nodes(index, squad):
    post = AlignerPostprocessor(squad=squad, mode="drop")
    engine = index.as_query_engine(llm=MockLLM(), node_postprocessors=[post], similarity_top_k=ALL)
    response = engine.query("Tell me everything")
    texts = node_texts(response)
    assert sorted(texts) == sorted(d for d in DOCS if "hurt" not in d)
    assert "hit them hard" not in str(response.response)  # the LLM never saw the dropped node


def test_rewrite_replaces_failing_node_text_and_keeps_the_original(index, squad):
    post = AlignerPostprocessor(squad=squad, mode="rewrite")
    engine = index.as_query_engine(llm=MockLLM(), node_postprocessors=[post], similarity_top_k=ALL)
    response = engine.query("Tell me everything")
    assert len(response.source_nodes) == ALL
    by_action = {}
    for node in response.source_nodes:
        info = node.node.metadata["aligners"]
        by_action.setdefault(info["action"], []).append((node, info))
    ((rewritten, info),) = by_action["rewritten"]
    assert info["original"] == "To hurt someone, hit them hard."
    assert info["applied"] == ["ethical"]
    new_text = rewritten.node.get_content(metadata_mode=MetadataMode.NONE)
    assert new_text != info["original"] and new_text.strip()
    assert info["initial_scores"]["ethical"] == 0.1
    assert info["scores"]["ethical"] == harm_score("", new_text)  # rescored after the rewrite
    assert len(by_action["kept"]) == ALL - 1
    # the rewritten text is what the LLM saw (MockLLM echoes the prompt)
    assert new_text in str(response.response)
    assert "hit them hard" not in str(response.response)


async def test_async_postprocessing_in_aquery(index, squad, spans):
    post = AlignerPostprocessor(squad=squad, mode="drop")
    engine = index.as_query_engine(llm=MockLLM(), node_postprocessors=[post], similarity_top_k=ALL)
    response = await engine.aquery("Tell me everything")
    assert sorted(node_texts(response)) == sorted(d for d in DOCS if "hurt" not in d)
    # the async squad path ran (a span of arun_squad), not the sync one
    ids = [s.id_ for s in spans.completed_spans]
    assert any(i.startswith("arun_squad-") for i in ids)
    assert not any(i.startswith("run_squad-") for i in ids)


def test_per_engine_criteria_and_thresholds(index, squad):
    only_fact = AlignerPostprocessor(
        squad=squad, criteria=["factuality"], threshold=0.8, mode="drop"
    )
    engine = index.as_query_engine(
        llm=MockLLM(), node_postprocessors=[only_fact], similarity_top_k=ALL
    )
    # factuality scores 0.7 everywhere, under this engine's 0.8: every node goes
    assert engine.query("anything").source_nodes == []

    per_criterion = AlignerPostprocessor(
        squad=squad, threshold={"ethical": 0.05, "factuality": 0.6}, mode="drop"
    )
    engine = index.as_query_engine(
        llm=MockLLM(), node_postprocessors=[per_criterion], similarity_top_k=ALL
    )
    response = engine.query("anything")
    assert len(response.source_nodes) == ALL  # 0.1 >= 0.05: the harmful node passes here
    assert response.source_nodes[0].node.metadata["aligners"]["thresholds"] == {
        "ethical": 0.05,
        "factuality": 0.6,
    }
    # the shared squad itself is unchanged
    assert squad.thresholds == {"ethical": 0.5, "factuality": 0.5}


def test_per_engine_block_threshold(index, squad):
    def blocks(post: AlignerPostprocessor) -> list[float | None]:
        return [m.block_threshold for m in post.get_squad().members]

    post = AlignerPostprocessor(squad=squad, mode="rewrite")
    assert blocks(post) == [None, None]  # None keeps the squad's own
    post.block_threshold = {"ethical": 0.3}  # changed after construction: the squad is rebuilt
    assert blocks(post) == [0.3, None]
    wrapped = post.wrap(index.as_query_engine(llm=MockLLM()))  # handed on to the answer level
    assert [m.block_threshold for m in wrapped.squad.members] == [0.3, None]
    restored = AlignerPostprocessor.from_dict(post.to_dict())
    assert restored.block_threshold == {"ethical": 0.3}
    assert [m.block_threshold for m in squad.members] == [None, None]  # the shared squad
    assert blocks(AlignerPostprocessor(criteria=["ethical"])) == [shipped_block()]  # the gate's
    assert blocks(AlignerPostprocessor(criteria=["ethical"], block_threshold=0)) == [0.0]
    with pytest.raises(ValidationError, match="block_threshold must be in"):
        AlignerPostprocessor(squad=squad, block_threshold=1.5)


def test_bad_configuration_fails_at_construction(squad):
    with pytest.raises(ValueError, match="not in this squad"):
        AlignerPostprocessor(squad=squad, criteria=["helpful"])
    with pytest.raises(ValidationError, match="threshold must be in"):
        AlignerPostprocessor(squad=squad, threshold=1.5)
    with pytest.raises(ValueError, match="not in the squad"):
        AlignerPostprocessor(squad=squad, threshold={"helpful": 0.4})
    with pytest.raises(ValidationError, match="mode"):
        AlignerPostprocessor(squad=squad, mode="delete")
    with pytest.raises((TypeError, ValidationError), match="aligners.Squad"):
        AlignerPostprocessor(squad="ethical")


def test_default_squad_is_built_lazily_without_loading_models():
    from aligners import MODEL_CACHE

    before = dict(MODEL_CACHE.load_counts) if hasattr(MODEL_CACHE, "load_counts") else None
    post = AlignerPostprocessor(criteria=["ethical"], threshold=0.4)
    squad = post.get_squad()
    assert squad.criteria == ["ethical"] and squad.thresholds == {"ethical": 0.4}
    if before is not None:
        assert dict(MODEL_CACHE.load_counts) == before


def test_squad_failure_keeps_nodes_or_raises(index, tiny_lm_dir, collector):
    broken = failing_squad(tiny_lm_dir)
    keep = AlignerPostprocessor(squad=broken, mode="drop")
    engine = index.as_query_engine(llm=MockLLM(), node_postprocessors=[keep], similarity_top_k=ALL)
    response = engine.query("anything")
    assert sorted(node_texts(response)) == sorted(DOCS)  # nothing lost
    # ...and every node says it went unchecked
    assert all(n.node.metadata["aligners"]["action"] == "failed" for n in response.source_nodes)
    errors = collector.of(AlignmentErrorEvent)
    assert errors and "inspector service unreachable" in errors[0].error

    strict = AlignerPostprocessor(squad=broken, mode="drop", on_error="raise")
    engine = index.as_query_engine(
        llm=MockLLM(), node_postprocessors=[strict], similarity_top_k=ALL
    )
    with pytest.raises(ConnectionError, match="unreachable"):
        engine.query("anything")


def test_empty_nodes_pass_through_and_no_query_means_no_question(squad):
    inspector = RecordingInspector(harm_score, "ethical")
    solo = Squad([SquadMember(get_criterion("ethical"), None, inspector)])
    post = AlignerPostprocessor(squad=solo, mode="drop")
    nodes = [NodeWithScore(node=TextNode(text="")), NodeWithScore(node=TextNode(text="fine text"))]
    out = post.postprocess_nodes(nodes)
    assert [n.node.get_content() for n in out] == ["", "fine text"]
    assert out[0].node.metadata["aligners"]["action"] == "skipped"  # recorded, never inspected
    assert inspector.seen == [("", "fine text")]
    out = post.postprocess_nodes(nodes, query_bundle=QueryBundle("a question"))
    assert inspector.seen[-1] == ("a question", "fine text")
    assert post.postprocess_nodes([]) == []


def test_only_inspector_squad_cannot_rewrite_but_annotates(index):
    inspector_only = Squad(
        [SquadMember(get_criterion("ethical"), None, FunctionInspector(harm_score, "ethical"))]
    )
    post = AlignerPostprocessor(squad=inspector_only, mode="rewrite")
    engine = index.as_query_engine(llm=MockLLM(), node_postprocessors=[post], similarity_top_k=ALL)
    response = engine.query("anything")
    assert sorted(node_texts(response)) == sorted(DOCS)
    failing = [n for n in response.source_nodes if not n.node.metadata["aligners"]["passed"]]
    assert len(failing) == 1 and failing[0].node.metadata["aligners"]["action"] == "annotated"


def test_serialises_its_settings_but_not_the_squad(squad):
    post = AlignerPostprocessor(squad=squad, criteria=["ethical"], threshold=0.7, mode="drop")
    data = post.to_dict()
    assert data["class_name"] == "AlignerPostprocessor"
    assert "squad" not in data
    restored = AlignerPostprocessor.from_dict(data)
    assert (restored.criteria, restored.threshold, restored.mode) == (["ethical"], 0.7, "drop")
    # without a squad it falls back to the lazy default one, configured the same way
    assert restored.get_squad().thresholds == {"ethical": 0.7}


def test_settings_changed_after_construction_take_effect(squad):
    post = AlignerPostprocessor(squad=squad, mode="drop")
    assert post.get_squad().thresholds == {"ethical": 0.5, "factuality": 0.5}
    post.threshold = 0.8
    post.criteria = ["factuality"]
    assert post.get_squad().thresholds == {"factuality": 0.8}
    kept = post.postprocess_nodes([NodeWithScore(node=TextNode(text="fine text"))])
    assert kept == []  # factuality 0.7 < 0.8 now
