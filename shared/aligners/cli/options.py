"""Options several commands share, spelt once.

The squad's policy options are :class:`~aligners.SquadPolicy` fields: :data:`POLICY_FLAGS` is
the one table from a field to its flag (``on_flag`` -> ``--on-flag``), and
:func:`policy_option` declares the flag with the field's own help text, so ``align``, ``eval``
and ``serve`` say the same thing. :func:`cli_policy` turns the values given into a validated
policy over the command's surface defaults, a bad value a usage error naming the flag.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, get_type_hints

import typer
from pydantic import ValidationError

from aligners.squad.policy import (
    POLICY_CHOICES,
    POLICY_FIELDS,
    SURFACE_DEFAULTS,
    SquadPolicy,
    describe,
)

CRITERIA_HELP = "Comma-separated criteria (default: the default squad's, today ethical)."

#: The CLI flag of every policy field, derived from its name (the one table).
POLICY_FLAGS: dict[str, str] = {name: "--" + name.replace("_", "-") for name in POLICY_FIELDS}

#: What each policy field is on the command line (typer reads these types).
_CLI_TYPES: dict[str, Any] = {
    "on_flag": str | None,
    "on_error": str | None,
    "threshold": float | None,
    "block_threshold": float | None,
    "blocked_message": str | None,
    "check_only": bool,
    "check_request": bool,
    "request_threshold": float | None,
    "on_token_limit": str | None,
}
#: Policy fields that are on/off switches on the command line.
_SWITCHES = ("check_only", "check_request")
#: Policy fields that are scores in [0, 1] (one number on the command line).
_UNITS = ("threshold", "block_threshold", "request_threshold")


def policy_option(field: str, surface: str = "cli", note: str | None = None) -> Any:
    """The typer option of policy field ``field``: its flag from :data:`POLICY_FLAGS`, its help
    from the field's description (plus ``note``, what the command adds), and its default: off
    for a switch, else None (the policy's, or ``surface``'s default, stated in the help)."""
    flag = POLICY_FLAGS[field]
    help_text = describe(field)
    default = SURFACE_DEFAULTS[surface].get(field, SquadPolicy.model_fields[field].default)
    if field in POLICY_CHOICES and default is not None:
        help_text += f" Default: {default}."
    if note:
        help_text += f" {note}"
    if field in _SWITCHES:
        return typer.Option(False, flag, help=help_text)
    if field in _UNITS:
        return typer.Option(None, flag, min=0.0, max=1.0, help=help_text)
    return typer.Option(None, flag, help=help_text)


def cli_policy(surface: str = "cli", **values: Any) -> SquadPolicy:
    """The policy the command line describes: ``values`` (policy fields; None and a switch
    left off: not given) merged onto ``surface``'s defaults.

    Raises:
        typer.BadParameter: naming the flag of a bad value (``--on-flag must be one of ...``).
    """
    given = {
        name: value
        for name, value in values.items()
        if value is not None and not (name in _SWITCHES and value is False)
    }
    try:
        return SquadPolicy.for_surface(surface).merge(given)
    except ValidationError as error:
        raise typer.BadParameter(_flag_error(error, given)) from None


def _flag_error(error: ValidationError, given: dict[str, Any]) -> str:
    first = error.errors()[0]
    field = str(first["loc"][0])
    flag = POLICY_FLAGS.get(field, field)
    if field in POLICY_CHOICES:
        choices = ", ".join(POLICY_CHOICES[field])
        return f"{flag} must be one of {choices} (got {given.get(field)!r})"
    message = str(first["msg"]).removeprefix("Value error, ")
    if message.startswith(field):
        return flag + message.removeprefix(field)
    return f"{flag}: {message}"


def inspector_option() -> Any:
    """``--inspector``: a saved inspector directory for every member."""
    return typer.Option(
        None,
        "--inspector",
        exists=True,
        file_okay=False,
        help="Saved inspector directory for every member (from `aligners train`; a "
        "cross-encoder serves each criterion from its head). Default: the shipped ones.",
    )


Command = TypeVar("Command", bound=Callable[..., Any])


def with_options(
    options: Mapping[str, tuple[Any, Any]], into: str, build: Callable[[dict[str, Any]], Any]
) -> Callable[[Command], Command]:
    """A decorator adding the typer ``options`` (``{name: (type, typer.Option)}``) to a command
    and calling it with ``into=build(their values)`` instead (the command declares ``into`` as
    its last parameter; it is hidden from the command line)."""

    def decorate(command: Command) -> Command:
        hints = get_type_hints(command)
        own = [
            p.replace(annotation=hints.get(p.name, p.annotation))
            for p in inspect.signature(command).parameters.values()
            if p.name != into
        ]
        added = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind)
            for name, (kind, option) in options.items()
        ]

        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in options}
            return command(*args, **{into: build(values)}, **kwargs)

        parameters = own + added
        run.__signature__ = inspect.Signature(parameters, return_annotation=None)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": None}
        return run  # type: ignore[return-value]

    return decorate


def policy_options(
    surface: str = "cli",
    fields: Sequence[str] = POLICY_FIELDS,
    notes: Mapping[str, str] | None = None,
) -> Callable[[Command], Command]:
    """A decorator for a command that takes ``policy: SquadPolicy``: it adds one option per
    policy field in ``fields`` (:func:`policy_option`: the flag from :data:`POLICY_FLAGS`, the
    field's help plus ``notes[field]``) and calls the command with the policy they describe
    (:func:`cli_policy` over ``surface``'s defaults; a bad value is a usage error naming the
    flag). The options are generated from the fields, so no command declares them again."""
    options = {
        name: (_CLI_TYPES[name], policy_option(name, surface, (notes or {}).get(name)))
        for name in fields
    }
    return with_options(options, "policy", lambda values: cli_policy(surface, **values))
