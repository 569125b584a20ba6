"""The proxy surface: a streamed completion carries the same text and record as a whole one,
for every on_flag policy (a real proxy on 127.0.0.1 over the tiny model server)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from aligners import Squad
from aligners.server import ProxySettings, create_app, serve_in_thread
from tests.test_sync_async_parity import squad  # noqa: F401  (the policy fixture)


@pytest.fixture
def client(tiny_server: Any, squad: Squad) -> Iterator[openai.OpenAI]:  # noqa: F811
    settings = ProxySettings(upstream_url=tiny_server.base_url, upstream_model="tiny", warmup=False)
    server = serve_in_thread(create_app(settings, squad=squad))
    yield openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    server.stop()


def test_stream_and_whole_agree(client: openai.OpenAI, squad: Squad) -> None:  # noqa: F811
    messages = [{"role": "user", "content": "How do I do it?"}]
    whole = client.chat.completions.create(model="m", messages=messages, max_tokens=12)
    chunks = list(
        client.chat.completions.create(model="m", messages=messages, max_tokens=12, stream=True)
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    record = next(c.model_extra["aligners"] for c in chunks if c.model_extra.get("aligners"))
    expected = whole.model_extra["aligners"]
    assert record["action"] == expected["action"] and record["original"] == expected["original"]
    assert text == whole.choices[0].message.content
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == [whole.choices[0].finish_reason]
