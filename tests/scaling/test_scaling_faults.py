"""Faults of a remote server: clear errors, bounded time, and the squad keeps the previous text."""

from __future__ import annotations

import sys
import threading
from typing import Any

import pytest
from scaling_helpers import HERE, free_port

from aligners import (
    Aligner,
    FunctionInspector,
    GenerationConfig,
    GenerationError,
    Squad,
    SquadMember,
    get_criterion,
)
from aligners.backends import OpenAIBackend

CONFIG = GenerationConfig(max_new_tokens=8)
FAST = {"backoff": 0.01, "timeout": 0.5}


def finishes(fn, limit: float = 60.0):
    """Run ``fn`` on a thread and return its outcome; fail if it is still running after ``limit``
    seconds (a hang, not a slow call: every fault here should end in about a second)."""
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"call still running after {limit}s: it hangs"
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome.get("value")


def squad_on(backend: OpenAIBackend, **aligner_options: Any) -> Squad:
    """One member whose inspector always flags, so its (remote) aligner always runs."""
    crit = get_criterion("helpful")
    aligner = Aligner(
        format="pku", criterion=crit, backend=backend, max_new_tokens=8, **aligner_options
    )
    return Squad([SquadMember(crit, aligner, FunctionInspector(lambda q, a: 0.0, crit))])


def test_server_down_is_a_clear_error_after_retries() -> None:
    backend = OpenAIBackend(f"http://127.0.0.1:{free_port()}/v1", "m", max_retries=2, **FAST)
    with pytest.raises(GenerationError, match=r"cannot connect.*is the server running.*3 attempts"):
        finishes(lambda: backend.generate(["hi"], CONFIG))


def test_server_down_keeps_every_answer_in_a_squad() -> None:
    backend = OpenAIBackend(f"http://127.0.0.1:{free_port()}/v1", "m", max_retries=1, **FAST)
    answers = ["first answer", "second answer"]
    results = finishes(lambda: squad_on(backend).align_batch(["q1", "q2"], answers))
    assert [r.text for r in results] == answers
    for result in results:
        assert result.applied == [] and result.stages[0].error
        assert "cannot connect" in result.failures[0]


async def test_server_down_async_squad_keeps_answers() -> None:
    backend = OpenAIBackend(f"http://127.0.0.1:{free_port()}/v1", "m", max_retries=0, **FAST)
    results = await squad_on(backend).aalign_batch(["q"], ["the answer"])
    assert results[0].text == "the answer" and "cannot connect" in results[0].failures[0]
    with pytest.raises(GenerationError, match="cannot connect"):
        await backend.agenerate(["hi"], CONFIG)


def test_timeout_does_not_hang(fault_server) -> None:
    server = fault_server("sleep")
    backend = OpenAIBackend(server.base_url, "m", max_retries=1, backoff=0.01, timeout=0.3)
    with pytest.raises(GenerationError, match=r"timed out.*2 attempts"):
        finishes(lambda: backend.generate(["hi"], CONFIG))
    assert server.requests == 2
    with pytest.raises(GenerationError, match="timed out"):
        finishes(lambda: list(backend.stream("hi", CONFIG)))


async def test_async_timeout(fault_server) -> None:
    server = fault_server("sleep")
    backend = OpenAIBackend(server.base_url, "m", max_retries=0, timeout=0.3)
    with pytest.raises(GenerationError, match="timed out"):
        await backend.agenerate(["a", "b"], CONFIG)
    await backend.aclose()


def test_5xx_is_retried_then_reported(fault_server) -> None:
    server = fault_server("500")
    backend = OpenAIBackend(server.base_url, "m", max_retries=2, **FAST)
    with pytest.raises(GenerationError, match=r"HTTP 500: the model crashed.*3 attempts"):
        finishes(lambda: backend.generate(["hi"], CONFIG))
    assert server.requests == 3


def test_transient_503_recovers(fault_server) -> None:
    server = fault_server("flaky")
    backend = OpenAIBackend(server.base_url, "m", max_retries=2, **FAST)
    assert backend.generate(["hi"], CONFIG) == ["fixed answer"]
    assert server.requests == 3


def test_4xx_is_not_retried(fault_server) -> None:
    server = fault_server("400")
    backend = OpenAIBackend(server.base_url, "m", max_retries=3, **FAST)
    with pytest.raises(GenerationError, match=r"HTTP 400: prompt is too long.*not retried"):
        backend.generate(["hi"], CONFIG)
    assert server.requests == 1


@pytest.mark.parametrize(
    ("mode", "message"),
    [("malformed", "malformed JSON"), ("no-choices", "without choices")],
)
def test_bad_bodies_are_clear_errors(fault_server, mode, message) -> None:
    server = fault_server(mode)
    backend = OpenAIBackend(server.base_url, "m", **FAST)
    with pytest.raises(GenerationError, match=message):
        backend.generate(["hi"], CONFIG)
    assert server.requests == 1  # a broken body is not a transient fault


def test_malformed_json_keeps_the_answer_in_a_squad(fault_server) -> None:
    backend = OpenAIBackend(fault_server("malformed").base_url, "m", **FAST)
    result = squad_on(backend).align("q", "keep me")
    assert result.text == "keep me" and "malformed JSON" in result.failures[0]


def test_truncated_output_keeps_the_previous_text(fault_server) -> None:
    server = fault_server("length")
    backend = OpenAIBackend(server.base_url, "m", **FAST)
    result = squad_on(backend).align("q", "keep me")
    assert result.text == "keep me" and result.action == "flagged"
    assert "stopped at max_new_tokens=8" in result.failures[0]
    assert "stopped at max_new_tokens=8" in (result.stages[0].error or "")
    # The backend's own on_truncation governs plain generate(); the aligner's setting decides
    # in a squad, whatever the backend says.
    lenient = OpenAIBackend(server.base_url, "m", on_truncation="accept", **FAST)
    assert squad_on(lenient).align("q", "keep me").text == "keep me"
    accepted = squad_on(backend, on_token_limit="accept").align("q", "keep me")
    assert accepted.text == "fixed answer" and accepted.stages[0].hit_token_limit
    assert not accepted.failures


async def test_truncated_output_keeps_the_previous_text_async(fault_server) -> None:
    server = fault_server("length")
    backend = OpenAIBackend(server.base_url, "m", **FAST)
    result = (await squad_on(backend).aalign_batch(["q"], ["keep me"]))[0]
    assert result.text == "keep me" and "stopped at max_new_tokens=8" in result.failures[0]
    accepted = await squad_on(backend, on_token_limit="accept").aalign("q", "keep me")
    assert accepted.text == "fixed answer" and accepted.stages[0].hit_token_limit


def test_dropped_connection_is_retried_then_reported(fault_server) -> None:
    server = fault_server("drop")
    backend = OpenAIBackend(server.base_url, "m", max_retries=1, **FAST)
    with pytest.raises(GenerationError, match="closed the connection mid-request"):
        finishes(lambda: backend.generate(["hi"], CONFIG))
    assert server.requests == 2


def test_stream_cut_before_done(fault_server) -> None:
    backend = OpenAIBackend(fault_server("stream-cut").base_url, "m", **FAST)
    pieces: list[str] = []
    with pytest.raises(GenerationError, match="before it was complete"):
        for piece in backend.stream("hi", CONFIG):
            pieces.append(piece)
    assert pieces == ["fixed "]


async def test_async_stream_cut_before_done(fault_server) -> None:
    backend = OpenAIBackend(fault_server("stream-cut").base_url, "m", **FAST)
    with pytest.raises(GenerationError, match="before it was complete"):
        async for _ in backend.astream([{"role": "user", "content": "hi"}], CONFIG):
            pass


def test_stream_stall_times_out(fault_server) -> None:
    backend = OpenAIBackend(fault_server("stream-hang").base_url, "m", max_retries=2, **FAST)
    with pytest.raises(GenerationError, match="timed out.*after streaming began"):
        finishes(lambda: list(backend.stream("hi", CONFIG)))


def test_squad_stream_keeps_text_when_the_stream_breaks(fault_server) -> None:
    backend = OpenAIBackend(fault_server("stream-cut").base_url, "m", **FAST)
    stream = squad_on(backend).stream("q", "keep me")
    pieces = finishes(lambda: list(stream))
    assert (
        "".join(pieces).strip() == "fixed"
    )  # what streamed before the break cannot be taken back...
    assert stream.result is not None
    assert stream.result.text == "keep me"  # ...but the record keeps the previous text
    assert "before it was complete" in stream.result.failures[0]


def _fault_process(process, mode: str):
    proc = process([sys.executable, str(HERE / "fault_server.py"), mode])
    line = proc.readline()
    assert line.startswith("PORT"), line
    return proc, f"http://127.0.0.1:{line.split()[1]}/v1"


def test_server_killed_while_streaming(process) -> None:
    proc, url = _fault_process(process, "stream-hang")
    backend = OpenAIBackend(url, "m", timeout=30.0, max_retries=2, backoff=0.01)
    pieces: list[str] = []

    def consume() -> None:
        for piece in backend.stream("hi", CONFIG):
            pieces.append(piece)
            proc.kill()  # SIGKILL the server between two chunks

    with pytest.raises(GenerationError, match="mid-request|before it was complete"):
        finishes(consume)
    assert pieces == ["fixed "]


def test_server_killed_while_processing(process) -> None:
    proc, url = _fault_process(process, "sleep")
    backend = OpenAIBackend(url, "m", timeout=30.0, max_retries=1, backoff=0.01)
    squad = squad_on(backend)
    killer = threading.Thread(target=lambda: (proc.readline(), proc.kill()), daemon=True)
    killer.start()  # kills the server as soon as it announces the request
    result = finishes(lambda: squad.align("q", "keep me"))
    killer.join(30)
    assert result.text == "keep me"
    assert result.failures and "aligner failed" in result.failures[0]
    assert "closed the connection" in result.failures[0] or "cannot connect" in result.failures[0]
