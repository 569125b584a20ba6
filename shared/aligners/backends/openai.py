"""A remote backend: any server speaking the OpenAI-compatible HTTP API (vLLM, llama.cpp server,
text-generation-inference, ``transformers serve``, ``aligners serve --plain``).

Raw-text prompts (formats ``ibm``, ``pku``, templates) go to ``/completions`` so the server sees the
exact bytes the aligner was trained on; chat-message prompts (format ``chat``) go to
``/chat/completions`` and the server applies the model's chat template.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import random
import threading
import time
import warnings
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from aligners.backends.base import Generation, GenerationBackend, GenerationConfig
from aligners.errors import GenerationError
from aligners.formats.base import Prompt
from aligners.steps import (
    Machine,
    Step,
    StreamRewrite,
    Work,
    adrive,
    adrive_stream,
    drive,
    drive_stream,
)

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger(__name__)

Endpoint = Literal["completions", "chat", "auto"]


def _httpx() -> Any:
    try:
        import httpx
    except ImportError as exc:  # httpx is in the "server" extra, not a core dependency
        raise ImportError("OpenAIBackend needs httpx: pip install 'aligners[server]'") from exc
    return httpx


class _Retryable(Exception):
    """A fault worth another attempt (connection refused, timeout, 5xx, dropped connection)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class OpenAIBackend(GenerationBackend):
    """Generates through an OpenAI-compatible server instead of loading weights in-process.

    Args:
        base_url: The server's API root, as the ``openai`` client takes it (``http://host:8000/v1``).
        model: The model name the server serves (``--served-model-name`` for vLLM).
        api_key_env: Environment variable holding the API key (sent as a Bearer token when set).
        timeout: Seconds allowed for connecting and for each read/write; a stalled server raises.
        max_retries: Further attempts after a connect error, timeout, dropped connection, 429, 5xx.
        backoff: First wait between attempts in seconds; doubles each retry (Retry-After wins).
        max_concurrency: Requests in flight at once; a batch becomes that many concurrent requests.
        endpoint: ``completions``, ``chat`` or ``auto`` (raw text -> completions, messages -> chat).
        on_truncation: ``error`` raises :class:`~aligners.errors.GenerationError` when the server
            stops at the token limit (``finish_reason == "length"``), so a squad keeps the previous
            text instead of a cut-off correction; ``accept`` returns the partial text.
        context_length: The served model's context, if you want aligners to budget prompts.
        extra_body: Extra JSON fields sent with every request (e.g. ``{"top_k": 1}`` for vLLM).

    Example:
        >>> from aligners import Aligner
        >>> backend = OpenAIBackend("http://127.0.0.1:8000/v1", "aligner-7b")
        >>> aligner = Aligner(format="pku", backend=backend)  # loads nothing locally
    """

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str | None = "OPENAI_API_KEY",
        timeout: float = 60.0,
        max_retries: int = 2,
        backoff: float = 0.5,
        max_concurrency: int = 8,
        endpoint: Endpoint = "auto",
        on_truncation: Literal["error", "accept"] = "error",
        context_length: int | None = None,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(
                f"base_url must be an http(s) URL such as http://host:8000/v1, got {base_url!r}"
            )
        if not model:
            raise ValueError("model must name the model the server serves")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if backoff < 0:
            raise ValueError(f"backoff must be >= 0, got {backoff}")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if endpoint not in ("completions", "chat", "auto"):
            raise ValueError(f"endpoint must be completions, chat or auto, got {endpoint!r}")
        if on_truncation not in ("error", "accept"):
            raise ValueError(f"on_truncation must be error or accept, got {on_truncation!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.max_concurrency = int(max_concurrency)
        self.endpoint = endpoint
        self.on_truncation = on_truncation
        self._context_length = context_length
        self.extra_body = dict(extra_body or {})
        self._client: httpx.Client | None = None
        self._client_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self.max_concurrency)
        # An httpx.AsyncClient and an asyncio.Semaphore belong to one event loop: keep one per loop.
        self._async: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[httpx.AsyncClient, asyncio.Semaphore]
        ] = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        return (
            f"OpenAIBackend(base_url={self.base_url!r}, model={self.model!r}, "
            f"endpoint={self.endpoint!r})"
        )

    # -- plumbing ------------------------------------------------------------------------------

    @property
    def context_length(self) -> int | None:
        return self._context_length

    def ensure_special_tokens(self, tokens: Sequence[str]) -> None:
        # The served model's vocabulary is fixed; a format's markers must already be in it.
        logger.debug(
            "remote model %s must already know the marker tokens %s", self.model, list(tokens)
        )

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _timeout(self) -> Any:
        return _httpx().Timeout(self.timeout)

    def _sync_client(self) -> httpx.Client:
        with self._client_lock:
            if self._client is None:
                httpx = _httpx()
                limits = httpx.Limits(max_connections=self.max_concurrency)
                self._client = httpx.Client(timeout=self._timeout(), limits=limits)
            return self._client

    def _async_state(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        state = self._async.get(loop)
        if state is None:
            httpx = _httpx()
            limits = httpx.Limits(max_connections=self.max_concurrency)
            client = httpx.AsyncClient(timeout=self._timeout(), limits=limits)
            state = (client, asyncio.Semaphore(self.max_concurrency))
            self._async[loop] = state
        return state

    def close(self) -> None:
        """Close the sync connection pool (a later call opens a new one)."""
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    async def aclose(self) -> None:
        """Close this event loop's async connection pool and the sync one."""
        state = self._async.pop(asyncio.get_running_loop(), None)
        if state is not None:
            await state[0].aclose()
        self.close()

    def _route(self, prompt: Prompt) -> str:
        is_chat = not isinstance(prompt, str)
        if self.endpoint == "completions" and is_chat:
            raise GenerationError(
                "this OpenAIBackend uses the completions endpoint but got chat messages; "
                "use endpoint='chat' or 'auto', or a raw-text format such as 'pku'"
            )
        if self.endpoint == "chat" and not is_chat:
            return "chat"  # a raw prompt sent as one user message
        return "chat" if is_chat else "completions"

    def _payload(
        self, prompt: Prompt, config: GenerationConfig, stream: bool
    ) -> tuple[str, dict[str, Any]]:
        route = self._route(prompt)
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": config.max_new_tokens,
            "temperature": config.temperature,
            "stream": stream,
        }
        if config.temperature == 0:
            body["top_p"] = 1.0  # greedy, as the in-process backend decodes
        if config.stop_strings:
            body["stop"] = list(config.stop_strings)
        if route == "chat":
            body["messages"] = (
                [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
            )
            if body["messages"][-1].get("role") == "assistant":
                # A reply to continue (a forced opening): vLLM's chat parameters for it.
                body["continue_final_message"] = True
                body["add_generation_prompt"] = False
            url = f"{self.base_url}/chat/completions"
        else:
            body["prompt"] = prompt
            url = f"{self.base_url}/completions"
        body.update(self.extra_body)
        return url, body

    # -- response handling ---------------------------------------------------------------------

    @staticmethod
    def _retry_after(response: httpx.Response) -> float | None:
        value = response.headers.get("retry-after")
        try:
            return max(float(value), 0.0) if value is not None else None
        except ValueError:
            return None

    def _check_status(self, url: str, response: httpx.Response, body: str | None) -> None:
        status = response.status_code
        if status < 400:
            return
        detail = _error_detail(body)
        message = f"{url} answered HTTP {status}" + (f": {detail}" if detail else "")
        if status >= 500 or status == 429:
            raise _Retryable(message, self._retry_after(response))
        raise GenerationError(f"{message} (not retried: the request itself was rejected)")

    def _parse(self, url: str, text: str) -> tuple[str, Any]:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GenerationError(
                f"{url} returned malformed JSON ({exc.msg} at char {exc.pos}): {text[:200]!r}"
            ) from None
        try:
            choice = data["choices"][0]
            is_chat = "message" in choice
            content = choice["message"].get("content") if is_chat else choice["text"]
            finish = choice.get("finish_reason")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise GenerationError(
                f"{url} returned JSON without choices[0].text / choices[0].message.content: "
                f"{text[:200]!r}"
            ) from None
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise GenerationError(f"{url} returned non-text content: {content!r:.200}")
        return content, finish

    def _check_finish(self, url: str, finish: Any, config: GenerationConfig) -> None:
        if finish == "length" and self.on_truncation == "error":
            raise GenerationError(
                f"{url} stopped at the token limit (finish_reason=length, max_tokens="
                f"{config.max_new_tokens}): the output is truncated; raise max_new_tokens or "
                "pass on_truncation='accept'"
            )

    def _describe(self, url: str, exc: BaseException) -> _Retryable:
        httpx = _httpx()
        if isinstance(exc, httpx.ConnectError):
            return _Retryable(
                f"cannot connect to {url} ({exc or 'connection refused'}); is the server running?"
            )
        if isinstance(exc, httpx.TimeoutException):
            return _Retryable(
                f"{url} timed out (no progress for {self.timeout:g}s, {type(exc).__name__})"
            )
        return _Retryable(
            f"{url} closed the connection mid-request ({type(exc).__name__}: {exc}); "
            "the server may have crashed or been restarted"
        )

    def _transport_errors(self) -> tuple[type[BaseException], ...]:
        httpx = _httpx()
        return (httpx.TransportError,)

    def _wait(self, attempt: int, fault: _Retryable) -> float:
        if fault.retry_after is not None:
            return min(fault.retry_after, 30.0)
        delay: float = self.backoff * (2**attempt)
        return delay * (1.0 + 0.1 * random.random())  # jitter: retries of a batch do not align

    def _give_up(self, fault: _Retryable, attempts: int) -> GenerationError:
        return GenerationError(
            f"{fault} (gave up after {attempts} attempt{'s' if attempts > 1 else ''})"
        )

    # -- sync ----------------------------------------------------------------------------------

    def _retrying(self, attempt: Callable[[], Step]) -> Machine[Any]:
        """One request's attempts as a step machine: ``attempt()`` is the step of one (a call,
        or a stream to pass on); a retryable fault waits (backoff, or the server's Retry-After)
        and tries again, up to ``max_retries`` times. Sync and async calls drive the same one."""
        for number in range(self.max_retries + 1):
            step = attempt()
            try:
                reply = yield step
                if isinstance(step, StreamRewrite):
                    _, error = reply
                    if error is not None:
                        raise error
                return reply
            except _Retryable as fault:
                if number == self.max_retries:
                    raise self._give_up(fault, number + 1) from fault
                delay = self._wait(number, fault)
                logger.warning("%s; retrying in %.2fs", fault, delay)
                yield Work(partial(time.sleep, delay), partial(asyncio.sleep, delay))
        raise AssertionError("unreachable")

    def _post_step(self, url: str, body: dict[str, Any]) -> Work:
        return Work(partial(self._post_once, url, body), partial(self._apost_once, url, body))

    def post(self, url: str, body: dict[str, Any]) -> str:
        """POST JSON with this backend's key, timeout, retries and concurrency limit; the body
        of the (successful) response. Used for generation, and by remote inspectors."""
        return drive(self._retrying(partial(self._post_step, url, body)))

    def _post_once(self, url: str, body: dict[str, Any]) -> str:
        client = self._sync_client()
        with self._slots:
            try:
                response = client.post(url, json=body, headers=self._headers())
            except self._transport_errors() as exc:
                raise self._describe(url, exc) from exc
            self._check_status(url, response, response.text)
        return str(response.text)

    def _request(self, prompt: Prompt, config: GenerationConfig) -> tuple[str, Any]:
        url, body = self._payload(prompt, config, stream=False)
        return self._parse(url, self.post(url, body))

    def _request_all(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[Any]:
        """``(text, finish_reason)`` per prompt, at most ``max_concurrency`` requests at once."""
        if len(prompts) <= 1:
            return [self._request(p, config) for p in prompts]
        with ThreadPoolExecutor(max_workers=min(len(prompts), self.max_concurrency)) as pool:
            futures = [pool.submit(self._request, p, config) for p in prompts]
            return [f.result() for f in futures]

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[str]:
        """Complete every prompt with concurrent requests (at most ``max_concurrency`` at once)."""
        return [self._checked(outcome, config) for outcome in self._request_all(prompts, config)]

    def generate_detailed(
        self, prompts: Sequence[Prompt], config: GenerationConfig
    ) -> list[Generation]:
        """Completions with the server's ``finish_reason``; a cut one is returned, not raised
        (``on_truncation`` governs :meth:`generate` only)."""
        return [_generation(*outcome) for outcome in self._request_all(prompts, config)]

    def complete(self, prompt: Prompt, config: GenerationConfig) -> tuple[str, str | None]:
        """One completion and the server's ``finish_reason`` (never raises on truncation)."""
        text, finish = self._request(prompt, config)
        return text, (str(finish) if finish is not None else None)

    def _checked(self, outcome: tuple[str, Any], config: GenerationConfig) -> str:
        text, finish = outcome
        self._check_finish(self.base_url, finish, config)
        return text

    def stream(self, prompt: Prompt, config: GenerationConfig) -> Iterator[str]:
        """Yield the completion as the server streams it (server-sent events)."""
        return drive_stream(self._stream_steps(prompt, config))

    def _stream_steps(self, prompt: Prompt, config: GenerationConfig) -> Machine[None]:
        url, body = self._payload(prompt, config, stream=True)
        yield from self._retrying(
            lambda: StreamRewrite(
                partial(self._stream_once, url, body, config),
                partial(self._astream_once, url, body, config),
            )
        )

    def _stream_once(
        self, url: str, body: dict[str, Any], config: GenerationConfig
    ) -> Iterator[str]:
        client = self._sync_client()
        emitted = False
        with self._slots:
            try:
                with client.stream("POST", url, json=body, headers=self._headers()) as response:
                    if response.status_code >= 400:
                        raw = response.read()
                        self._check_status(url, response, raw.decode(errors="replace"))
                    parser = _SSEParser(url, self, config)
                    for line in response.iter_lines():
                        for piece in parser.feed(line):
                            emitted = True
                            yield piece
                        if parser.done:
                            break
                    parser.finish()
            except self._transport_errors() as exc:
                fault = self._describe(url, exc)
                if emitted:  # text already went out: another attempt would repeat it
                    raise GenerationError(f"{fault} after streaming began") from exc
                raise fault from exc

    # -- async ---------------------------------------------------------------------------------

    async def apost(self, url: str, body: dict[str, Any]) -> str:
        """Async :meth:`post`."""
        return await adrive(self._retrying(partial(self._post_step, url, body)))

    async def _apost_once(self, url: str, body: dict[str, Any]) -> str:
        client, slots = self._async_state()
        async with slots:
            try:
                response = await client.post(url, json=body, headers=self._headers())
            except self._transport_errors() as exc:
                raise self._describe(url, exc) from exc
            self._check_status(url, response, response.text)
        return str(response.text)

    async def _arequest(self, prompt: Prompt, config: GenerationConfig) -> tuple[str, Any]:
        url, body = self._payload(prompt, config, stream=False)
        return self._parse(url, await self.apost(url, body))

    async def agenerate(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[str]:
        """Async :meth:`generate`: one task per prompt, bounded by ``max_concurrency``."""
        outcomes = await asyncio.gather(*(self._arequest(p, config) for p in prompts))
        return [self._checked(outcome, config) for outcome in outcomes]

    async def agenerate_detailed(
        self, prompts: Sequence[Prompt], config: GenerationConfig
    ) -> list[Generation]:
        """Async :meth:`generate_detailed`."""
        outcomes = await asyncio.gather(*(self._arequest(p, config) for p in prompts))
        return [_generation(*outcome) for outcome in outcomes]

    async def acomplete(self, prompt: Prompt, config: GenerationConfig) -> tuple[str, str | None]:
        """Async :meth:`complete`."""
        text, finish = await self._arequest(prompt, config)
        return text, (str(finish) if finish is not None else None)

    def astream(self, prompt: Prompt, config: GenerationConfig) -> AsyncIterator[str]:
        """Async :meth:`stream`."""
        return adrive_stream(self._stream_steps(prompt, config))

    async def _astream_once(
        self, url: str, body: dict[str, Any], config: GenerationConfig
    ) -> AsyncIterator[str]:
        client, slots = self._async_state()
        emitted = False
        async with slots:
            try:
                async with client.stream(
                    "POST", url, json=body, headers=self._headers()
                ) as response:
                    if response.status_code >= 400:
                        raw = await response.aread()
                        self._check_status(url, response, raw.decode(errors="replace"))
                    parser = _SSEParser(url, self, config)
                    async for line in response.aiter_lines():
                        for piece in parser.feed(line):
                            emitted = True
                            yield piece
                        if parser.done:
                            break
                    parser.finish()
            except self._transport_errors() as exc:
                fault = self._describe(url, exc)
                if emitted:
                    raise GenerationError(f"{fault} after streaming began") from exc
                raise fault from exc

    # -- discovery -----------------------------------------------------------------------------

    def list_models(self, timeout: float | None = None) -> list[str]:
        """Model ids the server reports at ``/models`` (a cheap readiness probe; no retries)."""
        url = f"{self.base_url}/models"
        limit = _httpx().Timeout(timeout) if timeout is not None else self._timeout()
        try:
            response = self._sync_client().get(url, headers=self._headers(), timeout=limit)
        except self._transport_errors() as exc:
            raise GenerationError(str(self._describe(url, exc))) from exc
        try:
            self._check_status(url, response, response.text)
        except _Retryable as fault:
            raise GenerationError(str(fault)) from None
        try:
            return [str(m["id"]) for m in json.loads(response.text)["data"]]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise GenerationError(
                f"{url} returned an unexpected model list: {response.text[:200]!r}"
            ) from exc


def _error_detail(body: str | None) -> str:
    """The server's error message (OpenAI ``{"error": {"message": ...}}`` or FastAPI ``detail``)."""
    if not body:
        return ""
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        return body.strip()[:200]
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:300]
        if isinstance(error, str):
            return error[:300]
        if "detail" in data:
            return str(data["detail"])[:300]
        if "message" in data:
            return str(data["message"])[:300]
    return body.strip()[:200]


def _generation(text: str, finish: Any) -> Generation:
    """A completion with the server's finish reason in our two words (others count as stop)."""
    if finish is None:
        return Generation(text)
    return Generation(text, "length" if finish == "length" else "stop")


class _SSEParser:
    """Turns ``data: {...}`` lines of an OpenAI stream into text pieces; checks how it ended."""

    def __init__(self, url: str, backend: OpenAIBackend, config: GenerationConfig) -> None:
        self.url = url
        self.backend = backend
        self.config = config
        self.done = False
        self.finish_reason: Any = None
        self._check: Callable[[str, Any, GenerationConfig], None] = backend._check_finish

    def feed(self, line: str) -> list[str]:
        line = line.strip()
        if not line.startswith("data:"):
            return []  # blank separators, comments (": ping"), event names
        data = line[5:].strip()
        if data == "[DONE]":
            self.done = True
            return []
        try:
            event = json.loads(data)
        except json.JSONDecodeError:
            raise GenerationError(f"{self.url} streamed malformed JSON: {data[:200]!r}") from None
        if isinstance(event, dict) and "error" in event:
            raise GenerationError(f"{self.url} reported an error mid-stream: {_error_detail(data)}")
        try:
            choices = event["choices"]
        except (KeyError, TypeError):
            raise GenerationError(
                f"{self.url} streamed an event without choices: {data[:200]!r}"
            ) from None
        pieces = []
        for choice in choices[:1]:
            if not isinstance(choice, dict):
                raise GenerationError(f"{self.url} streamed a malformed choice: {data[:200]!r}")
            delta = choice.get("delta")
            text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
            if text:
                pieces.append(str(text))
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return pieces

    def finish(self) -> None:
        """Raise when the stream ended without a finish reason or ``[DONE]`` (server died)."""
        if not self.done and self.finish_reason is None:
            raise GenerationError(
                f"{self.url} ended the stream before it was complete (no finish_reason, no [DONE])"
            )
        self._check(self.url, self.finish_reason, self.config)


def __getattr__(name: str) -> Any:
    """The remote inspector moved to :mod:`aligners.inspector.remote` (backends never import
    inspectors: docs/engine.md, "Layers"). The old import path warns and is removed in 0.2;
    it is resolved by name, so this module does not import the inspector package."""
    if name == "RemoteClassifierInspector":
        warnings.warn(
            "aligners.backends.openai.RemoteClassifierInspector is deprecated and will be "
            "removed in aligners 0.2; import it from aligners.inspector",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module("aligners.inspector.remote").RemoteClassifierInspector
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
