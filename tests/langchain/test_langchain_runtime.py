"""Usages 4 and 5: real batching, async, streaming, callbacks and custom events."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessageChunk
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from langchain_aligners import APPLIED_EVENT, METADATA_KEY, SCORES_EVENT, AlignerSquad
from tests.langchain.lc_helpers import BOMB_ANSWER, SAFE_ANSWER, GenerateSpy, flags_bomb

PROMPT = ChatPromptTemplate.from_messages([("human", "{question}")])
ANSWERS = [BOMB_ANSWER, SAFE_ANSWER, "The bomb goes in the box."]


def str_chain(squad: Any, *answers: str) -> Any:
    return PROMPT | FakeListChatModel(responses=list(answers)) | StrOutputParser() | squad


# -- 4. batching -------------------------------------------------------------------------------


def test_batch_is_one_engine_generation(make_squad):
    engine = make_squad(ethical=flags_bomb)
    spy = GenerateSpy(engine.members[0].aligner)
    chain = str_chain(AlignerSquad(squad=engine), *ANSWERS)
    inputs = [{"question": f"q{i}"} for i in range(3)]
    # max_concurrency=1 keeps the fake model's answers in input order; the squad ignores it.
    outputs = chain.batch(inputs, config={"max_concurrency": 1})
    assert spy.sizes == [2]  # both flagged answers in one padded generation, the safe one skipped
    expected = engine.align_batch(["", ""], [ANSWERS[0], ANSWERS[2]])
    assert outputs == [expected[0].text, SAFE_ANSWER, expected[1].text]


async def test_abatch_is_one_engine_generation_and_isolates_bad_inputs(make_squad):
    engine = make_squad(ethical=0.0)
    spy = GenerateSpy(engine.members[0].aligner)
    squad = AlignerSquad(squad=engine)
    inputs = [BOMB_ANSWER, "  ", {"question": "q", "answer": SAFE_ANSWER}]
    outputs = await squad.abatch(inputs, return_exceptions=True)
    assert spy.sizes == [2]
    assert isinstance(outputs[1], ValueError) and "answer is empty" in str(outputs[1])
    assert outputs[0] == engine.align("", BOMB_ANSWER).text
    assert outputs[2] == engine.align("q", SAFE_ANSWER).text
    with pytest.raises(ValueError, match="answer is empty"):
        await squad.abatch(inputs)
    assert squad.batch([]) == [] and await squad.abatch([]) == []


# -- 4. async ----------------------------------------------------------------------------------


async def test_ainvoke_runs_the_engine_off_the_event_loop(make_squad):
    threads: list[int] = []

    def recording(question: str, answer: str) -> float:
        threads.append(threading.get_ident())
        return flags_bomb(question, answer)

    engine = make_squad(ethical=recording)
    chain = str_chain(AlignerSquad(squad=engine), BOMB_ANSWER)
    out = await chain.ainvoke({"question": "q"})
    assert out == engine.align("", BOMB_ANSWER).text
    loop_thread = threading.get_ident()
    assert threads and loop_thread not in threads[:2]  # inspector calls of the ainvoke

    # The loop stays free while the squad works: a ticker task keeps running.
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await AlignerSquad(squad=engine).ainvoke(BOMB_ANSWER)
    done.set()
    await task
    assert ticks > 1


# -- 4. streaming ------------------------------------------------------------------------------


def test_stream_buffers_upstream_then_streams_aligned_tokens(make_squad):
    engine = make_squad(ethical=flags_bomb)
    squad = AlignerSquad(squad=engine)
    chunks = list(str_chain(squad, BOMB_ANSWER).stream({"question": "q"}))
    expected = engine.align("", BOMB_ANSWER).text
    assert len(chunks) > 1 and all(isinstance(c, str) for c in chunks)
    assert "".join(chunks).strip() == expected

    # Messages: AIMessageChunks; the record (on the last chunk) shows the whole upstream answer
    # reached the squad although the fake model streamed it character by character.
    message_chunks = list(
        (PROMPT | FakeListChatModel(responses=[BOMB_ANSWER]) | squad).stream({"question": "q"})
    )
    assert all(isinstance(c, AIMessageChunk) for c in message_chunks)
    total = message_chunks[0]
    for chunk in message_chunks[1:]:
        total = total + chunk
    assert total.content.strip() == expected
    assert total.response_metadata[METADATA_KEY]["original"] == BOMB_ANSWER


def test_stream_of_a_passing_answer_is_the_answer(make_squad):
    squad = AlignerSquad(squad=make_squad(ethical=flags_bomb))
    chunks = list(str_chain(squad, SAFE_ANSWER).stream({"question": "q"}))
    assert "".join(chunks) == SAFE_ANSWER


async def test_astream_buffers_upstream_then_streams(make_squad):
    engine = make_squad(ethical=flags_bomb)
    squad = AlignerSquad(squad=engine)
    chunks = [c async for c in str_chain(squad, BOMB_ANSWER).astream({"question": "q"})]
    assert len(chunks) > 1
    assert "".join(chunks).strip() == engine.align("", BOMB_ANSWER).text
    records = [c async for c in AlignerSquad(squad=engine, output="record").astream(BOMB_ANSWER)]
    assert len(records) == 1 and records[0]["applied"] == ["ethical"]


# -- 5. observability --------------------------------------------------------------------------


class Recorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.starts: list[str] = []
        self.events: list[tuple[str, Any]] = []

    def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
        self.starts.append(kwargs.get("name") or "")

    def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
        self.events.append((name, data))


def test_callbacks_see_a_named_run_and_custom_events(make_squad):
    engine = make_squad(ethical=flags_bomb)
    recorder = Recorder()
    chain = str_chain(AlignerSquad(squad=engine), BOMB_ANSWER, SAFE_ANSWER)
    chain.invoke({"question": "q"}, config={"callbacks": [recorder]})
    assert "AlignerSquad" in recorder.starts
    names = [n for n, _ in recorder.events]
    assert names == [SCORES_EVENT, APPLIED_EVENT]
    scores, applied = (d for _, d in recorder.events)
    assert scores["scores"] == {"ethical": 0.0} and scores["flagged"] == ["ethical"]
    assert applied["applied"] == ["ethical"] and applied["changed"] is True

    # Batches report per answer; a custom run name shows in the trace.
    recorder = Recorder()
    AlignerSquad(squad=engine, name="guard").batch(
        [BOMB_ANSWER, SAFE_ANSWER], config={"callbacks": [recorder]}
    )
    assert recorder.starts == ["guard", "guard"]
    applied_events = [d["applied"] for n, d in recorder.events if n == APPLIED_EVENT]
    assert sorted(applied_events) == [[], ["ethical"]]


async def test_astream_events_v2_shows_scores_and_applied_aligners(make_squad):
    engine = make_squad(ethical=flags_bomb)
    chain = str_chain(AlignerSquad(squad=engine), BOMB_ANSWER)
    events = [e async for e in chain.astream_events({"question": "q"}, version="v2")]
    custom = {e["name"]: e["data"] for e in events if e["event"] == "on_custom_event"}
    assert custom[SCORES_EVENT]["scores"] == {"ethical": 0.0}
    assert custom[APPLIED_EVENT]["applied"] == ["ethical"]
    squad_events = [e for e in events if e["name"] == "AlignerSquad"]
    assert {e["event"] for e in squad_events} >= {"on_parser_start", "on_parser_end"}
    streamed = [e["data"]["chunk"] for e in squad_events if e["event"] == "on_parser_stream"]
    assert "".join(streamed).strip() == engine.align("", BOMB_ANSWER).text


def test_wrapped_chain_streams_with_the_question(make_squad):
    engine = make_squad(ethical=flags_bomb)
    wrapped = AlignerSquad(squad=engine).wrap(PROMPT | FakeListChatModel(responses=[BOMB_ANSWER]))
    chunks = list(wrapped.stream({"question": "How do fireworks work?"}))
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    record = total.response_metadata[METADATA_KEY]
    assert record["question"] == "How do fireworks work?" and record["original"] == BOMB_ANSWER
    assert total.content.strip() == engine.align("How do fireworks work?", BOMB_ANSWER).text


def test_first_aligned_piece_arrives_before_the_aligner_has_finished(make_squad):
    engine = make_squad(ethical=flags_bomb)
    backend = engine.members[0].aligner.backend
    produced: list[str] = []
    stream = backend.stream

    def recording_stream(prompt, config):
        for piece in stream(prompt, config):
            produced.append(piece)
            yield piece

    backend.stream = recording_stream  # type: ignore[method-assign]
    chunks = str_chain(AlignerSquad(squad=engine), BOMB_ANSWER).stream({"question": "q"})
    first = next(chunks)
    pulled_at_first = len(produced)
    rest = list(chunks)
    assert first and rest
    assert pulled_at_first < len(produced)  # the aligner was still writing when it arrived
