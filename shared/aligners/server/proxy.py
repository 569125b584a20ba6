"""``aligners serve``: an OpenAI-compatible proxy that aligns every answer before returning it.

A chat completion request is forwarded to the upstream model (a remote OpenAI-compatible server or
a local model), the squad aligns the final answer against the last user message, and the reply is
the aligned answer with the squad's record in the extra field ``aligners``. Any OpenAI client works
unchanged; ``stream=true`` streams the aligned answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from aligners.backends.base import GenerationBackend, GenerationConfig
from aligners.backends.openai import OpenAIBackend
from aligners.backends.transformers import TransformersBackend
from aligners.errors import GenerationError
from aligners.server.common import (
    APIError,
    check_api_key,
    install_error_handlers,
    install_request_logging,
    new_id,
    read_json,
    sse,
)
from aligners.server.local import Completion, LocalGenerator
from aligners.server.model_server import Readiness, chat_messages, generation_config, usage
from aligners.server.schemas import ChatCompletionRequest
from aligners.server.settings import ProxySettings
from aligners.squad.squad import Squad

logger = logging.getLogger("aligners.server")

CRITERIA_HEADER = "X-Aligners-Criteria"


class Upstream(ABC):
    """The model whose answers the proxy aligns."""

    name = "upstream"

    @abstractmethod
    async def acomplete(
        self, messages: list[dict[str, str]], config: GenerationConfig
    ) -> Completion:
        """The upstream answer to a conversation."""

    def warmup(self) -> None:  # noqa: B027 - optional hook
        """Load weights now (local upstreams)."""

    async def aprobe(self) -> str | None:
        """None when the upstream can answer, else why not (for ``/ready``)."""
        return None


class LocalUpstream(Upstream):
    """A model in this process (the default: SmolLM2-135M-Instruct)."""

    def __init__(self, model: str | GenerationBackend = "smollm2") -> None:
        backend = TransformersBackend(model) if isinstance(model, str) else model
        self.generator = LocalGenerator(backend)
        self.name = f"local:{getattr(backend, 'source', model)}"

    async def acomplete(
        self, messages: list[dict[str, str]], config: GenerationConfig
    ) -> Completion:
        return await self.generator.acomplete(messages, config)

    def warmup(self) -> None:
        self.generator.warmup()


class RemoteUpstream(Upstream):
    """An OpenAI-compatible server (vLLM, llama.cpp, TGI, another proxy...)."""

    def __init__(self, backend: OpenAIBackend) -> None:
        self.backend = backend
        self.name = f"{backend.base_url} ({backend.model})"

    async def acomplete(
        self, messages: list[dict[str, str]], config: GenerationConfig
    ) -> Completion:
        text, finish = await self.backend.acomplete(messages, config)
        return Completion(text, finish or "stop")

    async def aprobe(self) -> str | None:
        try:
            await asyncio.to_thread(self.backend.list_models, 5.0)  # /ready must answer fast
        except GenerationError as exc:
            return str(exc)
        return None


def _upstream_from(
    settings: ProxySettings, upstream: Upstream | GenerationBackend | None
) -> Upstream:
    if isinstance(upstream, Upstream):
        return upstream
    if isinstance(upstream, OpenAIBackend):
        return RemoteUpstream(upstream)
    if isinstance(upstream, GenerationBackend):
        return LocalUpstream(upstream)
    if settings.upstream_url:
        assert settings.upstream_model is not None
        return RemoteUpstream(
            OpenAIBackend(
                settings.upstream_url,
                settings.upstream_model,
                api_key_env=settings.upstream_api_key_env,
                timeout=settings.upstream_timeout,
                max_retries=settings.upstream_max_retries,
                endpoint="chat",
                on_truncation="accept",  # a long upstream answer is cut, as OpenAI does; passed on
            )
        )
    return LocalUpstream(settings.local_model)


def warm_squad(squad: Squad) -> None:
    """Load every inspector and local aligner model by running them once."""
    squad.score(["Is this a warm-up question?"], ["This is a warm-up answer."])
    for member in squad.members:
        backend = member.aligner.backend if member.aligner is not None else None
        if isinstance(backend, TransformersBackend):
            backend.load()


def _criteria_from(request: Any, body: ChatCompletionRequest) -> list[str] | None:
    options = body.aligners
    raw: Any = options.criteria if options is not None and options.criteria is not None else None
    if raw is None:
        raw = request.headers.get(CRITERIA_HEADER)
    if raw is None:
        return None
    names = (
        [c.strip() for c in raw.split(",")] if isinstance(raw, str) else [c.strip() for c in raw]
    )
    names = [c for c in names if c]
    if not names:
        raise APIError(400, f"criteria names no criterion (got {raw!r})", param="aligners.criteria")
    return names


def _squad_for(squad: Squad, request: Any, body: ChatCompletionRequest) -> Squad:
    names = _criteria_from(request, body)
    if names is not None:
        try:
            squad = squad.select(names)
        except ValueError as exc:
            raise APIError(400, str(exc), param="aligners.criteria") from None
    options = body.aligners
    if options is not None and (options.threshold is not None or options.check_only is not None):
        extra: dict[str, Any] = {}
        if options.check_only is not None:
            extra["check_only"] = options.check_only
        squad = squad.with_options(threshold=options.threshold, **extra)
    return squad


class SquadBatcher:
    """Groups concurrent requests into one squad batch: one encoder pass scores them all.

    No waiting window: the first request runs at once; requests that arrive while a batch runs
    form the next batch. So an idle proxy adds no latency and a busy one scores many answers per
    encoder pass. Requests are grouped only with others asking for the same criteria and options,
    and ``batch-mean`` ordering becomes ``per-answer`` inside a batch, which for each answer is
    exactly what a batch of one gives: batching never changes a result.
    """

    def __init__(self, max_batch_size: int = 32) -> None:
        self.max_batch_size = max_batch_size
        self._pending: dict[Any, list[tuple[str, str, asyncio.Future[Any]]]] = {}
        self._squads: dict[Any, Squad] = {}
        self._running: set[Any] = set()
        self.batch_sizes: list[int] = []  # recent batch sizes, for logs and tests
        self._tasks: set[asyncio.Task[None]] = set()

    @staticmethod
    def key(squad: Squad) -> Any:
        return (
            tuple(squad.criteria),
            tuple(squad.thresholds.items()),
            squad.config.model_dump_json(),
        )

    async def align(self, squad: Squad, question: str, answer: str) -> Any:
        """The squad's result for one pair, computed in a batch with concurrent requests."""
        if self.max_batch_size <= 1:
            return await squad.aalign(question, answer)
        key = self.key(squad)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(key, []).append((question, answer, future))
        self._squads.setdefault(key, squad)
        if key not in self._running:
            self._running.add(key)
            task = asyncio.create_task(self._drain(key))
            self._tasks.add(task)  # keep a reference: a bare task may be garbage-collected
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _drain(self, key: Any) -> None:
        squad = self._squads[key]
        if squad.config.ordering == "batch-mean":
            squad = squad.with_options(ordering="per-answer")
        try:
            while self._pending.get(key):
                batch = self._pending[key][: self.max_batch_size]
                del self._pending[key][: self.max_batch_size]
                self.batch_sizes = [*self.batch_sizes[-99:], len(batch)]
                try:
                    results = await squad.aalign_batch([b[0] for b in batch], [b[1] for b in batch])
                except Exception as exc:  # each waiting request reports it and keeps its answer
                    for *_, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                else:
                    for (*_, future), result in zip(batch, results):
                        if not future.done():
                            future.set_result(result)
        finally:
            self._running.discard(key)
            self._squads.pop(key, None)
            self._pending.pop(key, None)  # empty here: no await since the loop's last check


def _question(messages: list[dict[str, str]]) -> str:
    """The last user message: what the squad judges the answer against."""
    for message in reversed(messages):
        if message["role"] == "user":
            return message["content"]
    return ""


def create_app(
    settings: ProxySettings | None = None,
    *,
    squad: Squad | None = None,
    upstream: Upstream | GenerationBackend | None = None,
) -> Any:
    """The aligning proxy as a FastAPI app.

    Args:
        settings: Limits, API key, upstream and squad options (defaults: local SmolLM2 upstream,
            the default squad).
        squad: Use this squad instead of the one ``settings`` describe.
        upstream: An :class:`Upstream`, an :class:`OpenAIBackend` (remote) or any other backend
            (local) instead of the one ``settings`` describe.
    """

    settings = settings or ProxySettings()
    the_squad = squad or Squad.default(
        settings.criteria, threshold=settings.threshold, check_only=settings.check_only
    )
    the_upstream = _upstream_from(settings, upstream)
    api_key = settings.api_key.get_secret_value() if settings.api_key else None
    readiness = Readiness()
    name = settings.served_model_name
    batcher = SquadBatcher(settings.max_batch_size)

    def warmup() -> None:
        if settings.warmup:
            the_upstream.warmup()
            warm_squad(the_squad)

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        task = asyncio.create_task(readiness.run(warmup))
        logger.info(
            "aligning proxy starting",
            extra={"fields": {"upstream": the_upstream.name, "criteria": the_squad.criteria}},
        )
        yield
        task.cancel()

    app = FastAPI(title="aligners proxy", lifespan=lifespan)
    app.state.squad = the_squad
    app.state.upstream = the_upstream
    app.state.readiness = readiness
    app.state.batcher = batcher
    install_error_handlers(app)
    install_request_logging(app)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> Any:
        status, body = readiness.body()
        if status == 200:
            problem = await the_upstream.aprobe()
            if problem is not None:
                status, body = 503, {"status": "upstream unreachable", "error": problem}
        return JSONResponse(body, status_code=status)

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        check_api_key(request, api_key)
        return {
            "object": "list",
            "data": [{"id": name, "object": "model", "created": 0, "owned_by": "aligners"}],
        }

    async def align(squad: Squad, question: str, answer: str) -> tuple[str, dict[str, Any]]:
        if not answer.strip():
            return answer, {"skipped": "the upstream answer is empty; nothing to align"}
        try:
            result = await batcher.align(squad, question, answer)
        except Exception as exc:  # never lose the answer; say loudly that it is unaligned
            logger.exception("squad failed", extra={"fields": {"error": str(exc)}})
            return answer, {
                "error": f"squad failed ({type(exc).__name__}: {exc})",
                "aligned": False,
            }
        return result.text, result.to_record()

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        check_api_key(request, api_key)
        body: ChatCompletionRequest = await read_json(
            request, settings.max_request_bytes, ChatCompletionRequest
        )
        config = generation_config(body, settings, body.token_limit)
        messages = chat_messages(body)
        squad = _squad_for(the_squad, request, body)
        question = _question(messages)
        fields = request.state.log_fields
        fields.update(criteria=squad.criteria, stream=body.stream, requested_model=body.model)
        start = time.perf_counter()
        try:
            upstream_result = await the_upstream.acomplete(messages, config)
        except GenerationError as exc:
            raise APIError(502, f"upstream model failed: {exc}", "upstream_error") from None
        except ValueError as exc:
            raise APIError(400, f"upstream model cannot take this request: {exc}") from None
        fields["upstream_ms"] = round((time.perf_counter() - start) * 1000, 2)
        answer = upstream_result.text
        ident, created = new_id("chatcmpl"), int(time.time())
        if body.stream:
            return StreamingResponse(
                stream_events(squad, question, answer, upstream_result, ident, created),
                media_type="text/event-stream",
            )
        start = time.perf_counter()
        text, record = await align(squad, question, answer)
        fields.update(
            align_ms=round((time.perf_counter() - start) * 1000, 2),
            applied=record.get("applied"),
            flagged=record.get("flagged"),
            failures=record.get("failures") or None,
        )
        return {
            "id": ident,
            "object": "chat.completion",
            "created": created,
            "model": name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": upstream_result.finish_reason,
                }
            ],
            "usage": usage(upstream_result.prompt_tokens, upstream_result.completion_tokens),
            "aligners": record,
        }

    async def stream_events(
        squad: Squad,
        question: str,
        answer: str,
        upstream_result: Completion,
        ident: str,
        created: int,
    ) -> AsyncIterator[str]:
        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return sse(
                {
                    "id": ident,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": name,
                    "choices": [choice],
                    **extra,
                }
            )

        yield chunk({"role": "assistant", "content": ""})
        record: dict[str, Any]
        if not answer.strip():
            record = {"skipped": "the upstream answer is empty; nothing to align"}
            if answer:
                yield chunk({"content": answer})
        else:
            stream = squad.stream(question, answer)
            emitted = False
            try:
                async for piece in stream:
                    emitted = True
                    yield chunk({"content": piece})
            except Exception as exc:  # the squad keeps aligner faults; this is anything else
                logger.exception("squad failed mid-stream", extra={"fields": {"error": str(exc)}})
                record = {"error": f"squad failed ({type(exc).__name__}: {exc})", "aligned": False}
                if not emitted:
                    yield chunk({"content": answer})
            else:
                assert stream.result is not None
                record = stream.result.to_record()
        yield chunk({}, upstream_result.finish_reason, aligners=record)
        yield sse("[DONE]")

    return app
