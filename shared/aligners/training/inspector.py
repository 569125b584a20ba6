"""Inspector training: a head on a frozen sentence encoder, or a fine-tuned sequence classifier."""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from aligners.backends.encoder import SentenceEncoder
from aligners.data.records import InspectorExample
from aligners.inspector.encoder_head import (
    EncoderHeadConfig,
    EncoderHeadInspector,
    build_head,
    pair_features,
)
from aligners.training.metrics import classification_metrics

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"


class InspectorTrainingConfig(BaseModel):
    """Settings for :func:`train_inspector`; every field has a CLI flag of the same name."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["encoder-head", "sequence-classifier"] = "encoder-head"
    criterion: str | None = None
    encoder: str = Field(
        default="minilm", description="Encoder (encoder-head) or classifier base model."
    )
    hidden_size: int = Field(
        default=0, ge=0, description="Head hidden layer; 0 = logistic regression."
    )
    standardize: bool = Field(
        default=False,
        description="Train on standardised features (folded into the saved head); helps encoders "
        "whose features differ a lot in scale, overfits on the shipped MiniLM data.",
    )
    # Chosen on a validation split of the shipped data (docs/training.md): raw features, 30
    # epochs, light weight decay beat standardised features in accuracy, AUROC and calibration.
    epochs: int = Field(default=30, gt=0)
    learning_rate: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    batch_size: int = Field(default=64, gt=0)
    eval_fraction: float = Field(default=0.2, gt=0, lt=1)
    seed: int = 0
    max_length: int = Field(default=256, gt=0)
    cache_dir: str | None = Field(
        default=None, description="Where embeddings are cached (encoder-head)."
    )
    format: str = Field(default="ibm", description="Text layout of sequence-classifier inputs.")


def split_examples(
    examples: Sequence[InspectorExample], eval_fraction: float, seed: int
) -> tuple[list[InspectorExample], list[InspectorExample]]:
    """Held-out split by question, so both answers to one question land on the same side.

    (Pairs from one question share most of their features; splitting them apart would leak.)
    """
    questions = sorted({e.question for e in examples})
    rng = random.Random(seed)
    rng.shuffle(questions)
    n_eval = max(1, round(len(questions) * eval_fraction)) if len(questions) > 1 else 0
    held = set(questions[:n_eval])
    train = [e for e in examples if e.question not in held]
    evaluation = [e for e in examples if e.question in held]
    if not train or not evaluation:
        raise ValueError(
            "need examples for at least two distinct questions to hold some out; "
            f"got {len(questions)}"
        )
    return train, evaluation


class EmbeddingCache:
    """Sentence embeddings on disk, keyed by encoder and text: computed once, reused by reruns."""

    def __init__(self, encoder: SentenceEncoder, directory: str | Path | None) -> None:
        self.encoder = encoder
        self.directory = Path(directory).expanduser() if directory else None
        self._memory: dict[str, Any] = {}
        tag = hashlib.sha1(str(encoder.source.path).encode()).hexdigest()[:12]
        self.file = self.directory / f"embeddings-{tag}.safetensors" if self.directory else None
        if self.file is not None and self.file.exists():
            from safetensors.torch import load_file

            self._memory = dict(load_file(str(self.file)))

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha1(text.encode("utf-8")).hexdigest()

    def encode(self, texts: Sequence[str], progress: bool = False) -> Any:
        """Embeddings of ``texts`` (n, dim), computing only the ones not cached yet."""
        import torch

        keys = [self.key(t) for t in texts]
        missing = list(dict.fromkeys(t for t, k in zip(texts, keys) if k not in self._memory))
        if missing:
            chunk = 256
            iterator = range(0, len(missing), chunk)
            if progress:
                from tqdm.auto import tqdm

                iterator = tqdm(iterator, desc="embedding", unit="batch")
            for start in iterator:
                part = missing[start : start + chunk]
                vectors = self.encoder.encode(part)
                for text, vector in zip(part, vectors):
                    self._memory[self.key(text)] = vector.clone()
                self.save()  # a crash loses at most one chunk of embeddings
        return torch.stack([self._memory[k] for k in keys])

    def save(self) -> None:
        if self.file is None:
            return
        from safetensors.torch import save_file

        self.file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_name(self.file.name + ".tmp")
        save_file({k: v.contiguous() for k, v in self._memory.items()}, str(tmp))
        tmp.replace(self.file)


def _features(cache: EmbeddingCache, examples: Sequence[InspectorExample], progress: bool) -> Any:
    texts = [e.question for e in examples] + [e.answer for e in examples]
    embeddings = cache.encode(texts, progress=progress)
    n = len(examples)
    return pair_features(embeddings[:n], embeddings[n:])


def train_encoder_head(
    train: Sequence[InspectorExample],
    evaluation: Sequence[InspectorExample],
    config: InspectorTrainingConfig,
    *,
    encoder: SentenceEncoder | None = None,
    progress: bool = True,
) -> tuple[EncoderHeadInspector, dict[str, Any]]:
    """Fit a head on frozen-encoder pair features; returns the inspector and held-out metrics."""
    import torch

    sentence_encoder = (
        encoder
        if encoder is not None
        else SentenceEncoder(config.encoder, max_length=config.max_length)
    )
    cache = EmbeddingCache(sentence_encoder, config.cache_dir)
    x_train = _features(cache, train, progress)
    x_eval = _features(cache, evaluation, progress)
    y_train = torch.tensor([float(e.label) for e in train])
    dim = x_train.shape[1] // 3

    # Standardise features for training (pair features differ in scale by orders of magnitude),
    # then fold the scaling into the first layer so the saved head takes raw features.
    if config.standardize:
        mean = x_train.mean(0)
        std = x_train.std(0).clamp_min(1e-6)
    else:
        mean = torch.zeros(x_train.shape[1])
        std = torch.ones(x_train.shape[1])
    x_train_std = (x_train - mean) / std

    torch.manual_seed(config.seed)
    head = build_head(dim, config.hidden_size)
    # Balance the classes in the loss so a skewed split does not just learn the majority.
    positives = float(y_train.sum())
    negatives = float(len(y_train) - positives)
    pos_weight = torch.tensor(negatives / positives if positives and negatives else 1.0)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    optimizer = torch.optim.AdamW(
        head.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    generator = torch.Generator().manual_seed(config.seed)
    epochs = range(config.epochs)
    if progress:
        from tqdm.auto import tqdm

        epochs = tqdm(epochs, desc="training head", unit="epoch")
    head.train()
    for _ in epochs:
        order = torch.randperm(len(y_train), generator=generator)
        for start in range(0, len(order), config.batch_size):
            index = order[start : start + config.batch_size]
            optimizer.zero_grad()
            loss = loss_fn(head(x_train_std[index]).squeeze(-1), y_train[index])
            loss.backward()
            optimizer.step()
    head.eval()
    first = head if isinstance(head, torch.nn.Linear) else head[0]
    with torch.no_grad():
        first.bias -= (first.weight * (mean / std)).sum(-1)
        first.weight /= std
    head_config = EncoderHeadConfig(
        encoder=config.encoder,
        criterion=config.criterion,
        hidden_size=config.hidden_size,
        embedding_dim=dim,
    )
    inspector = EncoderHeadInspector(
        head, head_config, criterion=config.criterion, encoder=sentence_encoder
    )
    probs = inspector.score_features(x_eval)
    train_probs = inspector.score_features(x_train)
    labels = [e.label for e in evaluation]
    metrics = classification_metrics(labels, probs, train_labels=[e.label for e in train])
    metrics["n_train"] = len(train)
    metrics["train_accuracy"] = round(
        sum(int((p >= 0.5) == bool(e.label)) for p, e in zip(train_probs, train)) / len(train), 4
    )
    return inspector, metrics


def train_sequence_classifier(
    train: Sequence[InspectorExample],
    evaluation: Sequence[InspectorExample],
    config: InspectorTrainingConfig,
    output_dir: str | Path,
    *,
    progress: bool = True,
    max_steps: int = -1,
) -> dict[str, Any]:
    """Fine-tune ``AutoModelForSequenceClassification`` (2 labels, 1 = aligned) with Trainer.

    The model and tokenizer are saved in ``output_dir``; load them with
    :class:`~aligners.inspector.SequenceClassifierInspector` (``format`` as trained).
    """
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from aligners.backends.models import resolve_model
    from aligners.formats import get_format

    output = Path(output_dir).expanduser()
    source = resolve_model(config.encoder)
    tokenizer = AutoTokenizer.from_pretrained(source.path)
    fmt = get_format(config.format)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(
        source.path,
        num_labels=2,
        id2label={0: "misaligned", 1: "aligned"},
        label2id={"misaligned": 0, "aligned": 1},
    )
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id

    def encode(examples: Sequence[InspectorExample]) -> list[dict[str, Any]]:
        rows = []
        for e in examples:
            item = tokenizer(
                fmt.inspector_text(e.question, e.answer),
                truncation=True,
                max_length=config.max_length,
            )
            item["labels"] = e.label
            rows.append(dict(item))
        return rows

    args = TrainingArguments(
        output_dir=str(output / "checkpoints"),
        num_train_epochs=config.epochs,
        max_steps=max_steps,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        seed=config.seed,
        save_strategy="epoch",
        save_total_limit=1,
        logging_steps=10,
        report_to=[],
        disable_tqdm=not progress,
        use_cpu=not torch.cuda.is_available(),
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=encode(train),  # type: ignore[arg-type]
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    trainer.train()
    trainer.save_model(str(output))
    tokenizer.save_pretrained(str(output))

    from aligners.inspector import SequenceClassifierInspector

    inspector = SequenceClassifierInspector(
        str(output), criterion=config.criterion, format=config.format, max_length=config.max_length
    )
    # Score through the inspector class users will load, so the metrics describe that path.
    from aligners.backends.cache import ModelCache

    inspector._cache = ModelCache()
    probs = inspector.score_batch([e.question for e in evaluation], [e.answer for e in evaluation])
    metrics = classification_metrics(
        [e.label for e in evaluation], probs, train_labels=[e.label for e in train]
    )
    metrics["n_train"] = len(train)
    return metrics


def train_inspector(
    examples: Sequence[InspectorExample],
    output_dir: str | Path,
    config: InspectorTrainingConfig | None = None,
    *,
    encoder: SentenceEncoder | None = None,
    evaluation: Sequence[InspectorExample] | None = None,
    data_description: dict[str, Any] | None = None,
    progress: bool = True,
    max_steps: int = -1,
) -> dict[str, Any]:
    """Train either inspector kind, save it in ``output_dir`` and write held-out metrics there.

    Metrics (accuracy, AUROC, ECE, Brier, majority baseline) go into ``metrics.json`` and, for
    encoder heads, into ``inspector_config.json`` too. Returns the metrics.
    """
    config = config or InspectorTrainingConfig()
    examples = list(examples)
    if not examples:
        raise ValueError("no inspector examples to train on")
    labels = {e.label for e in examples}
    if labels != {0, 1}:
        raise ValueError(f"inspector data needs both labels 0 and 1; found only {sorted(labels)}")
    if evaluation is None:
        train, held = split_examples(examples, config.eval_fraction, config.seed)
    else:
        train, held = examples, list(evaluation)
    output = Path(output_dir).expanduser()
    output.mkdir(parents=True, exist_ok=True)
    if config.kind == "encoder-head":
        inspector, metrics = train_encoder_head(
            train, held, config, encoder=encoder, progress=progress
        )
        inspector.config.metrics = metrics | (
            {"data": data_description} if data_description else {}
        )
        inspector.save_pretrained(output)
    else:
        metrics = train_sequence_classifier(
            train, held, config, output, progress=progress, max_steps=max_steps
        )
    record = {
        "kind": config.kind,
        "criterion": config.criterion,
        "metrics": metrics,
        "training": config.model_dump(exclude={"cache_dir"}),
        "data": data_description or {},
    }
    (output / METRICS_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return metrics
