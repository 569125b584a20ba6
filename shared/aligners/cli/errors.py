"""Turn library errors into one clear line and exit code 2."""

from __future__ import annotations

import typer

from aligners.errors import AlignmentViolation


def run_cli(app: typer.Typer) -> int:
    """Run ``app``; usage and input errors print one line to stderr and return 2."""
    try:
        result = app(standalone_mode=False)
    except typer.Exit as done:
        return int(getattr(done, "exit_code", 0) or 0)
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except typer.TyperException as error:  # usage errors: bad option values, missing options
        format_message = getattr(error, "format_message", None)
        message = format_message() if callable(format_message) else str(error)
        if message.strip():  # empty when help was shown for a bare `aligners`
            typer.echo(f"error: {message}", err=True)
        return 2
    except AlignmentViolation as error:  # on_flag="raise": a finding, not a usage error
        typer.echo(f"error: {error} (on_flag is 'raise')", err=True)
        return 1
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as error:
        typer.echo(f"error: {error}", err=True)
        return 2
    except OSError as error:  # unreadable files, unreachable servers: one line, not a traceback
        typer.echo(f"error: {type(error).__name__}: {error}", err=True)
        return 2
    return int(result) if isinstance(result, int) else 0
