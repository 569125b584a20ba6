"""The proxy keeps OpenAI's contract for the text it returns: ``max_tokens`` caps rewrites too,
``usage`` counts the returned text (also as a streamed usage chunk), ``/v1/models/{id}``,
``response_format`` (forwarded; a JSON answer is never rewritten into prose), 400s naming
unsupported parameters, and the record in the ``X-Aligners`` header. The official ``openai``
client against real servers on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest
from fault_server import JSON_ANSWER, FaultServer

from aligners import (
    Aligner,
    FunctionInspector,
    Squad,
    SquadMember,
    TransformersBackend,
    get_criterion,
)
from aligners.server import ProxySettings, create_app, serve_in_thread
from aligners.server.proxy import RECORD_HEADER, TokenCap, load_tokenizer
from aligners.squad.squad import DEFAULT_BLOCKED_MESSAGE
from tests.conftest import RANDOM_MODEL

QUESTION = "How do I bake bread?"
MESSAGES = [{"role": "user", "content": QUESTION}]


def tiny_squad(tiny_lm_dir, score: float, **options: object) -> Squad:
    """One criterion with a fixed score; its aligner (the tiny model) writes up to 32 tokens."""
    crit = get_criterion("helpful")
    aligner = Aligner(
        str(tiny_lm_dir), format="chat", criterion=crit, max_new_tokens=32, **RANDOM_MODEL
    )
    inspector = FunctionInspector(lambda q, a: score, crit)
    return Squad([SquadMember(crit, aligner, inspector)], **options)


@pytest.fixture(scope="module")
def servers(tiny_server, tiny_lm_dir) -> Iterator[dict[str, openai.OpenAI]]:
    """Proxies over the tiny model server: one that rewrites every answer, one that passes
    every answer, one that blocks every answer."""
    started = {}
    for key, score, options in (
        ("rewrite", 0.0, {}),
        ("pass", 1.0, {}),
        ("block", 0.0, {"on_flag": "block"}),
    ):
        settings = ProxySettings(
            upstream_url=tiny_server.base_url, upstream_model="tiny", warmup=False
        )
        app = create_app(settings, squad=tiny_squad(tiny_lm_dir, score, **options))
        started[key] = serve_in_thread(app)
    yield {
        key: openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        for key, server in started.items()
    }
    for server in started.values():
        server.stop()


@pytest.fixture(scope="module")
def tokens(tiny_lm_dir) -> TokenCap:
    """Counts text in the tiny model's tokens (the proxy's counter here)."""
    tokenizer = load_tokenizer(str(tiny_lm_dir))
    return TokenCap(lambda: tokenizer, 4)


def test_max_tokens_caps_a_rewrite_and_usage_counts_the_returned_text(servers, tokens):
    reply = servers["rewrite"].chat.completions.create(
        model="aligners", messages=MESSAGES, max_tokens=4
    )
    text = reply.choices[0].message.content
    record = reply.model_extra["aligners"]
    assert record["action"] == "rewritten" and text != record["original"]
    assert tokens.count(text) <= 4 < tokens.count(record["text"])  # the rewrite was longer
    assert reply.choices[0].finish_reason == "length" and record["cut_at_max_tokens"] == 4
    assert reply.usage.completion_tokens == tokens.count(text)
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens

    chunks = list(
        servers["rewrite"].chat.completions.create(
            model="aligners",
            messages=MESSAGES,
            max_tokens=4,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text  # the stream is cut exactly where the whole answer is
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert [f for f in finishes if f] == ["length"]
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None  # the usage chunk comes last
    assert last.usage.completion_tokens == tokens.count(streamed)
    assert all(c.usage is None for c in chunks[:-1])


def test_a_passing_answer_keeps_the_upstreams_usage(servers, tiny_server):
    upstream = openai.OpenAI(base_url=tiny_server.base_url, api_key="x", max_retries=0)
    direct = upstream.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=6)
    reply = servers["pass"].chat.completions.create(
        model="aligners", messages=MESSAGES, max_tokens=6
    )
    assert reply.choices[0].message.content == direct.choices[0].message.content
    assert reply.usage.model_dump() == direct.usage.model_dump()
    assert reply.choices[0].finish_reason == direct.choices[0].finish_reason
    chunks = list(
        servers["pass"].chat.completions.create(
            model="aligners", messages=MESSAGES, max_tokens=6, stream=True
        )
    )
    assert all(c.usage is None for c in chunks)  # no include_usage: no usage chunk


def test_a_blocked_answer_is_content_filter_with_its_own_usage(servers, tokens):
    reply = servers["block"].chat.completions.create(
        model="aligners", messages=MESSAGES, max_tokens=4
    )
    assert reply.choices[0].message.content == DEFAULT_BLOCKED_MESSAGE
    assert reply.choices[0].finish_reason == "content_filter"
    # the blocked message is the returned text: not cut, and counted as it is
    assert reply.usage.completion_tokens == tokens.count(DEFAULT_BLOCKED_MESSAGE) > 4


def test_models_by_id(servers):
    model = servers["pass"].models.retrieve("aligners")
    assert model.id == "aligners" and model.owned_by == "aligners"
    with pytest.raises(openai.NotFoundError, match="does not exist; this proxy serves 'aligners'"):
        servers["pass"].models.retrieve("gpt-4o")


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"max_token": 5}, "max_token"),  # a typo is not silently ignored
        ({"top_p": 0.5}, "top_p"),
        ({"logit_bias": {"42": 5}}, "logit_bias"),
        ({"presence_penalty": 1.0}, "presence_penalty"),
        ({"audio": {"voice": "alloy"}}, "audio"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),  # without stream
        ({"response_format": {"type": "yaml"}}, None),
    ],
)
def test_unsupported_parameters_are_a_400_naming_them(servers, extra, param):
    with pytest.raises(openai.BadRequestError) as caught:
        servers["pass"].chat.completions.create(
            model="aligners", messages=MESSAGES, max_tokens=4, extra_body=extra
        )
    name = param or "response_format"
    assert name in caught.value.message
    if param is not None:
        assert caught.value.body["param"] == param


def test_neutral_values_of_unsupported_parameters_pass(servers):
    reply = servers["pass"].chat.completions.create(
        model="aligners",
        messages=MESSAGES,
        max_tokens=4,
        top_p=1,
        presence_penalty=0,
        user="someone",
        seed=1,
    )
    assert reply.choices[0].message.content


def test_the_record_travels_in_a_header(servers):
    raw = servers["rewrite"].chat.completions.with_raw_response.create(
        model="aligners", messages=MESSAGES, max_tokens=4
    )
    header = json.loads(raw.headers[RECORD_HEADER])
    record = raw.parse().model_extra["aligners"]
    assert header["action"] == record["action"] == "rewritten"
    assert header["applied"] == record["applied"] and header["cut_at_max_tokens"] == 4
    assert header["initial_scores"] == {"helpful": 0.0}
    assert "original" not in header and "text" not in header  # texts stay in the body
    # a stream the squad decides whole (block) has the full summary up front
    blocked = servers["block"].chat.completions.with_raw_response.create(
        model="aligners", messages=MESSAGES, max_tokens=4, stream=True
    )
    assert json.loads(blocked.headers[RECORD_HEADER])["action"] == "blocked"
    # a token stream cannot know it yet: the header says where the record is
    streaming = servers["rewrite"].chat.completions.with_raw_response.create(
        model="aligners", messages=MESSAGES, max_tokens=4, stream=True
    )
    assert json.loads(streaming.headers[RECORD_HEADER])["streaming"] is True


# -- response_format ---------------------------------------------------------------------------


@pytest.fixture
def json_upstream() -> Iterator[FaultServer]:
    server = FaultServer("json").start()
    yield server
    server.stop()


def json_proxy(upstream: FaultServer, tiny_lm_dir, score: float, **options: object):
    settings = ProxySettings(upstream_url=upstream.base_url, upstream_model="m", warmup=False)
    server = serve_in_thread(create_app(settings, squad=tiny_squad(tiny_lm_dir, score, **options)))
    return server, openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)


def test_response_format_goes_upstream_and_a_flagged_json_answer_is_never_prose(
    json_upstream, tiny_lm_dir
):
    server, client = json_proxy(json_upstream, tiny_lm_dir, 0.0)  # on_flag="rewrite"
    try:
        reply = client.chat.completions.create(
            model="aligners",
            messages=MESSAGES,
            max_tokens=16,
            response_format={"type": "json_object"},
        )
        assert json_upstream.bodies[-1]["response_format"] == {"type": "json_object"}
        record = reply.model_extra["aligners"]
        assert record["applied"] == [] and record["action"] == "blocked"  # no rewrite ran
        assert reply.choices[0].finish_reason == "content_filter"
        assert record["json_answer"] is True and "never rewritten into prose" in record["notes"][0]
        # without response_format, an answer that is JSON gets the same protection
        plain = client.chat.completions.create(model="aligners", messages=MESSAGES, max_tokens=16)
        assert plain.model_extra["aligners"]["action"] == "blocked"
        assert "response_format" not in json_upstream.bodies[-1]
    finally:
        server.stop()


def test_a_json_answer_that_passes_is_returned_as_is(json_upstream, tiny_lm_dir):
    server, client = json_proxy(json_upstream, tiny_lm_dir, 1.0)
    try:
        reply = client.chat.completions.create(
            model="aligners",
            messages=MESSAGES,
            max_tokens=16,
            response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": {}}},
        )
        assert json.loads(reply.choices[0].message.content) == json.loads(JSON_ANSWER)
        assert reply.model_extra["aligners"]["action"] == "passed"
    finally:
        server.stop()


def test_a_local_upstream_refuses_json_mode(tiny_lm_dir):
    settings = ProxySettings(warmup=False)
    app = create_app(
        settings,
        squad=tiny_squad(tiny_lm_dir, 1.0),
        upstream=TransformersBackend(str(tiny_lm_dir)),
    )
    server = serve_in_thread(app)
    try:
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        with pytest.raises(openai.BadRequestError, match="cannot constrain its output to JSON"):
            client.chat.completions.create(
                model="aligners",
                messages=MESSAGES,
                max_tokens=4,
                response_format={"type": "json_object"},
            )
        # text mode works, and the local upstream's counts are the model's
        reply = client.chat.completions.create(
            model="aligners", messages=MESSAGES, max_tokens=4, response_format={"type": "text"}
        )
        expected = TransformersBackend(str(tiny_lm_dir)).count_tokens(MESSAGES)
        assert reply.usage.prompt_tokens == expected
        assert 1 <= reply.usage.completion_tokens <= 4
    finally:
        server.stop()


def test_the_tokenizer_setting_counts_where_nothing_is_local(tiny_lm_dir, tokens):
    """A remote upstream and an aligner that is not in-process: only ``tokenizer`` can count."""
    from tests.engine.conftest import ConstantBackend

    long_rewrite = "Here is a much longer and careful answer about baking bread at home."
    crit = get_criterion("helpful")
    aligner = Aligner(format="chat", criterion=crit, backend=ConstantBackend(long_rewrite))
    squad = Squad([SquadMember(crit, aligner, FunctionInspector(lambda q, a: 0.0, crit))])
    upstream = FaultServer("ok").start()
    started = []
    try:
        replies = []
        for tokenizer in (str(tiny_lm_dir), None):
            settings = ProxySettings(
                upstream_url=upstream.base_url, upstream_model="m", tokenizer=tokenizer
            )
            started.append(serve_in_thread(create_app(settings, squad=squad)))
            client = openai.OpenAI(base_url=started[-1].base_url, api_key="x", max_retries=0)
            replies.append(
                client.chat.completions.create(model="aligners", messages=MESSAGES, max_tokens=4)
            )
        counted, uncounted = replies
        assert tokens.count(counted.choices[0].message.content) == 4
        assert counted.choices[0].finish_reason == "length"
        assert uncounted.choices[0].message.content == long_rewrite  # nothing to count with
        assert uncounted.usage is None
    finally:
        for server in started:
            server.stop()
        upstream.stop()


# -- LangChain's ChatOpenAI against the proxy -------------------------------------------------


def test_chat_openai_sees_the_capped_text_its_usage_and_the_header(servers, tokens):
    from langchain_openai import ChatOpenAI

    base_url = str(servers["rewrite"].base_url)
    llm = ChatOpenAI(
        base_url=base_url,
        api_key="x",
        model="aligners",
        max_tokens=4,
        max_retries=0,
        include_response_headers=True,
    )
    message = llm.invoke(QUESTION)
    header = json.loads(message.response_metadata["headers"]["x-aligners"])
    assert header["action"] == "rewritten" and header["cut_at_max_tokens"] == 4
    assert message.response_metadata["finish_reason"] == "length"
    assert message.usage_metadata["output_tokens"] == tokens.count(message.content) <= 4

    streaming = ChatOpenAI(
        base_url=base_url, api_key="x", model="aligners", max_tokens=4, stream_usage=True
    )
    chunks = list(streaming.stream(QUESTION))
    full = chunks[0]
    for chunk in chunks[1:]:
        full += chunk
    assert full.content == message.content
    assert full.usage_metadata["output_tokens"] == message.usage_metadata["output_tokens"]

    with pytest.raises(openai.BadRequestError, match="top_p"):
        ChatOpenAI(base_url=base_url, api_key="x", model="aligners", top_p=0.5).invoke(QUESTION)


def test_pattern_rules_check_requests_and_the_header_says_so(tiny_server, tiny_lm_dir):
    from aligners import PatternRequestInspector

    settings = ProxySettings(
        upstream_url=tiny_server.base_url, upstream_model="tiny", warmup=False, check_request=True
    )
    gate = PatternRequestInspector(keywords=["pipe bomb"])
    server = serve_in_thread(
        create_app(settings, squad=tiny_squad(tiny_lm_dir, 0.0), request_inspector=gate)
    )
    try:
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        refused = client.chat.completions.with_raw_response.create(
            model="aligners", messages=[{"role": "user", "content": "A ＰＩＰＥ bomb, how?"}]
        )
        assert refused.parse().choices[0].finish_reason == "content_filter"
        header = json.loads(refused.headers[RECORD_HEADER])
        assert header["action"] == "blocked" and header["request_check"]["allowed"] is False
        streaming = client.chat.completions.with_raw_response.create(
            model="aligners", messages=MESSAGES, max_tokens=4, stream=True
        )
        header = json.loads(streaming.headers[RECORD_HEADER])
        assert header["streaming"] is True and header["request_check"]["allowed"] is True
        chunks = list(streaming.parse())
        assert chunks[-1].model_extra["aligners"]["request_check"]["allowed"] is True
    finally:
        server.stop()


def test_llamaindex_openai_like_sees_the_capped_text_and_the_record(servers, tokens):
    """LlamaIndex's OpenAILike (chat mode: the proxy serves /v1/chat/completions only)."""
    openai_like = pytest.importorskip(
        "llama_index.llms.openai_like",
        reason="llama-index-llms-openai-like is installed by `make setup` (--no-deps)",
    )
    from llama_index.core.llms import ChatMessage

    base_url = str(servers["rewrite"].base_url)
    llm = openai_like.OpenAILike(
        model="aligners",
        api_base=base_url,
        api_key="x",
        is_chat_model=True,
        max_tokens=4,
        max_retries=0,
        temperature=0.0,  # LlamaIndex sends 0.1 by default: upstream would sample
    )
    response = llm.chat([ChatMessage(role="user", content=QUESTION)])
    text = response.message.content or ""
    assert text and tokens.count(text) <= 4
    assert response.raw.choices[0].finish_reason == "length"
    assert response.raw.usage.completion_tokens == tokens.count(text)
    assert response.raw.aligners["action"] == "rewritten"
    streamed = "".join(
        chunk.delta or "" for chunk in llm.stream_chat([ChatMessage(role="user", content=QUESTION)])
    )
    assert streamed == text

    blocked = openai_like.OpenAILike(
        model="aligners",
        api_base=str(servers["block"].base_url),
        api_key="x",
        is_chat_model=True,
        max_retries=0,
    ).complete(QUESTION)  # is_chat_model=True: complete() goes through chat completions
    assert blocked.text == DEFAULT_BLOCKED_MESSAGE
    assert blocked.raw.choices[0].finish_reason == "content_filter"


def test_the_cap_never_splits_a_character(tiny_lm_dir):
    """A byte-level cut can end inside a character; the capped text stays a prefix of the
    answer and within the limit when counted again."""
    tokenizer = load_tokenizer(str(tiny_lm_dir))
    text = "Crème brûlée, naïve café: 東京タワー 🎉 and more text after it."
    for limit in range(1, 30):
        cut, was_cut = TokenCap(lambda: tokenizer, limit).apply(text)
        assert text.startswith(cut), (limit, cut)
        assert len(tokenizer(cut, add_special_tokens=False)["input_ids"]) <= limit
        assert was_cut == (len(tokenizer(text, add_special_tokens=False)["input_ids"]) > limit)
