"""Pieces both servers share: OpenAI-style errors, body limits, API keys, JSON logs, SSE."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from aligners.validation import validate_text

logger = logging.getLogger("aligners.server")

T = TypeVar("T")

#: How deep a request body's JSON may nest. A chat request needs about 6 levels; without a limit
#: 50,000 nested brackets exhaust Python's recursion while parsing or validating (a 500).
MAX_JSON_DEPTH = 64


def json_depth_over(data: Any, limit: int) -> bool:
    """Whether parsed JSON ``data`` nests deeper than ``limit`` (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


class Deadline:
    """One request's time budget: work run through it past the budget becomes HTTP 504."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    async def run(self, work: Awaitable[T], what: str) -> T:
        """Await ``work`` within what is left of the budget."""
        left = max(self.end - time.monotonic(), 0.0)
        try:
            return await asyncio.wait_for(work, left)
        except TimeoutError:
            raise APIError(
                504,
                f"{what} did not finish within this server's request_timeout of {self.seconds:g}s",
                "timeout_error",
                code="timeout",
            ) from None


class APIError(Exception):
    """An error the client should see as an OpenAI-style ``{"error": {...}}`` body."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.details = details or {}

    def body(self) -> dict[str, Any]:
        codes = {400: "bad_request", 401: "invalid_api_key", 404: "not_found", 413: "too_large"}
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code or codes.get(self.status, str(self.status)),
                **self.details,  # extra fields (e.g. the squad record of a flagged answer)
            }
        }


def error_response(error: APIError) -> Any:
    from fastapi.responses import JSONResponse

    return JSONResponse(error.body(), status_code=error.status)


def install_error_handlers(app: Any) -> None:
    """Every error, including FastAPI's own 404/405/422, leaves in the OpenAI error shape."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> Any:
        return error_response(exc)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Any:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        message = f"{exc.detail}: {request.method} {request.url.path}"
        return error_response(APIError(exc.status_code, message, kind))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Any:
        return error_response(APIError(400, f"invalid request: {exc.errors()}"))


def describe_validation_error(error: ValidationError) -> str:
    """One readable line per problem: ``messages.0.content: Input should be a valid string``."""
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "body"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


async def read_json(request: Any, limit: int, model: type[BaseModel]) -> Any:
    """Read at most ``limit`` bytes of JSON body and validate it, or raise a clear 4xx."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"request body is {declared} bytes; the limit is {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():  # counted as it arrives: chunked uploads cannot dodge it
        size += len(chunk)
        if size > limit:
            raise APIError(413, f"request body exceeds the limit; the limit is {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise APIError(400, "request body is empty; send a JSON object")
    too_deep = APIError(
        400, f"request body nests JSON deeper than this server's limit of {MAX_JSON_DEPTH} levels"
    )
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise APIError(400, f"request body is not valid JSON: {exc}") from None
    except RecursionError:  # deeper than the parser itself can go
        raise too_deep from None
    if json_depth_over(data, MAX_JSON_DEPTH):
        raise too_deep
    if not isinstance(data, dict):
        raise APIError(400, f"request body must be a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise APIError(400, f"invalid request: {describe_validation_error(exc)}") from None


def check_api_key(request: Any, api_key: str | None) -> None:
    """Require ``Authorization: Bearer <key>`` when the server was given a key."""
    if not api_key:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise APIError(
            401, "missing API key: send 'Authorization: Bearer <key>'", "authentication_error"
        )
    if not hmac.compare_digest(token.strip().encode(), api_key.encode()):
        raise APIError(401, "invalid API key", "authentication_error")


def sse(data: Any) -> str:
    """One server-sent event carrying JSON (or the literal ``[DONE]``)."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {payload}\n\n"


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def message_text(content: Any) -> str:
    """The text of an OpenAI message ``content`` (a string, or a list of ``text`` parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return _no_surrogates(content, "message content")
    texts = []
    for i, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text":
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise APIError(400, f"only text message content is supported, got a {kind!r} part")
        if not isinstance(part.get("text"), str):
            raise APIError(
                400,
                f"content[{i}] is a text part whose 'text' must be a string, got "
                f"{type(part.get('text')).__name__}",
            )
        texts.append(_no_surrogates(part["text"], f"content[{i}].text"))
    return "".join(texts)


def _no_surrogates(text: str, where: str) -> str:
    """``text``, or a 400 when it holds a lone surrogate (no UTF-8 encoding exists for it)."""
    try:
        validate_text(text, where)
    except ValueError as exc:
        raise APIError(400, str(exc)) from None
    return text


def replace_surrogates(text: str) -> tuple[str, bool]:
    """``text`` with lone surrogates replaced by U+FFFD, and whether any were."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text), True
    return text, False


# -- structured logs ---------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any ``extra={"fields": ...}``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_json_logging(level: str = "info") -> None:
    """Send the ``aligners`` and ``uvicorn`` loggers to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("aligners", "uvicorn", "uvicorn.error"):
        target = logging.getLogger(name)
        target.handlers = [handler]
        target.setLevel(level.upper())
        target.propagate = False


def warning_header(notice: str) -> str:
    """A ``Warning`` header value for a deprecation notice (code 299: a persistent warning)."""
    return '299 aligners "' + notice.replace("\\", "\\\\").replace('"', '\\"') + '"'


def install_request_logging(app: Any) -> None:
    """Log every request as one JSON line (the access log) and echo an ``X-Request-ID``; each
    notice a handler adds to ``request.state.deprecations`` becomes a ``Warning`` header."""
    from fastapi import Request

    @app.middleware("http")
    async def _log(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex[:16]
        request.state.request_id = request_id
        request.state.log_fields = {}
        request.state.deprecations = []  # notices for deprecated forms the request used
        start = time.perf_counter()
        response = await call_next(request)
        response.headers["X-Request-ID"] = request_id
        for notice in request.state.deprecations:
            response.headers.append("Warning", warning_header(notice))
        fields = {
            "request_id": request_id,
            "method": request.method,
            "path": request.url.path,
            "status": response.status_code,
            "duration_ms": round((time.perf_counter() - start) * 1000, 2),
            "client": request.client.host if request.client else None,
        }
        fields.update(request.state.log_fields)
        logger.info("request", extra={"fields": fields})
        return response
