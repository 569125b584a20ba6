"""``AlignerSquad``: the engine's squad as a LangChain output parser (``llm | AlignerSquad()``)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any, Literal, NamedTuple

from langchain_core.callbacks.manager import (
    AsyncCallbackManagerForChainRun,
    CallbackManagerForChainRun,
    adispatch_custom_event,
    dispatch_custom_event,
)
from langchain_core.documents import Document
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage
from langchain_core.output_parsers import BaseOutputParser
from langchain_core.outputs import ChatGeneration, Generation
from langchain_core.runnables import (
    ConfigurableField,
    Runnable,
    RunnableConfig,
    RunnableLambda,
    RunnableParallel,
    RunnablePassthrough,
    RunnableSerializable,
)
from pydantic import ConfigDict, Field, PrivateAttr, field_validator, model_validator

from aligners import (
    DEFAULT_CRITERIA,
    AlignmentResult,
    AlignmentViolation,
    BlockedMessage,
    OnError,
    OnFlag,
    OnTokenLimit,
    RequestInspector,
    Squad,
    SquadMember,
    SquadPolicy,
    Thresholds,
    default_members,
    list_criteria,
    validate_pair,
)
from langchain_aligners._inputs import (
    METADATA_KEY,
    Sources,
    agather,
    answer_text,
    context_passages,
    gather,
    join_documents,
    question_from_input,
    record_of,
    record_passed,
    stream_chunk,
    tool_call_chunks_of,
    tool_calls_only,
    with_result,
)


class Pair(NamedTuple):
    """One parsed input: the question, the answer's text, the answer object, a record
    already decided without the squad (tool calls only; an invalid answer handed back), and the
    answer's sources (None: none given)."""

    question: str
    text: str
    answer: Any
    preset: AlignmentResult | None = None
    context: Sources | None = None


#: Custom event with the inspector scores of one answer (``astream_events`` name).
SCORES_EVENT = "aligners_scores"
#: Custom event naming the aligners that rewrote one answer.
APPLIED_EVENT = "aligners_applied"

OutputMode = Literal["auto", "text", "message", "record"]

#: AlignerSquad fields that are sugar for SquadPolicy fields of the same name.
_POLICY_SUGAR = (
    "threshold",
    "block_threshold",
    "check_only",
    "on_flag",
    "blocked_message",
    "on_error",
    "on_token_limit",
)

# Members built from field values, shared by every AlignerSquad in the process: a configured
# call (``with_config(configurable=...)``) builds a new parser instance, and must find the same
# Aligner/Inspector objects (their weights live in the engine's MODEL_CACHE either way; sharing
# the objects also keeps zero-shot inspector heads from being rebuilt).
_MEMBERS: dict[tuple[Any, ...], SquadMember] = {}
_MEMBERS_LOCK = threading.Lock()


def _member(
    name: str,
    model: str | None,
    format: str | None,
    max_new_tokens: int | None,
    inspector_encoder: str | None,
    inspector: str | None = None,
) -> SquadMember:
    key = (name, model, format, max_new_tokens, inspector_encoder, inspector)
    with _MEMBERS_LOCK:
        if key not in _MEMBERS:
            options: dict[str, Any] = {}
            if max_new_tokens is not None:
                options["max_new_tokens"] = max_new_tokens
            if format is not None:
                options["format"] = format
            # The engine's one factory, so this parser builds exactly what Squad.default builds.
            (_MEMBERS[key],) = default_members(
                [name],
                aligner=model,
                aligner_options=options,
                inspector_encoder=inspector_encoder,
                inspector=inspector,
            )
        return _MEMBERS[key]


class AlignerSquad(BaseOutputParser[Any]):
    """Aligners after any LLM or chain: inspectors score the answer, aligners fix what fails.

    Pipes like any output parser: ``prompt | llm | AlignerSquad()``. Input a str (output a str),
    a chat message (output a copy with the aligned content and the record in
    ``response_metadata["aligners"]``) or a dict ``{"question": ..., "answer": ..., "context":
    ...}``; ``context`` (optional) is the answer's sources: a str, a list of str or a list of
    ``Document`` (one passage each, in order, so the record's ``grounding.sentences[i].passage``
    indexes that list). :meth:`grounded_chain` builds the retrieval chain that feeds it.

    Example:
        >>> squad = AlignerSquad(criteria=["ethical"], threshold=0.6)  # loads nothing yet
        >>> chain = prompt | llm | squad  # doctest: +SKIP
        >>> rag = squad.grounded_chain(retriever, prompt | llm)  # doctest: +SKIP
    """

    # extra='forbid': a misspelt option (thresold=0.2) fails here instead of being ignored.
    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    criteria: list[str] | None = Field(
        default=None,
        description="Criteria to enforce (default: the squad's, or the engine's DEFAULT_CRITERIA).",
    )
    # The policy (aligners.SquadPolicy declares each option, its default and its meaning); the
    # flat fields below are sugar merged onto it, None leaving the policy's value.
    policy: SquadPolicy | None = Field(
        default=None,
        description="What happens to flagged and failing answers (an aligners.SquadPolicy); "
        "the flat fields (threshold, on_flag, ...) are merged onto it. Here on_error is "
        "always applied, raise by default, also to a squad given as squad=.",
    )
    threshold: Thresholds | None = Field(
        default=None, description=SquadPolicy.describe("threshold", "the policy's")
    )
    block_threshold: Thresholds | None = Field(
        default=None, description=SquadPolicy.describe("block_threshold", "the policy's")
    )
    ordering: Literal["batch-mean", "per-answer", "fixed"] | None = Field(
        default=None, description="Order of the aligners (None: the engine's batch-mean)."
    )
    max_rounds: int | None = Field(default=None, ge=1, description="Rounds of stages (None: 1).")
    check_only: bool | None = Field(
        default=None, description=SquadPolicy.describe("check_only", "the policy's")
    )
    question_key: str = Field(default="question", description="Question key of dict inputs.")
    answer_key: str = Field(default="answer", description="Answer key of dict inputs.")
    context_key: str = Field(
        default="context",
        description=(
            "Key of the answer's sources in dict inputs: a str, a list of str or a list of "
            "Documents (one passage each, in order); criteria that read sources (grounded) "
            "check the answer against them."
        ),
    )
    model: str | None = Field(
        default=None, description="Aligner model (alias, directory, .gguf); None: engine default."
    )
    format: str | None = Field(default=None, description="Aligner prompt format (default chat).")
    max_new_tokens: int | None = Field(
        default=None, gt=0, description="Cap on the aligner's output length in tokens."
    )
    on_token_limit: OnTokenLimit | None = Field(
        default=None, description=SquadPolicy.describe("on_token_limit", "the policy's")
    )
    inspector_encoder: str | None = Field(
        default=None,
        description=(
            "None: the engine's default inspectors; an encoder alias or directory: zero-shot "
            "inspectors on that encoder."
        ),
    )
    inspector: str | None = Field(
        default=None,
        description=(
            "A saved inspector directory (from `aligners train`) for every criterion: a "
            "cross-encoder serves each from its head; None: the shipped inspectors."
        ),
    )
    output: OutputMode = Field(
        default="auto",
        description=(
            "auto: the answer's own type (str or message), the record when check_only and the "
            "answer is a str; text; message; record."
        ),
    )
    squad: Squad | None = Field(
        default=None, exclude=True, description="A pre-built engine squad to run instead."
    )
    on_flag: OnFlag | None = Field(
        default=None,
        description=SquadPolicy.describe("on_flag", "the squad's")
        + " Under block a message's tool calls are dropped with it.",
    )
    blocked_message: BlockedMessage | None = Field(
        default=None, description=SquadPolicy.describe("blocked_message", "the squad's")
    )
    on_error: OnError | None = Field(
        default=None,
        description=SquadPolicy.describe("on_error", "the policy's; raise here")
        + " Always applied here, also to a squad given as squad=.",
    )

    _engine: Squad | None = PrivateAttr(default=None)
    _policy: SquadPolicy = PrivateAttr(default_factory=SquadPolicy)

    @field_validator("criteria", mode="before")
    @classmethod
    def _one_criterion(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [value]
        if value is not None and not list(value):
            raise ValueError("criteria must name at least one criterion (or be None for all)")
        return value

    @model_validator(mode="after")
    def _merged_policy(self) -> AlignerSquad:
        # One merge and validation path: a bad value fails here, naming its field.
        flat = {name: getattr(self, name) for name in _POLICY_SUGAR}
        self._policy = SquadPolicy.for_surface("langchain", self.policy).merge(**flat)
        return self

    @property
    def resolved_policy(self) -> SquadPolicy:
        """The policy this parser applies: the surface's defaults, ``policy``, then the flat
        fields (what it sets explicitly replaces a given squad's)."""
        return self._policy

    @property
    def blocked_reply(self) -> str:
        """The text a blocked answer gets: this parser's policy's when it sets one, else a given
        squad's (builds nothing)."""
        if "blocked_message" not in self._policy.explicit() and self.squad is not None:
            return self.squad.config.blocked_message
        return self._policy.blocked_message

    def with_policy(self, policy: SquadPolicy | None = None, **fields: Any) -> AlignerSquad:
        """A copy whose policy has ``policy``'s explicit fields merged on, with other ``fields``
        (validated again, so the copy's engine reflects them)."""
        data = {name: getattr(self, name) for name in type(self).model_fields} | fields
        data["policy"] = (self.policy or SquadPolicy()).merge(policy)
        return type(self)(**data)

    @model_validator(mode="after")
    def _known_criteria(self) -> AlignerSquad:
        # Named here, at configuration time (also per call), not as a KeyError deep in a run.
        known = self.squad.criteria if self.squad is not None else list_criteria()
        unknown = [c for c in self.criteria or [] if c not in known]
        if unknown and self.squad is not None:
            raise ValueError(f"criteria {unknown} are not in this squad (it has {sorted(known)})")
        if unknown:
            raise ValueError(f"unknown criteria {unknown} (registered: {sorted(known)})")
        return self

    # -- the engine ----------------------------------------------------------------------------

    @property
    def engine(self) -> Squad:
        """The engine squad these settings describe (built once per instance, loads nothing)."""
        if self._engine is None:
            self._engine = self._build_engine()
        return self._engine

    def _build_engine(self) -> Squad:
        if self.squad is not None:
            base = self.squad.select(self.criteria) if self.criteria else self.squad
        else:
            names = self.criteria or list(DEFAULT_CRITERIA)
            members = [
                _member(
                    n,
                    self.model,
                    self.format,
                    self.max_new_tokens,
                    self.inspector_encoder,
                    self.inspector,
                )
                for n in names
            ]
            base = Squad(members)
        # on_error is carried out by the engine: it keeps a batch's good answers.
        return base.with_options(
            policy=self._policy, ordering=self.ordering, max_rounds=self.max_rounds
        )

    def _failed(self, question: str, answer: str, error: Exception) -> AlignmentResult:
        """The record of an answer the squad could not process (``on_error="return_original"``)."""
        # The engine may be what failed to build: then the policy says.
        built = self._engine
        check_only = built.config.check_only if built is not None else self._policy.check_only
        return AlignmentResult.failed(question, answer, error, check_only=check_only)

    def _align_batch(
        self,
        questions: list[str],
        answers: list[str],
        contexts: list[tuple[str, ...] | None] | None = None,
    ) -> list[AlignmentResult]:
        try:
            return self.engine.align_batch(questions, answers, contexts)
        except AlignmentViolation:
            raise  # the policy the user chose, not a failure to fail open on
        except Exception as error:
            if self._policy.on_error == "raise":
                raise
            return [self._failed(q, a, error) for q, a in zip(questions, answers, strict=True)]

    async def _aalign_batch(
        self,
        questions: list[str],
        answers: list[str],
        contexts: list[tuple[str, ...] | None] | None = None,
    ) -> list[AlignmentResult]:
        try:
            return await self.engine.aalign_batch(questions, answers, contexts)
        except AlignmentViolation:
            raise
        except Exception as error:
            if self._policy.on_error == "raise":
                raise
            return [self._failed(q, a, error) for q, a in zip(questions, answers, strict=True)]

    @property
    def available_criteria(self) -> list[str]:
        """Criteria this parser can be configured with."""
        return self.squad.criteria if self.squad is not None else list_criteria()

    # -- input and output ----------------------------------------------------------------------

    def _pair(self, value: Any) -> Pair:
        """The (question, answer text, answer object) of one input; raises a clear error if
        invalid, unless ``on_error="return_original"`` can hand the answer back as it was."""
        try:
            return self._parse(value)
        except (TypeError, ValueError) as error:
            if self._policy.on_error == "raise":
                raise
            fallback = self._fallback(value)
            if fallback is None:
                raise  # not an answer at all: nothing to hand back
            question, text, answer = fallback
            return Pair(question, text, answer, self._failed(question, text, error))

    def _parse(self, value: Any) -> Pair:
        question: Any = ""
        answer = value
        context: Sources | None = None
        if isinstance(value, Mapping):
            if self.answer_key not in value:
                raise ValueError(
                    f"AlignerSquad got a dict without an {self.answer_key!r} key "
                    f"(keys: {sorted(map(str, value))}); set answer_key= to the right one"
                )
            answer = value[self.answer_key]
            if value.get(self.question_key) is not None:
                question = question_from_input(value[self.question_key], self.question_key)
            context = context_passages(value.get(self.context_key), self.context_key)
        text = answer_text(answer)
        if tool_calls_only(answer, text):
            skipped = AlignmentResult.skipped(question, text, "tool calls only: no text to inspect")
            return Pair(question, text, answer, skipped)
        validate_pair(question, text)
        return Pair(question, text, answer, None, context)

    def _fallback(self, value: Any) -> tuple[str, str, Any] | None:
        """What an invalid input still holds: its answer (a str or a message), if any."""
        answer = value.get(self.answer_key) if isinstance(value, Mapping) else value
        if not isinstance(answer, (str, BaseMessage)):
            return None
        question = value.get(self.question_key) if isinstance(value, Mapping) else ""
        return (question if isinstance(question, str) else ""), answer_text(answer), answer

    def _align_pairs(self, pairs: Sequence[Pair]) -> list[AlignmentResult]:
        """Results for parsed pairs: skipped and failed ones recorded, the rest in one call."""
        results: list[AlignmentResult | None] = [p.preset for p in pairs]
        todo = [i for i, r in enumerate(results) if r is None]
        if todo:
            aligned = self._align_batch(
                [pairs[i].question for i in todo],
                [pairs[i].text for i in todo],
                _contexts([pairs[i] for i in todo]),
            )
            for i, result in zip(todo, aligned, strict=True):
                results[i] = _renumbered(pairs[i], result)
        return [r for r in results if r is not None]

    async def _aalign_pairs(self, pairs: Sequence[Pair]) -> list[AlignmentResult]:
        results: list[AlignmentResult | None] = [p.preset for p in pairs]
        todo = [i for i, r in enumerate(results) if r is None]
        if todo:
            aligned = await self._aalign_batch(
                [pairs[i].question for i in todo],
                [pairs[i].text for i in todo],
                _contexts([pairs[i] for i in todo]),
            )
            for i, result in zip(todo, aligned, strict=True):
                results[i] = _renumbered(pairs[i], result)
        return [r for r in results if r is not None]

    def _output(self, answer: Any, result: AlignmentResult) -> Any:
        mode = self.output
        if mode == "auto":
            if isinstance(answer, BaseMessage):
                mode = "message"
            else:
                mode = "record" if result.check_only else "text"
        if mode == "record":
            return record_of(result)
        if mode == "text":
            return result.text
        if isinstance(answer, BaseMessage):
            return with_result(answer, result.text, record_of(result), blocked=result.blocked)
        return AIMessage(content=result.text, response_metadata={METADATA_KEY: record_of(result)})

    @staticmethod
    def _events(result: AlignmentResult) -> list[tuple[str, dict[str, Any]]]:
        scores = {
            "scores": result.initial_scores,
            "final_scores": result.final_scores,
            "thresholds": result.thresholds,
            "flagged": result.flagged,
            "question_provided": result.question_provided,
            "check_only": result.check_only,
        }
        applied = {
            "applied": result.applied,
            "changed": result.changed,
            "passed": record_passed(result),
            "failures": result.failures,
            "action": result.action,
            "on_flag": result.on_flag,
        }
        return [(SCORES_EVENT, scores), (APPLIED_EVENT, applied)]

    def _emit(self, result: AlignmentResult, config: RunnableConfig) -> None:
        for name, data in self._events(result):
            dispatch_custom_event(name, data, config=config)

    async def _aemit(self, result: AlignmentResult, config: RunnableConfig) -> None:
        for name, data in self._events(result):
            await adispatch_custom_event(name, data, config=config)

    # -- BaseOutputParser ----------------------------------------------------------------------

    def parse(self, text: str) -> Any:
        """Align one answer without a question (no callbacks; prefer ``invoke``)."""
        pair = self._pair(text)
        return self._output(pair[2], self._align_pairs([pair])[0])

    def parse_result(self, result: list[Generation], *, partial: bool = False) -> Any:
        if not result:
            raise ValueError("parse_result got no generations: there is no answer to align")
        first = result[0]
        value = first.message if isinstance(first, ChatGeneration) else first.text
        pair = self._pair(value)
        return self._output(pair[2], self._align_pairs([pair])[0])

    @property
    def _type(self) -> str:
        return "aligner_squad"

    @property
    def InputType(self) -> Any:  # noqa: N802 (LangChain's name)
        """A str, a message, or a dict holding the answer (and the question, the context)."""
        return str | AnyMessage | dict[str, Any]

    def get_format_instructions(self) -> str:
        return ""  # the squad rewrites prose; it asks nothing of the upstream model

    # -- invoke --------------------------------------------------------------------------------

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self._call_with_config(self._invoke, input, config, run_type="parser")

    def _invoke(
        self, input: Any, run_manager: CallbackManagerForChainRun, config: RunnableConfig
    ) -> Any:
        pair = self._pair(input)
        result = self._align_pairs([pair])[0]
        self._emit(result, config)
        return self._output(pair[2], result)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return await self._acall_with_config(self._ainvoke, input, config, run_type="parser")

    async def _ainvoke(
        self, input: Any, run_manager: AsyncCallbackManagerForChainRun, config: RunnableConfig
    ) -> Any:
        pair = self._pair(input)
        result = (await self._aalign_pairs([pair]))[0]  # off the event loop
        await self._aemit(result, config)
        return self._output(pair[2], result)

    # -- batch: one engine call for the whole batch --------------------------------------------

    def batch(
        self,
        inputs: list[Any],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        if not inputs:
            return []
        return self._batch_with_config(
            self._batch, inputs, config, return_exceptions=return_exceptions, run_type="parser"
        )

    def _split(self, inputs: Sequence[Any]) -> tuple[list[Any], list[int], list[Pair]]:
        """Bad inputs become their own error; the rest go to the engine together."""
        outputs: list[Any] = [None] * len(inputs)
        indices: list[int] = []
        pairs: list[Pair] = []
        for i, value in enumerate(inputs):
            try:
                pairs.append(self._pair(value))
                indices.append(i)
            except (TypeError, ValueError) as error:
                outputs[i] = error
        return outputs, indices, pairs

    def _batch(
        self,
        inputs: list[Any],
        run_manager: list[CallbackManagerForChainRun],
        config: list[RunnableConfig],
    ) -> list[Any]:
        outputs, indices, pairs = self._split(inputs)
        if pairs:
            try:
                results = self._align_pairs(pairs)
            except AlignmentViolation as violation:
                results = self._batch_results(pairs, violation)
            for i, pair, result in zip(indices, pairs, results, strict=True):
                original = pair.answer
                self._emit(result, config[i])
                outputs[i] = self._output_or_violation(original, result)
        return outputs

    async def abatch(
        self,
        inputs: list[Any],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        if not inputs:
            return []
        return await self._abatch_with_config(
            self._abatch, inputs, config, return_exceptions=return_exceptions, run_type="parser"
        )

    async def _abatch(
        self,
        inputs: list[Any],
        run_manager: list[AsyncCallbackManagerForChainRun],
        config: list[RunnableConfig],
    ) -> list[Any]:
        outputs, indices, pairs = self._split(inputs)
        if pairs:
            try:
                results = await self._aalign_pairs(pairs)
            except AlignmentViolation as violation:
                results = self._batch_results(pairs, violation)
            for i, pair, result in zip(indices, pairs, results, strict=True):
                original = pair.answer
                await self._aemit(result, config[i])
                outputs[i] = self._output_or_violation(original, result)
        return outputs

    @staticmethod
    def _batch_results(
        pairs: Sequence[Pair], violation: AlignmentViolation
    ) -> list[AlignmentResult]:
        """Every input's result after a violation: skipped inputs keep their own record."""
        aligned = iter(violation.results)
        return [pair.preset or next(aligned) for pair in pairs]

    def _output_or_violation(self, original: Any, result: AlignmentResult) -> Any:
        """A raised answer becomes its own error (``return_exceptions=True`` returns it in
        place; otherwise the batch raises the first one), so one answer cannot hide others."""
        if result.action == "raised":
            return AlignmentViolation(result)
        return self._output(original, result)

    # -- streaming: buffer the upstream answer, stream the aligned one -------------------------

    def _stream_mode(self, original: Any) -> str:
        if self.output != "auto":
            return self.output
        if isinstance(original, BaseMessage):
            return "message"
        # Without building the engine: a squad that cannot be built must not cost the answer.
        prebuilt = self.squad is not None and self.squad.config.check_only
        return "record" if self._policy.check_only or prebuilt else "text"

    def transform(
        self, input: Iterator[Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        yield from self._transform_stream_with_config(
            input, self._transform, config, run_type="parser"
        )

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        yield from self.transform(iter([input]), config, **kwargs)

    def _transform(
        self,
        chunks: Iterator[Any],
        run_manager: CallbackManagerForChainRun,
        config: RunnableConfig,
    ) -> Iterator[Any]:
        # An aligner rewrites the whole answer, so the upstream stream is gathered first.
        pair = self._pair(gather(chunks))
        question, answer, original, preset, context = pair
        mode = self._stream_mode(original)
        template = original if isinstance(original, BaseMessage) else None
        if preset is not None:  # tool calls only, or an answer handed back as it was
            self._emit(preset, config)
            if preset.action == "failed":
                yield from self._fallback_piece(mode, template, answer)
            yield from self._stream_tail(mode, template, preset)
            return
        streamed = False
        try:
            # Building the stream may fail too.
            squad_stream = self.engine.stream(
                question, answer, None if context is None else context.passages
            )
            for piece in squad_stream:
                streamed = True
                if mode == "text":
                    yield piece
                elif mode == "message":
                    yield stream_chunk(piece, template)
            result = squad_stream.result
            if result is not None:
                result = _renumbered(pair, result)
        except Exception as error:
            if self._policy.on_error == "raise" or streamed:
                raise
            result = self._failed(question, answer, error)
            yield from self._fallback_piece(mode, template, answer)
        assert result is not None
        self._emit(result, config)
        yield from self._stream_tail(mode, template, result)

    async def atransform(
        self, input: AsyncIterator[Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        async for chunk in self._atransform_stream_with_config(
            input, self._atransform, config, run_type="parser"
        ):
            yield chunk

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        async def one() -> AsyncIterator[Any]:
            yield input

        async for chunk in self.atransform(one(), config, **kwargs):
            yield chunk

    async def _atransform(
        self,
        chunks: AsyncIterator[Any],
        run_manager: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
    ) -> AsyncIterator[Any]:
        pair = self._pair(await agather(chunks))
        question, answer, original, preset, context = pair
        mode = self._stream_mode(original)
        template = original if isinstance(original, BaseMessage) else None
        if preset is not None:
            await self._aemit(preset, config)
            tail = self._stream_tail(mode, template, preset)
            if preset.action == "failed":
                tail = self._fallback_piece(mode, template, answer) + tail
            for chunk in tail:
                yield chunk
            return
        streamed = False
        try:
            squad_stream = self.engine.stream(
                question, answer, None if context is None else context.passages
            )
            async for piece in squad_stream:
                streamed = True
                if mode == "text":
                    yield piece
                elif mode == "message":
                    yield stream_chunk(piece, template)
            result = squad_stream.result
            if result is not None:
                result = _renumbered(pair, result)
        except Exception as error:
            if self._policy.on_error == "raise" or streamed:
                raise
            result = self._failed(question, answer, error)
            for chunk in self._fallback_piece(mode, template, answer):
                yield chunk
        assert result is not None
        await self._aemit(result, config)
        for chunk in self._stream_tail(mode, template, result):
            yield chunk

    @staticmethod
    def _fallback_piece(mode: str, template: BaseMessage | None, answer: str) -> list[Any]:
        if mode == "text":
            return [answer]
        if mode == "message":
            return [stream_chunk(answer, template)]
        return []

    @staticmethod
    def _stream_tail(mode: str, template: BaseMessage | None, result: AlignmentResult) -> list[Any]:
        if mode == "record":
            return [record_of(result)]
        if mode == "message":
            # Metadata goes on one chunk only: chunk addition would concatenate repeated strings.
            metadata = dict(getattr(template, "response_metadata", {}) or {})
            metadata[METADATA_KEY] = record_of(result)
            # Tool calls ride on the last chunk, after the aligned text (not when blocked).
            calls = [] if result.blocked else tool_call_chunks_of(template)
            return [stream_chunk("", template, response_metadata=metadata, tool_call_chunks=calls)]
        return []

    # -- composition helpers -------------------------------------------------------------------

    def wrap(
        self,
        runnable: Any,
        *,
        question_key: str | None = None,
        check_request: bool | RequestInspector | None = None,
        request_threshold: float | None = None,
    ) -> Runnable[Any, Any]:
        """A runnable that runs ``runnable`` on its input and aligns the output, taking the
        question from that same input (a str, messages, a prompt value or ``input[question_key]``).

        ``check_request`` (``True``: the shipped request inspector, or a ``RequestInspector``)
        checks the request first, as ``AlignerSquadMiddleware`` does: a request scored under
        ``request_threshold`` never reaches ``runnable`` and gets this squad's blocked message
        (see :class:`~langchain_aligners.RequestGuard`). Both default to this parser's policy.
        """
        check = self._policy.merge(check_request=check_request, request_threshold=request_threshold)
        check_request, request_threshold = check.check_request, check.request_threshold
        key = question_key or self.question_key
        wrapped = wrap_with_question(
            runnable,
            self,
            question_key=key,
            squad_question_key=self.question_key,
            squad_answer_key=self.answer_key,
        )
        if check_request is False:
            return wrapped
        from langchain_aligners.request_guard import RequestGuard

        # The blocked reply takes the shape this squad gives its answers: in auto mode the
        # answer's own type, which is what `runnable` outputs.
        output: Any = self.output
        if output not in ("text", "message", "record"):
            output = "text" if getattr(runnable, "OutputType", None) is str else "message"
        blocked = self.blocked_reply
        return RequestGuard(
            wrapped,
            check_request=check_request,
            request_threshold=request_threshold,
            blocked_message=blocked,
            question_key=key,
            output=output,
        )

    def grounded_chain(
        self,
        retriever: Runnable[Any, Any],
        generator: Runnable[Any, Any],
        *,
        format_docs: Callable[[list[Document]], str] | None = None,
    ) -> Runnable[Any, Any]:
        """The standard retrieval chain with its answer checked against what was retrieved.

        ``chain = squad.grounded_chain(retriever, prompt | llm)`` is the chain
        ``{"context": retriever | format_docs, "question": RunnablePassthrough()} | prompt | llm``
        followed by this squad, which gets the question, the answer and the retrieved
        documents as its context (one passage per document, in order). ``generator`` gets
        ``{"context": format_docs(docs), "question": question}``; ``format_docs`` defaults to
        the documents' ``page_content`` joined by blank lines. The input is the question (a str,
        messages, or a dict holding it under ``question_key``); the output is this squad's
        (an aligned str, or message with the record). Streams, batches and runs async like any
        chain.
        """
        formatted = format_docs or join_documents
        question_key, context_key = self.question_key, self.context_key

        def question(value: Any) -> str:
            return question_from_input(value, question_key)

        def prompt_input(value: Mapping[str, Any]) -> dict[str, Any]:
            return {"context": formatted(value[context_key]), "question": value[question_key]}

        ask = RunnableLambda(question, name="question")
        retrieve = RunnableParallel({question_key: ask, context_key: ask | retriever})
        answer = RunnablePassthrough.assign(
            **{self.answer_key: RunnableLambda(prompt_input, name="format_docs") | generator}
        )
        squad: Runnable[Any, Any] = self  # a dict in: the parser's input type says str
        return (retrieve | answer | squad).with_config(run_name="GroundedChain")

    def configurable(self, prefix: str = "aligner_") -> RunnableSerializable[Any, Any]:
        """This squad with per-call settings: ``{prefix}criteria`` (a list of names),
        ``{prefix}threshold``, ``{prefix}block_threshold`` and ``{prefix}check_only`` under
        ``configurable``.
        """
        criteria = self.criteria or (self.squad.criteria if self.squad else list(DEFAULT_CRITERIA))
        return self.configurable_fields(
            # A plain field, not a multi-option one: an unknown name then reaches the validator
            # and fails as a ValueError naming it (a multi-option field raises a bare KeyError).
            criteria=ConfigurableField(
                id=f"{prefix}criteria",
                name="Aligner criteria",
                description=(
                    f"Which of the squad's criteria to enforce (default {list(criteria)}; "
                    f"any of {self.available_criteria})."
                ),
            ),
            threshold=ConfigurableField(
                id=f"{prefix}threshold",
                name="Aligner threshold",
                description="Inspector score under which an aligner rewrites the answer.",
            ),
            block_threshold=ConfigurableField(
                id=f"{prefix}block_threshold",
                name="Aligner block threshold",
                description="Inspector score under which a rewritten answer is still blocked.",
            ),
            check_only=ConfigurableField(
                id=f"{prefix}check_only",
                name="Aligner check only",
                description="Return the inspectors' verdicts without rewriting.",
            ),
        )


def _contexts(pairs: Sequence[Pair]) -> list[tuple[str, ...] | None] | None:
    """The pairs' contexts for the engine (None when no pair has one)."""
    contexts = [None if p.context is None else p.context.passages for p in pairs]
    return contexts if any(c is not None for c in contexts) else None


def _renumbered(pair: Pair, result: AlignmentResult) -> AlignmentResult:
    return result if pair.context is None else pair.context.renumber(result)


def wrap_with_question(
    runnable: Any,
    squad: Runnable[Any, Any],
    *,
    question_key: str = "question",
    squad_question_key: str = "question",
    squad_answer_key: str = "answer",
) -> Runnable[Any, Any]:
    """``runnable`` followed by ``squad`` (any AlignerSquad runnable, configurable ones too),
    with the question taken from the input of ``runnable``.
    """

    def question(value: Any) -> str:
        return question_from_input(value, question_key)

    gather_pair = RunnableParallel(
        {
            squad_question_key: RunnableLambda(question, name="question"),
            squad_answer_key: runnable,
        }
    )
    return gather_pair | squad
