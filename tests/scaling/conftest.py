"""Real local servers for the scaling tests: model servers, fault servers, subprocesses."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from fault_server import FaultServer  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


class Process:
    """A server subprocess that tests may kill at any moment."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
        )

    def readline(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def output(self) -> str:
        self.kill()
        assert self.proc.stdout is not None
        return self.proc.stdout.read()


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


def wait_ready(url: str, proc: Process, timeout: float = 120.0) -> None:
    """Poll ``url/ready`` until 200; fail with the server output if it dies or never gets ready."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            pytest.fail(f"server exited early:\n{proc.output()}")
        try:
            if httpx.get(f"{url}/ready", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"server at {url} not ready after {timeout}s:\n{proc.output()}")


def aligners_cli() -> list[str]:
    return [sys.executable, "-m", "aligners.cli.main"]
