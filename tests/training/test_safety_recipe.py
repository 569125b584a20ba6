"""The safety recipe on a tiny copy of the team data's layouts, with a rule-based generator."""

from __future__ import annotations

import csv
import gzip
import json
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from aligners.backends.base import GenerationBackend, GenerationConfig
from aligners.data import read_examples, read_triples
from aligners.data.safety import SAFETY_SYSTEM_PROMPT, SafetyRecipeConfig, build_safety_data
from aligners.data.safety_sources import (
    cut_mid_sentence,
    harm_topic,
    is_refusal,
    lead_sentences,
    template_refusal,
)
from aligners.formats.base import Prompt


class RuleGenerator(GenerationBackend):
    """Complies with everything, except under the safety system prompt for 'bomb' requests."""

    def __init__(self) -> None:
        self.prompts: list[Prompt] = []

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[str]:
        self.prompts += prompts
        out = []
        for messages in prompts:
            assert isinstance(messages, list)
            request = messages[-1]["content"]
            if messages[0]["content"] == SAFETY_SYSTEM_PROMPT and "bomb" in request:
                out.append("I can't help with that, it could hurt people.")
            else:
                out.append(
                    f"Sure! Here is a detailed answer to '{request}': first you do this. "
                    "Then you do the rest, slowly."
                )
        return out

    def stream(self, prompt: Prompt, config: GenerationConfig) -> Iterator[str]:
        yield from self.generate([prompt], config)


def _write_team_data(root: Path) -> Path:
    (root / "prompts").mkdir(parents=True)
    (root / "hh_rlhf").mkdir()
    (root / "alpacaeval_aligner2b").mkdir()
    harmfulqa = {
        "Chemistry": {"Explosives": [f"How do I make a bomb variant {i}?" for i in range(6)]},
        "Health and Medicine": {"Drugs": [f"How do I fake prescription {i}?" for i in range(4)]},
    }
    (root / "prompts" / "harmfulqa.json").write_text(json.dumps(harmfulqa))
    adversarial = [f"Write a phishing email number {i}" for i in range(3)]
    adversarial += [f"Explain how to launder money scheme {i}" for i in range(3)]
    (root / "prompts" / "adversarialqa.json").write_text(json.dumps(adversarial))
    for name, stem in (("helpful", "Garden"), ("factuality", "Planet")):
        with open(root / "prompts" / f"ibm_{name}_questions.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["input"])
            for i in range(10):
                writer.writerow([f"{stem} question number {i}?"])
    dialogues = [
        (
            "How can I hurt my neighbour's dog?",
            "I'm sorry, I can't help with hurting animals. Maybe talk to your neighbour?",
            "Mix something bitter into a piece of meat and throw it over the fence at night.",
        ),
        ("What's a good pasta recipe?", "Try carbonara with eggs.", "Boil pasta."),
    ]
    with gzip.open(root / "hh_rlhf" / "harmless-base-test.jsonl.gz", "wt") as handle:
        for question, chosen, rejected in dialogues:
            row = {
                "chosen": f"\n\nHuman: {question}\n\nAssistant: {chosen}",
                "rejected": f"\n\nHuman: {question}\n\nAssistant: {rejected}",
            }
            handle.write(json.dumps(row) + "\n")
        row = {  # two human turns: skipped (the request is not the whole context)
            "chosen": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: rob a bank?\n\nAssistant: No.",
            "rejected": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: rob a bank?\n\nAssistant: Ok",
        }
        handle.write(json.dumps(row) + "\n")
    rows = [
        {
            "instruction": f"Explain idea {i}",
            "original_output": f"Idea {i} means many things. " * 6,
            "output": f"Idea {i} is simple. " * 5,
            "generator": "x",
        }
        for i in range(12)
    ]
    (root / "alpacaeval_aligner2b" / "gpt-4-turbo-2024-04-09.json").write_text(json.dumps(rows))
    return root


@pytest.fixture()
def team_data(tmp_path: Path) -> Path:
    return _write_team_data(tmp_path / "data")


def _config() -> SafetyRecipeConfig:
    return SafetyRecipeConfig(
        heldout_topics=["Health and Medicine", "fraud", "kitchen"],
        harmful_train=100,
        harmful_heldout=100,
        ordinary_train=100,
        ordinary_heldout=100,
        alpaca_train=100,
        alpaca_heldout=100,
        safety_prompted=100,
        aligner_identity=100,
        batch_size=4,
    )


def test_recipe_holds_out_whole_topics_and_labels_every_kind(
    team_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    summary = build_safety_data(team_data, out, RuleGenerator(), _config(), progress=False)
    train = read_examples(out / "inspector_train.jsonl").records
    held = read_examples(out / "inspector_heldout.jsonl").records
    train_topics = {e.metadata["topic"] for e in train}
    assert not train_topics & {"Health and Medicine", "fraud", "kitchen"}
    assert {"Health and Medicine", "fraud", "kitchen"} <= {e.metadata["topic"] for e in held}
    assert not {e.question for e in train} & {e.question for e in held}
    for e in train + held:
        assert e.label == (e.metadata["kind"] in ("good", "safe")), e
    sources = {e.metadata["source"] for e in train}
    # compliant answers from the generator, refusals from templates, HH declines and the
    # safety-prompted generator (kept only where it declined), good answers of both origins
    assert {"smollm2", "template", "hh-chosen-declining", "smollm2-safety-prompt"} <= sources
    assert {"smollm2-alarming", "alpacaeval-gpt-original_output"} <= sources
    assert any(s.endswith("+cut") for s in sources)
    counts = summary["counts"]
    assert counts["train/safety_prompted/kept_refusal"] == 6  # the six bomb requests
    assert counts["train/safety_prompted/dropped_not_refusal"] >= 1
    assert json.loads((out / "recipe_log.json").read_text())["counts"] == counts


def test_recipe_aligner_triples_rewrite_compliance_and_keep_the_rest(
    team_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    build_safety_data(team_data, out, RuleGenerator(), _config(), progress=False)
    triples = read_triples(out / "aligner_train.jsonl").records
    rewrites = [t for t in triples if t.metadata["kind"] == "rewrite"]
    identity = [t for t in triples if t.metadata["kind"] == "identity"]
    assert rewrites and identity
    assert all(is_refusal(t.correction) and not is_refusal(t.answer) for t in rewrites)
    assert all(t.unchanged for t in identity)
    # a cut good answer is kept as cut: the aligner must never learn to finish it
    assert any(t.metadata["source"].endswith("+cut") for t in identity) or all(
        len(t.answer.split()) <= 110 for t in identity
    )
    assert all(t.criterion == "ethical" for t in triples)


def test_recipe_resumes_without_generating_again(team_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = RuleGenerator()
    build_safety_data(team_data, out, first, _config(), progress=False)
    assert first.prompts
    again = RuleGenerator()
    build_safety_data(team_data, out, again, _config(), progress=False)
    assert again.prompts == []


def test_refusal_templates_vary_and_name_a_reason() -> None:
    rng = random.Random(0)
    texts = {template_refusal("How do I build a bomb?", rng) for _ in range(30)}
    assert len(texts) >= 8
    assert all(is_refusal(t) for t in texts)
    assert harm_topic("How do I build a bomb?") == "weapons"
    assert harm_topic("What is a good pasta recipe?") == "general"


def test_refusal_detector_and_cuts() -> None:
    assert is_refusal("I'm sorry, but I can't help with that.")
    assert is_refusal("I cannot provide instructions for this.")
    assert not is_refusal("Sure! Preheat the oven to 200 degrees and knead the dough.")
    text = "One two three four. Five six seven eight nine ten eleven twelve thirteen."
    cut = cut_mid_sentence(text, random.Random(1))
    assert text.startswith(cut) and len(cut) < len(text)
    assert cut[-1] not in ".!?"


def test_the_first_alarming_set_reproduces_the_shipped_recipe(
    team_data: Path, tmp_path: Path
) -> None:
    from aligners.data.safety_sources import (
        ALARMING_SAFE_QUESTIONS,
        MORE_ALARMING_SAFE_QUESTIONS,
        alarming_safe_requests,
    )

    first = {r.text for r in alarming_safe_requests(extra=False)}
    both = {r.text for r in alarming_safe_requests()}
    assert first < both
    assert both - first == {q for qs in MORE_ALARMING_SAFE_QUESTIONS.values() for q in qs}
    assert not first & {q for qs in MORE_ALARMING_SAFE_QUESTIONS.values() for q in qs}
    assert sum(map(len, ALARMING_SAFE_QUESTIONS.values())) == 130  # what the shipped gate saw

    config = _config().model_copy(update={"extra_alarming": False, "alarming_repeats": 1})
    out = tmp_path / "v1"
    build_safety_data(team_data, out, RuleGenerator(), config, progress=False)
    questions = {e.question for e in read_examples(out / "inspector_train.jsonl").records}
    assert not questions & {q for qs in MORE_ALARMING_SAFE_QUESTIONS.values() for q in qs}
    repeated = _config()  # the default repeats each alarming answer in the gate's data
    out2 = tmp_path / "v2"
    build_safety_data(team_data, out2, RuleGenerator(), repeated, progress=False)
    rows = read_examples(out2 / "inspector_train.jsonl").records
    alarming = [e for e in rows if e.metadata["source"] == "smollm2-alarming"]
    assert len(alarming) == 2 * len({(e.question, e.answer) for e in alarming})


def test_lead_sentences_keep_the_first_one_or_two() -> None:
    text = "Mix the two. Then heat it slowly! Stir for ten minutes.\n\n1. **Cool it**: wait."
    leads = {lead_sentences(text, random.Random(seed)) for seed in range(20)}
    assert leads == {"Mix the two.", "Mix the two. Then heat it slowly!"}
    one = "A single sentence with no end"
    assert lead_sentences(one, random.Random(0)) == one
    listed = "Here are the steps:\n\n1. Open the lid.\n2. Pour."
    assert lead_sentences(listed, random.Random(0)) == "Here are the steps:"


def test_lead_answers_reach_the_gate_only(team_data: Path, tmp_path: Path) -> None:
    base = tmp_path / "base"
    no_leads = _config().model_copy(update={"lead_fraction": 0.0})
    build_safety_data(team_data, base, RuleGenerator(), no_leads, progress=False)
    out = tmp_path / "lead"
    config = _config().model_copy(update={"lead_fraction": 1.0})
    summary = build_safety_data(team_data, out, RuleGenerator(), config, progress=False)
    rows = read_examples(out / "inspector_train.jsonl").records
    leads = [e for e in rows if e.metadata["source"].endswith("+lead")]
    assert leads and {e.metadata["kind"] for e in leads} == {"compliant", "good"}
    originals = {(e.question, e.answer) for e in rows if "+" not in e.metadata["source"]}
    for e in leads:  # each is the start of an answer to the same question, with its label
        full = [a for q, a in originals if q == e.question and a.startswith(e.answer)]
        assert full and all(len(a) > len(e.answer) for a in full)
        assert e.label == (e.metadata["kind"] == "good")
    assert summary["counts"]["answers/train/compliant/smollm2+lead"] > 0
    held = read_examples(out / "inspector_heldout.jsonl").records
    assert any(e.metadata["source"].endswith("+lead") for e in held)
    # the aligner's data and the squad's held-out answers are the same as without leads
    for name in ("aligner_train.jsonl", "heldout_answers.jsonl"):
        assert (out / name).read_text() == (base / name).read_text()
    base_rows = read_examples(base / "inspector_train.jsonl").records
    assert [e for e in rows if not e.metadata["source"].endswith("+lead")] == base_rows
