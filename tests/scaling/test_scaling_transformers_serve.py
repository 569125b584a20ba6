"""A third-party server: ``transformers serve`` (Hugging Face's OpenAI-compatible server) on
127.0.0.1, serving the tiny model; the remote backend and the proxy work against it unchanged."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from scaling_helpers import Process, free_port

from aligners import (
    Aligner,
    FunctionInspector,
    GenerationConfig,
    GenerationError,
    Squad,
    SquadMember,
    TransformersBackend,
    get_criterion,
)
from aligners.backends import OpenAIBackend
from aligners.server import ProxySettings, create_app, serve_in_thread

PROMPT = "What is the capital of France?"
CHAT = [{"role": "user", "content": "How do I bake bread?"}]
CONFIG = GenerationConfig(max_new_tokens=8)


def _cli() -> str | None:
    found = shutil.which("transformers") or str(Path(sys.executable).parent / "transformers")
    return found if Path(found).exists() else None


@pytest.fixture(scope="module")
def hf_server(tiny_lm_dir):
    cli = _cli()
    if cli is None:
        pytest.skip("the transformers CLI is not installed")
    port = free_port()
    proc = Process(
        [
            cli,
            "serve",
            str(tiny_lm_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--device",
            "cpu",
        ],
        env={"HF_HUB_OFFLINE": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # it has /health, not /ready
        if proc.proc.poll() is not None:
            pytest.fail(f"transformers serve exited:\n{proc.output()}")
        try:
            if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        pytest.fail(f"transformers serve not up:\n{proc.output()}")
    yield f"{url}/v1"
    proc.kill()


def test_backend_matches_in_process_against_transformers_serve(hf_server, tiny_lm_dir) -> None:
    local = TransformersBackend(str(tiny_lm_dir))
    remote = OpenAIBackend(hf_server, str(tiny_lm_dir), on_truncation="accept")
    assert remote.list_models() == [str(tiny_lm_dir)]
    for prompt in (PROMPT, CHAT):
        expected = local.generate([prompt], CONFIG)[0]
        assert expected
        # A half character cut off at max_new_tokens (the random model emits stray bytes) is
        # decoded to U+FFFD by one decoder and dropped by the other; the text before it matches.
        (got,) = remote.generate([prompt], CONFIG)
        assert got.rstrip("\ufffd") == expected.rstrip("\ufffd")
    streamed = "".join(remote.stream(CHAT, CONFIG))
    # transformers serve's streamer drops a trailing half character (the random model emits
    # stray bytes), so its stream can lack a final U+FFFD; everything else is identical.
    assert streamed.rstrip("\ufffd") == local.generate([CHAT], CONFIG)[0].rstrip("\ufffd")
    with pytest.raises(GenerationError, match="finish_reason=length"):
        OpenAIBackend(hf_server, str(tiny_lm_dir)).generate([PROMPT], CONFIG)


def test_aligner_and_proxy_on_transformers_serve(hf_server, tiny_lm_dir) -> None:
    remote = OpenAIBackend(hf_server, str(tiny_lm_dir), on_truncation="accept")
    far = Aligner(format="chat", backend=remote, max_new_tokens=8)
    near = Aligner(str(tiny_lm_dir), format="chat", max_new_tokens=8, batch_size=1)
    assert far.align("Why?", "Because.") == near.align("Why?", "Because.")

    # The proxy: upstream and aligner both on transformers serve; the inspector always flags.
    settings = ProxySettings(upstream_url=hf_server, upstream_model=str(tiny_lm_dir))
    crit = get_criterion("helpful")
    far = Aligner(format="chat", criterion=crit, backend=remote, max_new_tokens=8)
    squad = Squad([SquadMember(crit, far, FunctionInspector(lambda q, a: 0.0, crit))])
    with serve_in_thread(create_app(settings, squad=squad)) as proxy:
        client = openai.OpenAI(base_url=proxy.base_url, api_key="x", max_retries=0)
        reply = client.chat.completions.create(model="any", messages=CHAT, max_tokens=8)
    record = reply.model_extra["aligners"]
    upstream_answer = TransformersBackend(str(tiny_lm_dir)).generate([CHAT], CONFIG)[0]
    assert record["original"] == upstream_answer
    assert reply.choices[0].message.content == record["text"]
    assert record["applied"] == ["helpful"] or record["failures"]
