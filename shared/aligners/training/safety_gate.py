"""Train the safety gate (:class:`~aligners.inspector.safety_gate.SafetyGateInspector`) and the
request check from the traffic recipe's rows.

Every text is embedded once by the frozen encoder (cached on disk, so sweeps are cheap). The
three heads train on the ``train`` split; the combination, the flag threshold and the request
check's threshold are chosen on ``validation``; ``test`` (held-out styles, writers and topics) is
only measured. The request head doubles as the request check (an
:class:`~aligners.inspector.request.EncoderRequestInspector`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from aligners.backends.encoder import SentenceEncoder
from aligners.data.records import InspectorExample
from aligners.inspector.cross_encoder import HeadCalibration
from aligners.inspector.request import EncoderRequestInspector, RequestHeadConfig
from aligners.inspector.safety_gate import (
    COMBINE_FEATURES,
    DEFAULT_COMBINE_FEATURES,
    GATE_HEADS,
    REQUEST_TRUNK_WEIGHTS,
    SafetyGateConfig,
    SafetyGateInspector,
    check_combine_features,
    combine_features,
    reads_lead,
)
from aligners.training.metrics import auroc

COMPLIANT, SAFE, GOOD = "compliant", "safe", "good"


class SafetyGateTrainingConfig(BaseModel):
    """Settings of :func:`train_safety_gate`."""

    model_config = ConfigDict(extra="forbid")

    encoder: str = "minilm"
    weight_decay: float = Field(default=1e-3, ge=0, description="L2 penalty of every head.")
    good_flag_rate: float = Field(
        default=0.02,
        gt=0,
        lt=1,
        description="The flag threshold is the highest that flags at most this share of the "
        "validation split's aligned answers.",
    )
    alarming_flag_rate: float | None = Field(
        default=0.03,
        gt=0,
        lt=1,
        description="The flag threshold also flags at most this share of the validation "
        "split's good answers to alarming-but-safe requests (metadata.source ending in "
        "'alarming'); None: the good_flag_rate rule alone.",
    )
    block_threshold: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Shipped block threshold (None: the flag threshold, so whatever the "
        "aligner cannot make pass is blocked).",
    )
    request_safe_turned_away: float = Field(
        default=0.02,
        gt=0,
        lt=1,
        description="The request check's threshold turns away at most this share of the "
        "validation split's safe requests.",
    )
    request_trained_layers: int = Field(
        default=0,
        ge=0,
        description="Top encoder layers fine-tuned for the gate's request head, on the request "
        "rows (0: the head reads the frozen embedding). The request check keeps the frozen head.",
    )
    request_epochs: int = Field(default=3, gt=0)
    request_learning_rate: float = Field(default=1e-4, gt=0)
    request_max_length: int = Field(default=64, gt=8)
    trunk_on_answers: bool = Field(
        default=False,
        description="Fine-tune the trunk on the answers' harmful-content labels as well as on "
        "the requests (one 'harmful text' head), and fit the complies and content heads on it "
        "instead of the frozen encoder (needs request_trained_layers > 0).",
    )
    answer_max_length: int = Field(
        default=128, gt=8, description="Tokens of an answer the trunk reads (trunk_on_answers)."
    )
    content_from_reviews: bool = Field(
        default=False,
        description="The content head (and the trunk) learn a compliant answer as harmful "
        "content only when no reviewer read its text as harmless (metadata.review 'ok'). Off: "
        "every compliant answer is harmful content (docs/training.md: on the reviewed traffic "
        "data the trunk then learns one writer's crisp how-to style as harm).",
    )
    content_head_from_reviews: bool = Field(
        default=False,
        description="The content head (not the trunk) learns a compliant answer as harmful "
        "content only when no reviewer read its text as harmless (metadata.review 'ok'); the "
        "trunk still learns every compliant answer. Shipped since 2026-12-08, once validation "
        "held terse answers and other voices (docs/training.md). No effect on rows without "
        "reviews.",
    )
    combine_features: list[str] = Field(
        default_factory=lambda: list(DEFAULT_COMBINE_FEATURES),
        min_length=1,
        description="What the combination fitted on validation reads, by name: "
        f"{', '.join(COMBINE_FEATURES)} (aligners.inspector.safety_gate.combine_features).",
    )
    seed: int = 0

    @field_validator("combine_features")
    @classmethod
    def _known_features(cls, names: list[str]) -> list[str]:
        return check_combine_features(names)

    @model_validator(mode="after")
    def _answers_need_a_trunk(self) -> SafetyGateTrainingConfig:
        if self.trunk_on_answers and not self.request_trained_layers:
            raise ValueError("trunk_on_answers needs request_trained_layers > 0")
        return self


class EmbeddingCache:
    """Embeddings of texts by a frozen encoder, kept in memory and in a file between runs."""

    def __init__(self, encoder: SentenceEncoder, path: Path | None = None) -> None:
        self.encoder = encoder
        self.path = path
        self.table: dict[str, Any] = {}
        if path is not None and path.exists():
            import torch

            self.table = torch.load(path)

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def __call__(self, texts: Sequence[str], progress: bool = True) -> Any:
        import torch
        from tqdm.auto import tqdm

        missing = sorted({t for t in texts if self.key(t) not in self.table})
        chunk = 256
        for start in tqdm(range(0, len(missing), chunk), desc="embedding", disable=not progress):
            batch = missing[start : start + chunk]
            for text, row in zip(batch, self.encoder.encode(batch)):
                self.table[self.key(text)] = row.clone()
        if missing and self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(self.table, self.path)
        if not texts:
            return torch.zeros((0, self.encoder.dimension))
        return torch.stack([self.table[self.key(t)] for t in texts])


def fit_logistic(
    features: Any,
    labels: Sequence[int],
    *,
    weight_decay: float,
    balanced: bool = True,
    sample_weight: Sequence[float] | None = None,
) -> tuple[Any, Any]:
    """Weights and bias of an L2-regularised logistic regression (full-batch L-BFGS); each row
    counts ``sample_weight`` times (1 by default), then, with ``balanced``, the two labels
    weigh the same in total."""
    import torch

    x = features.float()
    y = torch.tensor(labels, dtype=torch.float32)
    if float(y.sum()) in (0.0, float(len(y))):
        raise ValueError("logistic head needs both labels in its training data")
    weights = (
        torch.ones_like(y)
        if sample_weight is None
        else torch.tensor(list(sample_weight), dtype=torch.float32)
    )
    if balanced:
        total, positives = float(weights.sum()), float((weights * y).sum())
        if positives in (0.0, total):
            raise ValueError("logistic head needs weight on both labels")
        weights = weights * torch.where(
            y > 0, total / (2 * positives), total / (2 * (total - positives))
        )
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], lr=1.0, max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> Any:
        optimizer.zero_grad()
        logits = x @ w + b
        # over the total weight, not the row count: a row of weight 2 is two rows (the same for
        # unit or balanced weights, which sum to the row count)
        loss = (
            torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
            * weights
        ).sum() / weights.sum()
        loss = loss + weight_decay * (w * w).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return w.detach(), b.detach()


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _head_targets(
    train: Sequence[InspectorExample],
    request_train: Sequence[dict[str, Any]],
    *,
    content_from_reviews: bool = False,
) -> dict[str, list[tuple[str, int]]]:
    """Each head's ``(text, 1 = positive)`` training pairs: harmful requests (the labelled
    requests and the questions of the gate's own rows), complying answers, harmful content
    (every compliant answer, or with ``content_from_reviews`` :func:`holds_harmful_content`)."""
    harmful = holds_harmful_content if content_from_reviews else _complies_with_harm
    requests = [(str(r["request"]), 1 - int(r["label"])) for r in request_train]
    requests += [
        (r.question, int(r.metadata["kind"] in (COMPLIANT, SAFE)))
        for r in train
        if r.question and r.metadata.get("writer") != "swapped"
    ]
    return {
        "request": requests,
        "complies": [(r.answer, int(r.metadata["kind"] != SAFE)) for r in train],
        "content": [(r.answer, int(harmful(r))) for r in train],
    }


def _complies_with_harm(row: InspectorExample) -> bool:
    return row.metadata.get("kind") == COMPLIANT


def holds_harmful_content(row: InspectorExample) -> bool:
    """The content head's target: a compliant answer, unless a reviewer read its text as holding
    nothing harmful (``metadata["review"] == "ok"``, :func:`aligners.data.traffic_recipe.
    apply_answer_reviews`): it still complies, so the other heads still learn it."""
    return row.metadata.get("kind") == COMPLIANT and row.metadata.get("review") != "ok"


def flag_threshold(
    scores: Sequence[float],
    validation: Sequence[InspectorExample],
    good_flag_rate: float,
    alarming_flag_rate: float | None,
) -> tuple[float, str]:
    """The gate's flag threshold from its validation scores, and the rule in words: at most
    ``good_flag_rate`` of aligned answers flagged, and at most ``alarming_flag_rate`` of the good
    answers to alarming-but-safe requests (None: that rule off)."""
    aligned = [s for s, r in zip(scores, validation) if r.metadata["kind"] != COMPLIANT]
    threshold = _threshold_for_rate(aligned, good_flag_rate)
    rule = f"flags at most {good_flag_rate:.0%} of validation aligned answers"
    alarming = [s for s, r in zip(scores, validation) if _alarming_good(r)]
    if alarming_flag_rate is not None and alarming:
        # Good answers to alarming-but-safe requests are few in validation and the first to
        # turn into refusals: their own rule keeps the threshold under them.
        threshold = min(threshold, _threshold_for_rate(alarming, alarming_flag_rate))
        rule += (
            f" and at most {alarming_flag_rate:.0%} of the good answers to alarming-but-safe "
            f"requests ({len(alarming)})"
        )
        if _allowed_under(alarming_flag_rate, len(alarming)) == 0:
            rule += ", too few for that share to allow one: the lowest of them sets it"
    return threshold, rule


def _alarming_good(row: InspectorExample) -> bool:
    """A good answer to an alarming-but-safe request (the recipes mark its source so)."""
    return row.metadata.get("kind") == GOOD and str(row.metadata.get("source", "")).endswith(
        "alarming"
    )


def _allowed_under(rate: float, count: int) -> int:
    """How many of ``count`` scores a flag rate of ``rate`` lets fall under the threshold."""
    return int(rate * count)


def _threshold_for_rate(scores: Sequence[float], rate: float) -> float:
    """The highest threshold (4 decimals, rounded down) under which at most ``rate`` of
    ``scores`` fall (an answer is flagged when its score is under the threshold)."""
    ordered = sorted(scores)
    allowed = _allowed_under(rate, len(ordered))
    value = float(ordered[allowed]) if allowed < len(ordered) else 1.0
    return math.floor(value * 10_000) / 10_000


def gate_metrics(
    scores: Sequence[float], rows: Sequence[InspectorExample], threshold: float
) -> dict[str, Any]:
    """AUROC, F1 for harmful (compliant) answers and flag rates by kind at ``threshold``."""
    misaligned = [r.metadata.get("kind") == COMPLIANT for r in rows]
    flagged = [s < threshold for s in scores]
    tp = sum(f and m for f, m in zip(flagged, misaligned))
    fp = sum(f and not m for f, m in zip(flagged, misaligned))
    fn = sum(m and not f for f, m in zip(flagged, misaligned))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    kinds: dict[str, list[bool]] = {}
    for row, flag in zip(rows, flagged):
        kinds.setdefault(str(row.metadata.get("kind")), []).append(flag)
    value = (
        auroc([int(not m) for m in misaligned], list(scores))
        if any(misaligned) and not all(misaligned)
        else None
    )
    return {
        "n": len(rows),
        "auroc": None if value is None else round(value, 4),
        "f1_harmful": round(f1, 4),
        "precision_harmful": round(precision, 4),
        "recall_harmful": round(recall, 4),
        "flag_rate": {k: round(sum(v) / len(v), 4) for k, v in sorted(kinds.items())},
        "aligned_flag_rate": round(fp / (len(rows) - sum(misaligned)), 4)
        if len(rows) > sum(misaligned)
        else None,
    }


def by_family(
    scores: Sequence[float], rows: Sequence[InspectorExample], threshold: float
) -> dict[str, dict[str, Any]]:
    """:func:`gate_metrics` for each ``metadata["family"]``."""
    groups: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(str(row.metadata.get("family")), []).append(i)
    return {
        family: gate_metrics([scores[i] for i in idx], [rows[i] for i in idx], threshold)
        for family, idx in sorted(groups.items())
    }


def train_safety_gate(
    rows: Sequence[InspectorExample],
    requests: Sequence[dict[str, Any]],
    output_dir: str | Path,
    config: SafetyGateTrainingConfig | None = None,
    *,
    request_output_dir: str | Path | None = None,
    cache_file: Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train the gate (and the request check, where ``request_output_dir`` is given) from rows
    whose ``metadata`` holds ``kind`` and ``split``; returns the metrics that were saved."""
    import torch

    config = config or SafetyGateTrainingConfig()
    torch.manual_seed(config.seed)
    encoder = SentenceEncoder(config.encoder)
    embed = EmbeddingCache(encoder, cache_file)
    split = {
        name: [r for r in rows if r.metadata.get("split") == name]
        for name in ("train", "validation", "test")
    }
    request_split = {
        name: [r for r in requests if r["split"] == name]
        for name in ("train", "validation", "test")
    }
    if not split["train"] or not split["validation"]:
        raise ValueError("the gate needs rows in the train and validation splits")

    heads = SafetyGateInspector.build_heads(encoder.dimension)
    targets = _head_targets(
        split["train"], request_split["train"], content_from_reviews=config.content_from_reviews
    )
    # What the heads learn; the trunk learns ``targets``.
    head_targets = dict(targets)
    if config.content_head_from_reviews:
        head_targets["content"] = _head_targets(split["train"], [], content_from_reviews=True)[
            "content"
        ]
    # With trunk_on_answers the answer heads are fitted on the trunk once it is trained.
    frozen_names = ("request",) if config.trunk_on_answers else GATE_HEADS
    _fit_heads(heads, head_targets, frozen_names, lambda t: embed(t, progress), config, log)

    frozen_request_head = heads["request"]
    gate_config = SafetyGateConfig(encoder=config.encoder, embedding_dim=encoder.dimension)
    request_model = None
    if config.request_trained_layers:
        # With trunk_on_answers the trunk also learns harmful content from every training
        # writer's answers: family-out CV AUROC 0.959 vs 0.931 (docs/training.md).
        tuning = targets["request"] + (targets["content"] if config.trunk_on_answers else [])
        request_model, request_head, layers = fine_tune_request_model(
            tuning, config, progress=progress
        )
        gate_heads = SafetyGateInspector.build_heads(encoder.dimension)
        gate_heads.load_state_dict(heads.state_dict())
        gate_heads["request"].load_state_dict(request_head.state_dict())
        heads = gate_heads
        gate_config.request_trained_layers = layers
        gate_config.request_max_length = config.request_max_length
        gate_config.answers_through_trunk = config.trunk_on_answers
        gate_config.answer_max_length = config.answer_max_length
        log(f"request model: top {layers} layers fine-tuned on {len(tuning)} texts")
    gate = SafetyGateInspector(heads, gate_config, encoder=encoder, request_model=request_model)
    answer_features = (
        gate.answer_features if config.trunk_on_answers else (lambda t: embed(t, progress))
    )
    if config.trunk_on_answers:
        _fit_heads(heads, head_targets, ("complies", "content"), answer_features, config, log)

    request_features = (
        gate.request_features if request_model is not None else (lambda t: embed(t, progress))
    )

    def logits_of(part: Sequence[InspectorExample]) -> Any:
        answers = [r.answer for r in part]
        leads = gate.lead_features(answers) if reads_lead(config.combine_features) else None
        return gate.head_logits(
            request_features([r.question for r in part]), answer_features(answers), leads
        )

    validation = split["validation"]
    val_scores, rule = fit_combination(gate, logits_of(validation), validation, config)
    threshold = gate_config.threshold

    def scores_of(part: Sequence[InspectorExample]) -> list[float]:
        if not part:
            return []
        return [float(x) for x in 1 - torch.sigmoid(gate.misaligned_logits(logits_of(part)))]

    test_scores = scores_of(split["test"])
    metrics = {
        "counts": {name: len(part) for name, part in split.items()},
        "validation": gate_metrics(val_scores, validation, threshold),
        "heldout": gate_metrics(test_scores, split["test"], threshold) if test_scores else {},
        "heldout_by_family": by_family(test_scores, split["test"], threshold),
        "threshold_rule": rule,
    }
    gate_config.metrics = metrics
    gate.save_pretrained(output_dir)
    log(f"gate saved to {output_dir}: threshold {threshold}")

    if request_output_dir is not None:
        # With a fine-tuned request model the check reads through it (validation AUROC 0.978 vs
        # 0.917 for the frozen head on the traffic recipe) and names the gate's trunk file
        # instead of shipping a second copy.
        tuned = request_model is not None
        metrics["request"] = _save_request_check(
            heads["request"] if tuned else frozen_request_head,
            request_split,
            gate.request_features if tuned else (lambda texts: embed(texts, progress)),
            encoder,
            config,
            Path(request_output_dir),
            trunk=(Path(output_dir) / REQUEST_TRUNK_WEIGHTS).resolve() if tuned else None,
        )
    return metrics


def fit_combination(
    gate: SafetyGateInspector,
    logits: Any,
    validation: Sequence[InspectorExample],
    config: SafetyGateTrainingConfig,
) -> tuple[list[float], str]:
    """Fit ``gate``'s combination over ``config.combine_features`` on the validation rows' head
    logits, then its flag (and block) threshold by the validation rules; both are set on
    ``gate.config``. Returns the validation scores and the threshold rule in words."""
    import torch

    w, b = fit_logistic(
        combine_features(logits, config.combine_features),
        [int(r.metadata["kind"] == COMPLIANT) for r in validation],
        weight_decay=1e-4,
        balanced=False,
    )
    gate.config.combine_features = list(config.combine_features)
    gate.config.combine_weights = [round(float(v), 6) for v in w]
    gate.config.combine_bias = round(float(b), 6)
    scores = [float(x) for x in 1 - torch.sigmoid(gate.misaligned_logits(logits))]
    threshold, rule = flag_threshold(
        scores, validation, config.good_flag_rate, config.alarming_flag_rate
    )
    gate.config.threshold = threshold
    gate.config.block_threshold = (
        threshold if config.block_threshold is None else config.block_threshold
    )
    return scores, rule


def _fit_heads(
    heads: Any,
    targets: dict[str, list[tuple[str, int]]],
    names: Sequence[str],
    features: Callable[[Sequence[str]], Any],
    config: SafetyGateTrainingConfig,
    log: Callable[[str], None],
) -> None:
    """Fit each named head's logistic weights on ``features`` of its training texts."""
    for name in names:
        pairs = targets[name]
        w, b = fit_logistic(
            features([t for t, _ in pairs]),
            [y for _, y in pairs],
            weight_decay=config.weight_decay,
        )
        heads[name].weight.data = w.unsqueeze(0)
        heads[name].bias.data = b
        log(f"head {name}: {len(pairs)} examples")


def fine_tune_request_model(
    pairs: Sequence[tuple[str, int]],
    config: SafetyGateTrainingConfig,
    *,
    progress: bool = True,
) -> tuple[Any, Any, int]:
    """MiniLM with its top ``request_trained_layers`` fine-tuned, and a linear head on its
    mean-pooled states, on ``(text, 1 = harmful)`` pairs (requests; with ``trunk_on_answers``
    answers too, read up to ``answer_max_length`` tokens), class-balanced. The lower layers'
    states are computed once, so an epoch costs only the top layers. Returns the model (top
    layers rounded to float16, as shipped), the head and the number of layers trained."""
    import random

    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModel, AutoTokenizer, get_linear_schedule_with_warmup

    from aligners.backends.models import resolve_model
    from aligners.training.cross_encoder import _batches, _pad, _run_top

    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    source = resolve_model(config.encoder)
    tokenizer = AutoTokenizer.from_pretrained(source.path)
    model = AutoModel.from_pretrained(source.path).eval()
    total_layers = int(model.config.num_hidden_layers)
    layers = min(config.request_trained_layers, total_layers)
    texts = [t if t.strip() else " " for t, _ in pairs]
    max_length = (
        max(config.request_max_length, config.answer_max_length)
        if config.trunk_on_answers
        else config.request_max_length
    )
    states: dict[str, Any] = {}
    with torch.inference_mode():
        unique = sorted(set(texts), key=len)
        for start in tqdm(range(0, len(unique), 128), desc="requests", disable=not progress):
            batch_texts = unique[start : start + 128]
            batch = tokenizer(
                batch_texts,
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            hidden = model(**batch, output_hidden_states=True).hidden_states[total_layers - layers]
            for j, text in enumerate(batch_texts):
                length = int(batch["attention_mask"][j].sum())
                states[text] = hidden[j, :length].clone().half()
    rows = [states[t].float() for t in texts]
    for p in model.parameters():
        p.requires_grad_(False)
    top = list(model.encoder.layer)[total_layers - layers :]
    for layer in top:
        layer.train()
        for p in layer.parameters():
            p.requires_grad_(True)
    head = torch.nn.Linear(int(model.config.hidden_size), 1)
    y = torch.tensor([float(label) for _, label in pairs])
    positives = float(y.sum())
    if positives in (0.0, float(len(y))):
        raise ValueError("the request model needs harmful and fine requests")
    weights = torch.where(y > 0, len(y) / (2 * positives), len(y) / (2 * (len(y) - positives)))
    optimizer = torch.optim.AdamW(
        [
            {
                "params": [p for layer in top for p in layer.parameters()],
                "lr": config.request_learning_rate,
            },
            {"params": head.parameters(), "lr": 1e-3},
        ],
        weight_decay=0.01,
    )
    size = 32
    total = math.ceil(len(rows) / size) * config.request_epochs
    schedule = get_linear_schedule_with_warmup(optimizer, int(total * 0.06), total)
    lengths = [r.shape[0] for r in rows]
    step = 0
    bar = tqdm(total=total, desc="training request model", disable=not progress)
    while step < total:
        for batch_rows in _batches(lengths, size, rng):
            hidden, mask = _pad([rows[i] for i in batch_rows])
            logits = head(_run_top(model, layers, hidden, mask)).squeeze(-1)
            index = torch.tensor(batch_rows)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                logits, y[index], weight=weights[index]
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            bar.update(1)
            if step >= total:
                break
    bar.close()
    model.eval()
    with torch.no_grad():
        for layer in top:
            for p in layer.parameters():
                p.requires_grad_(False)
                p.copy_(p.half().float())  # what ships is float16: measure that
    head.requires_grad_(False)
    return model, head, layers


def _save_request_check(
    head: Any,
    request_split: dict[str, list[dict[str, Any]]],
    features: Callable[[Sequence[str]], Any],
    encoder: SentenceEncoder,
    config: SafetyGateTrainingConfig,
    out: Path,
    *,
    trunk: Path | None = None,
) -> dict[str, Any]:
    """The request head as a request check: P(fine) = sigmoid(-logit), threshold on validation;
    ``features`` embeds requests the way ``head`` reads them (through ``trunk`` when given)."""
    import torch

    fine_head = EncoderRequestInspector.build_head(encoder.dimension)
    fine_head.weight.data = -head.weight.data.clone()
    fine_head.bias.data = -head.bias.data.clone()
    request_config = RequestHeadConfig(
        encoder=config.encoder,
        embedding_dim=encoder.dimension,
        calibration=HeadCalibration(),
        max_length=config.request_max_length,
    )
    check = EncoderRequestInspector(fine_head, request_config, encoder=encoder, trunk=trunk)

    def scored(part: list[dict[str, Any]]) -> list[float]:
        if not part:
            return []
        return [
            float(x) for x in torch.sigmoid(check.logits(features([r["request"] for r in part])))
        ]

    validation = request_split["validation"]
    val_scores = scored(validation)
    safe_scores = [s for s, r in zip(val_scores, validation) if r["label"] == 1]
    threshold = _threshold_for_rate(safe_scores, config.request_safe_turned_away)
    request_config.threshold = threshold
    check.threshold = threshold

    def summary(part: list[dict[str, Any]], scores: list[float]) -> dict[str, Any]:
        harmful = [s for s, r in zip(scores, part) if r["label"] == 0]
        safe = [s for s, r in zip(scores, part) if r["label"] == 1]
        by_source: dict[str, list[bool]] = {}
        for s, r in zip(scores, part):
            by_source.setdefault(str(r["source"]), []).append(s < threshold)
        return {
            "n": len(part),
            "auroc": _round(auroc([r["label"] for r in part], scores))
            if harmful and safe
            else None,
            "harmful_turned_away": round(sum(s < threshold for s in harmful) / len(harmful), 4)
            if harmful
            else None,
            "safe_turned_away": round(sum(s < threshold for s in safe) / len(safe), 4)
            if safe
            else None,
            "turned_away_by_source": {
                k: round(sum(v) / len(v), 4) for k, v in sorted(by_source.items())
            },
        }

    test = request_split["test"]
    metrics = {
        "validation": summary(validation, val_scores),
        "heldout": summary(test, scored(test)),
        "threshold_rule": (
            f"turns away at most {config.request_safe_turned_away:.0%} of validation safe requests"
        ),
    }
    request_config.metrics = metrics
    check.save_pretrained(out)
    return metrics
