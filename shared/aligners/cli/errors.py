"""Turn library errors into one clear line and exit code 2."""

from __future__ import annotations

import click
import typer


def run_cli(app: typer.Typer) -> int:
    """Run ``app``; usage and input errors print one line to stderr and return 2."""
    try:
        app(standalone_mode=False)
    except click.exceptions.Exit as done:
        return int(done.exit_code or 0)
    except click.exceptions.Abort:
        typer.echo("aborted", err=True)
        return 130
    except click.ClickException as error:
        typer.echo(f"error: {error.format_message()}", err=True)
        return 2
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as error:
        typer.echo(f"error: {error}", err=True)
        return 2
    return 0
