"""LlamaIndex composes aligners.SquadPolicy: ``policy=`` gives what the flat keywords give on the
engines and the postprocessor, and ``on_error`` is carried out by the engine (one bad node fails
alone; the rest of the batch is still checked)."""

from __future__ import annotations

from typing import Any

import pytest
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from aligners import SquadPolicy
from llamaindex_aligners import AlignedChatEngine, AlignedQueryEngine, AlignerPostprocessor
from tests.llamaindex.test_li_policies import (
    FINE,
    FIXED,
    HARMFUL,
    HARMFUL_QUERY,
    AnswerEngine,
    chat_pair,
    policy_squad,
    request_inspector,
)

OPTIONS = [
    {"on_flag": "block", "blocked_message": "Withheld."},
    {"on_flag": "rewrite"},
    {"check_only": True, "threshold": {"ethical": 0.5}},
    {"threshold": 0.05},  # nothing scores under it: nothing is flagged
]


def _answer(response: Any) -> tuple[str, str, list[str]]:
    record = response.metadata["aligners"]
    return str(response), record["action"], record["flagged"]


@pytest.mark.parametrize("options", OPTIONS)
def test_query_engine_policy_gives_what_the_flat_keywords_give(options) -> None:
    squad, _ = policy_squad()
    flat = AlignedQueryEngine(AnswerEngine(answer=HARMFUL, calls=[]), squad=squad, **options)
    policy = AlignedQueryEngine(
        AnswerEngine(answer=HARMFUL, calls=[]), squad=squad, policy=SquadPolicy(**options)
    )
    assert _answer(policy.query("q")) == _answer(flat.query("q"))
    assert policy.squad.policy == flat.squad.policy
    # the postprocessor's wrap() hands its policy on
    post = AlignerPostprocessor(squad=squad, policy=SquadPolicy(**options))
    wrapped = post.wrap(AnswerEngine(answer=HARMFUL, calls=[]))
    assert _answer(wrapped.query("q")) == _answer(flat.query("q"))


@pytest.mark.parametrize("options", OPTIONS[:2])
def test_chat_engine_policy_gives_what_the_flat_keywords_give(options) -> None:
    squad, _ = policy_squad()
    flat = AlignedChatEngine(chat_pair(HARMFUL)[0], squad=squad, **options)
    policy = AlignedChatEngine(chat_pair(HARMFUL)[0], squad=squad, policy=SquadPolicy(**options))
    assert _answer(policy.chat("hi")) == _answer(flat.chat("hi"))


def test_the_request_check_comes_from_the_policy() -> None:
    squad, _ = policy_squad()
    inner = AnswerEngine(answer=FINE, calls=[])
    policy = SquadPolicy(check_request=request_inspector(), blocked_message="Not that.")
    engine = AlignedQueryEngine(inner, squad=squad, policy=policy)
    response = engine.query(HARMFUL_QUERY)
    assert str(response) == "Not that." and inner.calls == []  # the inner engine never ran
    assert engine.request_inspector is not None and engine.request_threshold is None
    # a flat keyword wins over the policy's field
    lenient = AlignedQueryEngine(inner, squad=squad, policy=policy, request_threshold=0.01)
    assert lenient.request_threshold == 0.01 and str(lenient.query(HARMFUL_QUERY)) == FINE


def test_a_bad_policy_value_names_its_field() -> None:
    squad, _ = policy_squad()
    with pytest.raises(ValueError, match="on_flag"):
        AlignedQueryEngine(AnswerEngine(calls=[]), squad=squad, on_flag="refuse")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"threshold\['ethical'\] must be in \[0, 1\]"):
        AlignerPostprocessor(squad=squad, threshold={"ethical": 2.0})


# -- on_error is the engine's: one bad node does not sink the batch ----------------------------


def _nodes(*texts: str) -> list[NodeWithScore]:
    return [
        NodeWithScore(node=TextNode(text=t, id_=f"n{i}"), score=1.0) for i, t in enumerate(texts)
    ]


ZERO_WIDTH = "\u200b\u200b"  # no text to inspect: the engine refuses it as empty


def test_one_bad_node_fails_alone_under_return_original() -> None:
    squad, _ = policy_squad()
    post = AlignerPostprocessor(squad=squad, mode="rewrite")  # on_error: return_original
    assert post.get_squad().config.on_error == "return_original"  # passed to the engine
    out = post.postprocess_nodes(_nodes(HARMFUL, ZERO_WIDTH, FINE), QueryBundle("q"))
    records = [n.node.metadata["aligners"] for n in out]
    assert [r["action"] for r in records] == ["rewritten", "failed", "kept"]
    assert out[0].node.get_content() == FIXED and out[2].node.get_content() == FINE
    assert "answers[1]: answer is empty" in records[1]["failures"][0]


def test_fail_closed_drops_only_the_bad_node() -> None:
    squad, _ = policy_squad()
    post = AlignerPostprocessor(squad=squad, mode="rewrite", fail_closed=True)
    out = post.postprocess_nodes(_nodes(HARMFUL, ZERO_WIDTH, FINE), QueryBundle("q"))
    assert [n.node.get_content() for n in out] == [FIXED, FINE]


async def test_on_error_raise_reaches_the_engine_sync_and_async() -> None:
    squad, _ = policy_squad()
    for post in (
        AlignerPostprocessor(squad=squad, mode="rewrite", on_error="raise"),
        AlignerPostprocessor(squad=squad, mode="rewrite", policy=SquadPolicy(on_error="raise")),
    ):
        assert post.get_squad().config.on_error == "raise"
        with pytest.raises(ValueError, match=r"answers\[1\]: answer is empty"):
            post.postprocess_nodes(_nodes(HARMFUL, ZERO_WIDTH), QueryBundle("q"))
        with pytest.raises(ValueError, match=r"answers\[1\]: answer is empty"):
            await post.apostprocess_nodes(_nodes(HARMFUL, ZERO_WIDTH), QueryBundle("q"))


# -- the flat attributes read their defaults as before the policy object; only those passed
# are merged onto the policy -----------------------------------------------------------------


def test_flat_attributes_read_their_defaults_as_before() -> None:
    from llamaindex_aligners import AlignmentSettings

    settings = AlignmentSettings()
    assert (settings.on_error, settings.check_only) == ("return_original", False)
    assert (settings.threshold, settings.block_threshold, settings.on_flag) == (None, None, None)
    assert settings.blocked_message is None
    post = AlignerPostprocessor()
    assert (post.on_error, post.on_flag, post.threshold, post.block_threshold) == (
        "return_original",
        None,
        None,
        None,
    )
    assert post.blocked_message is None
    # what is applied: LlamaIndex's on_error, everything else the policy's own default
    expected = SquadPolicy(on_error="return_original")
    assert settings.resolved_policy == post.settings().resolved_policy == expected


def test_a_policy_alone_is_not_overridden_by_the_flat_defaults() -> None:
    from llamaindex_aligners import AlignmentSettings

    policy = SquadPolicy(on_error="raise", check_only=True)
    settings = AlignmentSettings(policy=policy)
    assert (settings.on_error, settings.check_only) == ("return_original", False)  # read back
    assert settings.resolved_policy.on_error == "raise" and settings.resolved_policy.check_only
    squad, _ = policy_squad()
    post = AlignerPostprocessor(squad=squad, mode="rewrite", policy=policy)
    assert post.get_squad().config.on_error == "raise" and post.get_squad().config.check_only
    with pytest.raises(ValueError, match=r"answers\[1\]: answer is empty"):
        post.postprocess_nodes(_nodes(HARMFUL, ZERO_WIDTH), QueryBundle("q"))
    # the answer-level wrapper gets the policy, not the postprocessor's defaults
    wrapped = post.wrap(AnswerEngine(answer=HARMFUL))
    assert wrapped.settings.resolved_policy.on_error == "raise"
    response = wrapped.query(HARMFUL_QUERY)  # check_only: scored, not rewritten
    assert response.metadata["aligners"]["action"] == "flagged"
    assert str(response) == HARMFUL
    # nor are settings handed to an engine with more keywords
    engine = AlignedQueryEngine(
        AnswerEngine(answer=HARMFUL), squad=squad, settings=settings, on_flag="block"
    )
    assert engine.settings.resolved_policy == policy.merge(on_flag="block")


def test_a_flat_keyword_passed_wins_over_the_policy_even_at_its_default() -> None:
    from llamaindex_aligners import AlignmentSettings

    policy = SquadPolicy(on_error="raise", check_only=True)
    settings = AlignmentSettings(policy=policy, on_error="keep", check_only=False)
    assert settings.resolved_policy.on_error == "return_original"
    assert settings.resolved_policy.check_only is False
    squad, _ = policy_squad()
    post = AlignerPostprocessor(
        squad=squad, mode="rewrite", policy=policy, on_error="return_original"
    )
    out = post.postprocess_nodes(_nodes(HARMFUL, ZERO_WIDTH), QueryBundle("q"))
    # the policy's check_only stays (annotated, not rewritten); on_error is the keyword's
    assert [n.node.metadata["aligners"]["action"] for n in out] == ["annotated", "failed"]
    assert out[0].node.get_content() == HARMFUL
    # None is "not given": the policy's value stays
    assert AlignmentSettings(policy=policy, on_error=None).resolved_policy.on_error == "raise"


def test_a_threshold_as_a_numeric_string_warns() -> None:
    """AlignmentSettings(threshold="0.5") worked before (pydantic's lax float): still,
    deprecated; the engine itself never took strings."""
    from llamaindex_aligners import AlignmentSettings

    with pytest.warns(DeprecationWarning, match=r"threshold\['ethical'\]='0.7'"):
        settings = AlignmentSettings(threshold={"ethical": "0.7"})
    assert settings.resolved_policy.threshold == {"ethical": 0.7}
    squad, _ = policy_squad()
    with pytest.warns(DeprecationWarning, match="a threshold as a string is deprecated"):
        post = AlignerPostprocessor(squad=squad, threshold="0.05")
    assert post.get_squad().thresholds == {"ethical": 0.05}
    with pytest.raises(ValueError, match="threshold"):
        SquadPolicy(threshold="0.5")
