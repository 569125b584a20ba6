"""Real local servers for the scaling tests: model servers, fault servers, subprocesses."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # fault_server, scaling_helpers

from fault_server import FaultServer  # noqa: E402
from scaling_helpers import Process  # noqa: E402


@pytest.fixture(scope="session")
def tiny_server(tiny_lm_dir: Path) -> Iterator[object]:
    """``aligners serve --plain`` (in a thread) serving the tiny random model as ``tiny``."""
    from aligners.server import ModelServerSettings, create_model_app, serve_in_thread

    settings = ModelServerSettings(model=str(tiny_lm_dir), served_model_name="tiny")
    server = serve_in_thread(create_model_app(str(tiny_lm_dir), settings))
    yield server
    server.stop()


@pytest.fixture
def fault_server() -> Iterator[object]:
    """A factory: ``fault_server("500")`` starts a misbehaving server on a thread."""
    started: list[FaultServer] = []

    def start(mode: str) -> FaultServer:
        server = FaultServer(mode).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def process() -> Iterator[object]:
    """A factory for server subprocesses; all are killed at teardown."""
    started: list[Process] = []

    def start(args: list[str], env: dict[str, str] | None = None) -> Process:
        proc = Process(args, env)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()
