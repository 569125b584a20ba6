"""Engine fixtures: a tiny model taught to answer in the ibm format, and failing backends."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from aligners.backends.base import GenerationBackend, GenerationConfig
from aligners.formats.base import Prompt

TAUGHT_PROMPT = "How are you? [INIT] bad answer [ALIGNED] "
TAUGHT_CORRECTION = "Fine. Thanks for asking."


def teach_ibm_model(directory: Path) -> Path:
    """Fine-tune a tiny model until it writes TAUGHT_CORRECTION then [DONE] (a few seconds)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from aligners.formats import IbmFormat

    tokenizer = AutoTokenizer.from_pretrained(directory)
    tokenizer.add_special_tokens({"additional_special_tokens": list(IbmFormat.special_tokens)})
    model = AutoModelForCausalLM.from_pretrained(directory)
    model.resize_token_embeddings(len(tokenizer))
    text = TAUGHT_PROMPT + IbmFormat().training_target(TAUGHT_CORRECTION)
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(150):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if loss.item() < 0.01:
            break
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def taught_ibm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import build_tiny_causal_lm

    return teach_ibm_model(build_tiny_causal_lm(tmp_path_factory.mktemp("taught-ibm")))


class BrokenBackend(GenerationBackend):
    """A backend whose server is down: every call raises, like a real connection error."""

    name = "broken"

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[str]:
        raise ConnectionError("aligner server unreachable")

    def stream(self, prompt: Prompt, config: GenerationConfig) -> Iterator[str]:
        raise ConnectionError("aligner server unreachable")


class ConstantBackend(GenerationBackend):
    """Returns the same completion for every prompt (e.g. an empty one from a degenerate model);
    ``calls`` counts generations (a stream counts as one)."""

    name = "constant"

    def __init__(self, text: str) -> None:
        self.text = text
        self.calls: list[int] = []

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[str]:
        self.calls.append(len(prompts))
        return [self.text for _ in prompts]

    def stream(self, prompt: Prompt, config: GenerationConfig) -> Iterator[str]:
        self.calls.append(1)
        yield from words(self.text)


def words(text: str) -> list[str]:
    """``text`` in word pieces that join back to it."""
    parts = text.split(" ")
    return [w + " " for w in parts[:-1]] + [parts[-1]]
