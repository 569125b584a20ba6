"""The aligning proxy, called with the real ``openai`` package over 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import httpx
import openai
import pytest
from scaling_helpers import free_port

from aligners import (
    Aligner,
    FunctionInspector,
    GenerationConfig,
    Inspector,
    Squad,
    SquadMember,
    TransformersBackend,
    get_criterion,
)
from aligners.backends import OpenAIBackend
from aligners.server import ProxySettings, create_app, serve_in_thread
from aligners.server.common import JsonFormatter
from aligners.server.proxy import TokenCap, load_tokenizer
from tests.conftest import RANDOM_MODEL

QUESTION = "How do I bake bread?"
MESSAGES = [
    {"role": "system", "content": "You are a baker."},
    {"role": "user", "content": QUESTION},
]


def make_squad(tiny_lm_dir) -> Squad:
    """ethical always passes; helpful always fails, so its aligner (tiny model) rewrites."""
    members = []
    for name, score in (("ethical", 1.0), ("helpful", 0.0)):
        crit = get_criterion(name)
        aligner = Aligner(
            str(tiny_lm_dir), format="chat", criterion=crit, max_new_tokens=8, **RANDOM_MODEL
        )
        members.append(SquadMember(crit, aligner, FunctionInspector(lambda q, a, s=score: s, crit)))
    return Squad(members)


@pytest.fixture(scope="module")
def upstream_answer(tiny_lm_dir) -> str:
    """What the upstream (the tiny model, greedy) answers to MESSAGES with max_tokens=8."""
    backend = TransformersBackend(str(tiny_lm_dir))
    return backend.generate([MESSAGES], GenerationConfig(max_new_tokens=8))[0]


@pytest.fixture(scope="module")
def proxy(tiny_server, tiny_lm_dir):
    # The tests pick criteria and check_only per request: the operator opens those two fields.
    settings = ProxySettings(
        upstream_url=tiny_server.base_url,
        upstream_model="tiny",
        allow_client_policy=["criteria", "check_only"],
    )
    server = serve_in_thread(create_app(settings, squad=make_squad(tiny_lm_dir)))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(proxy) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.base_url, api_key="unused", max_retries=0)


def test_chat_completion_is_the_aligned_upstream_answer(
    client, tiny_lm_dir, upstream_answer
) -> None:
    expected = make_squad(tiny_lm_dir).align(QUESTION, upstream_answer)
    response = client.chat.completions.create(model="any", messages=MESSAGES, max_tokens=8)
    record = response.model_extra["aligners"]
    # max_tokens caps the returned rewrite too (counted in the tiny model's tokens)
    tokenizer = load_tokenizer(str(tiny_lm_dir))
    capped, cut = TokenCap(lambda: tokenizer, 8).apply(expected.text)
    assert response.choices[0].message.content == capped
    assert cut == ("cut_at_max_tokens" in record)
    assert record["original"] == upstream_answer and record["question"] == QUESTION
    assert record["flagged"] == ["helpful"] and record["applied"] == expected.applied
    assert record["text"] == expected.text
    assert response.model == "aligners" and response.choices[0].finish_reason in ("stop", "length")


def test_streaming_gives_the_same_text_and_the_record(client, upstream_answer) -> None:
    full = client.chat.completions.create(model="any", messages=MESSAGES, max_tokens=8)
    chunks = list(
        client.chat.completions.create(model="any", messages=MESSAGES, max_tokens=8, stream=True)
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text.strip() == full.choices[0].message.content
    last = chunks[-1]
    assert last.choices[0].finish_reason is not None
    assert last.model_extra["aligners"]["flagged"] == ["helpful"]


def test_criteria_by_header(client, upstream_answer) -> None:
    response = client.chat.completions.create(
        model="any",
        messages=MESSAGES,
        max_tokens=8,
        extra_headers={"X-Aligners-Criteria": "ethical"},
    )
    record = response.model_extra["aligners"]
    assert record["applied"] == [] and list(record["thresholds"]) == ["ethical"]
    assert response.choices[0].message.content == upstream_answer


def test_criteria_and_check_only_by_request_field(client, upstream_answer) -> None:
    response = client.chat.completions.create(
        model="any",
        messages=MESSAGES,
        max_tokens=8,
        extra_body={"aligners": {"criteria": ["helpful"], "check_only": True}},
    )
    record = response.model_extra["aligners"]
    assert record["check_only"] is True and record["flagged"] == ["helpful"]
    assert response.choices[0].message.content == upstream_answer


def test_unknown_criterion_is_a_400(client) -> None:
    with pytest.raises(openai.BadRequestError, match="not in this squad"):
        client.chat.completions.create(
            model="any", messages=MESSAGES, extra_headers={"X-Aligners-Criteria": "poetry"}
        )


def test_models_health_ready(client, proxy) -> None:
    assert [m.id for m in client.models.list()] == ["aligners"]
    assert httpx.get(f"{proxy.url}/health").json() == {"status": "ok"}
    assert httpx.get(f"{proxy.url}/ready").status_code == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "empty"),
        (b"[1, 2]", "JSON object"),
        (json.dumps({"model": "m"}).encode(), "messages: Field required"),
        (json.dumps({"messages": []}).encode(), "messages"),
        (json.dumps({"messages": [{"role": "wizard", "content": "x"}]}).encode(), "role"),
        (json.dumps({"messages": MESSAGES, "n": 2}).encode(), "n=2"),
        (json.dumps({"messages": MESSAGES, "max_tokens": 10**6}).encode(), "exceeds"),
        (json.dumps({"messages": MESSAGES, "tools": [{"type": "function"}]}).encode(), "tools"),
        (json.dumps({"messages": MESSAGES, "aligners": {"colour": 1}}).encode(), "colour"),
        (
            json.dumps(
                {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}
            ).encode(),
            "only text",
        ),
    ],
)
def test_bad_requests_get_clear_400s(proxy, body, message) -> None:
    response = httpx.post(
        f"{proxy.base_url}/chat/completions",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert message in error["message"] and error["type"] == "invalid_request_error"


def test_unknown_route_is_an_openai_style_404(proxy) -> None:
    response = httpx.get(f"{proxy.base_url}/embeddings")
    assert response.status_code == 404 and "error" in response.json()


def test_text_parts_are_accepted(client) -> None:
    parts = [{"type": "text", "text": "How do I "}, {"type": "text", "text": "bake bread?"}]
    response = client.chat.completions.create(
        model="any", messages=[{"role": "user", "content": parts}], max_tokens=4
    )
    assert response.model_extra["aligners"]["question"] == QUESTION


@pytest.fixture(scope="module")
def guarded_proxy(tiny_server, tiny_lm_dir):
    settings = ProxySettings(
        upstream_url=tiny_server.base_url,
        upstream_model="tiny",
        api_key="s3cret",
        max_request_bytes=2000,
    )
    server = serve_in_thread(create_app(settings, squad=make_squad(tiny_lm_dir)))
    yield server
    server.stop()


def test_api_key_is_checked_when_configured(guarded_proxy) -> None:
    wrong = openai.OpenAI(base_url=guarded_proxy.base_url, api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="invalid API key"):
        wrong.chat.completions.create(model="any", messages=MESSAGES, max_tokens=4)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    missing = httpx.post(f"{guarded_proxy.base_url}/chat/completions", json={"messages": MESSAGES})
    assert missing.status_code == 401 and "missing API key" in missing.json()["error"]["message"]
    right = openai.OpenAI(base_url=guarded_proxy.base_url, api_key="s3cret", max_retries=0)
    assert right.chat.completions.create(model="any", messages=MESSAGES, max_tokens=4).choices
    assert httpx.get(f"{guarded_proxy.url}/health").status_code == 200  # probes need no key


def test_request_size_limit(guarded_proxy) -> None:
    client = openai.OpenAI(base_url=guarded_proxy.base_url, api_key="s3cret", max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            model="any", messages=[{"role": "user", "content": "x" * 5000}], max_tokens=4
        )
    assert caught.value.status_code == 413 and "the limit is 2000 bytes" in str(caught.value)
    chunked = httpx.post(
        f"{guarded_proxy.base_url}/chat/completions",
        content=iter([b'{"messages": [{"role": "user", "content": "', b"y" * 4000, b'"}]}']),
        headers={"Authorization": "Bearer s3cret", "Content-Type": "application/json"},
    )
    assert chunked.status_code == 413  # no Content-Length: counted while reading


def test_upstream_down_is_a_502_and_not_ready(tiny_lm_dir) -> None:
    settings = ProxySettings(
        upstream_url=f"http://127.0.0.1:{free_port()}/v1",
        upstream_model="m",
        upstream_max_retries=0,
        upstream_timeout=2.0,
    )
    server = serve_in_thread(create_app(settings, squad=make_squad(tiny_lm_dir)), wait_ready=False)
    try:
        ready = httpx.get(f"{server.url}/ready", timeout=10)
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model="any", messages=MESSAGES)
    finally:
        server.stop()
    assert ready.status_code == 503 and "cannot connect" in ready.text
    assert caught.value.status_code == 502 and "upstream model failed" in str(caught.value)


def test_aligner_server_down_returns_the_upstream_answer(tiny_server, upstream_answer) -> None:
    dead = OpenAIBackend(f"http://127.0.0.1:{free_port()}/v1", "m", max_retries=0, timeout=2.0)
    crit = get_criterion("helpful")
    aligner = Aligner(format="chat", criterion=crit, backend=dead, max_new_tokens=8)
    squad = Squad([SquadMember(crit, aligner, FunctionInspector(lambda q, a: 0.0, crit))])
    upstream = OpenAIBackend(tiny_server.base_url, "tiny", endpoint="chat", on_truncation="accept")
    app = create_app(ProxySettings(), squad=squad, upstream=upstream)
    # Not ready (its aligner server is down: see test_ready_checks_remote_aligners), yet it serves.
    server = serve_in_thread(app, wait_ready=False)
    try:
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        response = client.chat.completions.create(model="any", messages=MESSAGES, max_tokens=8)
        chunks = list(
            client.chat.completions.create(
                model="any", messages=MESSAGES, max_tokens=8, stream=True
            )
        )
    finally:
        server.stop()
    record = response.model_extra["aligners"]
    assert response.choices[0].message.content == upstream_answer
    assert record["applied"] == [] and "cannot connect" in record["failures"][0]
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert streamed == upstream_answer
    assert "cannot connect" in chunks[-1].model_extra["aligners"]["failures"][0]


def test_local_upstream(tiny_lm_dir, upstream_answer) -> None:
    settings = ProxySettings(local_model=str(tiny_lm_dir), allow_client_policy=["criteria"])
    with serve_in_thread(create_app(settings, squad=make_squad(tiny_lm_dir))) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        response = client.chat.completions.create(
            model="any",
            messages=MESSAGES,
            max_tokens=8,
            extra_body={"aligners": {"criteria": "ethical"}},
        )
    assert response.choices[0].message.content == upstream_answer
    assert response.usage is not None and response.usage.completion_tokens <= 8


def test_one_json_log_line_per_request(client, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="aligners.server"):
        client.chat.completions.create(
            model="any",
            messages=MESSAGES,
            max_tokens=4,
            extra_headers={"X-Request-ID": "req-42"},
        )
    lines = [
        json.loads(JsonFormatter().format(r)) for r in caplog.records if r.getMessage() == "request"
    ]
    entry = next(e for e in lines if e.get("request_id") == "req-42")
    assert entry["path"] == "/v1/chat/completions" and entry["status"] == 200
    assert entry["criteria"] == ["ethical", "helpful"] and entry["flagged"] == ["helpful"]
    assert entry["level"] == "info" and "upstream_ms" in entry and "duration_ms" in entry


def test_settings_validation() -> None:
    with pytest.raises(ValueError, match="upstream_model is required"):
        ProxySettings(upstream_url="http://127.0.0.1:1/v1")
    with pytest.raises(ValueError, match="http"):
        ProxySettings(upstream_url="127.0.0.1:1", upstream_model="m")


class SlowFirstInspector(Inspector):
    """Passes every answer; its first call sleeps so concurrent requests queue behind it."""

    def __init__(self, criterion: str) -> None:
        super().__init__(criterion)
        self.calls: list[int] = []

    def _score(self, questions, answers) -> list[float]:
        self.calls.append(len(questions))
        if len(self.calls) == 1:
            time.sleep(1.0)
        return [1.0] * len(questions)


async def test_concurrent_requests_share_a_squad_batch(tiny_server, tiny_lm_dir) -> None:
    crit = get_criterion("ethical")
    inspector = SlowFirstInspector("ethical")
    aligner = Aligner(
        str(tiny_lm_dir), format="chat", criterion=crit, max_new_tokens=8, **RANDOM_MODEL
    )
    squad = Squad([SquadMember(crit, aligner, inspector)])
    settings = ProxySettings(upstream_url=tiny_server.base_url, upstream_model="tiny", warmup=False)
    questions = [f"Question number {i}: how do I bake bread?" for i in range(6)]
    local = TransformersBackend(str(tiny_lm_dir))
    expected = [
        local.generate([[{"role": "user", "content": q}]], GenerationConfig(max_new_tokens=8))[0]
        for q in questions
    ]
    server = serve_in_thread(create_app(settings, squad=squad))
    try:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        replies = await asyncio.gather(
            *(
                client.chat.completions.create(
                    model="any", messages=[{"role": "user", "content": q}], max_tokens=8
                )
                for q in questions
            )
        )
        await client.close()
    finally:
        server.stop()
    for question, answer, reply in zip(questions, expected, replies):
        record = reply.model_extra["aligners"]
        assert record["question"] == question  # no cross-talk between batched requests
        assert reply.choices[0].message.content == answer == record["original"]
    assert sum(inspector.calls) == len(questions)  # every answer scored exactly once
    assert max(inspector.calls) > 1  # the requests queued behind the first were scored together
