"""The on_flag policies of the engine squad: rewrite, block, raise, rewrite_or_block."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Sequence

import pytest
from pydantic import ValidationError

from aligners import (
    Aligner,
    AlignersError,
    AlignmentResult,
    AlignmentViolation,
    FunctionInspector,
    Squad,
    SquadMember,
    get_criterion,
)
from aligners.backends.base import GenerationConfig
from aligners.formats.base import Prompt
from aligners.squad.squad import DEFAULT_BLOCKED_MESSAGE
from tests.engine.conftest import ConstantBackend

SCORES = {"harmful": 0.1, "fine": 0.9, "fixed": 0.8, "still bad": 0.2}


def _squad(
    rewrite_to: str = "fixed", block_threshold: float | None = None, **options: object
) -> tuple[Squad, ConstantBackend]:
    backend = ConstantBackend(rewrite_to)
    aligner = Aligner("unused", format="chat", backend=backend)
    inspector = FunctionInspector(lambda q, a: SCORES[a], criterion="ethical")
    member = SquadMember(
        get_criterion("ethical"), aligner, inspector, block_threshold=block_threshold
    )
    return Squad([member], **options), backend  # type: ignore[arg-type]


def test_rewrite_is_the_default_and_the_record_says_so() -> None:
    squad, _ = _squad()
    flagged, fine = squad.align_batch(["q", "q"], ["harmful", "fine"])
    assert squad.config.on_flag == "rewrite"
    assert (flagged.text, flagged.action, flagged.on_flag) == ("fixed", "rewritten", "rewrite")
    assert (fine.text, fine.action) == ("fine", "passed")
    assert flagged.to_record()["blocked"] is False


def test_block_replaces_flagged_answers_without_running_the_aligner() -> None:
    squad, backend = _squad(on_flag="block", blocked_message="Not available.")
    flagged, fine = squad.align_batch(["q", "q"], ["harmful", "fine"])
    assert backend.calls == []  # blocking costs no generation
    assert (flagged.text, flagged.action, flagged.blocked) == ("Not available.", "blocked", True)
    assert flagged.original == "harmful" and flagged.flagged == ["ethical"]
    assert flagged.block_reason == "flagged (ethical 0.10 < 0.50)"
    assert fine.block_reason is None
    assert (fine.text, fine.action) == ("fine", "passed")
    record = flagged.to_record()
    assert record["on_flag"] == "block" and record["blocked"] is True


def test_block_has_a_sensible_default_message() -> None:
    squad, _ = _squad(on_flag="block")
    assert squad.align("q", "harmful").text == DEFAULT_BLOCKED_MESSAGE


def test_raise_carries_the_full_result_and_the_batch() -> None:
    squad, backend = _squad(on_flag="raise")
    with pytest.raises(AlignmentViolation) as caught:
        squad.align_batch(["q1", "q2"], ["fine", "harmful"])
    violation = caught.value
    assert isinstance(violation, AlignersError)
    assert isinstance(violation.result, AlignmentResult)
    assert violation.result.question == "q2" and violation.result.action == "raised"
    assert violation.result.initial_scores == {"ethical": 0.1}
    assert [r.action for r in violation.results] == ["passed", "raised"]
    assert "ethical 0.10 < 0.50" in str(violation)
    assert backend.calls == []
    again = pickle.loads(pickle.dumps(violation))
    assert again.result == violation.result


def test_raise_lets_clean_answers_through() -> None:
    squad, _ = _squad(on_flag="raise")
    assert squad.align("q", "fine").action == "passed"


@pytest.mark.parametrize(
    ("rewrite_to", "text", "action"),
    [
        ("fixed", "fixed", "rewritten"),
        ("still bad", DEFAULT_BLOCKED_MESSAGE, "blocked"),
    ],
)
def test_rewrite_or_block_rescores_the_rewrite(rewrite_to: str, text: str, action: str) -> None:
    squad, backend = _squad(rewrite_to, on_flag="rewrite_or_block")
    result = squad.align("q", "harmful")
    assert backend.calls == [1]
    assert (result.text, result.action) == (text, action)
    assert result.final_scores == {"ethical": SCORES[rewrite_to]}
    if result.blocked:
        reason = "ethical scored 0.20 after rewriting, under its threshold 0.50"
        assert result.block_reason == reason


def test_rewrite_or_block_blocks_when_the_aligner_fails() -> None:
    squad, _ = _squad("   ", on_flag="rewrite_or_block")  # empty output: rejected
    result = squad.align("q", "harmful")
    assert result.blocked and result.failures


def test_check_only_never_applies_a_policy() -> None:
    squad, backend = _squad(on_flag="block", check_only=True)
    result = squad.align("q", "harmful")
    assert (result.text, result.action) == ("harmful", "flagged")
    assert backend.calls == []


@pytest.mark.parametrize("policy", ["rewrite", "block", "rewrite_or_block"])
def test_async_and_stream_match_sync(policy: str) -> None:
    squad, _ = _squad("still bad", on_flag=policy)
    sync = squad.align("q", "harmful")
    asynchronous = asyncio.run(squad.aalign("q", "harmful"))
    stream = squad.stream("q", "harmful")
    streamed = "".join(stream)
    assert asynchronous.text == sync.text == streamed
    assert stream.result is not None and stream.result.action == sync.action

    async def collect() -> str:
        astream = squad.stream("q", "harmful")
        return "".join([piece async for piece in astream])

    assert asyncio.run(collect()) == sync.text


def test_stream_raises_before_any_text() -> None:
    squad, _ = _squad(on_flag="raise")
    pieces: list[str] = []
    with pytest.raises(AlignmentViolation):
        pieces.extend(squad.stream("q", "harmful"))
    assert pieces == []


def test_with_options_and_default_take_the_policy() -> None:
    squad, _ = _squad()
    assert squad.with_options(on_flag="block").config.on_flag == "block"
    assert Squad.default(on_flag="rewrite_or_block").config.on_flag == "rewrite_or_block"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"on_flag": "refuse"}, "on_flag"),
        ({"blocked_message": "  "}, "blocked_message"),
    ],
)
def test_bad_policy_settings_are_named(options: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _squad(**options)


def test_skipped_record() -> None:
    result = AlignmentResult.skipped("q", "", "tool calls only")
    assert result.action == "skipped" and result.skipped_reason == "tool calls only"


# -- block_threshold: under rewrite, block what the aligner did not fix when the gate is sure ----


@pytest.mark.parametrize(
    ("rewrite_to", "block_threshold", "action", "text"),
    [
        ("harmful", 0.3, "blocked", DEFAULT_BLOCKED_MESSAGE),  # handed back, gate sure: 0.1
        ("still bad", 0.3, "blocked", DEFAULT_BLOCKED_MESSAGE),  # rewritten, still 0.2
        ("still bad", 0.15, "rewritten", "still bad"),  # 0.2: not sure enough to block
        ("fixed", 0.9, "rewritten", "fixed"),  # 0.8 passes the 0.5 threshold: never blocked
        ("harmful", 0.0, "flagged", "harmful"),  # 0: blocking off; handed back: not rewritten
    ],
)
def test_block_threshold_blocks_only_what_the_gate_is_still_sure_of(
    rewrite_to: str, block_threshold: float, action: str, text: str
) -> None:
    squad, backend = _squad(rewrite_to, block_threshold=block_threshold)
    flagged, fine = squad.align_batch(["q", "q"], ["harmful", "fine"])
    assert backend.calls == [1]  # the aligner always gets its chance first
    assert (flagged.action, flagged.text, flagged.original) == (action, text, "harmful")
    assert flagged.applied == ["ethical"] and flagged.on_flag == "rewrite"
    assert flagged.final_scores == {"ethical": SCORES[rewrite_to]}
    assert (fine.action, fine.text) == ("passed", "fine")
    if action == "blocked":
        assert flagged.block_reason is not None
        assert flagged.block_reason.startswith(
            f"ethical scored {SCORES[rewrite_to]:.2f} after rewriting, under its block "
            f"threshold {block_threshold:.2f}"
        )
        assert flagged.to_record()["blocked"] is True
    else:
        assert flagged.block_reason is None


def test_block_threshold_blocks_when_the_aligner_fails() -> None:
    squad, _ = _squad("   ", block_threshold=0.3)  # empty output: rejected, original kept
    result = squad.align("q", "harmful")
    assert result.blocked and result.failures and result.original == "harmful"


def test_block_threshold_streams_in_one_piece() -> None:
    squad, _ = _squad("still bad", block_threshold=0.3)
    assert squad.decides_whole and not _squad()[0].decides_whole
    stream = squad.stream("q", "harmful")
    assert list(stream) == [DEFAULT_BLOCKED_MESSAGE]  # no word of the rewrite went out first
    assert stream.result is not None and stream.result.blocked

    async def collect() -> list[str]:
        return [piece async for piece in squad.stream("q", "harmful")]

    assert asyncio.run(collect()) == [DEFAULT_BLOCKED_MESSAGE]
    assert not squad.with_options(check_only=True).decides_whole


def test_block_threshold_is_set_per_criterion_and_checked() -> None:
    squad, _ = _squad()
    assert squad.with_options(block_threshold=0.2).members[0].block_threshold == 0.2
    assert squad.with_options(block_threshold={"ethical": 0.1}).members[0].block_threshold == 0.1
    assert "block_threshold=0.2" in repr(squad.with_options(block_threshold=0.2))
    with pytest.raises(ValueError, match="block_thresholds given for criteria \\['helpful'\\]"):
        squad.with_options(block_threshold={"helpful": 0.2})
    member = squad.members[0]
    with pytest.raises(ValueError, match="block_threshold of 'ethical' must be in"):
        SquadMember(member.criterion, member.aligner, member.inspector, block_threshold=1.5)
    with pytest.raises(TypeError, match="block_threshold of 'ethical' must be a number"):
        SquadMember(member.criterion, member.aligner, member.inspector, block_threshold=True)
    with pytest.raises(ValueError, match="block_threshold but no inspector"):
        SquadMember(member.criterion, member.aligner, block_threshold=0.2)
    always = SquadMember(get_criterion("helpful"), member.aligner)  # no inspector: cannot block
    mixed = Squad([member, always]).with_options(block_threshold=0.3)
    assert [m.block_threshold for m in mixed.members] == [0.3, None]
    with pytest.raises(ValueError, match="block_threshold but no inspector"):
        Squad([member, always]).with_options(block_threshold={"helpful": 0.3})


# -- handback_opening: a handback the policy would block is retried with the reply's opening -------

OPENING = "I can't help with that."


class HandbackBackend(ConstantBackend):
    """Hands every answer back word for word, as an aligner that misses a style does; a reply
    forced to open (a trailing assistant message) is continued with ``continuation``."""

    def __init__(self, continuation: str) -> None:
        super().__init__(continuation)
        self.prompts: list[Prompt] = []

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[str]:
        self.calls.append(len(prompts))
        self.prompts.extend(prompts)
        return [
            self.text if p[-1]["role"] == "assistant" else str(p[-1]["content"]).split(": ")[-1]
            for p in prompts
            if not isinstance(p, str)
        ]


def _handback_squad(
    continuation: str = " That could hurt someone.",
    opening: str | None = OPENING,
    block_threshold: float | None = 0.3,
    **options: object,
) -> tuple[Squad, HandbackBackend]:
    backend = HandbackBackend(continuation)
    aligner = Aligner("unused", format="chat", backend=backend, handback_opening=opening)
    scores = SCORES | {OPENING + " That could hurt someone.": 0.9, OPENING + " Here's how.": 0.2}
    inspector = FunctionInspector(lambda q, a: scores[a], criterion="ethical")
    member = SquadMember(
        get_criterion("ethical"), aligner, inspector, block_threshold=block_threshold
    )
    return Squad([member], **options), backend  # type: ignore[arg-type]


@pytest.mark.parametrize("policy", ["rewrite", "rewrite_or_block"])
def test_a_handback_the_policy_would_block_is_retried_with_the_opening(policy: str) -> None:
    squad, backend = _handback_squad(on_flag=policy)
    flagged, fine = squad.align_batch(["q", "q"], ["harmful", "fine"])
    assert backend.calls == [1, 1]  # the handback, then one retry of that answer only
    retried = backend.prompts[-1]
    assert not isinstance(retried, str)
    assert retried[-1] == {"role": "assistant", "content": OPENING}
    assert retried[:-1] == backend.prompts[0]  # the same prompt, with the reply opened
    expected = OPENING + " That could hurt someone."
    assert (flagged.action, flagged.text, flagged.original) == ("rewritten", expected, "harmful")
    assert flagged.stages[0].opening == OPENING and flagged.stages[0].changed
    assert flagged.final_scores == {"ethical": 0.9}
    assert (fine.action, fine.text) == ("passed", "fine")
    assert asyncio.run(squad.aalign_batch(["q", "q"], ["harmful", "fine"])) == [flagged, fine]


@pytest.mark.parametrize(
    ("opening", "block_threshold", "options", "action", "calls"),
    [
        (None, 0.3, {}, "blocked", [1]),  # no opening configured: blocked as before
        (OPENING, 0.0, {}, "flagged", [1]),  # the policy would not block: the handback stands
        (OPENING, None, {}, "flagged", [1]),
        (OPENING, 0.3, {"check_only": True}, "flagged", []),
    ],
)
def test_no_retry_without_an_opening_or_a_block(
    opening: str | None,
    block_threshold: float | None,
    options: dict[str, object],
    action: str,
    calls: list[int],
) -> None:
    squad, backend = _handback_squad(opening=opening, block_threshold=block_threshold, **options)
    result = squad.align("q", "harmful")
    assert backend.calls == calls
    assert result.action == action
    assert all(stage.opening is None for stage in result.stages)


def test_a_retry_that_still_fails_is_blocked_and_says_so() -> None:
    squad, backend = _handback_squad(continuation=" Here's how.")
    result = squad.align("q", "harmful")
    assert backend.calls == [1, 1]
    assert result.action == "blocked" and result.text == DEFAULT_BLOCKED_MESSAGE
    assert result.stages[0].opening == OPENING
    assert result.block_reason is not None
    assert "under its block threshold 0.30" in result.block_reason


def test_a_failing_retry_keeps_the_block() -> None:
    class RetryFails(HandbackBackend):
        def generate(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[str]:
            if any(not isinstance(p, str) and p[-1]["role"] == "assistant" for p in prompts):
                raise ConnectionError("aligner server unreachable")
            return super().generate(prompts, config)

    squad, _ = _handback_squad()
    member = squad.members[0]
    assert isinstance(member.aligner, Aligner)
    member.aligner.backend = RetryFails(" That could hurt someone.")
    result = squad.align("q", "harmful")
    assert result.action == "blocked" and result.original == "harmful"
    assert result.stages[0].opening is None
