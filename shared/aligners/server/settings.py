"""Settings of the two servers (pydantic: bad values fail at startup with a clear message)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from aligners.server.policy import ClientPolicyField
from aligners.squad.policy import OnError, OnFlag, SquadPolicy, fold_policy


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
    max_batch_size: int = Field(
        default=32,
        ge=1,
        description="Concurrent requests aligned as one squad batch (1 = one at a time).",
    )
    policy: SquadPolicy = Field(
        default_factory=lambda: SquadPolicy.for_surface("server"),
        description="What happens to flagged and failing answers and to harmful requests (an "
        "aligners.SquadPolicy; on_error defaults to return_original here: a server answers "
        "every request it can, and raise is HTTP 500 alignment_error). The flat keywords "
        "(on_flag=..., threshold=..., check_request=...) are merged onto it. Applied to a "
        "squad passed to create_app where set explicitly (on_error always).",
    )
    allow_client_policy: list[ClientPolicyField] = Field(
        default_factory=list,
        description="Per-request options clients may set freely. Every other policy field of a "
        "request's 'aligners' options may only tighten this server's policy (see "
        "aligners.server.policy); a request that relaxes one gets HTTP 403 naming it.",
    )

    @model_validator(mode="before")
    @classmethod
    def _flat_policy(cls, data: Any) -> Any:
        return fold_policy(data, "server")

    # The policy's options, read where the server acts on them (declared in SquadPolicy).
    @property
    def threshold(self) -> float | dict[str, float] | None:
        return self.policy.threshold

    @property
    def block_threshold(self) -> float | dict[str, float] | None:
        return self.policy.block_threshold

    @property
    def check_only(self) -> bool:
        return self.policy.check_only

    @property
    def on_error(self) -> OnError:
        return self.policy.on_error

    @property
    def on_flag(self) -> OnFlag:
        return self.policy.on_flag

    @property
    def blocked_message(self) -> str:
        return self.policy.blocked_message

    @property
    def check_request(self) -> bool:
        return self.policy.check_request is not False

    @property
    def request_threshold(self) -> float | None:
        return self.policy.request_threshold

    @model_validator(mode="after")
    def _upstream_complete(self) -> ProxySettings:
        if self.upstream_url and not self.upstream_model:
            raise ValueError("upstream_model is required with upstream_url (the name it serves)")
        if self.upstream_url and not self.upstream_url.startswith(("http://", "https://")):
            raise ValueError(f"upstream_url must be an http(s) URL, got {self.upstream_url!r}")
        return self
