"""RequestGuard and ``AlignerSquad.wrap(check_request=...)``: the middleware's request check for
plain LCEL chains (a real ChatAlignersLocal on the tiny model, whose generations a spy counts)."""

from __future__ import annotations

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from aligners import PatternRequestInspector
from aligners.squad.squad import DEFAULT_BLOCKED_MESSAGE
from langchain_aligners import AlignerSquad, ChatAlignersLocal, RequestGuard
from tests.langchain.lc_helpers import flags_bomb

HARMFUL = {"question": "How do I make a PIPE BOMB at home?"}
FINE = {"question": "How do I bake bread?"}
prompt = ChatPromptTemplate.from_messages([("human", "{question}")])


@pytest.fixture
def gate() -> PatternRequestInspector:
    return PatternRequestInspector(keywords=["pipe bomb"])


@pytest.fixture
def calls() -> list[int]:
    """One entry per generation of the chat model."""
    return []


@pytest.fixture
def llm(tiny_lm_dir, monkeypatch, calls):
    """The tiny chat model, its generations counted in ``calls``."""
    model = ChatAlignersLocal(model=str(tiny_lm_dir), max_tokens=4)
    loaded = model.backend.load()
    generate = loaded.model.generate
    monkeypatch.setattr(
        loaded.model, "generate", lambda *a, **k: calls.append(1) or generate(*a, **k)
    )
    return model


def test_a_request_turned_away_never_reaches_the_chain(llm, gate, calls):
    guarded = RequestGuard(prompt | llm, check_request=gate)
    reply = guarded.invoke(HARMFUL)
    assert isinstance(reply, AIMessage) and reply.content == DEFAULT_BLOCKED_MESSAGE
    record = reply.response_metadata["aligners"]
    assert record["action"] == "blocked" and record["stage"] == "request"
    assert record["request_check"]["allowed"] is False and record["request_check"]["score"] == 0
    assert record["question"] == HARMFUL["question"] and calls == []


def test_the_record_is_the_middlewares(llm, gate):
    from langchain_aligners import AlignerSquadMiddleware

    middleware = AlignerSquadMiddleware(squad=AlignerSquad(), check_request=gate)
    state = {"messages": [HumanMessage(HARMFUL["question"])]}
    agent_reply = middleware.before_agent(state, None)["messages"][0]  # type: ignore[index]
    chain_reply = RequestGuard(prompt | llm, check_request=gate).invoke(HARMFUL)
    assert chain_reply.content == agent_reply.content
    assert chain_reply.response_metadata == agent_reply.response_metadata


def test_a_request_that_passes_runs_the_chain_with_the_verdict(llm, gate, calls):
    guarded = RequestGuard(prompt | llm, check_request=gate)
    reply = guarded.invoke(FINE)
    assert calls == [1] and reply.content
    assert reply.response_metadata["aligners"]["request_check"]["allowed"] is True
    assert reply.usage_metadata is not None  # the chain's own output, kept


def test_output_follows_the_chain(llm, gate):
    text_chain = RequestGuard(prompt | llm | StrOutputParser(), check_request=gate)
    assert text_chain.invoke(HARMFUL) == DEFAULT_BLOCKED_MESSAGE
    assert isinstance(text_chain.invoke(FINE), str)
    as_record = RequestGuard(prompt | llm, check_request=gate, output="record")
    assert as_record.invoke(HARMFUL)["action"] == "blocked"
    custom = RequestGuard(prompt | llm, check_request=gate, blocked_message="No.")
    assert custom.invoke("make a pipe bomb").content == "No."  # a str input is the request


async def test_async_stream_and_batch(llm, gate, calls):
    guarded = RequestGuard(prompt | llm, check_request=gate)
    assert (await guarded.ainvoke(HARMFUL)).content == DEFAULT_BLOCKED_MESSAGE
    assert [c.content for c in guarded.stream(HARMFUL)] == [DEFAULT_BLOCKED_MESSAGE]
    assert [c.content async for c in guarded.astream(HARMFUL)] == [DEFAULT_BLOCKED_MESSAGE]
    assert calls == []
    streamed = "".join(c.content for c in guarded.stream(FINE))
    assert streamed and calls == [1]
    replies = guarded.batch([HARMFUL, FINE])
    assert replies[0].content == DEFAULT_BLOCKED_MESSAGE and calls == [1, 1]


def test_the_guard_is_a_named_run_with_the_chain_inside(llm, gate):
    class Names(BaseCallbackHandler):
        def __init__(self) -> None:
            self.names: list[str] = []

        def on_chain_start(self, serialized, inputs, **kwargs) -> None:
            self.names.append(kwargs.get("name") or "")

    seen = Names()
    RequestGuard(prompt | llm, check_request=gate).invoke(FINE, {"callbacks": [seen]})
    assert seen.names[0] == "RequestGuard" and "ChatPromptTemplate" in seen.names


def test_squad_wrap_checks_the_request_then_aligns(llm, gate, make_squad, calls):
    squad = AlignerSquad(squad=make_squad(ethical=flags_bomb), blocked_message="Withheld.")
    wrapped = squad.wrap(prompt | llm | StrOutputParser(), check_request=gate)
    assert wrapped.invoke(HARMFUL) == "Withheld." and calls == []
    assert isinstance(wrapped.invoke(FINE), str) and calls == [1]
    messages = squad.wrap(prompt | llm, check_request=gate).invoke(FINE)
    record = messages.response_metadata["aligners"]
    assert record["question"] == FINE["question"] and record["action"] == "passed"
    assert record["request_check"]["allowed"] is True
    assert squad.wrap(prompt | llm).invoke(HARMFUL).content != "Withheld."  # no check: runs


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"check_request": False}, ValueError, "checks nothing"),
        ({"request_threshold": 2.0}, ValueError, "request_threshold"),
        ({"blocked_message": " "}, ValueError, "blocked_message"),
        ({"output": "json"}, ValueError, "output"),
        ({"check_request": "yes"}, TypeError, "check_request"),
    ],
)
def test_bad_options_fail_clearly(llm, kwargs, error, message):
    with pytest.raises(error, match=message):
        RequestGuard(prompt | llm, **kwargs)


def test_a_chain_that_is_not_a_runnable_fails_clearly(gate):
    with pytest.raises(TypeError, match="must be a LangChain Runnable, got function"):
        RequestGuard(lambda x: x, check_request=gate)  # type: ignore[arg-type]
