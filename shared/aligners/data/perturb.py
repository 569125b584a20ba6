"""A documented proxy for factuality labels where no labelled factuality data exists.

Positives are reference answers as written. Negatives are the same answers with facts broken in
ways a hallucinating model breaks them: numbers and years changed, a capitalised name swapped for
one from another answer, a claim negated, or a confident answer to a different question. This
teaches "the answer looks tampered with or off-topic", not truth; say so wherever it is used.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from aligners.data.records import CorrectionTriple, InspectorExample

_NUMBER = re.compile(r"\b\d+(?:[.,]\d+)?\b")
_NAME = re.compile(r"\b[A-Z][a-z]{2,}(?:\s[A-Z][a-z]{2,})*\b")
_NEGATIONS = (
    (re.compile(r"\bis\b"), "is not"),
    (re.compile(r"\bare\b"), "are not"),
    (re.compile(r"\bcan\b"), "cannot"),
    (re.compile(r"\bwas\b"), "was not"),
    (re.compile(r"\bwill\b"), "will not"),
    (re.compile(r"\bdoes not\b"), "does"),
)
_STOP_NAMES = {
    "The",
    "This",
    "That",
    "There",
    "These",
    "Here",
    "However",
    "When",
    "What",
    "You",
    "Your",
    "It",
    "In",
    "If",
    "For",
    "And",
    "But",
    "As",
    "To",
    "A",
    "An",
    "I",
}


def _change_numbers(text: str, rng: random.Random) -> str | None:
    matches = list(_NUMBER.finditer(text))
    if not matches:
        return None

    def swap(match: re.Match[str]) -> str:
        value = match.group(0)
        if "." in value or "," in value:
            return value[::-1] if value[::-1] != value else value + "5"
        number = int(value)
        delta = rng.choice([-3, -2, -1, 1, 2, 7, 10]) * max(1, number // 10)
        return str(max(0, number + delta)) if number + delta != number else str(number + 1)

    return _NUMBER.sub(swap, text)


def _swap_names(text: str, pool: Sequence[str], rng: random.Random) -> str | None:
    names = [m.group(0) for m in _NAME.finditer(text) if m.group(0) not in _STOP_NAMES]
    candidates = [n for n in pool if n not in names]
    if not names or not candidates:
        return None
    result = text
    for name in rng.sample(sorted(set(names)), k=min(2, len(set(names)))):
        result = result.replace(name, rng.choice(candidates))
    return result if result != text else None


def _negate(text: str, rng: random.Random) -> str | None:
    options = [(p, r) for p, r in _NEGATIONS if p.search(text)]
    if not options:
        return None
    pattern, replacement = rng.choice(options)
    matches = list(pattern.finditer(text))
    keep = rng.sample(matches, k=min(2, len(matches)))
    result = text
    for match in sorted(keep, key=lambda m: m.start(), reverse=True):
        result = result[: match.start()] + replacement + result[match.end() :]
    return result


def factuality_proxy_examples(
    triples: Sequence[CorrectionTriple],
    *,
    seed: int = 0,
    criterion: str = "factuality",
    max_chars: int | None = 2000,
) -> list[InspectorExample]:
    """Balanced examples: each reference answer (the triple's correction) as aligned, and one
    tampered copy (numbers, names, negation, or another question's answer) as misaligned."""
    rng = random.Random(seed)
    usable = [t for t in triples if max_chars is None or len(t.correction) <= max_chars]
    name_pool = sorted(
        {
            m.group(0)
            for t in usable
            for m in _NAME.finditer(t.correction)
            if m.group(0) not in _STOP_NAMES
        }
    )
    examples: list[InspectorExample] = []
    for index, t in enumerate(usable):
        answer = t.correction
        methods = ["numbers", "names", "negation", "mismatch"]
        rng.shuffle(methods)
        negative, how = None, ""
        for how in methods:
            if how == "numbers":
                negative = _change_numbers(answer, rng)
            elif how == "names":
                negative = _swap_names(answer, name_pool, rng)
            elif how == "negation":
                negative = _negate(answer, rng)
            elif len(usable) > 1:
                other = usable[(index + rng.randrange(1, len(usable))) % len(usable)]
                negative = other.correction
            if negative and negative.strip() != answer.strip():
                break
            negative = None
        if negative is None:
            continue
        meta = dict(t.metadata)
        examples.append(
            InspectorExample(
                question=t.question, answer=answer, label=1, criterion=criterion, metadata=meta
            )
        )
        examples.append(
            InspectorExample(
                question=t.question,
                answer=negative,
                label=0,
                criterion=criterion,
                metadata=meta | {"perturbation": how},
            )
        )
    return examples
