"""on_flag / blocked_message and check_request on every LlamaIndex surface (issue 13).

The squads here have one member: a rule inspector reading scores from a table, and an aligner
over a backend that always writes the same text and counts its calls, so every outcome is
known in advance. The request inspector is a rule too (FunctionRequestInspector).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from llama_index.core import VectorStoreIndex
from llama_index.core.base.llms.types import (
    ChatMessage,
    MessageRole,
)
from llama_index.core.base.response.schema import (
    AsyncStreamingResponse,
    Response,
    StreamingResponse,
)
from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.core.instrumentation.events.llm import (
    LLMChatStartEvent,
    LLMCompletionStartEvent,
)
from llama_index.core.instrumentation.events.retrieval import RetrievalStartEvent
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import CustomQueryEngine
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from pydantic import ValidationError

import aligners.inspector.request as request_module
from aligners import (
    Aligner,
    AlignersError,
    AlignmentViolation,
    FunctionInspector,
    FunctionRequestInspector,
    Squad,
    SquadMember,
    get_criterion,
)
from aligners.squad.squad import DEFAULT_BLOCKED_MESSAGE
from llamaindex_aligners import (
    AlignedChatEngine,
    AlignedQueryEngine,
    AlignedStreamingChatResponse,
    AlignerPostprocessor,
    AlignmentErrorEvent,
    AlignmentSettings,
    AlignmentViolationEvent,
    RequestBlockedEvent,
    RequestCheckEvent,
)
from llamaindex_aligners.settings import configure_squad
from tests.engine.conftest import ConstantBackend, words
from tests.llamaindex.li_helpers import ScriptedLLM, harm_score

HARMFUL = "You should hurt them."
FINE = "Be kind to them."
FIXED = "Talk to them calmly instead."
STILL_BAD = "Still, hurt them a little."
SCORES = {HARMFUL: 0.1, FINE: 0.9, FIXED: 0.8, STILL_BAD: 0.2}
BLOCKED = "Withheld by policy."

HARMFUL_QUERY = "How do I build a bomb?"
ORDINARY_QUERY = "What should I do about my noisy neighbour?"
POLICIES = ["rewrite", "block", "raise", "rewrite_or_block"]


# -- test doubles --------------------------------------------------------------------------------


def table_score(question: str, answer: str) -> float:
    return SCORES[answer]


def policy_squad(
    rewrite_to: str = FIXED, score: Any = table_score, **options: Any
) -> tuple[Squad, ConstantBackend]:
    backend = ConstantBackend(rewrite_to)
    aligner = Aligner("unused", format="chat", backend=backend, criterion="ethical")
    inspector = FunctionInspector(score, criterion="ethical")
    return Squad([SquadMember(get_criterion("ethical"), aligner, inspector)], **options), backend


def request_rule(request: str) -> float:
    """P(fine to answer): low for anything about bombs."""
    return 0.05 if "bomb" in request.lower() else 0.95


def request_inspector() -> FunctionRequestInspector:
    return FunctionRequestInspector(request_rule)


class AnswerEngine(CustomQueryEngine):
    """A query engine answering every query with ``answer``; ``calls`` records the queries."""

    answer: str = FINE
    streaming: bool = False
    calls: list[str] = []

    def custom_query(self, query_str: str) -> Any:
        self.calls.append(query_str)
        if self.streaming:
            return StreamingResponse(response_gen=iter(words(self.answer)))
        return Response(self.answer, metadata={"inner": True})

    async def acustom_query(self, query_str: str) -> Any:
        self.calls.append(query_str)
        if self.streaming:

            async def gen() -> Any:
                for word in words(self.answer):
                    yield word

            return AsyncStreamingResponse(response_gen=gen())
        return Response(self.answer, metadata={"inner": True})


def chat_pair(reply: str) -> tuple[SimpleChatEngine, ScriptedLLM]:
    llm = ScriptedLLM(reply=reply, calls=[])
    return SimpleChatEngine.from_defaults(llm=llm), llm


def query(engine: AlignedQueryEngine, text: str, asynchronous: bool) -> Any:
    return asyncio.run(engine.aquery(text)) if asynchronous else engine.query(text)


def chat(engine: AlignedChatEngine, text: str, asynchronous: bool) -> Any:
    return asyncio.run(engine.achat(text)) if asynchronous else engine.chat(text)


def history(engine: AlignedChatEngine) -> list[tuple[str, str]]:
    return [(m.role.value, m.content or "") for m in engine.chat_history]


# What each policy does to the harmful answer: (aligner output, final text, action, generations).
OUTCOMES = {
    "rewrite": (FIXED, FIXED, "rewritten", True),
    "block": (FIXED, BLOCKED, "blocked", False),
    "rewrite_or_block": (FIXED, FIXED, "rewritten", True),
    "rewrite_or_block-fails": (STILL_BAD, BLOCKED, "blocked", True),
    "rewrite-fails": (STILL_BAD, STILL_BAD, "rewritten", True),
}


# -- AlignedQueryEngine: on_flag -----------------------------------------------------------------


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("case", sorted(OUTCOMES))
def test_query_engine_policies(case: str, asynchronous: bool) -> None:
    policy = case.removesuffix("-fails")
    rewrite_to, text, action, generates = OUTCOMES[case]
    squad, backend = policy_squad(rewrite_to)
    inner = AnswerEngine(answer=HARMFUL, calls=[])
    engine = AlignedQueryEngine(inner, squad=squad, on_flag=policy, blocked_message=BLOCKED)  # type: ignore[arg-type]
    response = query(engine, "What now?", asynchronous)
    assert isinstance(response, Response)
    record = response.metadata["aligners"]
    assert response.response == text == record["text"]
    assert record["original"] == HARMFUL and record["flagged"] == ["ethical"]
    assert record["on_flag"] == policy and record["action"] == action
    assert record["blocked"] is (action == "blocked")
    assert bool(backend.calls) is generates
    assert response.metadata["inner"] is True  # the inner engine's metadata is kept
    assert engine.squad.config.on_flag == policy and squad.config.on_flag == "rewrite"


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("policy", POLICIES)
def test_query_engine_passes_fine_answers_under_every_policy(
    policy: str, asynchronous: bool
) -> None:
    squad, backend = policy_squad()
    engine = AlignedQueryEngine(AnswerEngine(answer=FINE, calls=[]), squad=squad, on_flag=policy)  # type: ignore[arg-type]
    response = query(engine, "What now?", asynchronous)
    record = response.metadata["aligners"]
    assert response.response == FINE and record["action"] == "passed"
    assert backend.calls == []


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("on_error", ["keep", "raise"])
def test_query_engine_raise_propagates_whatever_on_error_says(
    on_error: str, asynchronous: bool, collector: Any
) -> None:
    squad, backend = policy_squad()
    inner = AnswerEngine(answer=HARMFUL, calls=[])
    engine = AlignedQueryEngine(inner, squad=squad, on_flag="raise", on_error=on_error)
    with pytest.raises(AlignmentViolation) as caught:
        query(engine, "What now?", asynchronous)
    violation = caught.value
    assert isinstance(violation, AlignersError)
    assert violation.result.question == "What now?" and violation.result.original == HARMFUL
    assert violation.result.action == "raised"
    assert backend.calls == [] and inner.calls == ["What now?"]
    events = collector.of(AlignmentViolationEvent)
    assert len(events) == 1 and isinstance(events[0], AlignmentErrorEvent)
    assert events[0].target == "answer" and events[0].record["action"] == "raised"
    assert events[0].record["initial_scores"] == {"ethical": 0.1}


def test_query_engine_keeps_the_squads_own_policy_unless_told_otherwise() -> None:
    squad, _ = policy_squad(on_flag="block", blocked_message=BLOCKED)
    inner = AnswerEngine(answer=HARMFUL, calls=[])
    kept = AlignedQueryEngine(inner, squad=squad).query("q")
    assert kept.response == BLOCKED and kept.metadata["aligners"]["action"] == "blocked"
    overridden = AlignedQueryEngine(inner, squad=squad, on_flag="rewrite").query("q")
    assert overridden.response == FIXED and overridden.metadata["aligners"]["on_flag"] == "rewrite"
    plain, _ = policy_squad()
    default = AlignedQueryEngine(inner, squad=plain).query("q")
    assert default.metadata["aligners"]["action"] == "rewritten"  # rewrite is the default


def test_query_engine_block_uses_the_default_message_when_none_is_given() -> None:
    squad, _ = policy_squad()
    engine = AlignedQueryEngine(
        AnswerEngine(answer=HARMFUL, calls=[]), squad=squad, on_flag="block"
    )
    assert engine.query("q").response == DEFAULT_BLOCKED_MESSAGE


def test_check_only_still_only_scores_whatever_the_policy() -> None:
    squad, backend = policy_squad()
    engine = AlignedQueryEngine(
        AnswerEngine(answer=HARMFUL, calls=[]), squad=squad, on_flag="raise", check_only=True
    )
    response = engine.query("q")
    assert response.response == HARMFUL and response.metadata["aligners"]["action"] == "flagged"
    assert backend.calls == []


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_streaming_query_block_comes_in_one_piece_with_its_record(asynchronous: bool) -> None:
    squad, _ = policy_squad()
    inner = AnswerEngine(answer=HARMFUL, streaming=True, calls=[])
    engine = AlignedQueryEngine(inner, squad=squad, on_flag="block", blocked_message=BLOCKED)

    async def astream() -> tuple[list[str], dict[str, Any]]:
        response = await engine.aquery("q")
        assert isinstance(response, AsyncStreamingResponse)
        record = response.metadata["aligners"]  # decided before aquery returned
        return [p async for p in response.async_response_gen()], record

    if asynchronous:
        pieces, record = asyncio.run(astream())
    else:
        response = engine.query("q")
        assert isinstance(response, StreamingResponse)
        record = response.metadata["aligners"]  # decided before query returned
        pieces = list(response.response_gen)
        assert str(response) == BLOCKED
    assert pieces == [BLOCKED]
    assert record["action"] == "blocked" and record["original"] == HARMFUL


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_streaming_query_raise_raises_from_the_query_call(asynchronous: bool) -> None:
    squad, _ = policy_squad()
    inner = AnswerEngine(answer=HARMFUL, streaming=True, calls=[])
    engine = AlignedQueryEngine(inner, squad=squad, on_flag="raise")
    with pytest.raises(AlignmentViolation):
        query(engine, "q", asynchronous)  # not only once the stream is read


def test_streaming_query_rewrite_still_streams_piece_by_piece() -> None:
    squad, _ = policy_squad()
    inner = AnswerEngine(answer=HARMFUL, streaming=True, calls=[])
    response = AlignedQueryEngine(inner, squad=squad).query("q")
    assert "aligners" not in response.metadata  # not decided yet: it streams
    pieces = list(response.response_gen)
    assert len(pieces) > 1 and "".join(pieces) == FIXED
    assert response.metadata["aligners"]["action"] == "rewritten"


# -- AlignedQueryEngine: check_request -----------------------------------------------------------


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_check_request_blocks_without_calling_the_wrapped_engine(
    asynchronous: bool, collector: Any
) -> None:
    squad, backend = policy_squad()
    inner = AnswerEngine(answer=FINE, calls=[])
    engine = AlignedQueryEngine(
        inner, squad=squad, check_request=request_inspector(), blocked_message=BLOCKED
    )
    response = query(engine, HARMFUL_QUERY, asynchronous)
    assert isinstance(response, Response)
    assert response.response == BLOCKED and response.source_nodes == []
    record = response.metadata["aligners"]
    assert record["action"] == "blocked" and record["blocked"] is True
    assert record["stage"] == "request" and record["question"] == HARMFUL_QUERY
    assert record["request_check"] == {
        "request": HARMFUL_QUERY,
        "score": 0.05,
        "threshold": 0.5,
        "allowed": False,
    }
    assert inner.calls == [] and backend.calls == []  # the wrapped engine never ran
    (checked,) = collector.of(RequestCheckEvent)
    assert checked.allowed is False and checked.target == "answer"
    (blocked,) = collector.of(RequestBlockedEvent)
    assert blocked.record == record["request_check"] and blocked.blocked_message == BLOCKED


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_check_request_lets_ordinary_queries_through_and_records_the_check(
    asynchronous: bool, collector: Any
) -> None:
    squad, _ = policy_squad()
    inner = AnswerEngine(answer=HARMFUL, calls=[])
    engine = AlignedQueryEngine(inner, squad=squad, check_request=request_inspector())
    response = query(engine, ORDINARY_QUERY, asynchronous)
    assert inner.calls == [ORDINARY_QUERY]
    record = response.metadata["aligners"]
    assert record["request_check"]["allowed"] is True and record["request_check"]["score"] == 0.95
    assert record["action"] == "rewritten" and response.response == FIXED  # the answer is aligned
    assert [e.allowed for e in collector.of(RequestCheckEvent)] == [True]
    assert collector.of(RequestBlockedEvent) == []


def test_request_threshold_overrides_the_inspectors_own() -> None:
    squad, _ = policy_squad()
    inner = AnswerEngine(answer=FINE, calls=[])
    strict = AlignedQueryEngine(
        inner, squad=squad, check_request=request_inspector(), request_threshold=0.99
    )
    response = strict.query(ORDINARY_QUERY)  # 0.95 < 0.99
    assert response.metadata["aligners"]["request_check"]["threshold"] == 0.99
    assert response.metadata["aligners"]["action"] == "blocked" and inner.calls == []
    assert strict.request_threshold == 0.99 and strict.request_inspector is not None
    lenient = AlignedQueryEngine(
        inner, squad=squad, check_request=request_inspector(), request_threshold=0.01
    )
    assert lenient.query(HARMFUL_QUERY).metadata["aligners"]["request_check"]["allowed"] is True
    assert inner.calls == [HARMFUL_QUERY]


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_check_request_skips_retrieval_and_the_llm_of_a_rag_engine(
    index: VectorStoreIndex, asynchronous: bool, collector: Any
) -> None:
    squad, _ = policy_squad(score=harm_score)
    rag = index.as_query_engine(llm=MockLLM(max_tokens=3), similarity_top_k=1)
    engine = AlignedQueryEngine(rag, squad=squad, check_request=request_inspector())
    blocked = query(engine, HARMFUL_QUERY, asynchronous)
    assert blocked.response == DEFAULT_BLOCKED_MESSAGE
    started = (RetrievalStartEvent, LLMCompletionStartEvent, LLMChatStartEvent)
    assert not [e for e in collector.events if isinstance(e, started)]
    allowed = query(engine, ORDINARY_QUERY, asynchronous)
    assert allowed.source_nodes and allowed.response == "text text text"
    # the control: the same events are recorded when the request goes through
    assert collector.of(RetrievalStartEvent)
    assert [e for e in collector.events if isinstance(e, started[1:])]


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_blocked_request_to_a_streaming_engine_is_a_stream(
    index: VectorStoreIndex, asynchronous: bool
) -> None:
    rag = index.as_query_engine(llm=MockLLM(), streaming=True)
    squad, _ = policy_squad(score=harm_score)
    engine = AlignedQueryEngine(
        rag, squad=squad, check_request=request_inspector(), blocked_message=BLOCKED
    )

    async def read() -> list[str]:
        response = await engine.aquery(HARMFUL_QUERY)
        assert isinstance(response, AsyncStreamingResponse)
        assert response.metadata["aligners"]["stage"] == "request"
        return [p async for p in response.async_response_gen()]

    if asynchronous:
        assert asyncio.run(read()) == [BLOCKED]
    else:
        response = engine.query(HARMFUL_QUERY)
        assert isinstance(response, StreamingResponse)
        assert response.metadata["aligners"]["stage"] == "request"
        assert list(response.response_gen) == [BLOCKED]


def test_check_request_true_means_the_shipped_inspector(monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = request_inspector()
    monkeypatch.setattr(request_module, "default_request_inspector", lambda: shipped)
    engine = AlignedQueryEngine(AnswerEngine(calls=[]), squad=policy_squad()[0], check_request=True)
    assert engine.request_inspector is shipped
    assert engine.query(HARMFUL_QUERY).metadata["aligners"]["action"] == "blocked"


def test_check_request_true_without_a_shipped_inspector_fails_at_construction(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setattr(request_module, "DEFAULT_REQUEST_INSPECTOR_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="no shipped request inspector"):
        AlignedQueryEngine(AnswerEngine(calls=[]), squad=policy_squad()[0], check_request=True)
    with pytest.raises(FileNotFoundError, match="no shipped request inspector"):
        AlignedChatEngine(chat_pair(FINE)[0], squad=policy_squad()[0], check_request=True)


@pytest.mark.parametrize("wrapper", ["query", "chat"])
def test_bad_check_request_values_are_rejected_clearly(wrapper: str) -> None:
    squad, _ = policy_squad()

    def build(**kwargs: Any) -> Any:
        if wrapper == "query":
            return AlignedQueryEngine(AnswerEngine(calls=[]), squad=squad, **kwargs)
        return AlignedChatEngine(chat_pair(FINE)[0], squad=squad, **kwargs)

    answer_inspector = FunctionInspector(table_score, criterion="ethical")
    for bad in ["yes", 1, 0, answer_inspector, request_rule]:
        with pytest.raises(TypeError, match="check_request must be True, False or a Request"):
            build(check_request=bad)
    with pytest.raises(ValueError, match=r"request_threshold must be in \[0, 1\]"):
        build(check_request=request_inspector(), request_threshold=1.5)
    with pytest.raises(ValueError, match="check_request is off"):
        build(request_threshold=0.5)
    assert build(check_request=False).request_inspector is None
    assert build(check_request=None).request_inspector is None


def test_a_failing_request_inspector_follows_on_error() -> None:
    def broken(request: str) -> float:
        raise ConnectionError("request classifier unreachable")

    squad, _ = policy_squad()
    inner = AnswerEngine(answer=FINE, calls=[])
    keep = AlignedQueryEngine(inner, squad=squad, check_request=FunctionRequestInspector(broken))
    response = keep.query(ORDINARY_QUERY)  # fails open, like the squad under on_error="keep"
    check = response.metadata["aligners"]["request_check"]
    assert check["allowed"] is True and "unreachable" in check["error"]
    assert inner.calls == [ORDINARY_QUERY]
    strict = AlignedQueryEngine(
        inner, squad=squad, check_request=FunctionRequestInspector(broken), on_error="raise"
    )
    with pytest.raises(ConnectionError):
        strict.query(ORDINARY_QUERY)
    assert inner.calls == [ORDINARY_QUERY]


# -- AlignedChatEngine ---------------------------------------------------------------------------


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("case", sorted(OUTCOMES))
def test_chat_engine_policies(case: str, asynchronous: bool) -> None:
    policy = case.removesuffix("-fails")
    rewrite_to, text, action, generates = OUTCOMES[case]
    squad, backend = policy_squad(rewrite_to)
    inner, llm = chat_pair(HARMFUL)
    engine = AlignedChatEngine(inner, squad=squad, on_flag=policy, blocked_message=BLOCKED)  # type: ignore[arg-type]
    reply = chat(engine, "What now?", asynchronous)
    record = reply.metadata["aligners"]
    assert reply.response == text == record["text"]
    assert record["original"] == HARMFUL and record["action"] == action
    assert record["on_flag"] == policy and bool(backend.calls) is generates
    assert len(llm.calls) == 1
    # the history holds what the user saw, never the flagged reply
    assert history(engine) == [("user", "What now?"), ("assistant", text)]


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_chat_engine_raise_propagates_and_takes_the_turn_out_of_the_history(
    asynchronous: bool, collector: Any
) -> None:
    squad, _ = policy_squad()
    inner, llm = chat_pair(FINE)
    engine = AlignedChatEngine(inner, squad=squad, on_flag="raise")
    assert chat(engine, "Hello", asynchronous).response == FINE
    llm.reply = HARMFUL
    with pytest.raises(AlignmentViolation) as caught:
        chat(engine, "What now?", asynchronous)
    assert caught.value.result.question == "What now?"
    assert history(engine) == [("user", "Hello"), ("assistant", FINE)]
    (event,) = collector.of(AlignmentViolationEvent)
    assert event.target == "chat"


def test_chat_engine_raise_with_update_memory_off_leaves_the_history_alone() -> None:
    squad, _ = policy_squad()
    inner, _ = chat_pair(HARMFUL)
    engine = AlignedChatEngine(inner, squad=squad, on_flag="raise", update_memory=False)
    with pytest.raises(AlignmentViolation):
        engine.chat("What now?")
    assert history(engine) == [("user", "What now?"), ("assistant", HARMFUL)]


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_stream_chat_block_comes_in_one_piece(asynchronous: bool) -> None:
    squad, _ = policy_squad()
    inner, _ = chat_pair(HARMFUL)
    engine = AlignedChatEngine(inner, squad=squad, on_flag="block", blocked_message=BLOCKED)

    async def astream() -> tuple[list[str], AlignedStreamingChatResponse]:
        reply = await engine.astream_chat("What now?")
        return [p async for p in reply.async_response_gen()], reply

    if asynchronous:
        pieces, reply = asyncio.run(astream())
    else:
        reply = engine.stream_chat("What now?")
        assert reply.metadata is not None and reply.metadata["aligners"]["action"] == "blocked"
        pieces = list(reply.response_gen)
    assert pieces == [BLOCKED] and reply.response == BLOCKED
    assert reply.metadata is not None and reply.metadata["aligners"]["original"] == HARMFUL
    assert history(engine) == [("user", "What now?"), ("assistant", BLOCKED)]


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_stream_chat_raise_raises_from_the_call(asynchronous: bool) -> None:
    squad, _ = policy_squad()
    inner, _ = chat_pair(HARMFUL)
    engine = AlignedChatEngine(inner, squad=squad, on_flag="raise")
    with pytest.raises(AlignmentViolation):
        if asynchronous:
            asyncio.run(engine.astream_chat("What now?"))
        else:
            engine.stream_chat("What now?")
    assert history(engine) == []


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_chat_check_request_blocks_without_calling_the_inner_engine(
    asynchronous: bool, collector: Any
) -> None:
    squad, backend = policy_squad()
    inner, llm = chat_pair(FINE)
    engine = AlignedChatEngine(
        inner, squad=squad, check_request=request_inspector(), blocked_message=BLOCKED
    )
    assert chat(engine, "Hello", asynchronous).metadata["aligners"]["request_check"]["allowed"]
    assert len(llm.calls) == 1
    reply = chat(engine, HARMFUL_QUERY, asynchronous)
    assert reply.response == BLOCKED
    record = reply.metadata["aligners"]
    assert record["action"] == "blocked" and record["stage"] == "request"
    assert record["request_check"]["allowed"] is False and record["request_check"]["score"] == 0.05
    assert len(llm.calls) == 1 and backend.calls == []  # no LLM call for the blocked message
    # neither the request nor the refusal is stored
    assert history(engine) == [("user", "Hello"), ("assistant", FINE)]
    (blocked,) = collector.of(RequestBlockedEvent)
    assert blocked.target == "chat" and blocked.record["request"] == HARMFUL_QUERY


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_stream_chat_check_request(asynchronous: bool) -> None:
    squad, _ = policy_squad()
    inner, llm = chat_pair(FINE)
    engine = AlignedChatEngine(
        inner, squad=squad, check_request=request_inspector(), blocked_message=BLOCKED
    )

    async def astream(message: str) -> tuple[list[str], AlignedStreamingChatResponse]:
        reply = await engine.astream_chat(message)
        return [p async for p in reply.async_response_gen()], reply

    def stream(message: str) -> tuple[list[str], AlignedStreamingChatResponse]:
        if asynchronous:
            return asyncio.run(astream(message))
        reply = engine.stream_chat(message)
        return list(reply.response_gen), reply

    pieces, reply = stream(HARMFUL_QUERY)
    assert pieces == [BLOCKED] and reply.response == BLOCKED
    assert reply.metadata is not None and reply.metadata["aligners"]["stage"] == "request"
    assert llm.calls == [] and history(engine) == []
    pieces, reply = stream(ORDINARY_QUERY)
    assert "".join(pieces) == FINE and len(llm.calls) == 1
    assert reply.metadata is not None
    assert reply.metadata["aligners"]["request_check"]["allowed"] is True
    assert history(engine) == [("user", ORDINARY_QUERY), ("assistant", FINE)]


# -- AlignerPostprocessor ------------------------------------------------------------------------

HURT_DOC = "To hurt someone, hit them hard."


def retrieved(index: VectorStoreIndex) -> list[NodeWithScore]:
    return index.as_retriever(similarity_top_k=4).retrieve("anything")


def node_squad(rewrite_to: str) -> tuple[Squad, ConstantBackend]:
    return policy_squad(rewrite_to, score=harm_score)


def by_text(nodes: list[NodeWithScore]) -> dict[str, NodeWithScore]:
    return {n.node.metadata["aligners"].get("original", n.node.get_content()): n for n in nodes}


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize(
    "policy, rewrite_to, text, action",
    [
        ("rewrite", "Be gentle with people.", "Be gentle with people.", "rewritten"),
        ("block", "Be gentle with people.", BLOCKED, "blocked"),
        ("rewrite_or_block", "Be gentle with people.", "Be gentle with people.", "rewritten"),
        ("rewrite_or_block", "Then hurt them anyway.", BLOCKED, "blocked"),
    ],
)
def test_postprocessor_policies_in_rewrite_mode(
    index: VectorStoreIndex,
    policy: str,
    rewrite_to: str,
    text: str,
    action: str,
    asynchronous: bool,
) -> None:
    squad, _ = node_squad(rewrite_to)
    post = AlignerPostprocessor(
        squad=squad, mode="rewrite", on_flag=policy, blocked_message=BLOCKED
    )
    nodes, bundle = retrieved(index), QueryBundle("anything")
    if asynchronous:
        out = asyncio.run(post.apostprocess_nodes(nodes, query_bundle=bundle))
    else:
        out = post.postprocess_nodes(nodes, query_bundle=bundle)
    assert len(out) == len(nodes)
    hurt = by_text(out)[HURT_DOC]
    assert hurt.node.get_content() == text
    assert hurt.node.metadata["aligners"]["action"] == action
    assert hurt.node.metadata["aligners"]["original"] == HURT_DOC
    others = [n for n in out if n is not hurt]
    assert all(n.node.metadata["aligners"]["action"] == "kept" for n in others)
    assert HURT_DOC in [n.node.get_content() for n in nodes]  # the inputs are untouched


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("mode", ["annotate", "drop", "rewrite"])
def test_postprocessor_raise_in_every_mode(
    index: VectorStoreIndex, mode: str, asynchronous: bool, collector: Any
) -> None:
    squad, backend = node_squad("Be gentle with people.")
    post = AlignerPostprocessor(squad=squad, mode=mode, on_flag="raise")
    nodes, bundle = retrieved(index), QueryBundle("anything")
    with pytest.raises(AlignmentViolation) as caught:
        if asynchronous:
            asyncio.run(post.apostprocess_nodes(nodes, query_bundle=bundle))
        else:
            post.postprocess_nodes(nodes, query_bundle=bundle)
    assert caught.value.result.original == HURT_DOC and caught.value.result.action == "raised"
    assert len(caught.value.results) == len(nodes)
    assert backend.calls == []
    (event,) = collector.of(AlignmentViolationEvent)
    assert event.target == "nodes"
    # nothing flagged: nothing raised
    clean = [n for n in nodes if n.node.get_content() != HURT_DOC]
    assert len(post.postprocess_nodes(clean, query_bundle=bundle)) == len(clean)


def test_postprocessor_raise_aborts_the_query_before_the_llm(
    index: VectorStoreIndex, collector: Any
) -> None:
    squad, _ = node_squad("unused")
    post = AlignerPostprocessor(squad=squad, on_flag="raise")
    engine = index.as_query_engine(llm=MockLLM(), node_postprocessors=[post], similarity_top_k=4)
    wrapped = AlignedQueryEngine(engine, squad=squad)  # its on_error="keep" must not swallow it
    with pytest.raises(AlignmentViolation):
        wrapped.query("anything")
    started = (LLMCompletionStartEvent, LLMChatStartEvent)
    assert not [e for e in collector.events if isinstance(e, started)]


def test_postprocessor_wrap_hands_on_the_policy(index: VectorStoreIndex) -> None:
    squad, _ = node_squad("unused")
    post = AlignerPostprocessor(squad=squad, on_flag="block", blocked_message=BLOCKED)
    engine = post.wrap(AnswerEngine(answer=HARMFUL, calls=[]))
    assert isinstance(engine, AlignedQueryEngine)
    assert engine.squad.config.on_flag == "block" and engine.query("q").response == BLOCKED
    raising = post.wrap(chat_pair(HARMFUL)[0], on_flag="raise")
    assert isinstance(raising, AlignedChatEngine)
    with pytest.raises(AlignmentViolation):
        raising.chat("q")
    gated = post.wrap(AnswerEngine(calls=[]), check_request=request_inspector())
    assert gated.query(HARMFUL_QUERY).metadata["aligners"]["stage"] == "request"


def test_postprocessor_policy_changed_after_construction_takes_effect(
    index: VectorStoreIndex,
) -> None:
    squad, _ = node_squad("Be gentle with people.")
    post = AlignerPostprocessor(squad=squad, mode="rewrite")
    nodes = retrieved(index)
    assert by_text(post.postprocess_nodes(nodes, query_str="q"))[HURT_DOC].node.get_content() != (
        BLOCKED
    )
    post.on_flag, post.blocked_message = "block", BLOCKED
    out = post.postprocess_nodes(nodes, query_str="q")
    assert by_text(out)[HURT_DOC].node.get_content() == BLOCKED


def test_postprocessor_rejects_bad_policies() -> None:
    with pytest.raises(ValidationError):
        AlignerPostprocessor(on_flag="explode")
    with pytest.raises(ValidationError, match="blocked_message must have text"):
        AlignerPostprocessor(blocked_message="   ")
    assert AlignerPostprocessor(on_flag="block").to_dict()["on_flag"] == "block"


# -- settings ------------------------------------------------------------------------------------


def test_settings_carry_the_policy_into_the_squad() -> None:
    squad, _ = policy_squad()
    settings = AlignmentSettings(on_flag="rewrite_or_block", blocked_message=BLOCKED)
    configured = configure_squad(squad, settings)
    assert configured.config.on_flag == "rewrite_or_block"
    assert configured.config.blocked_message == BLOCKED
    assert squad.config.on_flag == "rewrite"  # the given squad is never changed
    kept = configure_squad(squad.with_options(on_flag="block"), AlignmentSettings())
    assert kept.config.on_flag == "block"
    engine = AlignedQueryEngine(
        AnswerEngine(answer=HARMFUL, calls=[]),
        squad=policy_squad(STILL_BAD)[0],
        settings=settings,
    )
    assert engine.query("q").response == BLOCKED
    with pytest.raises(ValidationError):
        AlignmentSettings(on_flag="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="blocked_message must have text"):
        AlignmentSettings(blocked_message="")
    with pytest.raises(ValidationError):
        AlignedQueryEngine(AnswerEngine(calls=[]), squad=squad, on_flag="nope")  # type: ignore[arg-type]


def test_node_with_no_text_under_a_policy_passes_through(index: VectorStoreIndex) -> None:
    squad, _ = node_squad("unused")
    post = AlignerPostprocessor(squad=squad, on_flag="raise")
    empty = [NodeWithScore(node=TextNode(text="  "), score=1.0)]
    out = post.postprocess_nodes(empty, query_str="q")
    assert [n.node.get_content() for n in out] == ["  "]
    assert out[0].node.metadata["aligners"]["action"] == "skipped"
    assert "aligners" not in empty[0].node.metadata  # the stored node is not mutated


def test_empty_node_in_drop_mode_is_kept_with_its_record() -> None:
    squad, _ = node_squad("unused")
    post = AlignerPostprocessor(squad=squad, mode="drop")
    nodes = [NodeWithScore(node=TextNode(text=""), score=1.0)]
    out = post.postprocess_nodes(nodes, query_str="q")
    assert len(out) == 1 and out[0].node.metadata["aligners"]["skipped_reason"].startswith("empty")


def test_a_failing_squad_marks_the_nodes_or_drops_them_when_fail_closed() -> None:
    from aligners import FunctionInspector, Squad, SquadMember, get_criterion

    def down(question: str, answer: str) -> float:
        raise ConnectionError("inspector server down")

    broken = Squad(
        [SquadMember(get_criterion("ethical"), None, FunctionInspector(down, "ethical"))]
    )
    nodes = [NodeWithScore(node=TextNode(text="some retrieved text"), score=1.0)]
    kept = AlignerPostprocessor(squad=broken, mode="drop").postprocess_nodes(nodes, query_str="q")
    record = kept[0].node.metadata["aligners"]
    assert record["action"] == "failed" and "inspector server down" in record["failures"][0]
    closed = AlignerPostprocessor(squad=broken, mode="drop", fail_closed=True)
    assert closed.postprocess_nodes(nodes, query_str="q") == []
    with pytest.raises(ConnectionError):
        AlignerPostprocessor(squad=broken, on_error="raise").postprocess_nodes(nodes, query_str="q")


def test_chat_history_passed_in_is_left_alone_by_a_blocked_request() -> None:
    squad, _ = policy_squad()
    inner, llm = chat_pair(FINE)
    engine = AlignedChatEngine(inner, squad=squad, check_request=request_inspector())
    given = [ChatMessage(role=MessageRole.USER, content="hi")]
    reply = engine.chat(HARMFUL_QUERY, chat_history=given)
    assert reply.metadata["aligners"]["action"] == "blocked" and llm.calls == []
    assert [m.content for m in given] == ["hi"]


def test_on_error_speaks_the_engine_words() -> None:
    from llamaindex_aligners.settings import AlignmentSettings

    # the policy decides (LlamaIndex's default: return_original); the flat field is sugar
    # that reads its default back as before the policy object
    assert AlignmentSettings().on_error == "return_original"
    assert AlignmentSettings().resolved_policy.on_error == "return_original"
    assert AlignmentSettings(on_error="keep").on_error == "return_original"  # earlier spelling
    assert AlignmentSettings(on_error="raise").resolved_policy.on_error == "raise"
    with pytest.raises(ValueError, match="on_error"):
        AlignmentSettings(on_error="ignore")


async def test_an_empty_query_is_a_clear_error() -> None:
    from llama_index.core.query_engine import CustomQueryEngine

    squad, _ = policy_squad()

    class Counting(CustomQueryEngine):
        calls: int = 0

        def custom_query(self, query_str: str) -> str:
            self.calls += 1
            return "an answer"

    wrapped = Counting()
    engine = AlignedQueryEngine(wrapped, squad=squad)
    for empty in ("", "   "):
        with pytest.raises(ValueError, match="the query is empty"):
            engine.query(empty)
        with pytest.raises(ValueError, match="the query is empty"):
            await engine.aquery(empty)
    assert wrapped.calls == 0
