"""The ``grounded`` inspector: is every sentence of an answer supported by its sources?

Each non-trivial sentence of the answer becomes a claim (short ones are read with their
question: "Paris." answers "What is the capital of France?"); the sources are cut into windows
of whole sentences so a 1,000-token context fits a small encoder, and each claim is read beside
the few windows that share the most content words with it. A MiniLM cross-encoder reads
``[CLS] passage [SEP] claim [SEP]`` and its calibrated head gives P(supported). The answer's
score is its least supported sentence's: one invented number makes an answer ungrounded,
however much else is right.

The trained files are a cross-encoder directory (:class:`CrossEncoderConfig`, one head named
``grounded``); how claims and windows are cut is stored beside them under ``"grounding"`` in
``inspector_config.json`` (:class:`GroundingSettings`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

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
    GroundingReport,
    SentenceSupport,
    SourceTerms,
    Span,
    best_chunks,
    chunk_passages,
    claim_text,
    is_trivial,
    split_sentences,
)

GROUNDED = "grounded"
#: The shipped model (``scripts/train_defaults.sh grounded``).
DEFAULT_GROUNDED_DIR = (
    Path(__file__).resolve().parent.parent / "default_models" / "inspectors" / GROUNDED
)


class GroundingSettings(BaseModel):
    """How answers and sources are cut before the cross-encoder reads them."""

    model_config = ConfigDict(extra="forbid")

    chunk_words: int = Field(default=60, gt=0, description="Words per source window.")
    top_passages: int = Field(
        default=2, gt=0, description="Windows read per claim (picked by shared content words)."
    )
    short_claim_words: int = Field(
        default=5, ge=0, description="Sentences with fewer words are read with their question."
    )
    missing_cap: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Cap on the score of a sentence holding numbers (or names, with "
        "check_names) that no passage contains; None: the model alone decides.",
    )
    check_names: bool = Field(
        default=False, description="Capitalised words count as names for missing_cap."
    )


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
        return cls(CrossEncoderTrunk(config, directory, cache=cache), heads[GROUNDED], settings)

    @property
    def default_threshold(self) -> float | None:
        """The shipped operating point on P(supported), chosen on validation data."""
        return self.config.thresholds.get(GROUNDED)

    @property
    def metrics(self) -> dict[str, Any]:
        """Held-out metrics, as written when the model was trained."""
        value: dict[str, Any] = self.config.metrics.get(GROUNDED, {})
        return value

    def support(self, passages: Sequence[str], claims: Sequence[str]) -> list[float]:
        """Calibrated P(claim supported by passage) for every (passage, claim) pair."""
        import torch

        if not claims:
            return []
        features = self.trunk.features(passages, claims)
        with torch.inference_mode():
            logits = self.head(features).squeeze(-1)
        scaled = logits * self.calibration.scale + self.calibration.bias
        return [float(x) for x in torch.sigmoid(scaled)]

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
        settings = self.settings
        pairs: list[tuple[str, str]] = []
        # per answer: its sentences, each with (first pair, windows' passages, missing terms)
        # or None (trivial)
        plans: list[tuple[int, list[tuple[Span, tuple[int, list[int], list[str]] | None]]]] = []
        for question, answer, passages in zip(questions, answers, contexts):
            windows = chunk_passages(passages, settings.chunk_words)
            texts = [text for _, text in windows]
            terms = SourceTerms(passages) if settings.missing_cap is not None else None
            sentences: list[tuple[Span, tuple[int, list[int], list[str]] | None]] = []
            for span in split_sentences(answer):
                if is_trivial(span.text):
                    sentences.append((span, None))
                    continue
                claim = claim_text(question, span.text, settings.short_claim_words)
                picked = best_chunks(claim, texts, settings.top_passages)
                first = len(pairs)
                pairs.extend((texts[i], claim) for i in picked)
                missing = terms.missing(span.text, settings.check_names) if terms else []
                sentences.append((span, (first, [windows[i][0] for i in picked], missing)))
            plans.append((len(passages), sentences))
        scores = self.support([p for p, _ in pairs], [c for _, c in pairs])
        cap = settings.missing_cap
        return [self._report(count, sentences, scores, limit, cap) for count, sentences in plans]

    @staticmethod
    def _report(
        passages: int,
        sentences: list[Any],
        scores: list[float],
        threshold: float,
        cap: float | None = None,
    ) -> GroundingReport:
        verdicts = []
        for span, plan in sentences:
            if plan is None:
                verdicts.append(
                    SentenceSupport(text=span.text, start=span.start, end=span.end, trivial=True)
                )
                continue
            first, sources, missing = plan
            mine = scores[first : first + len(sources)]
            best = max(range(len(mine)), key=mine.__getitem__)
            score = min(mine[best], cap) if missing and cap is not None else mine[best]
            verdicts.append(
                SentenceSupport(
                    text=span.text,
                    start=span.start,
                    end=span.end,
                    score=score,
                    supported=score >= threshold,
                    passage=sources[best],
                    missing=missing,
                )
            )
        scored = [v.score for v in verdicts if v.score is not None]
        # Nothing to check (only pleasantries) is nothing unsupported.
        return GroundingReport(
            score=min(scored, default=1.0),
            threshold=threshold,
            passages=passages,
            sentences=verdicts,
        )
