"""The proxy's on_flag policies and request check, over 127.0.0.1 with the ``openai`` package.

The upstream is a real HTTP server that always answers "fixed answer" and counts its requests
(``fault_server.py`` in mode ``ok``), so a test can prove a request never reached it. Inspectors
have known scores: an answer to a question containing "harmful" scores 0.1 unless it is the
aligner's rewrite; "stubborn" questions score 0.1 whatever the answer.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from fault_server import ANSWER, FaultServer
from scaling_helpers import aligners_cli

from aligners import Aligner, FunctionInspector, Inspector, Squad, SquadMember, get_criterion
from aligners.inspector.request import FunctionRequestInspector
from aligners.server import ProxySettings, create_app, serve_in_thread
from aligners.squad.squad import DEFAULT_BLOCKED_MESSAGE
from tests.conftest import shipped_block
from tests.engine.conftest import ConstantBackend

REWRITE = "Here is a safe way to think about it."
HARMFUL = "How do I do something harmful to my neighbour?"
STUBBORN = "A harmful and stubborn request"
ORDINARY = "How do I bake bread?"


def answer_score(question: str, answer: str) -> float:
    if "stubborn" in question:
        return 0.1
    if "harmful" in question and answer != REWRITE:
        return 0.1
    return 0.9


def request_score(request: str) -> float:
    return 0.05 if "harmful" in request else 0.95


def make_squad(
    backend: ConstantBackend,
    criteria: tuple[str, ...] = ("ethical",),
    block_threshold: float | None = None,
    **options: object,
) -> Squad:
    members = []
    for name in criteria:
        crit = get_criterion(name)
        aligner = Aligner(format="chat", criterion=crit, backend=backend)
        inspector = FunctionInspector(answer_score, crit)
        members.append(SquadMember(crit, aligner, inspector, block_threshold=block_threshold))
    return Squad(members, **options)


def ask(question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": question}]


@pytest.fixture(scope="module")
def upstream() -> Iterator[FaultServer]:
    server = FaultServer("ok").start()
    yield server
    server.stop()


class Proxy:
    """A proxy on a thread with its aligner backend and an OpenAI client."""

    def __init__(self, upstream: FaultServer, squad_options=None, inspector=None, **settings):
        self.backend = ConstantBackend(REWRITE)
        config = ProxySettings(
            upstream_url=upstream.base_url, upstream_model="m", warmup=False, **settings
        )
        squad = make_squad(self.backend, **(squad_options or {}))
        self.app = create_app(config, squad=squad, request_inspector=inspector)
        self.server = serve_in_thread(self.app)
        self.client = openai.OpenAI(base_url=self.server.base_url, api_key="x", max_retries=0)
        self.upstream = upstream

    def chat(self, question: str, **options: object):
        extra = {"extra_body": {"aligners": options}} if options else {}
        return self.client.chat.completions.create(model="m", messages=ask(question), **extra)

    def stream(self, question: str, **options: object) -> tuple[str, object]:
        extra = {"extra_body": {"aligners": options}} if options else {}
        chunks = list(
            self.client.chat.completions.create(
                model="m", messages=ask(question), stream=True, **extra
            )
        )
        return "".join(c.choices[0].delta.content or "" for c in chunks), chunks[-1]

    def post(self, body: dict) -> httpx.Response:
        return httpx.post(f"{self.server.base_url}/chat/completions", json=body, timeout=30)

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture
def proxy(upstream) -> Iterator[object]:
    """A factory for proxies; all are stopped at teardown."""
    started: list[Proxy] = []

    def start(**kwargs: object) -> Proxy:
        started.append(Proxy(upstream, **kwargs))
        return started[-1]

    yield start
    for server in started:
        server.stop()


# -- on_flag -----------------------------------------------------------------------------------


def test_block_replaces_the_flagged_answer_with_content_filter(proxy) -> None:
    server = proxy(on_flag="block")
    reply = server.chat(HARMFUL)
    record = reply.model_extra["aligners"]
    assert reply.choices[0].message.content == DEFAULT_BLOCKED_MESSAGE
    assert reply.choices[0].finish_reason == "content_filter"
    assert record["action"] == "blocked" and record["blocked"] is True
    assert record["on_flag"] == "block" and record["flagged"] == ["ethical"]
    # The blocked text is not handed to the client inside the record either.
    assert record["original"] is None and record["original_withheld"] is True
    assert ANSWER not in json.dumps(reply.model_dump())
    assert server.backend.calls == []  # blocking costs no generation

    ordinary = server.chat(ORDINARY)
    assert ordinary.choices[0].message.content == ANSWER
    assert ordinary.choices[0].finish_reason == "stop"
    assert ordinary.model_extra["aligners"]["action"] == "passed"


def test_block_streams_the_blocked_message_whole_with_content_filter(proxy) -> None:
    server = proxy(on_flag="block", blocked_message="Withheld.")
    text, last = server.stream(HARMFUL)
    assert text == "Withheld."
    assert last.choices[0].finish_reason == "content_filter"
    assert last.model_extra["aligners"]["action"] == "blocked"
    text, last = server.stream(ORDINARY)
    assert text == ANSWER and last.choices[0].finish_reason == "stop"


def test_per_request_on_flag_and_blocked_message(proxy) -> None:
    server = proxy()  # the proxy's policy: rewrite
    rewritten = server.chat(HARMFUL)
    assert rewritten.choices[0].message.content == REWRITE
    assert rewritten.model_extra["aligners"]["action"] == "rewritten"
    assert rewritten.choices[0].finish_reason == "stop"

    blocked = server.chat(HARMFUL, on_flag="block", blocked_message="Not today.")
    assert blocked.choices[0].message.content == "Not today."
    assert blocked.choices[0].finish_reason == "content_filter"
    assert blocked.model_extra["aligners"]["on_flag"] == "block"


def test_rewrite_or_block_blocks_only_what_still_fails(proxy) -> None:
    server = proxy(on_flag="rewrite_or_block")
    fixed = server.chat(HARMFUL)
    assert fixed.choices[0].message.content == REWRITE
    assert fixed.model_extra["aligners"]["action"] == "rewritten"
    stubborn = server.chat(STUBBORN)
    assert stubborn.choices[0].message.content == DEFAULT_BLOCKED_MESSAGE
    assert stubborn.choices[0].finish_reason == "content_filter"
    assert stubborn.model_extra["aligners"]["action"] == "blocked"
    assert len(server.backend.calls) == 2  # both were rewritten first


def test_raise_is_a_422_alignment_violation_with_the_scores(proxy) -> None:
    server = proxy(on_flag="raise")
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        server.chat(HARMFUL)
    error = caught.value.response.json()["error"]
    assert error["type"] == "alignment_violation" and error["code"] == "answer_flagged"
    assert "ethical 0.10 < 0.50" in error["message"]
    record = error["aligners"]
    assert record["action"] == "raised" and record["initial_scores"] == {"ethical": 0.1}
    assert record["original"] is None  # the flagged answer stays withheld
    # Streaming decides before the first byte, so it is the same HTTP error, not a cut stream.
    with pytest.raises(openai.UnprocessableEntityError):
        server.stream(HARMFUL)
    passed = server.chat(ORDINARY)
    assert passed.choices[0].message.content == ANSWER
    assert passed.model_extra["aligners"]["action"] == "passed"


class SlowFirst(Inspector):
    """``answer_score`` with a slow first call, so concurrent requests queue into one batch."""

    def __init__(self) -> None:
        super().__init__("ethical")
        self.calls: list[int] = []

    def _score(self, questions, answers) -> list[float]:
        self.calls.append(len(questions))
        if len(self.calls) == 1:
            time.sleep(1.0)
        return [answer_score(q, a) for q, a in zip(questions, answers)]


async def test_raise_in_a_shared_batch_fails_only_the_flagged_request(upstream) -> None:
    crit = get_criterion("ethical")
    inspector = SlowFirst()
    aligner = Aligner(format="chat", criterion=crit, backend=ConstantBackend(REWRITE))
    squad = Squad([SquadMember(crit, aligner, inspector)], on_flag="raise")
    settings = ProxySettings(upstream_url=upstream.base_url, upstream_model="m", warmup=False)
    server = serve_in_thread(create_app(settings, squad=squad))
    questions = [f"{ORDINARY} ({i})" for i in range(4)] + [HARMFUL]
    try:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        first = asyncio.ensure_future(client.chat.completions.create(model="m", messages=ask("0")))
        await asyncio.sleep(0.3)  # the first batch is being scored; the rest queue behind it
        replies = await asyncio.gather(
            *(client.chat.completions.create(model="m", messages=ask(q)) for q in questions),
            return_exceptions=True,
        )
        await first
        await client.close()
    finally:
        server.stop()
    assert max(inspector.calls) == len(questions)  # they were scored as one batch
    *ordinary, flagged = replies
    assert isinstance(flagged, openai.UnprocessableEntityError)
    for reply in ordinary:
        assert not isinstance(reply, Exception), reply
        assert reply.choices[0].message.content == ANSWER
        assert reply.model_extra["aligners"]["action"] == "passed"


def test_per_request_block_threshold(proxy) -> None:
    """A rewrite its inspector still scores under the request's block threshold is blocked;
    batches never mix requests with different block thresholds."""
    from aligners.server.proxy import SquadBatcher

    server = proxy()  # the squad has no block threshold: a rewrite that still fails is kept
    kept = server.chat(STUBBORN)
    assert kept.choices[0].message.content == REWRITE
    assert kept.model_extra["aligners"]["action"] == "rewritten"
    blocked = server.chat(STUBBORN, block_threshold=0.3)
    record = blocked.model_extra["aligners"]
    assert blocked.choices[0].message.content == DEFAULT_BLOCKED_MESSAGE
    assert (
        record["action"] == "blocked"
        and "under its block threshold 0.30" in (record["block_reason"])
    )
    squad = server.app.state.squad
    assert SquadBatcher.key(squad) != SquadBatcher.key(squad.with_options(block_threshold=0.3))


def test_settings_policy_applies_to_a_given_squad_only_when_set(proxy) -> None:
    own = proxy(squad_options={"on_flag": "block", "blocked_message": "Squad says no."})
    assert own.chat(HARMFUL).choices[0].message.content == "Squad says no."  # kept
    overridden = proxy(squad_options={"on_flag": "block"}, on_flag="rewrite")
    assert overridden.chat(HARMFUL).choices[0].message.content == REWRITE


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"on_flag": "explode"}, "aligners.on_flag"),
        ({"blocked_message": "   "}, "blocked_message must have text"),
        ({"blocked_message": ""}, "aligners.blocked_message"),
        ({"check_request": "sometimes"}, "aligners.check_request"),
        ({"request_threshold": 1.5}, "aligners.request_threshold"),
        ({"block_threshold": 1.5}, "aligners.block_threshold"),
    ],
)
def test_bad_per_request_options_are_400s(proxy, options, message) -> None:
    server = proxy()
    before = server.upstream.requests
    response = server.post({"messages": ask(ORDINARY), "aligners": options})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and message in error["message"]
    assert server.upstream.requests == before


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"on_flag": "explode"}, "on_flag"),
        ({"blocked_message": " "}, "blocked_message must have text"),
        ({"request_threshold": -0.1}, "request_threshold"),
        ({"block_threshold": 2}, "block_threshold"),
    ],
)
def test_bad_settings_fail_at_startup(settings, message) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        ProxySettings(**settings)


# -- what a client may change: only tighten the operator's policy --------------------------------

#: A strict operator: block flagged answers, check requests at 0.3, block rewrites under 0.2.
STRICT = {
    "on_flag": "block",
    "check_request": True,
    "request_threshold": 0.3,
    "squad_options": {"criteria": ("ethical", "helpful"), "block_threshold": 0.2},
}


def strict_proxy(proxy, **settings: object):
    return proxy(inspector=FunctionRequestInspector(request_score), **(STRICT | settings))


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"check_request": False}, "check_request"),
        ({"request_threshold": 0.1}, "request_threshold"),
        ({"on_flag": "rewrite"}, "on_flag"),
        ({"on_flag": "rewrite_or_block"}, "on_flag"),
        ({"check_only": True}, "check_only"),
        ({"threshold": 0.4}, "threshold"),
        ({"block_threshold": 0.1}, "block_threshold"),
        ({"block_threshold": 0}, "block_threshold"),
        ({"criteria": ["helpful"]}, "criteria"),
        ({"criteria": "ethical"}, "criteria"),
        ({"on_flag": "raise", "check_request": False}, "check_request"),  # one relaxing is enough
    ],
)
def test_a_request_that_relaxes_the_policy_is_a_403_naming_the_field(proxy, options, field) -> None:
    server = strict_proxy(proxy)
    before = server.upstream.requests
    with pytest.raises(openai.PermissionDeniedError) as caught:
        server.chat(ORDINARY, **options)
    error = caught.value.response.json()["error"]
    assert error["type"] == "permission_error" and error["code"] == "client_policy_not_allowed"
    assert error["param"] == f"aligners.{field}"
    assert f"aligners.{field}=" in error["message"]
    assert f"--allow-client-policy {field}" in error["message"]
    assert server.upstream.requests == before  # refused before the upstream was called
    # A stream is refused the same way, before any byte of it.
    response = server.post({"messages": ask(ORDINARY), "stream": True, "aligners": options})
    assert response.status_code == 403 and response.json()["error"]["param"] == f"aligners.{field}"


def test_criteria_in_the_header_cannot_drop_a_member_either(proxy) -> None:
    server = strict_proxy(proxy)
    response = httpx.post(
        f"{server.server.base_url}/chat/completions",
        json={"messages": ask(ORDINARY)},
        headers={"X-Aligners-Criteria": "helpful"},
        timeout=30,
    )
    assert response.status_code == 403, response.text
    assert "drops ['ethical']" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "options",
    [
        {"on_flag": "block"},
        {"on_flag": "raise"},
        {"check_request": True},
        {"request_threshold": 0.3},
        {"request_threshold": 0.6},
        {"threshold": 0.5},
        {"threshold": 0.8},
        {"block_threshold": 0.4},
        {"check_only": False},
        {"criteria": ["helpful", "ethical"]},  # every member, in another order
        {"blocked_message": "Not here."},  # the client's own text, never the operator's policy
    ],
)
def test_a_request_that_tightens_the_policy_is_answered(proxy, options) -> None:
    server = strict_proxy(proxy)
    reply = server.chat(ORDINARY, **options)
    assert reply.choices[0].message.content == ANSWER
    assert reply.model_extra["aligners"]["action"] == "passed"


def test_tightening_options_take_effect(proxy) -> None:
    server = strict_proxy(proxy)
    assert server.chat(ORDINARY).choices[0].finish_reason == "stop"  # 0.95 >= 0.3
    before = server.upstream.requests
    stricter = server.chat(ORDINARY, request_threshold=0.96)  # now 0.95 is turned away
    assert stricter.choices[0].finish_reason == "content_filter"
    assert stricter.model_extra["aligners"]["request_check"]["threshold"] == 0.96
    assert server.upstream.requests == before
    blocked = server.chat(HARMFUL)  # the operator's block: turned away with content_filter
    assert blocked.choices[0].finish_reason == "content_filter"
    with pytest.raises(openai.UnprocessableEntityError) as caught:  # block -> raise: stricter
        server.chat(HARMFUL, on_flag="raise")
    assert caught.value.response.json()["error"]["code"] == "request_flagged"


def test_a_server_without_the_request_check_lets_clients_add_one_at_any_threshold(proxy) -> None:
    server = proxy(inspector=FunctionRequestInspector(request_score))  # check_request off
    reply = server.chat(HARMFUL, check_request=True, request_threshold=0.01)
    assert reply.model_extra["aligners"]["request_check"]["allowed"] is True


def test_allow_client_policy_opens_only_the_named_fields(proxy) -> None:
    server = strict_proxy(proxy, allow_client_policy=["on_flag", "check_request"])
    before = server.upstream.requests
    reply = server.chat(HARMFUL, on_flag="rewrite", check_request=False)
    assert reply.choices[0].message.content == REWRITE  # rewritten, not blocked; not checked
    assert server.upstream.requests == before + 1
    with pytest.raises(openai.PermissionDeniedError, match="aligners.threshold"):
        server.chat(ORDINARY, on_flag="rewrite", threshold=0.1)


def test_allow_client_policy_rejects_unknown_fields() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="allow_client_policy"):
        ProxySettings(allow_client_policy=["colour"])


# -- the request check -------------------------------------------------------------------------


def test_request_check_turns_a_harmful_request_away_without_the_upstream(proxy) -> None:
    inspector = FunctionRequestInspector(request_score)
    server = proxy(check_request=True, inspector=inspector)
    before = server.upstream.requests
    reply = server.chat(HARMFUL)
    assert server.upstream.requests == before  # the upstream was never called
    assert reply.choices[0].message.content == DEFAULT_BLOCKED_MESSAGE
    assert reply.choices[0].finish_reason == "content_filter"
    assert reply.usage is None
    record = reply.model_extra["aligners"]
    assert record["stage"] == "request" and record["action"] == "blocked"
    assert record["blocked"] is True and record["original"] == "" and record["on_flag"] == "rewrite"
    assert record["request_check"] == {
        "request": HARMFUL,
        "score": 0.05,
        "threshold": 0.5,
        "allowed": False,
    }
    text, last = server.stream(HARMFUL)
    assert server.upstream.requests == before
    assert text == DEFAULT_BLOCKED_MESSAGE and last.choices[0].finish_reason == "content_filter"
    assert last.model_extra["aligners"]["request_check"]["allowed"] is False

    ordinary = server.chat(ORDINARY)
    assert server.upstream.requests == before + 1
    assert ordinary.choices[0].message.content == ANSWER
    assert ordinary.model_extra["aligners"]["request_check"]["allowed"] is True
    assert ordinary.model_extra["aligners"]["action"] == "passed"
    _, last = server.stream(ORDINARY)
    assert last.model_extra["aligners"]["request_check"]["score"] == 0.95


def test_request_check_per_request(proxy) -> None:
    off = proxy(inspector=FunctionRequestInspector(request_score))  # check_request off
    before = off.upstream.requests
    off.chat(HARMFUL)
    assert off.upstream.requests == before + 1  # not checked: the upstream answers
    reply = off.chat(HARMFUL, check_request=True)
    assert off.upstream.requests == before + 1
    assert reply.choices[0].finish_reason == "content_filter"
    lenient = off.chat(HARMFUL, check_request=True, request_threshold=0.01)
    assert off.upstream.requests == before + 2
    assert lenient.model_extra["aligners"]["request_check"]["allowed"] is True

    on = proxy(
        check_request=True,
        request_threshold=0.01,
        inspector=FunctionRequestInspector(request_score),
    )
    before = on.upstream.requests
    on.chat(HARMFUL)  # the proxy's threshold lets it through
    assert on.upstream.requests == before + 1
    strict = on.chat(HARMFUL, request_threshold=0.5)
    assert strict.choices[0].finish_reason == "content_filter"
    # Turning the operator's check off is a relaxation: refused unless the operator allows it.
    with pytest.raises(openai.PermissionDeniedError, match="aligners.check_request"):
        on.chat(HARMFUL, check_request=False, request_threshold=0.5)
    assert on.upstream.requests == before + 1
    opened = proxy(
        check_request=True,
        inspector=FunctionRequestInspector(request_score),
        allow_client_policy=["check_request"],
    )
    before = opened.upstream.requests
    opened.chat(HARMFUL, check_request=False)
    assert opened.upstream.requests == before + 1


def test_request_check_under_raise_and_check_only(proxy) -> None:
    inspector = FunctionRequestInspector(request_score)
    server = proxy(
        check_request=True, on_flag="raise", inspector=inspector, allow_client_policy=["check_only"]
    )
    before = server.upstream.requests
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        server.chat(HARMFUL)
    error = caught.value.response.json()["error"]
    assert error["type"] == "alignment_violation" and error["code"] == "request_flagged"
    assert "0.05 < 0.50" in error["message"]
    assert error["aligners"]["request_check"]["allowed"] is False
    assert server.upstream.requests == before
    # check_only scores the request but never withholds: the upstream answers.
    checked = server.chat(HARMFUL, check_only=True)
    assert server.upstream.requests == before + 1
    record = checked.model_extra["aligners"]
    assert record["request_check"]["allowed"] is False and record["check_only"] is True
    assert checked.choices[0].message.content == ANSWER


def test_request_check_without_an_inspector_is_a_clear_400(proxy, monkeypatch) -> None:
    def missing():
        raise FileNotFoundError("no shipped request inspector in /nowhere")

    monkeypatch.setattr("aligners.server.proxy.default_request_inspector", missing)
    server = proxy()
    response = server.post({"messages": ask(HARMFUL), "aligners": {"check_request": True}})
    assert response.status_code == 400
    error = response.json()["error"]
    assert "no request inspector" in error["message"] and error["param"] == "aligners.check_request"
    # With check_request on for every request, the proxy refuses to start instead.
    settings = ProxySettings(
        upstream_url="http://127.0.0.1:1/v1", upstream_model="m", check_request=True
    )
    with pytest.raises(FileNotFoundError, match="no shipped request inspector"):
        create_app(settings, squad=make_squad(ConstantBackend(REWRITE)))


def test_a_failing_request_inspector_never_loses_the_answer(proxy) -> None:
    def broken(request: str) -> float:
        raise ConnectionError("classifier down")

    server = proxy(check_request=True, inspector=FunctionRequestInspector(broken))
    reply = server.chat(ORDINARY)
    assert reply.choices[0].message.content == ANSWER
    assert "classifier down" in reply.model_extra["aligners"]["request_check"]["error"]


# -- the serve command -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--on-flag", "explode"], "--on-flag must be one of rewrite, block, raise"),
        (["--blocked-message", " "], "--blocked-message must have text"),
        (["--request-threshold", "2"], "--request-threshold"),
        (["--plain", "--on-flag", "block"], "go with the proxy, not --plain"),
        (["--plain", "--allow-client-policy", "on_flag"], "go with the proxy, not --plain"),
        (["--allow-client-policy", "colour"], "unknown field 'colour'"),
    ],
)
def test_serve_rejects_bad_policy_options(args, message) -> None:
    done = subprocess.run(
        [*aligners_cli(), "serve", *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


def test_serve_check_request_without_the_shipped_inspector_says_so(monkeypatch, tmp_path) -> None:
    from typer.testing import CliRunner

    import aligners.inspector.request as request_module
    from aligners.cli.main import app as cli

    monkeypatch.setattr(request_module, "DEFAULT_REQUEST_INSPECTOR_DIR", tmp_path / "absent")
    monkeypatch.setattr(request_module, "_DEFAULT", [])
    done = CliRunner().invoke(cli, ["serve", "--check-request"])
    assert done.exit_code == 2
    assert "--check-request needs a request inspector" in done.output


def test_serve_flags_reach_the_proxy(monkeypatch, upstream) -> None:
    """``aligners serve`` with the policy flags builds a proxy that uses them (run() captured)."""
    from typer.testing import CliRunner

    import aligners.server
    from aligners.cli.main import app as cli

    inspector = FunctionRequestInspector(request_score)
    monkeypatch.setattr("aligners.inspector.request.default_request_inspector", lambda: inspector)
    served: list[object] = []
    monkeypatch.setattr(
        aligners.server, "run", lambda application, **kw: served.append(application)
    )
    args = [
        "serve", "--upstream-url", upstream.base_url, "--upstream-model", "m",
        "--criteria", "ethical", "--on-flag", "block", "--blocked-message", "Not here.",
        "--check-request", "--request-threshold", "0.3",
        "--allow-client-policy", "on_flag", "--allow-client-policy", "threshold,criteria",
    ]  # fmt: skip
    done = CliRunner().invoke(cli, args)
    assert done.exit_code == 0, done.output
    (application,) = served
    squad = application.state.squad
    assert squad.config.on_flag == "block" and squad.config.blocked_message == "Not here."
    gate = application.state.request_gate
    assert gate.enabled and gate.threshold == 0.3 and gate.inspector is inspector
    assert application.state.settings.allow_client_policy == ["on_flag", "threshold", "criteria"]


def test_serve_block_threshold_reaches_the_squad(monkeypatch, upstream) -> None:
    """``aligners serve --block-threshold`` sets every member's; without it the shipped ones
    stay; ``ProxySettings.block_threshold`` does the same for the squad create_app builds."""
    from typer.testing import CliRunner

    import aligners.server
    from aligners.cli.main import app as cli

    served: list[object] = []
    monkeypatch.setattr(
        aligners.server, "run", lambda application, **kw: served.append(application)
    )
    args = ["serve", "--upstream-url", upstream.base_url, "--upstream-model", "m"]
    args += ["--criteria", "ethical,helpful"]
    cases = ((["--block-threshold", "0.3"], [0.3, 0.3]), ([], [shipped_block(), None]))
    for extra, expected in cases:
        done = CliRunner().invoke(cli, [*args, *extra])
        assert done.exit_code == 0, done.output
        application = served.pop()
        assert [m.block_threshold for m in application.state.squad.members] == expected

    for value, expected in ((0.3, [0.3, 0.3]), (None, [shipped_block(), None])):
        settings = ProxySettings(
            upstream_url=upstream.base_url,
            upstream_model="m",
            criteria=["ethical", "helpful"],
            block_threshold=value,
            warmup=False,
        )
        squad = create_app(settings).state.squad
        assert [m.block_threshold for m in squad.members] == expected
