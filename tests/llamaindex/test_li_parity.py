"""LlamaIndex surface: query, aquery, streaming and async streaming give the same answer and
record for every on_flag policy (the engine and LangChain: tests/test_sync_async_parity.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from llama_index.core import VectorStoreIndex

from aligners import Squad
from llamaindex_aligners import AlignedQueryEngine
from tests.llamaindex.li_helpers import ScriptedLLM
from tests.test_sync_async_parity import BAD, GOOD, squad  # noqa: F401  (the policy fixture)


def engine(index: VectorStoreIndex, aligned_by: Squad, reply: str, streaming: bool) -> Any:
    inner = index.as_query_engine(
        llm=ScriptedLLM(reply=reply, calls=[]), similarity_top_k=1, streaming=streaming
    )
    return AlignedQueryEngine(inner, squad=aligned_by)


def outcome(response: Any) -> tuple[str, str, list[str]]:
    record = response.metadata["aligners"]
    return str(response.response).strip(), record["action"], record["applied"]


@pytest.mark.parametrize("reply", [BAD, GOOD])
def test_query_paths_agree(index: VectorStoreIndex, squad: Squad, reply: str) -> None:  # noqa: F811
    whole = engine(index, squad, reply, streaming=False).query("How do I do it?")
    later = asyncio.run(engine(index, squad, reply, streaming=False).aquery("How do I do it?"))
    assert outcome(later) == outcome(whole)

    streamed = engine(index, squad, reply, streaming=True).query("How do I do it?")
    text = "".join(streamed.response_gen)
    assert streamed.metadata["aligners"]["action"] == outcome(whole)[1]

    async def astreamed() -> tuple[str, Any]:
        response = await engine(index, squad, reply, streaming=True).aquery("How do I do it?")
        return "".join([piece async for piece in response.async_response_gen()]), response

    atext, aresponse = asyncio.run(astreamed())
    assert atext.strip() == text.strip()
    assert aresponse.metadata["aligners"]["action"] == outcome(whole)[1]
    if squad.config.on_flag != "rewrite":  # decided whole: the streams carry align's text
        assert text.strip() == outcome(whole)[0]
