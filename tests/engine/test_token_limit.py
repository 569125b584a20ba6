"""A rewrite cut off at max_new_tokens is never taken silently: the previous text stays, the
record says why, and ``on_token_limit="accept"`` takes it, marked."""

from __future__ import annotations

from pathlib import Path

import pytest

from aligners import Aligner, Squad
from aligners.criteria import get_criterion
from aligners.inspector import FunctionInspector
from aligners.squad.member import SquadMember
from tests.engine.conftest import TAUGHT_CORRECTION

QUESTION, ANSWER = "How are you?", "bad answer"


def flagging_squad(aligner: Aligner) -> Squad:
    """One member whose inspector flags everything, so the aligner always runs."""
    crit = get_criterion("helpful")
    return Squad([SquadMember(crit, aligner, FunctionInspector(lambda q, a: 0.0, crit))])


@pytest.mark.parametrize("copy_aware", [True, False])
def test_backend_reports_why_generation_ended(taught_ibm_dir: Path, copy_aware: bool) -> None:
    whole = Aligner(str(taught_ibm_dir), format="ibm", max_new_tokens=40, copy_aware=copy_aware)
    [done] = whole.correct([QUESTION], [ANSWER])
    assert done.text == TAUGHT_CORRECTION and not done.hit_token_limit

    short = Aligner(str(taught_ibm_dir), format="ibm", max_new_tokens=3, copy_aware=copy_aware)
    [cut] = short.correct([QUESTION], [ANSWER])
    assert cut.hit_token_limit
    assert TAUGHT_CORRECTION.startswith(cut.text) and cut.text != TAUGHT_CORRECTION


def test_batch_rows_are_told_apart(taught_ibm_dir: Path) -> None:
    """In one padded batch, the row that ended and the row that ran out are each reported."""
    aligner = Aligner(str(taught_ibm_dir), format="ibm", max_new_tokens=40, copy_aware=False)
    # The model learnt one prompt; on an unrelated long one it rambles to the limit.
    ramble = "zq " * 30
    ended, other = aligner.correct([QUESTION, ramble], [ANSWER, ramble])
    assert ended.text == TAUGHT_CORRECTION and not ended.hit_token_limit
    assert other.hit_token_limit


def test_squad_keeps_the_previous_text_and_says_why(taught_ibm_dir: Path) -> None:
    aligner = Aligner(str(taught_ibm_dir), format="ibm", max_new_tokens=3)
    result = flagging_squad(aligner).align(QUESTION, ANSWER)
    assert result.text == ANSWER and result.action == "flagged" and result.applied == []
    [stage] = result.stages
    assert not stage.applied and "stopped at max_new_tokens=3" in (stage.error or "")
    assert "stopped at max_new_tokens=3" in result.failures[0]


async def test_async_squad_keeps_the_previous_text(taught_ibm_dir: Path) -> None:
    aligner = Aligner(str(taught_ibm_dir), format="ibm", max_new_tokens=3)
    [result] = await flagging_squad(aligner).aalign_batch([QUESTION], [ANSWER])
    assert result.text == ANSWER and "stopped at max_new_tokens=3" in result.failures[0]


def test_accepting_cut_rewrites_is_explicit_and_recorded(taught_ibm_dir: Path) -> None:
    aligner = Aligner(str(taught_ibm_dir), format="ibm", max_new_tokens=3, on_token_limit="accept")
    result = flagging_squad(aligner).align(QUESTION, ANSWER)
    assert result.action == "rewritten" and result.text != ANSWER
    assert TAUGHT_CORRECTION.startswith(result.text)
    assert result.stages[0].hit_token_limit and result.to_record()["stages"][0]["hit_token_limit"]
    assert result.failures == []


def test_an_ended_rewrite_is_taken_as_before(taught_ibm_dir: Path) -> None:
    aligner = Aligner(str(taught_ibm_dir), format="ibm", max_new_tokens=40)
    result = flagging_squad(aligner).align(QUESTION, ANSWER)
    assert result.text == TAUGHT_CORRECTION and not result.stages[0].hit_token_limit


def test_on_token_limit_is_validated_and_saved(taught_ibm_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="on_token_limit"):
        Aligner(str(taught_ibm_dir), format="ibm", on_token_limit="sometimes")
    aligner = Aligner(str(taught_ibm_dir), format="ibm", on_token_limit="accept")
    aligner.save_pretrained(tmp_path)
    assert Aligner.from_pretrained(tmp_path).config.on_token_limit == "accept"
