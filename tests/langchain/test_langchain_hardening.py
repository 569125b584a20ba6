"""Bad and unusual inputs in the LangChain integration: clear errors, no lost answers."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage

from langchain_aligners import METADATA_KEY, AlignerSquad
from tests.langchain.lc_helpers import BOMB_ANSWER, SAFE_ANSWER, flags_bomb

IMAGE = {"type": "image", "url": "https://example.com/cat.png"}


def broken_squad() -> AlignerSquad:
    # An aligner model that cannot exist: building the squad fails when it is first used.
    return AlignerSquad(model="/nonexistent/model/dir", on_error="return_original")


async def test_stream_keeps_the_answer_when_the_squad_cannot_be_built() -> None:
    squad = broken_squad()
    assert "".join(squad.stream(SAFE_ANSWER)) == SAFE_ANSWER
    assert "".join([p async for p in squad.astream(SAFE_ANSWER)]) == SAFE_ANSWER
    chunks = list(squad.stream(AIMessage(content=SAFE_ANSWER)))
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    assert total.content == SAFE_ANSWER
    assert total.response_metadata[METADATA_KEY]["action"] == "failed"


async def test_empty_answer_under_return_original_comes_back_with_a_record(make_squad) -> None:
    squad = AlignerSquad(squad=make_squad(ethical=flags_bomb), on_error="return_original")
    message = squad.invoke(AIMessage(content="  "))
    record = message.response_metadata[METADATA_KEY]
    assert message.content == "  " and record["action"] == "failed"
    assert "answer is empty" in record["failures"][0]
    outputs = await squad.abatch([SAFE_ANSWER, ""])
    assert outputs == [SAFE_ANSWER, ""]
    assert "".join(squad.stream("")) == ""
    with pytest.raises(ValueError, match="answer is empty"):
        AlignerSquad(squad=make_squad(ethical=flags_bomb)).invoke("")


def test_a_question_that_is_not_text_says_so(make_squad) -> None:
    squad = AlignerSquad(squad=make_squad(ethical=flags_bomb))
    with pytest.raises(TypeError, match="type int"):
        squad.invoke({"question": 42, "answer": SAFE_ANSWER})


def test_unknown_criteria_are_named_at_configuration_and_per_call(make_squad) -> None:
    with pytest.raises(ValueError, match=r"unknown criteria \['ethicks'\]"):
        AlignerSquad(criteria=["ethicks"])
    configurable = AlignerSquad(squad=make_squad(ethical=flags_bomb)).configurable()
    with pytest.raises(ValueError, match=r"\['helpful'\] are not in this squad"):
        configurable.invoke(SAFE_ANSWER, config={"configurable": {"aligner_criteria": ["helpful"]}})


def test_non_text_parts_are_kept(make_squad) -> None:
    engine = make_squad(ethical=flags_bomb)
    squad = AlignerSquad(squad=engine)
    message = AIMessage(content=[{"type": "text", "text": BOMB_ANSWER}, IMAGE])
    out = squad.invoke(message)
    assert out.content[1] == IMAGE
    assert out.content[0] == {"type": "text", "text": engine.align("", BOMB_ANSWER).text}
    blocked = AlignerSquad(squad=engine, on_flag="block").invoke(message)
    assert isinstance(blocked.content, str)  # a withheld answer keeps nothing of the original


async def test_chat_model_past_its_context_errors_or_truncates(tiny_lm_dir) -> None:
    from langchain_core.messages import HumanMessage, SystemMessage

    from aligners import InputTooLongError
    from langchain_aligners import ChatAlignersLocal

    long_turn = "hello " * 600  # the tiny model's context is 512 tokens
    strict = ChatAlignersLocal(model=str(tiny_lm_dir), max_new_tokens=4)
    with pytest.raises(InputTooLongError, match=r"512-token context.*overflow='truncate'"):
        strict.invoke(long_turn)
    with pytest.raises(InputTooLongError):
        await strict.ainvoke(long_turn)
    with pytest.raises(InputTooLongError):
        list(strict.stream(long_turn))

    lenient = ChatAlignersLocal(model=str(tiny_lm_dir), max_new_tokens=4, overflow="truncate")
    conversation = [
        SystemMessage("be brief"),
        HumanMessage(long_turn),
        AIMessage("ok"),
        HumanMessage("and now " * 300),
    ]
    prompt = lenient._prompt(conversation)
    assert prompt[0] == {"role": "system", "content": "be brief"}  # kept
    assert prompt[-1]["content"].startswith("and now") and "[...]" in prompt[-1]["content"]
    assert len(prompt) == 2  # the oldest turns went first
    loaded = lenient.backend.load()
    from langchain_aligners.chat_model import _prompt_tokens

    assert _prompt_tokens(loaded.tokenizer, prompt) <= 512 - 4
    assert isinstance(lenient.invoke(conversation).content, str)
    short = [HumanMessage("hi")]
    assert lenient._prompt(short) == [{"role": "user", "content": "hi"}]  # untouched


def test_on_token_limit_reaches_the_aligners_and_is_validated() -> None:
    from pydantic import ValidationError

    accepting = AlignerSquad(criteria=["ethical"], max_new_tokens=16, on_token_limit="accept")
    default = AlignerSquad(criteria=["ethical"], max_new_tokens=16)
    # The squad's policy decides (aligners.SquadPolicy.on_token_limit), over the aligners' own.
    assert accepting.engine.config.policy.on_token_limit == "accept"
    assert default.engine.config.policy.on_token_limit is None  # each aligner's: keep_previous
    aligner = default.engine.members[0].aligner
    assert aligner is not None and aligner.config.on_token_limit == "keep_previous"
    with pytest.raises(ValidationError, match="on_token_limit"):
        AlignerSquad(on_token_limit="sometimes")
