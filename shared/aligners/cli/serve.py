"""``aligners serve``: the aligning proxy, or (``--plain``) a local model behind the OpenAI API."""

from __future__ import annotations

import os
from typing import Any

import typer

from aligners.cli.options import policy_options, with_options
from aligners.squad.policy import SquadPolicy


def _api_key(env: str | None) -> str | None:
    if not env:
        return None
    value = os.environ.get(env)
    return value or None


def build_proxy_squad(
    criteria: str | None,
    aligner_url: str | None,
    aligner_model: str | None,
    aligner_format: str | None,
    aligner_api_key_env: str | None,
    aligner_max_new_tokens: int | None = None,
) -> Any:
    """The squad for the proxy: the default squad, or its inspectors with remote aligners (the
    server applies its settings' policy to it: thresholds, on_flag, on_error, ...)."""
    from aligners.aligner.model import Aligner
    from aligners.backends.openai import OpenAIBackend
    from aligners.cli.align import build_squad

    model: str | Aligner | None = aligner_model
    if aligner_url:
        if not aligner_model:
            raise typer.BadParameter("--aligner-model is required with --aligner-url")
        # One client for all members: they share its connection pool and concurrency limit.
        backend = OpenAIBackend(aligner_url, aligner_model, api_key_env=aligner_api_key_env)
        model = Aligner(format=aligner_format or "chat", backend=backend)
    return build_squad(
        criteria,
        None if aligner_url else aligner_format,
        model,
        None,
        max_new_tokens=aligner_max_new_tokens,
    )


#: What every endpoint enforces (``ServerLimits`` fields): these options become ``limits``.
LIMIT_OPTIONS: dict[str, tuple[Any, Any]] = {
    name: (kind, typer.Option(default, "--" + name.replace("_", "-"), min=low, help=help_text))
    for name, kind, default, low, help_text in (
        ("max_request_bytes", int, 1_000_000, 1, None),
        ("default_max_tokens", int, 256, 1, None),
        ("max_tokens_limit", int, 4096, 1, None),
        (
            "request_timeout",
            float,
            300.0,
            0.1,
            "Seconds a request may take before it gets 504 (local generation stops too).",
        ),
        (
            "shutdown_timeout",
            float,
            10.0,
            0.1,
            "Seconds SIGTERM waits for requests in flight before the process exits.",
        ),
    )
}


@with_options(LIMIT_OPTIONS, "limits", dict)
@policy_options(
    "server",
    notes={
        "on_flag": "Here block answers with finish_reason content_filter, raise with HTTP 422.",
        "check_request": "Here: the last user message, before the upstream.",
        "on_error": "Here raise is HTTP 500 alignment_error.",
    },
)
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8000, "--port", min=0, max=65535),
    plain: bool = typer.Option(
        False, "--plain", help="Serve --model directly (no squad): an OpenAI-compatible server."
    ),
    model: str = typer.Option(
        "smollm2",
        "--model",
        help="Local model: the upstream of the proxy, or what --plain serves.",
    ),
    served_model_name: str | None = typer.Option(
        None, "--served-model-name", help="Name in /v1/models (proxy default: aligners)."
    ),
    upstream_url: str | None = typer.Option(
        None,
        "--upstream-url",
        help="Remote OpenAI-compatible API root, e.g. http://gpu:8000/v1.",
    ),
    upstream_model: str | None = typer.Option(
        None, "--upstream-model", help="Model name at the upstream server."
    ),
    upstream_api_key_env: str = typer.Option(
        "UPSTREAM_API_KEY", "--upstream-api-key-env", help="Env var with the upstream's key."
    ),
    upstream_timeout: float = typer.Option(120.0, "--upstream-timeout", min=0.1),
    tokenizer: str | None = typer.Option(
        None,
        "--tokenizer",
        help="Model whose tokenizer counts the returned text (max_tokens, usage); default: "
        "the local upstream's or a local aligner's.",
    ),
    criteria: str | None = typer.Option(None, "--criteria", "-c", help="Comma-separated criteria."),
    context_roles: str | None = typer.Option(
        None,
        "--context-roles",
        help="Comma-separated message roles (system, developer, tool) whose content is "
        "the answer's sources when a request sets no aligners.context (default: none).",
    ),
    allow_client_policy: list[str] | None = typer.Option(
        None,
        "--allow-client-policy",
        help="Let clients set this per-request option freely (repeatable): criteria, "
        "threshold, block_threshold, check_only, on_flag, check_request, "
        "request_threshold. Otherwise a request may only tighten the server's policy "
        "(a relaxing one gets HTTP 403).",
    ),
    aligner_url: str | None = typer.Option(
        None, "--aligner-url", help="Run the aligners on this OpenAI-compatible server."
    ),
    aligner_model: str | None = typer.Option(
        None, "--aligner-model", help="Aligner model (local path/alias, or the remote name)."
    ),
    aligner_format: str | None = typer.Option(None, "--aligner-format", help="e.g. chat, pku."),
    adapter: str | None = typer.Option(
        None, "--adapter", help="With --plain: a PEFT adapter on --model (a trained aligner)."
    ),
    classifier: str | None = typer.Option(
        None, "--classifier", help="With --plain: also serve this classifier at /classify."
    ),
    served_classifier_name: str | None = typer.Option(None, "--served-classifier-name"),
    aligner_api_key_env: str = typer.Option("ALIGNER_API_KEY", "--aligner-api-key-env"),
    aligner_max_new_tokens: int | None = typer.Option(
        None, "--aligner-max-new-tokens", min=1, help="Cap on each correction's length."
    ),
    api_key_env: str = typer.Option(
        "ALIGNERS_API_KEY",
        "--api-key-env",
        help="Env var holding this server's key; when set, clients must send it.",
    ),
    log_level: str = typer.Option("info", "--log-level"),
    policy: SquadPolicy | None = None,
    limits: dict[str, Any] | None = None,
) -> None:
    """Serve the aligning proxy (default) or a plain model (--plain) with the OpenAI API."""
    from aligners.server import run

    limits = {"api_key": _api_key(api_key_env), **(limits or {})}
    options: dict[str, Any] = {
        "upstream_url": upstream_url,
        "upstream_model": upstream_model,
        "upstream_api_key_env": upstream_api_key_env,
        "upstream_timeout": upstream_timeout,
        "tokenizer": tokenizer,
        "served_model_name": served_model_name,
        "criteria": criteria,
        "context_roles": context_roles,
        "allow_client_policy": allow_client_policy,
        "aligner": (aligner_url, aligner_model, aligner_format, aligner_api_key_env),
        "aligner_max_new_tokens": aligner_max_new_tokens,
        "plain_options": {
            "adapter": adapter,
            "classifier": classifier,
            "served_classifier_name": served_classifier_name,
        },
    }
    application = _application(plain, model, policy, limits, **options)
    run(
        application,
        host=host,
        port=port,
        log_level=log_level,
        shutdown_timeout=limits["shutdown_timeout"],
    )


def _application(
    plain: bool,
    model: str,
    policy: SquadPolicy | None,
    limits: dict[str, Any],
    *,
    upstream_url: str | None,
    served_model_name: str | None,
    criteria: str | None,
    context_roles: str | None,
    allow_client_policy: list[str] | None,
    aligner: tuple[str | None, str | None, str | None, str],
    aligner_max_new_tokens: int | None,
    plain_options: dict[str, Any],
    **upstream: Any,
) -> Any:
    """The app ``serve`` runs: the plain model server, or the proxy the options describe."""
    from pydantic import ValidationError

    from aligners.server.common import describe_validation_error

    aligner_url, aligner_model, aligner_format, aligner_api_key_env = aligner
    try:
        if plain:
            if upstream_url or aligner_url:
                raise typer.BadParameter(
                    "--plain serves --model only; drop the --upstream/--aligner options"
                )
            if _squad_policy_given(policy) or allow_client_policy:
                raise typer.BadParameter(
                    "--on-flag, --on-error, --blocked-message, --check-request and "
                    "--allow-client-policy go with the proxy, not --plain (it has no squad)"
                )
            return _plain_app(model, served_model_name, limits | plain_options)
        if plain_options["classifier"] or plain_options["adapter"]:
            raise typer.BadParameter("--classifier and --adapter go with --plain")
        proxy = _proxy_settings(
            upstream_url=upstream_url,
            **upstream,
            local_model=model,
            served_model_name=served_model_name or "aligners",
            policy=policy,
            allow_client_policy=_policy_fields(allow_client_policy or []),
            context_roles=[r.strip() for r in (context_roles or "").split(",") if r.strip()],
            **limits,
        )
        squad = build_proxy_squad(
            criteria,
            aligner_url,
            aligner_model,
            aligner_format,
            aligner_api_key_env,
            aligner_max_new_tokens,
        )
        return _proxy_app(proxy, squad)
    except ValidationError as exc:  # one line naming the bad option, not a pydantic dump
        raise typer.BadParameter(describe_validation_error(exc)) from None


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the CLI."""
    app.command()(serve)


def _squad_policy_given(policy: SquadPolicy | None) -> bool:
    """Whether the command line set a squad option that ``--plain`` (no squad) cannot honour."""
    if policy is None:
        return False
    served = SquadPolicy.for_surface("server")
    return (
        policy.on_flag != served.on_flag
        or policy.on_error != served.on_error
        or "blocked_message" in policy.explicit()
        or policy.check_request is not False
    )


def _policy_fields(names: list[str]) -> list[str]:
    from aligners.server.policy import parse_policy_fields

    try:
        return parse_policy_fields([p.strip() for n in names for p in n.split(",") if p.strip()])
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _plain_app(model: str, served_model_name: str | None, limits: dict[str, Any]) -> Any:
    from aligners.server import ModelServerSettings, create_model_app

    settings = ModelServerSettings(model=model, served_model_name=served_model_name, **limits)
    return create_model_app(model, settings)


def _proxy_settings(**values: Any) -> Any:
    from aligners.server import ProxySettings

    return ProxySettings(**values)


def _proxy_app(settings: Any, squad: Any) -> Any:
    from aligners.server import create_app

    inspector = None
    if settings.check_request:
        from aligners.inspector.request import default_request_inspector

        try:
            inspector = default_request_inspector()
        except FileNotFoundError as exc:
            raise typer.BadParameter(f"--check-request needs a request inspector: {exc}") from None
    return create_app(settings, squad=squad, request_inspector=inspector)
