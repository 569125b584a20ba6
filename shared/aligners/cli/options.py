"""Options several commands share, spelt once."""

from __future__ import annotations

from typing import Any

import typer

CRITERIA_HELP = "Comma-separated criteria (default: the default squad's, today ethical)."


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


def threshold_option() -> Any:
    """``--threshold``: None keeps each inspector's shipped operating point."""
    return typer.Option(
        None,
        "--threshold",
        min=0.0,
        max=1.0,
        help="Inspector score under which an aligner runs (default: each inspector's shipped "
        "operating point, else 0.5).",
    )


def block_threshold_option() -> Any:
    """``--block-threshold``: None keeps each inspector's shipped block threshold."""
    return typer.Option(
        None,
        "--block-threshold",
        min=0.0,
        max=1.0,
        help="Block an answer the aligner did not fix when its inspector still scores it under "
        "this (default: each inspector's shipped block threshold; 0 turns blocking off)",
    )
