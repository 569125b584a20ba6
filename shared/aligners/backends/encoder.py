"""A frozen sentence encoder (mean-pooled, L2-normalised), loaded once per process."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aligners.backends.cache import MODEL_CACHE, ModelCache
from aligners.backends.models import resolve_model


@dataclass
class _LoadedEncoder:
    model: Any
    tokenizer: Any


class SentenceEncoder:
    """Sentence embeddings as sentence-transformers computes them for MiniLM-style models.

    Example:
        >>> SentenceEncoder("minilm").encode(["hello"]).shape  # doctest: +SKIP
        (1, 384)
    """

    def __init__(
        self, model: str = "minilm", *, max_length: int = 256, cache: ModelCache = MODEL_CACHE
    ) -> None:
        self.source = resolve_model(model)
        self.max_length = max_length
        self._cache = cache

    @property
    def cache_key(self) -> tuple[Any, ...]:
        return ("encoder", self.source)

    def load(self) -> _LoadedEncoder:
        """Load (once per process) and return the encoder."""

        def loader() -> _LoadedEncoder:
            from transformers import AutoModel, AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(self.source.path)
            model = AutoModel.from_pretrained(self.source.path)
            model.eval()
            return _LoadedEncoder(model, tokenizer)

        loaded: _LoadedEncoder = self._cache.get_or_load(self.cache_key, loader)
        return loaded

    @property
    def dimension(self) -> int:
        return int(self.load().model.config.hidden_size)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> Any:
        """Embed texts; returns a float32 ``torch.Tensor`` of shape ``(len(texts), dim)``."""
        import torch

        if isinstance(texts, str):
            raise TypeError("encode takes a list of str, not a single str")
        loaded = self.load()
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = loaded.tokenizer(
                    list(texts[start : start + batch_size]),
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                hidden = loaded.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                chunks.append(torch.nn.functional.normalize(pooled, dim=-1))
        if not chunks:
            return torch.zeros((0, self.dimension))
        return torch.cat(chunks).float()
