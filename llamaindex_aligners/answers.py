"""Answer-level alignment shared by the query-engine and chat-engine wrappers."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from llama_index.core.schema import MetadataMode, NodeWithScore

from aligners import (
    AlignmentResult,
    AlignmentViolation,
    Emit,
    Machine,
    Squad,
    SquadPolicy,
    StreamRewrite,
    Work,
    resolve_request_inspector,
)
from llamaindex_aligners.instrumentation import (
    RequestTarget,
    Target,
    acheck_request,
    aiter_squad_stream,
    arun_squad,
    check_request,
    iter_squad_stream,
    run_squad,
)
from llamaindex_aligners.settings import AlignmentSettings, configure_squad, error_record

logger = logging.getLogger(__name__)

#: The key under which wrappers put the squad's record in ``response.metadata``.
METADATA_KEY = "aligners"

Record = dict[str, Any]


def skipped_record(question: str, answer: str, reason: str) -> Record:
    """The record of an answer the squad did not look at (empty, or not text)."""
    return AlignmentResult.skipped(question, answer, reason).to_record()


def request_blocked_record(request: str, text: str, check: Record) -> Record:
    """The record of a request the request inspector turned away (nothing else ran)."""
    return AlignmentResult.blocked_request(request, text, check).to_record()


def request_violation(request: str, text: str, check: Record) -> AlignmentViolation:
    """Under ``on_flag="raise"``: a request the request inspector turned away, as the error the
    squad raises for a flagged answer (its record says ``stage: "request"``)."""
    result = AlignmentResult.blocked_request(request, text, check)
    result.on_flag = "raise"
    result.action = "raised"
    return AlignmentViolation(result)


def with_request_check(record: Record, check: Record | None) -> Record:
    """An answer's record with the verdict on its request beside it (when one was checked)."""
    return record if check is None else {**record, "request_check": check}


class RequestGate:
    """The ``check_request`` option of a wrapper: is the request fine to answer at all?

    The policy's ``check_request``: ``False`` (no check), ``True`` (the shipped request
    inspector; raises ``FileNotFoundError`` now if none ships) or an ``aligners.RequestInspector``,
    at its ``request_threshold``; its ``on_error`` decides what a failing check costs.
    """

    def __init__(self, policy: SquadPolicy, target: RequestTarget) -> None:
        threshold = policy.request_threshold  # in [0, 1]: the policy validated it
        self.inspector = resolve_request_inspector(policy.check_request)
        if threshold is not None and self.inspector is None:
            raise ValueError("request_threshold is set but check_request is off")
        self.threshold = threshold
        self.on_error = policy.on_error
        self.target: RequestTarget = target

    def _failed(self, request: str, error: Exception) -> Record:
        if self.on_error == "raise":
            raise error
        # As under on_error="return_original" for answers: the check fails open, recorded.
        logger.warning("request inspector failed; answering the request: %s", error)
        return {
            "request": request,
            "score": None,
            "threshold": self.threshold,
            "allowed": True,
            "error": f"{type(error).__name__}: {error}",
        }

    def check_steps(self, request: str, blocked_message: str) -> Machine[Record | None]:
        """The verdict's record (``allowed`` says whether to go on), or None without a check;
        a step machine (``drive`` or ``adrive`` runs it)."""
        if self.inspector is None:
            return None
        args = (self.inspector, request, self.threshold, blocked_message, self.target)
        try:
            verdict = yield Work(partial(check_request, *args), partial(acheck_request, *args))
        except Exception as error:
            return self._failed(request, error)
        return verdict.to_record()


@dataclass(frozen=True)
class Sources:
    """The passages an answer rests on: the text of the retrieved nodes, one passage per node.

    Blank nodes give no passage (the engine skips blank passages), so ``nodes[i]`` is the node
    of passage ``i``: a record's grounding is renumbered to index ``source_nodes`` itself.
    """

    passages: tuple[str, ...] = ()
    nodes: tuple[int, ...] = ()

    @classmethod
    def of(cls, source_nodes: Sequence[NodeWithScore] | None) -> Sources:
        """The sources of a response's ``source_nodes``: each node's text, without metadata
        (what a sentence can be checked against; metadata templates are noise to a checker)."""
        passages: list[str] = []
        nodes: list[int] = []
        for i, node in enumerate(source_nodes or ()):
            text = node.node.get_content(metadata_mode=MetadataMode.NONE)
            if text.strip():
                passages.append(text)
                nodes.append(i)
        return cls(tuple(passages), tuple(nodes))

    @property
    def context(self) -> tuple[str, ...] | None:
        """The squad's ``context`` (None: no sources, criteria that read them are skipped)."""
        return self.passages or None

    def record(self, result: AlignmentResult) -> Record:
        """``result``'s record with passage numbers that index ``source_nodes``."""
        record = result.to_record()
        grounding = record.get("grounding")
        if grounding and self.nodes != tuple(range(len(self.nodes))):
            for sentence in grounding["sentences"]:
                if sentence.get("passage") is not None:
                    sentence["passage"] = self.nodes[sentence["passage"]]
        return record


NO_SOURCES = Sources()


class AnswerAligner:
    """Runs a squad on one (question, answer) and returns the text to show plus its record."""

    def __init__(self, squad: Squad | None, settings: AlignmentSettings, target: Target) -> None:
        self.settings = settings
        self.target: Target = target
        self._raw = squad
        # A given squad is configured now, so bad criteria or thresholds fail at construction.
        self._squad = configure_squad(squad, settings) if squad is not None else None

    @property
    def squad(self) -> Squad:
        """The configured squad (the offline default is built on first use; no weights yet)."""
        if self._squad is None:
            self._squad = configure_squad(self._raw, self.settings)
        return self._squad

    @property
    def raises(self) -> bool:
        """Whether a flagged answer or a turned-away request raises (``on_flag="raise"``; a
        check-only squad never raises)."""
        config = self.squad.config
        return config.on_flag == "raise" and not config.check_only

    @property
    def blocked_message(self) -> str:
        """What a blocked answer (or request) becomes: the configured squad's message."""
        return self.squad.config.blocked_message

    @property
    def decides_whole(self) -> bool:
        """Whether the squad decides on the whole answer before any text goes out (every
        ``on_flag`` policy but ``rewrite``, or a member that may block): streams then come in
        one piece, and wrappers run them before returning, so a violation raises from the call
        itself."""
        return self.squad.decides_whole

    def _failed(self, question: str, answer: str, error: Exception) -> tuple[str, Record]:
        # What the engine could not keep answer by answer (e.g. a squad that cannot be built).
        # A violation is the policy's verdict, not a failure: on_error never keeps it.
        if self.settings.resolved_policy.on_error == "raise" or isinstance(
            error, AlignmentViolation
        ):
            raise error
        logger.warning("aligner squad failed; returning the original answer: %s", error)
        return answer, error_record(question, answer, error)

    def align_steps(
        self, question: str, answer: str, sources: Sources = NO_SOURCES
    ) -> Machine[tuple[str, Record]]:
        """The text to return and the record for ``response.metadata``; ``sources`` are what
        the answer rests on (criteria such as ``grounded`` check it against them). A step
        machine: ``drive`` or ``adrive`` runs it."""
        if not answer.strip():
            return answer, skipped_record(question, answer, "empty answer")
        squad = self.squad
        args = (squad, [question], [answer], self.target)
        contexts = None if sources.context is None else [sources.context]
        try:
            results = yield Work(
                partial(run_squad, *args, contexts), partial(arun_squad, *args, contexts)
            )
        except Exception as error:
            return self._failed(question, answer, error)
        return results[0].text, sources.record(results[0])

    def stream_steps(
        self,
        question: str,
        answer: str,
        on_done: Callable[[Record], None],
        sources: Sources = NO_SOURCES,
    ) -> Machine[None]:
        """The aligned text piece by piece; ``on_done(record)`` once it has all streamed. A
        stream machine: ``drive_stream`` or ``adrive_stream`` runs it."""
        if not answer.strip():
            on_done(skipped_record(question, answer, "empty answer"))
            if answer:
                yield Emit(answer)
            return
        args = (self.squad, question, answer, lambda r: on_done(sources.record(r)), self.target)
        pieces, error = yield StreamRewrite(
            partial(iter_squad_stream, *args, sources.context),
            partial(aiter_squad_stream, *args, sources.context),
        )
        if error is not None:
            # The squad keeps aligner failures itself; what lands here is the inspectors failing
            # before any text streamed. Once text has gone out it cannot be replaced: re-raise.
            # (_failed re-raises an AlignmentViolation too.)
            if pieces:
                raise error
            text, record = self._failed(question, answer, error)
            on_done(record)
            yield Emit(text)


def settings_from(
    settings: AlignmentSettings | None,
    criteria: list[str] | str | None,
    policy: SquadPolicy | None = None,
    **flat: Any,
) -> AlignmentSettings:
    """Settings from keyword arguments: ``policy`` and the flat policy keywords (``on_flag``,
    ``threshold``, ``check_request``, ...; None: not given), or a ready
    :class:`AlignmentSettings` (then the keywords given are merged onto its policy)."""
    request: dict[str, Any] = {
        k: flat.pop(k) for k in ("check_request", "request_threshold") if k in flat
    }
    merged = (policy or SquadPolicy()).merge(request)
    given = {name: value for name, value in flat.items() if value is not None}
    if settings is None:
        return AlignmentSettings(criteria=criteria, policy=merged, **given)  # type: ignore[arg-type]
    if not merged.explicit() and not given:
        return settings
    data = settings.model_dump(exclude={"policy"}, exclude_unset=True) | given
    return AlignmentSettings(**data, policy=(settings.policy or SquadPolicy()).merge(merged))
