"""What no request may do to the servers: overflow the model's context, run past its time, stop
a shutdown; and what ``/ready`` and ``on_error`` promise. Real servers on 127.0.0.1."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import openai
import pytest
from scaling_helpers import aligners_cli, free_port, wait_ready

from aligners import (
    Aligner,
    FunctionInspector,
    GenerationConfig,
    Squad,
    SquadMember,
    TransformersBackend,
    get_criterion,
)
from aligners.backends import OpenAIBackend
from aligners.backends.local import LocalGenerator
from aligners.server import (
    ModelServerSettings,
    ProxySettings,
    create_app,
    create_model_app,
    serve_in_thread,
)

LONG = "word " * 700  # over the tiny model's 512-token context


def passing_squad() -> Squad:
    crit = get_criterion("ethical")
    return Squad([SquadMember(crit, None, FunctionInspector(lambda q, a: 1.0, crit))])


def test_prompt_over_the_local_context_is_a_400_before_generation(tiny_lm_dir) -> None:
    settings = ModelServerSettings(model=str(tiny_lm_dir), served_model_name="tiny")
    with serve_in_thread(create_model_app(str(tiny_lm_dir), settings)) as server:
        chat = httpx.post(
            f"{server.base_url}/chat/completions",
            json={"model": "tiny", "messages": [{"role": "user", "content": LONG}]},
            timeout=30,
        )
        streamed = httpx.post(
            f"{server.base_url}/completions",
            json={"model": "tiny", "prompt": LONG, "stream": True},
            timeout=30,
        )
        plain = httpx.post(
            f"{server.base_url}/completions", json={"model": "tiny", "prompt": LONG}, timeout=30
        )
        fits = httpx.post(
            f"{server.base_url}/completions",
            json={"model": "tiny", "prompt": "hi", "max_tokens": 4},
            timeout=30,
        )
    for response in (chat, streamed, plain):
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert "context is 512 tokens" in error["message"] and error["type"] == (
            "invalid_request_error"
        )
    assert streamed.headers["content-type"].startswith("application/json")  # not a broken SSE
    assert fits.status_code == 200


def test_proxy_refuses_an_over_context_request_for_its_local_upstream(tiny_lm_dir) -> None:
    settings = ProxySettings(local_model=str(tiny_lm_dir))
    with serve_in_thread(create_app(settings, squad=passing_squad())) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        with pytest.raises(openai.BadRequestError, match="context is 512 tokens"):
            client.chat.completions.create(
                model="any", messages=[{"role": "user", "content": LONG}], max_tokens=8
            )
        # max_tokens counts too: a short prompt asking for more than the context holds
        with pytest.raises(openai.BadRequestError, match="max_tokens asks for 600"):
            client.chat.completions.create(
                model="any", messages=[{"role": "user", "content": "hi"}], max_tokens=600
            )


def test_a_slow_upstream_gets_504_and_others_are_served(fault_server, tiny_server) -> None:
    slow = fault_server("sleep")  # accepts, then says nothing for 60 s
    settings = ProxySettings(
        upstream_url=slow.base_url, upstream_model="m", upstream_timeout=60, request_timeout=1.0
    )
    with serve_in_thread(create_app(settings, squad=passing_squad())) as server:
        start = time.monotonic()
        response = httpx.post(
            f"{server.base_url}/chat/completions",
            json={"messages": [{"role": "user", "content": "hi"}]},
            timeout=30,
        )
        took = time.monotonic() - start
        assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200
    assert response.status_code == 504, response.text
    error = response.json()["error"]
    assert error["code"] == "timeout" and "request_timeout of 1s" in error["message"]
    assert took < 20  # the 60 s upstream did not hold the request


def test_local_generation_stops_at_its_time_limit(tiny_lm_dir) -> None:
    generator = LocalGenerator(TransformersBackend(str(tiny_lm_dir)))
    prompt = "Tell me everything about " + "bread " * 5
    unlimited = generator.complete(prompt, GenerationConfig(max_new_tokens=300))
    if unlimited.finish_reason != "length":
        pytest.skip("the tiny model ended its text before 300 tokens")
    limited = generator.complete(prompt, GenerationConfig(max_new_tokens=300, max_time=0.02))
    assert limited.finish_reason == "length"
    assert limited.completion_tokens is not None and limited.completion_tokens < 300
    assert unlimited.text.startswith(limited.text)


def test_ready_checks_remote_aligners(tiny_server, fault_server) -> None:
    crit = get_criterion("helpful")
    dead = OpenAIBackend(f"http://127.0.0.1:{free_port()}/v1", "m", max_retries=0, timeout=2.0)
    alive = OpenAIBackend(fault_server("ok").base_url, "m", max_retries=0, timeout=2.0)
    upstream = OpenAIBackend(tiny_server.base_url, "tiny", endpoint="chat")

    def app(backend: OpenAIBackend):
        aligner = Aligner(format="chat", criterion=crit, backend=backend, max_new_tokens=8)
        squad = Squad([SquadMember(crit, aligner, FunctionInspector(lambda q, a: 0.0, crit))])
        return create_app(ProxySettings(), squad=squad, upstream=upstream)

    server = serve_in_thread(app(dead), wait_ready=False)
    try:
        ready = httpx.get(f"{server.url}/ready", timeout=10)
    finally:
        server.stop()
    assert ready.status_code == 503
    assert ready.json()["status"] == "aligner unreachable"
    assert "helpful aligner" in ready.json()["error"] and "cannot connect" in ready.json()["error"]
    with serve_in_thread(app(alive)) as server:  # waits for /ready: 200 once both answer
        assert httpx.get(f"{server.url}/ready", timeout=10).status_code == 200


def test_on_error_return_original_or_raise(tiny_server) -> None:
    crit = get_criterion("ethical")

    def broken(question: str, answer: str) -> float:
        raise RuntimeError("inspector crashed")

    squad = Squad([SquadMember(crit, None, FunctionInspector(broken, crit))])
    upstream = OpenAIBackend(tiny_server.base_url, "tiny", endpoint="chat")
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    with serve_in_thread(
        create_app(ProxySettings(warmup=False), squad=squad, upstream=upstream)
    ) as server:
        kept = httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=30)
    strict = ProxySettings(warmup=False, on_error="raise")
    with serve_in_thread(create_app(strict, squad=squad, upstream=upstream)) as server:
        raised = httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=30)
    assert kept.status_code == 200
    record = kept.json()["aligners"]
    assert record["action"] == "failed" and "inspector crashed" in record["failures"][0]
    assert kept.json()["choices"][0]["message"]["content"] == record["original"]
    assert raised.status_code == 500
    assert raised.json()["error"]["type"] == "alignment_error"
    assert "inspector crashed" in raised.json()["error"]["message"]


def test_sigterm_stops_within_the_deadline_with_a_request_in_flight(process, fault_server) -> None:
    slow = fault_server("sleep")
    aligner = fault_server("ok")
    port = free_port()
    proc = process(
        [
            *aligners_cli(),
            "serve",
            "--port", str(port),
            "--upstream-url", slow.base_url,
            "--upstream-model", "m",
            "--upstream-timeout", "60",
            "--aligner-url", aligner.base_url,
            "--aligner-model", "m",
            "--criteria", "ethical",
            "--shutdown-timeout", "1",
        ]
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc)
    client = httpx.Client(timeout=60)
    outcome: list[object] = []

    def in_flight() -> None:
        try:
            outcome.append(
                client.post(
                    f"{url}/v1/chat/completions",
                    json={"messages": [{"role": "user", "content": "hi"}]},
                )
            )
        except httpx.HTTPError as exc:
            outcome.append(exc)

    request = threading.Thread(target=in_flight)
    request.start()
    deadline = time.monotonic() + 10
    while slow.requests == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert slow.requests == 1  # the request is now waiting on the silent upstream
    start = time.monotonic()
    proc.proc.send_signal(signal.SIGTERM)
    code = proc.proc.wait(timeout=30)
    took = time.monotonic() - start
    request.join(30)
    assert took < 10, f"took {took:.1f}s to stop"
    assert code is not None and outcome  # the client got an answer or a closed connection
