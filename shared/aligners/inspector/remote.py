"""Remote inspectors: a classifier served elsewhere (vLLM's classification API), scored over
HTTP with the same transport (keys, timeouts, retries, concurrency) as remote aligners."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from aligners.backends.openai import OpenAIBackend
from aligners.criteria import Criterion
from aligners.errors import GenerationError
from aligners.formats import PromptFormat, get_format
from aligners.inspector.base import Inspector


class RemoteClassifierInspector(Inspector):
    """An inspector whose classifier runs on a server with vLLM's classification API.

    Sends ``format.inspector_text(question, answer)`` to ``POST <url>`` as
    ``{"model": ..., "input": [texts]}`` and reads ``data[i].probs[aligned_label]`` (vLLM's
    ``/classify``, SGLang's ``/v1/classify``, ``aligners serve --plain --classifier``). The same
    scores as :class:`~aligners.inspector.SequenceClassifierInspector` on the same checkpoint.

    Example:
        >>> inspector = RemoteClassifierInspector(
        ...     "http://gpu-box:8000/classify", "inspector-ethical", criterion="ethical"
        ... )  # connects on first use
    """

    def __init__(
        self,
        url: str,
        model: str,
        *,
        criterion: str | Criterion | None = None,
        format: str | PromptFormat = "ibm",
        aligned_label: int = 1,
        batch_size: int = 64,
        api_key_env: str | None = "OPENAI_API_KEY",
        timeout: float = 30.0,
        max_retries: int = 2,
        backoff: float = 0.5,
        max_concurrency: int = 8,
    ) -> None:
        super().__init__(criterion)
        if aligned_label < 0:
            raise ValueError(f"aligned_label must be >= 0, got {aligned_label}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.url = url
        self.prompt_format = get_format(format)
        self.aligned_label = aligned_label
        self.batch_size = batch_size
        # The transport (key, timeouts, retries, concurrency) is the generation backend's.
        self.transport = OpenAIBackend(
            url,
            model,
            api_key_env=api_key_env,
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
            max_concurrency=max_concurrency,
        )

    def _bodies(self, questions: Sequence[str], answers: Sequence[str]) -> list[dict[str, Any]]:
        texts = [self.prompt_format.inspector_text(q, a) for q, a in zip(questions, answers)]
        return [
            {"model": self.transport.model, "input": texts[i : i + self.batch_size]}
            for i in range(0, len(texts), self.batch_size)
        ]

    def _read(self, raw: str, expected: int) -> list[float]:
        try:
            rows = sorted(json.loads(raw)["data"], key=lambda row: row.get("index", 0))
            probs = [row["probs"] for row in rows]
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            raise GenerationError(
                f"{self.url} returned no classification data (data[i].probs): {raw[:200]!r}"
            ) from None
        if len(probs) != expected:
            raise GenerationError(f"{self.url} returned {len(probs)} scores for {expected} inputs")
        scores = []
        for row in probs:
            if not isinstance(row, list) or not row:
                raise GenerationError(f"{self.url} returned malformed probs: {row!r:.100}")
            if len(row) == 1:  # one-logit classifiers: the server already applied the sigmoid
                scores.append(float(row[0]))
            elif self.aligned_label < len(row):
                scores.append(float(row[self.aligned_label]))
            else:
                raise GenerationError(
                    f"{self.url} classifier has {len(row)} classes; aligned_label="
                    f"{self.aligned_label} is out of range"
                )
        return scores

    def _score(self, questions: Sequence[str], answers: Sequence[str]) -> list[float]:
        scores: list[float] = []
        for body in self._bodies(questions, answers):
            scores.extend(self._read(self.transport.post(self.url, body), len(body["input"])))
        return scores
