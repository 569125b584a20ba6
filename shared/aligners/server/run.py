"""Running the apps with uvicorn: in the foreground (CLI) or in a background thread (notebooks,
tests, the docs' stand-in for a vLLM server)."""

from __future__ import annotations

import logging
import math
import os
import socket
import sys
import threading
import time
from typing import Any


class RunningServer:
    """A uvicorn server on a background thread; use as a context manager or call :meth:`stop`.

    Attributes:
        url: ``http://127.0.0.1:<port>``.
        base_url: ``url + "/v1"``, what OpenAI clients and :class:`OpenAIBackend` take.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        self.app = app
        # Bind first and hand the socket over: port 0 picks a free port with no race.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def start(self, timeout: float = 30.0, wait_ready: bool = True) -> RunningServer:
        """Start serving; with ``wait_ready`` also wait until ``/ready`` says the models loaded."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server on {self.url} did not start within {timeout}s")
            time.sleep(0.02)
        if wait_ready:
            self.wait_ready(max(deadline - time.monotonic(), 1.0))
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Poll ``/ready`` until it answers 200; raise with its last answer otherwise."""
        import httpx

        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                response = httpx.get(f"{self.url}/ready", timeout=5.0)
            except httpx.HTTPError as exc:
                last = str(exc)
            else:
                if response.status_code == 200:
                    return
                last = response.text
                if '"failed"' in last:
                    break
            time.sleep(0.05)
        raise RuntimeError(f"server on {self.url} is not ready: {last}")

    def stop(self, timeout: float = 10.0) -> None:
        """Ask uvicorn to exit and wait for the thread."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._socket.close()

    def __enter__(self) -> RunningServer:
        if not self._thread.is_alive() and not self._server.started:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_in_thread(
    app: Any, *, host: str = "127.0.0.1", port: int = 0, wait_ready: bool = True
) -> RunningServer:
    """Start ``app`` on a background thread (a free port by default) and return the handle."""
    return RunningServer(app, host, port).start(wait_ready=wait_ready)


def run(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    shutdown_timeout: float = 10.0,
) -> None:
    """Serve ``app`` in the foreground until interrupted (what ``aligners serve`` does).

    SIGTERM or Ctrl-C: requests in flight get ``shutdown_timeout`` seconds to finish, then the
    process exits even if a worker thread is still generating (it cannot be interrupted)."""
    import uvicorn

    from aligners.server.common import configure_json_logging

    configure_json_logging(log_level)
    # uvicorn's own access log is off: the app writes one JSON line per request instead.
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=max(math.ceil(shutdown_timeout), 1),  # uvicorn takes whole s
    )
    _exit_if_threads_linger()


def _exit_if_threads_linger() -> None:
    """Exit now when generation threads outlive the server: Python would wait for them."""
    lingering = [
        t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon
    ]
    if lingering:
        logging.getLogger("aligners.server").warning(
            "exiting with %d worker thread(s) still running", len(lingering)
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
