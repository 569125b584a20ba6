"""Settings of the two servers (pydantic: bad values fail at startup with a clear message)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from aligners.server.policy import ClientPolicyField
from aligners.squad.result import OnError, OnFlag
from aligners.squad.squad import DEFAULT_BLOCKED_MESSAGE, BlockedMessage


class ServerLimits(BaseModel):
    """What every endpoint enforces."""

    model_config = ConfigDict(extra="forbid")

    api_key: SecretStr | None = Field(
        default=None, description="When set, requests need 'Authorization: Bearer <key>'."
    )
    max_request_bytes: int = Field(default=1_000_000, gt=0, description="Larger bodies get 413.")
    default_max_tokens: int = Field(default=256, gt=0, description="When a request sets none.")
    max_tokens_limit: int = Field(default=4096, gt=0, description="Larger max_tokens get 400.")
    warmup: bool = Field(default=True, description="Load models at startup; /ready waits for it.")
    request_timeout: float = Field(
        default=300.0,
        gt=0,
        description="Seconds one request may take before it gets 504; local generation stops "
        "at this time too, so no request holds the model for longer.",
    )
    shutdown_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds SIGTERM waits for requests in flight before the process exits.",
    )


class ModelServerSettings(ServerLimits):
    """``aligners serve --plain``: one local model behind the OpenAI API, no squad."""

    model: str = Field(default="smollm2", description="Alias, directory, .gguf file or hub id.")
    served_model_name: str | None = Field(
        default=None, description="Name clients use in 'model' (default: the model argument)."
    )
    adapter: str | None = Field(
        default=None, description="A PEFT adapter applied to the model (a trained aligner)."
    )

    classifier: str | None = Field(
        default=None,
        description="A sequence-classification checkpoint served at /classify (vLLM's API).",
    )
    served_classifier_name: str | None = Field(
        default=None, description="Name clients use for the classifier (default: its path)."
    )

    @property
    def name(self) -> str:
        return self.served_model_name or self.model

    @property
    def classifier_name(self) -> str | None:
        return self.served_classifier_name or self.classifier


class ProxySettings(ServerLimits):
    """``aligners serve``: forward chat completions upstream, align the answer, return it."""

    upstream_url: str | None = Field(
        default=None, description="OpenAI-compatible API root (http://host:8000/v1); None = local."
    )
    upstream_model: str | None = Field(
        default=None, description="Model name at the upstream server (required with upstream_url)."
    )
    upstream_api_key_env: str | None = Field(
        default="UPSTREAM_API_KEY", description="Environment variable with the upstream's key."
    )
    upstream_timeout: float = Field(default=120.0, gt=0)
    tokenizer: str | None = Field(
        default=None,
        description="A model (alias, directory or hub id) whose tokenizer counts and caps the "
        "returned text for max_tokens and usage; None: the local upstream's, else a local "
        "aligner's (with neither, a rewrite is neither capped nor counted).",
    )
    upstream_max_retries: int = Field(default=2, ge=0)
    local_model: str = Field(
        default="smollm2", description="The in-process upstream model when upstream_url is None."
    )
    served_model_name: str = Field(default="aligners", description="The name /v1/models lists.")
    criteria: list[str] | None = Field(
        default=None, description="Squad criteria (default: ethical, factuality, helpful)."
    )
    context_roles: list[Literal["system", "developer", "tool"]] = Field(
        default_factory=list,
        description="Message roles whose content is the answer's sources when a request sets "
        "no aligners.context (e.g. ['system', 'tool'] where clients put retrieved documents "
        "there). Empty by default: a generic system prompt ('You are a helpful assistant.') "
        "is no source, and checking an answer against it would drop everything it says.",
    )
    threshold: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Inspector score under which an aligner runs (None: each inspector's "
        "shipped operating point, else 0.5).",
    )
    block_threshold: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Under on_flag='rewrite', an answer its inspector still scores under this "
        "after the aligners ran is blocked (None: each inspector's shipped block threshold; "
        "0: never block).",
    )
    check_only: bool = Field(default=False, description="Only score answers; never rewrite.")
    on_error: OnError = Field(
        default="return_original",
        description="When the squad fails on an answer: return_original (the answer comes back "
        "unaligned, the failure in its record) or raise (HTTP 500, type alignment_error).",
    )
    max_batch_size: int = Field(
        default=32,
        ge=1,
        description="Concurrent requests aligned as one squad batch (1 = one at a time).",
    )
    on_flag: OnFlag = Field(
        default="rewrite",
        description=(
            "What happens to a flagged answer: rewrite (the aligners fix it), block (replaced by "
            "blocked_message, finish_reason content_filter), raise (HTTP 422 "
            "alignment_violation), rewrite_or_block (rewrite, block what still fails). Applied "
            "to a squad passed to create_app only when set explicitly."
        ),
    )
    blocked_message: BlockedMessage = Field(
        default=DEFAULT_BLOCKED_MESSAGE,
        description="The text a blocked answer (or a blocked request) is replaced with.",
    )
    check_request: bool = Field(
        default=False,
        description="Check the last user message with the request inspector before calling the "
        "upstream; a request it turns away is answered with blocked_message, no upstream call.",
    )
    request_threshold: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Requests scoring under it are turned away (default: the inspector's own).",
    )
    allow_client_policy: list[ClientPolicyField] = Field(
        default_factory=list,
        description="Per-request options clients may set freely. Every other policy field of a "
        "request's 'aligners' options may only tighten this server's policy (see "
        "aligners.server.policy); a request that relaxes one gets HTTP 403 naming it.",
    )

    @model_validator(mode="after")
    def _upstream_complete(self) -> ProxySettings:
        if self.upstream_url and not self.upstream_model:
            raise ValueError("upstream_model is required with upstream_url (the name it serves)")
        if self.upstream_url and not self.upstream_url.startswith(("http://", "https://")):
            raise ValueError(f"upstream_url must be an http(s) URL, got {self.upstream_url!r}")
        return self
