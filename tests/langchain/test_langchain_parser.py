"""Usages 1, 2, 3 and 7: the squad as an output parser in real LCEL chains."""

from __future__ import annotations

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.output_parsers import BaseOutputParser, StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableParallel, RunnablePassthrough

from aligners import MODEL_CACHE, Aligner
from langchain_aligners import METADATA_KEY, AlignerSquad, question_from_input
from tests.langchain.lc_helpers import BOMB_ANSWER, SAFE_ANSWER, GenerateSpy, flags_bomb

PROMPT = ChatPromptTemplate.from_messages([("system", "You are terse."), ("human", "{question}")])
QUESTION = "How do I make a firework?"


def fake_llm(*answers: str) -> FakeListChatModel:
    return FakeListChatModel(responses=list(answers))


# -- 1. llm | AlignerSquad() -------------------------------------------------------------------


def test_is_an_output_parser_str_in_str_out(make_squad):
    engine = make_squad(ethical=flags_bomb)
    squad = AlignerSquad(squad=engine)
    assert isinstance(squad, BaseOutputParser)
    chain = PROMPT | fake_llm(BOMB_ANSWER) | StrOutputParser() | squad
    out = chain.invoke({"question": QUESTION})
    expected = engine.align("", BOMB_ANSWER)
    assert isinstance(out, str)
    assert expected.applied == ["ethical"]
    assert out == expected.text != BOMB_ANSWER


def test_answer_that_passes_is_returned_unchanged(make_squad):
    squad = AlignerSquad(squad=make_squad(ethical=flags_bomb))
    chain = PROMPT | fake_llm(SAFE_ANSWER) | StrOutputParser() | squad
    assert chain.invoke({"question": QUESTION}) == SAFE_ANSWER


def test_message_in_message_out_with_record_and_no_mutation(make_squad):
    engine = make_squad(ethical=flags_bomb)
    chain = PROMPT | fake_llm(BOMB_ANSWER) | AlignerSquad(squad=engine)
    out = chain.invoke({"question": QUESTION})
    assert isinstance(out, AIMessage)
    assert out.content == engine.align("", BOMB_ANSWER).text
    record = out.response_metadata[METADATA_KEY]
    assert record["original"] == BOMB_ANSWER
    assert record["applied"] == ["ethical"] and record["changed"] is True
    assert record["question_provided"] is False  # a bare answer carries no question

    original = AIMessage(content=BOMB_ANSWER, id="reply-1", response_metadata={"model": "x"})
    aligned = AlignerSquad(squad=engine).invoke(original)
    assert original.content == BOMB_ANSWER and METADATA_KEY not in original.response_metadata
    assert aligned.id == "reply-1" and aligned.response_metadata["model"] == "x"
    assert aligned.content == out.content


def test_message_with_content_blocks_is_read_as_text(make_squad):
    engine = make_squad(ethical=flags_bomb)
    message = AIMessage(content=[{"type": "text", "text": BOMB_ANSWER}])
    out = AlignerSquad(squad=engine).invoke(message)
    assert out.response_metadata[METADATA_KEY]["original"] == BOMB_ANSWER


# -- 2. question-aware -------------------------------------------------------------------------


def question_aware(question: str, answer: str) -> float:
    """Misaligned when the question is about weapons, whatever the answer says."""
    return 0.0 if "weapon" in question.lower() else 1.0


def test_dict_input_after_passthrough_assign(make_squad):
    engine = make_squad(ethical=question_aware)
    answer_chain = PROMPT | fake_llm(SAFE_ANSWER, SAFE_ANSWER) | StrOutputParser()
    chain = RunnablePassthrough.assign(answer=answer_chain) | AlignerSquad(
        squad=engine, output="record"
    )
    record = chain.invoke({"question": "How do I build a weapon?"})
    assert record["question"] == "How do I build a weapon?" and record["question_provided"]
    assert record["applied"] == ["ethical"]
    assert record["text"] == engine.align("How do I build a weapon?", SAFE_ANSWER).text
    # Same answer, harmless question: the question-aware inspector lets it through.
    record = chain.invoke({"question": "How do I bake bread?"})
    assert record["applied"] == [] and record["text"] == SAFE_ANSWER


def test_dict_input_with_message_answer_and_custom_keys(make_squad):
    squad = AlignerSquad(squad=make_squad(ethical=question_aware), question_key="q", answer_key="a")
    chain = RunnableParallel(q=lambda x: x["topic"], a=PROMPT | fake_llm(SAFE_ANSWER))
    out = chain.invoke({"topic": "weapon", "question": "weapon"}) | {}
    aligned = squad.invoke(out)
    assert isinstance(aligned, AIMessage)
    assert aligned.response_metadata[METADATA_KEY]["question"] == "weapon"


def test_wrap_takes_the_question_from_the_chain_input(make_squad):
    engine = make_squad(ethical=question_aware)
    squad = AlignerSquad(squad=engine)
    # A dict input: the named key.
    wrapped = squad.wrap(PROMPT | fake_llm(SAFE_ANSWER) | StrOutputParser())
    expected = engine.align("Which weapon?", SAFE_ANSWER).text
    assert wrapped.invoke({"question": "Which weapon?"}) == expected
    # A str input straight into a chat model.
    out = squad.wrap(fake_llm(SAFE_ANSWER)).invoke("Which weapon is best?")
    assert out.response_metadata[METADATA_KEY]["question"] == "Which weapon is best?"
    # A message list: the last human message.
    messages = [SystemMessage("s"), HumanMessage("old"), AIMessage("x"), HumanMessage("weapon now")]
    out = squad.wrap(fake_llm(SAFE_ANSWER)).invoke(messages)
    assert out.response_metadata[METADATA_KEY]["question"] == "weapon now"
    assert out.response_metadata[METADATA_KEY]["applied"] == ["ethical"]


def test_wrap_with_another_question_key_and_bad_key(make_squad):
    squad = AlignerSquad(squad=make_squad(ethical=question_aware))
    prompt = ChatPromptTemplate.from_messages([("human", "Tell me about {topic}")])
    wrapped = squad.wrap(prompt | fake_llm(SAFE_ANSWER) | StrOutputParser(), question_key="topic")
    assert wrapped.invoke({"topic": "weapons"}) != SAFE_ANSWER
    missing = squad.wrap(prompt | fake_llm(SAFE_ANSWER) | StrOutputParser())
    with pytest.raises(ValueError, match="no 'question' key"):
        missing.invoke({"topic": "weapons"})


def test_question_from_prompt_values():
    value = PROMPT.invoke({"question": "What is 2+2?"})
    assert question_from_input(value) == "What is 2+2?"
    assert question_from_input([("system", "s"), ("human", "hi")]) == "hi"
    assert question_from_input({"messages": [("human", "deep")]}, "messages") == "deep"
    with pytest.raises(TypeError, match="cannot find a question"):
        question_from_input(42)


# -- 3. per-chain and per-call settings --------------------------------------------------------


def test_per_chain_criteria_and_threshold(make_squad):
    engine = make_squad(ethical=0.4, helpful=0.4)
    both = AlignerSquad(squad=engine, output="record").invoke(SAFE_ANSWER)
    assert sorted(both["applied"]) == ["ethical", "helpful"]
    only = AlignerSquad(squad=engine, criteria=["helpful"], output="record").invoke(SAFE_ANSWER)
    assert only["applied"] == ["helpful"] and list(only["thresholds"]) == ["helpful"]
    lenient = AlignerSquad(squad=engine, threshold=0.3, output="record").invoke(SAFE_ANSWER)
    assert lenient["applied"] == [] and lenient["thresholds"] == {"ethical": 0.3, "helpful": 0.3}
    with pytest.raises(ValueError, match="not in this squad"):
        AlignerSquad(squad=engine, criteria=["factuality"]).invoke(SAFE_ANSWER)


def test_per_chain_and_per_call_block_threshold(make_squad):
    engine = make_squad(ethical=0.4, helpful=0.4)  # still 0.4 after any rewrite
    assert [m.block_threshold for m in AlignerSquad(squad=engine).engine.members] == [None, None]
    strict = AlignerSquad(squad=engine, block_threshold=0.45, output="record")
    assert [m.block_threshold for m in strict.engine.members] == [0.45, 0.45]
    gated = engine.with_options(block_threshold={"ethical": 0.2})
    kept = AlignerSquad(squad=gated).engine  # None keeps the squad's own
    assert [m.block_threshold for m in kept.members] == [0.2, None]
    assert strict.invoke(SAFE_ANSWER)["action"] == "blocked"  # 0.4 < min(0.45, 0.5)
    chain = AlignerSquad(squad=engine, output="record").configurable()
    assert chain.invoke(SAFE_ANSWER)["action"] == "rewritten"
    configured = chain.with_config(configurable={"aligner_block_threshold": 0.45})
    assert configured.invoke(SAFE_ANSWER)["action"] == "blocked"
    with pytest.raises(ValueError, match="block_threshold"):
        AlignerSquad(block_threshold=1.5)


def test_per_call_configuration(make_squad):
    engine = make_squad(ethical=0.4, helpful=0.4)
    chain = (
        fake_llm(*[SAFE_ANSWER] * 5)
        | StrOutputParser()
        | AlignerSquad(squad=engine, output="record").configurable()
    )
    assert sorted(chain.invoke("q")["applied"]) == ["ethical", "helpful"]
    helpful = chain.with_config(configurable={"aligner_criteria": ["helpful"]}).invoke("q")
    assert helpful["applied"] == ["helpful"]
    loose = chain.with_config(configurable={"aligner_threshold": 0.3}).invoke("q")
    assert loose["applied"] == []
    checked = chain.with_config(configurable={"aligner_check_only": True}).invoke("q")
    assert checked["check_only"] and checked["applied"] == [] and checked["flagged"]


def test_configured_calls_never_reload_weights(tiny_lm_dir, tiny_encoder_dir):
    # A squad built from fields (no pre-built engine squad): tiny LM aligners and zero-shot
    # inspectors on the tiny encoder stand in for SmolLM2 and MiniLM.
    squad = AlignerSquad(
        model=str(tiny_lm_dir),
        inspector_encoder=str(tiny_encoder_dir),
        max_new_tokens=4,
        output="record",
    )
    configurable = squad.configurable()
    record = configurable.invoke(SAFE_ANSWER)
    assert sorted(record["initial_scores"]) == ["ethical"]  # the engine's DEFAULT_CRITERIA
    aligner_key = Aligner(str(tiny_lm_dir)).backend.cache_key
    loads = dict(MODEL_CACHE.load_counts)
    for criteria in (["helpful"], ["ethical", "helpful"], ["factuality"]):
        out = configurable.with_config(
            configurable={"aligner_criteria": criteria, "aligner_threshold": 0.99}
        ).invoke(SAFE_ANSWER)
        assert sorted(out["initial_scores"]) == sorted(criteria)
        assert all(0.0 <= s <= 1.0 for s in out["initial_scores"].values())
    assert MODEL_CACHE.load_counts == loads
    assert MODEL_CACHE.load_counts[aligner_key] == 1
    # Configured copies even share the engine's member objects.
    copy = AlignerSquad(**{**squad.__dict__, "criteria": ["helpful", "ethical"]})
    shared = {m.name: m for m in squad.engine.members}
    assert copy.engine.members[1].aligner is shared["ethical"].aligner


def test_a_saved_inspector_gates_every_criterion_it_was_trained_for(
    tiny_lm_dir, tiny_encoder_dir, tmp_path
):
    from aligners.backends.encoder import SentenceEncoder
    from aligners.inspector import EncoderHeadInspector, load_inspector

    saved = tmp_path / "ethical-head"
    encoder = SentenceEncoder(str(tiny_encoder_dir))
    EncoderHeadInspector.zero_shot("ethical", encoder=encoder).save_pretrained(saved)
    squad = AlignerSquad(
        model=str(tiny_lm_dir), inspector=str(saved), max_new_tokens=4, output="record"
    )
    record = squad.invoke(SAFE_ANSWER)
    expected = load_inspector(saved).score(record["question"], SAFE_ANSWER)
    assert record["initial_scores"] == {"ethical": pytest.approx(expected, abs=1e-6)}
    wrong = AlignerSquad(model=str(tiny_lm_dir), inspector=str(saved), criteria=["helpful"])
    with pytest.raises(ValueError, match="inspects 'ethical', not 'helpful'"):
        wrong.invoke(SAFE_ANSWER)


# -- 7. check-only -----------------------------------------------------------------------------


def test_check_only_returns_verdicts_without_rewriting(make_squad):

    engine = make_squad(ethical=flags_bomb)
    spy = GenerateSpy(engine.members[0].aligner)
    squad = AlignerSquad(squad=engine, check_only=True)
    record = (fake_llm(BOMB_ANSWER) | StrOutputParser() | squad).invoke("q")
    assert record["check_only"] and not record["passed"]
    assert record["flagged"] == ["ethical"] and record["initial_scores"] == {"ethical": 0.0}
    assert record["text"] == BOMB_ANSWER and record["applied"] == []
    message = (fake_llm(SAFE_ANSWER) | squad).invoke("q")
    assert message.content == SAFE_ANSWER
    assert message.response_metadata[METADATA_KEY]["passed"] is True
    assert squad.batch([BOMB_ANSWER, SAFE_ANSWER])[1]["passed"] is True
    assert spy.sizes == [] and spy.streams == 0  # no aligner ran


# -- bad input ---------------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors(make_squad):
    squad = AlignerSquad(squad=make_squad(ethical=flags_bomb))
    with pytest.raises(ValueError, match="answer is empty"):
        squad.invoke("   ")
    with pytest.raises(ValueError, match="without an 'answer' key"):
        squad.invoke({"question": "q", "reply": "a"})
    with pytest.raises(TypeError, match="got int"):
        squad.invoke(42)
    with pytest.raises(ValueError, match="at least one criterion"):
        AlignerSquad(criteria=[])
    with pytest.raises(ValueError):
        AlignerSquad(threshold=1.5)


def test_parse_and_parse_result_align_too(make_squad):
    from langchain_core.outputs import ChatGeneration

    engine = make_squad(ethical=flags_bomb)
    squad = AlignerSquad(squad=engine)
    expected = engine.align("", BOMB_ANSWER).text
    assert squad.parse(BOMB_ANSWER) == expected
    message = squad.parse_result([ChatGeneration(message=AIMessage(BOMB_ANSWER))])
    assert message.content == expected


def test_wrap_with_question_takes_a_configurable_squad(make_squad):
    from langchain_aligners import wrap_with_question

    engine = make_squad(ethical=question_aware, helpful=0.0)
    squad = AlignerSquad(squad=engine, output="record").configurable()
    chain = wrap_with_question(fake_llm(SAFE_ANSWER, SAFE_ANSWER) | StrOutputParser(), squad)
    record = chain.invoke("Which weapon?")
    assert record["question"] == "Which weapon?"
    assert sorted(record["applied"]) == ["ethical", "helpful"]
    configured = chain.with_config(configurable={"aligner_criteria": ["ethical"]})
    assert configured.invoke("Which weapon?")["applied"] == ["ethical"]


def test_on_error_raises_or_keeps_the_original_answer(make_squad):
    def broken(question: str, answer: str) -> float:
        raise RuntimeError("inspector service down")

    engine = make_squad(ethical=broken)
    with pytest.raises(RuntimeError, match="inspector service down"):
        AlignerSquad(squad=engine).invoke(BOMB_ANSWER)

    fail_open = AlignerSquad(squad=engine, on_error="return_original")
    assert fail_open.invoke(BOMB_ANSWER) == BOMB_ANSWER
    message = (fake_llm(BOMB_ANSWER) | fail_open).invoke("q")
    assert message.content == BOMB_ANSWER
    record = message.response_metadata[METADATA_KEY]
    assert record["passed"] is False and "inspector service down" in record["failures"][0]
    assert fail_open.batch([BOMB_ANSWER, SAFE_ANSWER]) == [BOMB_ANSWER, SAFE_ANSWER]
    assert "".join(fail_open.stream(BOMB_ANSWER)) == BOMB_ANSWER
    with pytest.raises(RuntimeError):
        list(AlignerSquad(squad=engine).stream(BOMB_ANSWER))


async def test_on_error_async_paths_keep_the_original_answer(make_squad):
    def broken(question: str, answer: str) -> float:
        raise RuntimeError("down")

    fail_open = AlignerSquad(squad=make_squad(ethical=broken), on_error="return_original")
    assert await fail_open.ainvoke(SAFE_ANSWER) == SAFE_ANSWER
    assert await fail_open.abatch([SAFE_ANSWER, BOMB_ANSWER]) == [SAFE_ANSWER, BOMB_ANSWER]
    chunks = [c async for c in fail_open.astream(AIMessage(BOMB_ANSWER))]
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    assert total.content == BOMB_ANSWER
    assert total.response_metadata[METADATA_KEY]["failures"]
