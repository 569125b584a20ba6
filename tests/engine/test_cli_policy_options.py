"""The CLI's policy flags come from one table (aligners.cli.options): every SquadPolicy field
has its flag, its help is the field's description, and a bad value names the flag."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from aligners import SquadPolicy
from aligners.cli.main import app
from aligners.cli.options import POLICY_FLAGS, cli_policy
from aligners.squad.policy import POLICY_FIELDS


def _help(command: str) -> str:
    done = CliRunner().invoke(
        app, [command, "--help"], env={"COLUMNS": "400", "TERMINAL_WIDTH": "400"}
    )
    assert done.exit_code == 0, done.output
    return " ".join(done.output.split())


def test_every_policy_field_has_one_flag_derived_from_its_name() -> None:
    assert set(POLICY_FLAGS) == set(POLICY_FIELDS)
    assert POLICY_FLAGS["on_flag"] == "--on-flag"
    assert POLICY_FLAGS["request_threshold"] == "--request-threshold"


@pytest.mark.parametrize(
    ("command", "fields"),
    [
        ("serve", POLICY_FIELDS),
        (
            "align",
            (
                "on_flag",
                "on_error",
                "threshold",
                "block_threshold",
                "blocked_message",
                "check_only",
                "on_token_limit",
            ),
        ),
        ("eval-safety", ("on_flag", "threshold", "block_threshold")),
    ],
)
def test_commands_take_the_policy_flags_with_the_fields_help(command, fields) -> None:
    text = _help(command)
    for field in fields:
        assert POLICY_FLAGS[field] in text, field
        # the help is the field's own description (its first words, as the table wraps)
        first_words = " ".join(SquadPolicy.describe(field).split()[:6])
        assert first_words in text, (command, field)


def test_surface_defaults_are_stated_in_the_help() -> None:
    assert "Default: return_original" in _help("serve")
    assert "Default: raise" in _help("align")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"on_flag": "explode"},
            "--on-flag must be one of rewrite, block, raise, rewrite_or_block",
        ),
        ({"on_error": "keep"}, r"--on-error must be one of raise, return_original \(got 'keep'\)"),
        ({"blocked_message": " "}, "--blocked-message must have text"),
        ({"threshold": 1.5}, r"--threshold must be in \[0, 1\], got 1.5"),
    ],
)
def test_a_bad_value_names_the_flag(values, message) -> None:
    with pytest.raises(typer.BadParameter, match=message):
        cli_policy(**values)


def test_cli_policy_merges_over_the_surface_defaults() -> None:
    served = cli_policy("server", on_flag="block", check_only=False, threshold=None)
    assert (served.on_flag, served.on_error, served.check_only) == (
        "block",
        "return_original",
        False,
    )
    assert served.explicit().keys() == {"on_flag", "on_error"}
    assert cli_policy(check_request=True).check_request is True
