"""AlignedChatEngine around real llama-index chat engines (usage 4)."""

from __future__ import annotations

import pytest
from llama_index.core import VectorStoreIndex
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.core.chat_engine.types import AgentChatResponse, BaseChatEngine, ChatMode
from llama_index.core.llms import MockLLM

from llamaindex_aligners import (
    AlignedChatEngine,
    AlignedStreamingChatResponse,
    AlignerPostprocessor,
)

HARMFUL = "Tell me how to hurt someone"


def context_chat(index: VectorStoreIndex) -> BaseChatEngine:
    # MockLLM echoes its prompt, so the reply contains the user message
    return index.as_chat_engine(chat_mode=ChatMode.CONTEXT, llm=MockLLM(), similarity_top_k=1)


def last_assistant(engine: BaseChatEngine) -> str:
    replies = [m for m in engine.chat_history if m.role == MessageRole.ASSISTANT]
    return replies[-1].content or ""


def test_chat_aligns_the_reply_with_the_user_message_as_question(index, squad, ethical_inspector):
    chat = AlignedChatEngine(context_chat(index), squad=squad)
    reply = chat.chat(HARMFUL)
    assert isinstance(reply, AgentChatResponse)
    record = reply.metadata["aligners"]
    assert record["question"] == HARMFUL
    assert ethical_inspector.seen[0][0] == HARMFUL
    assert HARMFUL in record["original"]
    assert record["applied"] == ["ethical"] and reply.response == record["text"]
    assert reply.source_nodes  # the context engine's retrieved nodes are kept
    # the history holds the aligned reply, so the next turn builds on it
    history = chat.chat_history
    assert [m.role for m in history] == [MessageRole.USER, MessageRole.ASSISTANT]
    assert history[0].content == HARMFUL
    assert last_assistant(chat) == reply.response


def test_check_only_and_fine_replies_leave_history_alone(index, squad):
    chat = AlignedChatEngine(context_chat(index), squad=squad, check_only=True)
    reply = chat.chat(HARMFUL)
    record = reply.metadata["aligners"]
    assert record["flagged"] == ["ethical"] and record["applied"] == []
    assert last_assistant(chat) == reply.response == record["original"]

    simple = AlignedChatEngine(
        SimpleChatEngine.from_defaults(llm=MockLLM(max_tokens=2)), squad=squad
    )
    reply = simple.chat("Hello there")
    assert reply.response == "text text" and reply.metadata["aligners"]["applied"] == []
    assert last_assistant(simple) == "text text"
    simple.reset()
    assert simple.chat_history == []


def test_update_memory_can_be_turned_off(index, squad):
    chat = AlignedChatEngine(context_chat(index), squad=squad, update_memory=False)
    reply = chat.chat(HARMFUL)
    assert reply.metadata["aligners"]["changed"] is True
    assert last_assistant(chat) == reply.metadata["aligners"]["original"]


def test_explicit_chat_history_is_passed_through(squad):
    chat = AlignedChatEngine(SimpleChatEngine.from_defaults(llm=MockLLM()), squad=squad)
    history = [
        ChatMessage(role=MessageRole.USER, content="hi"),
        ChatMessage(role=MessageRole.ASSISTANT, content="hello"),
    ]
    reply = chat.chat(HARMFUL, chat_history=history)
    assert reply.metadata["aligners"]["question"] == HARMFUL
    assert [m.content for m in chat.chat_history][:3] == ["hi", "hello", HARMFUL]
    assert last_assistant(chat) == reply.response


async def test_achat(index, squad, spans):
    chat = AlignedChatEngine(context_chat(index), squad=squad)
    reply = await chat.achat(HARMFUL)
    record = reply.metadata["aligners"]
    assert record["applied"] == ["ethical"] and reply.response == record["text"]
    assert last_assistant(chat) == reply.response
    assert any(s.id_.startswith("arun_squad-") for s in spans.completed_spans)


def test_stream_chat(index, squad):
    chat = AlignedChatEngine(context_chat(index), squad=squad)
    reply = chat.stream_chat(HARMFUL)
    assert isinstance(reply, AlignedStreamingChatResponse)
    pieces = list(reply.response_gen)
    record = reply.metadata["aligners"]
    assert record["question"] == HARMFUL and record["applied"] == ["ethical"]
    assert "".join(pieces) == record["text"] == reply.response
    assert len(pieces) > 1
    assert last_assistant(chat) == record["text"]


async def test_astream_chat(index, squad):
    chat = AlignedChatEngine(context_chat(index), squad=squad)
    reply = await chat.astream_chat(HARMFUL)
    pieces = [p async for p in reply.async_response_gen()]
    record = reply.metadata["aligners"]
    assert record["applied"] == ["ethical"]
    assert "".join(pieces) == record["text"]
    assert last_assistant(chat) == record["text"]


def test_rejects_what_is_not_a_chat_engine(squad):
    with pytest.raises(TypeError, match="BaseChatEngine"):
        AlignedChatEngine(MockLLM(), squad=squad)  # type: ignore[arg-type]


def test_postprocessor_and_answer_alignment_in_a_context_chat_engine(index, squad):
    post = AlignerPostprocessor(squad=squad, mode="drop")
    inner = index.as_chat_engine(
        chat_mode=ChatMode.CONTEXT, llm=MockLLM(), node_postprocessors=[post], similarity_top_k=4
    )
    chat = post.wrap(inner)
    assert isinstance(chat, AlignedChatEngine)
    reply = chat.chat("Tell me everything")
    assert len(reply.source_nodes) == 3
    assert all("hurt" not in n.node.get_content() for n in reply.source_nodes)
    assert "hit them hard" not in reply.metadata["aligners"]["original"]
