"""``aligners serve`` as a real subprocess on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess

import httpx
import openai
import pytest
from scaling_helpers import aligners_cli, free_port, wait_ready

from aligners import GenerationConfig, GenerationError, TransformersBackend
from aligners.backends import OpenAIBackend


def test_plain_server_subprocess_matches_in_process(process, tiny_lm_dir) -> None:
    port = free_port()
    proc = process(
        [
            *aligners_cli(),
            "serve",
            "--plain",
            "--model",
            str(tiny_lm_dir),
            "--served-model-name",
            "tiny",
            "--port",
            str(port),
        ],
        env={"ALIGNERS_API_KEY": "k1"},
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc)
    config = GenerationConfig(max_new_tokens=8)
    prompt = "What is the capital of France?"
    expected = TransformersBackend(str(tiny_lm_dir)).generate([prompt], config)[0]

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TINY_KEY", "k1")
        backend = OpenAIBackend(f"{url}/v1", "tiny", api_key_env="TINY_KEY", on_truncation="accept")
        assert backend.generate([prompt], config) == [expected]
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="k1", max_retries=0)
        completion = client.completions.create(model="tiny", prompt=prompt, max_tokens=8)
        assert completion.choices[0].text == expected
        assert completion.usage is not None and completion.usage.completion_tokens <= 8
    unauthorised = OpenAIBackend(f"{url}/v1", "tiny", api_key_env=None)
    with pytest.raises(GenerationError, match="HTTP 401"):
        unauthorised.generate([prompt], config)

    proc.kill()  # the server is gone: the same backend now fails clearly, after its retries
    fast = OpenAIBackend(f"{url}/v1", "tiny", max_retries=1, backoff=0.01, timeout=2.0)
    with pytest.raises(GenerationError, match="cannot connect"):
        fast.generate([prompt], config)


def test_structured_logs_on_stderr(process, tiny_lm_dir) -> None:
    port = free_port()
    proc = process(
        [*aligners_cli(), "serve", "--plain", "--model", str(tiny_lm_dir), "--port", str(port)]
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc)
    bad = httpx.post(f"{url}/v1/completions", content=b"nope")
    assert bad.status_code == 400
    lines = [line for line in proc.output().splitlines() if line.startswith("{")]
    entries = [json.loads(line) for line in lines]
    access = [e for e in entries if e.get("msg") == "request" and e.get("status") == 400]
    assert access and access[0]["path"] == "/v1/completions" and access[0]["level"] == "info"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--upstream-url", "http://127.0.0.1:9/v1"], "upstream_model is required"),
        (["--plain", "--upstream-url", "http://x/v1"], "--plain serves --model only"),
        (["--aligner-url", "http://127.0.0.1:9/v1"], "--aligner-model is required"),
        (["--threshold", "2"], "threshold"),
        (["--block-threshold", "2"], "--block-threshold"),
    ],
)
def test_bad_options_exit_2_with_one_line(args, message) -> None:
    done = subprocess.run(
        [*aligners_cli(), "serve", *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
