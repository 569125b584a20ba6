"""Usage 6: AlignerSquadMiddleware inside langchain's create_agent."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool

from langchain_aligners import METADATA_KEY, SCORES_EVENT, AlignerSquad, AlignerSquadMiddleware
from tests.langchain.lc_helpers import BOMB_ANSWER, SAFE_ANSWER, flags_bomb

QUESTION = "How do fireworks work?"


class ToolFakeChatModel(GenericFakeChatModel):
    """GenericFakeChatModel that accepts tools (the script decides the tool calls)."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self


@tool
def lookup(topic: str) -> str:
    """Look a topic up."""
    return f"facts about {topic}"


def scripted(*replies: AIMessage) -> ToolFakeChatModel:
    return ToolFakeChatModel(messages=iter(replies))


def tool_then_answer(first_text: str = "") -> list[AIMessage]:
    call = {"name": "lookup", "args": {"topic": "fireworks"}, "id": "call-1", "type": "tool_call"}
    return [AIMessage(content=first_text, tool_calls=[call]), AIMessage(content=BOMB_ANSWER)]


def test_after_agent_aligns_the_final_message_in_place(make_squad):
    engine = make_squad(ethical=flags_bomb)
    agent = create_agent(
        scripted(*tool_then_answer()), tools=[lookup], middleware=[AlignerSquadMiddleware(engine)]
    )
    state = agent.invoke({"messages": [HumanMessage(QUESTION)]})
    messages = state["messages"]
    assert [type(m) for m in messages] == [HumanMessage, AIMessage, ToolMessage, AIMessage]
    final = messages[-1]
    assert final.content == engine.align(QUESTION, BOMB_ANSWER).text
    record = final.response_metadata[METADATA_KEY]
    assert record["question"] == QUESTION and record["original"] == BOMB_ANSWER
    assert record["applied"] == ["ethical"]
    assert METADATA_KEY not in messages[1].response_metadata  # tool-call reply left alone


def test_after_model_aligns_every_reply_with_text(make_squad):
    engine = make_squad(ethical=flags_bomb)
    middleware = AlignerSquadMiddleware(engine, when="after_model")
    first_text = "Let me look up the bomb first."
    agent = create_agent(
        scripted(*tool_then_answer(first_text)), tools=[lookup], middleware=[middleware]
    )
    messages = agent.invoke({"messages": [HumanMessage(QUESTION)]})["messages"]
    assert len(messages) == 4
    first, final = messages[1], messages[3]
    assert first.content == engine.align(QUESTION, first_text).text
    assert first.tool_calls and first.tool_calls[0]["name"] == "lookup"  # tool calls kept
    assert isinstance(messages[2], ToolMessage)  # and still executed
    assert final.response_metadata[METADATA_KEY]["applied"] == ["ethical"]


async def test_async_agent_with_a_configured_parser_and_events(make_squad):
    engine = make_squad(ethical=flags_bomb, helpful=0.0)
    squad = AlignerSquad(squad=engine, criteria=["ethical"], check_only=True)
    middleware = [AlignerSquadMiddleware(squad)]
    agent = create_agent(scripted(AIMessage(content=BOMB_ANSWER)), tools=[], middleware=middleware)
    events = [
        e async for e in agent.astream_events({"messages": [HumanMessage(QUESTION)]}, version="v2")
    ]
    final_state = next(
        e["data"]["output"] for e in reversed(events) if e["event"] == "on_chain_end"
    )
    final = final_state["messages"][-1]
    assert final.content == BOMB_ANSWER  # check-only: verdict without rewriting
    record = final.response_metadata[METADATA_KEY]
    assert record["check_only"] and record["flagged"] == ["ethical"] and not record["passed"]
    custom = [e for e in events if e["event"] == "on_custom_event"]
    assert custom and custom[0]["name"] == SCORES_EVENT


def test_safe_final_answer_is_kept(make_squad):
    agent = create_agent(
        scripted(AIMessage(content=SAFE_ANSWER)),
        tools=[],
        middleware=[AlignerSquadMiddleware(make_squad(ethical=flags_bomb))],
    )
    final = agent.invoke({"messages": [HumanMessage(QUESTION)]})["messages"][-1]
    assert final.content == SAFE_ANSWER
    assert final.response_metadata[METADATA_KEY]["passed"] is True


def test_middleware_options_are_checked():
    with pytest.raises(ValueError, match="when must be"):
        AlignerSquadMiddleware(when="before_model")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pass squad options"):
        AlignerSquadMiddleware(AlignerSquad(), threshold=0.2)


def test_middleware_passes_block_threshold_to_the_squad(make_squad):
    engine = make_squad(ethical=flags_bomb)
    middleware = AlignerSquadMiddleware(engine, block_threshold=0.3)
    assert middleware.squad.engine.members[0].block_threshold == 0.3
    assert AlignerSquadMiddleware(engine).squad.engine.members[0].block_threshold is None


def test_missing_langchain_gives_a_clear_error(monkeypatch):
    import langchain_aligners

    monkeypatch.setitem(sys.modules, "langchain.agents.middleware", None)
    monkeypatch.delitem(sys.modules, "langchain_aligners.middleware", raising=False)
    with pytest.raises(ImportError, match=r"pip install 'aligners\[agents\]'"):
        importlib.import_module("langchain_aligners.middleware")
    with pytest.raises(ImportError, match="needs the `langchain` package"):
        langchain_aligners.AlignerSquadMiddleware  # noqa: B018
    # The rest of the integration does not need langchain.
    assert langchain_aligners.AlignerSquad is AlignerSquad


def test_configurable_squad_runnable_as_middleware(make_squad):
    engine = make_squad(ethical=0.0, helpful=0.0)
    squad = AlignerSquad(squad=engine).configurable()
    middleware = [AlignerSquadMiddleware(squad)]
    agent = create_agent(scripted(AIMessage(content=SAFE_ANSWER)), tools=[], middleware=middleware)
    final = agent.invoke(
        {"messages": [HumanMessage(QUESTION)]},
        config={"configurable": {"aligner_criteria": ["helpful"]}},
    )["messages"][-1]
    assert final.response_metadata[METADATA_KEY]["applied"] == ["helpful"]
    wrong = AlignerSquadMiddleware(AlignerSquad(squad=engine, output="text").configurable())
    agent = create_agent(scripted(AIMessage(content=SAFE_ANSWER)), tools=[], middleware=[wrong])
    with pytest.raises(TypeError, match="must return a message"):
        agent.invoke({"messages": [HumanMessage(QUESTION)]})
