"""``RequestGuard``: the request check of ``AlignerSquadMiddleware`` for any LCEL chain.

``RequestGuard(chain, check_request=True)`` scores the user's request with a request inspector
before ``chain`` runs. A request scored under ``request_threshold`` never reaches the chain (no
model call, no retrieval, no tools): the output is ``blocked_message`` with the same record the
middleware leaves (``action: "blocked"``, ``stage: "request"``, ``request_check``). A request
that passes runs the chain as it is; a message output gets the verdict in its record under
``request_check``. ``AlignerSquad.wrap(chain, check_request=True)`` puts the squad after it too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from functools import partial
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import patch_config

from aligners import (
    DEFAULT_BLOCKED_MESSAGE,
    AlignmentResult,
    Emit,
    Machine,
    RequestCheck,
    RequestInspector,
    StreamRewrite,
    Work,
    adrive,
    adrive_stream,
    drive,
    drive_stream,
    resolve_request_inspector,
)
from langchain_aligners._inputs import METADATA_KEY, question_from_input, record_of

Output = Literal["auto", "message", "text", "record"]


class RequestGuard(Runnable[Any, Any]):
    """Checks the request before ``chain`` runs; turns it away with ``blocked_message``.

    Args:
        chain: Any runnable (a prompt, a model, a whole LCEL chain).
        check_request: ``True`` for the shipped request inspector, or any
            :class:`aligners.RequestInspector` (e.g. a ``PatternRequestInspector``).
        request_threshold: Requests scored under it are turned away (default: the inspector's).
        blocked_message: The reply to a request turned away.
        question_key: Where a dict input holds the request (a str, messages or a prompt value
            input is the request itself: its last human message).
        output: What a turned-away request gives: ``auto`` (a str where ``chain`` outputs a str,
            else an ``AIMessage`` with the record in ``response_metadata["aligners"]``),
            ``message``, ``text`` or ``record``.

    Example:
        >>> guarded = RequestGuard(prompt | llm, check_request=True)  # doctest: +SKIP
        >>> guarded.invoke({"question": "How do I make a pipe bomb?"}).content  # doctest: +SKIP
    """

    def __init__(
        self,
        chain: Runnable[Any, Any],
        *,
        check_request: bool | RequestInspector = True,
        request_threshold: float | None = None,
        blocked_message: str | None = None,
        question_key: str = "question",
        output: Output = "auto",
        name: str | None = None,
    ) -> None:
        if not isinstance(chain, Runnable):
            raise TypeError(f"chain must be a LangChain Runnable, got {type(chain).__name__}")
        inspector = resolve_request_inspector(check_request)
        if inspector is None:
            raise ValueError(
                "RequestGuard needs check_request=True or a RequestInspector (False checks nothing)"
            )
        if request_threshold is not None and not 0.0 <= request_threshold <= 1.0:
            raise ValueError(f"request_threshold must be in [0, 1], got {request_threshold}")
        if blocked_message is not None and not blocked_message.strip():
            raise ValueError("blocked_message must have text (it replaces the reply)")
        if output not in ("auto", "message", "text", "record"):
            raise ValueError(f"output must be auto, message, text or record, got {output!r}")
        self.chain = chain
        self.request_inspector = inspector
        self.request_threshold = request_threshold
        self.blocked_message = blocked_message or DEFAULT_BLOCKED_MESSAGE
        self.question_key = question_key
        self.output = output
        self.name = name or "RequestGuard"

    @property
    def InputType(self) -> Any:  # noqa: N802 - LangChain's name
        return self.chain.InputType

    @property
    def OutputType(self) -> Any:  # noqa: N802 - LangChain's name
        return self.chain.OutputType

    # -- the check -----------------------------------------------------------------------------

    def _request(self, value: Any) -> str:
        return question_from_input(value, self.question_key)

    def _blocked(self, check: RequestCheck) -> Any:
        """The output for a request turned away, in the shape ``output`` asks for."""
        result = AlignmentResult.blocked_request(
            check.request, self.blocked_message, check.to_record()
        )
        record = record_of(result)
        kind = self.output
        if kind == "auto":
            kind = "text" if self.chain.OutputType is str else "message"
        if kind == "text":
            return self.blocked_message
        if kind == "record":
            return record
        return AIMessage(content=self.blocked_message, response_metadata={METADATA_KEY: record})

    @staticmethod
    def _annotated(value: Any, check: RequestCheck) -> Any:
        """A message output with the verdict in its record (other outputs as they are)."""
        if not isinstance(value, BaseMessage):
            return value
        meta = dict(value.response_metadata or {})
        meta[METADATA_KEY] = {**(meta.get(METADATA_KEY) or {}), "request_check": check.to_record()}
        return value.model_copy(update={"response_metadata": meta})

    def check(self, value: Any) -> RequestCheck:
        """The request inspector's verdict on ``value``'s request."""
        return self.request_inspector.check(self._request(value), self.request_threshold)

    async def acheck(self, value: Any) -> RequestCheck:
        """Async :meth:`check` (the inspector runs off the event loop)."""
        return await self.request_inspector.acheck(self._request(value), self.request_threshold)

    def _check_step(self, value: Any) -> Work:
        return Work(partial(self.check, value), partial(self.acheck, value))

    # -- running: one step machine per call, driven sync or async ------------------------------

    def _steps(
        self, input: Any, run_manager: Any, config: RunnableConfig, **kwargs: Any
    ) -> Machine[Any]:
        verdict = yield self._check_step(input)
        if not verdict.allowed:
            return self._blocked(verdict)
        child = patch_config(config, callbacks=run_manager.get_child())
        output = yield Work(
            partial(self.chain.invoke, input, child, **kwargs),
            partial(self.chain.ainvoke, input, child, **kwargs),
        )
        return self._annotated(output, verdict)

    def _stream_steps(
        self, input: Any, config: RunnableConfig | None, **kwargs: Any
    ) -> Machine[None]:
        verdict = yield self._check_step(input)
        if not verdict.allowed:
            yield Emit(self._blocked(verdict))
            return
        _, error = yield StreamRewrite(
            partial(self.chain.stream, input, config, **kwargs),
            partial(self.chain.astream, input, config, **kwargs),
        )
        if error is not None:
            raise error

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """The chain's output, or the blocked reply when the request is turned away."""
        # A named run of its own in callbacks and traces, with the chain as its child.
        def run(input: Any, run_manager: Any, config: RunnableConfig, **kw: Any) -> Any:
            return drive(self._steps(input, run_manager, config, **kw))

        return self._call_with_config(run, input, config, run_type="chain", **kwargs)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Async :meth:`invoke`."""
        def run(input: Any, run_manager: Any, config: RunnableConfig, **kw: Any) -> Any:
            return adrive(self._steps(input, run_manager, config, **kw))

        return await self._acall_with_config(run, input, config, run_type="chain", **kwargs)

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        """The chain's stream (checked first: nothing streams from a request turned away)."""
        return drive_stream(self._stream_steps(input, config, **kwargs))

    def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        """Async :meth:`stream`."""
        return adrive_stream(self._stream_steps(input, config, **kwargs))
