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


def _usage(message):
    usage = message.usage_metadata
    assert usage is not None
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    return usage


def test_usage_finish_reason_and_model_name(llm):
    from langchain_aligners.chat_model import _prompt_tokens

    out = llm.invoke(MESSAGES)
    usage = _usage(out)
    loaded = llm.backend.load()
    assert usage["input_tokens"] == _prompt_tokens(loaded.tokenizer, to_chat_messages(MESSAGES))
    assert 1 <= usage["output_tokens"] <= 8
    meta = out.response_metadata
    assert meta["model_name"] == llm.model and meta["finish_reason"] in ("stop", "length")
    # "length" exactly when the reply used the whole budget without an end-of-sequence token
    assert (meta["finish_reason"] == "length") == (usage["output_tokens"] == 8)


def test_stream_usage_is_on_the_last_chunk_only(llm):
    chunks = list(llm.stream(MESSAGES))
    with_usage = [i for i, c in enumerate(chunks) if c.usage_metadata]
    assert with_usage == [len(chunks) - 1]  # LangChain sums usage over chunks: once, at the end
    assert chunks[-1].content == "" and chunks[-1].chunk_position == "last"
    full = chunks[0]
    for chunk in chunks[1:]:
        full += chunk
    invoked = llm.invoke(MESSAGES)
    assert _usage(full) == _usage(invoked)
    assert full.response_metadata["finish_reason"] == invoked.response_metadata["finish_reason"]
    assert full.response_metadata["model_name"] == llm.model


async def test_astream_usage_matches_invoke(llm):
    chunks = [c async for c in llm.astream(MESSAGES)]
    assert chunks[-1].usage_metadata == llm.invoke(MESSAGES).usage_metadata


def test_max_tokens_is_langchains_name_for_max_new_tokens(tiny_lm_dir):
    llm = ChatAlignersLocal(model=str(tiny_lm_dir), max_tokens=3)
    assert llm.max_new_tokens == 3 == llm.max_tokens
    assert llm._get_ls_params()["ls_max_tokens"] == 3
    assert _usage(llm.invoke(MESSAGES))["output_tokens"] <= 3
    # per call, as ChatOpenAI takes it (also through .bind)
    assert _usage(llm.invoke(MESSAGES, max_tokens=2))["output_tokens"] <= 2
    assert _usage(llm.bind(max_tokens=1).invoke(MESSAGES))["output_tokens"] == 1
    with pytest.raises(ValueError, match="max_tokens or max_new_tokens, not both"):
        ChatAlignersLocal(model=str(tiny_lm_dir), max_tokens=3, max_new_tokens=4)


def test_unknown_keywords_are_rejected_by_name(tiny_lm_dir):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="max_new_token"):
        ChatAlignersLocal(max_new_token=5)
    llm = ChatAlignersLocal(model=str(tiny_lm_dir), max_tokens=4)
    with pytest.raises(TypeError, match="unknown keyword argument.*top_q"):
        llm.invoke(MESSAGES, top_q=0.5)


def test_stop_and_timeout_fields(tiny_lm_dir):
    llm = ChatAlignersLocal(model=str(tiny_lm_dir), max_tokens=8)
    full = llm.invoke(MESSAGES).content
    stop = next(c for c in full[1:] if not c.isspace())  # a character after the first
    cut = ChatAlignersLocal(model=str(tiny_lm_dir), max_tokens=8, stop=[stop]).invoke(MESSAGES)
    assert stop not in cut.content and full.startswith(cut.content)
    assert cut.response_metadata["finish_reason"] == "stop"
    slow = ChatAlignersLocal(model=str(tiny_lm_dir), max_tokens=8, timeout=1e-6)
    assert slow.invoke(MESSAGES).response_metadata["finish_reason"] == "length"


def test_a_conversation_past_the_context_is_an_error_before_generating(tiny_lm_dir):
    from aligners import InputTooLongError

    llm = ChatAlignersLocal(model=str(tiny_lm_dir), max_tokens=8)
    with pytest.raises(InputTooLongError, match="512-token context"):
        llm.invoke("word " * 600)
    with pytest.raises(InputTooLongError):
        list(llm.stream("word " * 600))


def test_streaming_true_makes_invoke_stream(tiny_lm_dir, monkeypatch):
    llm = ChatAlignersLocal(model=str(tiny_lm_dir), max_tokens=8, streaming=True)
    streamed: list[int] = []
    original = llm._stream
    monkeypatch.setattr(
        ChatAlignersLocal, "_stream", lambda self, *a, **k: streamed.append(1) or original(*a, **k)
    )
    out = llm.invoke(MESSAGES)
    assert streamed == [1]  # LangChain took the streaming path, as streaming=True asks
    plain = ChatAlignersLocal(model=str(tiny_lm_dir), max_tokens=8).invoke(MESSAGES)
    assert out.content == plain.content and out.usage_metadata == plain.usage_metadata
