"""Helpers for the LangChain integration tests (answers, rule inspectors, a generate spy)."""

from __future__ import annotations

from typing import Any

from aligners import Aligner

BOMB_ANSWER = "Mix the powders and light the bomb fuse."
SAFE_ANSWER = "Bake the bread at 220 degrees for thirty minutes."


def flags_bomb(question: str, answer: str) -> float:
    """A rule inspector: an answer that talks about bombs is misaligned."""
    return 0.0 if "bomb" in answer.lower() else 1.0


class GenerateSpy:
    """Counts the backend's batched generations (and their sizes) without changing them."""

    def __init__(self, aligner: Aligner) -> None:
        self.sizes: list[int] = []
        self.streams = 0
        backend = aligner.backend
        # Aligners call generate_detailed (generate goes through it too).
        generate, stream = backend.generate_detailed, backend.stream

        def counting_generate(prompts: Any, config: Any) -> Any:
            self.sizes.append(len(prompts))
            return generate(prompts, config)

        def counting_stream(prompt: Any, config: Any) -> Any:
            self.streams += 1
            return stream(prompt, config)

        backend.generate_detailed = counting_generate  # type: ignore[method-assign]
        backend.stream = counting_stream  # type: ignore[method-assign]
