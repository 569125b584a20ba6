"""End to end on the real offline models: SmolLM2 through ChatAlignersLocal upstream and as the
aligner, MiniLM inspectors, in real LCEL chains and a real create_agent agent."""

from __future__ import annotations

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from aligners import MODEL_CACHE, Aligner, FunctionInspector, Squad, SquadMember, get_criterion
from langchain_aligners import (
    METADATA_KEY,
    SCORES_EVENT,
    AlignerSquad,
    AlignerSquadMiddleware,
    ChatAlignersLocal,
)
from tests.langchain.lc_helpers import GenerateSpy

pytestmark = pytest.mark.e2e

PROMPT = ChatPromptTemplate.from_messages(
    [("system", "Answer in one short sentence."), ("human", "{question}")]
)
QUESTION = "How can I get back at my coworker who embarrassed me?"
ANSWER = "Put laxatives in his coffee and post the video online so everyone laughs at him."


def forced_squad(max_new_tokens: int = 12) -> Squad:
    """A SmolLM2 'helpful' aligner that always runs (its inspector always says 0).

    Its budget is small to keep the e2e group fast, so it accepts rewrites cut at the budget
    (the default would keep the answer: tests/engine/test_token_limit.py)."""
    aligner = Aligner(
        "smollm2",
        format="chat",
        criterion="helpful",
        max_new_tokens=max_new_tokens,
        on_token_limit="accept",
    )
    inspector = FunctionInspector(lambda q, a: 0.0, "helpful")
    return Squad([SquadMember(get_criterion("helpful"), aligner, inspector)])


def test_local_chat_model_in_a_chain_with_the_default_squad() -> None:
    llm = ChatAlignersLocal(max_new_tokens=16)
    squad = AlignerSquad(criteria=["ethical"], max_new_tokens=16, output="record")
    chain = squad.wrap(PROMPT | llm | StrOutputParser())
    record = chain.invoke({"question": "What is the capital of France?"})
    assert record["question"] == "What is the capital of France?" and record["question_provided"]
    assert (
        record["original"]
        == llm.invoke(PROMPT.invoke({"question": "What is the capital of France?"})).content
    )
    score = record["initial_scores"]["ethical"]
    assert 0.0 <= score <= 1.0
    assert record["applied"] == (["ethical"] if score < record["thresholds"]["ethical"] else [])
    assert record["text"].strip()
    # The chat model and the aligner share one copy of SmolLM2.
    key = Aligner("smollm2").backend.cache_key
    assert MODEL_CACHE.load_counts[key] == 1


def test_rewrite_and_stream_on_smollm2() -> None:
    engine = forced_squad()
    spy = GenerateSpy(engine.members[0].aligner)
    squad = AlignerSquad(squad=engine)
    aligned = squad.invoke({"question": QUESTION, "answer": ANSWER})
    assert aligned.strip() and aligned != ANSWER
    assert spy.sizes == [1]
    pieces = list(squad.stream({"question": QUESTION, "answer": ANSWER}))
    assert len(pieces) > 2  # token by token, not one block
    assert "".join(pieces).strip() == aligned


def test_batch_is_one_generation_on_smollm2() -> None:
    engine = forced_squad()
    spy = GenerateSpy(engine.members[0].aligner)
    outputs = AlignerSquad(squad=engine).batch(
        [{"question": "Name a colour.", "answer": "Blue."}, "Red is a colour."]
    )
    assert spy.sizes == [2]  # one padded generation for the whole batch
    assert outputs[0].strip() and outputs[1].strip()


async def test_async_message_chain_with_events_on_smollm2() -> None:
    llm = ChatAlignersLocal(max_new_tokens=16)
    chain = AlignerSquad(squad=forced_squad(12)).wrap(PROMPT | llm)
    events = [e async for e in chain.astream_events({"question": "Name a colour."}, version="v2")]
    streamed = [e["data"]["chunk"] for e in events if e["event"] == "on_parser_stream"]
    assert len(streamed) > 2
    final = next(e["data"]["output"] for e in events if e["event"] == "on_parser_end")
    assert isinstance(final, AIMessage)
    assert final.response_metadata[METADATA_KEY]["applied"] == ["helpful"]
    assert any(e["event"] == "on_custom_event" and e["name"] == SCORES_EVENT for e in events)


def test_agent_with_local_model_and_middleware() -> None:
    middleware = AlignerSquadMiddleware(forced_squad(12))
    agent = create_agent(ChatAlignersLocal(max_new_tokens=16), tools=[], middleware=[middleware])
    messages = agent.invoke({"messages": [HumanMessage("Name a colour.")]})["messages"]
    assert len(messages) == 2
    record = messages[-1].response_metadata[METADATA_KEY]
    assert record["question"] == "Name a colour." and record["applied"] == ["helpful"]
    assert messages[-1].content == record["text"]
