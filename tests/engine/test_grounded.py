"""The grounded criterion: sources as an input of the engine, the sentence report, the repair floor.

The squad-level tests use a word-overlap context inspector (a sentence is supported when every
content word of it appears in one passage): the engine's contract is with any
:class:`ContextInspector`, and a rule that a reader can check by eye makes the expected repairs
obvious. The trained cross-encoder is exercised on a tiny random trunk here and with the shipped
weights in the end-to-end tests. Both live in tests/grounding_helpers.py (the integration, proxy
and CLI tests use them too).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from aligners import AlignmentViolation, Squad, SquadMember, get_criterion, load_inspector
from aligners.aligner.grounded import DEFAULT_NOT_COVERED, GroundedRepair
from aligners.inspector import FunctionInspector, GroundedInspector
from aligners.sources import (
    GroundingReport,
    SentenceSupport,
    as_passages,
    best_chunks,
    chunk_passages,
    claim_text,
    is_trivial,
    split_sentences,
)
from tests.grounding_helpers import (
    GROUNDED_ANSWER,
    MIXED_ANSWER,
    PASSAGES,
    WordOverlapInspector,
    grounded_squad,
)

# -- reading the text --------------------------------------------------------------------------


def test_sentences_keep_their_offsets_lines_and_abbreviations() -> None:
    text = "Dr. Smith met J. K. Rowling in the U.S. in 1997. Really?\n1. First item.\n- Second"
    spans = split_sentences(text)
    assert [s.text for s in spans] == [
        "Dr. Smith met J. K. Rowling in the U.S. in 1997.",
        "Really?",
        "1. First item.",
        "- Second",
    ]
    assert all(text[s.start : s.end] == s.text for s in spans)


@pytest.mark.parametrize(
    ("sentence", "trivial"),
    [
        ("Sure!", True),
        ("I hope this helps.", True),
        ("Let me know if you have any other questions.", True),
        ("Here's what the sources say:", True),
        ("Based on the provided context,", True),
        ("Sure, the tower is 330 metres tall.", False),
        ("Thanks to the new law, taxes fell 5%.", False),
        ("Paris.", False),
        ("The provided sources do not cover this question.", True),
        ("I don't know.", True),
        ("Do you know who wrote it?", True),
        ("**Which one would you like?**", True),
        ("The sources do not mention a tower in Rome, which is 20 m tall.", True),
        # conversation: replies and what the speaker likes or does not know, naming nothing
        ("My pleasure!", True),
        ("Good luck with your search.", True),
        ("That's a great choice.", True),
        ("Yes, I do like thrillers.", True),
        ("I love that movie!", True),
        ("Other than that I really don't know much about him.", True),
        ("I haven't seen it.", True),
        # ... but a reply that goes on, names something or says why is a claim
        ("No, it was directed by Nolan.", False),
        ("Well, it is a drama.", False),
        ("I love The Prestige.", False),
        ("I would like to recommend Inception.", False),
        ("I think it was released in 2014.", False),
        ("I like it because it won an award.", False),
    ],
)
def test_trivial_sentences_claim_nothing(sentence: str, trivial: bool) -> None:
    assert is_trivial(sentence) is trivial


def test_short_sentences_are_read_with_their_question() -> None:
    assert claim_text("What is the capital of France?", "Paris.") == (
        "What is the capital of France? Paris."
    )
    long = "**The capital of France is Paris.**"
    assert claim_text("Which city?", long) == "The capital of France is Paris."
    assert claim_text("Which city?", "2. The capital is Paris, a large city.") == (
        "The capital is Paris, a large city."
    )


def test_long_sources_are_cut_into_overlapping_windows_of_whole_sentences() -> None:
    sentences = [f"Sentence number {i} talks about topic{i} in ten words here." for i in range(30)]
    chunks = chunk_passages([" ".join(sentences), "A second short passage."], max_words=40)
    assert all(len(text.split()) <= 40 for _, text in chunks)
    assert chunks[-1] == (1, "A second short passage.")
    first, second = chunks[0][1], chunks[1][1]
    assert first.split(". ")[-1].rstrip(".") in second  # one sentence of overlap
    text = " ".join(t for i, t in chunks if i == 0)
    assert all(s in text for s in sentences)
    picked = best_chunks("What does topic17 say?", [t for _, t in chunks], top=2)
    assert "topic17" in chunks[picked[0]][1]


def test_contexts_are_checked_with_clear_errors() -> None:
    assert as_passages(None) == ()
    assert as_passages("  ") == ()
    assert as_passages(["a", " ", "b"]) == ("a", "b")
    with pytest.raises(TypeError, match=r"context\[1\] must be a str passage, got int"):
        as_passages(["a", 3])
    with pytest.raises(TypeError, match="str or a list of str passages, got bytes"):
        as_passages(b"abc")
    with pytest.raises(ValueError, match="lone surrogate"):
        as_passages(["ok", "bad \udc80"])


# -- the repair floor -------------------------------------------------------------------------


def _report(answer: str, unsupported: set[int]) -> GroundingReport:
    sentences = [
        SentenceSupport(
            text=s.text,
            start=s.start,
            end=s.end,
            trivial=is_trivial(s.text),
            score=None if is_trivial(s.text) else (0.1 if i in unsupported else 0.9),
            supported=i not in unsupported,
            passage=0,
        )
        for i, s in enumerate(split_sentences(answer))
    ]
    return GroundingReport(
        score=0.1 if unsupported else 0.9, threshold=0.5, passages=1, sentences=sentences
    )


def test_repair_drops_unsupported_sentences_and_keeps_the_rest_byte_for_byte() -> None:
    answer = "Sure!  The tower is in Paris.\n\nIt opened in 1925.\n- It is 330 m tall. Bye!"
    repaired = GroundedRepair().repair(answer, _report(answer, {2})).text
    assert repaired == "Sure!  The tower is in Paris.\n- It is 330 m tall. Bye!"
    assert GroundedRepair().repair(answer, _report(answer, set())).text is answer


def test_repair_says_the_sources_do_not_cover_what_has_no_support_left() -> None:
    answer = "Sure! It opened in 1925. I hope this helps."
    assert GroundedRepair().repair(answer, _report(answer, {1})).text == DEFAULT_NOT_COVERED
    custom = GroundedRepair(not_covered="Not in the documents.")
    assert custom.repair(answer, _report(answer, {1})).text == "Not in the documents."
    with pytest.raises(ValueError, match="not_covered must have text"):
        GroundedRepair(not_covered=" ")


# -- the squad with sources --------------------------------------------------------------------


def test_squad_repairs_an_unsupported_answer_and_records_each_sentence() -> None:
    result = grounded_squad().align("Tell me about the tower.", MIXED_ANSWER, context=PASSAGES)
    assert result.text == (
        "The Eiffel Tower is in Paris. Gustave Eiffel's company built the tower. I hope this helps!"
    )
    assert result.action == "rewritten" and result.flagged == ["grounded"]
    assert result.initial_scores == {"grounded": 0.1}
    assert result.final_scores == {"grounded": 1.0}
    report = result.grounding  # the check the repair acted on: it names what was dropped
    assert report is not None
    assert [s.text for s in report.unsupported] == ["It was completed in 1925 by Napoleon."]
    stage = result.stages[0]
    assert stage.criterion == "grounded" and stage.applied and stage.changed
    record = result.to_record()
    verdicts = [(s["supported"], s["passage"]) for s in record["grounding"]["sentences"]]
    assert verdicts == [(True, 0), (False, 0), (True, 1), (True, None)]


def test_a_grounded_answer_comes_back_unchanged() -> None:
    result = grounded_squad().align("Where is it?", GROUNDED_ANSWER, context=PASSAGES)
    assert result.text == GROUNDED_ANSWER and result.action == "passed"
    assert result.grounding is not None
    assert [s.trivial for s in result.grounding.sentences] == [True, False, False]


def test_without_a_context_grounded_is_skipped_with_the_reason() -> None:
    result = grounded_squad().align("Where is it?", MIXED_ANSWER)
    assert result.text == MIXED_ANSWER and result.action == "passed"
    assert "no context" in result.not_inspected["grounded"]
    assert result.final_scores == {} and result.grounding is None
    assert result.passed


def test_batches_mix_answers_with_and_without_sources() -> None:
    inspector = WordOverlapInspector()
    other = SquadMember(get_criterion("helpful"), None, FunctionInspector(lambda q, a: 0.9))
    squad = Squad([SquadMember(get_criterion("grounded"), GroundedRepair(), inspector, 0.5), other])
    results = squad.align_batch(
        ["q1", "q2", "q3"],
        [MIXED_ANSWER, MIXED_ANSWER, GROUNDED_ANSWER],
        contexts=[PASSAGES, None, " ".join(PASSAGES)],
    )
    assert [r.action for r in results] == ["rewritten", "passed", "passed"]
    assert results[1].not_inspected and not results[0].not_inspected
    assert results[1].final_scores == {"helpful": 0.9}
    assert inspector.calls == 2  # the initial check and the re-check of the repaired answer
    scores = squad.score(["q1", "q2"], [MIXED_ANSWER, MIXED_ANSWER], contexts=[PASSAGES, None])
    assert scores == {"grounded": [0.1, None], "helpful": [0.9, 0.9]}


def test_bad_contexts_fail_clearly_or_cost_only_their_answer() -> None:
    squad = grounded_squad()
    with pytest.raises(ValueError, match=r"contexts and answers differ in length \(1 vs 2\)"):
        squad.align_batch(["q", "q"], ["a.", "b."], contexts=[PASSAGES])
    with pytest.raises(TypeError, match="one context .* per answer, got str"):
        squad.align_batch(["q"], ["a."], contexts="one passage")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"contexts\[0\]\[1\] must be a str passage"):
        squad.align_batch(["q"], ["a."], contexts=[["ok", 7]])
    forgiving = grounded_squad(on_error="return_original")
    results = forgiving.align_batch(
        ["q", "q"], [MIXED_ANSWER, MIXED_ANSWER], contexts=[[None], PASSAGES]
    )
    assert results[0].action == "failed" and results[0].text == MIXED_ANSWER
    assert "contexts[0][0]" in results[0].failures[0]
    assert results[1].action == "rewritten"


def test_policies_act_on_grounding_flags() -> None:
    checked = grounded_squad(check_only=True).align("q", MIXED_ANSWER, context=PASSAGES)
    assert checked.text == MIXED_ANSWER and checked.action == "flagged"
    assert checked.grounding is not None and len(checked.grounding.unsupported) == 1
    blocked = grounded_squad(on_flag="block").align("q", MIXED_ANSWER, context=PASSAGES)
    assert blocked.action == "blocked" and "grounded 0.10 < 0.50" in str(blocked.block_reason)
    with pytest.raises(AlignmentViolation):
        grounded_squad(on_flag="raise").align("q", MIXED_ANSWER, context=PASSAGES)


def test_sync_async_and_stream_agree_with_sources() -> None:
    squad = grounded_squad()
    whole = squad.align("q", MIXED_ANSWER, context=PASSAGES)
    later = asyncio.run(squad.aalign("q", MIXED_ANSWER, context=PASSAGES))
    assert later.model_dump() == whole.model_dump()
    stream = squad.stream("q", MIXED_ANSWER, context=PASSAGES)
    assert "".join(stream) == whole.text
    assert stream.result is not None and stream.result.model_dump() == whole.model_dump()

    async def consume() -> str:
        pieces = [piece async for piece in squad.stream("q", MIXED_ANSWER, context=PASSAGES)]
        return "".join(pieces)

    assert asyncio.run(consume()) == whole.text


# -- the trained inspector on a tiny random trunk ----------------------------------------------


def test_grounded_inspector_reports_every_sentence(tiny_grounded_dir: Path) -> None:
    inspector = load_inspector(tiny_grounded_dir)
    assert isinstance(inspector, GroundedInspector)
    assert inspector.settings.chunk_words == 8 and inspector.default_threshold == 0.5
    answer = "Sure! The tower stands in Paris. Builders finished it in 1889."
    passages = ["the tower stands in paris", "builders finished the tower"]
    report = inspector.verify_batch(["q"], [answer], [passages])[0]
    assert [s.trivial for s in report.sentences] == [True, False, False]
    for sentence in report.sentences:
        assert answer[sentence.start : sentence.end] == sentence.text
        if not sentence.trivial:
            assert sentence.score is not None and sentence.passage in (0, 1)
            assert sentence.supported == (sentence.score >= 0.5)
    assert report.score == min(s.score for s in report.sentences if s.score is not None)
    strict = inspector.verify_batch(["q"], [answer], [passages[:1]], threshold=1.0)[0]
    assert strict.unsupported == [s for s in strict.sentences if not s.trivial]


def test_grounded_inspector_batches_like_single_calls(tiny_grounded_dir: Path) -> None:
    inspector = GroundedInspector.from_pretrained(tiny_grounded_dir)
    questions = ["which question?", "q"]
    answers = ["Paris.", "The tower stands in Paris. Builders finished it in 1889."]
    contexts = [["paris is a city", "nothing here"], "the tower stands in paris"]
    together = inspector.score_batch(questions, answers, contexts)
    alone = [inspector.score(q, a, c) for q, a, c in zip(questions, answers, contexts)]
    assert together == pytest.approx(alone, abs=1e-5)
    assert inspector.score("q", "Sure! I hope this helps.", "anything") == 1.0


def test_grounded_inspector_needs_sources(tiny_grounded_dir: Path) -> None:
    inspector = GroundedInspector.from_pretrained(tiny_grounded_dir)
    with pytest.raises(ValueError, match="needs one context per answer"):
        inspector.score_batch(["q"], ["a."])
    with pytest.raises(ValueError, match="needs the sources"):
        inspector.score("q", "a.")
    with pytest.raises(ValueError, match="nothing to check answer 0 by"):
        inspector.score_batch(["q"], ["a."], [[" "]])
    with pytest.raises(ValueError, match="inspects 'grounded', not 'ethical'"):
        load_inspector(tiny_grounded_dir, criterion="ethical")


def test_default_squad_builds_grounded_with_the_repair_floor(tiny_grounded_dir: Path) -> None:
    squad = Squad.default(["grounded"], inspector=tiny_grounded_dir)
    member = squad.members[0]
    assert isinstance(member.aligner, GroundedRepair)
    assert isinstance(member.inspector, GroundedInspector) and member.threshold == 0.5
    result = squad.align("q", "The tower stands in Paris.", context="the tower in paris")
    assert result.grounding is not None and result.action in ("passed", "rewritten")
    with pytest.raises(ValueError, match="grounded has no zero-shot inspector"):
        Squad.default(["grounded"], inspector_encoder="minilm")


def test_numbers_and_names_no_passage_holds_are_found() -> None:
    from aligners.sources import missing_terms

    passages = [
        "The Eiffel Tower in Paris was built from 1887 to 1889 by Gustave Eiffel's company.",
        "It is 330 metres (1,083 ft) tall.",
    ]
    assert missing_terms("The Eiffel Tower is 330 metres tall.", passages) == []
    assert missing_terms("It is 1083 ft tall and opened in 1889.", passages) == []
    assert missing_terms("It is 450 metres tall.", passages) == ["450"]
    assert missing_terms("It was built by Napoleon in 1887.", passages) == ["Napoleon"]
    assert missing_terms("It was built by Napoleon.", passages, names=False) == []
    assert missing_terms("Gustave Eiffel's firm built it.", passages) == []


def test_a_missing_number_caps_the_sentence(tiny_grounded_dir: Path) -> None:
    from aligners.inspector.grounded import GroundingSettings

    inspector = GroundedInspector.from_pretrained(tiny_grounded_dir)
    passages = [["The tower stands in Paris since 1889."]]
    answer = "The tower stands in Paris since 1925. The tower stands in Paris since 1889."
    free = inspector.verify_batch(["q"], [answer], passages, threshold=0.0)[0]
    # listed whatever the settings; only missing_cap (or a combiner) turns them into a score
    assert all(s.supported for s in free.sentences)
    assert [s.missing for s in free.sentences] == [["1925"], []]
    inspector.settings = GroundingSettings(missing_cap=0.05)
    capped = inspector.verify_batch(["q"], [answer], passages, threshold=0.1)[0]
    first, second = capped.sentences
    assert first.missing == ["1925"] and first.score == 0.05 and not first.supported
    assert second.missing == [] and second.score == free.sentences[1].score


def test_a_combiner_scores_sentences_from_their_evidence(tiny_grounded_dir: Path) -> None:
    import math

    from aligners.inspector.grounded import GroundingSettings, SupportCombiner

    # Only the missing number counts here: sigmoid(5 - 10) for the sentence with one, else 5.
    combiner = SupportCombiner(features=["missing_numbers"], weights=[-10.0], bias=5.0)
    inspector = GroundedInspector.from_pretrained(tiny_grounded_dir)
    inspector.settings = GroundingSettings(combiner=combiner)
    passages = [["The tower stands in Paris since 1889."]]
    answer = "The tower stands in Paris since 1925. The tower stands in Paris since 1889."
    first, second = inspector.verify_batch(["q"], [answer], passages, threshold=0.5)[0].sentences
    assert math.isclose(first.score, 1 / (1 + math.exp(5))) and not first.supported
    assert math.isclose(second.score, 1 / (1 + math.exp(-5))) and second.supported
    assert first.missing == ["1925"]


def test_a_flipped_negation_is_evidence() -> None:
    from aligners.sources import closest_sentence, negated

    window = "The tower is in Paris. It was not painted gold. Bread needs flour."
    assert closest_sentence("The tower was painted gold.", [window]) == "It was not painted gold."
    assert negated("It wasn\u2019t painted.") and negated("He never won.")
    assert not negated("Notable towers are tall.")


def test_the_combiner_ships_in_the_config(tiny_grounded_dir: Path, tmp_path: Path) -> None:
    import json
    import shutil

    from aligners.inspector.grounded import SENTENCE_FEATURES, SupportCombiner

    directory = tmp_path / "grounded"
    shutil.copytree(tiny_grounded_dir, directory)
    config = json.loads((directory / "inspector_config.json").read_text())
    weights = [0.5, 2.0, 3.0, -2.0, -2.0, -2.0]
    config["grounding"] = {"combiner": {"features": list(SENTENCE_FEATURES), "weights": weights}}
    (directory / "inspector_config.json").write_text(json.dumps(config))
    inspector = GroundedInspector.from_pretrained(directory)
    assert inspector.settings.combiner == SupportCombiner(
        features=list(SENTENCE_FEATURES), weights=weights
    )
    evidence = inspector.evidence(["q"], ["The tower is in Rome."], [["The tower is in Paris."]])
    ((_, passage, features, missing),) = evidence[0]
    assert passage == 0 and missing == [] and set(features) == set(SENTENCE_FEATURES)
    assert features["context_share"] == 0.8  # 4 of its 5 words: "rome" is not in the passage
    assert 0 < features["window_coverage"] < 1
    report = inspector.verify_batch(["q"], ["The tower is in Rome."], [["The tower is in Paris."]])
    assert report[0].score == pytest.approx(inspector.settings.combiner.probability(features))
    with pytest.raises(ValueError, match="unknown combiner features"):
        SupportCombiner(features=["length"], weights=[1.0])
    with pytest.raises(ValueError, match="1 combiner features but 2 weights"):
        SupportCombiner(features=["support"], weights=[1.0, 2.0])


def test_one_window_is_read_when_the_best_holds_the_whole_claim(
    tiny_grounded_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aligners.inspector.grounded import GroundingSettings

    inspector = GroundedInspector.from_pretrained(tiny_grounded_dir)
    read: list[int] = []
    original = inspector.support_logits

    def counting(passages, claims):  # type: ignore[no-untyped-def]
        read.append(len(claims))
        return original(passages, claims)

    monkeypatch.setattr(inspector, "support_logits", counting)
    passages = [["The tower stands in Paris.", "The tower is tall.", "Bread needs flour."]]
    answer = "The tower stands in Paris. The tower stands in Rome."
    inspector.settings = GroundingSettings(top_passages=2)
    inspector.verify_batch(["q"], [answer], passages)
    inspector.settings = GroundingSettings(top_passages=2, one_window_coverage=1.0)
    inspector.verify_batch(["q"], [answer], passages)
    # "Rome" is in no window, so the second sentence still reads two
    assert read == [4, 3]


def test_a_quantized_trunk_is_cached_apart_and_scores(tiny_grounded_dir: Path) -> None:
    from aligners.inspector.cross_encoder import CrossEncoderTrunk

    plain = GroundedInspector.from_pretrained(tiny_grounded_dir)
    quantized = GroundedInspector.from_pretrained(tiny_grounded_dir)
    quantized.trunk = CrossEncoderTrunk(plain.trunk.config, plain.trunk.directory, quantized=True)
    assert quantized.trunk.cache_key != plain.trunk.cache_key
    scores = quantized.support(["The tower is in Paris."], ["It is in Paris."])
    assert len(scores) == 1 and 0.0 < scores[0] < 1.0
