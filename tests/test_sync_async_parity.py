"""Sync and async paths give the same results on every surface (tiny real models)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk

from aligners import Aligner, FunctionInspector, Squad, SquadMember, get_criterion
from langchain_aligners import METADATA_KEY, AlignerSquad
from tests.conftest import RANDOM_MODEL

BAD = "Mix the powders and light the bomb fuse."
GOOD = "Bake the bread at 220 degrees for thirty minutes."


def flags_bomb(question: str, answer: str) -> float:
    return 0.0 if "bomb" in answer.lower() else 1.0


@pytest.fixture(params=["rewrite", "block", "rewrite_or_block"])
def squad(request: pytest.FixtureRequest, tiny_lm_dir: Any) -> Squad:
    members = [
        SquadMember(
            get_criterion(name),
            Aligner(
                str(tiny_lm_dir), format="chat", criterion=name, max_new_tokens=6, **RANDOM_MODEL
            ),
            FunctionInspector(flags_bomb, name),
        )
        for name in ("ethical", "helpful")
    ]
    return Squad(members, on_flag=request.param)


def _texts(results: list[Any]) -> list[tuple[str, str, list[str]]]:
    return [(r.text, r.action, r.applied) for r in results]


def test_engine_batch_and_stream(squad: Squad) -> None:
    questions, answers = ["q1", "q2", "q3"], [BAD, GOOD, f"{BAD} again"]
    sync = squad.align_batch(questions, answers)
    assert _texts(sync) == _texts(asyncio.run(squad.aalign_batch(questions, answers)))
    for question, answer, expected in zip(questions, answers, sync):
        stream = squad.stream(question, answer)
        text = "".join(stream)

        async def collect(q: str = question, a: str = answer) -> tuple[str, Any]:
            astream = squad.stream(q, a)
            return "".join([piece async for piece in astream]), astream.result

        atext, aresult = asyncio.run(collect())
        assert text.strip() == atext.strip()
        assert stream.result is not None and aresult is not None
        assert stream.result.action == aresult.action == expected.action
        if squad.config.on_flag != "rewrite":  # decided whole: the same text as align
            assert text == expected.text


def test_langchain_invoke_batch_stream(squad: Squad) -> None:
    parser = AlignerSquad(squad=squad)
    inputs = [BAD, GOOD, AIMessage(content=BAD, id="m")]
    sync = [parser.invoke(x) for x in inputs]

    async def run_async() -> tuple[list[Any], list[Any]]:
        return [await parser.ainvoke(x) for x in inputs], await parser.abatch(inputs)

    ainvoked, abatched = asyncio.run(run_async())
    batched = parser.batch(inputs)

    def key(value: Any) -> Any:
        if isinstance(value, AIMessage):
            return value.content, value.response_metadata[METADATA_KEY]["action"]
        return value

    assert [key(v) for v in sync] == [key(v) for v in ainvoked]
    assert [key(v) for v in sync] == [key(v) for v in batched] == [key(v) for v in abatched]
    streamed = "".join(parser.stream(GOOD))

    async def astreamed() -> str:
        return "".join([piece async for piece in parser.astream(GOOD)])

    assert streamed == asyncio.run(astreamed()) == GOOD
    chunks = list(parser.stream(AIMessage(content=BAD)))
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    assert isinstance(total, AIMessageChunk)
    assert total.response_metadata[METADATA_KEY]["action"] == key(sync[2])[1]


def test_sources_reach_the_squad_on_every_path() -> None:
    """The answer's context gives the same record sync, async, batched and streamed (engine and
    LangChain); the LlamaIndex paths are in tests/llamaindex/test_li_grounded.py."""
    from tests.grounding_helpers import MIXED_ANSWER, PASSAGES, REPAIRED_ANSWER, grounded_squad

    squad = grounded_squad()
    whole = squad.align("q", MIXED_ANSWER, context=PASSAGES)
    assert whole.text == REPAIRED_ANSWER
    batched = asyncio.run(squad.aalign_batch(["q"], [MIXED_ANSWER], [PASSAGES]))[0]
    assert batched.model_dump() == whole.model_dump()
    assert squad.check("q", MIXED_ANSWER, PASSAGES).flagged == ["grounded"]

    parser = AlignerSquad(squad=squad, output="record")
    value = {"question": "q", "answer": MIXED_ANSWER, "context": PASSAGES}

    async def run_async() -> tuple[Any, Any, Any]:
        pieces = [piece async for piece in parser.astream(value)]
        return await parser.ainvoke(value), (await parser.abatch([value]))[0], pieces[-1]

    records = [parser.invoke(value), parser.batch([value])[0], list(parser.stream(value))[-1]]
    records.extend(asyncio.run(run_async()))
    assert all(r["grounding"] == whole.to_record()["grounding"] for r in records)
    assert {r["text"] for r in records} == {REPAIRED_ANSWER}
