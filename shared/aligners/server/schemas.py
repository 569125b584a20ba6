"""Request bodies of the OpenAI-compatible endpoints (only the fields these servers act on).

Unknown fields are accepted and ignored, as OpenAI clients send many optional ones; fields that
would change the answer in ways these servers cannot honour (``n > 1``, tools) are rejected.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    StrictBool,
    StrictInt,
    field_validator,
    model_validator,
)

from aligners.server.common import APIError
from aligners.squad.policy import (
    BlockedMessage,
    Flag,
    OnFlag,
    SquadPolicy,
    Thresholds,
    Unit,
    describe,
)


class ChatMessage(BaseModel):
    """One message; ``content`` is a string or a list of ``{"type": "text", "text": ...}`` parts."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    # strict, as OpenAI's API is: "stream": "yes" is a client bug to report, not a yes
    stream: StrictBool | None = False
    # strict too: JSON true is not 1 token, nor "64" a number (OpenAI's API refuses both)
    max_tokens: StrictInt | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    stop: str | list[str] | None = None
    n: StrictInt | None = Field(default=None, ge=1)

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> list[str] | str | None:
        if isinstance(value, list) and len(value) > 16:
            raise ValueError("at most 16 stop strings")
        return value

    @property
    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(s for s in self.stop if s)

    def reject_unsupported(self) -> None:
        if self.n not in (None, 1):
            raise APIError(400, f"n={self.n} is not supported; ask for one choice (n=1)", param="n")
        extra = self.model_extra or {}
        for field in ("tools", "functions", "tool_choice", "function_call"):
            if extra.get(field) not in (None, [], "none"):
                raise APIError(400, f"'{field}' is not supported by this server", param=field)
        if extra.get("logprobs") or extra.get("best_of") not in (None, 1):
            raise APIError(400, "logprobs and best_of are not supported by this server")


#: Per-request flags that earlier releases also took as the strings "true" and "false".
STRING_FLAGS = ("check_only", "check_request")
#: Per-request thresholds that earlier releases also took as numeric strings ("0.5").
STRING_NUMBERS = ("threshold", "block_threshold", "request_threshold")


def _legacy_form(name: str, value: Any) -> tuple[Any, str | None]:
    """A deprecated form of a per-request option (a flag as "true"/"false", a threshold as a
    numeric string) as the value it names, with the notice a client gets; else as it is."""
    if not isinstance(value, str):
        return value, None
    word = value.strip().lower()
    if name in STRING_FLAGS and word in ("true", "false"):
        return word == "true", f"send the JSON boolean {word}"
    if name in STRING_NUMBERS:
        try:
            number = float(value)
        except ValueError:
            return value, None
        return number, f"send the JSON number {number}"
    return value, None


class AlignersOptions(BaseModel):
    """Per-request squad options, sent as the ``aligners`` field of a chat completion request.

    ``check_only`` and ``check_request`` are JSON booleans and the thresholds JSON numbers; the
    strings earlier releases also took (``"true"``/``"false"`` in any case, ``"0.5"``) still
    work in this release with a deprecation notice (:attr:`deprecations`); any other string is
    a 400.
    """

    model_config = ConfigDict(extra="forbid")

    _deprecations: tuple[str, ...] = PrivateAttr(default=())

    @model_validator(mode="wrap")
    @classmethod
    def _legacy_forms(
        cls, data: Any, handler: ModelWrapValidatorHandler[AlignersOptions]
    ) -> AlignersOptions:
        notices: list[str] = []
        if isinstance(data, Mapping):
            data = dict(data)
            for name in (*STRING_FLAGS, *STRING_NUMBERS):
                given = data.get(name)
                value, fix = _legacy_form(name, given)
                if fix is not None:
                    data[name] = value
                    notices.append(
                        f"aligners.{name}: the string {given!r} is deprecated and will be a 400 "
                        f"in the next release; {fix}"
                    )
        options = handler(data)
        options._deprecations = tuple(notices)
        return options

    @property
    def deprecations(self) -> tuple[str, ...]:
        """Deprecated forms this request used, one notice each (the proxy logs them and sends
        them back in a ``Warning`` header and the record's ``deprecations``)."""
        return self._deprecations

    criteria: list[str] | str | None = Field(
        default=None, description="Criteria to run (a subset of the proxy's squad)."
    )
    # The policy fields a request may set (the tighten-only rule: aligners.server.policy);
    # their types and help text are SquadPolicy's.
    threshold: Thresholds | None = Field(default=None, description=describe("threshold"))
    block_threshold: Thresholds | None = Field(
        default=None, description=describe("block_threshold")
    )
    check_only: Flag | None = Field(default=None, description=describe("check_only"))
    on_flag: OnFlag | None = Field(default=None, description=describe("on_flag"))
    blocked_message: BlockedMessage | None = Field(
        default=None, description=describe("blocked_message")
    )
    check_request: Flag | None = Field(default=None, description=describe("check_request"))
    request_threshold: Unit | None = Field(default=None, description=describe("request_threshold"))
    context: str | list[str] | None = Field(
        default=None,
        description=(
            "The answer's sources (one text, or a list of passages) for criteria that read them "
            "(grounded). Wins over the messages of the server's context roles (none by "
            "default; --context-roles), one passage per message."
        ),
    )

    def policy(self) -> SquadPolicy:
        """The policy fields this request sets, as a :class:`SquadPolicy` (merged onto the
        server's squad)."""
        names = ("threshold", "block_threshold", "check_only", "on_flag", "blocked_message")
        return SquadPolicy(**{n: getattr(self, n) for n in names if getattr(self, n) is not None})


#: Every parameter of OpenAI's chat completions API, and ours (``aligners``). Anything else is a
#: 400 naming it, as OpenAI answers: a misspelt ``max_token`` must not be silently ignored.
CHAT_PARAMETERS = frozenset(
    (
        "messages",
        "model",
        "audio",
        "frequency_penalty",
        "function_call",
        "functions",
        "logit_bias",
        "logprobs",
        "max_completion_tokens",
        "max_tokens",
        "metadata",
        "modalities",
        "n",
        "parallel_tool_calls",
        "prediction",
        "presence_penalty",
        "prompt_cache_key",
        "reasoning_effort",
        "response_format",
        "safety_identifier",
        "seed",
        "service_tier",
        "stop",
        "store",
        "stream",
        "stream_options",
        "temperature",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "user",
        "verbosity",
        "web_search_options",
        "aligners",
    )
)
#: Parameters that would change the text in ways the proxy cannot honour, with the values that
#: change nothing (sent by some clients as defaults).
NEUTRAL_VALUES: dict[str, tuple[Any, ...]] = {
    "audio": (None,),
    "prediction": (None,),
    "web_search_options": (None,),
    "logit_bias": (None, {}),
    "presence_penalty": (None, 0, 0.0),
    "frequency_penalty": (None, 0, 0.0),
    "top_p": (None, 1, 1.0),
    "top_logprobs": (None, 0),
    "modalities": (None, ["text"]),
}


class ChatCompletionRequest(_Sampling):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: StrictInt | None = Field(default=None, gt=0)
    stream_options: dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    aligners: AlignersOptions | None = None

    @field_validator("response_format")
    @classmethod
    def _format_type(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        kinds = ("text", "json_object", "json_schema")
        if value is not None and value.get("type") not in kinds:
            raise ValueError(f"response_format.type must be one of {', '.join(kinds)}")
        return value

    @property
    def wants_json(self) -> bool:
        """Whether the client asked for a JSON answer (``json_object`` or ``json_schema``)."""
        return self.response_format is not None and self.response_format["type"] != "text"

    @property
    def include_usage(self) -> bool:
        """``stream_options={"include_usage": true}``: a stream ends with a usage chunk."""
        return bool((self.stream_options or {}).get("include_usage"))

    def reject_unknown(self) -> None:
        """A 400 naming the first parameter that OpenAI's API does not have or that this proxy
        cannot honour with the value sent."""
        for name in self.model_extra or {}:
            if name not in CHAT_PARAMETERS:
                raise APIError(400, f"Unrecognized request argument supplied: {name}", param=name)
        extra = self.model_extra or {}
        for name, neutral in NEUTRAL_VALUES.items():
            if name in extra and extra[name] not in neutral:
                raise APIError(
                    400,
                    f"{name}={extra[name]!r} is not supported by this proxy (the aligned answer "
                    "could not honour it); leave it out",
                    param=name,
                )
        if self.stream_options is not None and not self.stream:
            raise APIError(
                400, "stream_options is only allowed when stream is true", param="stream_options"
            )

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(_Sampling):
    """``POST /v1/completions``."""

    prompt: str | list[str]

    @field_validator("prompt")
    @classmethod
    def _non_empty(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not value:
            raise ValueError("prompt list is empty")
        return value

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


class ClassifyRequest(BaseModel):
    """``POST /classify``: vLLM's classification API (texts in, class probabilities out)."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    input: str | list[str]

    @field_validator("input")
    @classmethod
    def _non_empty(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not value:
            raise ValueError("input list is empty")
        return value

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)
