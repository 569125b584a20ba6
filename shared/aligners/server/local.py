"""Moved to :mod:`aligners.backends.local` (the chat model integrations use it without the
``server`` extra); kept here so existing imports work."""

from aligners.backends.local import Completion, LocalGenerator

__all__ = ["Completion", "LocalGenerator"]
