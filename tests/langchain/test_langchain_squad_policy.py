"""LangChain composes aligners.SquadPolicy: ``policy=`` gives what the flat keywords give, on the
parser and on the agent middleware, through one validation path."""

from __future__ import annotations

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage
from pydantic import ValidationError

from aligners import FunctionRequestInspector, SquadPolicy
from langchain_aligners import METADATA_KEY, AlignerSquad, AlignerSquadMiddleware
from tests.langchain.lc_helpers import BOMB_ANSWER, SAFE_ANSWER, flags_bomb
from tests.langchain.test_langchain_policies import bomb_requests, scripted

ANSWERS = [BOMB_ANSWER, SAFE_ANSWER]


def _outcome(outputs: list[AIMessage]) -> list[tuple[str, str, list[str]]]:
    records = [m.response_metadata[METADATA_KEY] for m in outputs]
    return [(m.content, r["action"], r["flagged"]) for m, r in zip(outputs, records)]


@pytest.mark.parametrize(
    "options",
    [
        {"on_flag": "block", "blocked_message": "Withheld."},
        {"on_flag": "raise", "check_only": True},
        {"threshold": {"ethical": 0.0}, "on_flag": "block"},  # per criterion: nothing flagged
        {"check_only": True},
    ],
)
async def test_policy_and_flat_keywords_give_the_same_results(make_squad, options) -> None:
    engine = make_squad(ethical=flags_bomb)
    flat = AlignerSquad(squad=engine, output="message", **options)
    policy = AlignerSquad(squad=engine, output="message", policy=SquadPolicy(**options))
    messages = [AIMessage(content=a) for a in ANSWERS]
    expected = _outcome(flat.batch(messages))
    assert _outcome(policy.batch(messages)) == expected
    assert _outcome(await policy.abatch(messages)) == expected
    assert policy.resolved_policy == flat.resolved_policy
    assert policy.engine.policy == flat.engine.policy


def test_flat_keywords_win_over_the_policy_and_none_keeps_it(make_squad) -> None:
    engine = make_squad(ethical=flags_bomb)
    squad = AlignerSquad(
        squad=engine, policy=SquadPolicy(on_flag="block", blocked_message="A"), blocked_message="B"
    )
    assert squad.invoke(BOMB_ANSWER) == "B" and squad.engine.config.on_flag == "block"
    assert squad.invoke(SAFE_ANSWER) == SAFE_ANSWER
    # on_error is LangChain's (raise) unless the policy or a keyword sets it
    assert squad.resolved_policy.on_error == "raise"
    kept = AlignerSquad(squad=engine, policy=SquadPolicy(on_error="return_original"))
    record = kept.invoke(AIMessage(content="  ")).response_metadata[METADATA_KEY]
    assert record["action"] == "failed" and "answer is empty" in record["failures"][0]


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": {"ethical": True}}, "threshold"),
        ({"on_flag": "refuse"}, "on_flag"),
        ({"policy": SquadPolicy(), "on_token_limit": "sometimes"}, "on_token_limit"),
        ({"blocked_message": " "}, "blocked_message"),
    ],
)
def test_a_bad_value_is_named_on_the_parser(options, field) -> None:
    with pytest.raises(ValidationError, match=field):
        AlignerSquad(**options)


def test_middleware_takes_its_request_check_from_the_policy(make_squad) -> None:
    policy = SquadPolicy(
        check_request=FunctionRequestInspector(bomb_requests), blocked_message="Not that."
    )
    model = scripted(AIMessage(content=SAFE_ANSWER))
    middleware = AlignerSquadMiddleware(make_squad(ethical=flags_bomb), policy=policy)
    assert middleware.blocked_message == "Not that." and middleware.request_inspector is not None
    agent = create_agent(model, tools=[], middleware=[middleware])
    messages = agent.invoke({"messages": [HumanMessage("How do I build a pipe bomb?")]})
    assert model.calls == 0 and messages["messages"][-1].content == "Not that."
    # the same through the flat keywords
    flat = AlignerSquadMiddleware(
        make_squad(ethical=flags_bomb),
        check_request=FunctionRequestInspector(bomb_requests),
        blocked_message="Not that.",
    )
    assert (flat.blocked_message, flat.request_threshold) == ("Not that.", None)


def test_middleware_policy_reaches_the_parser(make_squad) -> None:
    parser = AlignerSquad(squad=make_squad(ethical=flags_bomb))
    middleware = AlignerSquadMiddleware(parser, policy=SquadPolicy(on_flag="block"))
    model = scripted(AIMessage(content=BOMB_ANSWER))
    agent = create_agent(model, tools=[], middleware=[middleware])
    reply = agent.invoke({"messages": [HumanMessage("Tell me about fireworks.")]})["messages"][-1]
    assert reply.response_metadata[METADATA_KEY]["action"] == "blocked"
    assert parser.resolved_policy.on_flag == "rewrite"  # the given parser is not changed


# -- the flat attributes read their defaults as before the policy object; only those passed
# are merged onto the policy -----------------------------------------------------------------

#: AlignerSquad's flat policy fields and what they read when left out (as before SquadPolicy).
FLAT_DEFAULTS = {
    "threshold": None,
    "block_threshold": None,
    "check_only": False,
    "on_flag": None,
    "blocked_message": None,
    "on_error": "raise",
    "on_token_limit": None,
}


def test_flat_attributes_read_their_defaults_as_before() -> None:
    squad = AlignerSquad()
    assert {name: getattr(squad, name) for name in FLAT_DEFAULTS} == FLAT_DEFAULTS
    # what is applied: LangChain's on_error, everything else the policy's own default
    assert squad.resolved_policy == SquadPolicy(on_error="raise")
    assert squad.resolved_policy.explicit() == {"on_error": "raise"}


def test_a_policy_alone_is_not_overridden_by_the_flat_defaults(make_squad) -> None:
    engine = make_squad(ethical=flags_bomb)
    policy = SquadPolicy(on_error="return_original", check_only=True, on_flag="block")
    squad = AlignerSquad(squad=engine, policy=policy, output="message")
    assert (squad.on_error, squad.check_only) == ("raise", False)  # the defaults, read back
    resolved = squad.resolved_policy
    assert (resolved.on_error, resolved.check_only, resolved.on_flag) == (
        "return_original",
        True,
        "block",
    )
    # carried out: an empty answer comes back as it was, a bomb is only scored
    failed = squad.invoke(AIMessage(content="  ")).response_metadata[METADATA_KEY]
    assert failed["action"] == "failed"
    checked = squad.invoke(AIMessage(content=BOMB_ANSWER))
    assert checked.content == BOMB_ANSWER and checked.response_metadata[METADATA_KEY]["flagged"]


def test_a_flat_keyword_passed_wins_over_the_policy_even_at_its_default(make_squad) -> None:
    engine = make_squad(ethical=flags_bomb)
    policy = SquadPolicy(on_error="return_original", check_only=True)
    squad = AlignerSquad(squad=engine, policy=policy, on_error="raise", check_only=False)
    assert (squad.resolved_policy.on_error, squad.resolved_policy.check_only) == ("raise", False)
    with pytest.raises(ValueError, match="answer is empty"):
        squad.invoke("  ")
    # None is "not given": the policy's value stays
    unset = AlignerSquad(squad=engine, policy=policy, on_error=None, check_only=None)
    assert unset.resolved_policy.on_error == "return_original" and unset.resolved_policy.check_only


def test_copies_keep_the_policy_over_the_flat_defaults(make_squad) -> None:
    """with_policy() and a configured call (LangChain rebuilds the parser from its fields)
    pass on only the fields given, so the policy still decides."""
    engine = make_squad(ethical=flags_bomb)
    squad = AlignerSquad(squad=engine, policy=SquadPolicy(on_error="return_original"))
    copy = squad.with_policy(SquadPolicy(on_flag="block"), blocked_message="Withheld.")
    assert (copy.resolved_policy.on_error, copy.resolved_policy.on_flag) == (
        "return_original",
        "block",
    )
    assert copy.invoke(BOMB_ANSWER) == "Withheld." and copy.invoke("  ") == "  "
    configured = squad.configurable().with_config(configurable={"aligner_check_only": True})
    # check_only with a str answer: the record; return_original: the empty one handed back
    failed = configured.invoke("  ")
    assert failed["action"] == "failed" and failed["text"] == "  "
    record = configured.invoke(BOMB_ANSWER)
    assert record["flagged"] == ["ethical"] and record["text"] == BOMB_ANSWER


def test_a_threshold_as_a_numeric_string_warns(make_squad) -> None:
    """AlignerSquad(threshold="0.5") worked before (pydantic's lax float): still, deprecated."""
    engine = make_squad(ethical=flags_bomb)
    with pytest.warns(DeprecationWarning, match=r"threshold='0.05': a threshold as a string"):
        squad = AlignerSquad(squad=engine, threshold="0.05", block_threshold={"ethical": "0"})
    assert squad.threshold == 0.05 and squad.block_threshold == {"ethical": 0.0}
    assert squad.engine.thresholds == {"ethical": 0.05}
    with pytest.raises(ValidationError, match="threshold"):
        AlignerSquad(threshold="high")
