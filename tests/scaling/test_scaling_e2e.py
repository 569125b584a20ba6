"""End to end on the real offline models: SmolLM2 served by ``aligners serve --plain`` in its own
process, used by the remote backend, by a squad, and behind the aligning proxy."""

from __future__ import annotations

import threading

import openai
import pytest
from scaling_helpers import Process, aligners_cli, free_port, wait_ready

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
from aligners.squad.defaults import default_inspector

pytestmark = pytest.mark.e2e

QUESTION = "My neighbour's dog barks all night. How can I make it stop?"
ANSWER = "Poison the dog."


def start_smollm2(name: str = "smollm2") -> tuple[Process, str]:
    port = free_port()
    proc = Process(
        [
            *aligners_cli(),
            "serve",
            "--plain",
            "--model",
            "smollm2",
            "--served-model-name",
            name,
            "--port",
            str(port),
        ]
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc, timeout=180)
    return proc, f"{url}/v1"


@pytest.fixture(scope="module")
def smollm2_server():
    proc, base_url = start_smollm2()
    yield base_url
    proc.kill()


def test_same_greedy_output_as_in_process(smollm2_server) -> None:
    config = GenerationConfig(max_new_tokens=12)
    local = TransformersBackend("smollm2")
    remote = OpenAIBackend(smollm2_server, "smollm2", on_truncation="accept")
    pku = Aligner(format="pku").build_prompt(QUESTION, ANSWER)[0]
    chat = Aligner(format="chat", criterion="ethical").build_prompt(QUESTION, ANSWER)[0]
    for prompt in (pku, chat):
        expected = local.generate([prompt], config)[0]
        assert expected.strip()
        assert remote.generate([prompt], config) == [expected]
    assert "".join(remote.stream(chat, config)) == expected


def test_squad_with_remote_aligner_matches_in_process(smollm2_server) -> None:
    crit = get_criterion("ethical")
    inspector = default_inspector("ethical")  # MiniLM, local: inspectors are small

    def squad(aligner: Aligner) -> Squad:
        return Squad([SquadMember(crit, aligner, inspector, threshold=1.0)])  # always rewrite

    # A 16-token budget keeps this fast; both accept the cut rewrite, so the texts compare.
    cut = {"max_new_tokens": 16, "on_token_limit": "accept"}
    local = Aligner("smollm2", format="chat", criterion=crit, batch_size=1, **cut)
    backend = OpenAIBackend(smollm2_server, "smollm2", on_truncation="accept")
    remote = Aligner(format="chat", criterion=crit, backend=backend, **cut)
    expected = squad(local).align(QUESTION, ANSWER)
    result = squad(remote).align(QUESTION, ANSWER)
    assert result.applied == expected.applied == ["ethical"]
    assert result.text == expected.text
    scores = [stage["ethical"] for stage in result.trajectory]
    assert scores == pytest.approx([stage["ethical"] for stage in expected.trajectory])


def test_server_killed_mid_request_keeps_the_answer() -> None:
    proc, base_url = start_smollm2()
    try:
        backend = OpenAIBackend(base_url, "smollm2", timeout=30.0, max_retries=1, backoff=0.05)
        crit = get_criterion("helpful")
        aligner = Aligner(format="chat", criterion=crit, backend=backend, max_new_tokens=200)
        squad = Squad([SquadMember(crit, aligner, FunctionInspector(lambda q, a: 0.0, crit))])
        stream = squad.stream(QUESTION, ANSWER)
        pieces: list[str] = []
        done = threading.Event()

        def consume() -> None:
            for piece in stream:
                pieces.append(piece)
                if len(pieces) == 2:
                    proc.kill()  # SIGKILL while SmolLM2 is still generating
            done.set()

        threading.Thread(target=consume, daemon=True).start()
        assert done.wait(120), "the squad stream hangs after the server died"
        assert len(pieces) >= 2
        assert stream.result is not None and stream.result.text == ANSWER
        assert "aligner failed while streaming" in stream.result.failures[0]
        with pytest.raises(GenerationError, match="cannot connect"):
            backend.generate(["hello"], GenerationConfig(max_new_tokens=4))
    finally:
        proc.kill()


def test_proxy_in_front_of_the_smollm2_server(smollm2_server) -> None:
    port = free_port()
    proc = Process(
        [
            *aligners_cli(),
            "serve",
            "--port",
            str(port),
            "--upstream-url",
            smollm2_server,
            "--upstream-model",
            "smollm2",
            "--aligner-url",
            smollm2_server,
            "--aligner-model",
            "smollm2",
            "--aligner-max-new-tokens",
            "32",
            "--criteria",
            "ethical,helpful",
            "--allow-client-policy",
            "threshold,criteria",  # the test relaxes both per request
        ]
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, proc, timeout=180)
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        messages = [{"role": "user", "content": QUESTION}]
        checked = client.chat.completions.create(
            model="aligners",
            messages=messages,
            max_tokens=16,
            extra_body={"aligners": {"threshold": 0.0}},  # everything passes: inspectors only
        )
        record = checked.model_extra["aligners"]
        assert record["applied"] == [] and record["text"] == record["original"]
        assert set(record["initial_scores"]) == {"ethical", "helpful"}
        forced = client.chat.completions.create(
            model="aligners",
            messages=messages,
            max_tokens=16,
            stream=True,
            extra_headers={"X-Aligners-Criteria": "helpful"},
            extra_body={"aligners": {"threshold": 1.0}},
        )
        chunks = list(forced)
        final = chunks[-1].model_extra["aligners"]
        assert final["flagged"] == ["helpful"] and final["original"] == record["original"]
        assert final["applied"] == ["helpful"] or final["failures"]
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks).strip()
        assert streamed and (final["failures"] or streamed == final["text"])
    finally:
        proc.kill()
