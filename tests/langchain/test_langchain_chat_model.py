"""ChatAlignersLocal: a LangChain chat model over the engine's transformers backend."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from aligners import MODEL_CACHE, Aligner, GenerationConfig
from langchain_aligners import AlignerSquad, ChatAlignersLocal
from langchain_aligners.chat_model import to_chat_messages
from tests.langchain.lc_helpers import flags_bomb


@pytest.fixture
def llm(tiny_lm_dir):
    return ChatAlignersLocal(model=str(tiny_lm_dir), max_new_tokens=8)


MESSAGES = [SystemMessage("Be brief."), HumanMessage("How do I bake bread?")]


def test_invoke_renders_the_chat_template_and_generates(llm):
    out = llm.invoke(MESSAGES)
    assert isinstance(out, AIMessage)
    rendered = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "How do I bake bread?"},
    ]
    raw = llm.backend.generate([rendered], GenerationConfig(max_new_tokens=8))[0]
    assert out.content == raw.strip() and out.content
    assert out.response_metadata["model_name"] == llm.model


def test_stream_and_astream_give_the_same_text(llm):
    chunks = list(llm.stream(MESSAGES))
    assert len(chunks) > 1 and all(isinstance(c, AIMessageChunk) for c in chunks)
    assert "".join(c.content for c in chunks).strip() == llm.invoke(MESSAGES).content


async def test_async_paths(llm):
    out = await llm.ainvoke(MESSAGES)
    chunks = [c async for c in llm.astream(MESSAGES)]
    assert "".join(c.content for c in chunks).strip() == out.content == llm.invoke(MESSAGES).content


def test_stop_strings_cut_the_reply(llm):
    full = llm.invoke(MESSAGES).content
    # Two visible characters from the middle of the reply serve as the stop string.
    start = next(i for i in range(len(full) // 2, len(full) - 1) if not full[i : i + 2].isspace())
    stop = full[start : start + 2].strip() or full[start]
    cut = llm.invoke(MESSAGES, stop=[stop]).content
    assert stop not in cut and full.startswith(cut)
    streamed = "".join(c.content for c in llm.stream(MESSAGES, stop=[stop]))
    assert stop not in streamed


def test_shares_weights_with_aligners_on_the_same_model(llm, tiny_lm_dir, make_squad):
    llm.invoke(MESSAGES)
    key = Aligner(str(tiny_lm_dir)).backend.cache_key
    before = MODEL_CACHE.load_counts[key]
    engine = make_squad(ethical=flags_bomb)
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | llm | StrOutputParser()
    out = (chain | AlignerSquad(squad=engine)).invoke({"q": "hi"})
    assert isinstance(out, str)
    assert MODEL_CACHE.load_counts[key] == before == 1


def test_message_roles():
    from langchain_core.messages import ChatMessage, ToolMessage

    roles = [
        m["role"]
        for m in to_chat_messages(
            [
                SystemMessage("s"),
                HumanMessage("h"),
                AIMessage("a"),
                ToolMessage("t", tool_call_id="1"),
                ChatMessage(role="critic", content="c"),
            ]
        )
    ]
    assert roles == ["system", "user", "assistant", "tool", "critic"]


def test_streamed_stop_strings_never_leak_a_prefix():
    from langchain_aligners.chat_model import _StopStream

    cutter = _StopStream(["STOP"])
    out = [cutter.feed(p) for p in ["Hello S", "T", "OP and more"]]
    assert "".join(out) + cutter.flush() == "Hello "
    assert cutter.stopped
    free = _StopStream(None)
    assert free.feed("a") + free.feed("b") + free.flush() == "ab"
    held = _StopStream(["</s>"])
    assert held.feed("text <") == "text " and held.flush() == "<"
