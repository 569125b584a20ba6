"""Entry point of the ``aligners`` console script; each verb group lives in its own module."""

from __future__ import annotations

import sys

import typer

from aligners.cli.align import register as register_align

app = typer.Typer(
    name="aligners",
    help="Align LLM answers with small aligner models, gated by inspectors.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def main_options(
    ctx: typer.Context,
    verbose: bool = typer.Option(
        False,
        "--verbose",
        "-v",
        envvar="ALIGNERS_VERBOSE",
        help="Show the libraries' progress bars and warnings (hidden by default).",
    ),
) -> None:
    """Align LLM answers with small aligner models, gated by inspectors."""
    if not verbose:
        from aligners.cli.output import quiet_libraries

        ctx.with_resource(quiet_libraries())


register_align(app)

# Verb groups added by other parts of the engine register here, one line each.
_SUBCOMMANDS: list[tuple[str, str]] = [
    ("aligners.cli.data", "register"),
    ("aligners.cli.train", "register"),
    ("aligners.cli.eval", "register"),
    ("aligners.cli.serve", "register"),
]
for module_name, attribute in _SUBCOMMANDS:
    module = __import__(module_name, fromlist=[attribute])
    getattr(module, attribute)(app)


def main() -> None:
    """Run the CLI; library errors become one clear line and exit code 2."""
    from aligners.cli.errors import run_cli

    sys.exit(run_cli(app))


if __name__ == "__main__":
    main()
