"""Helpers for the scaling tests: free ports, server subprocesses, readiness polling."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
