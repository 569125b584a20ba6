"""Train a request inspector: a logistic head on frozen sentence embeddings of requests.

Requests are short and the encoder is frozen, so training is a few seconds after one embedding
pass. A slice of the training requests (chosen by hash, never a held-out topic) calibrates the
head so that the threshold means what it says.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from aligners.backends.encoder import SentenceEncoder
from aligners.data.records import RequestExample
from aligners.data.safety_sources import CALIBRATION_SALT, stable_fraction
from aligners.inspector.request import EncoderRequestInspector, RequestHeadConfig
from aligners.training.cross_encoder import fit_platt
from aligners.training.metrics import classification_metrics

logger = logging.getLogger(__name__)


class RequestInspectorTrainingConfig(BaseModel):
    """Hyperparameters of a request head."""

    model_config = ConfigDict(extra="forbid")

    encoder: str = "minilm"
    weight_decay: float = Field(default=1e-3, ge=0, description="L2 penalty on the head.")
    max_iter: int = Field(default=300, gt=0, description="L-BFGS iterations.")
    calibration_fraction: float = Field(
        default=0.15, gt=0, lt=1, description="Share of training requests kept for calibration."
    )
    threshold: float = Field(
        default=0.5, ge=0, le=1, description="The shipped decision threshold on P(fine)."
    )
    batch_size: int = Field(default=64, gt=0)


def _fit_logistic(features: Any, labels: Any, config: RequestInspectorTrainingConfig) -> Any:
    import torch

    head = EncoderRequestInspector.build_head(features.shape[1]).double()
    x, y = features.double(), labels.double()
    # Balanced classes: the harmful and ordinary pools differ in size by source, not by nature.
    positives = float(y.sum())
    weight = torch.where(y > 0.5, len(y) / (2 * positives), len(y) / (2 * (len(y) - positives)))
    optimizer = torch.optim.LBFGS(
        head.parameters(), max_iter=config.max_iter, line_search_fn="strong_wolfe"
    )

    def closure() -> Any:
        optimizer.zero_grad()
        logits = head(x).squeeze(-1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, weight=weight)
        loss = loss + config.weight_decay * head.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return head.float()


def _slice_metrics(
    examples: Sequence[RequestExample], probs: Sequence[float], threshold: float
) -> dict[str, Any]:
    """Block rates per source: what share of each kind of request the check turns away."""
    blocked: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for example, p in zip(examples, probs):
        key = f"{'ordinary' if example.label else 'harmful'}/{example.metadata.get('source')}"
        total[key] += 1
        blocked[key] += p < threshold
    return {k: {"n": total[k], "blocked": round(blocked[k] / total[k], 4)} for k in sorted(total)}


def train_request_inspector(
    train: Sequence[RequestExample],
    heldout: Sequence[RequestExample],
    output_dir: str | Path,
    config: RequestInspectorTrainingConfig | None = None,
    *,
    encoder: SentenceEncoder | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Fit, calibrate, measure on ``heldout`` and save a request head; returns its metrics."""
    import torch

    config = config or RequestInspectorTrainingConfig()
    if len({e.label for e in train}) < 2:
        raise ValueError("request inspector training data needs both harmful and fine requests")
    sentence_encoder = encoder if encoder is not None else SentenceEncoder(config.encoder)
    calibration = [
        e
        for e in train
        if stable_fraction(CALIBRATION_SALT + e.request) < config.calibration_fraction
    ]
    fit = [
        e
        for e in train
        if stable_fraction(CALIBRATION_SALT + e.request) >= config.calibration_fraction
    ]
    if len({e.label for e in fit}) < 2:
        fit, calibration = list(train), []

    def embed(examples: Sequence[RequestExample]) -> Any:
        from tqdm.auto import tqdm

        texts = [e.request for e in examples]
        if not texts:
            return torch.zeros(0, sentence_encoder.dimension)
        step = config.batch_size * 8
        parts = [
            sentence_encoder.encode(texts[i : i + step], batch_size=config.batch_size)
            for i in tqdm(
                range(0, len(texts), step), desc="embedding requests", disable=not progress
            )
        ]
        return torch.cat(parts)

    def labels(examples: Sequence[RequestExample]) -> Any:
        return torch.tensor([float(e.label) for e in examples])

    logger.info(
        "embedding %d fit, %d calibration, %d held-out requests",
        len(fit),
        len(calibration),
        len(heldout),
    )
    head = _fit_logistic(embed(fit), labels(fit), config)
    inspector = EncoderRequestInspector(
        head,
        RequestHeadConfig(
            encoder=config.encoder,
            embedding_dim=int(head.in_features),
            threshold=config.threshold,
        ),
        encoder=sentence_encoder,
    )
    if calibration:
        with torch.inference_mode():
            raw = head(embed(calibration)).squeeze(-1).tolist()
        inspector.config.calibration = fit_platt(raw, [e.label for e in calibration])

    metrics: dict[str, Any] = {
        "n_train": len(fit),
        "n_calibration": len(calibration),
        "n_heldout": len(heldout),
        "threshold": config.threshold,
    }
    if heldout:
        probs = inspector.score_batch([e.request for e in heldout])
        metrics["heldout"] = classification_metrics(
            [e.label for e in heldout], probs, train_labels=[e.label for e in fit]
        )
        metrics["heldout_blocked_by_source"] = _slice_metrics(heldout, probs, config.threshold)
    inspector.config.metrics = metrics
    inspector.save_pretrained(output_dir)
    return metrics
