"""Errors raised by the engine. All subclass the built-in type a user would catch anyway."""

from __future__ import annotations


class AlignersError(Exception):
    """Base class for errors specific to this library."""


class UnknownCriterionError(AlignersError, ValueError):
    """A criterion name that is neither built in nor registered."""


class UnknownFormatError(AlignersError, ValueError):
    """A prompt format name that is not registered."""


class ModelNotFoundError(AlignersError, FileNotFoundError):
    """A model id or path that cannot be loaded."""


class InputTooLongError(AlignersError, ValueError):
    """An answer does not fit the model's context and the overflow policy is ``"error"``."""


class GenerationError(AlignersError, RuntimeError):
    """A backend failed to produce text (server down, malformed output, ...)."""
