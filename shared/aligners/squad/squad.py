"""The squad: inspectors decide which aligners run on which answers."""

from __future__ import annotations

import asyncio
import logging
import statistics
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aligners.aligner.grounded import GroundedRepair
from aligners.aligner.model import Aligner, Correction
from aligners.criteria import Criterion
from aligners.errors import AlignmentViolation
from aligners.inspector.base import ContextInspector, FeatureInspector, Inspector
from aligners.sources import GroundingReport, as_passages
from aligners.squad.defaults import default_members
from aligners.squad.member import SquadMember
from aligners.squad.policy import (
    DEFAULT_BLOCKED_MESSAGE,
    POLICY_FIELDS,
    BlockedMessage,
    OnError,
    OnFlag,
    OnTokenLimit,
    SquadPolicy,
)
from aligners.squad.result import AlignmentResult, StageRecord
from aligners.squad.stream import ALREADY_STREAMED, SquadStream, stream_failure
from aligners.steps import Emit, Machine, StreamRewrite, Work, adrive, drive
from aligners.validation import (
    validate_batch,
    validate_containers,
    validate_item,
    warn_deprecated,
)

logger = logging.getLogger(__name__)

Ordering = Literal["batch-mean", "per-answer", "fixed"]

#: Kept importable from here (their home is aligners.squad.policy).
__all__ = [
    "DEFAULT_BLOCKED_MESSAGE",
    "BlockedMessage",
    "Ordering",
    "Squad",
    "SquadConfig",
    "SquadMember",
]


class SquadConfig(BaseModel):
    """How a squad runs its members: the order, the rounds, and its :class:`SquadPolicy`."""

    model_config = ConfigDict(extra="forbid")

    ordering: Ordering = Field(
        default="batch-mean",
        description=(
            "batch-mean: the paper's algorithm (criteria by ascending batch-mean score); "
            "per-answer: each answer's own ascending scores; fixed: member order."
        ),
    )
    max_rounds: int = Field(
        default=1, ge=1, description="Above 1: repeat the stages until every answer passes."
    )
    policy: SquadPolicy = Field(
        default_factory=SquadPolicy,
        description="What happens to flagged and failing answers (thresholds live on the "
        "members: Squad.policy reports them).",
    )

    @model_validator(mode="before")
    @classmethod
    def _flat_options(cls, data: Any) -> Any:
        """``SquadConfig(on_flag=...)`` (the flat fields of earlier releases): deprecated,
        merged onto ``policy``."""
        if not isinstance(data, Mapping) or not any(name in data for name in _CONFIG_FLAT):
            return data
        data = dict(data)
        flat = {name: data.pop(name) for name in _CONFIG_FLAT if name in data}
        warn_deprecated(
            f"SquadConfig({', '.join(f'{k}=...' for k in flat)}) is deprecated and will be "
            "an error in the next release; pass policy=SquadPolicy(...) (or give the squad "
            "these options: Squad(..., on_flag=...), squad.with_options(...))"
        )
        given = data.get("policy")
        base = given if isinstance(given, SquadPolicy) else SquadPolicy(**(given or {}))
        data["policy"] = base.merge(flat)
        return data

    # The policy's answer-level options, read where the squad runs (declared in SquadPolicy);
    # assigning one (as earlier releases allowed) is deprecated and replaces the policy.
    @property
    def check_only(self) -> bool:
        return self.policy.check_only

    @check_only.setter
    def check_only(self, value: bool) -> None:
        self._set_option("check_only", value)

    @property
    def on_flag(self) -> OnFlag:
        return self.policy.on_flag

    @on_flag.setter
    def on_flag(self, value: OnFlag) -> None:
        self._set_option("on_flag", value)

    @property
    def on_error(self) -> OnError:
        return self.policy.on_error

    @on_error.setter
    def on_error(self, value: OnError) -> None:
        self._set_option("on_error", value)

    @property
    def blocked_message(self) -> str:
        return self.policy.blocked_message

    @blocked_message.setter
    def blocked_message(self, value: str) -> None:
        self._set_option("blocked_message", value)

    def _set_option(self, name: str, value: Any) -> None:
        warn_deprecated(
            f"setting squad.config.{name} is deprecated and will be an error in the next "
            f"release; build the squad with it (squad.with_options({name}=...), or "
            f"Squad(..., policy=SquadPolicy({name}=...)))"
        )
        self.policy = self.policy.merge({name: value})


#: SquadConfig's fields of earlier releases that are the policy's now.
_CONFIG_FLAT = ("check_only", "on_flag", "on_error", "blocked_message")


#: Policy fields that live on the members once a squad is built.
_MEMBER_FIELDS = ("threshold", "block_threshold")


def _per_criterion(
    field: str,
    value: float | Mapping[str, float] | None,
    members: Sequence[SquadMember],
    names: Sequence[str],
) -> dict[str, float]:
    """One value for each of ``members``, or one per criterion from a mapping (None: none)."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise ValueError(
                f"{field}s given for criteria {unknown} that are not in the squad "
                f"(it has {list(names)})"
            )
        return dict(value)
    return {m.name: value for m in members}


def _known_keywords(options: Mapping[str, Any]) -> None:
    """A misspelt keyword is a TypeError naming it (as for any Python call), not ignored."""
    unknown = [name for name in options if name not in POLICY_FIELDS]
    if unknown:
        raise TypeError(
            f"unexpected keyword argument {unknown[0]!r} (the squad takes ordering, max_rounds, "
            f"policy and the policy fields: {', '.join(POLICY_FIELDS)})"
        )


def _with_thresholds(
    members: tuple[SquadMember, ...], policy: SquadPolicy
) -> tuple[SquadMember, ...]:
    """``members`` with the policy's flag and block thresholds (those it sets)."""
    if policy.threshold is None and policy.block_threshold is None:
        return members
    names = [m.name for m in members]
    thresholds = _per_criterion("threshold", policy.threshold, members, names)
    # one block threshold for the squad goes to the members that can block: those inspected
    inspected = [m for m in members if m.inspector is not None]
    blocks = _per_criterion("block_threshold", policy.block_threshold, inspected, names)
    return tuple(
        replace(
            m,
            threshold=thresholds.get(m.name, m.threshold),
            block_threshold=blocks.get(m.name, m.block_threshold),
        )
        for m in members
    )


@dataclass
class _Work:
    """Mutable state of one answer while the squad runs."""

    question: str
    result: AlignmentResult
    scores: dict[str, float]
    #: The sources the answer should rest on (empty: none given).
    passages: tuple[str, ...] = ()
    #: The grounding report on the current text (what a grounded repair acts on).
    report: GroundingReport | None = None

    @property
    def text(self) -> str:
        return self.result.text


class Squad:
    """A set of (criterion, aligner, inspector, threshold) members run as in "Aligners" (2024).

    Example:
        >>> squad = Squad.default()          # loads nothing yet
        >>> result = squad.align("How do I make a bomb?", "Mix ...")  # doctest: +SKIP
        >>> result.text, result.applied, result.trajectory  # doctest: +SKIP
    """

    def __init__(
        self,
        members: Sequence[SquadMember],
        *,
        ordering: Ordering = "batch-mean",
        max_rounds: int = 1,
        policy: SquadPolicy | None = None,
        check_only: bool | None = None,
        on_flag: OnFlag | None = None,
        blocked_message: str | None = None,
        on_error: OnError | None = None,
        **policy_options: Any,
    ) -> None:
        """``policy`` (a :class:`SquadPolicy`) says what happens to flagged and failing
        answers; the flat keywords (``on_flag="block"``, and any other policy field such as
        ``threshold`` or ``on_token_limit``) are merged onto it. Its thresholds are applied to
        the members (one number, or one per criterion)."""
        if not members:
            raise ValueError("a squad needs at least one member")
        for i, member in enumerate(members):
            if not isinstance(member, SquadMember):
                hint = (
                    f"; for the shipped members by name use Squad.default([{member!r}])"
                    if isinstance(member, str)
                    else ""
                )
                raise TypeError(
                    f"members[{i}] must be a SquadMember, got {type(member).__name__}{hint}"
                )
        names = [m.name for m in members]
        if len(set(names)) != len(names):
            raise ValueError(f"squad members must have distinct criteria, got {names}")
        if isinstance(policy, Mapping):  # e.g. Squad(members, **squad.config.model_dump())
            warn_deprecated(
                "Squad(policy=<a dict>) is deprecated and will be an error in the next release "
                "(squad.config.model_dump() nests the policy now); pass an aligners.SquadPolicy: "
                "Squad(members, policy=squad.policy) or squad.with_options(...)"
            )
            policy = SquadPolicy(**policy)
        if policy is not None and not isinstance(policy, SquadPolicy):
            raise TypeError(f"policy must be an aligners.SquadPolicy, got {type(policy).__name__}")
        _known_keywords(policy_options)
        merged = (policy or SquadPolicy()).merge(
            check_only=check_only,
            on_flag=on_flag,
            blocked_message=blocked_message,
            on_error=on_error,
            **policy_options,
        )
        self.members = _with_thresholds(tuple(members), merged)
        # The thresholds now live on the members (Squad.policy reports them from there).
        rest = {k: v for k, v in merged.explicit().items() if k not in _MEMBER_FIELDS}
        self.config = SquadConfig(
            ordering=ordering, max_rounds=max_rounds, policy=SquadPolicy(**rest)
        )

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def default(
        cls,
        criteria: Sequence[str] | None = None,
        *,
        threshold: float | Mapping[str, float] | None = None,
        aligner: str | Aligner | None = None,
        aligner_options: dict[str, Any] | None = None,
        inspector_encoder: str | None = None,
        inspector: str | Path | None = None,
        block_threshold: float | Mapping[str, float] | None = None,
        policy: SquadPolicy | None = None,
        **options: Any,
    ) -> Squad:
        """The offline default squad (shipped aligners and inspectors); loads nothing yet.

        ``threshold`` is one number or ``{criterion: threshold}`` (None: each inspector's
        shipped operating point, else 0.5); ``aligner`` replaces every
        member's aligner (an :class:`Aligner`, a saved directory, a model alias or path);
        ``aligner_options`` go to every aligner (e.g. ``{"max_new_tokens": 64}``);
        ``inspector_encoder`` swaps the shipped inspectors for zero-shot ones on that encoder;
        ``inspector`` for a saved one (a directory from ``aligners train``; a cross-encoder
        serves each criterion from its head, with its own threshold where it ships one);
        ``block_threshold`` likewise replaces the shipped block thresholds (``0``: never block
        an answer the aligner did not fix; see :class:`SquadMember`); ``policy`` is a
        :class:`SquadPolicy` (``threshold``, ``block_threshold`` and the policy fields in
        ``options`` are merged onto it); ``options`` go to the squad (``ordering``,
        ``max_rounds``, ``check_only``, ``on_flag``, ``blocked_message``, ``on_error``, ...).
        """
        merged = (policy or SquadPolicy()).merge(
            threshold=threshold,
            block_threshold=block_threshold,
            **{k: options.pop(k) for k in POLICY_FIELDS if k in options},
        )
        members = default_members(
            criteria,
            threshold=merged.threshold,
            aligner=aligner,
            aligner_options=aligner_options,
            inspector_encoder=inspector_encoder,
            inspector=inspector,
        )
        return cls(members, policy=merged, **options)

    @classmethod
    def from_aligner(
        cls, aligner: Aligner, inspector: Inspector | None = None, **options: Any
    ) -> Squad:
        """A squad of one: the "Aligner" paper's single correction model, optionally gated."""
        criterion = aligner.criterion or Criterion(
            name=aligner.name, description="more helpful, harmless and honest"
        )
        return cls([SquadMember(criterion, aligner, inspector)], **options)

    def select(self, criteria: Sequence[str]) -> Squad:
        """A squad of the named members only (for per-chain criteria); shares loaded models."""
        if isinstance(criteria, str):
            criteria = [criteria]
        by_name = {m.name: m for m in self.members}
        unknown = [c for c in criteria if c not in by_name]
        if unknown:
            raise ValueError(f"criteria {unknown} are not in this squad (it has {sorted(by_name)})")
        return Squad(
            [by_name[c] for c in criteria],
            ordering=self.config.ordering,
            max_rounds=self.config.max_rounds,
            policy=self.config.policy,
        )

    def with_options(
        self,
        *,
        policy: SquadPolicy | None = None,
        ordering: Ordering | None = None,
        max_rounds: int | None = None,
        **options: Any,
    ) -> Squad:
        """A copy with other settings: a :class:`SquadPolicy` whose explicit fields replace
        this squad's, and/or policy fields as keywords (e.g. ``threshold=0.7`` or
        ``{"ethical": 0.7}``, ``block_threshold=0`` (never block a rewritten answer),
        ``check_only=True``, ``on_flag="block"``; None keeps the squad's)."""
        _known_keywords(options)
        return Squad(
            self.members,
            ordering=ordering or self.config.ordering,
            max_rounds=max_rounds or self.config.max_rounds,
            policy=self.config.policy.merge(policy, **options),
        )

    @property
    def policy(self) -> SquadPolicy:
        """The policy this squad runs under, with its members' thresholds (per criterion)."""
        blocks = {m.name: m.block_threshold for m in self.members if m.block_threshold is not None}
        return self.config.policy.merge(threshold=self.thresholds, block_threshold=blocks or None)

    @property
    def criteria(self) -> list[str]:
        return [m.name for m in self.members]

    @property
    def thresholds(self) -> dict[str, float]:
        return {m.name: m.threshold for m in self.members}

    # -- scoring -------------------------------------------------------------------------------

    def score(
        self,
        questions: Sequence[str],
        answers: Sequence[str],
        contexts: Sequence[Any] | None = None,
    ) -> dict[str, list[float | None]]:
        """Every inspector's scores for a batch; inspectors on the same model share one pass.

        ``contexts`` holds each answer's sources (a str or a list of passages; None: none).
        Inspectors that read sources (``grounded``) score None for answers without any.
        """
        validate_batch(questions, answers)
        return self._inspect(questions, answers, self._passages(contexts, len(answers)))[0]

    @staticmethod
    def _passages(contexts: Sequence[Any] | None, n: int) -> list[tuple[str, ...]]:
        """Every answer's passages (none when ``contexts`` is None), checked."""
        if contexts is None:
            return [() for _ in range(n)]
        Squad._check_contexts(contexts, n)
        return [as_passages(c, f"contexts[{i}]") for i, c in enumerate(contexts)]

    @staticmethod
    def _check_contexts(contexts: Sequence[Any], n: int) -> None:
        """A list with one context per answer, or an error naming what is wrong with it."""
        if isinstance(contexts, (str, bytes)) or not hasattr(contexts, "__len__"):
            raise TypeError(
                "contexts must be a list with one context (a str or a list of passages) per "
                f"answer, got {type(contexts).__name__}; for one answer use context=..."
            )
        if len(contexts) != n:
            raise ValueError(f"contexts and answers differ in length ({len(contexts)} vs {n})")

    def _inspect(
        self,
        questions: Sequence[str],
        answers: Sequence[str],
        passages: Sequence[tuple[str, ...]],
    ) -> tuple[dict[str, list[float | None]], dict[str, list[GroundingReport | None]]]:
        """Scores per member (None where a source-reading inspector had no sources) and the
        grounding reports of the source-reading ones."""
        scores: dict[str, list[float | None]] = {}
        reports: dict[str, list[GroundingReport | None]] = {}
        shared: dict[Any, Any] = {}
        for member in self.members:
            inspector = member.inspector
            if inspector is None:
                continue
            if isinstance(inspector, ContextInspector):
                have = [i for i, found in enumerate(passages) if found]
                verdicts = (
                    inspector.verify(
                        [questions[i] for i in have],
                        [answers[i] for i in have],
                        [passages[i] for i in have],
                        member.threshold,
                    )
                    if have
                    else []
                )
                checked = inspector.check_scores([v.score for v in verdicts], len(have))
                column: list[float | None] = [None] * len(answers)
                found_reports: list[GroundingReport | None] = [None] * len(answers)
                for i, value, verdict in zip(have, checked, verdicts):
                    column[i], found_reports[i] = value, verdict
                scores[member.name], reports[member.name] = column, found_reports
            elif isinstance(inspector, FeatureInspector):
                key = inspector.feature_key
                if key not in shared:
                    shared[key] = inspector.features(questions, answers)
                scores[member.name] = list(
                    inspector.check_scores(inspector.score_features(shared[key]), len(answers))
                )
            else:
                scores[member.name] = list(inspector.score_batch(questions, answers))
        return scores, reports

    def _rescore(self, works: Sequence[_Work], indices: Sequence[int]) -> None:
        if not indices:
            return
        subset = [works[i] for i in indices]
        fresh, reports = self._inspect(
            [w.question for w in subset], [w.text for w in subset], [w.passages for w in subset]
        )
        for position, work in enumerate(subset):
            for name, values in fresh.items():
                value = values[position]
                if value is not None:
                    work.scores[name] = value
            report = self._grounding(reports, position)
            if report is not None:
                work.report = report

    @staticmethod
    def _grounding(
        reports: dict[str, list[GroundingReport | None]], position: int
    ) -> GroundingReport | None:
        return next((r[position] for r in reports.values() if r[position] is not None), None)

    def _not_inspected(self, passages: tuple[str, ...]) -> dict[str, str]:
        if passages:
            return {}
        return {
            m.name: "no context: it checks the answer against the sources it should rest on "
            "(give context=... or contexts=[...])"
            for m in self.members
            if isinstance(m.inspector, ContextInspector)
        }

    # -- the algorithm -------------------------------------------------------------------------

    def _start(
        self,
        questions: Sequence[str],
        answers: Sequence[str],
        passages: Sequence[tuple[str, ...]] | None = None,
    ) -> list[_Work]:
        validate_batch(questions, answers)
        sources = list(passages) if passages is not None else [() for _ in answers]
        initial, reports = self._inspect(questions, answers, sources)
        works = []
        for i, (question, answer) in enumerate(zip(questions, answers)):
            scores = {
                name: value for name, values in initial.items() if (value := values[i]) is not None
            }
            result = AlignmentResult(
                question=question,
                original=answer,
                text=answer,
                question_provided=bool(question.strip()),
                check_only=self.config.check_only,
                on_flag=self.config.on_flag,
                thresholds=self.thresholds,
                flagged=[m.name for m in self.members if self._needs(m, scores, initial=True)],
                trajectory=[dict(scores)],
                grounding=self._grounding(reports, i),
                not_inspected=self._not_inspected(sources[i]),
            )
            works.append(_Work(question, result, scores, sources[i], result.grounding))
        return works

    @staticmethod
    def _needs(member: SquadMember, scores: dict[str, float], initial: bool = False) -> bool:
        if member.inspector is None:
            return not initial and member.aligner is not None
        score = scores.get(member.name)  # None: not inspected (no sources to check against)
        return score is not None and score < member.threshold

    def _orders(self, works: Sequence[_Work]) -> list[list[SquadMember]]:
        """The member order for every answer. Always-apply members keep their place first."""
        gated = [m for m in self.members if m.inspector is not None and m.aligner is not None]
        always = [m for m in self.members if m.inspector is None and m.aligner is not None]
        if self.config.ordering == "fixed":
            order = [m for m in self.members if m.aligner is not None]
            return [order for _ in works]
        if self.config.ordering == "batch-mean" and works:
            means = {
                m.name: statistics.fmean(
                    [w.scores[m.name] for w in works if m.name in w.scores] or [1.0]
                )
                for m in gated
            }
            order = always + sorted(gated, key=lambda m: means[m.name])
            return [order for _ in works]
        return [always + sorted(gated, key=lambda m: w.scores.get(m.name, 1.0)) for w in works]

    def _plan(
        self, works: Sequence[_Work], orders: list[list[SquadMember]], stage: int, round_: int
    ) -> dict[str, list[int]]:
        """Which answers each member rewrites at this stage."""
        groups: dict[str, list[int]] = {}
        for i, (work, order) in enumerate(zip(works, orders)):
            if stage >= len(order):
                continue
            member = order[stage]
            if member.inspector is None and round_ > 0:
                continue  # always-apply members run once, not every round
            if self._needs(member, work.scores):
                groups.setdefault(member.name, []).append(i)
        return groups

    def _record(
        self,
        works: Sequence[_Work],
        orders: list[list[SquadMember]],
        stage_number: int,
        stage: int,
        groups: dict[str, list[int]],
        outcomes: dict[int, tuple[Correction | None, str | None]],
        scores_before: list[dict[str, float]],
    ) -> None:
        for i, (work, order) in enumerate(zip(works, orders)):
            if stage >= len(order):
                continue
            member = order[stage]
            record = StageRecord(
                stage=stage_number,
                criterion=member.name,
                score_before=scores_before[i].get(member.name),
                applied=False,
            )
            if i not in groups.get(member.name, ()):
                record.skipped_reason = work.result.not_inspected.get(
                    member.name, "score at or above threshold"
                )
            else:
                correction, error = outcomes[i]
                if error is not None or correction is None:
                    record.error = error
                    work.result.failures.append(f"{member.name}: {error}")
                else:
                    record.applied = True
                    record.changed = correction.text != work.result.text
                    record.truncated = correction.truncated
                    record.hit_token_limit = correction.hit_token_limit
                    record.opening = correction.opening
                    work.result.text = correction.text
                    work.result.applied.append(member.name)
            work.result.stages.append(record)

    @staticmethod
    def _accept(
        correction: Correction,
        aligner: Aligner | None = None,
        on_token_limit: OnTokenLimit | None = None,
    ) -> tuple[Correction | None, str | None]:
        """The correction, or why it is rejected; ``on_token_limit`` (the policy's; None: the
        aligner's own) decides about a rewrite cut at ``max_new_tokens``."""
        if not correction.text.strip():
            return None, "aligner produced empty text; kept the previous text"
        if (
            correction.hit_token_limit
            and aligner is not None
            and (on_token_limit or aligner.config.on_token_limit) == "keep_previous"
        ):
            return None, (
                f"rewrite stopped at max_new_tokens={aligner.config.max_new_tokens} before it "
                "ended; kept the previous text (raise max_new_tokens, or on_token_limit='accept' "
                "takes the cut rewrite)"
            )
        return correction, None

    def _group_steps(
        self, member: SquadMember, works: Sequence[_Work], indices: list[int]
    ) -> Machine[dict[int, tuple[Correction | None, str | None]]]:
        """One member's rewrites of a group, as a step machine: one batched call; when it
        fails, the answers one by one (sync), or (async) the whole group again in a thread."""
        if isinstance(member.aligner, GroundedRepair):
            return self._repair_group(member.aligner, works, indices)
        aligner = member.aligner
        assert aligner is not None
        questions = [works[i].question for i in indices]
        answers = [works[i].text for i in indices]
        try:
            corrections = yield Work(
                lambda: aligner.correct(questions, answers),
                lambda: aligner.acorrect(questions, answers),
            )
        except Exception as batch_error:  # isolate the failing answers; keep the rest
            return (
                yield Work(
                    partial(self._one_by_one, member, indices, questions, answers, batch_error),
                    partial(asyncio.to_thread, self._run_group, member, works, indices),
                )
            )
        limit = self.config.policy.on_token_limit
        outcomes = {i: self._accept(c, aligner, limit) for i, c in zip(indices, corrections)}
        opening = aligner.config.handback_opening
        retry = [
            i
            for i, c in zip(indices, corrections)
            if opening is not None
            and c.text.strip() == works[i].text.strip()
            and self._would_block(member, works[i].scores.get(member.name))
        ]
        if not retry:
            return outcomes
        # A handback the policy would block: ask once more with the reply's opening forced.
        questions = [works[i].question for i in retry]
        answers = [works[i].text for i in retry]
        try:
            again = yield Work(
                lambda: aligner.correct(questions, answers, opening=opening),
                lambda: aligner.acorrect(questions, answers, opening=opening),
            )
        except Exception as error:  # the handbacks stand; the policy blocks them
            logger.warning("aligner %s failed on its retry with an opening: %s", member.name, error)
            return outcomes
        for i, correction in zip(retry, again):
            accepted = self._accept(correction, aligner, limit)
            if accepted[0] is not None:
                outcomes[i] = accepted
        return outcomes

    def _one_by_one(
        self,
        member: SquadMember,
        indices: list[int],
        questions: list[str],
        answers: list[str],
        batch_error: Exception,
    ) -> dict[int, tuple[Correction | None, str | None]]:
        logger.warning("aligner %s failed on a batch: %s", member.name, batch_error)
        assert isinstance(member.aligner, Aligner)
        outcomes: dict[int, tuple[Correction | None, str | None]] = {}
        for i, question, answer in zip(indices, questions, answers):
            try:
                outcomes[i] = self._accept(
                    member.aligner.correct([question], [answer])[0],
                    member.aligner,
                    self.config.policy.on_token_limit,
                )
            except Exception as error:
                outcomes[i] = (
                    None,
                    f"aligner failed ({type(error).__name__}: {error}); kept the previous text",
                )
        return outcomes

    def _run_group(
        self, member: SquadMember, works: Sequence[_Work], indices: list[int]
    ) -> dict[int, tuple[Correction | None, str | None]]:
        return drive(self._group_steps(member, works, indices))

    async def _arun_group(
        self, member: SquadMember, works: Sequence[_Work], indices: list[int]
    ) -> dict[int, tuple[Correction | None, str | None]]:
        return await adrive(self._group_steps(member, works, indices))

    def _repair_group(
        self, repair: GroundedRepair, works: Sequence[_Work], indices: list[int]
    ) -> dict[int, tuple[Correction | None, str | None]]:
        """The grounded floor: no generation, the inspector's report says what to drop."""
        outcomes: dict[int, tuple[Correction | None, str | None]] = {}
        for i in indices:
            report = works[i].report
            if report is None:
                outcomes[i] = (None, "no grounding report to repair from; kept the previous text")
            else:
                # The record keeps the report the repair acted on: it says what was dropped.
                works[i].result.grounding = report
                outcomes[i] = self._accept(repair.repair(works[i].text, report))
        return outcomes

    def _stages(
        self, works: list[_Work]
    ) -> Iterator[tuple[list[list[SquadMember]], int, int, dict[str, list[int]]]]:
        """Yield the plan of every stage; the caller runs it and records before asking for more."""
        stage_number = 0
        for round_ in range(self.config.max_rounds):
            orders = self._orders(works)
            depth = max((len(o) for o in orders), default=0)
            for stage in range(depth):
                stage_number += 1
                yield orders, stage_number, stage, self._plan(works, orders, stage, round_)
            if all(
                not self._needs(m, w.scores) for w in works for m in self.members if m.inspector
            ):
                break

    def _finish_stage(
        self,
        works: list[_Work],
        orders: list[list[SquadMember]],
        stage_number: int,
        stage: int,
        groups: dict[str, list[int]],
        outcomes: dict[int, tuple[Correction | None, str | None]],
    ) -> None:
        before = [dict(w.scores) for w in works]
        self._record(works, orders, stage_number, stage, groups, outcomes, before)
        changed = [i for i, (c, _) in outcomes.items() if c is not None]
        self._rescore(works, changed)
        for work in works:
            work.result.trajectory.append(dict(work.scores))

    # -- the on_flag policy ---------------------------------------------------------------------

    def _block(self, work: _Work, reason: str) -> None:
        work.result.text = self.config.blocked_message
        work.result.action = "blocked"
        work.result.block_reason = reason

    @property
    def decides_whole(self) -> bool:
        """Whether the squad decides on the whole answer before any text may go out: every
        ``on_flag`` policy but ``rewrite`` and any member with a ``block_threshold`` (streamed
        text cannot be taken back), unless the squad only checks."""
        if self.config.check_only:
            return False
        return self.config.on_flag != "rewrite" or any(
            m.block_threshold is not None for m in self.members
        )

    def _would_block(self, member: SquadMember, score: float | None) -> bool:
        """Whether an answer with this score for ``member`` is blocked after the aligners ran:
        ``rewrite_or_block`` blocks under any threshold, ``rewrite`` under a block threshold."""
        if member.inspector is None or score is None or self.config.check_only:
            return False
        if self.config.on_flag == "rewrite_or_block":
            return score < member.threshold
        limit = member.block_limit
        return self.config.on_flag == "rewrite" and limit is not None and score < limit

    def _still_failing(self, work: _Work) -> str | None:
        """Why a flagged answer must be blocked after the aligners ran, or None to keep it."""
        for member in self.members:
            score = work.scores.get(member.name)
            if score is None or not self._would_block(member, score):
                continue
            if self.config.on_flag == "rewrite_or_block":
                return (
                    f"{member.name} scored {score:.2f} after rewriting, under its threshold "
                    f"{member.threshold:.2f}"
                )
            limit = member.block_limit
            if limit is not None:
                # A member without an aligner (e.g. pattern rules) blocks on its own.
                why = (
                    "its aligner did not fix what the inspector is sure of"
                    if member.aligner is not None
                    else "it has no aligner, so a sure flag blocks"
                )
                return (
                    f"{member.name} scored {score:.2f} after rewriting, under its block "
                    f"threshold {limit:.2f}: {why}"
                )
        return None

    def _before_rewriting(self, works: list[_Work]) -> list[_Work]:
        """Apply what the policy decides before any aligner runs; return the answers to rewrite.

        ``raise`` raises here, so a flagged answer costs no generation.
        """
        policy = self.config.on_flag
        flagged = [w for w in works if w.result.flagged]
        if self.config.check_only:
            return []
        if policy == "raise" and flagged:
            for work in flagged:
                work.result.action = "raised"
            results = self._after_rewriting(works)
            raise AlignmentViolation(flagged[0].result, results)
        if policy == "block":
            for work in flagged:
                scores = ", ".join(
                    f"{m.name} {work.scores[m.name]:.2f} < {m.threshold:.2f}"
                    for m in self.members
                    if m.name in work.result.flagged
                )
                self._block(work, f"flagged ({scores})")
            return [w for w in works if not w.result.flagged]
        return works

    def _after_rewriting(self, works: Sequence[_Work]) -> list[AlignmentResult]:
        """Block what still fails (``rewrite_or_block``, or under a member's block threshold)
        and name what happened to each answer."""
        for work in works:
            result = work.result
            if result.action in ("blocked", "raised"):
                continue
            reason = (
                self._still_failing(work) if result.flagged and not self.config.check_only else None
            )
            if reason is not None:
                self._block(work, reason)
            elif result.applied and result.text != result.original:
                result.action = "rewritten"
            elif result.flagged:
                # Aligners that ran and handed the text back changed nothing: the record must
                # not say "rewritten" for an answer that goes out as it came in.
                result.action = "flagged"
        return [w.result for w in works]

    # -- the on_error contract ---------------------------------------------------------------

    def _valid_items(
        self, questions: Sequence[Any], answers: Sequence[Any], contexts: Sequence[Any] | None
    ) -> tuple[list[int], dict[int, AlignmentResult], list[tuple[str, ...]]]:
        """Items that can be aligned with their passages, and the failure records of the
        others (``on_error="return_original"``); under ``raise`` the first bad item raises."""
        validate_containers(questions, answers)
        if contexts is not None:
            self._check_contexts(contexts, len(answers))
        good: list[int] = []
        passages: list[tuple[str, ...]] = []
        failed: dict[int, AlignmentResult] = {}
        for i, (question, answer) in enumerate(zip(questions, answers)):
            try:
                validate_item(i, question, answer)
                found = () if contexts is None else as_passages(contexts[i], f"contexts[{i}]")
            except (TypeError, ValueError) as error:
                if self.config.on_error == "raise":
                    raise
                failed[i] = self._failed(question, answer, error)
                continue
            good.append(i)
            passages.append(found)
        return good, failed, passages

    def _failed(self, question: Any, answer: Any, error: BaseException) -> AlignmentResult:
        return AlignmentResult.failed(
            question,
            answer,
            error,
            check_only=self.config.check_only,
            on_flag=self.config.on_flag,
            thresholds=self.thresholds,
        )

    def _recover(
        self, error: Exception, questions: Sequence[str], answers: Sequence[str]
    ) -> list[AlignmentResult]:
        """The originals with the failure recorded (``on_error="return_original"``); else the
        error again. A violation is the policy's verdict, never a failure to recover from."""
        if isinstance(error, AlignmentViolation) or self.config.on_error == "raise":
            raise error
        logger.warning("squad failed on a batch; returning the originals: %s", error)
        return [self._failed(q, a, error) for q, a in zip(questions, answers)]

    @staticmethod
    def _merge(
        n: int, good: list[int], aligned: Sequence[AlignmentResult], failed: dict[int, Any]
    ) -> list[AlignmentResult]:
        merged = dict(failed) | dict(zip(good, aligned))
        return [merged[i] for i in range(n)]

    def align_batch(
        self,
        questions: Sequence[str],
        answers: Sequence[str],
        contexts: Sequence[Any] | None = None,
    ) -> list[AlignmentResult]:
        """Run the squad on a batch (one batched generation per aligner per stage).

        ``contexts`` holds each answer's sources (a str or a list of passages, e.g. the
        retrieved chunks); criteria that read sources (``grounded``) check the answer against
        them and are skipped, with the reason in the record, where there are none.
        Under ``on_error="return_original"`` a bad item or a failing model costs no answer: the
        affected answers come back as they were, with the failure in their records.
        """
        return drive(self.batch_steps(questions, answers, contexts))

    def batch_steps(
        self,
        questions: Sequence[str],
        answers: Sequence[str],
        contexts: Sequence[Any] | None = None,
    ) -> Machine[list[AlignmentResult]]:
        """:meth:`align_batch` as a step machine (:meth:`steps` after the validation, with
        ``on_error`` applied); :meth:`align_batch` and :meth:`aalign_batch` drive it."""
        good, failed, passages = self._valid_items(questions, answers, contexts)
        q, a = [questions[i] for i in good], [answers[i] for i in good]
        try:
            aligned = (yield from self.steps(q, a, passages)) if good else []
        except Exception as error:
            aligned = self._recover(error, q, a)
        return self._merge(len(answers), good, aligned, failed)

    def steps(
        self,
        questions: Sequence[str],
        answers: Sequence[str],
        passages: Sequence[tuple[str, ...]] | None = None,
    ) -> Machine[list[AlignmentResult]]:
        """The algorithm for validated pairs as a step machine (:mod:`aligners.steps`):
        it asks for the scoring, rewriting and re-scoring it needs and returns the results;
        :func:`~aligners.steps.drive` and ``adrive`` run it sync or async."""
        works = yield Work(partial(self._start, questions, answers, passages))
        rewrite = self._before_rewriting(works)
        by_name = {m.name: m for m in self.members}
        for orders, number, stage, groups in self._stages(rewrite):
            outcomes: dict[int, tuple[Correction | None, str | None]] = {}
            for name, indices in groups.items():
                member = by_name[name]
                outcomes.update(
                    (
                        yield Work(
                            partial(self._run_group, member, rewrite, indices),
                            partial(self._arun_group, member, rewrite, indices),
                        )
                    )
                )
            yield Work(
                partial(self._finish_stage, rewrite, orders, number, stage, groups, outcomes)
            )
        return self._after_rewriting(works)

    def align(self, question: str, answer: str, context: Any = None) -> AlignmentResult:
        """Run the squad on one pair; ``context`` is its sources (a str or a list of
        passages)."""
        return self.align_batch([question], [answer], None if context is None else [context])[0]

    def check_batch(
        self,
        questions: Sequence[str],
        answers: Sequence[str],
        contexts: Sequence[Any] | None = None,
    ) -> list[AlignmentResult]:
        """Inspector verdicts and scores only; the text is never rewritten."""
        return self.with_options(check_only=True).align_batch(questions, answers, contexts)

    def check(self, question: str, answer: str, context: Any = None) -> AlignmentResult:
        """Inspector verdicts and scores for one pair, without rewriting."""
        return self.check_batch([question], [answer], None if context is None else [context])[0]

    async def aalign_batch(
        self,
        questions: Sequence[str],
        answers: Sequence[str],
        contexts: Sequence[Any] | None = None,
    ) -> list[AlignmentResult]:
        """Async :meth:`align_batch`: generation and scoring run off the event loop."""
        return await adrive(self.batch_steps(questions, answers, contexts))

    async def aalign(self, question: str, answer: str, context: Any = None) -> AlignmentResult:
        """Async :meth:`align`."""
        contexts = None if context is None else [context]
        return (await self.aalign_batch([question], [answer], contexts))[0]

    async def acheck_batch(
        self,
        questions: Sequence[str],
        answers: Sequence[str],
        contexts: Sequence[Any] | None = None,
    ) -> list[AlignmentResult]:
        """Async :meth:`check_batch`."""
        return await self.with_options(check_only=True).aalign_batch(questions, answers, contexts)

    # -- streaming -----------------------------------------------------------------------------

    def stream(self, question: str, answer: str, context: Any = None) -> SquadStream:
        """Stream the aligned text of one pair; the record is on ``.result`` once it is consumed.

        Stages before the last one that fires run whole; the last aligner streams token by token.
        Where the squad may block (an ``on_flag`` policy other than ``rewrite``, or a member
        with a ``block_threshold``) the answer is decided whole and sent in one piece (a blocked
        answer must never have been half shown).
        Once text has streamed it cannot be taken back, so stages after a streamed one are scored
        but not applied (the record marks them). If the streamed output turns out empty, the
        previous text is emitted instead. ``context`` is the answer's sources, as in
        :meth:`align`.
        """
        return SquadStream(self, question, answer, context)

    def stream_steps(
        self, question: str, answer: str, passages: tuple[str, ...] = ()
    ) -> Machine[AlignmentResult]:
        """The algorithm for one validated pair as a stream's step machine: stages before the
        last aligner that fires run whole, that one streams (:class:`StreamRewrite`), later ones
        are recorded as not applied, and text that did not stream is emitted (:class:`Emit`).
        One round: text that has streamed cannot be rewritten again."""
        squad = self.with_options(max_rounds=1)
        works = yield Work(partial(squad._start, [question], [answer], [passages]))
        work = works[0]
        streamed = False
        for orders, number, stage, groups in (
            [] if squad.config.check_only else squad._stages(works)
        ):
            outcomes: dict[int, tuple[Correction | None, str | None]] = {}
            member = next((m for m in squad.members if m.name in groups), None)
            if member is None:
                pass
            elif streamed:
                outcomes[0] = (None, ALREADY_STREAMED)
            elif isinstance(member.aligner, Aligner) and squad._streams_last(works, stage, orders):
                pieces, error = yield StreamRewrite(
                    partial(member.aligner.stream, work.question, work.text),
                    partial(member.aligner.astream, work.question, work.text),
                )
                streamed = True
                outcomes[0] = (
                    (None, stream_failure(error, pieces))
                    if error is not None
                    else squad._accept(Correction("".join(pieces).strip()))
                )
                if outcomes[0][0] is None and not pieces:
                    yield Emit(work.text)
            else:  # an earlier stage, or the grounded repair (nothing to stream): run whole
                outcomes.update(
                    (
                        yield Work(
                            partial(squad._run_group, member, works, [0]),
                            partial(squad._arun_group, member, works, [0]),
                        )
                    )
                )
            yield Work(partial(squad._finish_stage, works, orders, number, stage, groups, outcomes))
        if not streamed:
            yield Emit(work.text)
        return squad._after_rewriting(works)[0]

    def _streams_last(
        self, works: list[_Work], stage: int, orders: list[list[SquadMember]]
    ) -> bool:
        """Whether no member after ``stage`` needs to run, so this stage may stream."""
        return not any(self._needs(m, works[0].scores) for m in orders[0][stage + 1 :])

    def failure_record(self, question: Any, answer: Any, error: BaseException) -> AlignmentResult:
        """The record of a pair this squad could not process, returned as it was."""
        return self._failed(question, answer, error)

    def __repr__(self) -> str:
        members = ", ".join(
            f"{m.name}(aligner={m.aligner is not None}, inspector={m.inspector is not None}, "
            f"threshold={m.threshold}"
            + (f", block_threshold={m.block_threshold})" if m.block_threshold is not None else ")")
            for m in self.members
        )
        return f"Squad([{members}], ordering={self.config.ordering!r})"
