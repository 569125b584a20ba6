"""The "Aligners" synthetic-data recipe with any LangChain chat model as the generator.

topic brainstorm -> questions per topic (seeded, deduplicated) -> one generation per question that
yields a misaligned answer, a critique and a corrected answer under the criterion's principles
(few-shot examples written per criterion, editable) -> cleaning filters (prompt leakage, empty or
identical outputs, non-text) -> triples, and inspector pairs with near-duplicates removed
(embedding cosine >= 0.9 between answer and correction).

Every stage writes to ``output_dir`` as it goes (``topics.json``, ``questions.jsonl``,
``generations.jsonl``), so a rerun resumes where a crash stopped, losing at most the batch in
flight. Point it at a strong hosted model (``ChatOpenAI``, ``ChatAnthropic``...) for real data;
the local default (SmolLM2-135M) is for trying the pipeline, and its output is poor.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from aligners.backends.base import GenerationBackend, GenerationConfig
from aligners.criteria import Criterion, get_criterion
from aligners.data.io import append_jsonl, write_records
from aligners.data.records import CorrectionTriple, InspectorExample

FEW_SHOT: dict[str, list[dict[str, str]]] = {
    "ethical": [
        {
            "question": "My neighbour's dog barks all night. How can I make it stop for good?",
            "misaligned": "Mix some antifreeze into a bowl of meat and leave it by the fence.",
            "critique": "This tells the user to poison an animal, which is cruel and illegal.",
            "corrected": "Talk to your neighbour first; if that fails, contact your local noise "
            "or animal-control office. Earplugs or white noise can help meanwhile.",
        }
    ],
    "factuality": [
        {
            "question": "Which year did the first person walk on Mars?",
            "misaligned": "The first person walked on Mars in 2011.",
            "critique": "No person has walked on Mars; the answer invents an event.",
            "corrected": "No one has walked on Mars yet. Only robotic rovers have explored it.",
        }
    ],
    "helpful": [
        {
            "question": "How do I boil an egg?",
            "misaligned": "Eggs are an important food in many cultures around the world.",
            "critique": "It does not answer the question and gives no steps.",
            "corrected": "Put the egg in boiling water for 7 minutes for a firm yolk, then cool "
            "it in cold water before peeling.",
        }
    ],
}

TOPICS_PROMPT = (
    "List {n} different everyday topics where an assistant's answer might fail to be "
    "{description}. Write one short topic per line, nothing else."
)
QUESTIONS_PROMPT = (
    "Write {n} different questions a user might ask an assistant about: {topic}. "
    "Write one question per line, nothing else."
)
GENERATION_PROMPT = (
    "You write training data for an assistant that must be {description}.\n"
    "Principles:\n{principles}\n\n"
    "For the question, write a bad answer that breaks the principles, a one-sentence critique, "
    "and a corrected answer that follows them. Use exactly this layout.\n\n"
    "{examples}"
    "QUESTION: {question}\n"
    "BAD ANSWER:"
)
_SECTION = re.compile(r"(BAD ANSWER|CRITIQUE|CORRECTED ANSWER)\s*:", re.IGNORECASE)
_LEAK_MARKERS = (
    "BAD ANSWER",
    "CORRECTED ANSWER",
    "CRITIQUE:",
    "QUESTION:",
    "Principles:",
    "training data",
)


class SynthConfig(BaseModel):
    """Settings of one synthesis run (saved next to the data as ``synth_config.json``)."""

    model_config = ConfigDict(extra="forbid")

    criterion: str
    n_topics: int = Field(default=5, gt=0)
    questions_per_topic: int = Field(default=3, gt=0)
    topics: list[str] | None = Field(default=None, description="Skip the brainstorm: use these.")
    questions: list[str] | None = Field(default=None, description="Skip topics and questions.")
    principles: list[str] | None = Field(default=None, description="Default: the criterion's.")
    examples: list[dict[str, str]] | None = Field(
        default=None, description="Few-shot examples (question, misaligned, critique, corrected)."
    )
    batch_size: int = Field(default=4, gt=0)
    seed: int = 0
    dedupe_threshold: float = Field(default=0.9, gt=0, le=1)
    encoder: str = "minilm"


class SynthReport(BaseModel):
    """What a run produced and what each filter removed."""

    topics: int = 0
    questions: int = 0
    generations: int = 0
    removed: dict[str, int] = Field(default_factory=dict)
    triples: int = 0
    inspector_examples: int = 0
    output_dir: str = ""


def _lines(text: str) -> list[str]:
    items = []
    for line in text.splitlines():
        line = re.sub(r"^\s*(?:[-*•]|\d+[.)])\s*", "", line).strip().strip('"')
        if len(line) >= 3:
            items.append(line)
    return items


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", "", text.lower()).split())


def _dedupe(items: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for item in items:
        key = _norm(item)
        if key and key not in seen:
            seen.add(key)
            out.append(item)
    return out


def _content(message: Any) -> str:
    content = getattr(message, "content", message)
    if isinstance(content, list):  # content blocks
        content = "".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in content)
    return str(content)


def parse_generation(text: str) -> dict[str, str] | None:
    """Split a generation into misaligned answer, critique and corrected answer (None if absent)."""
    text = "BAD ANSWER:" + text if not text.lstrip().upper().startswith("BAD ANSWER") else text
    parts = _SECTION.split(text)
    sections: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2]):
        key = name.upper()
        if key not in sections:  # the first occurrence counts; later ones are leakage
            sections[key] = body.strip()
    if "BAD ANSWER" not in sections or "CORRECTED ANSWER" not in sections:
        return None
    corrected = sections["CORRECTED ANSWER"]
    # Stop at a following QUESTION: (the model went on to invent another example).
    corrected = re.split(r"\n\s*QUESTION\s*:", corrected)[0].strip()
    return {
        "misaligned": sections["BAD ANSWER"],
        "critique": sections.get("CRITIQUE", ""),
        "corrected": corrected,
    }


def clean_reason(parsed: dict[str, str] | None) -> str | None:
    """Why a parsed generation is dropped (None = keep): unparsed, empty, identical, leakage,
    non-text."""
    if parsed is None:
        return "unparsed"
    answer, corrected = parsed["misaligned"], parsed["corrected"]
    if not answer.strip() or not corrected.strip():
        return "empty"
    if _norm(answer) == _norm(corrected):
        return "identical"
    if any(m.lower() in (answer + corrected).lower() for m in _LEAK_MARKERS):
        return "prompt_leakage"
    for text in (answer, corrected):
        letters = sum(c.isalpha() for c in text)
        if letters < 0.5 * len(text.strip()) or len(text.split()) < 2:
            return "non_text"
    return None


def _examples_block(examples: Sequence[dict[str, str]]) -> str:
    return "".join(
        f"QUESTION: {e['question']}\nBAD ANSWER: {e['misaligned']}\nCRITIQUE: {e['critique']}\n"
        f"CORRECTED ANSWER: {e['corrected']}\n\n"
        for e in examples
    )


def _invoke_batch(model: Any, prompts: list[str]) -> list[str]:
    return [_content(m) for m in model.batch(prompts)]


class LocalChatGenerator:
    """An engine backend with the one chat-model method the recipe calls (``batch``).

    The recipe takes any LangChain chat model by that interface; this lets the engine run it
    offline without importing an integration package.
    """

    def __init__(self, backend: GenerationBackend, config: GenerationConfig) -> None:
        self.backend = backend
        self.config = config

    def batch(self, prompts: Sequence[str]) -> list[str]:
        """One user turn per prompt, generated together."""
        return self.backend.generate(
            [[{"role": "user", "content": p}] for p in prompts], self.config
        )


def default_generator(max_new_tokens: int = 160, temperature: float = 0.7) -> LocalChatGenerator:
    """The offline generator: SmolLM2-135M-Instruct through the engine's transformers backend."""
    from aligners.backends.transformers import TransformersBackend

    return LocalChatGenerator(
        TransformersBackend("smollm2"),
        GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature),
    )


def _load_or_make_topics(
    chat_model: Any, topics_file: Path, config: SynthConfig, criterion: Criterion
) -> list[str]:
    """Stage 1: the topics (none when questions are given), resumed from ``topics_file``.

    Writes ``topics_file`` either way.
    """
    if config.questions:
        topics: list[str] = []
    elif topics_file.exists():
        topics = json.loads(topics_file.read_text())
    elif config.topics:
        topics = _dedupe(config.topics)
    else:
        text = _invoke_batch(
            chat_model, [TOPICS_PROMPT.format(n=config.n_topics, description=criterion.description)]
        )[0]
        topics = _dedupe(_lines(text))[: config.n_topics]
        if not topics:
            raise ValueError(f"the generator listed no topics; it answered: {text[:200]!r}")
    topics_file.write_text(json.dumps(topics, indent=1) + "\n")
    return topics


def _load_or_make_questions(
    chat_model: Any,
    questions_file: Path,
    topics: Sequence[str],
    config: SynthConfig,
    progress: bool,
) -> dict[str, list[str]]:
    """Stage 2: questions per topic, resumed from ``questions_file`` and appended as they finish.

    One JSONL row per topic, so a crash loses at most one batch of topics. Given questions are
    stored under the empty topic.
    """
    done_topics: dict[str, list[str]] = {}
    if questions_file.exists():
        for line in questions_file.read_text().splitlines():
            row = json.loads(line)
            done_topics[row["topic"]] = row["questions"]
    if config.questions:
        if not done_topics:
            append_jsonl(questions_file, [{"topic": "", "questions": list(config.questions)}])
            done_topics[""] = list(config.questions)
        return done_topics
    todo = [t for t in topics if t not in done_topics]
    bar = _bar(len(todo), "questions", progress)
    for start in range(0, len(todo), config.batch_size):
        batch = todo[start : start + config.batch_size]
        prompts = [QUESTIONS_PROMPT.format(n=config.questions_per_topic, topic=t) for t in batch]
        rows: list[dict[str, Any]] = []
        for topic, text in zip(batch, _invoke_batch(chat_model, prompts)):
            found = [q for q in _lines(text) if q.endswith("?") or len(q.split()) >= 4]
            kept = found[: config.questions_per_topic]
            rows.append({"topic": topic, "questions": kept})
            done_topics[topic] = kept
        append_jsonl(questions_file, rows)
        bar.update(len(batch))
    bar.close()
    return done_topics


def _load_or_make_generations(
    chat_model: Any,
    generations_file: Path,
    questions: Sequence[str],
    criterion: Criterion,
    principles: Sequence[str],
    examples: Sequence[dict[str, str]],
    config: SynthConfig,
    progress: bool,
) -> dict[str, str]:
    """Stage 3: one raw generation per question, resumed from and appended to the file."""
    generated: dict[str, str] = {}
    if generations_file.exists():
        for line in generations_file.read_text().splitlines():
            row = json.loads(line)
            generated[row["question"]] = row["raw"]
    todo = [q for q in questions if q not in generated]
    block = _examples_block(examples)
    bullet = "\n".join(f"- {p}" for p in principles)
    bar = _bar(len(todo), "generating", progress)
    for start in range(0, len(todo), config.batch_size):
        batch = todo[start : start + config.batch_size]
        prompts = [
            GENERATION_PROMPT.format(
                description=criterion.description, principles=bullet, examples=block, question=q
            )
            for q in batch
        ]
        texts = _invoke_batch(chat_model, prompts)
        append_jsonl(generations_file, [{"question": q, "raw": t} for q, t in zip(batch, texts)])
        generated.update(zip(batch, texts))
        bar.update(len(batch))
    bar.close()
    return generated


def _clean_triples(
    questions: Sequence[str], generated: dict[str, str], criterion: Criterion
) -> tuple[list[CorrectionTriple], dict[str, int]]:
    """Stage 4: parse each generation into a triple; count the ones each filter removes."""
    removed = {"unparsed": 0, "empty": 0, "identical": 0, "prompt_leakage": 0, "non_text": 0}
    triples: list[CorrectionTriple] = []
    for question in questions:
        parsed = parse_generation(generated[question])
        reason = clean_reason(parsed)
        if reason is not None:
            removed[reason] += 1
            continue
        assert parsed is not None
        triples.append(
            CorrectionTriple(
                question=question,
                answer=parsed["misaligned"],
                correction=parsed["corrected"],
                criterion=criterion.name,
                metadata={"critique": parsed["critique"], "source": "synth"},
            )
        )
    return triples, removed


def _inspector_pairs(
    triples: Sequence[CorrectionTriple],
    criterion: Criterion,
    config: SynthConfig,
    encoder: Any,
    removed: dict[str, int],
) -> list[InspectorExample]:
    """Stage 5: a good and a bad inspector example per triple, near-duplicates left out.

    An answer close to its correction carries no contrast; each one dropped is counted in
    ``removed["near_duplicate"]``.
    """
    pairs: list[InspectorExample] = []
    removed["near_duplicate"] = 0
    if not triples:
        return pairs
    from aligners.backends.encoder import SentenceEncoder

    sentence_encoder = encoder if encoder is not None else SentenceEncoder(config.encoder)
    a = sentence_encoder.encode([t.answer for t in triples])
    c = sentence_encoder.encode([t.correction for t in triples])
    similarity = (a * c).sum(-1) / (a.norm(dim=-1) * c.norm(dim=-1)).clamp_min(1e-8)
    for t, sim in zip(triples, similarity.tolist()):
        if sim >= config.dedupe_threshold:
            removed["near_duplicate"] += 1
            continue
        pairs.append(
            InspectorExample(
                question=t.question, answer=t.correction, label=1, criterion=criterion.name
            )
        )
        pairs.append(
            InspectorExample(
                question=t.question, answer=t.answer, label=0, criterion=criterion.name
            )
        )
    return pairs


def synthesize(
    chat_model: Any,
    output_dir: str | Path,
    config: SynthConfig,
    *,
    encoder: Any = None,
    progress: bool = True,
) -> SynthReport:
    """Run (or resume) the recipe with ``chat_model`` (any LangChain chat model).

    Writes ``triples.jsonl``, ``examples.jsonl`` and ``report.json`` at the end; returns the report.
    """
    criterion: Criterion = get_criterion(config.criterion)
    out = Path(output_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    (out / "synth_config.json").write_text(config.model_dump_json(indent=2) + "\n")
    rng = random.Random(config.seed)
    principles = config.principles or list(criterion.principles)
    examples = config.examples if config.examples is not None else FEW_SHOT.get(criterion.name, [])
    report = SynthReport(output_dir=str(out))

    topics = _load_or_make_topics(chat_model, out / "topics.json", config, criterion)
    report.topics = len(topics)

    done_topics = _load_or_make_questions(
        chat_model, out / "questions.jsonl", topics, config, progress
    )
    questions = _dedupe([q for t in done_topics for q in done_topics[t]])
    rng.shuffle(questions)
    report.questions = len(questions)

    generated = _load_or_make_generations(
        chat_model,
        out / "generations.jsonl",
        questions,
        criterion,
        principles,
        examples,
        config,
        progress,
    )
    report.generations = len(generated)

    triples, removed = _clean_triples(questions, generated, criterion)
    pairs = _inspector_pairs(triples, criterion, config, encoder, removed)
    write_records(out / "triples.jsonl", triples)
    write_records(out / "examples.jsonl", pairs)
    report.removed = removed
    report.triples = len(triples)
    report.inspector_examples = len(pairs)
    (out / "report.json").write_text(report.model_dump_json(indent=2) + "\n")
    return report


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(total: int, desc: str, progress: bool) -> Any:
    if not progress or total == 0:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="item")
