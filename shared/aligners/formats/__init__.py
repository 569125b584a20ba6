"""Prompt formats: byte-exact per checkpoint, pluggable for your own."""

from __future__ import annotations

from collections.abc import Callable

from aligners.errors import UnknownFormatError
from aligners.formats.base import ChatMessages, Prompt, PromptFormat
from aligners.formats.builtin import ChatFormat, IbmFormat, PkuFormat, PkuV1Format, TemplateFormat

_FORMATS: dict[str, Callable[[], PromptFormat]] = {
    "ibm": IbmFormat,
    "pku-v1": PkuV1Format,
    "pku": PkuFormat,
    "chat": ChatFormat,
}


def register_format(name: str, factory: Callable[[], PromptFormat]) -> None:
    """Make a format available by name (in configs, the CLI and ``get_format``)."""
    _FORMATS[name] = factory


def get_format(fmt: str | PromptFormat) -> PromptFormat:
    """Resolve a format name, a template string with ``{question}``/``{answer}``, or an object."""
    if isinstance(fmt, PromptFormat):
        return fmt
    if not isinstance(fmt, str):
        raise TypeError(
            f"format must be a name, a template string or a PromptFormat, got {type(fmt).__name__}"
        )
    if fmt in _FORMATS:
        return _FORMATS[fmt]()
    if "{question}" in fmt and "{answer}" in fmt:
        return TemplateFormat(fmt)
    raise UnknownFormatError(
        f"unknown format {fmt!r}; known: {', '.join(sorted(_FORMATS))}, "
        "or a template string with {question} and {answer}"
    )


def list_formats() -> list[str]:
    """Names of all registered formats."""
    return sorted(_FORMATS)


__all__ = [
    "ChatFormat",
    "ChatMessages",
    "IbmFormat",
    "PkuFormat",
    "PkuV1Format",
    "Prompt",
    "PromptFormat",
    "TemplateFormat",
    "get_format",
    "list_formats",
    "register_format",
]
