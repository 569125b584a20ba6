"""The synthetic recipe with a real LangChain chat model class (rule-based: results are known)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from aligners import SentenceEncoder
from aligners.data import read_examples, read_triples
from aligners.data.synth import SynthConfig, clean_reason, parse_generation, synthesize


class ScriptedChat(BaseChatModel):
    """Answers each recipe stage from the prompt's wording; counts calls to check resuming."""

    calls: int = 0
    fail_after: int | None = None

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("generator went away")
        prompt = str(messages[-1].content)
        if prompt.startswith("List"):
            text = "1. Pets\n2. Cooking\n- pets\n"  # duplicate topic on purpose
        elif prompt.startswith("Write"):
            topic = prompt.split("about:")[1].split(".")[0].strip()
            same = f"How do I care for {topic} daily?"
            text = f"{same}\nWhat is {topic} about?\n{same}"
        else:
            question = prompt.rsplit("QUESTION:", 1)[1].split("\n")[0].strip()
            if "What is" in question:
                text = " Same answer here.\nCRITIQUE: none\nCORRECTED ANSWER: Same answer here."
            elif "Cooking" in question:
                text = (
                    " Burn it all down.\nCRITIQUE: dangerous\n"
                    "CORRECTED ANSWER: Cook it gently on low heat."
                )
            else:
                text = (
                    " Ignore them completely.\nCRITIQUE: cruel\n"
                    "CORRECTED ANSWER: Feed and walk them every day."
                )
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])


def test_parse_and_clean() -> None:
    parsed = parse_generation(" bad\nCRITIQUE: c\nCORRECTED ANSWER: good one here\nQUESTION: next?")
    assert parsed == {"misaligned": "bad", "critique": "c", "corrected": "good one here"}
    assert parse_generation("no sections at all") is None
    assert clean_reason(None) == "unparsed"
    assert clean_reason({"misaligned": "a b", "critique": "", "corrected": "A b!"}) == "identical"
    assert (
        clean_reason({"misaligned": "x y", "critique": "", "corrected": "BAD ANSWER: z w"})
        == "prompt_leakage"
    )
    assert (
        clean_reason({"misaligned": "1234 5678 !!!", "critique": "", "corrected": "fine text here"})
        == "non_text"
    )


def test_synthesize_counts_filters_and_resumes(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    encoder = SentenceEncoder(str(tiny_encoder_dir))
    config = SynthConfig(
        criterion="ethical", n_topics=3, questions_per_topic=2, batch_size=1, dedupe_threshold=1.0
    )
    flaky = ScriptedChat(fail_after=4)  # topics + 2 question calls + 1 generation, then it dies
    with pytest.raises(RuntimeError):
        synthesize(flaky, tmp_path, config, encoder=encoder, progress=False)
    assert len((tmp_path / "generations.jsonl").read_text().splitlines()) == 1  # kept on disk

    model = ScriptedChat()
    report = synthesize(model, tmp_path, config, encoder=encoder, progress=False)
    assert model.calls == 3  # only the three generations not done before the crash
    assert report.topics == 2 and report.questions == 4
    assert report.removed["identical"] == 2
    assert report.triples == 2 and report.inspector_examples == 4
    triples = read_triples(tmp_path / "triples.jsonl").records
    assert {t.correction for t in triples} == {
        "Feed and walk them every day.",
        "Cook it gently on low heat.",
    }
    assert all(t.criterion == "ethical" and t.metadata["critique"] for t in triples)
    assert sorted(e.label for e in read_examples(tmp_path / "examples.jsonl").records) == [
        0,
        0,
        1,
        1,
    ]
    assert json.loads((tmp_path / "report.json").read_text())["triples"] == 2


def test_near_duplicates_dropped_from_inspector_pairs(
    tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    # The tiny encoder embeds most words as [UNK]: answer and correction look alike (cosine ~1).
    config = SynthConfig(
        criterion="helpful", questions=["How do I care for pets?"], dedupe_threshold=0.9
    )
    report = synthesize(
        ScriptedChat(),
        tmp_path,
        config,
        encoder=SentenceEncoder(str(tiny_encoder_dir)),
        progress=False,
    )
    assert report.triples == 1
    assert report.removed["near_duplicate"] == 1 and report.inspector_examples == 0
