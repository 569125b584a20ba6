"""OpenAIBackend against a real local OpenAI-compatible server: same results as in-process."""

from __future__ import annotations

import asyncio

import pytest

from aligners import Aligner, GenerationConfig, GenerationError, TransformersBackend
from aligners.backends import OpenAIBackend

RAW_PROMPTS = [
    "What is the capital of France?",
    "How do I bake bread? Mix flour",
    "Please be kind, honest and helpful.",
]
CHAT_PROMPT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Tell me how to bake bread."},
]
GREEDY = GenerationConfig(max_new_tokens=10)


def remote(server, **options) -> OpenAIBackend:
    return OpenAIBackend(server.base_url, "tiny", on_truncation="accept", **options)


def test_backend_is_exported_from_the_package() -> None:
    import aligners.backends

    assert aligners.backends.OpenAIBackend is OpenAIBackend


def test_raw_prompts_match_the_in_process_backend(tiny_server, tiny_lm_dir) -> None:
    local = TransformersBackend(str(tiny_lm_dir))
    expected = [local.generate([p], GREEDY)[0] for p in RAW_PROMPTS]
    backend = remote(tiny_server)
    assert backend.generate(RAW_PROMPTS, GREEDY) == expected
    assert ["".join(backend.stream(p, GREEDY)) for p in RAW_PROMPTS] == expected
    assert any(expected), "the tiny model generated nothing; the comparison would be empty"


def test_chat_prompts_match_the_in_process_backend(tiny_server, tiny_lm_dir) -> None:
    local = TransformersBackend(str(tiny_lm_dir))
    expected = local.generate([CHAT_PROMPT], GREEDY)[0]
    backend = remote(tiny_server)
    assert backend.generate([CHAT_PROMPT], GREEDY) == [expected]
    assert "".join(backend.stream(CHAT_PROMPT, GREEDY)) == expected


async def test_async_paths_match(tiny_server, tiny_lm_dir) -> None:
    local = TransformersBackend(str(tiny_lm_dir))
    expected = [local.generate([p], GREEDY)[0] for p in RAW_PROMPTS]
    backend = remote(tiny_server)
    assert await backend.agenerate(RAW_PROMPTS, GREEDY) == expected
    pieces = [piece async for piece in backend.astream(CHAT_PROMPT, GREEDY)]
    assert "".join(pieces) == local.generate([CHAT_PROMPT], GREEDY)[0]
    await backend.aclose()


@pytest.mark.parametrize("fmt", ["pku", "pku-v1", "chat"])
def test_aligner_on_remote_backend_matches_in_process(tiny_server, tiny_lm_dir, fmt) -> None:
    questions = ["What is the capital of France?", "How do I bake bread?"]
    answers = ["Paris, I think.", "Mix flour and water."]
    local = Aligner(str(tiny_lm_dir), format=fmt, max_new_tokens=8, batch_size=1)
    backend = remote(tiny_server)
    far = Aligner(format=fmt, backend=backend, max_new_tokens=8)
    assert far.align_batch(questions, answers) == local.align_batch(questions, answers)
    assert "".join(far.stream(questions[0], answers[0])) == "".join(
        local.stream(questions[0], answers[0])
    )


@pytest.mark.parametrize("fmt", ["pku", "chat"])
def test_a_forced_opening_is_continued_by_the_server(tiny_server, tiny_lm_dir, fmt) -> None:
    questions = ["What is the capital of France?", "How do I bake bread?"]
    answers = ["Paris, I think.", "Mix flour and water."]
    local = Aligner(str(tiny_lm_dir), format=fmt, max_new_tokens=8, batch_size=1)
    far = Aligner(format=fmt, backend=remote(tiny_server), max_new_tokens=8)
    expected = local.correct(questions, answers, opening="I cannot")
    assert far.correct(questions, answers, opening="I cannot") == expected
    assert all(c.text.startswith("I cannot") for c in expected)


def test_stop_strings_are_cut_by_the_server(tiny_server, tiny_lm_dir) -> None:
    local = TransformersBackend(str(tiny_lm_dir))
    full = local.generate([RAW_PROMPTS[0]], GenerationConfig(max_new_tokens=16))[0]
    stop = next((c for c in full[3:] if c.strip()), None)
    if stop is None:
        pytest.skip("the tiny model's output has no character to stop on")
    config = GenerationConfig(max_new_tokens=16, stop_strings=(stop,))
    text = remote(tiny_server).generate([RAW_PROMPTS[0]], config)[0]
    assert stop not in text
    assert full.startswith(text)


def test_truncated_output_raises_by_default(tiny_server) -> None:
    backend = OpenAIBackend(tiny_server.base_url, "tiny")
    with pytest.raises(GenerationError, match="finish_reason=length"):
        backend.generate(["What is the capital of France?"], GenerationConfig(max_new_tokens=2))
    text, finish = backend.complete("What is", GenerationConfig(max_new_tokens=2))
    assert finish == "length" and isinstance(text, str)


def test_unknown_model_is_a_clear_error(tiny_server) -> None:
    backend = OpenAIBackend(tiny_server.base_url, "no-such-model")
    with pytest.raises(GenerationError, match="no-such-model.*not served"):
        backend.generate(["hi"], GREEDY)
    assert OpenAIBackend(tiny_server.base_url, "tiny").list_models() == ["tiny"]


def test_batches_are_concurrent_but_bounded(fault_server) -> None:
    server = fault_server("slow-ok")
    backend = OpenAIBackend(server.base_url, "m", max_concurrency=2)
    assert backend.generate([f"p{i}" for i in range(6)], GREEDY) == ["fixed answer"] * 6
    assert server.requests == 6
    assert server.server.max_in_flight == 2


async def test_async_batches_are_bounded(fault_server) -> None:
    server = fault_server("slow-ok")
    backend = OpenAIBackend(server.base_url, "m", max_concurrency=3)
    assert await backend.agenerate([f"p{i}" for i in range(7)], GREEDY) == ["fixed answer"] * 7
    assert server.server.max_in_flight == 3
    await backend.aclose()


def test_request_shape_and_api_key(fault_server, monkeypatch) -> None:
    server = fault_server("ok")
    monkeypatch.setenv("MY_KEY", "sekret")
    backend = OpenAIBackend(server.base_url, "m", api_key_env="MY_KEY", extra_body={"top_k": 1})
    backend.generate(["raw text"], GenerationConfig(max_new_tokens=5, stop_strings=("[DONE]",)))
    backend.generate([CHAT_PROMPT], GREEDY)
    raw, chat = server.server.bodies
    assert raw["prompt"] == "raw text" and raw["max_tokens"] == 5 and raw["stop"] == ["[DONE]"]
    assert raw["temperature"] == 0.0 and raw["top_k"] == 1 and raw["model"] == "m"
    assert chat["messages"] == CHAT_PROMPT and "prompt" not in chat
    assert "continue_final_message" not in chat and "add_generation_prompt" not in chat
    opened = [*CHAT_PROMPT, {"role": "assistant", "content": "I can't"}]
    backend.generate([opened], GREEDY)
    continued = server.server.bodies[-1]
    assert continued["messages"] == opened
    # vLLM's parameters for continuing the last message instead of answering it.
    assert continued["continue_final_message"] is True
    assert continued["add_generation_prompt"] is False
    assert server.server.headers[0]["Authorization"] == "Bearer sekret"


def test_endpoint_choice(fault_server) -> None:
    server = fault_server("ok")
    OpenAIBackend(server.base_url, "m", endpoint="chat").generate(["raw"], GREEDY)
    assert server.server.bodies[-1]["messages"] == [{"role": "user", "content": "raw"}]
    with pytest.raises(GenerationError, match="completions endpoint but got chat messages"):
        OpenAIBackend(server.base_url, "m", endpoint="completions").generate([CHAT_PROMPT], GREEDY)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base_url": "localhost:8000"}, "http"),
        ({"model": ""}, "model"),
        ({"timeout": 0}, "timeout"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"endpoint": "embeddings"}, "endpoint"),
        ({"on_truncation": "ignore"}, "on_truncation"),
    ],
)
def test_bad_settings_are_rejected(kwargs, message) -> None:
    values = {"base_url": "http://127.0.0.1:9/v1", "model": "m"} | kwargs
    with pytest.raises(ValueError, match=message):
        OpenAIBackend(**values)


def test_construction_does_not_connect() -> None:
    backend = OpenAIBackend("http://127.0.0.1:9/v1", "m")
    aligner = Aligner(format="ibm", backend=backend)  # marker tokens cannot be added remotely
    assert aligner.backend is backend and backend.count_tokens("x") is None
    asyncio.run(backend.aclose())


def test_plain_server_serves_a_peft_adapter(tiny_lm_dir, tmp_path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from aligners.server import ModelServerSettings, create_model_app, serve_in_thread

    torch.manual_seed(3)
    base = AutoModelForCausalLM.from_pretrained(tiny_lm_dir)
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, lora).save_pretrained(tmp_path / "adapter")
    adapter = str(tmp_path / "adapter")
    settings = ModelServerSettings(
        model=str(tiny_lm_dir), adapter=adapter, served_model_name="tuned"
    )
    with serve_in_thread(create_model_app(str(tiny_lm_dir), settings)) as server:
        remote = OpenAIBackend(server.base_url, "tuned", on_truncation="accept")
        served = remote.generate(RAW_PROMPTS, GREEDY)
    tuned = TransformersBackend(str(tiny_lm_dir), adapter=adapter)
    plain = TransformersBackend(str(tiny_lm_dir))
    assert served == [tuned.generate([p], GREEDY)[0] for p in RAW_PROMPTS]
    assert served != [plain.generate([p], GREEDY)[0] for p in RAW_PROMPTS]  # the adapter matters
