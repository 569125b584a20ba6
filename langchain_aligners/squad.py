"""``AlignerSquad``: the engine's squad as a LangChain output parser (``llm | AlignerSquad()``)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any, Literal

from langchain_core.documents import Document
from langchain_core.messages import AnyMessage, BaseMessage
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
from langchain_core.runnables.configurable import RunnableConfigurableFields
from langchain_core.runnables.utils import AnyConfigurableField
from pydantic import ConfigDict, Field, PrivateAttr, field_validator, model_validator

from aligners import (
    DEFAULT_CRITERIA,
    AlignmentResult,
    AlignmentViolation,
    BlockedMessage,
    Emit,
    FlatThresholds,
    Machine,
    OnError,
    OnFlag,
    OnTokenLimit,
    RequestInspector,
    Squad,
    SquadMember,
    SquadPolicy,
    SquadStream,
    StreamRewrite,
    Work,
    adrive,
    adrive_stream,
    default_members,
    drive,
    drive_stream,
    given_fields,
    list_criteria,
)
from langchain_aligners._inputs import (
    agather,
    gather,
    join_documents,
    question_from_input,
)
from langchain_aligners._messages import (
    APPLIED_EVENT,
    SCORES_EVENT,
    OutputMode,
    emit_step,
    output_of,
    output_or_violation,
    piece_chunks,
    stream_mode,
    stream_tail,
)
from langchain_aligners._parsing import (
    InputKeys,
    Pair,
    input_fallback,
    pair_contexts,
    parse_input,
    renumbered,
)

__all__ = ["APPLIED_EVENT", "SCORES_EVENT", "AlignerSquad", "OutputMode", "wrap_with_question"]

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
    # flat fields below are sugar: those passed are merged onto it (None: the policy's value),
    # those left out read their defaults and change nothing.
    policy: SquadPolicy | None = Field(
        default=None,
        description="What happens to flagged and failing answers (an aligners.SquadPolicy); "
        "the flat fields (threshold, on_flag, ...) are merged onto it. Here on_error is "
        "always applied, raise by default, also to a squad given as squad=.",
    )
    threshold: FlatThresholds | None = Field(
        default=None, description=SquadPolicy.describe("threshold", "the policy's")
    )
    block_threshold: FlatThresholds | None = Field(
        default=None, description=SquadPolicy.describe("block_threshold", "the policy's")
    )
    ordering: Literal["batch-mean", "per-answer", "fixed"] | None = Field(
        default=None, description="Order of the aligners (None: the engine's batch-mean)."
    )
    max_rounds: int | None = Field(default=None, ge=1, description="Rounds of stages (None: 1).")
    check_only: bool | None = Field(
        default=False, description=SquadPolicy.describe("check_only", "the policy's")
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
        default="raise",
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
        # One merge and validation path: a bad value fails here, naming its field. Only the
        # flat fields passed count: a default read back (on_error="raise") overrides nothing.
        flat = given_fields(self, _POLICY_SUGAR)
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
        data = given_fields(self, type(self).model_fields) | fields
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

    def _align_steps(self, pairs: Sequence[Pair]) -> Machine[list[AlignmentResult]]:
        """Results for parsed pairs: skipped and failed ones recorded, the rest in one engine
        call (sync or async, as the driver runs it)."""
        todo = [p for p in pairs if p.preset is None]
        if not todo:
            return [p.preset for p in pairs if p.preset is not None]
        questions, answers = [p.question for p in todo], [p.text for p in todo]
        contexts = pair_contexts(todo)
        try:
            aligned = yield Work(
                lambda: self.engine.align_batch(questions, answers, contexts),
                lambda: self.engine.aalign_batch(questions, answers, contexts),
            )
        except AlignmentViolation:
            raise  # the policy the user chose, not a failure to fail open on
        except Exception as error:
            if self._policy.on_error == "raise":
                raise
            aligned = [self._failed(q, a, error) for q, a in zip(questions, answers, strict=True)]
        fresh = iter(aligned)
        return [p.preset or renumbered(p, next(fresh)) for p in pairs]

    @property
    def available_criteria(self) -> list[str]:
        """Criteria this parser can be configured with."""
        return self.squad.criteria if self.squad is not None else list_criteria()

    # -- input and output ----------------------------------------------------------------------

    @property
    def _keys(self) -> InputKeys:
        return InputKeys(self.question_key, self.answer_key, self.context_key)

    def _pair(self, value: Any) -> Pair:
        """The (question, answer text, answer object) of one input; raises a clear error if
        invalid, unless ``on_error="return_original"`` can hand the answer back as it was."""
        try:
            return parse_input(value, self._keys)
        except (TypeError, ValueError) as error:
            if self._policy.on_error == "raise":
                raise
            fallback = input_fallback(value, self._keys)
            if fallback is None:
                raise  # not an answer at all: nothing to hand back
            question, text, answer = fallback
            return Pair(question, text, answer, self._failed(question, text, error))

    # -- BaseOutputParser ----------------------------------------------------------------------

    def parse(self, text: str) -> Any:
        """Align one answer without a question (no callbacks; prefer ``invoke``)."""
        pair = self._pair(text)
        return output_of(self.output, pair.answer, drive(self._align_steps([pair]))[0])

    def parse_result(self, result: list[Generation], *, partial: bool = False) -> Any:
        if not result:
            raise ValueError("parse_result got no generations: there is no answer to align")
        first = result[0]
        value = first.message if isinstance(first, ChatGeneration) else first.text
        pair = self._pair(value)
        return output_of(self.output, pair.answer, drive(self._align_steps([pair]))[0])

    @property
    def _type(self) -> str:
        return "aligner_squad"

    @property
    def InputType(self) -> Any:  # noqa: N802 (LangChain's name)
        """A str, a message, or a dict holding the answer (and the question, the context)."""
        return str | AnyMessage | dict[str, Any]

    def get_format_instructions(self) -> str:
        return ""  # the squad rewrites prose; it asks nothing of the upstream model

    # -- invoke, batch (one engine call for the whole batch) and stream: one step machine each,
    # driven sync or async --------------------------------------------------------------------

    def _invoke_steps(self, input: Any, config: RunnableConfig) -> Machine[Any]:
        pair = self._pair(input)
        (result,) = yield from self._align_steps([pair])
        yield emit_step(result, config)
        return output_of(self.output, pair.answer, result)

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        run = lambda input, config: drive(self._invoke_steps(input, config))  # noqa: E731
        return self._call_with_config(run, input, config, run_type="parser")

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        run = lambda input, config: adrive(self._invoke_steps(input, config))  # noqa: E731
        return await self._acall_with_config(run, input, config, run_type="parser")

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

    def _batch_steps(self, inputs: list[Any], config: list[RunnableConfig]) -> Machine[list[Any]]:
        outputs, indices, pairs = self._split(inputs)
        if not pairs:
            return outputs
        try:
            results = yield from self._align_steps(pairs)
        except AlignmentViolation as violation:
            # Every input's result: skipped inputs keep their own record.
            aligned = iter(violation.results)
            results = [pair.preset or next(aligned) for pair in pairs]
        for i, pair, result in zip(indices, pairs, results, strict=True):
            yield emit_step(result, config[i])
            outputs[i] = output_or_violation(self.output, pair.answer, result)
        return outputs

    def batch(
        self,
        inputs: list[Any],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        run = lambda inputs, config: drive(self._batch_steps(inputs, config))  # noqa: E731
        return self._batch_with_config(
            run, inputs, config, return_exceptions=return_exceptions, run_type="parser"
        ) if inputs else []

    async def abatch(
        self,
        inputs: list[Any],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        run = lambda inputs, config: adrive(self._batch_steps(inputs, config))  # noqa: E731
        return await self._abatch_with_config(
            run, inputs, config, return_exceptions=return_exceptions, run_type="parser"
        ) if inputs else []

    def _stream_steps(self, value: Any, config: RunnableConfig) -> Machine[None]:
        """One gathered input streamed: the aligned text (or message chunks) as it comes, then
        the record. An aligner rewrites the whole answer, so the upstream stream is gathered
        first."""
        pair = self._pair(value)
        # Without building the engine: a squad that cannot be built must not cost the answer.
        check_only = self._policy.check_only or bool(self.squad and self.squad.config.check_only)
        mode = stream_mode(self.output, pair.answer, check_only)
        template = pair.answer if isinstance(pair.answer, BaseMessage) else None
        if pair.preset is not None:  # tool calls only, or an answer handed back as it was
            result = pair.preset
            yield emit_step(result, config)
            if result.action == "failed":
                yield from map(Emit, piece_chunks(mode, template, pair.text))
        else:
            result = yield from self._streamed(pair, mode, template)
            yield emit_step(result, config)
        yield from map(Emit, stream_tail(mode, template, result))

    def _streamed(
        self, pair: Pair, mode: OutputMode, template: BaseMessage | None
    ) -> Machine[AlignmentResult]:
        """The engine's stream of one pair, passed on as it comes; its record (or, when it
        fails before sending anything and the policy allows, the answer as it was)."""
        opened: list[SquadStream] = []

        def open_stream() -> SquadStream:  # building the stream may fail too
            context = None if pair.context is None else pair.context.passages
            opened.append(self.engine.stream(pair.question, pair.text, context))
            return opened[-1]

        pieces, error = yield StreamRewrite(
            lambda: iter(open_stream()),
            lambda: open_stream().__aiter__(),
            each=lambda piece: piece_chunks(mode, template, piece),
        )
        if error is None:
            assert opened[-1].result is not None
            return renumbered(pair, opened[-1].result)
        if self._policy.on_error == "raise" or pieces:
            raise error
        yield from map(Emit, piece_chunks(mode, template, pair.text))
        return self._failed(pair.question, pair.text, error)

    def transform(
        self, input: Iterator[Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        def run(chunks: Iterator[Any], run_manager: Any, config: RunnableConfig) -> Iterator[Any]:
            return drive_stream(self._stream_steps(gather(chunks), config))

        yield from self._transform_stream_with_config(input, run, config, run_type="parser")

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        yield from self.transform(iter([input]), config, **kwargs)

    async def atransform(
        self, input: AsyncIterator[Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        async def run(chunks: Any, run_manager: Any, config: Any) -> AsyncIterator[Any]:
            async for chunk in adrive_stream(self._stream_steps(await agather(chunks), config)):
                yield chunk

        async for chunk in self._atransform_stream_with_config(
            input, run, config, run_type="parser"
        ):
            yield chunk

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        async for chunk in self.atransform(_aiter_one(input), config, **kwargs):
            yield chunk

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

    def configurable_fields(self, **kwargs: AnyConfigurableField) -> RunnableSerializable[Any, Any]:
        """LangChain's configurable fields, rebuilt per call from the fields this parser was
        given and the configured ones (LangChain passes every field, so an untouched flat
        default such as ``on_error="raise"`` would otherwise override ``policy``)."""
        configurable = super().configurable_fields(**kwargs)
        assert isinstance(configurable, RunnableConfigurableFields)
        return _GivenFields(default=configurable.default, fields=configurable.fields)

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


class _GivenFields(RunnableConfigurableFields):
    """:meth:`AlignerSquad.configurable_fields`: a configured parser keeps its unset fields
    unset."""

    def _prepare(
        self, config: RunnableConfig | None = None
    ) -> tuple[Runnable[Any, Any], RunnableConfig]:
        runnable, config = super()._prepare(config)
        if runnable is self.default:
            return runnable, config
        asked = config.get("configurable", {})
        configured = {
            key
            for key, spec in self.fields.items()
            if not isinstance(spec, ConfigurableField) or spec.id in asked
        }
        default = self.default
        assert isinstance(default, AlignerSquad) and isinstance(runnable, AlignerSquad)
        kept = default.model_fields_set | configured
        return type(default)(**given_fields(runnable, kept)), config


async def _aiter_one(value: Any) -> AsyncIterator[Any]:
    yield value


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
