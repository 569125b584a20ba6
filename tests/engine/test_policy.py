"""SquadPolicy: the one declaration of the squad's policy, one merge-and-validate path, and the
engine's Squad composing it (flat keywords are sugar for the same policy)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from aligners import (
    DEFAULT_BLOCKED_MESSAGE,
    Aligner,
    FunctionInspector,
    FunctionRequestInspector,
    Squad,
    SquadMember,
    SquadPolicy,
    get_criterion,
)
from aligners.squad.policy import SURFACE_DEFAULTS
from tests.engine.conftest import ConstantBackend

QUESTIONS = ["q1", "q2", "q3"]
ANSWERS = ["harmful", "borderline", "fine"]
SCORES = {"harmful": 0.1, "borderline": 0.45, "fine": 0.9}


def _members() -> list[SquadMember]:
    aligner = Aligner("unused", format="chat", backend=ConstantBackend("fixed"))
    inspector = FunctionInspector(lambda q, a: SCORES.get(a, 0.05), "ethical")
    return [SquadMember(get_criterion("ethical"), aligner, inspector)]


def _outcome(results) -> list[tuple[str, str, list[str]]]:
    return [(r.action, r.text, r.flagged) for r in results]


# -- merge and validation --------------------------------------------------------------------


def test_merge_applies_explicit_fields_and_skips_none() -> None:
    base = SquadPolicy(on_flag="block", threshold={"ethical": 0.4})
    merged = base.merge(
        SquadPolicy(on_error="return_original"), blocked_message="No.", on_flag=None
    )
    assert merged.on_flag == "block" and merged.on_error == "return_original"
    assert merged.threshold == {"ethical": 0.4} and merged.blocked_message == "No."
    assert merged.explicit().keys() == {"on_flag", "threshold", "on_error", "blocked_message"}
    # a policy's defaults are not explicit: merging one changes nothing
    assert base.merge(SquadPolicy()) == base
    assert base.merge({"check_only": True}).check_only is True
    assert base.on_error == "raise"  # merge returns a new policy; the old one is unchanged


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"on_flag": "refuse"}, "on_flag", "'rewrite', 'block', 'raise' or 'rewrite_or_block'"),
        ({"on_error": "keep"}, "on_error", "'raise' or 'return_original'"),
        ({"threshold": True}, "threshold", "must be a number in \\[0, 1\\], got bool True"),
        ({"threshold": "0.5"}, "threshold", "got str '0.5'"),
        ({"threshold": {"ethical": 2}}, "threshold", "\\['ethical'\\] must be in \\[0, 1\\]"),
        ({"block_threshold": float("nan")}, "block_threshold", "must be in \\[0, 1\\], got nan"),
        ({"request_threshold": 1.5}, "request_threshold", "must be in \\[0, 1\\]"),
        ({"blocked_message": "  "}, "blocked_message", "must have text"),
        ({"check_only": "yes"}, "check_only", "must be true or false"),
        ({"on_token_limit": "cut"}, "on_token_limit", "'keep_previous' or 'accept'"),
    ],
)
def test_a_bad_value_names_its_field(overrides, field, message) -> None:
    with pytest.raises(ValidationError, match=message) as caught:
        SquadPolicy().merge(**overrides)
    assert caught.value.errors()[0]["loc"][0] == field
    with pytest.raises(ValidationError, match=field):
        Squad(_members(), **overrides)


def test_an_unknown_field_is_named() -> None:
    with pytest.raises(ValidationError, match="thresold\n  Extra inputs are not permitted"):
        SquadPolicy().merge(thresold=0.2)
    # on a squad it stays a TypeError, as for any misspelt keyword
    with pytest.raises(TypeError, match="unexpected keyword argument 'thresold'"):
        Squad(_members(), thresold=0.2)
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        Squad(_members()).with_options(bogus=1)


def test_none_leaves_a_field_as_it_is() -> None:
    squad = Squad(_members(), blocked_message=None, on_flag=None, check_only=None)
    assert squad.policy == Squad(_members()).policy
    assert squad.config.blocked_message == DEFAULT_BLOCKED_MESSAGE


def test_check_request_takes_an_inspector() -> None:
    guard = FunctionRequestInspector(lambda r: 1.0)
    assert SquadPolicy(check_request=guard).check_request is guard
    # a wrong type is a TypeError, as resolve_request_inspector raises on every surface
    with pytest.raises(TypeError, match="check_request must be True, False or a Request"):
        SquadPolicy().merge(check_request=1)


def test_surface_defaults_differ_only_where_the_table_says() -> None:
    assert SquadPolicy.for_surface("engine") == SquadPolicy()
    assert SquadPolicy.for_surface("llamaindex").on_error == "return_original"
    assert SquadPolicy.for_surface("server").on_error == "return_original"
    assert SquadPolicy.for_surface("langchain").on_error == "raise"
    mine = SquadPolicy.for_surface("server", SquadPolicy(on_error="raise", on_flag="block"))
    assert (mine.on_error, mine.on_flag) == ("raise", "block")
    assert set(SURFACE_DEFAULTS) == {"engine", "cli", "langchain", "llamaindex", "server"}


def test_the_docs_state_each_surfaces_on_error_default() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "engine.md").read_text()
    rows = {
        "engine": "| engine (`Squad`",
        "cli": "| CLI (`aligners align`",
        "langchain": "| LangChain (`AlignerSquad`",
        "llamaindex": "| LlamaIndex (engines",
        "server": "| server (`aligners serve`",
    }
    for surface, start in rows.items():
        [row] = [line for line in text.splitlines() if line.startswith(start)]
        assert f"| `{SquadPolicy.for_surface(surface).on_error}`" in row, surface


# -- the engine composes it --------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"on_flag": "block", "blocked_message": "Withheld."},
        {"threshold": 0.5, "block_threshold": 0.3},
        {"threshold": {"ethical": 0.2}, "check_only": True},
        {"on_flag": "rewrite_or_block"},
    ],
)
def test_policy_and_flat_keywords_give_the_same_results(options) -> None:
    flat = Squad(_members(), **options)
    policy = Squad(_members(), policy=SquadPolicy(**options))
    via_options = Squad(_members()).with_options(policy=SquadPolicy(**options))
    expected = _outcome(flat.align_batch(QUESTIONS, ANSWERS))
    assert _outcome(policy.align_batch(QUESTIONS, ANSWERS)) == expected
    assert _outcome(via_options.align_batch(QUESTIONS, ANSWERS)) == expected
    assert flat.policy == policy.policy == via_options.policy


def test_the_policy_threshold_decides_what_is_flagged() -> None:
    lenient = Squad(_members(), policy=SquadPolicy(threshold=0.3, on_flag="block"))
    strict = lenient.with_options(threshold={"ethical": 0.5})
    assert [r.action for r in lenient.align_batch(QUESTIONS, ANSWERS)] == [
        "blocked",
        "passed",
        "passed",
    ]
    assert [r.action for r in strict.align_batch(QUESTIONS, ANSWERS)] == [
        "blocked",
        "blocked",
        "passed",
    ]
    assert strict.policy.threshold == {"ethical": 0.5} and strict.policy.on_flag == "block"


def test_with_options_changes_only_what_the_policy_names() -> None:
    squad = Squad(_members(), on_flag="block", on_error="return_original", threshold=0.3)
    changed = squad.with_options(policy=SquadPolicy(blocked_message="No."))
    assert changed.config.on_flag == "block" and changed.config.on_error == "return_original"
    assert changed.thresholds == {"ethical": 0.3} and changed.config.blocked_message == "No."
    assert changed.select(["ethical"]).policy == changed.policy


def test_a_policy_threshold_for_an_unknown_criterion_is_named() -> None:
    with pytest.raises(ValueError, match=r"thresholds given for criteria \['helpful'\]"):
        Squad(_members(), policy=SquadPolicy(threshold={"helpful": 0.2}))


def test_default_squad_takes_a_policy() -> None:
    squad = Squad.default(policy=SquadPolicy(on_flag="block", threshold=0.4), max_rounds=2)
    assert squad.config.on_flag == "block" and squad.thresholds == {"ethical": 0.4}
    assert squad.config.max_rounds == 2
    flat = Squad.default(on_flag="block", threshold=0.4)
    assert flat.policy == squad.policy


def test_policy_on_token_limit_overrides_the_aligners(taught_ibm_dir: Path) -> None:
    """A rewrite cut at max_new_tokens: kept out by the aligner's default, taken under the
    policy's ``accept`` (and the other way round)."""
    member = SquadMember(
        get_criterion("helpful"),
        Aligner(str(taught_ibm_dir), format="ibm", max_new_tokens=3),
        FunctionInspector(lambda q, a: 0.0, "helpful"),
    )
    kept = Squad([member]).align("How are you?", "bad answer")
    taken = Squad([member], policy=SquadPolicy(on_token_limit="accept")).align(
        "How are you?", "bad answer"
    )
    assert kept.text == "bad answer" and "max_new_tokens=3" in kept.failures[0]
    assert taken.text != "bad answer" and taken.stages[0].hit_token_limit


# -- what earlier releases took still works this release, with a DeprecationWarning -----------


@pytest.mark.parametrize(("word", "value"), [("true", True), ("FALSE", False), (" True ", True)])
def test_a_flag_as_the_string_true_or_false_warns(word, value) -> None:
    with pytest.warns(DeprecationWarning, match="a string for a flag is deprecated") as caught:
        policy = SquadPolicy(check_only=word, check_request=word)
    assert (policy.check_only, policy.check_request) == (value, value)
    assert caught[0].filename == __file__  # it names the caller's line, not pydantic's
    with pytest.warns(DeprecationWarning, match=f"pass {value}"):
        squad = Squad(_members(), check_only=word)
    assert squad.config.check_only is value
    # any other string is still an error (test_a_bad_value_names_its_field: "yes")


def test_squad_config_flat_fields_warn_and_go_to_the_policy() -> None:
    from aligners.squad import SquadConfig

    with pytest.warns(DeprecationWarning, match=r"SquadConfig\(on_flag=\.\.\.\) is deprecated"):
        config = SquadConfig(on_flag="block", max_rounds=2)
    assert config.policy == SquadPolicy(on_flag="block") and config.max_rounds == 2
    with pytest.warns(DeprecationWarning, match=r"SquadConfig\(check_only=\.\.\., on_error"):
        config = SquadConfig(
            policy=SquadPolicy(on_flag="block"), check_only=True, on_error="return_original"
        )
    assert config.policy.explicit() == {
        "on_flag": "block",
        "check_only": True,
        "on_error": "return_original",
    }


def test_setting_a_policy_option_on_squad_config_warns_and_applies() -> None:
    squad = Squad(_members())
    with pytest.warns(DeprecationWarning, match=r"setting squad.config.on_flag is deprecated"):
        squad.config.on_flag = "block"
    assert squad.config.on_flag == "block" and squad.policy.on_flag == "block"
    assert squad.align("q", "harmful").action == "blocked"
    with pytest.warns(DeprecationWarning), pytest.raises(ValidationError, match="on_error"):
        squad.config.on_error = "keep"


def test_a_squad_rebuilt_from_its_config_dump_warns_and_keeps_the_policy() -> None:
    """``Squad(members, **squad.config.model_dump())`` (how earlier releases copied a squad)
    gets the policy as a dict now."""
    squad = Squad(_members(), on_flag="block", blocked_message="Withheld.", max_rounds=2)
    with pytest.warns(DeprecationWarning, match=r"Squad\(policy=<a dict>\) is deprecated"):
        copy = Squad(squad.members, **squad.config.model_dump())
    assert copy.config == squad.config
    assert copy.align("q", "harmful").text == "Withheld."
