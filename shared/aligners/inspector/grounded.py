"""The ``grounded`` inspector: is every sentence of an answer supported by its sources?

Each non-trivial sentence of the answer becomes a claim (short ones are read with their
question: "Paris." answers "What is the capital of France?"); the sources are cut into windows
of whole sentences so a 1,000-token context fits a small encoder, and each claim is read beside
the few windows that share the most content words with it (one, when the best holds all of
them). A MiniLM cross-encoder reads ``[CLS] passage [SEP] claim [SEP]`` and its calibrated head
gives P(supported); a :class:`SupportCombiner` (a logistic regression shipped in the config)
weighs that with lexical evidence: how much of the claim its window holds, numbers and names no
passage holds, a flipped negation. The answer's score is its least supported sentence's: one
invented number makes an answer ungrounded, however much else is right.

The trained files are a cross-encoder directory (:class:`CrossEncoderConfig`, one head named
``grounded``); how claims and windows are cut is stored beside them under ``"grounding"`` in
``inspector_config.json`` (:class:`GroundingSettings`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aligners.backends.cache import MODEL_CACHE, ModelCache
from aligners.inspector.base import ContextInspector
from aligners.inspector.cross_encoder import (
    CrossEncoderConfig,
    CrossEncoderTrunk,
    HeadCalibration,
    load_heads,
    read_cross_encoder_config,
)
from aligners.sources import (
    STOPWORDS,
    ChunkIndex,
    GroundingReport,
    SentenceSupport,
    SourceTerms,
    Span,
    chunk_passages,
    claim_text,
    claim_words,
    closest_sentence,
    is_trivial,
    negated,
    split_sentences,
)

GROUNDED = "grounded"
#: The shipped model (``scripts/train_defaults.sh grounded``).
DEFAULT_GROUNDED_DIR = (
    Path(__file__).resolve().parent.parent / "default_models" / "inspectors" / GROUNDED
)


#: What the combiner can weigh, per scored sentence (see :class:`SupportCombiner`).
SENTENCE_FEATURES = {
    "support": "the cross-encoder's calibrated logit of P(supported) by the best window read",
    "window_coverage": "idf-weighted share of the sentence's content words that the best "
    "window read holds (its best over the windows read)",
    "context_share": "share of the sentence's words found anywhere in the passages (the "
    "word-overlap baseline)",
    "missing_numbers": "1 when the sentence holds a number no passage contains",
    "missing_names": "1 when the sentence holds a capitalised name no passage contains",
    "negation_mismatch": "1 when the sentence and the source sentence closest to it (most "
    "shared content words, in the windows read) differ in holding a negation",
}


class SupportCombiner(BaseModel):
    """A sentence's P(supported) from its evidence: ``sigmoid(bias + sum(weight * feature))``
    over :data:`SENTENCE_FEATURES` (logistic regression fitted on training answers)."""

    model_config = ConfigDict(extra="forbid")

    features: list[str] = Field(min_length=1)
    weights: list[float]
    bias: float = 0.0
    fitted_on: str = Field(default="", description="What the weights were fitted on.")

    @model_validator(mode="after")
    def _check(self) -> SupportCombiner:
        unknown = [f for f in self.features if f not in SENTENCE_FEATURES]
        if unknown:
            raise ValueError(
                f"unknown combiner features {unknown}; known: {list(SENTENCE_FEATURES)}"
            )
        if len(self.weights) != len(self.features):
            raise ValueError(
                f"{len(self.features)} combiner features but {len(self.weights)} weights"
            )
        return self

    def logit(self, evidence: dict[str, float]) -> float:
        """The combined logit of one sentence's evidence."""
        return self.bias + sum(w * evidence[f] for f, w in zip(self.features, self.weights))

    def probability(self, evidence: dict[str, float]) -> float:
        """The combined P(supported) of one sentence's evidence."""
        return _sigmoid(self.logit(evidence))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _logit(p: float, clip: float = 9.0) -> float:
    p = min(max(p, 1e-12), 1 - 1e-12)
    return max(-clip, min(clip, math.log(p / (1 - p))))


class GroundingSettings(BaseModel):
    """How answers and sources are cut before the cross-encoder reads them, and how a
    sentence's evidence becomes its score."""

    model_config = ConfigDict(extra="forbid")

    chunk_words: int = Field(default=60, gt=0, description="Words per source window.")
    top_passages: int = Field(
        default=2, gt=0, description="Windows read per claim (picked by shared content words)."
    )
    one_window_coverage: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="A claim whose best window holds at least this idf-weighted share of its "
        "content words is read against that window alone (None: always top_passages).",
    )
    short_claim_words: int = Field(
        default=5, ge=0, description="Sentences with fewer words are read with their question."
    )
    missing_cap: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Cap on the score of a sentence holding numbers (or names, with "
        "check_names) that no passage contains; None: no cap.",
    )
    check_names: bool = Field(
        default=False, description="Capitalised words count as names for missing_cap."
    )
    quantized: bool = Field(
        default=False, description="Run the encoder's linear layers in int8 (CPU, ~2x faster)."
    )
    combiner: SupportCombiner | None = Field(
        default=None,
        description="Sentence score from the model and lexical evidence; None: the model's "
        "P(supported) alone.",
    )


@dataclass
class _Sentence:
    """One scored sentence of an answer while it is being checked."""

    span: Span
    first: int  # its first (window, claim) pair
    windows: list[int]  # the windows read, best overlap first
    missing: list[str]
    evidence: dict[str, float]


class GroundedInspector(ContextInspector):
    """P(every sentence of the answer is supported by the given passages).

    Example:
        >>> inspector = GroundedInspector.from_pretrained()  # the shipped model
        >>> inspector.score("Who wrote it?", "Ada wrote it in 1843.",
        ...                 ["Ada Lovelace wrote the notes in 1843."])  # doctest: +SKIP
        >>> report = inspector.verify_batch(["Who wrote it?"], ["Ada wrote it in 1842."],
        ...                                 [["Ada Lovelace wrote the notes in 1843."]])[0]
        >>> [(s.text, s.supported, s.passage) for s in report.sentences]  # doctest: +SKIP
    """

    def __init__(
        self, trunk: CrossEncoderTrunk, head: Any, settings: GroundingSettings | None = None
    ) -> None:
        super().__init__(GROUNDED)
        self.trunk = trunk
        self.head = head.eval()
        self.settings = settings or GroundingSettings()
        self.calibration = trunk.config.calibration.get(GROUNDED, HeadCalibration())

    @property
    def config(self) -> CrossEncoderConfig:
        return self.trunk.config

    @classmethod
    def from_pretrained(
        cls, path: str | Path | None = None, *, cache: ModelCache = MODEL_CACHE
    ) -> GroundedInspector:
        """Load a trained grounded cross-encoder (default: the shipped one)."""
        directory = Path(DEFAULT_GROUNDED_DIR if path is None else path).expanduser()
        config = read_cross_encoder_config(directory)
        if GROUNDED not in config.heads:
            raise ValueError(
                f"{directory} is not a grounded inspector: it has heads {config.heads}, "
                f"not {GROUNDED!r}"
            )
        settings = GroundingSettings(**(config.model_extra or {}).get("grounding", {}))
        heads = load_heads(directory, config)
        trunk = CrossEncoderTrunk(config, directory, cache=cache, quantized=settings.quantized)
        return cls(trunk, heads[GROUNDED], settings)

    @property
    def default_threshold(self) -> float | None:
        """The shipped operating point on P(supported), chosen on validation data."""
        return self.config.thresholds.get(GROUNDED)

    @property
    def metrics(self) -> dict[str, Any]:
        """Held-out metrics, as written when the model was trained."""
        value: dict[str, Any] = self.config.metrics.get(GROUNDED, {})
        return value

    def support_logits(self, passages: Sequence[str], claims: Sequence[str]) -> list[float]:
        """Calibrated logits of P(claim supported by passage) for every (passage, claim) pair;
        a pair that occurs twice is read once."""
        import torch

        if not claims:
            return []
        unique = list(dict.fromkeys(zip(passages, claims)))
        features = self.trunk.features([p for p, _ in unique], [c for _, c in unique])
        with torch.inference_mode():
            logits = self.head(features).squeeze(-1)
        scaled = logits * self.calibration.scale + self.calibration.bias
        found = dict(zip(unique, (float(x) for x in scaled)))
        return [found[pair] for pair in zip(passages, claims)]

    def support(self, passages: Sequence[str], claims: Sequence[str]) -> list[float]:
        """Calibrated P(claim supported by passage) for every (passage, claim) pair."""
        return [_sigmoid(x) for x in self.support_logits(passages, claims)]

    def evidence(
        self,
        questions: Sequence[str],
        answers: Sequence[str],
        contexts: Sequence[Sequence[str]],
    ) -> list[list[tuple[Span, int | None, dict[str, float] | None, list[str]]]]:
        """Per answer, per sentence: its span, the passage of its best window, its evidence
        (:data:`SENTENCE_FEATURES`; None for a trivial sentence) and its missing terms. Every
        (window, claim) pair of the batch goes through one encoder call."""
        settings = self.settings
        pairs: list[tuple[str, str]] = []
        plans: list[tuple[list[tuple[int, str]], list[_Sentence | Span]]] = []
        for question, answer, passages in zip(questions, answers, contexts):
            windows = chunk_passages(passages, settings.chunk_words)
            texts = [text for _, text in windows]
            index = ChunkIndex(texts)
            terms = SourceTerms(passages)
            sentences: list[_Sentence | Span] = []
            for span in split_sentences(answer):
                if is_trivial(span.text):
                    sentences.append(span)
                    continue
                claim = claim_text(question, span.text, settings.short_claim_words)
                words = claim_words(span.text)
                content = set(words) - STOPWORDS
                picked = [i for i, _ in index.ranked(claim)[: settings.top_passages]]
                full = settings.one_window_coverage
                if full is not None and picked and index.coverage(content, picked[0]) >= full:
                    picked = picked[:1]
                first = len(pairs)
                pairs.extend((texts[i], claim) for i in picked)
                missing_numbers = terms.missing(span.text, names=False)
                missing = terms.missing(span.text, names=True)
                evidence = {
                    "window_coverage": max(
                        (index.coverage(content, i) for i in picked), default=0.0
                    ),
                    "context_share": sum(w in terms.words for w in words) / len(words)
                    if words
                    else 1.0,
                    "missing_numbers": float(bool(missing_numbers)),
                    "missing_names": float(len(missing) > len(missing_numbers)),
                    "negation_mismatch": float(
                        negated(span.text)
                        != negated(closest_sentence(span.text, [texts[i] for i in picked]))
                    ),
                }
                shown = missing if settings.check_names else missing_numbers
                sentences.append(_Sentence(span, first, picked, shown, evidence))
            plans.append((windows, sentences))
        logits = self.support_logits([p for p, _ in pairs], [c for _, c in pairs])
        results = []
        for windows, sentences in plans:
            rows: list[tuple[Span, int | None, dict[str, float] | None, list[str]]] = []
            for sentence in sentences:
                if isinstance(sentence, Span):
                    rows.append((sentence, None, None, []))
                    continue
                mine = logits[sentence.first : sentence.first + len(sentence.windows)]
                best = max(range(len(mine)), key=mine.__getitem__)
                sentence.evidence["support"] = _logit(_sigmoid(mine[best]))
                passage = windows[sentence.windows[best]][0]
                rows.append((sentence.span, passage, sentence.evidence, sentence.missing))
            results.append(rows)
        return results

    def sentence_score(self, evidence: dict[str, float], missing: Sequence[str]) -> float:
        """A sentence's P(supported): the combiner's, else the model's (capped by
        ``missing_cap`` when the sentence names what no passage holds)."""
        settings = self.settings
        if settings.combiner is not None:
            score = settings.combiner.probability(evidence)
        else:
            score = _sigmoid(evidence["support"])
        if missing and settings.missing_cap is not None:
            score = min(score, settings.missing_cap)
        return score

    def verify(
        self,
        questions: Sequence[str],
        answers: Sequence[str],
        contexts: Sequence[tuple[str, ...]],
        threshold: float | None = None,
    ) -> list[GroundingReport]:
        """Per-sentence support; every pair of the batch goes through one encoder call."""
        limit = self.default_threshold if threshold is None else threshold
        limit = 0.5 if limit is None else limit
        reports = []
        for passages, rows in zip(contexts, self.evidence(questions, answers, contexts)):
            verdicts = []
            for span, passage, evidence, missing in rows:
                if evidence is None:
                    verdicts.append(
                        SentenceSupport(
                            text=span.text, start=span.start, end=span.end, trivial=True
                        )
                    )
                    continue
                score = self.sentence_score(evidence, missing)
                verdicts.append(
                    SentenceSupport(
                        text=span.text,
                        start=span.start,
                        end=span.end,
                        score=score,
                        supported=score >= limit,
                        passage=passage,
                        missing=list(missing),
                    )
                )
            reports.append(GroundingReport.of(verdicts, threshold=limit, passages=len(passages)))
        return reports
