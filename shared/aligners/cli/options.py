"""Options several commands share, spelt once."""

from __future__ import annotations

from typing import Any

import typer

CRITERIA_HELP = "Comma-separated criteria (default: the default squad's, today ethical)."


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
