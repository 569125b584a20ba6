"""The safety recipe: data for the question a gate answers at run time, "is this answer, to this
question, fine as it is?", and for an aligner that turns harmful compliance into a safe response.

From the team's public data and a local generator only (SmolLM2 by default, no network):

- harmful requests (HarmfulQA, AdvBench-style instructions, HH-RLHF first turns) and ordinary
  ones (IBM helpful/factuality questions, AlpacaEval instructions, written safe questions with
  alarming words), each with a topic; whole topics are held out for evaluation;
- answers of every kind a gate meets: compliant answers to harmful requests (the generator
  complies with most), safe responses (declining HH-RLHF replies, generator refusals under a
  safety system prompt kept only when they decline, and varied written templates), good answers
  (AlpacaEval's GPT-4/Claude answers and the generator's own) and answers cut mid-sentence.

Outputs (``output_dir``): ``inspector_train.jsonl`` / ``inspector_heldout.jsonl``
(:class:`InspectorExample`), ``requests_train.jsonl`` / ``requests_heldout.jsonl``
(:class:`RequestExample`, for the request inspector), ``aligner_train.jsonl``
(:class:`CorrectionTriple`),
``heldout_answers.jsonl`` (what ``aligners eval-safety`` scores), and ``recipe_log.json`` with
every count and filter. Generations are appended to ``generations.jsonl`` as they finish, so a
rerun resumes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from aligners.backends.base import GenerationBackend, GenerationConfig
from aligners.data.io import append_jsonl, write_records
from aligners.data.records import CorrectionTriple, InspectorExample, RequestExample
from aligners.data.safety_sources import (
    HARMFUL,
    ORDINARY,
    HHDialogue,
    Request,
    adversarial_requests,
    alarming_safe_requests,
    alpaca_answers,
    cut_mid_sentence,
    harm_topic,
    harmfulqa_requests,
    hh_requests,
    hh_single_turn,
    ibm_requests,
    is_refusal,
    lead_sentences,
    stable_fraction,
    template_refusal,
)

logger = logging.getLogger(__name__)

SAFETY_SYSTEM_PROMPT = (
    "You are a careful assistant. If a request could help someone cause harm, break the law or "
    "hurt people, refuse briefly, say why, and offer a safe alternative."
)

#: Good answers longer than this are not copied into an aligner's data (identity triples).
IDENTITY_MAX_WORDS = 110
#: Keyword topics that take an IBM question out of the ordinary pool.
UNVETTED_HARM_TOPICS = ("weapons", "violence", "self-harm", "drugs")

#: Answer kinds: what the gate must pass (good, safe) and what it must flag (compliant).
GOOD, SAFE, COMPLIANT = "good", "safe", "compliant"
ALIGNED_KINDS = (GOOD, SAFE)


class SafetyRecipeConfig(BaseModel):
    """Sizes, held-out topics and decoding of the safety recipe."""

    model_config = ConfigDict(extra="forbid")

    heldout_topics: list[str] = Field(
        default_factory=lambda: [
            "Health and Medicine",  # HarmfulQA topics
            "History and Culture",
            "fraud",  # keyword topic of AdvBench-style instructions and HH-RLHF requests
            "kitchen",  # topics of the written alarming-but-safe questions
            "computing",
            "history",
            "pets-and-animals",
        ],
        description="Topics whose every request stays out of training.",
    )
    ordinary_heldout_fraction: float = Field(
        default=0.2, ge=0, lt=1, description="Share of topic-less ordinary requests held out."
    )
    harmful_train: int = Field(default=600, ge=0, description="Harmful requests to answer.")
    harmful_heldout: int = Field(default=160, ge=0)
    ordinary_train: int = Field(
        default=500,
        ge=0,
        description="IBM questions to answer: as many generator answers to ordinary requests as "
        "to harmful ones, so the generator's style tells the gate nothing.",
    )
    ordinary_heldout: int = Field(default=80, ge=0)
    alpaca_train: int = Field(default=600, ge=0, description="AlpacaEval answers kept.")
    alpaca_heldout: int = Field(default=120, ge=0)
    safety_prompted: int = Field(
        default=48, ge=0, description="Harmful requests answered under a safety system prompt."
    )
    cut_fraction: float = Field(
        default=0.25, ge=0, le=1, description="Share of answers also added cut mid-sentence."
    )
    lead_fraction: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Share of compliant and good answers also added as their first one or two "
        "sentences, in the gate's data only: short, direct answers, so that the gate reads what "
        "an answer says, not how long it rambles.",
    )
    aligner_rewrites: int = Field(
        default=450,
        ge=0,
        description="Compliant answers the aligner learns to rewrite (refusals are easy to "
        "learn; more of them only teaches it to refuse everything).",
    )
    aligner_identity: int = Field(
        default=300, ge=0, description="Good and safe answers the aligner learns to keep."
    )
    extra_alarming: bool = Field(
        default=True,
        description="Add the second written set of alarming-but-safe questions "
        "(MORE_ALARMING_SAFE_QUESTIONS); the shipped gate was trained without it.",
    )
    alarming_repeats: int = Field(
        default=2,
        ge=1,
        description="Times each answer to an alarming-but-safe question appears in the "
        "inspector's training data: they are few beside the compliant answers that share their "
        "words, and the gate must learn that the words alone decide nothing.",
    )
    request_ordinary_per_source: int = Field(
        default=1500,
        ge=0,
        description="Ordinary requests per source (IBM helpful, IBM factuality, AlpacaEval) in "
        "the request inspector's data; every harmful request and written question is kept.",
    )
    identity_max_words: int = Field(default=IDENTITY_MAX_WORDS, gt=0)
    max_new_tokens: int = Field(default=112, gt=0)
    batch_size: int = Field(default=16, gt=0)
    seed: int = 0


@dataclass
class RecipeLog:
    """Counts of every source, filter and output, written to ``recipe_log.json``."""

    counts: Counter[str] = field(default_factory=Counter)

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] += n


@dataclass(frozen=True)
class Answer:
    """One (request, answer) pair of a known kind."""

    request: Request
    text: str
    kind: str
    source: str
    split: str

    def example(self) -> InspectorExample:
        return InspectorExample(
            question=self.request.text,
            answer=self.text,
            label=int(self.kind in ALIGNED_KINDS),
            criterion="ethical",
            metadata={
                "kind": self.kind,
                "source": self.source,
                "topic": self.request.topic,
                "request_source": self.request.source,
            },
        )


def _key(system: str | None, text: str, max_new_tokens: int) -> str:
    return hashlib.sha256(f"{system}\x00{text}\x00{max_new_tokens}".encode()).hexdigest()[:20]


def generate_answers(
    backend: GenerationBackend,
    requests: Sequence[Request],
    cache_file: Path,
    *,
    system: str | None = None,
    max_new_tokens: int = 112,
    batch_size: int = 16,
    progress: bool = True,
) -> dict[str, str]:
    """The generator's greedy answer to every request, resumable through ``cache_file``."""
    from tqdm.auto import tqdm

    done: dict[str, str] = {}
    if cache_file.exists():
        for line in cache_file.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                done[row["key"]] = row["text"]
    todo = [r for r in requests if _key(system, r.text, max_new_tokens) not in done]
    config = GenerationConfig(max_new_tokens=max_new_tokens, batch_size=batch_size)
    bar = tqdm(total=len(todo), desc="generating answers", disable=not progress or not todo)
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        prompts = [
            ([{"role": "system", "content": system}] if system else [])
            + [{"role": "user", "content": r.text}]
            for r in batch
        ]
        texts = backend.generate(prompts, config)
        rows = []
        for request, text in zip(batch, texts):
            key = _key(system, request.text, max_new_tokens)
            done[key] = text.strip()
            rows.append({"key": key, "request": request.text, "system": system, "text": text})
        append_jsonl(cache_file, rows)
        bar.update(len(batch))
    bar.close()
    return {r.text: done[_key(system, r.text, max_new_tokens)] for r in requests}


def _split(request: Request, config: SafetyRecipeConfig) -> str:
    if request.topic in config.heldout_topics:
        return "heldout"
    if request.kind == ORDINARY and request.source != "alarming-safe":
        return (
            "heldout"
            if stable_fraction(request.text) < config.ordinary_heldout_fraction
            else "train"
        )
    return "train"


def _sample(items: Sequence[Any], n: int, rng: random.Random) -> list[Any]:
    items = list(items)
    return items if len(items) <= n else rng.sample(items, n)


def _dedupe(requests: Sequence[Request]) -> list[Request]:
    seen: set[str] = set()
    unique = []
    for r in requests:
        key = " ".join(r.text.lower().split())
        if key not in seen:
            seen.add(key)
            unique.append(r)
    return unique


def harmful_pool(data: Path, dialogues: Sequence[HHDialogue]) -> list[Request]:
    """HarmfulQA questions, AdvBench-style instructions and HH-RLHF first turns, deduplicated."""
    return _dedupe(
        harmfulqa_requests(data / "prompts" / "harmfulqa.json")
        + adversarial_requests(data / "prompts" / "adversarialqa.json")
        + hh_requests(dialogues)
    )


def ibm_pool(data: Path) -> tuple[list[Request], list[Request]]:
    """Every IBM helpful and factuality question (deduplicated), and the vetted ones.

    The IBM pools are not vetted ("What is the best way to kill my travel buddy?"): requests
    that name violence, weapons, drugs or self-harm are not counted as ordinary.
    """
    every = _dedupe(
        ibm_requests(data / "prompts" / "ibm_helpful_questions.csv", "ibm-helpful")
        + ibm_requests(data / "prompts" / "ibm_factuality_questions.csv", "ibm-factuality")
    )
    return every, [r for r in every if harm_topic(r.text) not in UNVETTED_HARM_TOPICS]


def _ordinary_generated(
    smol: dict[str, str], requests: Sequence[Request], split: str, log: RecipeLog
) -> list[Answer]:
    """The generator's answers to ordinary requests are good answers, unless they decline."""
    answers = []
    for r in requests:
        text = smol[r.text]
        if not text.strip() or is_refusal(text):
            log.add(f"{split}/ordinary/dropped_generator_refusal_or_empty")
            continue
        kind_source = "smollm2" if r.source != "alarming-safe" else "smollm2-alarming"
        answers.append(Answer(r, text, GOOD, kind_source, split))
    return answers


def _request_examples(
    harmful: Sequence[Request],
    ibm: Sequence[Request],
    alarming: Sequence[Request],
    alpaca: Sequence[tuple[str, str, str]],
    config: SafetyRecipeConfig,
    log: RecipeLog,
) -> dict[str, list[RequestExample]]:
    """Harmful vs ordinary requests, split by the same topics as the answers."""
    rng = random.Random(f"{config.seed}-requests")
    instructions = _dedupe(
        [Request(row[0], ORDINARY, "alpacaeval", "alpacaeval") for row in alpaca]
    )
    ordinary: list[Request] = list(alarming)
    for source in ("ibm-helpful", "ibm-factuality"):
        pool = [r for r in ibm if r.source == source]
        ordinary += _sample(pool, config.request_ordinary_per_source, rng)
    ordinary += _sample(instructions, config.request_ordinary_per_source, rng)
    rows: dict[str, list[RequestExample]] = {"train": [], "heldout": []}
    for request in [*harmful, *ordinary]:
        split = _split(request, config)
        if request.source == "alpacaeval":  # the answers' split, so no instruction crosses
            split = (
                "heldout"
                if stable_fraction(request.text) < config.ordinary_heldout_fraction
                else "train"
            )
        label = 0 if request.kind == HARMFUL else 1
        rows[split].append(
            RequestExample(
                request=request.text,
                label=label,
                metadata={"source": request.source, "topic": request.topic},
            )
        )
        log.add(f"requests_for_request_inspector/{split}/{request.kind}")
    return rows


def _sample_request_sets(
    harmful: Sequence[Request],
    ibm: Sequence[Request],
    alarming: Sequence[Request],
    config: SafetyRecipeConfig,
    rng: random.Random,
) -> tuple[dict[str, list[Request]], dict[str, list[Request]], list[Request]]:
    """The requests to answer: harmful and ordinary ones per split, and the safety-prompted few.

    Draws from ``rng`` in the recipe's order (harmful train, harmful held-out, then the
    safety-prompted sample); IBM questions come from their own generator.
    """

    def pick(
        pool: Sequence[Request], split: str, n: int, chooser: random.Random = rng
    ) -> list[Request]:
        return _sample([r for r in pool if _split(r, config) == split], n, chooser)

    # Its own generator, so that changing one pool's size leaves the other samples as they were.
    ibm_rng = random.Random(f"{config.seed}-ibm")

    harmful_sets = {
        "train": pick(harmful, "train", config.harmful_train),
        "heldout": pick(harmful, "heldout", config.harmful_heldout),
    }
    ordinary_sets = {
        "train": pick(ibm, "train", config.ordinary_train, ibm_rng)
        + [r for r in alarming if _split(r, config) == "train"],
        "heldout": pick(ibm, "heldout", config.ordinary_heldout, ibm_rng)
        + [r for r in alarming if _split(r, config) == "heldout"],
    }
    prompted = _sample(harmful_sets["train"], config.safety_prompted, rng)
    return harmful_sets, ordinary_sets, prompted


def _generate_all(
    generator: GenerationBackend,
    harmful_sets: dict[str, list[Request]],
    ordinary_sets: dict[str, list[Request]],
    prompted: Sequence[Request],
    cache: Path,
    config: SafetyRecipeConfig,
    progress: bool,
) -> tuple[dict[str, str], dict[str, str]]:
    """The generator's plain answers to every sampled request, then its safety-prompted ones."""
    everything = [*harmful_sets["train"], *harmful_sets["heldout"]]
    everything += [*ordinary_sets["train"], *ordinary_sets["heldout"]]
    plain = generate_answers(
        generator,
        everything,
        cache,
        max_new_tokens=config.max_new_tokens,
        batch_size=config.batch_size,
        progress=progress,
    )
    safety_prompted = generate_answers(
        generator,
        prompted,
        cache,
        system=SAFETY_SYSTEM_PROMPT,
        max_new_tokens=config.max_new_tokens,
        batch_size=config.batch_size,
        progress=progress,
    )
    return plain, safety_prompted


def _generated_answers(
    harmful_sets: dict[str, list[Request]],
    ordinary_sets: dict[str, list[Request]],
    prompted: Sequence[Request],
    smol: dict[str, str],
    safe_smol: dict[str, str],
    rng: random.Random,
    log: RecipeLog,
) -> dict[str, list[Answer]]:
    """Label the generator's answers per split, with a template refusal for each harmful request.

    Safety-prompted answers join the training split only where they decline.
    """
    answers: dict[str, list[Answer]] = {"train": [], "heldout": []}
    for split in ("train", "heldout"):
        for r in harmful_sets[split]:
            text = smol[r.text]
            if not text.strip():
                log.add(f"{split}/harmful/dropped_empty")
                continue
            if is_refusal(text):
                log.add(f"{split}/harmful/generator_refused")
                answers[split].append(Answer(r, text, SAFE, "smollm2-refusal", split))
            else:
                answers[split].append(Answer(r, text, COMPLIANT, "smollm2", split))
            answers[split].append(Answer(r, template_refusal(r.text, rng), SAFE, "template", split))
        answers[split] += _ordinary_generated(smol, ordinary_sets[split], split, log)
    for r in prompted:
        text = safe_smol[r.text]
        kept = is_refusal(text)
        log.add("train/safety_prompted/" + ("kept_refusal" if kept else "dropped_not_refusal"))
        if kept:
            answers["train"].append(Answer(r, text, SAFE, "smollm2-safety-prompt", "train"))
    return answers


def _add_hh_answers(
    answers: dict[str, list[Answer]],
    dialogues: Sequence[HHDialogue],
    config: SafetyRecipeConfig,
    log: RecipeLog,
) -> None:
    """Add HH-RLHF's declining chosen replies (safe) and the rejected replies beside them."""
    # HH-RLHF: declining chosen replies are safe responses; the rejected reply beside a declining
    # one complies with the same request (noisy, so only where the chosen one clearly declines).
    for d in dialogues:
        request = Request(d.question, HARMFUL, "hh-rlhf", hh_requests([d])[0].topic)
        split = _split(request, config)
        if is_refusal(d.chosen):
            answers[split].append(Answer(request, d.chosen, SAFE, "hh-chosen-declining", split))
            if not is_refusal(d.rejected) and len(d.rejected.split()) >= 8:
                answers[split].append(Answer(request, d.rejected, COMPLIANT, "hh-rejected", split))
        else:
            log.add(f"{split}/hh/chosen_not_declining_skipped")


def _add_alpaca_answers(
    answers: dict[str, list[Answer]],
    alpaca: Sequence[tuple[str, str, str]],
    config: SafetyRecipeConfig,
    rng: random.Random,
) -> None:
    """Add a sample of AlpacaEval's good answers to each split (split by instruction)."""
    for split, n in (("train", config.alpaca_train), ("heldout", config.alpaca_heldout)):
        rows = [
            row
            for row in alpaca
            if (stable_fraction(row[0]) < config.ordinary_heldout_fraction) == (split == "heldout")
        ]
        for instruction, text, source in _sample(rows, n, rng):
            request = Request(instruction, ORDINARY, "alpacaeval", "alpacaeval")
            answers[split].append(Answer(request, text, GOOD, source, split))


def _add_cut_answers(
    answers: dict[str, list[Answer]], config: SafetyRecipeConfig, rng: random.Random
) -> None:
    """Add copies of a fraction of the non-safe answers cut mid-sentence (``+cut``)."""
    for split in ("train", "heldout"):
        cut = [
            Answer(a.request, cut_mid_sentence(a.text, rng), a.kind, a.source + "+cut", split)
            for a in answers[split]
            if a.kind != SAFE and rng.random() < config.cut_fraction
        ]
        answers[split] += [a for a in cut if a.text.strip()]


def _lead_answers(
    answers: dict[str, list[Answer]], config: SafetyRecipeConfig
) -> dict[str, list[Answer]]:
    """The first sentence or two of a fraction of the whole non-safe answers (``+lead``)."""
    # Its own generator, so that the other samples stay as they were without lead answers.
    lead_rng = random.Random(f"{config.seed}-lead")
    leads: dict[str, list[Answer]] = {"train": [], "heldout": []}
    for split in ("train", "heldout"):
        for a in answers[split]:
            if a.kind == SAFE or "+" in a.source or lead_rng.random() >= config.lead_fraction:
                continue
            text = lead_sentences(a.text, lead_rng)
            if text != a.text and len(text.split()) >= 5:
                leads[split].append(Answer(a.request, text, a.kind, a.source + "+lead", split))
    return leads


def _write_answer_outputs(
    out: Path,
    answers: dict[str, list[Answer]],
    leads: dict[str, list[Answer]],
    config: SafetyRecipeConfig,
    rng: random.Random,
    log: RecipeLog,
) -> None:
    """Write the gate's train/held-out examples, the aligner's triples and the held-out answers."""
    for split, items in answers.items():
        for a in items + leads[split]:
            log.add(f"answers/{split}/{a.kind}/{a.source}")

    repeats = [a for a in answers["train"] if a.source.startswith("smollm2-alarming")] * (
        config.alarming_repeats - 1
    )
    log.add("inspector/train/alarming_repeated", len(repeats))
    gate_train = answers["train"] + leads["train"] + repeats
    write_records(out / "inspector_train.jsonl", [a.example() for a in gate_train])
    gate_heldout = answers["heldout"] + leads["heldout"]
    write_records(out / "inspector_heldout.jsonl", [a.example() for a in gate_heldout])
    triples = aligner_triples(answers["train"], config, rng)
    write_records(out / "aligner_train.jsonl", triples)
    log.add("aligner/triples", len(triples))
    log.add("aligner/rewrites", sum(not t.unchanged for t in triples))
    heldout_rows = [a.example() for a in answers["heldout"] if not a.source.endswith("+cut")]
    write_records(out / "heldout_answers.jsonl", heldout_rows)


def build_safety_data(
    data_dir: str | Path,
    output_dir: str | Path,
    generator: GenerationBackend,
    config: SafetyRecipeConfig | None = None,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the recipe; returns (and writes) the log of counts. See the module docstring."""
    config = config or SafetyRecipeConfig()
    data = Path(data_dir)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(config.seed)
    log = RecipeLog()

    dialogues = hh_single_turn(data / "hh_rlhf" / "harmless-base-test.jsonl.gz")
    harmful = harmful_pool(data, dialogues)
    ibm_all, ibm = ibm_pool(data)
    log.add("requests/ordinary/ibm_dropped_harm_words", len(ibm_all) - len(ibm))
    alarming = alarming_safe_requests(extra=config.extra_alarming)
    for r in [*harmful, *ibm, *alarming]:
        log.add(f"requests/{r.kind}/{r.source}/{_split(r, config)}")

    harmful_sets, ordinary_sets, prompted = _sample_request_sets(
        harmful, ibm, alarming, config, rng
    )
    smol, safe_smol = _generate_all(
        generator,
        harmful_sets,
        ordinary_sets,
        prompted,
        out / "generations.jsonl",
        config,
        progress,
    )
    answers = _generated_answers(harmful_sets, ordinary_sets, prompted, smol, safe_smol, rng, log)
    _add_hh_answers(answers, dialogues, config, log)
    alpaca = alpaca_answers(sorted((data / "alpacaeval_aligner2b").glob("*.json")))
    _add_alpaca_answers(answers, alpaca, config, rng)
    _add_cut_answers(answers, config, rng)
    leads = _lead_answers(answers, config)
    _write_answer_outputs(out, answers, leads, config, rng, log)

    request_rows = _request_examples(harmful, ibm, alarming, alpaca, config, log)
    for split, examples in request_rows.items():
        write_records(out / f"requests_{split}.jsonl", examples)

    summary = {
        "config": config.model_dump(),
        "counts": dict(sorted(log.counts.items())),
        "heldout_topics": config.heldout_topics,
    }
    (out / "recipe_log.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    logger.info("safety recipe: %s", summary["counts"])
    return summary


def aligner_triples(
    answers: Sequence[Answer], config: SafetyRecipeConfig, rng: random.Random
) -> list[CorrectionTriple]:
    """Compliant answers -> a safe response; good and safe answers (cut ones too) -> unchanged."""
    triples = []
    compliant = [a for a in answers if a.kind == COMPLIANT]
    for a in _sample(compliant, config.aligner_rewrites, rng):
        triples.append(
            CorrectionTriple(
                question=a.request.text,
                answer=a.text,
                correction=template_refusal(a.request.text, rng),
                criterion="ethical",
                metadata={"kind": "rewrite", "source": a.source, "topic": a.request.topic},
            )
        )
    keep = [
        a
        for a in answers
        if a.kind in ALIGNED_KINDS and len(a.text.split()) <= config.identity_max_words
    ]
    # Every good answer to an alarming-but-safe question is kept: these are the ones a gate
    # flags wrongly most often, and the aligner must then hand them back, not refuse them.
    alarming = [a for a in keep if a.source.startswith("smollm2-alarming")]
    rest = [a for a in keep if not a.source.startswith("smollm2-alarming")]
    for a in alarming + _sample(rest, config.aligner_identity, rng):
        triples.append(
            CorrectionTriple(
                question=a.request.text,
                answer=a.text,
                correction=a.text,
                criterion="ethical",
                metadata={"kind": "identity", "source": a.source, "topic": a.request.topic},
            )
        )
    rng.shuffle(triples)
    return triples
