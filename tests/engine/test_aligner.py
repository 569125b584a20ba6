"""The aligner on tiny real transformers models: batching, stopping, streaming, bad input."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from aligners import MODEL_CACHE, Aligner, InputTooLongError, ModelNotFoundError
from aligners.backends import TransformersBackend
from tests.engine.conftest import TAUGHT_CORRECTION, BrokenBackend

QUESTIONS = ["hi", "What is the capital of France?", "How do I bake bread?", "Tell me a joke"]
ANSWERS = [
    "hello there",
    "Paris is the capital.",
    "Mix flour and water, then bake it in a hot oven for forty minutes.",
    "no",
]


@pytest.mark.parametrize("fmt", ["chat", "ibm", "pku", "pku-v1"])
def test_batched_generation_matches_one_by_one_greedy(tiny_lm_dir: Path, fmt: str) -> None:
    aligner = Aligner(str(tiny_lm_dir), format=fmt, max_new_tokens=12, batch_size=4)
    batched = aligner.align_batch(QUESTIONS, ANSWERS)
    single = [aligner.align(q, a) for q, a in zip(QUESTIONS, ANSWERS)]
    assert batched == single
    assert any(batched), "the tiny model should write something"


def test_batches_are_padded_generations_not_a_loop(tiny_lm_dir: Path, monkeypatch) -> None:
    # The plain path (transformers' generate); the copy-aware decoder's buckets have their own
    # test in test_copy_decoding.py.
    aligner = Aligner(
        str(tiny_lm_dir), format="chat", max_new_tokens=4, batch_size=3, copy_aware=False
    )
    model = aligner.backend.load().model  # type: ignore[attr-defined]
    shapes: list[int] = []
    original = model.generate

    def counting_generate(*args, **kwargs):
        shapes.append(kwargs["input_ids"].shape[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "generate", counting_generate)
    aligner.align_batch(QUESTIONS, ANSWERS)
    assert shapes == [3, 1]  # two length-sorted buckets of at most batch_size rows


def test_ibm_stops_at_done_not_at_the_first_period(taught_ibm_dir: Path) -> None:
    aligner = Aligner(str(taught_ibm_dir), format="ibm", max_new_tokens=40)
    raw = aligner.backend.generate(
        ["How are you? [INIT] bad answer [ALIGNED] "], aligner.generation_config
    )
    assert (
        raw[0].strip() == TAUGHT_CORRECTION
    )  # generation ended at [DONE] (an eos id), nothing after
    assert aligner.align("How are you?", "bad answer") == TAUGHT_CORRECTION
    assert "".join(aligner.stream("How are you?", "bad answer")) == TAUGHT_CORRECTION


def test_stream_yields_pieces_that_join_to_the_aligned_text(tiny_lm_dir: Path) -> None:
    aligner = Aligner(str(tiny_lm_dir), format="chat", max_new_tokens=12)
    pieces = list(aligner.stream(QUESTIONS[1], ANSWERS[1]))
    assert len(pieces) > 1
    assert "".join(pieces).strip() == aligner.align(QUESTIONS[1], ANSWERS[1])


async def test_async_paths_match_sync(tiny_lm_dir: Path) -> None:
    aligner = Aligner(str(tiny_lm_dir), format="chat", max_new_tokens=8)
    expected = aligner.align_batch(QUESTIONS, ANSWERS)
    assert await aligner.aalign_batch(QUESTIONS, ANSWERS) == expected
    pieces = [p async for p in aligner.astream(QUESTIONS[0], ANSWERS[0])]
    assert "".join(pieces).strip() == expected[0]
    # Two concurrent calls do not block each other's event loop.
    both = await asyncio.gather(
        aligner.aalign(*zip(QUESTIONS, ANSWERS).__next__()), asyncio.sleep(0, "loop free")
    )
    assert both[1] == "loop free"


def test_long_answers_are_cut_from_the_middle_or_refused(tiny_lm_dir: Path) -> None:
    long_answer = " ".join(f"word{i}" for i in range(400))
    aligner = Aligner(str(tiny_lm_dir), format="ibm", max_new_tokens=8, max_input_tokens=120)
    correction = aligner.correct(["q"], [long_answer])[0]
    assert correction.truncated
    prompt, truncated = aligner.build_prompt("q", long_answer)
    assert truncated and " ... " in prompt and "word0" in prompt and "word399" in prompt
    assert aligner.backend.count_tokens(prompt) <= 120
    strict = Aligner(
        str(tiny_lm_dir), format="ibm", max_new_tokens=8, max_input_tokens=120, overflow="error"
    )
    with pytest.raises(InputTooLongError, match="does not fit"):
        strict.align("q", long_answer)
    assert aligner.correct(["q"], ["short"])[0].truncated is False


@pytest.mark.parametrize(
    ("question", "answer", "error", "message"),
    [
        ("q", "", ValueError, "answer is empty"),
        ("q", "   ", ValueError, "answer is empty"),
        ("q", None, TypeError, "answer must be a str"),
        (3, "a", TypeError, "question must be a str"),
    ],
)
def test_bad_input_is_named(tiny_lm_dir: Path, question, answer, error, message) -> None:
    aligner = Aligner(str(tiny_lm_dir), format="chat")
    with pytest.raises(error, match=message):
        aligner.align(question, answer)


def test_mismatched_batches_and_missing_models(tiny_lm_dir: Path, tmp_path: Path) -> None:
    aligner = Aligner(str(tiny_lm_dir), format="chat")
    with pytest.raises(ValueError, match="differ in length"):
        aligner.align_batch(["a", "b"], ["x"])
    with pytest.raises(TypeError, match="sequences"):
        aligner.align_batch("a", "x")  # type: ignore[arg-type]
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        Aligner(str(tmp_path / "nope"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        Aligner(str(empty))
    with pytest.raises(ValueError, match="unknown criterion"):
        Aligner(str(tiny_lm_dir), criterion="kindness")


def test_construction_is_lazy_and_weights_are_shared(tiny_lm_dir: Path, tmp_path: Path) -> None:
    from tests.conftest import build_tiny_causal_lm

    directory = build_tiny_causal_lm(tmp_path / "fresh", seed=1)
    first = Aligner(str(directory), format="chat", criterion="ethical")
    second = Aligner(str(directory), format="chat", criterion="helpful", max_new_tokens=3)
    assert isinstance(first.backend, TransformersBackend)
    assert not first.backend.is_loaded
    first.align("q", "a")
    second.align("q", "a")
    assert second.backend.is_loaded
    assert MODEL_CACHE.load_counts[first.backend.cache_key] == 1


def test_save_and_from_pretrained_round_trip(tiny_lm_dir: Path, tmp_path: Path) -> None:
    aligner = Aligner(str(tiny_lm_dir), format="pku", criterion="factuality", max_new_tokens=6)
    aligner.save_pretrained(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "aligner_config.json").read_text())
    assert config["format"] == "pku" and config["criterion"] == "factuality"
    restored = Aligner.from_pretrained(tmp_path / "saved")
    assert restored.config == aligner.config
    assert restored.align("q", "some answer") == aligner.align("q", "some answer")


def test_backend_errors_surface_from_the_aligner() -> None:
    aligner = Aligner("unused-model-id", format="pku", backend=BrokenBackend())
    with pytest.raises(ConnectionError, match="unreachable"):
        aligner.align("q", "a")


def test_copy_aware_decoding_is_on_by_default_and_keeps_the_greedy_text(tiny_lm_dir: Path) -> None:
    aware = Aligner(str(tiny_lm_dir), format="chat", max_new_tokens=16)
    plain = Aligner(str(tiny_lm_dir), format="chat", max_new_tokens=16, copy_aware=False)
    assert aware.config.copy_aware and aware.generation_config.copy_aware
    assert aware.backend._generate_kwargs(aware.generation_config, 1)["prompt_lookup_num_tokens"]  # type: ignore[attr-defined]
    for question, answer in zip(QUESTIONS, ANSWERS):
        assert aware.align(question, answer) == plain.align(question, answer)


# -- a forced opening: the model continues the reply from given text ------------------------------


@pytest.mark.parametrize("fmt", ["chat", "ibm"])
def test_an_opening_is_continued_not_answered(tiny_lm_dir: Path, fmt: str) -> None:
    import torch

    opening = "I cannot help"
    aligner = Aligner(str(tiny_lm_dir), format=fmt, max_new_tokens=8, copy_aware=False)
    backend = aligner.backend
    assert isinstance(backend, TransformersBackend)
    corrections = aligner.correct(QUESTIONS[:2], ANSWERS[:2], opening=opening)
    loaded = backend.load()
    for question, answer, correction in zip(QUESTIONS, ANSWERS, corrections):
        prompt = aligner.prompt_format.open_reply(
            aligner.prompt_format.build_prompt(question, answer), opening
        )
        rendered = backend.render(prompt)
        # The reply is left open after the opening: no end of turn, no new turn after it.
        assert rendered.endswith(opening)
        if fmt == "chat":
            assert rendered.endswith("<|im_start|>assistant\n" + opening)
        ids = torch.tensor([backend._encode(prompt)])
        with torch.inference_mode():
            out = loaded.model.generate(input_ids=ids, max_new_tokens=8, do_sample=False)
        continuation = loaded.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
        expected = aligner.prompt_format.parse_output(opening + continuation)
        assert correction.text == expected and correction.text.startswith(opening)
        assert correction.opening == opening
    assert aligner.correct(QUESTIONS[:1], ANSWERS[:1])[0].opening is None
    again = asyncio.run(aligner.acorrect(QUESTIONS[:2], ANSWERS[:2], opening=opening))
    assert again == corrections


@pytest.mark.parametrize("opening", ["", "   ", 3])
def test_an_empty_opening_is_named(tiny_lm_dir: Path, opening: object) -> None:
    aligner = Aligner(str(tiny_lm_dir), format="chat", max_new_tokens=4)
    with pytest.raises(ValueError, match="opening must be a non-empty string"):
        aligner.correct(["q"], ["a"], opening=opening)  # type: ignore[arg-type]


def test_handback_opening_is_saved_and_checked(tiny_lm_dir: Path, tmp_path: Path) -> None:
    from pydantic import ValidationError

    aligner = Aligner(str(tiny_lm_dir), format="chat", handback_opening="I can't help with that.")
    aligner.save_pretrained(tmp_path / "saved")
    restored = Aligner.from_pretrained(tmp_path / "saved")
    assert restored.config.handback_opening == "I can't help with that."
    with pytest.raises(ValidationError, match="handback_opening"):
        Aligner(str(tiny_lm_dir), format="chat", handback_opening="  ")
