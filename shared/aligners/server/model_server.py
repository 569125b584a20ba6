"""``aligners serve --plain``: a local model behind the OpenAI-compatible API.

A small stand-in for vLLM / llama.cpp / TGI on a machine without them: the remote backend and the
proxy talk to it exactly as they would to those servers (the tests use it as the real server).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from aligners.backends.base import GenerationBackend, GenerationConfig
from aligners.backends.local import Completion, LocalGenerator
from aligners.backends.transformers import TransformersBackend
from aligners.formats.base import Prompt
from aligners.server.common import (
    APIError,
    Deadline,
    check_api_key,
    install_error_handlers,
    install_request_logging,
    message_text,
    new_id,
    read_json,
    sse,
)
from aligners.server.schemas import (
    ChatCompletionRequest,
    ChatMessage,
    ClassifyRequest,
    CompletionRequest,
    _Sampling,
)
from aligners.server.settings import ModelServerSettings, ServerLimits

logger = logging.getLogger("aligners.server")


class Readiness:
    """Whether startup work (loading weights) is done; what failed if it did not work."""

    def __init__(self) -> None:
        self.ready = False
        self.error: str | None = None

    def body(self) -> tuple[int, dict[str, Any]]:
        if self.ready:
            return 200, {"status": "ready"}
        if self.error:
            return 503, {"status": "failed", "error": self.error}
        return 503, {"status": "loading"}

    async def run(self, work: Any) -> None:
        try:
            await asyncio.to_thread(work)
        except Exception as exc:  # reported by /ready; the process stays up for diagnosis
            self.error = f"{type(exc).__name__}: {exc}"
            logger.error("warmup failed", extra={"fields": {"error": self.error}})
        else:
            self.ready = True
            logger.info("ready")


def generation_config(
    request: _Sampling, limits: ServerLimits, max_tokens: int | None
) -> GenerationConfig:
    """The decoding settings a request asks for, within the server's limits."""
    request.reject_unsupported()
    wanted = max_tokens or limits.default_max_tokens
    if wanted > limits.max_tokens_limit:
        raise APIError(
            400,
            f"max_tokens={wanted} exceeds this server's limit of {limits.max_tokens_limit}",
            param="max_tokens",
        )
    return GenerationConfig(
        max_new_tokens=wanted,
        temperature=request.temperature or 0.0,
        stop_strings=request.stops,
        batch_size=1,
        max_time=limits.request_timeout,
    )


def chat_messages(request: ChatCompletionRequest) -> list[dict[str, str]]:
    """Messages as plain ``{"role", "content"}`` dicts with text content.

    A ``tool`` message must answer the ``tool_calls`` of the assistant message before it (after
    any other tool results), as OpenAI's API requires; anything else is a 400."""
    answered: ChatMessage | None = None  # the assistant message tool results answer
    for i, message in enumerate(request.messages):
        if message.role != "tool":
            answered = message if message.role == "assistant" else None
            continue
        if answered is None or not (answered.model_extra or {}).get("tool_calls"):
            raise APIError(
                400,
                f"messages[{i}] has role 'tool' but does not follow an assistant message with "
                "'tool_calls': a tool message must answer a tool call",
                param=f"messages.{i}.role",
            )
    return [{"role": m.role, "content": message_text(m.content)} for m in request.messages]


def usage(prompt_tokens: int | None, completion_tokens: int | None) -> dict[str, int] | None:
    if prompt_tokens is None or completion_tokens is None:
        return None
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def create_model_app(
    model: str | GenerationBackend = "smollm2",
    settings: ModelServerSettings | None = None,
) -> Any:
    """The FastAPI app serving ``model`` (an alias/path, or any backend) the OpenAI way
    (:class:`ModelApp`'s ``app``).

    Endpoints: ``/v1/models``, ``/v1/completions``, ``/v1/chat/completions`` (both with
    ``stream``), ``/classify`` and ``/v1/classify`` (vLLM's classification API, when
    ``settings.classifier`` names a sequence classifier), ``/health`` (process is up), ``/ready``
    (weights loaded).
    """
    return ModelApp(model, settings).app


class ModelApp:
    """The model server: what it serves, and one method per route (``app`` is the FastAPI app;
    see :func:`create_model_app` for the arguments)."""

    def __init__(
        self,
        model: str | GenerationBackend = "smollm2",
        settings: ModelServerSettings | None = None,
    ) -> None:
        if settings is None:
            settings = ModelServerSettings(model=model if isinstance(model, str) else "model")
        self.settings = settings
        if isinstance(model, str):
            self.backend: GenerationBackend = TransformersBackend(model, adapter=settings.adapter)
        else:
            self.backend = model
        self.generator = LocalGenerator(self.backend)
        self.name = settings.name
        self.api_key = settings.api_key.get_secret_value() if settings.api_key else None
        self.readiness = Readiness()
        self.classifier = _Classifier(settings.classifier) if settings.classifier else None
        self.app = self._build()

    def _build(self) -> FastAPI:
        app = FastAPI(title="aligners model server", lifespan=self.lifespan)
        app.state.readiness = self.readiness
        install_error_handlers(app)
        install_request_logging(app)
        app.get("/health")(self.health)
        app.get("/ready")(self.ready)
        app.get("/v1/models")(self.models)
        app.post("/v1/completions")(self.completions)
        app.post("/v1/chat/completions")(self.chat_completions)
        app.add_api_route("/classify", self.classify, methods=["POST"])
        app.add_api_route("/v1/classify", self.classify, methods=["POST"])
        return app

    # -- start-up ------------------------------------------------------------------------------

    def warm(self) -> None:
        self.generator.warmup()
        if self.classifier is not None:
            self.classifier.load()

    @asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        work = self.warm if self.settings.warmup else lambda: None
        task = asyncio.create_task(self.readiness.run(work))
        yield
        task.cancel()

    def check_model(self, requested: str | None) -> None:
        if requested and requested != self.name:
            raise APIError(
                404,
                f"model {requested!r} is not served here; available: [{self.name!r}]",
                "not_found_error",
                "model",
            )

    # -- routes --------------------------------------------------------------------------------

    async def health(self) -> dict[str, str]:
        return {"status": "ok"}

    async def ready(self) -> Any:
        status, body = self.readiness.body()
        return JSONResponse(body, status_code=status)

    async def models(self, request: Request) -> dict[str, Any]:
        check_api_key(request, self.api_key)
        return {
            "object": "list",
            "data": [{"id": self.name, "object": "model", "created": 0, "owned_by": "aligners"}],
        }

    async def completions(self, request: Request) -> Any:
        check_api_key(request, self.api_key)
        settings = self.settings
        body: CompletionRequest = await read_json(
            request, settings.max_request_bytes, CompletionRequest
        )
        self.check_model(body.model)
        config = generation_config(body, settings, body.max_tokens)
        request.state.log_fields.update(endpoint="completions", prompts=len(body.prompts))
        if body.stream:
            if len(body.prompts) != 1:
                raise APIError(400, "stream=true takes one prompt", param="prompt")
            return await self.stream_response(body.prompts[0], config, "text_completion")
        deadline = Deadline(settings.request_timeout)
        try:
            results = await deadline.run(
                asyncio.gather(*(self.generator.acomplete(p, config) for p in body.prompts)),
                "generation",
            )
        except ValueError as exc:  # e.g. a prompt over the model's context
            raise APIError(400, str(exc), param="prompt") from None
        return {
            "id": new_id("cmpl"),
            "object": "text_completion",
            "created": int(time.time()),
            "model": self.name,
            "choices": [
                {"index": i, "text": r.text, "finish_reason": r.finish_reason, "logprobs": None}
                for i, r in enumerate(results)
            ],
            "usage": _sum_usage(results),
        }

    async def chat_completions(self, request: Request) -> Any:
        check_api_key(request, self.api_key)
        settings = self.settings
        body: ChatCompletionRequest = await read_json(
            request, settings.max_request_bytes, ChatCompletionRequest
        )
        self.check_model(body.model)
        config = generation_config(body, settings, body.token_limit)
        messages = chat_messages(body)
        request.state.log_fields.update(endpoint="chat", messages=len(messages))
        if body.stream:
            return await self.stream_response(messages, config, "chat.completion.chunk")
        try:
            result = await Deadline(settings.request_timeout).run(
                self.generator.acomplete(messages, config), "generation"
            )
        except ValueError as exc:  # e.g. the model has no chat template, or over its context
            raise APIError(400, str(exc), param="messages") from None
        return {
            "id": new_id("chatcmpl"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result.text},
                    "finish_reason": result.finish_reason,
                }
            ],
            "usage": usage(result.prompt_tokens, result.completion_tokens),
        }

    async def classify(self, request: Request) -> Any:
        check_api_key(request, self.api_key)
        settings, classifier = self.settings, self.classifier
        if classifier is None:
            raise APIError(
                404, "this server has no classifier (start it with --classifier)", "not_found_error"
            )
        body: ClassifyRequest = await read_json(
            request, settings.max_request_bytes, ClassifyRequest
        )
        if body.model and body.model != settings.classifier_name:
            raise APIError(
                404,
                f"classifier {body.model!r} is not served here; "
                f"available: [{settings.classifier_name!r}]",
                "not_found_error",
                "model",
            )
        rows = await asyncio.to_thread(classifier.probabilities, body.texts)
        request.state.log_fields.update(endpoint="classify", inputs=len(rows))
        return {
            "id": new_id("classify"),
            "object": "list",
            "created": int(time.time()),
            "model": settings.classifier_name,
            "data": [
                {"index": i, "label": label, "probs": probs, "num_classes": len(probs)}
                for i, (label, probs) in enumerate(rows)
            ],
        }

    # -- streaming -----------------------------------------------------------------------------

    async def stream_response(self, prompt: Prompt, config: GenerationConfig, kind: str) -> Any:
        try:  # before the headers: a prompt that cannot be answered is a 400, not a broken stream
            await self.generator.acheck_fits(prompt, config)
        except ValueError as exc:
            raise APIError(400, str(exc), param="prompt") from None
        ident = new_id("chatcmpl" if kind.startswith("chat") else "cmpl")
        chunk = partial(_stream_chunk, ident, kind, int(time.time()), self.name)
        return StreamingResponse(
            self._events(prompt, config, kind, chunk), media_type="text/event-stream"
        )

    async def _events(
        self,
        prompt: Prompt,
        config: GenerationConfig,
        kind: str,
        chunk: Callable[..., dict[str, Any]],
    ) -> AsyncIterator[str]:
        state = Completion("")
        if kind != "text_completion":
            yield sse(chunk("", None, first=True))
        try:
            async for piece in self.generator.astream(prompt, config, state):
                yield sse(chunk(piece, None))
        except Exception as exc:  # headers are sent: report in-band, as OpenAI servers do
            logger.error("generation failed mid-stream", extra={"fields": {"error": str(exc)}})
            yield sse(APIError(500, f"generation failed: {exc}", "server_error").body())
            return
        yield sse(chunk(None if kind != "text_completion" else "", state.finish_reason))
        yield sse("[DONE]")


def _stream_chunk(
    ident: str,
    kind: str,
    created: int,
    model: str,
    text: str | None,
    finish: str | None,
    first: bool = False,
) -> dict[str, Any]:
    """One streamed chunk of a completion (``text_completion``) or a chat completion."""
    if kind == "text_completion":
        choice: dict[str, Any] = {"index": 0, "text": text or "", "finish_reason": finish}
    else:
        delta: dict[str, Any] = {"role": "assistant"} if first else {}
        if text is not None:
            delta["content"] = text
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return {"id": ident, "object": kind, "created": created, "model": model, "choices": [choice]}


def _sum_usage(results: list[Completion]) -> dict[str, int] | None:
    if any(r.prompt_tokens is None or r.completion_tokens is None for r in results):
        return None
    prompt = sum(r.prompt_tokens or 0 for r in results)
    completion = sum(r.completion_tokens or 0 for r in results)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


class _Classifier:
    """A sequence classifier answering vLLM's ``/classify``: softmax over the classes (sigmoid
    for one-logit heads), the label of the most likely class."""

    def __init__(self, path: str) -> None:
        from aligners.inspector.sequence_classifier import SequenceClassifierInspector

        # The in-process inspector's loader and cache, so both read the checkpoint the same way.
        self.inspector = SequenceClassifierInspector(path)

    def load(self) -> Any:
        return self.inspector.load()

    def probabilities(self, texts: list[str]) -> list[tuple[str, list[float]]]:
        import torch

        loaded = self.load()
        rows: list[tuple[str, list[float]]] = []
        batch_size = self.inspector.batch_size
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = loaded.tokenizer(
                    texts[start : start + batch_size],
                    padding=True,
                    truncation=True,
                    max_length=self.inspector.max_length,
                    return_tensors="pt",
                ).to(loaded.model.device)
                logits = loaded.model(**batch).logits.float()
                if logits.shape[-1] == 1:
                    probs = torch.sigmoid(logits)
                else:
                    probs = torch.softmax(logits, dim=-1)
                labels = loaded.model.config.id2label
                for row in probs.tolist():
                    best = max(range(len(row)), key=row.__getitem__)
                    rows.append((str(labels.get(best, best)), [float(p) for p in row]))
        return rows
