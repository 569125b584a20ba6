"""The fast default inspector: a frozen sentence encoder plus a tiny trained head."""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from aligners.backends.encoder import SentenceEncoder
from aligners.criteria import Criterion, get_criterion
from aligners.inspector.base import FeatureInspector

INSPECTOR_CONFIG = "inspector_config.json"
HEAD_WEIGHTS = "head.safetensors"


class EncoderHeadConfig(BaseModel):
    """What an encoder-head inspector needs besides its head weights."""

    model_config = ConfigDict(extra="allow")

    kind: Literal["encoder-head"] = "encoder-head"
    encoder: str = "minilm"
    criterion: str | None = None
    hidden_size: int = Field(default=0, ge=0, description="0 = logistic regression")
    embedding_dim: int = 384
    metrics: dict[str, Any] = Field(default_factory=dict)


def pair_features(question_emb: Any, answer_emb: Any) -> Any:
    """Features of a pair: the answer itself, and how it relates to the question."""
    import torch

    return torch.cat(
        [answer_emb, question_emb * answer_emb, (question_emb - answer_emb).abs()], dim=-1
    )


def build_head(embedding_dim: int, hidden_size: int) -> Any:
    """The head network: logistic regression, or one hidden layer."""
    from torch import nn

    features = 3 * embedding_dim
    if hidden_size == 0:
        return nn.Linear(features, 1)
    return nn.Sequential(nn.Linear(features, hidden_size), nn.GELU(), nn.Linear(hidden_size, 1))


class EncoderHeadInspector(FeatureInspector):
    """Embeds question and answer with a frozen encoder; a small head gives P(aligned).

    One encoder pass per text, shared by every inspector on the same encoder: a squad of three
    criteria costs one embedding of the batch, not three.
    """

    def __init__(
        self,
        head: Any,
        config: EncoderHeadConfig,
        *,
        criterion: str | Criterion | None = None,
        encoder: SentenceEncoder | None = None,
    ) -> None:
        super().__init__(criterion if criterion is not None else config.criterion)
        # A callable builds the head on first use, so constructing a squad loads no weights.
        self._head: Any = head.eval() if hasattr(head, "eval") else None
        self._head_factory: Callable[[], Any] | None = None if self._head is not None else head
        self.config = config
        self.encoder = encoder if encoder is not None else SentenceEncoder(config.encoder)

    @property
    def head(self) -> Any:
        """The head network (built on first access for zero-shot inspectors)."""
        if self._head is None:
            assert self._head_factory is not None
            self._head = self._head_factory().eval()
        return self._head

    @classmethod
    def from_pretrained(
        cls, path: str | Path, *, encoder: SentenceEncoder | None = None
    ) -> EncoderHeadInspector:
        """Load ``inspector_config.json`` and ``head.safetensors`` from a directory."""
        from safetensors.torch import load_file

        directory = Path(path).expanduser()
        config_file = directory / INSPECTOR_CONFIG
        if not config_file.exists():
            raise FileNotFoundError(f"no {INSPECTOR_CONFIG} in {directory}")
        config = EncoderHeadConfig(**json.loads(config_file.read_text()))
        head = build_head(config.embedding_dim, config.hidden_size)
        head.load_state_dict(load_file(str(directory / HEAD_WEIGHTS)))
        return cls(head, config, encoder=encoder)

    def save_pretrained(self, path: str | Path) -> Path:
        """Write the head (a few KB) and its config."""
        from safetensors.torch import save_file

        directory = Path(path).expanduser()
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.head.state_dict().items()}
        save_file(state, str(directory / HEAD_WEIGHTS))
        # The head's own input size, so a zero-shot head (whose config does not load the encoder
        # to learn its width) reloads on any encoder, not only MiniLM-sized ones.
        first = self.head if hasattr(self.head, "in_features") else self.head[0]
        config = self.config.model_copy(
            update={
                "criterion": self.criterion.name if self.criterion else self.config.criterion,
                "embedding_dim": first.in_features // 3,
            }
        )
        (directory / INSPECTOR_CONFIG).write_text(config.model_dump_json(indent=2) + "\n")
        return directory

    @classmethod
    def zero_shot(
        cls, criterion: str | Criterion, *, encoder: SentenceEncoder | None = None
    ) -> EncoderHeadInspector:
        """An untrained inspector from the criterion's own words: the answer's similarity to
        descriptions of aligned vs misaligned answers. Weak; use trained heads where you can.
        """
        import torch

        crit = get_criterion(criterion)
        sentence_encoder = encoder if encoder is not None else SentenceEncoder("minilm")
        aligned = [f"An answer that is {crit.description}.", *crit.principles]
        misaligned = [f"An answer that ignores this rule: {p}" for p in crit.principles] or [
            f"An answer that is not {crit.description}."
        ]

        def make_head() -> Any:
            pos = sentence_encoder.encode(aligned).mean(0)
            neg = sentence_encoder.encode(misaligned).mean(0)
            dim = pos.shape[0]
            head = build_head(dim, 0)
            with torch.no_grad():
                head.weight.zero_()
                head.weight[0, :dim] = 20.0 * (pos - neg)
                head.bias.fill_(-20.0 * float((pos - neg) @ (pos + neg) / 2))
            return head

        config = EncoderHeadConfig(
            encoder=str(sentence_encoder.source.path),
            criterion=crit.name,
            metrics={"note": "zero-shot prototype head, not trained"},
        )
        return cls(make_head, config, encoder=sentence_encoder)

    @property
    def feature_key(self) -> Hashable:
        return ("encoder-head", self.encoder.cache_key)

    def features(self, questions: Sequence[str], answers: Sequence[str]) -> Any:
        """Pair features from one encoder pass over the distinct texts."""
        texts = list(dict.fromkeys([*questions, *answers]))
        index = {t: i for i, t in enumerate(texts)}
        embeddings = self.encoder.encode(texts)
        q = embeddings[[index[t] for t in questions]]
        a = embeddings[[index[t] for t in answers]]
        return pair_features(q, a)

    def score_features(self, features: Any) -> list[float]:
        """P(aligned) from precomputed :meth:`features` (lets a squad embed once for all heads)."""
        import torch

        with torch.inference_mode():
            logits = self.head(features).squeeze(-1)
            return [float(x) for x in torch.sigmoid(logits)]
