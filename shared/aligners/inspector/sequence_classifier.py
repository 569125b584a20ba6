"""The papers' inspector: a fine-tuned sequence classifier on ``question [SEP] answer``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aligners.backends.cache import MODEL_CACHE, ModelCache
from aligners.backends.models import resolve_model
from aligners.criteria import Criterion
from aligners.errors import ModelNotFoundError
from aligners.formats import PromptFormat, get_format
from aligners.inspector.base import Inspector


@dataclass
class _LoadedClassifier:
    model: Any
    tokenizer: Any


class SequenceClassifierInspector(Inspector):
    """Any ``AutoModelForSequenceClassification`` checkpoint; ``aligned_label`` is P(aligned)."""

    def __init__(
        self,
        model: str,
        *,
        criterion: str | Criterion | None = None,
        format: str | PromptFormat = "ibm",
        aligned_label: int = 1,
        max_length: int = 512,
        batch_size: int = 32,
        cache: ModelCache = MODEL_CACHE,
    ) -> None:
        super().__init__(criterion)
        self.source = resolve_model(model)
        self.prompt_format = get_format(format)
        self.aligned_label = aligned_label
        self.max_length = max_length
        self.batch_size = batch_size
        self._cache = cache

    @classmethod
    def from_pretrained(cls, path: str, **kwargs: Any) -> SequenceClassifierInspector:
        """Same as the constructor; here for symmetry with the other inspectors."""
        return cls(path, **kwargs)

    def load(self) -> _LoadedClassifier:
        """Load (once per process) and return the classifier."""

        def loader() -> _LoadedClassifier:
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

            try:
                tokenizer = AutoTokenizer.from_pretrained(self.source.path)
                model = AutoModelForSequenceClassification.from_pretrained(self.source.path)
            except OSError as exc:
                raise ModelNotFoundError(
                    f"could not load inspector {self.source.path!r}: {str(exc).splitlines()[0]}"
                ) from exc
            model.eval()
            return _LoadedClassifier(model, tokenizer)

        loaded: _LoadedClassifier = self._cache.get_or_load(("classifier", self.source), loader)
        return loaded

    def _score(self, questions: Sequence[str], answers: Sequence[str]) -> list[float]:
        import torch

        loaded = self.load()
        texts = [self.prompt_format.inspector_text(q, a) for q, a in zip(questions, answers)]
        scores: list[float] = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = loaded.tokenizer(
                    texts[start : start + self.batch_size],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(loaded.model.device)
                logits = loaded.model(**batch).logits
                if logits.shape[-1] == 1:
                    probs = torch.sigmoid(logits[:, 0])
                else:
                    probs = torch.softmax(logits.float(), dim=-1)[:, self.aligned_label]
                scores.extend(float(p) for p in probs)
        return scores
