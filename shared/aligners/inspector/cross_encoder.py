"""Cross-encoder inspectors: question and answer read together by a fine-tuned MiniLM trunk, one
small head per criterion on top.

A frozen sentence encoder embeds the question and the answer apart, so it can only tell what an
answer *sounds like*; whether an answer is fine depends on the question it answers ("here is how
to pick the lock" is fine for your own bike and not for a neighbour's door). The trunk here reads
``[CLS] question [SEP] answer [SEP]`` and its top layers are fine-tuned; the lower layers stay the
packaged MiniLM's, so what ships is only the top layers (a delta) and the heads.

Files of a saved trunk directory: ``inspector_config.json`` (:class:`CrossEncoderConfig`),
``trunk.safetensors`` (the fine-tuned top layers, float16) and ``heads.safetensors`` (one linear
head per criterion, with its calibration).
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from aligners.backends.cache import MODEL_CACHE, ModelCache
from aligners.backends.models import resolve_model
from aligners.criteria import get_criterion
from aligners.errors import ModelNotFoundError
from aligners.inspector.base import FeatureInspector

INSPECTOR_CONFIG = "inspector_config.json"
TRUNK_WEIGHTS = "trunk.safetensors"
HEAD_WEIGHTS = "heads.safetensors"


class HeadCalibration(BaseModel):
    """Platt scaling of a head's logit, fitted on data the head was not trained on."""

    scale: float = 1.0
    bias: float = 0.0


class CrossEncoderConfig(BaseModel):
    """What a cross-encoder trunk and its heads need besides their weights."""

    model_config = ConfigDict(extra="allow")

    kind: Literal["cross-encoder"] = "cross-encoder"
    encoder: str = Field(default="minilm", description="Base encoder (alias, directory, hub id).")
    trained_layers: int = Field(
        default=2, ge=0, description="Top encoder layers stored in trunk.safetensors."
    )
    max_length: int = Field(default=256, gt=8)
    batch_size: int = Field(default=32, gt=0)
    heads: list[str] = Field(default_factory=list, description="Criterion of each head, in order.")
    calibration: dict[str, HeadCalibration] = Field(default_factory=dict)
    thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="Operating point per head, chosen on held-out data (what a squad uses "
        "when no threshold is given; 0.5 for heads without one).",
    )
    block_thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="Per head, the score under which a squad blocks an answer its aligner did "
        "not fix (SquadMember.block_threshold); heads without one never block.",
    )
    metrics: dict[str, Any] = Field(default_factory=dict, description="Held-out metrics per head.")


@dataclass
class _LoadedTrunk:
    model: Any
    tokenizer: Any


def trunk_layer_prefixes(num_layers: int, trained_layers: int) -> list[str]:
    """State-dict prefixes of the trained top layers of a BERT-style encoder."""
    return [f"encoder.layer.{i}." for i in range(num_layers - trained_layers, num_layers)]


def tokenize_pairs(
    tokenizer: Any, questions: Sequence[str], answers: Sequence[str], max_length: int
) -> Any:
    """``[CLS] question [SEP] answer [SEP]``, the longer side cut first past ``max_length``."""
    return tokenizer(
        list(questions),
        list(answers),
        padding=True,
        truncation="longest_first",
        max_length=max_length,
        return_tensors="pt",
    )


def mean_pool(hidden: Any, attention_mask: Any) -> Any:
    """Mean of the token states under the attention mask."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


class CrossEncoderTrunk:
    """The shared part: MiniLM with fine-tuned top layers; pooled pair features for every head.

    Loaded once per process (keyed by the trunk file), however many heads use it.
    """

    def __init__(
        self,
        config: CrossEncoderConfig,
        directory: Path | None = None,
        *,
        cache: ModelCache = MODEL_CACHE,
        quantized: bool = False,
    ) -> None:
        self.config = config
        self.directory = directory
        self.source = resolve_model(config.encoder)
        self._cache = cache
        #: The encoder's linear layers run in int8 (dynamic quantization, CPU): about twice
        #: as fast on a CPU, scores within ~0.01 of float32's.
        self.quantized = quantized

    @property
    def cache_key(self) -> Hashable:
        trunk = self.directory / TRUNK_WEIGHTS if self.directory else None
        stamp = trunk.stat().st_mtime_ns if trunk is not None and trunk.exists() else None
        key: tuple[Any, ...] = ("cross-encoder", self.source, str(trunk), stamp)
        return (*key, "int8") if self.quantized else key

    def load(self) -> _LoadedTrunk:
        """Load the base encoder and put the fine-tuned top layers in place (once per process)."""

        def loader() -> _LoadedTrunk:
            from transformers import AutoModel, AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(self.source.path)
            model = AutoModel.from_pretrained(self.source.path)
            if self.directory is not None and self.config.trained_layers:
                load_trunk_delta(model, self.directory / TRUNK_WEIGHTS)
            model.eval()
            if self.quantized:
                model = quantize_linear_layers(model)
            return _LoadedTrunk(model, tokenizer)

        loaded: _LoadedTrunk = self._cache.get_or_load(self.cache_key, loader)
        return loaded

    def features(self, questions: Sequence[str], answers: Sequence[str]) -> Any:
        """Pooled pair features, shape ``(len(questions), hidden)``; batches sorted by length."""
        import torch

        loaded = self.load()
        order = sorted(range(len(questions)), key=lambda i: len(questions[i]) + len(answers[i]))
        pooled: list[Any] = [None] * len(order)
        size = self.config.batch_size
        with torch.inference_mode():
            for start in range(0, len(order), size):
                rows = order[start : start + size]
                batch = tokenize_pairs(
                    loaded.tokenizer,
                    [questions[i] for i in rows],
                    [answers[i] for i in rows],
                    self.config.max_length,
                )
                hidden = loaded.model(**batch).last_hidden_state
                for row, vector in zip(rows, mean_pool(hidden, batch["attention_mask"])):
                    pooled[row] = vector
        if not pooled:
            return torch.zeros((0, int(loaded.model.config.hidden_size)))
        return torch.stack(pooled).float()


def quantize_linear_layers(model: Any) -> Any:
    """``model`` with its ``nn.Linear`` layers in int8 (torch's dynamic quantization: weights
    stored in int8 with one scale per output channel, activations quantized per call); CPU
    inference only."""
    import warnings

    import torch

    with warnings.catch_warnings():
        # torch marks torch.ao.quantization as moving to torchao; it still runs as documented
        warnings.simplefilter("ignore")
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        quantized = quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig})
    return quantized


def load_trunk_delta(model: Any, path: Path) -> None:
    """Copy the stored top-layer weights into ``model``; the file must hold nothing else."""
    from safetensors.torch import load_file

    if not path.exists():
        raise ModelNotFoundError(f"cross-encoder trunk weights missing: {path}")
    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise ModelNotFoundError(f"could not read cross-encoder trunk {path}: {exc}") from exc
    result = model.load_state_dict(state, strict=False)
    if result.unexpected_keys:
        raise ModelNotFoundError(
            f"{path} does not fit the base encoder: unexpected {result.unexpected_keys[:3]}"
        )


class CrossEncoderInspector(FeatureInspector):
    """One criterion's head over a :class:`CrossEncoderTrunk`; P(aligned) is calibrated.

    Inspectors loaded from the same directory share the trunk and, in a squad, its forward pass.

    Example:
        >>> inspector = CrossEncoderInspector.from_pretrained("my-trunk", criterion="ethical")
        >>> inspector.score("How do I pick a lock?", "Use a tension wrench ...")  # doctest: +SKIP
    """

    def __init__(self, trunk: CrossEncoderTrunk, head: Any, criterion: str) -> None:
        super().__init__(criterion)
        self.trunk = trunk
        self.head = head.eval()
        self.calibration = trunk.config.calibration.get(criterion, HeadCalibration())

    @property
    def config(self) -> CrossEncoderConfig:
        return self.trunk.config

    @property
    def default_threshold(self) -> float | None:
        """The head's shipped operating point on P(aligned), if one was chosen."""
        return self.config.thresholds.get(self.criterion.name if self.criterion else "")

    @property
    def default_block_threshold(self) -> float | None:
        """The head's shipped block threshold (see SquadMember.block_threshold), if any."""
        return self.config.block_thresholds.get(self.criterion.name if self.criterion else "")

    @property
    def metrics(self) -> dict[str, Any]:
        """Held-out metrics of this head, as written when it was trained."""
        name = self.criterion.name if self.criterion else ""
        value: dict[str, Any] = self.config.metrics.get(name, {})
        return value

    @classmethod
    def from_pretrained(
        cls, path: str | Path, *, criterion: str | None = None, cache: ModelCache = MODEL_CACHE
    ) -> CrossEncoderInspector:
        """Load one head (``criterion``; the only head when omitted) and its shared trunk."""
        directory = Path(path).expanduser()
        config = read_cross_encoder_config(directory)
        if criterion is None:
            if len(config.heads) != 1:
                raise ValueError(
                    f"{directory} has heads {config.heads}; name one with criterion=..."
                )
            criterion = config.heads[0]
        if criterion not in config.heads:
            raise ValueError(f"{directory} has no head for {criterion!r} (it has {config.heads})")
        get_criterion(criterion)  # unknown names fail here, naming the known ones
        heads = load_heads(directory, config)
        return cls(CrossEncoderTrunk(config, directory, cache=cache), heads[criterion], criterion)

    @property
    def feature_key(self) -> Hashable:
        return self.trunk.cache_key

    def features(self, questions: Sequence[str], answers: Sequence[str]) -> Any:
        return self.trunk.features(questions, answers)

    def logits(self, features: Any) -> Any:
        """Calibrated logits of P(aligned)."""
        import torch

        with torch.inference_mode():
            raw = self.head(features).squeeze(-1)
        return raw * self.calibration.scale + self.calibration.bias

    def score_features(self, features: Any) -> list[float]:
        import torch

        return [float(x) for x in torch.sigmoid(self.logits(features))]


def read_cross_encoder_config(directory: Path) -> CrossEncoderConfig:
    """The config of a saved trunk directory, with a clear error when it is not one."""
    config_file = directory / INSPECTOR_CONFIG
    if not config_file.exists():
        raise FileNotFoundError(f"no {INSPECTOR_CONFIG} in {directory}")
    try:
        values = json.loads(config_file.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{config_file} is not valid JSON: {exc}") from exc
    if values.get("kind") != "cross-encoder":
        raise ValueError(
            f"{config_file} is not a cross-encoder inspector (kind={values.get('kind')!r})"
        )
    return CrossEncoderConfig(**values)


def build_heads(config: CrossEncoderConfig, hidden_size: int) -> dict[str, Any]:
    """A fresh linear head per criterion."""
    from torch import nn

    return {name: nn.Linear(hidden_size, 1) for name in config.heads}


def load_heads(directory: Path, config: CrossEncoderConfig) -> dict[str, Any]:
    """The heads stored in ``heads.safetensors``, keyed by criterion."""
    from safetensors.torch import load_file

    path = directory / HEAD_WEIGHTS
    if not path.exists():
        raise ModelNotFoundError(f"cross-encoder heads missing: {path}")
    state = load_file(str(path))
    hidden = int(state[f"{config.heads[0]}.weight"].shape[-1]) if config.heads else 0
    heads = build_heads(config, hidden)
    for name, head in heads.items():
        head.load_state_dict(
            {k.split(".", 1)[1]: v.float() for k, v in state.items() if k.startswith(f"{name}.")}
        )
    return heads


def save_cross_encoder(
    directory: str | Path, config: CrossEncoderConfig, model: Any, heads: dict[str, Any]
) -> Path:
    """Write config, the top-layer delta (float16) and the heads: ``from_pretrained``'s input."""
    from safetensors.torch import save_file

    out = Path(directory).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    prefixes = trunk_layer_prefixes(int(model.config.num_hidden_layers), config.trained_layers)
    delta = {
        k: v.detach().to("cpu").half().contiguous()
        for k, v in model.state_dict().items()
        if k.startswith(tuple(prefixes))
    }
    if delta:
        save_file(delta, str(out / TRUNK_WEIGHTS))
    head_state = {
        f"{name}.{k}": v.detach().to("cpu").float().contiguous()
        for name, head in heads.items()
        for k, v in head.state_dict().items()
    }
    save_file(head_state, str(out / HEAD_WEIGHTS))
    return write_cross_encoder_config(out, config)


def write_cross_encoder_config(directory: Path, config: CrossEncoderConfig) -> Path:
    """(Re)write only ``inspector_config.json``: calibration and metrics live there."""
    (directory / INSPECTOR_CONFIG).write_text(config.model_dump_json(indent=2) + "\n")
    return directory
