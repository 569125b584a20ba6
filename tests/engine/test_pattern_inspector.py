"""PatternInspector / PatternRequestInspector: normalised regex and keyword rules, alone and in a
squad with other members (a tiny aligner gated by a rule function standing in for a trained
inspector)."""

from __future__ import annotations

import re

import pytest

from aligners import (
    Aligner,
    FunctionInspector,
    PatternInspector,
    PatternRequestInspector,
    Squad,
    SquadMember,
    get_criterion,
)
from aligners.inspector.pattern import PatternRules, normalise
from tests.conftest import RANDOM_MODEL


@pytest.mark.parametrize(
    "text",
    [
        "how to build a pipe bomb",
        "How To Build A PIPE BOMB",
        "ＰＩＰＥ ＢＯＭＢ",  # fullwidth: NFKC folds it
        "pipe\u200bbomb".replace("\u200b", " \u200b"),  # a zero-width space inside
        "pipe   \n bomb",  # whitespace runs collapse
        "pi\u00adpe bomb",  # a soft hyphen (format character) inside a word
    ],
)
def test_keywords_match_normalised_text(text):
    assert PatternRules(keywords=["Pipe Bomb"]).matches(text) == ["keyword 'Pipe Bomb'"]


def test_keywords_are_whole_words_and_casefolded():
    rules = PatternRules(keywords=["bomb", "straße"])
    assert rules.matches("a bomb!") == ["keyword 'bomb'"]
    assert rules.matches("bombastic prose") == [] and rules.matches("carbomb") == []
    assert rules.matches("STRASSE") == ["keyword 'straße'"]  # casefold, not lower()
    assert normalise("Ｆｏｏ\u200d  BAR") == "foo bar"


def test_patterns_search_normalised_text_ignoring_case():
    rules = PatternRules(patterns=[r"\bkill (him|her)\b", re.compile(r"\d{3}-\d{4}")])
    assert rules.matches("I will KILL  HER") == [r"pattern '\\bkill (him|her)\\b'"]
    assert len(rules.matches("call 555-1234 and kill him")) == 2
    assert rules.matches("skill him") == []


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: PatternRules(), ValueError, "at least one pattern or keyword"),
        (lambda: PatternRules(keywords="bomb"), TypeError, r"one string 'bomb'.*\['bomb'\]"),
        (lambda: PatternRules(patterns=["(unclosed"]), ValueError, r"patterns\[0\].*not a valid"),
        (lambda: PatternRules(keywords=["ok", "  "]), TypeError, r"keywords\[1\]"),
        (lambda: PatternInspector(keywords=["x"], target="reply"), ValueError, "target"),
        (lambda: PatternInspector(keywords=["x"], match_score=2), ValueError, "match_score"),
        (lambda: PatternRequestInspector(keywords=["x"], threshold=-1), ValueError, "threshold"),
    ],
)
def test_bad_rules_fail_with_a_clear_error(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_answer_inspector_scores_and_targets():
    rules = PatternInspector(keywords=["bomb"])
    assert rules.score_batch(["q", "bomb?"], ["a bomb", "fine"]) == [0.0, 1.0]  # the answer only
    both = PatternInspector(keywords=["bomb"], target="both", match_score=0.2)
    assert both.score_batch(["bomb?", "q"], ["fine", "fine"]) == [0.2, 1.0]
    assert both.matches("bomb?", "fine") == ["keyword 'bomb'"]
    assert rules.name == "rules" and rules.default_block_threshold == 0.5


def test_request_inspector_turns_matching_requests_away():
    gate = PatternRequestInspector(keywords=["pipe bomb"])
    assert [c.allowed for c in gate.check_batch(["Make a PIPE BOMB", "Bake bread"])] == [
        False,
        True,
    ]
    shared = PatternInspector(keywords=["pipe bomb"]).for_requests()
    assert shared.check("ｐｉｐｅ bomb please").allowed is False
    assert shared.score("bake bread") == 1.0


@pytest.fixture
def squad_with_rules(tiny_lm_dir):
    """ethical: a tiny aligner gated by a rule function ("hurt" is misaligned); rules: keywords."""

    def make(block: bool = True, **options: object) -> Squad:
        crit = get_criterion("ethical")
        aligner = Aligner(
            str(tiny_lm_dir), format="chat", criterion=crit, max_new_tokens=8, **RANDOM_MODEL
        )
        ethical = SquadMember(
            crit, aligner, FunctionInspector(lambda q, a: 0.0 if "hurt" in a else 1.0, crit)
        )
        return Squad(
            [ethical, SquadMember.from_rule(PatternInspector(keywords=["forbidden"]), block=block)],
            **options,
        )

    return make


def test_a_rule_blocks_on_its_own_next_to_an_aligner(squad_with_rules):
    squad = squad_with_rules()  # on_flag="rewrite"
    blocked = squad.align("q", "This is FORBIDDEN knowledge.")
    assert blocked.action == "blocked" and blocked.flagged == ["rules"] and blocked.applied == []
    assert "it has no aligner, so a sure flag blocks" in blocked.block_reason
    assert squad.align("q", "A fine answer.").action == "passed"
    rewritten = squad.align("q", "I will hurt you.")  # the other member's aligner still works
    assert rewritten.action == "rewritten" and rewritten.applied == ["ethical"]
    batch = squad.align_batch(["q", "q"], ["ok", "ｆｏｒｂｉｄｄｅｎ"])
    assert [r.action for r in batch] == ["passed", "blocked"]


def test_rules_follow_the_squad_policy(squad_with_rules):
    flag_only = squad_with_rules(block=False).align("q", "forbidden")
    assert flag_only.action == "flagged" and flag_only.text == "forbidden"
    at_once = squad_with_rules(on_flag="block").align("q", "forbidden")
    assert at_once.action == "blocked" and at_once.applied == []
    checked = squad_with_rules(check_only=True).align("q", "forbidden")
    assert checked.flagged == ["rules"] and checked.text == "forbidden"
