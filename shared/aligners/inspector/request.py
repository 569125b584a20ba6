"""Request inspectors: is a request fine to answer at all? Checked before the upstream model runs.

An answer inspector reads (question, answer); a request inspector reads the request alone, so a
harmful request can be turned away before it costs an upstream call, retrieval or a rewrite.
Scores are P(fine to answer): like every inspector here, high is good.
"""

from __future__ import annotations

import asyncio
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from aligners.backends.encoder import SentenceEncoder
from aligners.inspector.base import as_score
from aligners.inspector.cross_encoder import HeadCalibration

REQUEST_INSPECTOR_CONFIG = "inspector_config.json"
REQUEST_HEAD_WEIGHTS = "request_head.safetensors"
#: The shipped request inspector (``scripts/train_defaults.sh request``).
DEFAULT_REQUEST_INSPECTOR_DIR = (
    Path(__file__).resolve().parent.parent / "default_models" / "inspectors" / "request"
)


class RequestCheck(BaseModel):
    """The verdict on one request."""

    request: str
    score: float = Field(description="P(the request is fine to answer).")
    threshold: float
    allowed: bool = Field(description="score >= threshold: the request goes to the model.")

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready dict (what integrations put in metadata and responses)."""
        return self.model_dump()


def _validate_requests(requests: Sequence[str]) -> list[str]:
    if isinstance(requests, str):
        raise TypeError("score_batch takes a list of requests; use score() for one request")
    checked = []
    for i, request in enumerate(requests):
        if not isinstance(request, str):
            raise TypeError(f"request {i} must be a str, got {type(request).__name__}")
        checked.append(request)
    return checked


class RequestInspector(ABC):
    """Scores requests: P(fine to answer). Subclasses implement :meth:`_score`."""

    threshold: float = 0.5

    @abstractmethod
    def _score(self, requests: Sequence[str]) -> list[float]: ...

    def score_batch(self, requests: Sequence[str]) -> list[float]:
        """P(fine to answer) for each request."""
        checked = _validate_requests(requests)
        if not checked:
            return []
        scores = list(self._score(checked))
        who = f"request inspector {type(self).__name__}"
        if len(scores) != len(checked):
            raise RuntimeError(f"{who} returned {len(scores)} scores for {len(checked)} requests")
        return [as_score(score, who, f"request {i}") for i, score in enumerate(scores)]

    def score(self, request: str) -> float:
        """P(fine to answer) for one request."""
        return self.score_batch([request])[0]

    def check_batch(
        self, requests: Sequence[str], threshold: float | None = None
    ) -> list[RequestCheck]:
        """Verdicts for a batch; ``threshold`` defaults to the inspector's own."""
        cut = self.threshold if threshold is None else threshold
        if not 0.0 <= cut <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {cut}")
        return [
            RequestCheck(request=r, score=s, threshold=cut, allowed=s >= cut)
            for r, s in zip(requests, self.score_batch(requests))
        ]

    def check(self, request: str, threshold: float | None = None) -> RequestCheck:
        """The verdict on one request."""
        return self.check_batch([request], threshold)[0]

    async def acheck(self, request: str, threshold: float | None = None) -> RequestCheck:
        """Async :meth:`check` (the encoder runs off the event loop)."""
        return await asyncio.to_thread(self.check, request, threshold)


class FunctionRequestInspector(RequestInspector):
    """A request inspector from a function ``request -> P(fine)`` (rules, a remote classifier)."""

    def __init__(self, fn: Callable[[str], float], *, threshold: float = 0.5) -> None:
        if not callable(fn):
            raise TypeError(
                "FunctionRequestInspector needs a callable request -> P(fine to answer), got "
                f"{type(fn).__name__} {fn!r}"
            )
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise TypeError(
                f"FunctionRequestInspector threshold must be a number in [0, 1], got "
                f"{type(threshold).__name__} {threshold!r}"
            )
        if not 0.0 <= threshold <= 1.0:  # NaN fails too
            raise ValueError(
                f"FunctionRequestInspector threshold must be in [0, 1], got {threshold}"
            )
        self.fn = fn
        self.threshold = float(threshold)

    def _score(self, requests: Sequence[str]) -> list[float]:
        return [self.fn(r) for r in requests]  # score_batch checks each value


class RequestHeadConfig(BaseModel):
    """What a request head needs besides its weights."""

    model_config = ConfigDict(extra="allow")

    kind: Literal["request-head"] = "request-head"
    encoder: str = "minilm"
    embedding_dim: int = 384
    threshold: float = Field(default=0.5, ge=0, le=1)
    calibration: HeadCalibration = Field(
        default_factory=HeadCalibration,
        description="Platt scaling fitted on requests the head was not trained on.",
    )
    trunk: str | None = Field(
        default=None,
        description="Fine-tuned top layers of the encoder the head reads through (a delta file, "
        "relative to this folder; the safety gate's request_trunk.safetensors); None: the "
        "frozen encoder.",
    )
    max_length: int = Field(default=64, gt=8, description="Tokens of a request read by `trunk`.")
    metrics: dict[str, Any] = Field(default_factory=dict)


class EncoderRequestInspector(RequestInspector):
    """A sentence encoder embeds the request (frozen, or with the safety gate's fine-tuned top
    layers when the config names a ``trunk``); a logistic head gives P(fine to answer)."""

    def __init__(
        self,
        head: Any,
        config: RequestHeadConfig,
        *,
        encoder: SentenceEncoder | None = None,
        trunk: Path | None = None,
    ) -> None:
        self.head = head.eval()
        self.config = config
        self.threshold = config.threshold
        self.encoder = encoder if encoder is not None else SentenceEncoder(config.encoder)
        #: The fine-tuned trunk's delta file (resolved), when the config names one.
        self.trunk = trunk
        if config.trunk is not None and trunk is None:
            raise ValueError(
                f"this request head reads through the fine-tuned trunk {config.trunk!r}: load "
                "it with from_pretrained(folder) or pass trunk="
            )

    def embed(self, requests: Sequence[str]) -> Any:
        """The features the head reads: frozen embeddings, or the fine-tuned trunk's states."""
        if self.trunk is None:
            return self.encoder.encode(list(requests))
        from aligners.inspector.tuned_trunk import load_tuned_trunk, mean_pooled

        model, tokenizer = load_tuned_trunk(self.encoder, self.trunk)
        return mean_pooled(
            model,
            tokenizer,
            requests,
            max_length=self.config.max_length,
            dim=self.config.embedding_dim,
        )

    @staticmethod
    def build_head(embedding_dim: int) -> Any:
        """The head network: logistic regression on the request embedding."""
        from torch import nn

        return nn.Linear(embedding_dim, 1)

    def logits(self, embeddings: Any) -> Any:
        """Calibrated logits of P(fine) for precomputed embeddings."""
        import torch

        calibration = self.config.calibration
        with torch.inference_mode():
            raw = self.head(embeddings).squeeze(-1)
            return calibration.scale * raw + calibration.bias

    def _score(self, requests: Sequence[str]) -> list[float]:
        import torch

        return [float(x) for x in torch.sigmoid(self.logits(self.embed(requests)))]

    @classmethod
    def from_pretrained(
        cls, path: str | Path, *, encoder: SentenceEncoder | None = None
    ) -> EncoderRequestInspector:
        """Load ``inspector_config.json`` and ``request_head.safetensors`` from a directory."""
        from safetensors.torch import load_file

        directory = Path(path).expanduser()
        config_file = directory / REQUEST_INSPECTOR_CONFIG
        if not config_file.exists():
            raise FileNotFoundError(f"no {REQUEST_INSPECTOR_CONFIG} in {directory}")
        raw = json.loads(config_file.read_text())
        if raw.get("kind") != "request-head":
            raise ValueError(
                f"{directory} holds a {raw.get('kind')!r} inspector, not a request head "
                "(kind 'request-head')"
            )
        config = RequestHeadConfig(**raw)
        head = cls.build_head(config.embedding_dim)
        head.load_state_dict(load_file(str(directory / REQUEST_HEAD_WEIGHTS)))
        trunk = (directory / config.trunk).resolve() if config.trunk is not None else None
        if trunk is not None and not trunk.exists():
            raise FileNotFoundError(
                f"{directory} names the fine-tuned trunk {config.trunk!r}, which is missing "
                f"({trunk})"
            )
        return cls(head, config, encoder=encoder, trunk=trunk)

    def save_pretrained(self, path: str | Path) -> Path:
        """Write the head (a few KB) and its config; a fine-tuned trunk is not copied but named
        by its path relative to the folder (it ships once, with the safety gate)."""
        import os

        from safetensors.torch import save_file

        directory = Path(path).expanduser()
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.head.state_dict().items()}
        save_file(state, str(directory / REQUEST_HEAD_WEIGHTS))
        config = self.config
        if self.trunk is not None:
            relative = Path(os.path.relpath(self.trunk, directory.resolve())).as_posix()
            config = config.model_copy(update={"trunk": relative})
        (directory / REQUEST_INSPECTOR_CONFIG).write_text(config.model_dump_json(indent=2) + "\n")
        return directory


def default_request_inspector() -> EncoderRequestInspector:
    """The shipped request inspector (MiniLM + a logistic head; see its model card)."""
    if not (DEFAULT_REQUEST_INSPECTOR_DIR / REQUEST_INSPECTOR_CONFIG).exists():
        raise FileNotFoundError(
            f"no shipped request inspector in {DEFAULT_REQUEST_INSPECTOR_DIR}; train one with "
            "`aligners train request-inspector` or pass request_inspector="
        )
    return _cached_default()


_DEFAULT: list[EncoderRequestInspector] = []


def _cached_default() -> EncoderRequestInspector:
    # One head per process; the encoder weights are shared through the model cache anyway.
    if not _DEFAULT:
        _DEFAULT.append(EncoderRequestInspector.from_pretrained(DEFAULT_REQUEST_INSPECTOR_DIR))
    return _DEFAULT[0]


def resolve_request_inspector(
    check_request: bool | RequestInspector | None,
) -> RequestInspector | None:
    """What a surface's ``check_request`` option means: False/None -> no check, True -> the
    shipped inspector, an inspector -> that one."""
    if check_request is None or check_request is False:
        return None
    if check_request is True:
        return default_request_inspector()
    if isinstance(check_request, RequestInspector):
        return check_request
    raise TypeError(
        "check_request must be True, False or a RequestInspector, got "
        f"{type(check_request).__name__}"
    )
