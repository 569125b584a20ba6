"""Training cross-encoder inspectors: MiniLM's top layers plus one head per criterion, end to end
on (question, answer) pairs, then Platt-calibrated on questions held out of training.

The frozen lower layers are run once per example and their output kept, so every epoch costs
only the trained top layers: minutes on a 2-core CPU for a few thousand pairs.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aligners.backends.cache import ModelCache
from aligners.backends.models import resolve_model
from aligners.data.records import InspectorExample
from aligners.data.safety_sources import CALIBRATION_SALT, stable_fraction
from aligners.inspector.cross_encoder import (
    CrossEncoderConfig,
    CrossEncoderInspector,
    CrossEncoderTrunk,
    HeadCalibration,
    build_heads,
    load_heads,
    mean_pool,
    save_cross_encoder,
    tokenize_pairs,
    trunk_layer_prefixes,
    write_cross_encoder_config,
)
from aligners.training.metrics import classification_metrics

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
CHECKPOINT_FILE = "checkpoint.pt"


class CrossEncoderTrainingConfig(BaseModel):
    """Settings for :func:`train_cross_encoder`; the CLI exposes each as a flag."""

    model_config = ConfigDict(extra="forbid")

    encoder: str = "minilm"
    criterion: str = Field(default="ethical", description="Criterion of examples naming none.")
    trained_layers: int = Field(default=2, ge=1, description="Top encoder layers fine-tuned.")
    max_length: int = Field(default=256, gt=8)
    epochs: float = Field(default=3.0, gt=0)
    learning_rate: float = Field(default=5e-5, gt=0, description="For the encoder layers.")
    head_learning_rate: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.01, ge=0)
    batch_size: int = Field(default=32, gt=0)
    warmup_fraction: float = Field(default=0.06, ge=0, lt=1)
    calibration_fraction: float = Field(
        default=0.1, ge=0, lt=1, description="Questions kept out of training to calibrate on."
    )
    calibration_salt: str = Field(
        default=CALIBRATION_SALT,
        description="Prefix of the hash that picks calibration questions. The recipe's own "
        "held-out split uses the unsalted hash, so '' calibrates on training questions that "
        "are mostly harmful requests (how the shipped gate was calibrated); keep the default.",
    )
    threshold: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="Ship this threshold with every head (an operating point read off a "
        "held-out curve); None: flag_recall decides, or no threshold is shipped.",
    )
    flag_recall: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="Choose each head's shipped threshold so that this share of the misaligned "
        "calibration pairs is flagged (None: no threshold shipped; squads use 0.5).",
    )
    block_threshold: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="Ship this block threshold with every head: a squad blocks an answer its "
        "aligner did not fix when the head still scores it under this (None: never blocks).",
    )
    seed: int = 0

    @model_validator(mode="after")
    def _block_under_threshold(self) -> CrossEncoderTrainingConfig:
        if (
            self.block_threshold is not None
            and self.threshold is not None
            and self.block_threshold > self.threshold
        ):
            raise ValueError(
                f"block_threshold ({self.block_threshold}) must not be above threshold "
                f"({self.threshold}): an answer that passes the head cannot be blocked by it"
            )
        return self


def _head(example: InspectorExample) -> str:
    """The criterion (head) of an example; every example has one once training starts."""
    if example.criterion is None:
        raise ValueError(f"example without a criterion: {example.question[:60]!r}")
    return example.criterion


def _encoder_layers(model: Any) -> Any:
    return model.encoder.layer


def _run_top(model: Any, trained_layers: int, hidden: Any, mask: Any) -> Any:
    """The trained top layers over cached lower-layer states, then mean pooling."""
    import torch

    additive = (1.0 - mask[:, None, None, :].to(hidden.dtype)) * torch.finfo(hidden.dtype).min
    layers = _encoder_layers(model)
    for layer in layers[len(layers) - trained_layers :]:
        out = layer(hidden, attention_mask=additive)
        hidden = out[0] if isinstance(out, tuple) else out
    return mean_pool(hidden, mask)


def _lower_states(
    model: Any, tokenizer: Any, examples: Sequence[InspectorExample], config: Any, progress: bool
) -> list[Any]:
    """Each example's hidden states below the trained layers (one pass, kept in memory)."""
    import torch
    from tqdm.auto import tqdm

    level = int(model.config.num_hidden_layers) - config.trained_layers
    order = sorted(
        range(len(examples)), key=lambda i: len(examples[i].question + examples[i].answer)
    )
    states: list[Any] = [None] * len(examples)
    size = 64
    model.eval()
    with torch.inference_mode():
        for start in tqdm(
            range(0, len(order), size), desc="encoding (frozen layers)", disable=not progress
        ):
            rows = order[start : start + size]
            batch = tokenize_pairs(
                tokenizer,
                [examples[i].question for i in rows],
                [examples[i].answer for i in rows],
                config.max_length,
            )
            hidden = model(**batch, output_hidden_states=True).hidden_states[level]
            for j, row in enumerate(rows):
                length = int(batch["attention_mask"][j].sum())
                states[row] = hidden[j, :length].clone()
    return states


def _pad(states: Sequence[Any]) -> tuple[Any, Any]:
    import torch

    longest = max(s.shape[0] for s in states)
    hidden = torch.zeros(len(states), longest, states[0].shape[-1])
    mask = torch.zeros(len(states), longest, dtype=torch.long)
    for i, s in enumerate(states):
        hidden[i, : s.shape[0]] = s
        mask[i, : s.shape[0]] = 1
    return hidden, mask


def _batches(lengths: Sequence[int], size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar lengths (little padding, still random across epochs)."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = size * 20
    batches = []
    for start in range(0, len(order), chunk):
        block = sorted(order[start : start + chunk], key=lambda i: lengths[i])
        batches += [block[i : i + size] for i in range(0, len(block), size)]
    rng.shuffle(batches)
    return batches


def fit_platt(logits: Sequence[float], labels: Sequence[int]) -> HeadCalibration:
    """Scale and bias minimising log loss, with Platt's smoothed targets so that separable
    calibration data cannot drive the scale to infinity."""
    import torch

    if len(set(labels)) < 2:
        return HeadCalibration()
    positives = sum(labels)
    negatives = len(labels) - positives
    high, low = (positives + 1) / (positives + 2), 1 / (negatives + 2)
    x = torch.tensor(logits, dtype=torch.float64)
    y = torch.tensor([high if label else low for label in labels], dtype=torch.float64)
    params = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([params], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> Any:
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x * params[0] + params[1], y)
        loss.backward()
        return loss

    optimizer.step(closure)
    fitted = params.detach()
    return HeadCalibration(scale=round(float(fitted[0]), 6), bias=round(float(fitted[1]), 6))


def train_cross_encoder(
    examples: Sequence[InspectorExample],
    output_dir: str | Path,
    config: CrossEncoderTrainingConfig | None = None,
    *,
    evaluation: Sequence[InspectorExample] | None = None,
    progress: bool = True,
    max_steps: int = -1,
    calibration: Sequence[InspectorExample] | None = None,
    save_steps: int = 0,
    resume: bool = False,
) -> dict[str, Any]:
    """Train a trunk with one head per criterion in ``examples``; save it; return metrics.

    Metrics per head: on ``evaluation`` when given (use questions from held-out topics), and on
    the calibration questions. Both go into ``inspector_config.json`` and ``metrics.json``.
    ``calibration``: an explicit validation set to calibrate on (all of ``examples`` is then
    trained on) instead of a hashed slice of ``examples``. ``save_steps`` > 0 writes a
    checkpoint to ``output_dir/checkpoint.pt`` every that many steps; ``resume`` continues from
    it (the same batches in the same order as an uninterrupted run).
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModel, AutoTokenizer

    config = config or CrossEncoderTrainingConfig()
    examples = list(examples)
    if not examples:
        raise ValueError("no inspector examples to train on")
    examples = _with_criterion(examples, config.criterion)
    criteria = sorted({e.criterion for e in examples if e.criterion})
    for name in criteria:
        labels = {e.label for e in examples if e.criterion == name}
        if labels != {0, 1}:
            raise ValueError(
                f"criterion {name!r} needs both labels 0 and 1; found {sorted(labels)}"
            )
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    train, calibrate = _train_and_calibration(examples, calibration, config)
    source = resolve_model(config.encoder)
    tokenizer = AutoTokenizer.from_pretrained(source.path)
    model = AutoModel.from_pretrained(source.path)
    for p in model.parameters():
        p.requires_grad_(False)
    layers = _encoder_layers(model)
    top = list(layers)[len(layers) - config.trained_layers :]
    for layer in top:
        for p in layer.parameters():
            p.requires_grad_(True)
    ce_config = CrossEncoderConfig(
        encoder=config.encoder,
        trained_layers=config.trained_layers,
        max_length=config.max_length,
        heads=criteria,
    )
    heads = build_heads(ce_config, int(model.config.hidden_size))
    head_index = {name: i for i, name in enumerate(criteria)}

    states = _lower_states(model, tokenizer, train, config, progress)
    lengths = [s.shape[0] for s in states]
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total = math.ceil(steps_per_epoch * config.epochs)
    if max_steps > 0:
        total = min(total, max_steps)
    optimizer, schedule = _optimizer(top, heads, config, total)
    criterion_ids = torch.tensor([head_index[_head(e)] for e in train])
    targets = torch.tensor([float(e.label) for e in train])
    step = 0
    output = Path(output_dir).expanduser()
    checkpoint = output / CHECKPOINT_FILE
    done = 0
    if resume and checkpoint.exists():
        done = _load_checkpoint(checkpoint, top, heads, optimizer, schedule)
        logger.info("resuming from step %d of %d", done, total)
    bar = tqdm(total=total, initial=done, desc="training cross-encoder", disable=not progress)
    for layer in top:
        layer.train()
    while step < total:
        for batch in _batches(lengths, config.batch_size, rng):
            if step < done:  # replay the batch order of the interrupted run, without training
                step += 1
                continue
            hidden, mask = _pad([states[i] for i in batch])
            pooled = _run_top(model, config.trained_layers, hidden, mask)
            logits = torch.stack([heads[n](pooled).squeeze(-1) for n in criteria], dim=-1)
            index = torch.tensor(batch)
            chosen = logits.gather(1, criterion_ids[index].unsqueeze(1)).squeeze(1)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(chosen, targets[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if save_steps > 0 and step % save_steps == 0 and step < total:
                _save_checkpoint(checkpoint, step, top, heads, optimizer, schedule)
            if step >= total:
                break
    bar.close()
    model.eval()
    with torch.no_grad():
        # The shipped delta is float16: calibrate and measure the weights users will load.
        for layer in top:
            for p in layer.parameters():
                p.copy_(p.half().float())

    # Weights are written once; calibration and metrics then only rewrite the config.
    save_cross_encoder(output, ce_config, model, heads)
    _calibrate_heads(output, ce_config, calibrate, config)
    metrics = _measure_heads(output, ce_config, train, calibrate, evaluation, config.criterion)
    ce_config.metrics = metrics
    write_cross_encoder_config(output, ce_config)
    record = {"kind": "cross-encoder", "metrics": metrics, "training": config.model_dump()}
    (output / METRICS_FILE).write_text(json.dumps(record, indent=2) + "\n")
    checkpoint.unlink(missing_ok=True)
    return metrics


def _optimizer(
    top: Sequence[Any], heads: dict[str, Any], config: CrossEncoderTrainingConfig, total: int
) -> tuple[Any, Any]:
    """AdamW over the trained layers and the heads (each its own learning rate) and a linear
    schedule with warm-up over ``total`` steps."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    optimizer = torch.optim.AdamW(
        [
            {
                "params": [p for layer in top for p in layer.parameters()],
                "lr": config.learning_rate,
            },
            {
                "params": [p for h in heads.values() for p in h.parameters()],
                "lr": config.head_learning_rate,
            },
        ],
        weight_decay=config.weight_decay,
    )
    schedule = get_linear_schedule_with_warmup(
        optimizer, int(total * config.warmup_fraction), total
    )
    return optimizer, schedule


def _with_criterion(examples: Sequence[InspectorExample], criterion: str) -> list[InspectorExample]:
    """``examples`` with ``criterion`` filled in where a row names none."""
    return [e if e.criterion else e.model_copy(update={"criterion": criterion}) for e in examples]


def _train_and_calibration(
    examples: list[InspectorExample],
    calibration: Sequence[InspectorExample] | None,
    config: CrossEncoderTrainingConfig,
) -> tuple[list[InspectorExample], list[InspectorExample]]:
    """The rows to train on and to calibrate on: all of ``examples`` and the explicit
    ``calibration`` set, else a salted-hash slice of ``examples`` held back by question."""
    if calibration is not None:
        return examples, _with_criterion(calibration, config.criterion)

    def held_back(e: InspectorExample) -> bool:
        return stable_fraction(config.calibration_salt + e.question) < config.calibration_fraction

    return [e for e in examples if not held_back(e)], [e for e in examples if held_back(e)]


def _calibrate_heads(
    output: Path,
    ce_config: CrossEncoderConfig,
    calibrate: Sequence[InspectorExample],
    config: CrossEncoderTrainingConfig,
) -> None:
    """Platt scaling per head on the calibration rows, then each head's flag threshold (fixed,
    or the one that reaches ``flag_recall``) and block threshold; rewrites the config."""
    calibration_scores = _raw_logits(output, ce_config, calibrate)
    for name in ce_config.heads:
        pairs = [(s, e.label) for s, e in zip(calibration_scores, calibrate) if e.criterion == name]
        ce_config.calibration[name] = fit_platt([s for s, _ in pairs], [y for _, y in pairs])
        if config.threshold is not None:
            ce_config.thresholds[name] = config.threshold
        elif config.flag_recall is not None:
            calibrated = ce_config.calibration[name]
            probs = [_sigmoid(calibrated.scale * s + calibrated.bias) for s, y in pairs if y == 0]
            threshold = threshold_for_recall(probs, config.flag_recall)
            if threshold is not None:
                ce_config.thresholds[name] = threshold
        if config.block_threshold is not None:
            ce_config.block_thresholds[name] = config.block_threshold
    write_cross_encoder_config(output, ce_config)


def _measure_heads(
    output: Path,
    ce_config: CrossEncoderConfig,
    train: Sequence[InspectorExample],
    calibrate: Sequence[InspectorExample],
    evaluation: Sequence[InspectorExample] | None,
    default_criterion: str,
) -> dict[str, Any]:
    """Each saved head's metrics on its calibration rows and on ``evaluation`` (held out)."""
    metrics: dict[str, Any] = {}
    for name in ce_config.heads:
        inspector = CrossEncoderInspector.from_pretrained(output, criterion=name)
        train_labels = [e.label for e in train if e.criterion == name]
        parts = {"calibration": [e for e in calibrate if e.criterion == name]}
        if evaluation is not None:
            parts["heldout"] = [e for e in evaluation if (e.criterion or default_criterion) == name]
        for part, rows in parts.items():
            if not rows:
                continue
            probs = inspector.score_batch([e.question for e in rows], [e.answer for e in rows])
            metrics.setdefault(name, {})[part] = classification_metrics(
                [e.label for e in rows], probs, train_labels=train_labels
            )
        metrics.setdefault(name, {})["n_train"] = len(train_labels)
    return metrics


def _save_checkpoint(
    path: Path, step: int, top: Sequence[Any], heads: dict[str, Any], optimizer: Any, schedule: Any
) -> None:
    """Trained layers, heads, optimizer and schedule at ``step`` (written atomically)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "step": step,
        "top": [layer.state_dict() for layer in top],
        "heads": {name: head.state_dict() for name, head in heads.items()},
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
    }
    partial = path.with_suffix(".tmp")
    torch.save(state, partial)
    partial.replace(path)


def _load_checkpoint(
    path: Path, top: Sequence[Any], heads: dict[str, Any], optimizer: Any, schedule: Any
) -> int:
    """Restore a checkpoint of :func:`_save_checkpoint`; returns its step."""
    import torch

    state = torch.load(path, weights_only=True)
    for layer, values in zip(top, state["top"]):
        layer.load_state_dict(values)
    for name, head in heads.items():
        head.load_state_dict(state["heads"][name])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    return int(state["step"])


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def threshold_for_recall(misaligned_probs: Sequence[float], recall: float) -> float | None:
    """The smallest threshold on P(aligned) that flags ``recall`` of these misaligned pairs
    (a pair is flagged when its score is under the threshold), rounded up to 0.01."""
    if not misaligned_probs:
        return None
    ordered = sorted(misaligned_probs)
    k = min(len(ordered) - 1, math.ceil(recall * len(ordered)) - 1)
    return min(0.99, math.ceil(ordered[k] * 100 + 1e-9) / 100)


def _raw_logits(
    directory: Path,
    config: CrossEncoderConfig,
    rows: Sequence[InspectorExample],
) -> list[float]:
    """Uncalibrated logits of each row's own head, through the saved (reloaded) trunk."""
    import torch

    if not rows:
        return []
    trunk = CrossEncoderTrunk(config, directory, cache=ModelCache())
    features = trunk.features([e.question for e in rows], [e.answer for e in rows])
    heads = load_heads(directory, config)
    with torch.inference_mode():
        return [float(heads[_head(e)](f).squeeze(-1)) for e, f in zip(rows, features)]


__all__ = ["CrossEncoderTrainingConfig", "train_cross_encoder", "trunk_layer_prefixes"]
