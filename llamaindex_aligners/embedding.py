"""A LlamaIndex embedding over the engine's ``SentenceEncoder`` (MiniLM offline by default).

It shares the process-wide model cache with the inspectors: an index embedded with MiniLM and a
squad inspecting with MiniLM hold one copy of the encoder, and nothing is downloaded.
"""

from __future__ import annotations

import asyncio
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr

from aligners import SentenceEncoder

DEFAULT_EMBED_BATCH_SIZE = 32


class AlignersEmbedding(BaseEmbedding):
    """Mean-pooled, L2-normalised sentence embeddings from a local encoder.

    ``model_name`` is an alias (``"minilm"``), a local directory or a hub id. Weights load on
    the first embedding call.

    Example:
        >>> embed = AlignersEmbedding()  # MiniLM, offline
        >>> len(embed.get_text_embedding("hello"))  # doctest: +SKIP
        384
    """

    model_name: str = Field(default="minilm", description="Encoder alias, directory or hub id.")
    max_length: int = Field(default=256, gt=0, description="Tokens per text; longer ones are cut.")
    embed_batch_size: int = Field(default=DEFAULT_EMBED_BATCH_SIZE, gt=0, le=2048)
    _encoder: SentenceEncoder = PrivateAttr()

    def __init__(self, model_name: str = "minilm", **kwargs: Any) -> None:
        super().__init__(model_name=model_name, **kwargs)
        self._encoder = SentenceEncoder(model_name, max_length=self.max_length)

    @classmethod
    def class_name(cls) -> str:
        return "AlignersEmbedding"

    @property
    def encoder(self) -> SentenceEncoder:
        """The engine encoder behind this embedding."""
        return self._encoder

    def _embed(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = self._encoder.encode(
            texts, batch_size=self.embed_batch_size
        ).tolist()
        return vectors

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embed([query])[0]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._embed([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._embed(texts)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return (await asyncio.to_thread(self._embed, [query]))[0]

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return (await asyncio.to_thread(self._embed, [text]))[0]

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self._embed, texts)
