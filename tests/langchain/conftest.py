"""Fixtures for the LangChain integration: engine squads on the tiny random LM, with
FunctionInspectors whose scores the tests choose (so the gating is known)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from aligners import Aligner, FunctionInspector, Squad, SquadMember, get_criterion
from tests.conftest import RANDOM_MODEL


@pytest.fixture
def make_squad(tiny_lm_dir: Path) -> Callable[..., Squad]:
    """``make_squad(ethical=flags_bomb, helpful=0.0)``: a squad of tiny aligners gated by known
    scores (a float, or a function of (question, answer))."""

    def make(**scores: float | Callable[[str, str], float]) -> Squad:
        members = []
        for name, score in scores.items():
            fn = score if callable(score) else (lambda q, a, s=score: s)
            aligner = Aligner(
                str(tiny_lm_dir), format="chat", criterion=name, max_new_tokens=8, **RANDOM_MODEL
            )
            members.append(SquadMember(get_criterion(name), aligner, FunctionInspector(fn, name)))
        return Squad(members)

    return make
