"""A sentence encoder whose top layers were fine-tuned, read as mean-pooled states.

The safety gate's request head reads questions through MiniLM with its top layers fine-tuned on
labelled requests; the request check reads requests through the same model. Both load it here,
keyed by the delta file's resolved path, so a process that runs both holds one copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aligners.backends.encoder import SentenceEncoder


def encoder_tokenizer(encoder: SentenceEncoder) -> Any:
    """The tokenizer of the encoder's model (from the process-wide model cache)."""
    from transformers import AutoTokenizer

    from aligners.backends.cache import MODEL_CACHE

    source = encoder.source
    return MODEL_CACHE.get_or_load(
        ("tokenizer", source), lambda: AutoTokenizer.from_pretrained(source.path)
    )


def load_tuned_trunk(encoder: SentenceEncoder, trunk: Path) -> tuple[Any, Any]:
    """The encoder's transformer with the fine-tuned layers of ``trunk`` loaded over it, and
    its tokenizer (both from the process-wide model cache)."""
    from transformers import AutoModel

    from aligners.backends.cache import MODEL_CACHE
    from aligners.inspector.cross_encoder import load_trunk_delta

    source = encoder.source
    tokenizer = encoder_tokenizer(encoder)
    path = trunk.resolve()
    if not path.exists():
        raise FileNotFoundError(f"fine-tuned trunk {path} is missing")
    stamp = path.stat().st_mtime_ns

    def loader() -> Any:
        model = AutoModel.from_pretrained(source.path)
        load_trunk_delta(model, path)
        return model.eval()

    model = MODEL_CACHE.get_or_load(("safety-gate-request", source, str(path), stamp), loader)
    return model, tokenizer


def mean_pooled(
    model: Any, tokenizer: Any, texts: Sequence[str], *, max_length: int, dim: int
) -> Any:
    """``(n, dim)`` mean-pooled last states of ``texts`` (empty texts read as one space)."""
    import torch

    texts = [t if t.strip() else " " for t in texts]
    if not texts:
        return torch.zeros((0, dim))
    pooled = []
    with torch.inference_mode():
        for start in range(0, len(texts), 64):
            batch = tokenizer(
                list(texts[start : start + 64]),
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled.append((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9))
    return torch.cat(pooled).float()
