"""Copy-aware decoding equals plain greedy decoding token for token (tiny random Llama, CPU)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from aligners import Aligner
from aligners.backends.base import GenerationConfig
from aligners.backends.copy_decoding import (
    CopyDecoder,
    CopyDecodingOptions,
    batch_width,
    ngram_table,
    supports_copy_decoding,
)
from aligners.backends.transformers import TransformersBackend


@pytest.fixture(scope="module")
def tiny(tiny_lm_dir: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_lm_dir)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(tiny_lm_dir, dtype=torch.float32).eval()
    return model, tokenizer


def plain_greedy(
    model: Any, tokenizer: Any, prompt: list[int], max_new: int, eos: list[int], stops: list[str]
) -> list[int]:
    """transformers' own greedy generate for one unpadded prompt: the reference."""
    import torch

    extra: dict[str, Any] = {"stop_strings": stops, "tokenizer": tokenizer} if stops else {}
    with torch.inference_mode():
        out = model.generate(
            torch.tensor([prompt]),
            attention_mask=torch.ones((1, len(prompt)), dtype=torch.long),
            max_new_tokens=max_new,
            do_sample=False,
            eos_token_id=eos,
            pad_token_id=tokenizer.pad_token_id,
            **extra,
        )
    return [int(t) for t in out[0, len(prompt) :]]


def batched_greedy(model: Any, tokenizer: Any, prompts: list[list[int]], max_new: int) -> Any:
    import torch

    batch = tokenizer.pad({"input_ids": prompts}, padding=True, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(
            **batch,
            max_new_tokens=max_new,
            do_sample=False,
            eos_token_id=[tokenizer.eos_token_id],
            pad_token_id=tokenizer.pad_token_id,
        )
    return out[:, batch["input_ids"].shape[1] :].tolist()


def make_source(rng: random.Random, reference: list[int], vocab: int) -> list[int] | None:
    kind = rng.choice(["copy", "changed", "unrelated", "none", "shifted"])
    if kind == "copy":
        return list(reference)
    if kind == "changed":  # a few substitutions, an insertion and a deletion
        source = list(reference)
        for _ in range(rng.randint(1, 3)):
            if source:
                source[rng.randrange(len(source))] = rng.randrange(3, vocab)
        source.insert(rng.randint(0, len(source)), rng.randrange(3, vocab))
        if len(source) > 2:
            del source[rng.randrange(len(source))]
        return source
    if kind == "shifted":  # the output copies the source from its middle on
        return [rng.randrange(3, vocab) for _ in range(5)] + list(reference)
    if kind == "unrelated":
        return [rng.randrange(3, vocab) for _ in range(rng.randint(0, 40))]
    return None


def test_random_batches_match_plain_greedy_token_for_token(tiny: tuple[Any, Any]) -> None:
    from transformers import StopStringCriteria

    model, tokenizer = tiny
    vocab = len(tokenizer)
    rng = random.Random(1234)
    for trial in range(40):
        size = rng.choice([1, 2, 3, 5])
        max_new = rng.choice([1, 4, 17, 40])
        prompts = [
            [rng.randrange(3, vocab) for _ in range(rng.randint(1, 30))] for _ in range(size)
        ]
        free = [
            plain_greedy(model, tokenizer, p, max_new, [tokenizer.eos_token_id], [])
            for p in prompts
        ]
        eos = [tokenizer.eos_token_id]
        stops: list[str] = []
        if rng.random() < 0.5:  # an extra EOS the model does produce: rows end at different steps
            row = rng.choice(free)
            eos.append(row[rng.randrange(len(row))])
        if rng.random() < 0.3 and len(free[0]) > 3:  # a text stop spanning two tokens
            at = rng.randrange(len(free[0]) - 1)
            stop = tokenizer.decode(free[0][at : at + 2])
            stops = [stop] if stop.strip() else []
        reference = [plain_greedy(model, tokenizer, p, max_new, eos, stops) for p in prompts]
        sources = [make_source(rng, r, vocab) for r in reference]
        options = CopyDecodingOptions(
            initial_draft=rng.choice([1, 4, 10]), draft_in_prefill=rng.random() < 0.7
        )
        decoder = CopyDecoder(
            model,
            max_new_tokens=max_new,
            eos_token_ids=eos,
            pad_token_id=tokenizer.pad_token_id,
            stop=StopStringCriteria(tokenizer, stops) if stops else None,
            options=options,
        )
        assert decoder.generate(prompts, sources) == reference, f"trial {trial}"


def test_batched_copy_decoding_matches_batched_plain_generate(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    rng = random.Random(7)
    prompts = [[rng.randrange(3, len(tokenizer)) for _ in range(n)] for n in (3, 25, 11, 17)]
    padded = batched_greedy(model, tokenizer, prompts, 24)
    decoder = CopyDecoder(
        model,
        max_new_tokens=24,
        eos_token_ids=[tokenizer.eos_token_id],
        pad_token_id=tokenizer.pad_token_id,
    )
    sources = [padded[0], None, padded[2][:5] + [7, 8] + padded[2][5:], [9, 10, 11]]
    got = decoder.generate(prompts, sources)
    for row, out in zip(padded, got):
        assert row[: len(out)] == out
        assert all(t == tokenizer.pad_token_id for t in row[len(out) :])


def test_copies_take_few_passes_and_finished_rows_leave_the_batch(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    rng = random.Random(3)
    prompt = [rng.randrange(3, len(tokenizer)) for _ in range(12)]
    eos = [tokenizer.eos_token_id]
    reference = plain_greedy(model, tokenizer, prompt, 40, eos, [])
    decoder = CopyDecoder(
        model, max_new_tokens=40, eos_token_ids=eos, pad_token_id=tokenizer.pad_token_id
    )
    assert decoder.generate([prompt], [reference]) == [reference]
    # Drafts of 10, then 40: an unchanged answer costs two passes instead of forty.
    assert decoder.stats.forward_passes == 2
    # A row that ends at once stops being fed while the other one keeps decoding.
    early = plain_greedy(model, tokenizer, prompt, 1, eos, [])[0]
    other = [rng.randrange(3, len(tokenizer)) for _ in range(5)]
    decoder = CopyDecoder(
        model,
        max_new_tokens=30,
        eos_token_ids=[*eos, early],
        pad_token_id=tokenizer.pad_token_id,
    )
    outputs = decoder.generate([prompt, other], [None, None])
    assert outputs[0] == [early] and len(outputs[1]) > 1
    assert decoder.stats.rows_fed == 1 + decoder.stats.forward_passes


def test_batch_width_bounds_padding_waste() -> None:
    assert batch_width([5], 0.5) == 5
    assert batch_width([1] * 7 + [100], 0.5) == 2  # one row far ahead does not widen the pass
    assert batch_width([40] * 8, 0.5) == 40
    assert batch_width([40, 40, 40, 40, 1, 1, 1, 1], 0.5) == 40
    for lengths in ([3, 9, 1, 27], [2, 2, 50], [1, 1]):
        width = batch_width(lengths, 0.5)
        assert sum(min(n, width) for n in lengths) >= 0.5 * len(lengths) * width


def test_ngram_table_finds_every_start() -> None:
    table = ngram_table([1, 2, 3, 1, 2], (3, 2))
    assert table[(1, 2)] == [0, 3] and table[(1, 2, 3)] == [0] and (3, 1, 2) in table


# -- the backend and the aligner ------------------------------------------------------------------


def test_backend_uses_copy_decoding_for_greedy_batches_and_streams(tiny_lm_dir: Path) -> None:
    backend = TransformersBackend(str(tiny_lm_dir))
    assert supports_copy_decoding(backend.load().model)
    prompts: list[Any] = [
        [{"role": "user", "content": "Fix: the capital of France is Paris."}],
        "The quick brown fox",
        [{"role": "user", "content": "How do I bake bread? Mix flour and water, then bake."}],
    ]
    plain = GenerationConfig(max_new_tokens=20, batch_size=2, stop_strings=("<|im_end|>",))
    expected = backend.generate(prompts, plain)
    aware = plain.model_copy(
        update={"copy_aware": True, "sources": ("Paris is the capital.", None, expected[2])}
    )
    assert backend.generate(prompts, aware) == expected
    no_sources = plain.model_copy(update={"copy_aware": True})
    assert backend.generate(prompts, no_sources) == expected
    for prompt, text, source in zip(prompts, expected, aware.sources or ()):
        one = aware.model_copy(update={"sources": (source,)})
        pieces = list(backend.stream(prompt, one))
        assert "".join(pieces) == text
    with pytest.raises(ValueError, match="sources"):
        backend.generate(prompts, aware.model_copy(update={"sources": ("one",)}))
    sampled = aware.model_copy(update={"temperature": 0.7})
    assert not backend._use_copy_decoding(sampled, 3)


def test_aligner_passes_the_answer_as_the_draft_source(tiny_lm_dir: Path) -> None:
    aware = Aligner(str(tiny_lm_dir), format="chat", max_new_tokens=24, batch_size=3)
    plain = Aligner(str(tiny_lm_dir), format="chat", max_new_tokens=24, copy_aware=False)
    questions = ["What is the capital of France?", "How do I bake bread?", "Be kind?"]
    answers = ["The capital of France is Paris.", "Mix flour, water and salt.", "Sorry, no."]
    assert aware.align_batch(questions, answers) == plain.align_batch(questions, answers)
    assert aware._config_for(answers).sources == tuple(answers)
    streamed = "".join(aware.stream(questions[0], answers[0]))
    assert streamed == plain.align(questions[0], answers[0])


def test_copy_decoding_keeps_the_length_sorted_buckets(tiny_lm_dir: Path, monkeypatch) -> None:
    aligner = Aligner(str(tiny_lm_dir), format="chat", max_new_tokens=4, batch_size=3)
    sizes: list[int] = []
    original = CopyDecoder.generate

    def counting(self: CopyDecoder, prompts: Any, sources: Any) -> list[list[int]]:
        sizes.append(len(prompts))
        return original(self, prompts, sources)

    monkeypatch.setattr(CopyDecoder, "generate", counting)
    aligner.align_batch(["q1", "a longer question two", "q3", "q4"], ["a", "b", "c", "d"])
    assert sizes == [3, 1]
