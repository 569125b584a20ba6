"""``aligners serve``: an OpenAI-compatible proxy that aligns every answer before returning it.

A chat completion request is forwarded to the upstream model (a remote OpenAI-compatible server or
a local model), the squad aligns the final answer against the last user message, and the reply is
the aligned answer with the squad's record in the extra field ``aligners``. Any OpenAI client works
unchanged; ``stream=true`` streams the aligned answer.

The returned text keeps OpenAI's contract: ``max_tokens`` caps a rewrite too (``finish_reason``
``length``), ``usage`` counts the returned text (``stream_options.include_usage`` streams it), a
JSON answer is never rewritten into prose, parameters it cannot honour are a 400 naming them, and
a summary of the record travels in the ``X-Aligners`` header.

With ``on_flag="block"`` (or ``rewrite_or_block``) a blocked answer is the blocked message with
``finish_reason="content_filter"``; with ``on_flag="raise"`` a flagged answer is an HTTP 422
``alignment_violation`` error. With ``check_request`` a request inspector reads the last user
message first and a request it turns away is answered the same way, without an upstream call.

The answer's sources (its context, for criteria such as ``grounded``) are the request's
``aligners.context`` (a str or a list of passages) when it is set; otherwise, where the operator
names roles in ``ProxySettings.context_roles`` (``--context-roles system,tool``), the content of
the messages in those roles, one passage per message, in order. By default no message is a
source: a generic system prompt would make every answer look unsupported. ``aligners.context``
wins. The proxy never adds the context to the prompt; the client puts its sources in the
messages as usual.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from aligners.aligner.model import Aligner
from aligners.backends.base import GenerationBackend, GenerationConfig
from aligners.backends.local import Completion, LocalGenerator
from aligners.backends.models import converted_cache_dir, resolve_model
from aligners.backends.openai import OpenAIBackend
from aligners.backends.transformers import TransformersBackend
from aligners.errors import AlignmentViolation, GenerationError, ModelNotFoundError
from aligners.inspector.request import RequestCheck, RequestInspector, default_request_inspector
from aligners.server.common import (
    APIError,
    Deadline,
    check_api_key,
    install_error_handlers,
    install_request_logging,
    new_id,
    read_json,
    replace_surrogates,
    sse,
)
from aligners.server.model_server import Readiness, chat_messages, generation_config, usage
from aligners.server.policy import enforce_client_policy
from aligners.server.schemas import ChatCompletionRequest
from aligners.server.settings import ProxySettings
from aligners.sources import as_passages
from aligners.squad.result import AlignmentResult
from aligners.squad.squad import Squad
from aligners.validation import is_blank

logger = logging.getLogger("aligners.server")

CRITERIA_HEADER = "X-Aligners-Criteria"
#: The finish reason of a blocked answer or request, as OpenAI's moderation gives it.
CONTENT_FILTER = "content_filter"


class Upstream(ABC):
    """The model whose answers the proxy aligns."""

    name = "upstream"
    #: Whether request fields such as ``response_format`` reach the model (remote servers).
    forwards_fields = False

    @abstractmethod
    async def acomplete(
        self,
        messages: list[dict[str, str]],
        config: GenerationConfig,
        fields: dict[str, Any] | None = None,
    ) -> Completion:
        """The upstream answer to a conversation; ``fields`` are extra request fields to send
        (only where :attr:`forwards_fields`)."""

    def token_backend(self) -> TransformersBackend | None:
        """An in-process backend whose tokenizer counts this model's tokens, if there is one."""
        return None

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
        self,
        messages: list[dict[str, str]],
        config: GenerationConfig,
        fields: dict[str, Any] | None = None,
    ) -> Completion:
        return await self.generator.acomplete(messages, config)

    def warmup(self) -> None:
        self.generator.warmup()

    def token_backend(self) -> TransformersBackend | None:
        backend = self.generator.backend
        return backend if isinstance(backend, TransformersBackend) else None


class RemoteUpstream(Upstream):
    """An OpenAI-compatible server (vLLM, llama.cpp, TGI, another proxy...)."""

    forwards_fields = True

    def __init__(self, backend: OpenAIBackend) -> None:
        self.backend = backend
        self.name = f"{backend.base_url} ({backend.model})"

    async def acomplete(
        self,
        messages: list[dict[str, str]],
        config: GenerationConfig,
        fields: dict[str, Any] | None = None,
    ) -> Completion:
        url, body = self.backend._payload(messages, config, stream=False)
        body.update(fields or {})
        raw = await self.backend.apost(url, body)
        text, finish = self.backend._parse(url, raw)
        used = json.loads(raw).get("usage")  # _parse has checked that it is a JSON object
        if not isinstance(used, dict):  # servers that count nothing (or send junk) say nothing
            used = {}
        prompt, completion = used.get("prompt_tokens"), used.get("completion_tokens")
        return Completion(
            text,
            str(finish or "stop"),
            prompt if isinstance(prompt, int) else None,
            completion if isinstance(completion, int) else None,
        )

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
    # With a context, so inspectors that read sources (grounded) load too.
    squad.score(
        ["Is this a warm-up question?"],
        ["This is a warm-up answer."],
        contexts=["This is a warm-up passage."],
    )
    for member in squad.members:
        backend = member.aligner.backend if isinstance(member.aligner, Aligner) else None
        if isinstance(backend, TransformersBackend):
            backend.load()


#: The record's reason when the upstream answered nothing.
EMPTY_ANSWER = "the upstream answer is empty (or only invisible characters); nothing to align"
#: The record's note when the upstream answer could not be sent as UTF-8 as it was.
INVALID_CHARACTERS = (
    "the upstream answer held lone surrogates (not valid UTF-8); they were replaced with U+FFFD "
    "before aligning"
)


async def probe_aligners(squad: Squad) -> str | None:
    """None when every remote aligner server answers, else why not (for ``/ready``).

    Local aligners are loaded by the warm-up, which ``/ready`` already waits for."""
    seen: set[int] = set()
    for member in squad.members:
        backend = member.aligner.backend if isinstance(member.aligner, Aligner) else None
        if not isinstance(backend, OpenAIBackend) or id(backend) in seen:
            continue
        seen.add(id(backend))
        try:
            await asyncio.to_thread(backend.list_models, 5.0)
        except GenerationError as exc:
            return f"{member.name} aligner: {exc}"
    return None


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
    if options is None:
        return squad
    policy = options.policy()
    if policy.explicit():
        try:
            squad = squad.with_options(policy=policy)
        except ValueError as exc:  # options the squad cannot take: the client's error, not ours
            raise APIError(400, str(exc), param="aligners") from None
    return squad


def context_of(
    body: ChatCompletionRequest, messages: list[dict[str, str]], roles: Sequence[str] = ()
) -> tuple[list[str] | None, str | None]:
    """The answer's passages and where they came from (``"aligners.context"`` or
    ``"messages"``; None: the request has none); ``roles`` are the message roles that hold
    sources when the request sets no ``aligners.context``."""
    options = body.aligners
    if options is not None and options.context is not None:
        try:  # a bad passage is the client's error, named before the upstream is called
            as_passages(options.context, "aligners.context")
        except (TypeError, ValueError) as exc:
            raise APIError(400, str(exc), param="aligners.context") from None
        given = [options.context] if isinstance(options.context, str) else options.context
        return given, "aligners.context"
    passages = [m["content"] for m in messages if m["role"] in roles and not is_blank(m["content"])]
    return (passages, "messages") if passages else (None, None)


def _withheld(record: dict[str, Any]) -> dict[str, Any]:
    """A record for the client: a blocked or refused answer's text is not handed out in it."""
    if record.get("action") in ("blocked", "raised") and record.get("original") is not None:
        record = {**record, "original": None, "original_withheld": True}
    return record


def _violation_error(result: AlignmentResult) -> APIError:
    """``on_flag="raise"``: the flagged answer becomes an OpenAI-style error naming the scores."""
    scores = ", ".join(
        f"{name} {result.initial_scores.get(name, float('nan')):.2f} < "
        f"{result.thresholds.get(name, 0.5):.2f}"
        for name in result.flagged
    )
    return APIError(
        422,
        f"the answer was flagged by the inspectors ({scores}) and on_flag is 'raise'; "
        "it was withheld",
        "alignment_violation",
        code="answer_flagged",
        details={"aligners": _withheld(result.to_record())},
    )


class RequestGate:
    """The request check of the proxy: which inspector, whether it runs, at which threshold."""

    def __init__(self, settings: ProxySettings, inspector: RequestInspector | None) -> None:
        if inspector is None and isinstance(settings.policy.check_request, RequestInspector):
            inspector = settings.policy.check_request
        if inspector is None and settings.check_request:
            inspector = default_request_inspector()  # fails at startup, not on the first request
        self.inspector = inspector
        self.enabled = settings.check_request
        self.threshold = settings.request_threshold

    def options(self, body: ChatCompletionRequest) -> tuple[bool, float | None]:
        """Whether this request is checked, and the threshold."""
        options = body.aligners
        enabled = self.enabled
        threshold = self.threshold
        if options is not None:
            if options.check_request is not None:
                enabled = options.check_request
            if options.request_threshold is not None:
                threshold = options.request_threshold
        return enabled, threshold

    def server_policy(self) -> tuple[bool, float | None]:
        """Whether this server checks every request, and at which threshold (None: unknown,
        the inspector is not loaded)."""
        threshold = self.threshold
        if threshold is None and self.inspector is not None:
            threshold = self.inspector.threshold
        return self.enabled, threshold

    def resolve(self) -> RequestInspector:
        """The inspector; the shipped one is loaded the first time a request asks for it."""
        if self.inspector is None:
            try:
                self.inspector = default_request_inspector()
            except FileNotFoundError as exc:
                raise APIError(
                    400,
                    f"check_request: this proxy has no request inspector ({exc})",
                    param="aligners.check_request",
                ) from None
        return self.inspector

    async def check(self, question: str, threshold: float | None) -> RequestCheck:
        return await self.resolve().acheck(question, threshold)


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
        self._pending: dict[Any, list[tuple[str, str, Any, asyncio.Future[Any]]]] = {}
        self._squads: dict[Any, Squad] = {}
        self._running: set[Any] = set()
        self.batch_sizes: list[int] = []  # recent batch sizes, for logs and tests
        self._tasks: set[asyncio.Task[None]] = set()

    @staticmethod
    def key(squad: Squad) -> Any:
        return (
            tuple(squad.criteria),
            tuple(squad.thresholds.items()),
            tuple(m.block_threshold for m in squad.members),
            squad.config.model_dump_json(),
        )

    async def align(self, squad: Squad, question: str, answer: str, context: Any = None) -> Any:
        """The squad's result for one pair (``context``: its sources), computed in a batch with
        concurrent requests."""
        if self.max_batch_size <= 1:
            return await squad.aalign(question, answer, context)
        key = self.key(squad)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(key, []).append((question, answer, context, future))
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
                contexts = [b[2] for b in batch]
                try:
                    results = await squad.aalign_batch(
                        [b[0] for b in batch],
                        [b[1] for b in batch],
                        contexts if any(c is not None for c in contexts) else None,
                    )
                except AlignmentViolation as violation:  # on_flag="raise": only the flagged fail
                    for (*_, future), result in zip(batch, violation.results):
                        if future.done():
                            continue
                        if result.action == "raised":
                            future.set_exception(AlignmentViolation(result, [result]))
                        else:
                            future.set_result(result)
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


#: The response header that carries a summary of the ``aligners`` record (for clients that see
#: headers but not extra body fields, e.g. ``ChatOpenAI(include_response_headers=True)``).
RECORD_HEADER = "X-Aligners"
_HEADER_FIELDS = (
    "action",
    "passed",
    "changed",
    "flagged",
    "applied",
    "blocked",
    "block_reason",
    "initial_scores",
    "final_scores",
    "cut_at_max_tokens",
    "json_answer",
)
#: The record's note when a JSON answer was flagged under a rewriting policy.
JSON_NOT_REWRITTEN = (
    "the answer is JSON: a flagged JSON answer is blocked, never rewritten into prose "
    "(on_flag 'rewrite' and 'rewrite_or_block' act as 'block')"
)


def record_summary(record: dict[str, Any]) -> dict[str, Any]:
    """The record's verdict fields, scores rounded (the texts stay in the body: headers have
    size limits)."""
    summary: dict[str, Any] = {k: record[k] for k in _HEADER_FIELDS if k in record}
    for key in ("initial_scores", "final_scores"):
        if isinstance(summary.get(key), dict):
            summary[key] = {n: round(v, 4) for n, v in summary[key].items()}
    check = record.get("request_check")
    if isinstance(check, dict):
        summary["request_check"] = {
            k: (round(v, 4) if isinstance(v, float) else v)
            for k, v in check.items()
            if k in ("score", "threshold", "allowed", "error")
        }
    return summary


def header_value(summary: dict[str, Any]) -> str:
    """A summary as an ``X-Aligners`` header value: compact ASCII JSON."""
    return json.dumps(summary, ensure_ascii=True, separators=(",", ":"))


def is_json_answer(text: str) -> bool:
    """Whether ``text`` is a JSON object or array (what a rewrite must not turn into prose)."""
    stripped = text.strip()
    if not stripped or stripped[0] not in "[{":
        return False
    try:
        json.loads(stripped)
    except ValueError:
        return False
    return True


def load_tokenizer(model: str) -> Any:
    """The tokenizer alone of ``model`` (alias, directory, ``.gguf`` or hub id): no weights."""
    from transformers import AutoTokenizer

    source = resolve_model(model)
    converted = converted_cache_dir(source)  # a GGUF model converted once: read it from there
    if converted is not None and (converted / "tokenizer_config.json").exists():
        return AutoTokenizer.from_pretrained(converted)
    extra = {"gguf_file": source.gguf_file} if source.gguf_file else {}
    try:
        return AutoTokenizer.from_pretrained(source.path, **extra)
    except OSError as exc:
        raise ModelNotFoundError(f"could not load the tokenizer of {model!r}: {exc}") from exc


def _tokenizer_of(
    upstream: Upstream, squad: Squad, tokenizer: str | None = None
) -> Callable[[], Any] | None:
    """What loads the tokenizer that counts the returned text: ``tokenizer`` (settings), else
    the local upstream's, else a local aligner's (None: rewrites are neither capped nor
    counted). Nothing loads here: the tokenizer loads on the first count."""
    if tokenizer is not None:
        cached: list[Any] = []

        def load() -> Any:
            if not cached:
                cached.append(load_tokenizer(tokenizer))
            return cached[0]

        return load
    backend = upstream.token_backend()
    if backend is None:
        for member in squad.members:
            if isinstance(member.aligner, Aligner) and isinstance(
                member.aligner.backend, TransformersBackend
            ):
                backend = member.aligner.backend
                break
    if backend is None:
        return None
    local = backend
    return lambda: local.load().tokenizer


class TokenCap:
    """Counts and caps returned text in the proxy's tokens, whole or as a stream.

    The upstream's own text already honours ``max_tokens`` (it generated at most that many); a
    rewrite is the squad's text, so it is cut here to the same limit (``finish_reason``
    ``length``), and ``usage`` counts what was returned.
    """

    def __init__(self, tokenizer: Callable[[], Any] | None, limit: int) -> None:
        self.tokenizer = tokenizer
        self.limit = limit
        self.sent = ""
        self.cut = False

    def _ids(self, text: str) -> list[int]:
        assert self.tokenizer is not None
        ids: list[int] = self.tokenizer()(text, add_special_tokens=False)["input_ids"]
        return ids

    def count(self, text: str) -> int | None:
        """``text``'s length in tokens (None without a tokenizer)."""
        return None if self.tokenizer is None else len(self._ids(text))

    def apply(self, text: str) -> tuple[str, bool]:
        """``text`` cut to the limit, and whether it was cut."""
        if self.tokenizer is None:
            return text, False
        ids = self._ids(text)
        if len(ids) <= self.limit:
            return text, False
        tokenizer = self.tokenizer()
        fallback: str | None = None
        # Cutting a byte-level token sequence can split a character: the decoded "\ufffd" is
        # neither the answer's text nor within the limit once counted again, so step back.
        for keep in range(self.limit, 0, -1):
            decoded: str = tokenizer.decode(ids[:keep])
            if len(self._ids(decoded)) > self.limit or decoded.count("\ufffd") > text.count(
                "\ufffd"
            ):
                continue
            if text.startswith(decoded):
                return decoded, True
            fallback = decoded if fallback is None else fallback
        return (fallback or ""), True

    def feed(self, piece: str) -> str:
        """The part of a streamed ``piece`` that fits; nothing once the limit is reached."""
        if self.cut:
            return ""
        whole, self.cut = self.apply(self.sent + piece)
        new = whole[len(self.sent) :] if whole.startswith(self.sent) else ""
        self.sent += new
        return new


def _question(messages: list[dict[str, str]]) -> str:
    """The last user message: what the squad judges the answer against."""
    for message in reversed(messages):
        if message["role"] == "user":
            return message["content"]
    return ""


def deprecated_forms(request: Any, body: ChatCompletionRequest) -> tuple[str, ...]:
    """The deprecated forms ``body`` uses (flags sent as strings), logged as warnings and sent
    back in ``Warning`` headers (and in the record's ``deprecations``)."""
    notices = body.aligners.deprecations if body.aligners is not None else ()
    for notice in notices:
        logger.warning("deprecated request option", extra={"fields": {"deprecation": notice}})
        request.state.deprecations.append(notice)
    return notices


@dataclass
class _Turn:
    """One chat completion on its way through the proxy."""

    body: ChatCompletionRequest
    question: str
    fields: dict[str, Any]
    ident: str
    created: int
    cap: TokenCap
    context: list[str] | None = None
    context_source: str | None = None
    request_record: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    deprecations: tuple[str, ...] = ()
    json_answer: bool = False
    started: float = field(default_factory=time.perf_counter)


def create_app(
    settings: ProxySettings | None = None,
    *,
    squad: Squad | None = None,
    upstream: Upstream | GenerationBackend | None = None,
    request_inspector: RequestInspector | None = None,
) -> Any:
    """The aligning proxy as a FastAPI app (:class:`ProxyApp`'s ``app``).

    Args:
        settings: Limits, API key, upstream and squad options (defaults: local SmolLM2 upstream,
            the default squad).
        squad: Use this squad instead of the one ``settings`` describe (what
            ``settings.policy`` sets explicitly still applies to it, thresholds included;
            ``on_error`` always does: what a failure costs is the server's contract).
        upstream: An :class:`Upstream`, an :class:`OpenAIBackend` (remote) or any other backend
            (local) instead of the one ``settings`` describe.
        request_inspector: The request inspector for ``check_request`` (default: the shipped
            one, loaded at startup when ``settings.check_request`` is on, else when a request
            first asks for the check).
    """
    return ProxyApp(
        settings, squad=squad, upstream=upstream, request_inspector=request_inspector
    ).app


def server_squad(settings: ProxySettings, squad: Squad | None) -> Squad:
    """The squad the server runs: the one ``settings`` describe, or ``squad`` with what the
    server's policy sets explicitly (always its ``on_error``: what a failure costs is the
    server's contract)."""
    if squad is None:
        return Squad.default(settings.criteria, policy=settings.policy)
    return squad.with_options(policy=settings.policy)


class ProxyApp:
    """The aligning proxy: what it serves with, and one method per route (``app`` is the
    FastAPI app; see :func:`create_app` for the arguments)."""

    def __init__(
        self,
        settings: ProxySettings | None = None,
        *,
        squad: Squad | None = None,
        upstream: Upstream | GenerationBackend | None = None,
        request_inspector: RequestInspector | None = None,
    ) -> None:
        self.settings = settings = settings or ProxySettings()
        self.squad = server_squad(settings, squad)
        self.gate = RequestGate(settings, request_inspector)
        self.upstream = _upstream_from(settings, upstream)
        self.api_key = settings.api_key.get_secret_value() if settings.api_key else None
        self.readiness = Readiness()
        self.name = settings.served_model_name
        self.batcher = SquadBatcher(settings.max_batch_size)
        self.counter = _tokenizer_of(self.upstream, self.squad, settings.tokenizer)
        self.app = self._build()

    def _build(self) -> FastAPI:
        app = FastAPI(title="aligners proxy", lifespan=self.lifespan)
        app.state.squad = self.squad
        app.state.upstream = self.upstream
        app.state.readiness = self.readiness
        app.state.batcher = self.batcher
        app.state.request_gate = self.gate
        app.state.settings = self.settings
        install_error_handlers(app)
        install_request_logging(app)
        app.get("/health")(self.health)
        app.get("/ready")(self.ready)
        app.get("/v1/models")(self.models)
        app.get("/v1/models/{model_id:path}")(self.model)
        app.post("/v1/chat/completions")(self.chat_completions)
        return app

    # -- start-up ------------------------------------------------------------------------------

    def warmup(self) -> None:
        if self.settings.warmup:
            self.upstream.warmup()
            warm_squad(self.squad)
            if self.gate.inspector is not None:
                self.gate.inspector.score("Is this a warm-up question?")

    @asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        task = asyncio.create_task(self.readiness.run(self.warmup))
        logger.info(
            "aligning proxy starting",
            extra={"fields": {"upstream": self.upstream.name, "criteria": self.squad.criteria}},
        )
        yield
        task.cancel()

    # -- routes --------------------------------------------------------------------------------

    async def health(self) -> dict[str, str]:
        return {"status": "ok"}

    async def ready(self) -> Any:
        status, body = self.readiness.body()
        if status == 200:
            problem = await self.upstream.aprobe()
            if problem is not None:
                status, body = 503, {"status": "upstream unreachable", "error": problem}
        if status == 200:
            problem = await probe_aligners(self.squad)
            if problem is not None:
                status, body = 503, {"status": "aligner unreachable", "error": problem}
        return JSONResponse(body, status_code=status)

    async def models(self, request: Request) -> dict[str, Any]:
        check_api_key(request, self.api_key)
        return {"object": "list", "data": [self._model_card()]}

    async def model(self, model_id: str, request: Request) -> dict[str, Any]:
        check_api_key(request, self.api_key)
        if model_id != self.name:
            raise APIError(
                404,
                f"The model '{model_id}' does not exist; this proxy serves '{self.name}'",
                param="model",
                code="model_not_found",
            )
        return self._model_card()

    def _model_card(self) -> dict[str, Any]:
        return {"id": self.name, "object": "model", "created": 0, "owned_by": "aligners"}

    async def chat_completions(self, request: Request) -> Any:
        check_api_key(request, self.api_key)
        settings = self.settings
        body: ChatCompletionRequest = await read_json(
            request, settings.max_request_bytes, ChatCompletionRequest
        )
        body.reject_unknown()
        deprecations = deprecated_forms(request, body)
        config = generation_config(body, settings, body.token_limit)
        messages = chat_messages(body)
        squad = _squad_for(self.squad, request, body)  # 400 for bad options, then the policy
        enforce_client_policy(
            self.squad,
            _criteria_from(request, body),
            body.aligners,
            request_check=self.gate.server_policy(),
            allowed=settings.allow_client_policy,
        )
        fields_to_send = self._fields_to_send(body)
        turn = _Turn(
            body=body,
            question=_question(messages),
            fields=request.state.log_fields,
            ident=new_id("chatcmpl"),
            created=int(time.time()),
            cap=TokenCap(self.counter, config.max_new_tokens),
            deprecations=deprecations,
        )
        turn.context, turn.context_source = context_of(body, messages, settings.context_roles)
        turn.fields.update(criteria=squad.criteria, stream=body.stream, requested_model=body.model)
        turn.request_record, answer_it = await self.check_request(squad, turn)
        if not answer_it:
            return await self._turned_away_response(squad, turn, messages)
        deadline = Deadline(settings.request_timeout)
        turn.started = time.perf_counter()
        upstream_result = await self._call_upstream(messages, config, fields_to_send, deadline)
        turn.fields["upstream_ms"] = round((time.perf_counter() - turn.started) * 1000, 2)
        answer, replaced = replace_surrogates(upstream_result.text)
        if replaced:
            turn.notes.append(INVALID_CHARACTERS)
            logger.warning("upstream answer held lone surrogates; replaced with U+FFFD")
        turn.json_answer = body.wants_json or is_json_answer(answer)
        if turn.json_answer and squad.config.on_flag in ("rewrite", "rewrite_or_block"):
            # A rewrite is prose: it would break a client that parses the answer as JSON.
            squad = squad.with_options(on_flag="block")
        if body.stream and not squad.decides_whole:
            return self.streamed(
                self.stream_events(squad, answer, upstream_result, turn),
                self.streaming_header(turn.request_record),
            )
        # Other policies decide on the whole answer before a byte is sent: a blocked answer must
        # never have been half shown, and a raised one is an HTTP error, not a broken stream.
        return await self._whole_answer(squad, answer, upstream_result, turn, config, deadline)

    # -- the parts of a chat completion ----------------------------------------------------------

    def _fields_to_send(self, body: ChatCompletionRequest) -> dict[str, Any]:
        """Request fields the upstream gets besides messages and sampling (response_format)."""
        if body.response_format is None:
            return {}
        if not self.upstream.forwards_fields and body.wants_json:
            raise APIError(
                400,
                "response_format: this proxy's local upstream cannot constrain its output "
                "to JSON; run the proxy with a remote upstream (--upstream) that supports it",
                param="response_format",
            )
        return {"response_format": body.response_format} if self.upstream.forwards_fields else {}

    async def _call_upstream(
        self,
        messages: list[dict[str, str]],
        config: GenerationConfig,
        fields_to_send: dict[str, Any],
        deadline: Deadline,
    ) -> Completion:
        """The upstream's answer; its faults become OpenAI-style errors (502, or 400)."""
        try:
            # Extra fields only where there are some: Upstream subclasses written before the
            # `fields` parameter take (messages, config).
            call = (
                self.upstream.acomplete(messages, config, fields_to_send)
                if fields_to_send
                else self.upstream.acomplete(messages, config)
            )
            result: Completion = await deadline.run(call, "the upstream model")
        except APIError:
            raise
        except GenerationError as exc:
            raise APIError(502, f"upstream model failed: {exc}", "upstream_error") from None
        except ValueError as exc:
            raise APIError(400, f"upstream model cannot take this request: {exc}") from None
        except Exception as exc:  # any other upstream fault is still the upstream's, in our shape
            logger.exception("upstream failed", extra={"fields": {"error": str(exc)}})
            raise APIError(
                502, f"upstream model failed ({type(exc).__name__}: {exc})", "upstream_error"
            ) from None
        return result

    async def _turned_away_response(
        self, squad: Squad, turn: _Turn, messages: list[dict[str, str]]
    ) -> Any:
        assert turn.request_record is not None
        record = self.turned_away(squad, turn.request_record)
        turn.fields.update(action="blocked", stage="request")
        text = squad.config.blocked_message
        used = usage(await self.prompt_tokens_of(messages), turn.cap.count(text))
        if turn.body.stream:
            return self.streamed(
                self.decided_events(text, CONTENT_FILTER, record, turn, used),
                record_summary(record),
            )
        return self.completion(turn, text, CONTENT_FILTER, record, used)

    async def _whole_answer(
        self,
        squad: Squad,
        answer: str,
        upstream_result: Completion,
        turn: _Turn,
        config: GenerationConfig,
        deadline: Deadline,
    ) -> Any:
        start = time.perf_counter()
        text, record = await deadline.run(
            self.align(squad, turn.question, answer, turn.context), "aligning the answer"
        )
        self._complete_record(record, turn)
        if turn.json_answer:
            record["json_answer"] = True
            if record.get("flagged"):
                record["notes"] = [JSON_NOT_REWRITTEN]
        finish = CONTENT_FILTER if record.get("action") == "blocked" else None
        finish = finish or upstream_result.finish_reason
        completion_tokens = upstream_result.completion_tokens
        if text != answer:
            if finish != CONTENT_FILTER:
                text, cut = turn.cap.apply(text)
                if cut:
                    finish = "length"
                    record["cut_at_max_tokens"] = config.max_new_tokens
            completion_tokens = turn.cap.count(text)
        used = usage(upstream_result.prompt_tokens, completion_tokens)
        turn.fields.update(
            align_ms=round((time.perf_counter() - start) * 1000, 2),
            applied=record.get("applied"),
            flagged=record.get("flagged"),
            action=record.get("action"),
            failures=record.get("failures") or None,
        )
        if turn.body.stream:
            return self.streamed(
                self.decided_events(text, finish, record, turn, used), record_summary(record)
            )
        return self.completion(turn, text, finish, record, used)

    @staticmethod
    def _complete_record(record: dict[str, Any], turn: _Turn) -> None:
        """What the record says beside the squad's own result."""
        record["failures"] = [*record.get("failures", []), *turn.notes]
        if turn.deprecations:
            record["deprecations"] = list(turn.deprecations)
        if turn.context_source is not None:
            record["context_source"] = turn.context_source
        if turn.request_record is not None:
            record["request_check"] = turn.request_record

    async def align(
        self, squad: Squad, question: str, answer: str, context: list[str] | None = None
    ) -> tuple[str, dict[str, Any]]:
        if is_blank(answer):
            return answer, AlignmentResult.skipped(question, answer, EMPTY_ANSWER).to_record()
        try:
            result = await self.batcher.align(squad, question, answer, context)
        except AlignmentViolation as violation:
            raise _violation_error(violation.result) from None
        except APIError:
            raise
        except Exception as exc:
            return answer, self.squad_failed(squad, question, answer, exc)
        return result.text, _withheld(result.to_record())

    @staticmethod
    def squad_failed(squad: Squad, question: str, answer: str, exc: Exception) -> dict[str, Any]:
        """``on_error``: the answer's failure record (return_original), or HTTP 500 (raise)."""
        logger.exception("squad failed", extra={"fields": {"error": str(exc)}})
        if squad.config.on_error == "raise":
            raise APIError(
                500, f"squad failed ({type(exc).__name__}: {exc})", "alignment_error"
            ) from None
        return AlignmentResult.failed(
            question, answer, exc, on_flag=squad.config.on_flag
        ).to_record()

    async def check_request(self, squad: Squad, turn: _Turn) -> tuple[dict[str, Any] | None, bool]:
        """The request check's record (None when it does not run) and whether to answer."""
        enabled, threshold = self.gate.options(turn.body)
        if not enabled or not turn.question.strip():
            return None, True
        start = time.perf_counter()
        try:
            check = await self.gate.check(turn.question, threshold)
        except APIError:
            raise
        except Exception as exc:  # like the squad: never lose the answer, say it loudly
            logger.exception("request check failed", extra={"fields": {"error": str(exc)}})
            return {"error": f"request check failed ({type(exc).__name__}: {exc})"}, True
        turn.fields.update(
            request_ms=round((time.perf_counter() - start) * 1000, 2),
            request_score=round(check.score, 4),
            request_allowed=check.allowed,
        )
        return check.to_record(), check.allowed or squad.config.check_only

    @staticmethod
    def turned_away(squad: Squad, request_record: dict[str, Any]) -> dict[str, Any]:
        """The record of a request the request inspector turned away (no upstream call)."""
        if squad.config.on_flag == "raise":
            raise APIError(
                422,
                f"the request was turned away by the request inspector (score "
                f"{request_record['score']:.2f} < {request_record['threshold']:.2f}) and "
                "on_flag is 'raise'; the upstream model was not called",
                "alignment_violation",
                code="request_flagged",
                details={"aligners": {"stage": "request", "request_check": request_record}},
            )
        result = AlignmentResult.blocked_request(
            request_record["request"], squad.config.blocked_message, request_record
        )
        result.on_flag = squad.config.on_flag
        return result.to_record()

    async def prompt_tokens_of(self, messages: list[dict[str, str]]) -> int | None:
        backend = self.upstream.token_backend()
        if backend is None:
            return None
        return await asyncio.to_thread(backend.count_tokens, messages)

    # -- responses -----------------------------------------------------------------------------

    def completion(
        self, turn: _Turn, text: str, finish: str, record: dict[str, Any], used: Any
    ) -> Any:
        body = {
            "id": turn.ident,
            "object": "chat.completion",
            "created": turn.created,
            "model": self.name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish,
                }
            ],
            "usage": used,
            "aligners": record,
        }
        return JSONResponse(body, headers={RECORD_HEADER: header_value(record_summary(record))})

    @staticmethod
    def streaming_header(request_record: dict[str, Any] | None) -> dict[str, Any]:
        """The header of a token stream: the verdict is not known yet, only where it will be
        (and the request check's, which is)."""
        header: dict[str, Any] = {
            "streaming": True,
            "record": "in the last chunk's 'aligners' field",
        }
        if request_record is not None:
            header.update(record_summary({"request_check": request_record}))
        return header

    @staticmethod
    def streamed(events: AsyncIterator[str], header: dict[str, Any]) -> StreamingResponse:
        headers = {RECORD_HEADER: header_value(header)}
        return StreamingResponse(events, media_type="text/event-stream", headers=headers)

    def chunk(
        self, turn: _Turn, delta: dict[str, Any], finish: str | None = None, **extra: Any
    ) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return sse(
            {
                "id": turn.ident,
                "object": "chat.completion.chunk",
                "created": turn.created,
                "model": self.name,
                "choices": [choice],
                **extra,
            }
        )

    def usage_chunk(self, turn: _Turn, used: dict[str, int] | None) -> str:
        """``stream_options.include_usage``: the last chunk, with no choices and the usage."""
        return sse(
            {
                "id": turn.ident,
                "object": "chat.completion.chunk",
                "created": turn.created,
                "model": self.name,
                "choices": [],
                "usage": used,
            }
        )

    async def decided_events(
        self,
        text: str,
        finish: str,
        record: dict[str, Any],
        turn: _Turn,
        used: dict[str, int] | None,
    ) -> AsyncIterator[str]:
        """A stream of an answer already decided: the text in one piece, then the record."""
        yield self.chunk(turn, {"role": "assistant", "content": ""})
        if text:
            yield self.chunk(turn, {"content": text})
        yield self.chunk(turn, {}, finish, aligners=record)
        if turn.body.include_usage:
            yield self.usage_chunk(turn, used)
        yield sse("[DONE]")

    async def stream_events(
        self, squad: Squad, answer: str, upstream_result: Completion, turn: _Turn
    ) -> AsyncIterator[str]:
        question, cap = turn.question, turn.cap
        yield self.chunk(turn, {"role": "assistant", "content": ""})
        record: dict[str, Any]
        sent = ""
        if is_blank(answer):
            record = AlignmentResult.skipped(question, answer, EMPTY_ANSWER).to_record()
            if answer:
                sent = answer
                yield self.chunk(turn, {"content": answer})
        else:
            try:
                stream = squad.stream(question, answer, turn.context)
                async for piece in stream:
                    # A passing answer streams as one piece: the upstream's text, already
                    # within max_tokens. Anything else is the squad's text: capped here.
                    out = piece if not sent and piece == answer else cap.feed(piece)
                    if out:
                        sent += out
                        yield self.chunk(turn, {"content": out})
            except Exception as exc:  # the squad keeps aligner faults; this is anything else
                # Headers are sent, so even under on_error="raise" the answer is the fallback.
                logger.exception("squad failed mid-stream", extra={"fields": {"error": str(exc)}})
                record = AlignmentResult.failed(
                    question, answer, exc, on_flag=squad.config.on_flag
                ).to_record()
                if not sent:
                    sent = answer
                    yield self.chunk(turn, {"content": answer})
            else:
                assert stream.result is not None
                record = stream.result.to_record()
        self._complete_record(record, turn)
        finish = upstream_result.finish_reason
        if cap.cut:
            finish = "length"
            record["cut_at_max_tokens"] = cap.limit
        yield self.chunk(turn, {}, finish, aligners=record)
        if turn.body.include_usage:
            completion_tokens = (
                upstream_result.completion_tokens if sent == answer else cap.count(sent)
            )
            used = usage(upstream_result.prompt_tokens, completion_tokens)
            yield self.usage_chunk(turn, used)
        yield sse("[DONE]")
