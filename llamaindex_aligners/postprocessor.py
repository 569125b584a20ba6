"""Node-level alignment: inspect (and drop or rewrite) retrieved nodes before synthesis."""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from llama_index.core.bridge.pydantic import ConfigDict, Field, PrivateAttr, field_validator
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode

from aligners import (
    AlignmentResult,
    AlignmentViolation,
    FlatThresholds,
    Machine,
    Squad,
    SquadPolicy,
    Work,
    adrive,
    drive,
    given_fields,
)
from llamaindex_aligners.instrumentation import (
    AlignmentErrorEvent,
    arun_squad,
    dispatcher,
    emit_violation,
    run_squad,
)
from llamaindex_aligners.settings import (
    AlignmentSettings,
    OnError,
    OnFlag,
    configure_squad,
    normalize_on_error,
)

if TYPE_CHECKING:
    from llama_index.core.base.base_query_engine import BaseQueryEngine
    from llama_index.core.chat_engine.types import BaseChatEngine

    from llamaindex_aligners.chat_engine import AlignedChatEngine
    from llamaindex_aligners.query_engine import AlignedQueryEngine

logger = logging.getLogger(__name__)

#: The node metadata key holding the scores; kept out of LLM prompts and embeddings.
METADATA_KEY = "aligners"

NodeMode = Literal["drop", "rewrite", "annotate"]

#: The postprocessor's fields that are AlignmentSettings fields.
_SETTINGS_FIELDS = (
    "criteria",
    "policy",
    "threshold",
    "block_threshold",
    "on_error",
    "on_flag",
    "blocked_message",
)


class AlignerPostprocessor(BaseNodePostprocessor):
    """Scores retrieved nodes with the squad's inspectors, the query as the question.

    Every node gets ``node.metadata["aligners"]`` (scores, passed, flagged, what was done).
    Nodes that fail a criterion are then, by ``mode``: ``"annotate"`` kept as they are,
    ``"drop"`` removed, or ``"rewrite"`` rewritten by the failing criteria's aligners (the
    original text stays in the metadata). Returned nodes are copies; the index is untouched.

    ``on_flag`` (``None``: the squad's own, ``"rewrite"`` by default): ``"raise"`` raises
    ``aligners.AlignmentViolation`` when any node is flagged, in every mode (the query fails
    before the LLM sees the context). In ``mode="rewrite"``, ``"block"`` replaces a flagged node's
    text with ``blocked_message`` (action ``"blocked"``; the original stays in the metadata) and
    ``"rewrite_or_block"`` rewrites and blocks what still fails. :meth:`wrap` hands ``on_flag``
    and ``blocked_message`` on to the answer-level wrapper.

    Example:
        >>> post = AlignerPostprocessor(criteria=["ethical"], threshold=0.6, mode="drop")
        >>> engine = index.as_query_engine(node_postprocessors=[post])  # doctest: +SKIP
        >>> aligned = post.wrap(engine)  # the answer is aligned too  # doctest: +SKIP
    """

    # A misspelt option (thresold=0.3) fails at construction instead of being ignored.
    model_config = ConfigDict(extra="forbid")

    squad: Any = Field(
        default=None,
        exclude=True,
        description="An aligners.Squad; None builds the offline default lazily on first use.",
    )
    criteria: list[str] | None = Field(default=None, description="Squad members to use.")
    policy: SquadPolicy | None = Field(
        default=None,
        description="The policy (an aligners.SquadPolicy); the flat fields below that are "
        "passed are merged onto it (left out or None: its value, and a given squad's own).",
    )
    threshold: FlatThresholds | None = Field(
        default=None, description=SquadPolicy.describe("threshold", "the squad's own")
    )
    block_threshold: FlatThresholds | None = Field(
        default=None,
        description=SquadPolicy.describe("block_threshold", "the squad's own")
        + " Acts in mode='rewrite' under on_flag='rewrite'.",
    )
    mode: NodeMode = Field(default="annotate", description="What to do with failing nodes.")
    on_error: OnError | None = Field(
        default="return_original",
        description=SquadPolicy.describe("on_error", "return_original here")
        + " Carried out by the engine node by node; 'keep' is accepted for return_original.",
    )
    _on_error = field_validator("on_error", mode="before")(normalize_on_error)
    fail_closed: bool = Field(
        default=False,
        description=(
            "When the squad fails on a node under on_error='return_original': False keeps it, "
            "marked {'action': 'failed'} in its metadata; True drops it (nothing unchecked "
            "reaches the LLM)."
        ),
    )
    on_flag: OnFlag | None = Field(
        default=None,
        description=SquadPolicy.describe("on_flag", "the squad's own")
        + " raise acts in any mode, the others in mode='rewrite'.",
    )
    blocked_message: str | None = Field(
        default=None, description=SquadPolicy.describe("blocked_message", "the squad's own")
    )
    _squad: Squad | None = PrivateAttr(default=None)
    _squad_key: str = PrivateAttr(default="")

    @field_validator("squad")
    @classmethod
    def _is_squad(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, Squad):
            raise TypeError(f"squad must be an aligners.Squad, got {type(value).__name__}")
        return value

    def __init__(self, squad: Squad | None = None, **data: Any) -> None:
        super().__init__(squad=squad, **data)  # type: ignore[call-arg]
        # Validate criteria/threshold now so a typo fails at construction, not mid-query.
        self.settings()
        if squad is not None:
            self.get_squad()

    @classmethod
    def class_name(cls) -> str:
        return "AlignerPostprocessor"

    def _values(self) -> dict[str, Any]:
        """The settings fields this postprocessor was given (a default left out overrides
        nothing: its policy's value, or the squad's own, stays)."""
        return given_fields(self, _SETTINGS_FIELDS)

    def settings(self, **overrides: Any) -> AlignmentSettings:
        """This postprocessor's settings (``overrides`` win), as the wrappers take them."""
        return AlignmentSettings(**(self._values() | overrides))

    def get_squad(self) -> Squad:
        """The configured squad (the default one is built here, still without loading weights)."""
        # Fields may be reassigned after construction: rebuild when they differ from the cache.
        squad_id = id(self.squad) if self.squad is not None else None
        key = repr((squad_id, self._values()))
        if self._squad is None or key != self._squad_key:
            self._squad = configure_squad(self.squad, self.settings())
            self._squad_key = key
        return self._squad

    # -- postprocessing ------------------------------------------------------------------------

    def _prepare(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None
    ) -> tuple[Squad, str, list[int], list[str]]:
        for i, node in enumerate(nodes):
            if not isinstance(node, NodeWithScore):
                raise TypeError(
                    f"nodes[{i}] must be a NodeWithScore, got {type(node).__name__} "
                    "(wrap a node as NodeWithScore(node=node))"
                )
        squad = self.get_squad()
        if self.mode != "rewrite":
            # Scores only: "raise" is then applied by _raise_if_flagged.
            squad = squad.with_options(check_only=True)
        question = query_bundle.query_str if query_bundle is not None else ""
        texts = [n.node.get_content(metadata_mode=MetadataMode.NONE) for n in nodes]
        # Empty nodes have nothing to inspect; they pass through untouched.
        indices = [i for i, t in enumerate(texts) if t.strip()]
        return squad, question, indices, [texts[i] for i in indices]

    def _raise_if_flagged(self, results: list[AlignmentResult]) -> None:
        """``on_flag="raise"`` outside ``mode="rewrite"`` (where the squad raises itself)."""
        if self.mode == "rewrite" or self.get_squad().config.on_flag != "raise":
            return
        flagged = [r for r in results if r.flagged]
        if not flagged:
            return
        for result in flagged:
            result.action = "raised"
        violation = AlignmentViolation(flagged[0], results)
        emit_violation(violation, "nodes")
        raise violation

    def _report_failures(self, results: list[AlignmentResult]) -> None:
        """An error event and a warning for the nodes the engine could not check (kept, or
        dropped when ``fail_closed``); the others were checked as usual."""
        failed = [r for r in results if r.action == "failed"]
        if not failed:
            return
        reason = failed[0].failures[0] if failed[0].failures else "squad failed"
        dispatcher.event(AlignmentErrorEvent(target="nodes", error=reason))
        fate = "dropping" if self.fail_closed else "keeping"
        logger.warning("aligner squad failed on %d node(s); %s them: %s", len(failed), fate, reason)

    def _apply(
        self, nodes: list[NodeWithScore], indices: list[int], results: list[AlignmentResult]
    ) -> list[NodeWithScore]:
        self._raise_if_flagged(results)
        self._report_failures(results)
        by_index = dict(zip(indices, results, strict=True))
        out: list[NodeWithScore] = []
        for i, node in enumerate(nodes):
            result = by_index.get(i)
            if result is None:
                out.append(_with_record(node, dict(EMPTY_NODE)))
                continue
            if result.action == "failed":  # the engine kept it under on_error=return_original
                if not self.fail_closed:
                    failures = [f"{f}; node kept as is" for f in result.failures]
                    out.append(_with_record(node, {"action": "failed", "failures": failures}))
                continue
            if self.mode == "drop" and not result.passed:
                logger.debug("dropping node %s (scores %s)", node.node.node_id, result.final_scores)
                continue
            out.append(_annotated(node, result, self.mode))
        return out

    def _steps(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None
    ) -> Machine[list[NodeWithScore]]:
        """The nodes through the squad, as a step machine (one squad call its only work)."""
        squad, question, indices, texts = self._prepare(nodes, query_bundle)
        if not texts:
            return [_with_record(n, dict(EMPTY_NODE)) for n in nodes]
        args = (squad, [question] * len(texts), texts)
        try:
            results = yield Work(
                partial(run_squad, *args, target="nodes"),
                partial(arun_squad, *args, target="nodes"),
            )
        except Exception as error:
            return self._failed(nodes, error)
        return self._apply(nodes, indices, results)

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        return drive(self._steps(nodes, query_bundle))

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        return await adrive(self._steps(nodes, query_bundle))

    def _failed(self, nodes: list[NodeWithScore], error: Exception) -> list[NodeWithScore]:
        """What the engine could not keep node by node (e.g. a squad that cannot be built)."""
        # A violation (on_flag="raise") is a verdict, not a failure: never kept.
        if self.settings().resolved_policy.on_error == "raise" or isinstance(
            error, AlignmentViolation
        ):
            raise error
        reason = f"{type(error).__name__}: {error}"
        dispatcher.event(AlignmentErrorEvent(target="nodes", error=reason))
        if self.fail_closed:
            logger.warning("aligner squad failed on retrieved nodes; dropping them: %s", error)
            return []
        logger.warning("aligner squad failed on retrieved nodes; keeping them: %s", error)
        marker = {"action": "failed", "failures": [f"squad failed ({reason}); node kept as is"]}
        return [_with_record(n, dict(marker)) for n in nodes]

    # -- answer-level short form ---------------------------------------------------------------

    def wrap(
        self, engine: BaseQueryEngine | BaseChatEngine, **overrides: Any
    ) -> AlignedQueryEngine | AlignedChatEngine:
        """Align the final answer of ``engine`` with this postprocessor's squad and settings.

        A query engine gives an :class:`AlignedQueryEngine`, a chat engine an
        :class:`AlignedChatEngine`; ``overrides`` (e.g. ``check_only=True``, ``on_flag="block"``,
        ``check_request=True``) go to it.
        """
        from llama_index.core.base.base_query_engine import BaseQueryEngine
        from llama_index.core.chat_engine.types import BaseChatEngine

        from llamaindex_aligners.chat_engine import AlignedChatEngine
        from llamaindex_aligners.query_engine import AlignedQueryEngine

        # The raw squad: the wrapper applies these (possibly overridden) settings itself.
        kwargs = self._values() | overrides
        if isinstance(engine, BaseQueryEngine):
            return AlignedQueryEngine(engine, squad=self.squad, **kwargs)
        if isinstance(engine, BaseChatEngine):
            return AlignedChatEngine(engine, squad=self.squad, **kwargs)
        raise TypeError(
            f"wrap() takes a llama-index query engine or chat engine, got {type(engine).__name__}"
        )


def _annotated(node: NodeWithScore, result: AlignmentResult, mode: str) -> NodeWithScore:
    """A copy of ``node`` with the squad's verdict in its metadata (and its new text)."""
    inner = node.node.model_copy()
    inner.metadata = dict(inner.metadata)
    rewritten = mode == "rewrite" and result.changed
    action = "blocked" if result.blocked else "rewritten" if rewritten else None
    info: dict[str, Any] = {
        "scores": result.final_scores,
        "initial_scores": result.initial_scores,
        "thresholds": result.thresholds,
        "passed": result.passed,
        "flagged": list(result.flagged),
        "applied": list(result.applied),
        "action": action or ("annotated" if result.flagged else "kept"),
    }
    if result.not_inspected:
        info["not_inspected"] = dict(result.not_inspected)
    if rewritten:
        if not isinstance(inner, TextNode):
            raise TypeError(f"cannot rewrite a {type(inner).__name__}; use mode='annotate'")
        info["original"] = result.original
        inner.set_content(result.text)
    return _with_record(NodeWithScore(node=inner, score=node.score), info)


def _with_record(node: NodeWithScore, info: dict[str, Any]) -> NodeWithScore:
    """A copy of ``node`` (unless already one) with ``info`` as its aligners metadata."""
    inner = node.node.model_copy()
    inner.metadata = dict(inner.metadata)
    inner.metadata[METADATA_KEY] = info
    # Scores are for the application, not for the LLM prompt or the embedding.
    # (New lists: the shallow copy still shares them with the stored node.)
    inner.excluded_llm_metadata_keys = _with_key(inner.excluded_llm_metadata_keys)
    inner.excluded_embed_metadata_keys = _with_key(inner.excluded_embed_metadata_keys)
    return NodeWithScore(node=inner, score=node.score)


EMPTY_NODE = {"action": "skipped", "skipped_reason": "empty node: nothing to inspect"}


def _with_key(keys: list[str]) -> list[str]:
    return [*keys, METADATA_KEY] if METADATA_KEY not in keys else list(keys)
