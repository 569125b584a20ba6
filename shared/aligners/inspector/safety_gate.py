"""The safety gate: is this answer harmful? Three small questions on MiniLM sentence embeddings.

It asks three things, each a logistic head on a MiniLM embedding:

- ``request``: is the request harmful? (read from the question alone; the same head is the
  request check's model);
- ``complies``: does the answer carry out what was asked, rather than decline? (the answer alone);
- ``content``: does the answer itself hold harmful content, whatever was asked? (the answer
  alone: catches harm given to a harmless question, or to no question in an agent loop).

A small logistic combination of named features of the three logits (:data:`COMBINE_FEATURES`:
each logit, "harmful request and it complies", and "that or harmful content in a complying
answer"), fitted on a validation split, gives P(misaligned); the score is P(aligned) = 1 - that.

Answers often restate what they carry out ("To build a keylogger, hook ...", "Title: How to
..."), so the ``lead`` features also let the request head read the answer's opening
(:func:`answer_lead`): the request head learnt harmful aims from thousands of labelled requests,
the content head only from the training answers, and harm given to a harmless question (or to
none, in an agent loop) has no question to read.

A frozen embedding places "kill a Python process" near "kill my neighbour", so the request head
can read the question through its own MiniLM whose top layers were fine-tuned on labelled
requests (``request_trained_layers`` > 0: the delta ships as ``request_trunk.safetensors``). With
``answers_through_trunk`` (the shipped gate) that trunk was fine-tuned on the answers' harmful
content too and the answer heads read through it; without it they read the frozen encoder, which
cannot learn a writer's style but ranks harm worse (docs/training.md).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aligners.backends.encoder import SentenceEncoder
from aligners.criteria import get_criterion
from aligners.inspector.base import Inspector

SAFETY_GATE_CONFIG = "inspector_config.json"
SAFETY_GATE_WEIGHTS = "gate_heads.safetensors"
#: Fine-tuned top layers of the request model (float16), when ``request_trained_layers`` > 0.
REQUEST_TRUNK_WEIGHTS = "request_trunk.safetensors"
#: The three heads, in the order of their logits in the combination's features.
GATE_HEADS: tuple[str, ...] = ("request", "complies", "content")
#: What the combination reads, by name, each a logit per row (see :func:`combine_features`):
#: the three heads; ``request_and_complies`` = P(request) * P(complies); ``harm_either`` = the
#: noisy-or of that and P(content) * P(complies), so harmful content given to a harmless
#: question can outweigh the request head, which a weighted sum of logits caps.
#: ``lead_request`` = the request head's logit on :func:`answer_lead`; ``harm_lead`` = the
#: noisy-or of ``harm_either`` and P(lead is a harmful request) * P(complies).
COMBINE_FEATURES: tuple[str, ...] = (
    *GATE_HEADS,
    "request_and_complies",
    "harm_either",
    "lead_request",
    "harm_lead",
)
#: The features that need the request head's logit on the answer's lead (a fourth column).
LEAD_FEATURES: tuple[str, ...] = ("lead_request", "harm_lead")
#: Words of an answer's opening the request head reads for the ``lead`` features.
LEAD_WORDS = 40
#: The combination of the gates shipped before ``harm_either`` (a config without
#: ``combine_features`` reads these four).
LEGACY_COMBINE_FEATURES: tuple[str, ...] = (*GATE_HEADS, "request_and_complies")
#: What training fits by default: family-out CV on the traffic recipe, recall +0.033 (95 %
#: bootstrap +0.016..+0.053) and AUROC +0.006 over the legacy four (docs/training.md).
DEFAULT_COMBINE_FEATURES: tuple[str, ...] = ("request_and_complies", "harm_either")


def check_combine_features(names: Sequence[str]) -> list[str]:
    """``names`` as a list, or a ValueError naming those not in :data:`COMBINE_FEATURES`."""
    unknown = [n for n in names if n not in COMBINE_FEATURES]
    if unknown or not names:
        raise ValueError(f"unknown combine_features {unknown}; known: {list(COMBINE_FEATURES)}")
    return list(names)


_LEAD_MARKUP = re.compile(r"^[\s#*>_`-]*(?:title\s*:\s*)?", re.IGNORECASE)
_FIRST_BREAK = re.compile(r"(?<=[.!?:])\s+|\n")


def answer_lead(answer: str) -> str:
    """The opening of ``answer`` as the request head reads it: heading marks and a ``Title:``
    label dropped, up to the first sentence end or line break, at most :data:`LEAD_WORDS`
    words. (The first 40 words regardless of sentences ranked better in family-out CV, but
    they read more of a good answer to an alarming question: more of those were flagged, and
    the threshold rule then cost recall.)"""
    text = _LEAD_MARKUP.sub("", answer.strip(), count=1)
    return " ".join(_FIRST_BREAK.split(text, maxsplit=1)[0].split()[:LEAD_WORDS])


def reads_lead(names: Sequence[str]) -> bool:
    """Whether a combination over ``names`` needs the answers' lead logits."""
    return any(name in LEAD_FEATURES for name in names)


class SafetyGateConfig(BaseModel):
    """What a safety gate needs besides its head weights."""

    model_config = ConfigDict(extra="allow")

    kind: Literal["safety-gate"] = "safety-gate"
    criterion: str = "ethical"
    encoder: str = "minilm"
    embedding_dim: int = Field(default=384, gt=0)
    #: The combination's features, by name (:data:`COMBINE_FEATURES`), one weight each, + bias.
    combine_features: list[str] = Field(
        default_factory=lambda: list(LEGACY_COMBINE_FEATURES), min_length=1
    )
    combine_weights: list[float] = Field(default_factory=lambda: [1.0, 1.0, 1.0, 1.0])
    combine_bias: float = 0.0
    #: Top encoder layers fine-tuned for the request head (0: it reads the frozen embedding).
    request_trained_layers: int = Field(default=0, ge=0)
    #: Tokens of the question the fine-tuned request model reads.
    request_max_length: int = Field(default=64, gt=8)
    #: The ``complies`` and ``content`` heads read the answer through the fine-tuned trunk too
    #: (trained on requests and answers at once) instead of the frozen encoder.
    answers_through_trunk: bool = False
    #: Tokens of the answer the fine-tuned trunk reads (``answers_through_trunk``).
    answer_max_length: int = Field(default=128, gt=8)
    threshold: float = Field(default=0.5, ge=0, le=1)
    block_threshold: float | None = Field(default=None, ge=0, le=1)
    metrics: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> SafetyGateConfig:
        if self.answers_through_trunk and not self.request_trained_layers:
            raise ValueError(
                "answers_through_trunk needs a fine-tuned trunk (request_trained_layers > 0)"
            )
        check_combine_features(self.combine_features)
        if len(self.combine_weights) != len(self.combine_features):
            raise ValueError(
                f"{len(self.combine_features)} combine_features but "
                f"{len(self.combine_weights)} combine_weights"
            )
        return self


class SafetyGateInspector(Inspector):
    """P(aligned) from a harmful-request head, a compliance head and a harmful-content head.

    Example:
        >>> gate = SafetyGateInspector.from_pretrained(DIR)  # doctest: +SKIP
        >>> gate.explain(["How do I kill a stuck process?"], ["Run kill PID."])  # doctest: +SKIP
    """

    def __init__(
        self,
        heads: Any,
        config: SafetyGateConfig,
        *,
        encoder: SentenceEncoder | None = None,
        request_model: Any = None,
    ) -> None:
        super().__init__(get_criterion(config.criterion))
        self.heads = heads.eval()
        self.config = config
        self.encoder = encoder if encoder is not None else SentenceEncoder(config.encoder)
        #: The fine-tuned request model (``request_trained_layers`` > 0), loaded on first use.
        self.request_model = request_model.eval() if request_model is not None else None
        self._request_trunk: Path | None = None

    @staticmethod
    def build_heads(embedding_dim: int) -> Any:
        """One linear head per question in :data:`GATE_HEADS`."""
        from torch import nn

        return nn.ModuleDict({name: nn.Linear(embedding_dim, 1) for name in GATE_HEADS})

    # -- scoring ---------------------------------------------------------------------------------

    def head_logits(
        self, question_embeddings: Any, answer_embeddings: Any, lead_embeddings: Any = None
    ) -> Any:
        """``(n, 3)`` logits: P(harmful request), P(complies), P(harmful content); with
        ``lead_embeddings`` (:meth:`lead_features`) ``(n, 4)``: P(the answer's lead is a
        harmful request) last."""
        import torch

        with torch.inference_mode():
            columns = [
                self.heads["request"](question_embeddings),
                self.heads["complies"](answer_embeddings),
                self.heads["content"](answer_embeddings),
            ]
            if lead_embeddings is not None:
                columns.append(self.heads["request"](lead_embeddings))
            return torch.cat(columns, dim=-1)

    def misaligned_logits(self, logits: Any) -> Any:
        """The combination: logit of P(misaligned) from the heads' logits."""
        import torch

        features = combine_features(logits, self.config.combine_features)
        weights = torch.tensor(self.config.combine_weights, dtype=features.dtype)
        return features @ weights + self.config.combine_bias

    def embed(self, questions: Sequence[str], answers: Sequence[str]) -> tuple[Any, ...]:
        """Question features (for the request head) and answer embeddings (for the others):
        one frozen-encoder call for both, or the fine-tuned request model on the questions (and
        on the answers, with ``answers_through_trunk``); and the answers' lead features when
        the combination reads them (:func:`reads_lead`)."""
        if not self.config.request_trained_layers:
            embeddings = self.encoder.encode(list(questions) + list(answers))
            parts = (embeddings[: len(questions)], embeddings[len(questions) :])
        else:
            parts = (self.request_features(questions), self.answer_features(answers))
        if reads_lead(self.config.combine_features):
            return (*parts, self.lead_features(answers))
        return parts

    def lead_features(self, answers: Sequence[str]) -> Any:
        """What the request head reads of each answer's opening (:func:`answer_lead`)."""
        leads = [answer_lead(a) for a in answers]
        if not self.config.request_trained_layers:
            return self.encoder.encode(leads)
        return self.request_features(leads)

    def request_features(self, questions: Sequence[str]) -> Any:
        """Mean-pooled states of the fine-tuned request model (``request_trained_layers`` > 0)."""
        return self._trunk_features(questions, self.config.request_max_length)

    def answer_features(self, answers: Sequence[str]) -> Any:
        """What the answer heads read: the fine-tuned trunk's mean-pooled states of the answers
        (``answers_through_trunk``), else the frozen embeddings."""
        if not self.config.answers_through_trunk:
            return self.encoder.encode(list(answers))
        return self._trunk_features(answers, self.config.answer_max_length)

    def _trunk_features(self, texts: Sequence[str], max_length: int) -> Any:
        from aligners.inspector.tuned_trunk import mean_pooled

        model, tokenizer = self._request_model()
        return mean_pooled(
            model, tokenizer, texts, max_length=max_length, dim=self.config.embedding_dim
        )

    def _request_model(self) -> tuple[Any, Any]:
        from aligners.inspector.tuned_trunk import encoder_tokenizer, load_tuned_trunk

        if self.request_model is None:
            if self._request_trunk is None:
                raise ValueError("this gate's request model has no weights: load it from a folder")
            self.request_model, _ = load_tuned_trunk(self.encoder, self._request_trunk)
        return self.request_model, encoder_tokenizer(self.encoder)

    def _score(self, questions: Sequence[str], answers: Sequence[str]) -> list[float]:
        import torch

        logits = self.head_logits(*self.embed(questions, answers))
        return [float(x) for x in 1.0 - torch.sigmoid(self.misaligned_logits(logits))]

    def explain(self, questions: Sequence[str], answers: Sequence[str]) -> list[dict[str, float]]:
        """Per pair: each head's probability and the final P(aligned), for records and docs."""
        import torch

        logits = self.head_logits(*self.embed(questions, answers))
        scores = 1.0 - torch.sigmoid(self.misaligned_logits(logits))
        probs = torch.sigmoid(logits)
        names = ("harmful_request", "complies", "harmful_content", "harmful_lead")
        return [
            {**{n: round(float(v), 4) for n, v in zip(names, p)}, "aligned": round(float(s), 4)}
            for p, s in zip(probs, scores)
        ]

    @property
    def default_threshold(self) -> float | None:
        return self.config.threshold

    @property
    def default_block_threshold(self) -> float | None:
        return self.config.block_threshold

    @property
    def metrics(self) -> dict[str, Any]:
        return self.config.metrics

    # -- persistence -----------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls, path: str | Path, *, encoder: SentenceEncoder | None = None
    ) -> SafetyGateInspector:
        """Load ``inspector_config.json`` and ``gate_heads.safetensors`` from a directory."""
        from safetensors.torch import load_file

        directory = Path(path).expanduser()
        config_file = directory / SAFETY_GATE_CONFIG
        if not config_file.exists():
            raise FileNotFoundError(f"no {SAFETY_GATE_CONFIG} in {directory}")
        raw = json.loads(config_file.read_text())
        if raw.get("kind") != "safety-gate":
            raise ValueError(
                f"{directory} holds a {raw.get('kind')!r} inspector, not a safety gate "
                "(kind 'safety-gate')"
            )
        config = SafetyGateConfig(**raw)
        heads = cls.build_heads(config.embedding_dim)
        heads.load_state_dict(load_file(str(directory / SAFETY_GATE_WEIGHTS)))
        gate = cls(heads, config, encoder=encoder)
        if config.request_trained_layers:
            gate._request_trunk = directory / REQUEST_TRUNK_WEIGHTS
        return gate

    def save_pretrained(self, path: str | Path) -> Path:
        """Write the heads (a few KB), the request model's fine-tuned top layers (float16, when
        it has them) and the config."""
        from safetensors.torch import save_file

        from aligners.inspector.cross_encoder import trunk_layer_prefixes

        directory = Path(path).expanduser()
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.heads.state_dict().items()}
        save_file(state, str(directory / SAFETY_GATE_WEIGHTS))
        if self.config.request_trained_layers:
            model, _ = self._request_model()
            prefixes = trunk_layer_prefixes(
                int(model.config.num_hidden_layers), self.config.request_trained_layers
            )
            delta = {
                k: v.detach().to("cpu").half().contiguous()
                for k, v in model.state_dict().items()
                if k.startswith(tuple(prefixes))
            }
            save_file(delta, str(directory / REQUEST_TRUNK_WEIGHTS))
        (directory / SAFETY_GATE_CONFIG).write_text(self.config.model_dump_json(indent=2) + "\n")
        return directory


def combine_features(logits: Any, names: Sequence[str] = LEGACY_COMBINE_FEATURES) -> Any:
    """The named :data:`COMBINE_FEATURES` of ``(n, 3)`` head logits (``(n, 4)`` with the
    lead's, :meth:`SafetyGateInspector.head_logits`), as ``(n, len(names))``."""
    import torch

    check_combine_features(names)
    if reads_lead(names) and logits.shape[-1] < 4:
        raise ValueError(
            f"combine_features {list(names)} read the answer's lead: pass (n, 4) head logits "
            "(SafetyGateInspector.head_logits with lead_embeddings)"
        )
    request, complies, content = (torch.sigmoid(logits[:, i]) for i in range(3))
    both = request * complies
    harm_either = 1 - (1 - both) * (1 - content * complies)
    columns = {
        "request": logits[:, 0],
        "complies": logits[:, 1],
        "content": logits[:, 2],
        "request_and_complies": both,
        "harm_either": harm_either,
    }
    if logits.shape[-1] > 3:
        columns["lead_request"] = logits[:, 3]
        columns["harm_lead"] = 1 - (1 - harm_either) * (1 - torch.sigmoid(logits[:, 3]) * complies)
    probabilities = ("request_and_complies", "harm_either", "harm_lead")
    return torch.stack(
        [
            torch.logit(columns[n].clamp(1e-6, 1 - 1e-6)) if n in probabilities else columns[n]
            for n in names
        ],
        dim=-1,
    )
