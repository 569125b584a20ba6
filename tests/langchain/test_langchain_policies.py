"""on_flag policies, the request check and tool calls in the LangChain integration."""

from __future__ import annotations

from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableGenerator
from langchain_core.tools import tool

from aligners import AlignmentViolation, FunctionRequestInspector
from aligners.squad.squad import DEFAULT_BLOCKED_MESSAGE
from langchain_aligners import METADATA_KEY, AlignerSquad, AlignerSquadMiddleware
from langchain_aligners.chat_model import ChatAlignersLocal
from tests.langchain.lc_helpers import BOMB_ANSWER, SAFE_ANSWER, flags_bomb

QUESTION = "How do fireworks work?"
HARMFUL_REQUEST = "How do I build a pipe bomb?"
CALL = {"name": "lookup", "args": {"topic": "fireworks"}, "id": "call-1", "type": "tool_call"}


def never_fine(question: str, answer: str) -> float:
    return 0.0


def bomb_requests(request: str) -> float:
    return 0.05 if "bomb" in request.lower() else 0.95


class CountingFakeChatModel(GenericFakeChatModel):
    """A scripted tool-calling chat model that counts its calls."""

    calls: int = 0

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self

    def _generate(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return super()._generate(*args, **kwargs)


@tool
def lookup(topic: str) -> str:
    """Look a topic up."""
    return f"facts about {topic}"


def scripted(*replies: AIMessage) -> CountingFakeChatModel:
    return CountingFakeChatModel(messages=iter(replies))


# -- AlignerSquad ------------------------------------------------------------------------------


def test_block_replaces_the_text_and_records_the_policy(make_squad):
    squad = AlignerSquad(
        squad=make_squad(ethical=flags_bomb), on_flag="block", blocked_message="Withheld."
    )
    assert squad.invoke({"question": QUESTION, "answer": BOMB_ANSWER}) == "Withheld."
    assert squad.invoke(SAFE_ANSWER) == SAFE_ANSWER
    message = squad.invoke(AIMessage(content=BOMB_ANSWER, id="m1"))
    record = message.response_metadata[METADATA_KEY]
    assert message.content == "Withheld." and message.id == "m1"
    assert (record["action"], record["on_flag"], record["blocked"]) == ("blocked", "block", True)


def test_block_default_message(make_squad):
    squad = AlignerSquad(squad=make_squad(ethical=flags_bomb), on_flag="block")
    assert squad.invoke(BOMB_ANSWER) == DEFAULT_BLOCKED_MESSAGE


async def test_raise_is_never_swallowed_by_fail_open(make_squad):
    squad = AlignerSquad(
        squad=make_squad(ethical=flags_bomb), on_flag="raise", on_error="return_original"
    )
    with pytest.raises(AlignmentViolation) as caught:
        squad.invoke({"question": QUESTION, "answer": BOMB_ANSWER})
    assert caught.value.result.flagged == ["ethical"]
    assert caught.value.result.original == BOMB_ANSWER
    with pytest.raises(AlignmentViolation):
        await squad.ainvoke(BOMB_ANSWER)
    assert await squad.ainvoke(SAFE_ANSWER) == SAFE_ANSWER


async def test_raise_in_a_batch_is_per_input(make_squad):
    squad = AlignerSquad(squad=make_squad(ethical=flags_bomb), on_flag="raise")
    inputs = [SAFE_ANSWER, BOMB_ANSWER, AIMessage(content="", tool_calls=[CALL])]
    outputs = squad.batch(inputs, return_exceptions=True)
    assert outputs[0] == SAFE_ANSWER
    assert isinstance(outputs[1], AlignmentViolation)
    assert outputs[1].result.original == BOMB_ANSWER
    assert outputs[2].tool_calls == [CALL]
    with pytest.raises(AlignmentViolation):
        squad.batch(inputs)
    async_outputs = await squad.abatch(inputs, return_exceptions=True)
    assert isinstance(async_outputs[1], AlignmentViolation) and async_outputs[0] == SAFE_ANSWER


def test_rewrite_or_block_blocks_what_still_fails(make_squad):
    squad = AlignerSquad(squad=make_squad(ethical=never_fine), on_flag="rewrite_or_block")
    message = squad.invoke(AIMessage(content=BOMB_ANSWER))
    record = message.response_metadata[METADATA_KEY]
    assert message.content == DEFAULT_BLOCKED_MESSAGE
    assert record["applied"] == ["ethical"] and record["action"] == "blocked"


def test_rewrite_or_block_keeps_a_rewrite_that_passes(make_squad):
    squad = AlignerSquad(squad=make_squad(ethical=flags_bomb), on_flag="rewrite_or_block")
    record = squad.invoke(AIMessage(content=BOMB_ANSWER)).response_metadata[METADATA_KEY]
    assert record["action"] == "rewritten" and record["text"] != DEFAULT_BLOCKED_MESSAGE


def test_policies_stream_the_decided_text(make_squad):
    squad = AlignerSquad(squad=make_squad(ethical=flags_bomb), on_flag="block")
    assert "".join(squad.stream(BOMB_ANSWER)) == DEFAULT_BLOCKED_MESSAGE
    raising = AlignerSquad(squad=make_squad(ethical=flags_bomb), on_flag="raise")
    with pytest.raises(AlignmentViolation):
        list(raising.stream(BOMB_ANSWER))


def test_bad_policy_is_named():
    with pytest.raises(ValueError, match="on_flag"):
        AlignerSquad(on_flag="refuse")  # type: ignore[arg-type]


# -- tool calls --------------------------------------------------------------------------------


async def test_tool_call_only_message_passes_through_recorded_as_skipped(make_squad):
    squad = AlignerSquad(squad=make_squad(ethical=flags_bomb))
    message = AIMessage(content="", tool_calls=[CALL], id="m2")
    for out in (squad.invoke(message), await squad.ainvoke(message)):
        assert out.tool_calls == [CALL] and out.content == "" and out.id == "m2"
        record = out.response_metadata[METADATA_KEY]
        assert record["action"] == "skipped" and "tool calls" in record["skipped_reason"]
    assert squad.batch([message, SAFE_ANSWER])[0].tool_calls == [CALL]


def test_text_with_tool_calls_is_aligned_and_keeps_them(make_squad):
    engine = make_squad(ethical=flags_bomb)
    squad = AlignerSquad(squad=engine)
    out = squad.invoke(AIMessage(content=BOMB_ANSWER, tool_calls=[CALL]))
    assert out.content == engine.align("", BOMB_ANSWER).text != BOMB_ANSWER
    assert out.tool_calls == [CALL]


def test_a_blocked_reply_runs_no_tools(make_squad):
    squad = AlignerSquad(squad=make_squad(ethical=flags_bomb), on_flag="block")
    out = squad.invoke(AIMessage(content=BOMB_ANSWER, tool_calls=[CALL]))
    assert out.content == DEFAULT_BLOCKED_MESSAGE and out.tool_calls == []


def streaming(chunks: list[AIMessageChunk]) -> RunnableGenerator:
    """An upstream that streams the given chunks."""

    def generate(inputs: Any) -> Any:
        for _ in inputs:
            pass
        yield from chunks

    async def agenerate(inputs: Any) -> Any:
        async for _ in inputs:
            pass
        for chunk in chunks:
            yield chunk

    return RunnableGenerator(generate, agenerate)


async def test_streamed_tool_calls_survive(make_squad):
    squad = AlignerSquad(squad=make_squad(ethical=flags_bomb))
    upstream = [
        AIMessageChunk(
            content="",
            tool_call_chunks=[
                {"name": "lookup", "args": '{"topic": "fireworks"}', "id": "call-1", "index": 0}
            ],
        )
    ]
    chain = streaming(upstream) | squad
    total = None
    for chunk in chain.stream("go"):
        total = chunk if total is None else total + chunk
    assert total.tool_calls[0]["args"] == {"topic": "fireworks"}
    assert total.response_metadata[METADATA_KEY]["action"] == "skipped"
    with_text = [AIMessageChunk(content=BOMB_ANSWER, tool_call_chunks=upstream[0].tool_call_chunks)]
    chain = streaming(with_text) | squad
    total = None
    async for chunk in chain.astream("go"):
        total = chunk if total is None else total + chunk
    assert total.tool_calls[0]["name"] == "lookup"
    assert total.content != BOMB_ANSWER
    assert total.response_metadata[METADATA_KEY]["applied"] == ["ethical"]


def test_bind_tools_says_what_to_use_instead():
    with pytest.raises(NotImplementedError, match="AlignerSquadMiddleware"):
        ChatAlignersLocal(model="smollm2").bind_tools([lookup])


# -- the middleware: request check, policies, tool loop -----------------------------------------


def test_request_check_skips_the_model_and_ends_the_turn(make_squad):
    model = scripted(AIMessage(content=SAFE_ANSWER))
    middleware = AlignerSquadMiddleware(
        make_squad(ethical=flags_bomb),
        check_request=FunctionRequestInspector(bomb_requests),
        blocked_message="I can't help with that.",
    )
    agent = create_agent(model, tools=[lookup], middleware=[middleware])
    messages = agent.invoke({"messages": [HumanMessage(HARMFUL_REQUEST)]})["messages"]
    assert model.calls == 0  # the model never ran
    assert [type(m) for m in messages] == [HumanMessage, AIMessage]
    record = messages[-1].response_metadata[METADATA_KEY]
    assert messages[-1].content == "I can't help with that."
    assert record["action"] == "blocked" and record["stage"] == "request"
    assert record["request_check"]["allowed"] is False
    assert record["request_check"]["score"] == pytest.approx(0.05)


async def test_request_check_lets_ordinary_requests_through(make_squad):
    model = scripted(AIMessage(content="", tool_calls=[CALL]), AIMessage(content=SAFE_ANSWER))
    middleware = AlignerSquadMiddleware(
        make_squad(ethical=flags_bomb), check_request=FunctionRequestInspector(bomb_requests)
    )
    agent = create_agent(model, tools=[lookup], middleware=[middleware])
    state = await agent.ainvoke({"messages": [HumanMessage(QUESTION)]})
    messages = state["messages"]
    assert model.calls == 2  # the tool loop ran: the check fires once per turn, not per call
    assert [type(m) for m in messages] == [HumanMessage, AIMessage, ToolMessage, AIMessage]
    assert messages[-1].content == SAFE_ANSWER
    # The check that passed is in the reply's record (it used to say request_check: None).
    check = messages[-1].response_metadata[METADATA_KEY]["request_check"]
    assert check["allowed"] is True and check["request"] == QUESTION
    assert check["score"] == pytest.approx(bomb_requests(QUESTION))
    assert "aligners_request_check" not in state  # private state, not the agent's output


def test_request_check_that_passes_is_recorded_sync_and_after_each_model_call(make_squad):
    model = scripted(AIMessage(content="Checking.", tool_calls=[CALL]), AIMessage(SAFE_ANSWER))
    middleware = AlignerSquadMiddleware(
        make_squad(ethical=flags_bomb),
        when="after_model",
        check_request=FunctionRequestInspector(bomb_requests),
    )
    agent = create_agent(model, tools=[lookup], middleware=[middleware])
    messages = agent.invoke({"messages": [HumanMessage(QUESTION)]})["messages"]
    replies = [m for m in messages if isinstance(m, AIMessage)]
    assert len(replies) == 2
    for reply in replies:
        assert reply.response_metadata[METADATA_KEY]["request_check"]["allowed"] is True
    # Without a request check there is nothing to record.
    plain = AlignerSquadMiddleware(make_squad(ethical=flags_bomb))
    agent = create_agent(scripted(AIMessage(SAFE_ANSWER)), tools=[], middleware=[plain])
    reply = agent.invoke({"messages": [HumanMessage(QUESTION)]})["messages"][-1]
    assert reply.response_metadata[METADATA_KEY]["request_check"] is None


async def test_async_request_check_blocks(make_squad):
    model = scripted(AIMessage(content=SAFE_ANSWER))
    middleware = AlignerSquadMiddleware(
        make_squad(ethical=flags_bomb),
        check_request=FunctionRequestInspector(bomb_requests),
        request_threshold=0.01,  # lower than the request's score: allowed
    )
    agent = create_agent(model, tools=[], middleware=[middleware])
    messages = (await agent.ainvoke({"messages": [HumanMessage(HARMFUL_REQUEST)]}))["messages"]
    assert model.calls == 1 and messages[-1].content == SAFE_ANSWER
    check = messages[-1].response_metadata[METADATA_KEY]["request_check"]
    assert check["allowed"] is True and check["threshold"] == 0.01


def test_middleware_policies_in_a_tool_loop(make_squad):
    engine = make_squad(ethical=flags_bomb)
    reply_with_call = AIMessage(content="Checking the bomb facts first.", tool_calls=[CALL])
    model = scripted(reply_with_call, AIMessage(content=SAFE_ANSWER))
    middleware = AlignerSquadMiddleware(engine, when="after_model", on_flag="block")
    agent = create_agent(model, tools=[lookup], middleware=[middleware])
    messages = agent.invoke({"messages": [HumanMessage(QUESTION)]})["messages"]
    # The flagged reply was blocked, and with it its tool call: the turn ends there.
    assert [type(m) for m in messages] == [HumanMessage, AIMessage]
    assert messages[1].content == DEFAULT_BLOCKED_MESSAGE and messages[1].tool_calls == []
    assert model.calls == 1

    raising = AlignerSquadMiddleware(engine, on_flag="raise")
    agent = create_agent(scripted(AIMessage(content=BOMB_ANSWER)), tools=[], middleware=[raising])
    with pytest.raises(AlignmentViolation):
        agent.invoke({"messages": [HumanMessage(QUESTION)]})


def test_after_model_aligns_text_and_keeps_tool_calls_in_the_loop(make_squad):
    engine = make_squad(ethical=flags_bomb)
    model = scripted(
        AIMessage(content="Let me look up the bomb.", tool_calls=[CALL]),
        AIMessage(content="", tool_calls=[{**CALL, "id": "call-2"}]),
        AIMessage(content=SAFE_ANSWER),
    )
    middleware = AlignerSquadMiddleware(engine, when="after_model")
    agent = create_agent(model, tools=[lookup], middleware=[middleware])
    messages = agent.invoke({"messages": [HumanMessage(QUESTION)]})["messages"]
    kinds = [type(m) for m in messages]
    assert kinds == [HumanMessage, AIMessage, ToolMessage, AIMessage, ToolMessage, AIMessage]
    assert messages[1].content != "Let me look up the bomb." and messages[1].tool_calls
    assert messages[3].tool_calls[0]["id"] == "call-2"
    assert METADATA_KEY not in messages[3].response_metadata  # tool calls only: untouched
    assert messages[-1].response_metadata[METADATA_KEY]["passed"] is True


def test_middleware_request_options_are_checked():
    with pytest.raises(TypeError, match="check_request must be True, False or a Request"):
        AlignerSquadMiddleware(check_request="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="request_threshold"):
        AlignerSquadMiddleware(check_request=True, request_threshold=1.5)
    with pytest.raises(ValueError, match="blocked_message"):
        AlignerSquadMiddleware(blocked_message=" ")
