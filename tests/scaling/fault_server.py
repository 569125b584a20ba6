"""A real HTTP server on 127.0.0.1 that misbehaves on purpose, in the OpenAI API's shape.

Runs on a thread (``FaultServer(mode).start()``) or as its own process
(``python fault_server.py MODE``; prints ``PORT <n>`` then ``REQUEST`` per request), so tests can
kill it with SIGKILL in the middle of a request.

Modes:
    ok            a valid completion ("fixed answer") for chat and completions
    json          a valid chat completion whose content is the JSON object JSON_ANSWER
    slow-ok       like ok after 0.2 s (to observe the client's concurrency)
    sleep         accept the request, then say nothing for 60 s
    500           always HTTP 500 with an OpenAI error body
    flaky         HTTP 503 twice, then ok
    400           HTTP 400 with an OpenAI error body
    malformed     HTTP 200 with a body that is not JSON
    no-choices    HTTP 200 with JSON lacking ``choices``
    length        a valid completion cut by the token limit (finish_reason=length)
    drop          close the connection without answering
    stream-hang   stream one SSE chunk, then say nothing for 60 s
    stream-cut    stream one SSE chunk, then close the connection (no [DONE])
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ANSWER = "fixed answer"
JSON_ANSWER = '{"steps": ["fixed", "answer"]}'


def _completion(body: dict[str, Any], finish: str = "stop", answer: str = ANSWER) -> dict[str, Any]:
    if "messages" in body:
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": answer},
            "finish_reason": finish,
        }
        kind = "chat.completion"
    else:
        choice = {"index": 0, "text": ANSWER, "finish_reason": finish}
        kind = "text_completion"
    return {
        "id": "x",
        "object": kind,
        "created": 0,
        "model": body.get("model"),
        "choices": [choice],
    }


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def _send(self, status: int, payload: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _error(self, status: int, message: str) -> None:
        body = {"error": {"message": message, "type": "server_error", "code": status}}
        self._send(status, json.dumps(body).encode())

    def do_GET(self) -> None:
        self._send(200, json.dumps({"object": "list", "data": [{"id": "fault"}]}).encode())

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        server = self.server
        with server.lock:
            server.requests += 1
            server.bodies.append(body)
            server.headers.append(dict(self.headers))
            number = server.requests
            server.in_flight += 1
            server.max_in_flight = max(server.max_in_flight, server.in_flight)
        if server.announce:
            print("REQUEST", flush=True)
        try:
            self._answer(server.mode, body, number)
        finally:
            with server.lock:
                server.in_flight -= 1

    def _answer(self, mode: str, body: dict[str, Any], number: int) -> None:
        if mode in ("ok", "slow-ok") or (mode == "flaky" and number > 2):
            if mode == "slow-ok":
                time.sleep(0.2)
            if body.get("stream"):
                self._stream(body, hang=False, cut=False)
            else:
                self._send(200, json.dumps(_completion(body)).encode())
        elif mode == "json":
            self._send(200, json.dumps(_completion(body, answer=JSON_ANSWER)).encode())
        elif mode == "sleep":
            time.sleep(60)
        elif mode == "500":
            self._error(500, "the model crashed")
        elif mode == "flaky":
            self._error(503, "warming up")
        elif mode == "400":
            self._error(400, "prompt is too long for this model")
        elif mode == "malformed":
            self._send(200, b'{"choices": [ {"text": "oops"')
        elif mode == "no-choices":
            self._send(200, json.dumps({"result": "no choices here"}).encode())
        elif mode == "length":
            self._send(200, json.dumps(_completion(body, finish="length")).encode())
        elif mode == "drop":
            self.close_connection = True
            self.connection.close()
        elif mode == "stream-hang":
            self._stream(body, hang=True, cut=False)
        elif mode == "stream-cut":
            self._stream(body, hang=False, cut=True)
        else:
            self._error(500, f"unknown mode {mode}")

    def _stream(self, body: dict[str, Any], *, hang: bool, cut: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        chat = "messages" in body

        def event(text: str | None, finish: str | None) -> bytes:
            if chat:
                delta = {"content": text} if text is not None else {}
                choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
            else:
                choice = {"index": 0, "text": text or "", "finish_reason": finish}
            return f"data: {json.dumps({'choices': [choice]})}\n\n".encode()

        self.wfile.write(event("fixed ", None))
        self.wfile.flush()
        if hang:
            time.sleep(60)
            return
        if cut:
            self.close_connection = True
            return
        self.wfile.write(event("answer", None))
        self.wfile.write(event(None, "stop"))
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, mode: str, announce: bool = False) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode = mode
        self.announce = announce
        self.lock = threading.Lock()
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []


class FaultServer:
    """A fault server on a background thread; ``base_url`` is its API root."""

    def __init__(self, mode: str) -> None:
        self.server = _Server(mode)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    @property
    def requests(self) -> int:
        return self.server.requests

    @property
    def bodies(self) -> list[dict[str, Any]]:
        """The JSON bodies of the POST requests received, in order."""
        return self.server.bodies

    def start(self) -> FaultServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


if __name__ == "__main__":
    process_server = _Server(sys.argv[1], announce=True)
    print("PORT", process_server.server_address[1], flush=True)
    process_server.serve_forever()
