"""The proxy's sources: ``aligners.context`` in the request, else the messages of the roles the
operator names (none by default), reach the squad as the answer's context (a real proxy on
127.0.0.1, called over HTTP).

The upstream is a scripted in-process :class:`~aligners.server.Upstream` answering with one
sentence the sources do not support; the grounded member is the word-overlap rule inspector.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import openai
import pytest

from aligners import DEFAULT_NOT_COVERED, GenerationConfig
from aligners.server import Completion, ProxySettings, Upstream, create_app, serve_in_thread
from tests.grounding_helpers import MIXED_ANSWER, PASSAGES, REPAIRED_ANSWER, grounded_squad

QUESTION = "Tell me about the Eiffel Tower."
BREAD = "To bake bread, mix flour, water, yeast and salt."


class ScriptedUpstream(Upstream):
    """Answers every conversation with ``reply`` and keeps the messages it was sent."""

    name = "scripted"

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.seen: list[list[dict[str, str]]] = []

    async def acomplete(
        self,
        messages: list[dict[str, str]],
        config: GenerationConfig,
        fields: dict[str, Any] | None = None,
    ) -> Completion:
        self.seen.append(messages)
        return Completion(self.reply)


@pytest.fixture(scope="module")
def upstream() -> ScriptedUpstream:
    return ScriptedUpstream(MIXED_ANSWER)


@pytest.fixture(scope="module")
def proxy(upstream: ScriptedUpstream) -> Any:
    server = serve_in_thread(create_app(ProxySettings(), squad=grounded_squad(), upstream=upstream))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(proxy: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.base_url, api_key="unused", max_retries=0)


def ask(client: openai.OpenAI, messages: list[dict[str, Any]], **aligners: Any) -> Any:
    extra = {"aligners": aligners} if aligners else None
    return client.chat.completions.create(model="any", messages=messages, extra_body=extra)


def passages_of(record: dict[str, Any]) -> list[int]:
    """The passages of the supported claims (the record's report is the one the repair acted
    on: the unsupported sentence is there too)."""
    sentences = record["grounding"]["sentences"]
    return [s["passage"] for s in sentences if not s["trivial"] and s["supported"]]


def test_the_request_context_grounds_the_answer(client: openai.OpenAI, upstream) -> None:
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": QUESTION},
    ]
    response = ask(client, messages, context=PASSAGES)
    assert response.choices[0].message.content == REPAIRED_ANSWER
    record = response.model_extra["aligners"]
    assert record["action"] == "rewritten" and record["flagged"] == ["grounded"]
    assert record["context_source"] == "aligners.context"
    assert record["grounding"]["passages"] == 2 and passages_of(record) == [0, 1]
    # The proxy does not add the context to the prompt: the upstream got the messages as sent.
    assert upstream.seen[-1] == messages
    one_text = ask(client, messages, context=" ".join(PASSAGES))
    assert one_text.choices[0].message.content == REPAIRED_ANSWER


@pytest.fixture(scope="module")
def roles_client(upstream: ScriptedUpstream) -> Any:
    """A proxy whose operator says system and tool messages hold the sources."""
    settings = ProxySettings(context_roles=["system", "tool"])
    server = serve_in_thread(create_app(settings, squad=grounded_squad(), upstream=upstream))
    yield openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    server.stop()


def test_a_system_prompt_is_no_source_by_default(client: openai.OpenAI) -> None:
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": QUESTION},
    ]
    response = ask(client, messages)
    assert response.choices[0].message.content == MIXED_ANSWER  # not checked against it
    record = response.model_extra["aligners"]
    assert "no context" in record["not_inspected"]["grounded"]
    assert "context_source" not in record


def test_the_operators_roles_are_the_sources(roles_client: openai.OpenAI) -> None:
    client = roles_client
    messages = [
        {"role": "system", "content": f"Answer from this document: {PASSAGES[0]}"},
        {"role": "user", "content": QUESTION},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "search", "arguments": '{"q": "tower"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": PASSAGES[1]},
    ]
    response = ask(client, messages)
    assert response.choices[0].message.content == REPAIRED_ANSWER
    record = response.model_extra["aligners"]
    assert record["context_source"] == "messages"
    assert record["grounding"]["passages"] == 2 and passages_of(record) == [0, 1]


def test_the_request_context_wins_over_the_messages(roles_client: openai.OpenAI) -> None:
    client = roles_client
    messages = [
        {"role": "system", "content": " ".join(PASSAGES)},
        {"role": "user", "content": QUESTION},
    ]
    response = ask(client, messages, context=[BREAD])
    # Checked against the bread passage only: no claim is supported.
    assert response.choices[0].message.content == DEFAULT_NOT_COVERED
    assert response.model_extra["aligners"]["context_source"] == "aligners.context"


def test_without_sources_grounded_is_skipped_with_the_reason(client: openai.OpenAI) -> None:
    response = ask(client, [{"role": "user", "content": QUESTION}])
    assert response.choices[0].message.content == MIXED_ANSWER
    record = response.model_extra["aligners"]
    assert "no context" in record["not_inspected"]["grounded"]
    assert "context_source" not in record


def test_streaming_is_grounded_too(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="any",
            messages=[{"role": "user", "content": QUESTION}],
            stream=True,
            extra_body={"aligners": {"context": PASSAGES}},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == REPAIRED_ANSWER
    record = chunks[-1].model_extra["aligners"]
    assert record["context_source"] == "aligners.context" and passages_of(record) == [0, 1]


def test_concurrent_requests_keep_their_own_sources(proxy: Any) -> None:
    async def post(context: list[str]) -> str:
        body = {
            "messages": [{"role": "user", "content": QUESTION}],
            "aligners": {"context": context},
        }
        async with httpx.AsyncClient(base_url=proxy.base_url) as http:
            response = await http.post("/chat/completions", json=body)
        return str(response.json()["choices"][0]["message"]["content"])

    async def both() -> list[str]:
        return list(await asyncio.gather(*[post(c) for c in [PASSAGES, [BREAD]] * 3]))

    assert asyncio.run(both()) == [REPAIRED_ANSWER, DEFAULT_NOT_COVERED] * 3


@pytest.mark.parametrize(
    ("context", "message"),
    [([PASSAGES[0], 3], "Input should be a valid string"), (["bad \udc80"], "lone surrogate")],
)
def test_bad_contexts_are_a_400(proxy: Any, context: Any, message: str) -> None:
    body = {"messages": [{"role": "user", "content": QUESTION}], "aligners": {"context": context}}
    response = httpx.post(
        f"{proxy.base_url}/chat/completions",
        content=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]["message"]
