"""``AlignerSquadMiddleware``: aligners inside ``langchain.agents.create_agent``."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Annotated, Any, Literal

from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage
from langchain_core.runnables import Runnable
from typing_extensions import NotRequired

try:
    from langchain.agents.middleware import AgentMiddleware, AgentState, hook_config
    from langchain.agents.middleware.types import PrivateStateAttr
except ImportError as error:  # the agents extra is optional
    raise ImportError(
        "AlignerSquadMiddleware needs the `langchain` package (langchain>=1.0, for "
        "create_agent): pip install 'aligners[agents]'"
    ) from error

from aligners import (
    AlignmentResult,
    Machine,
    RequestCheck,
    RequestInspector,
    Squad,
    SquadPolicy,
    Work,
    adrive,
    drive,
    resolve_request_inspector,
)
from langchain_aligners._inputs import METADATA_KEY, message_text, record_of
from langchain_aligners.squad import AlignerSquad

When = Literal["after_agent", "after_model"]

#: Where the middleware keeps this turn's request check between its hooks (private state).
REQUEST_CHECK_KEY = "aligners_request_check"


class AlignersAgentState(AgentState[Any]):
    """The agent state plus the verdict on this turn's request (not part of input or output)."""

    aligners_request_check: NotRequired[Annotated[dict[str, Any] | None, PrivateStateAttr]]


class AlignerSquadMiddleware(AgentMiddleware[AlignersAgentState, Any, Any]):
    """Aligns the agent's final AI message (``when="after_agent"``) or every model reply that has
    text (``when="after_model"``; replies that are only tool calls are left alone).

    ``squad`` is an :class:`AlignerSquad`, an engine ``Squad``, any runnable that maps
    ``{"question", "answer"}`` to a message (e.g. ``AlignerSquad(...).configurable()``), or None
    with AlignerSquad fields as keyword arguments.

    The aligned message replaces the original in the state (same id); its
    ``response_metadata["aligners"]`` holds the squad's record. The question is the last human
    message before the reply. ``on_flag`` (a squad option) chooses what happens to a flagged
    reply: rewrite, block, raise (``aligners.AlignmentViolation`` out of ``agent.invoke``) or
    rewrite_or_block.

    ``check_request=True`` (or a :class:`~aligners.RequestInspector`) checks the user's request
    once per agent turn, before any model call: a request scored under ``request_threshold``
    skips the model and tools and ends the turn with ``blocked_message``; the reply's
    ``response_metadata["aligners"]["request_check"]`` holds the verdict. A request that passes
    is let through and its verdict is recorded in the aligned reply's record the same way.

    Example:
        >>> middleware = [AlignerSquadMiddleware(criteria=["ethical"], check_request=True)]
        >>> agent = create_agent(llm, tools, middleware=middleware)  # doctest: +SKIP
    """

    state_schema = AlignersAgentState

    def __init__(
        self,
        squad: AlignerSquad | Squad | Runnable[Any, Any] | None = None,
        *,
        when: When = "after_agent",
        check_request: bool | RequestInspector | None = None,
        request_threshold: float | None = None,
        blocked_message: str | None = None,
        policy: SquadPolicy | None = None,
        **squad_options: Any,
    ) -> None:
        super().__init__()
        if when not in ("after_agent", "after_model"):
            raise ValueError(f"when must be 'after_agent' or 'after_model', got {when!r}")
        if isinstance(squad, Runnable) and squad_options:
            raise ValueError("pass squad options to AlignerSquad(...), not to the middleware")
        # One merge and validation path (aligners.SquadPolicy): a bad value names its field.
        mine = (policy or SquadPolicy()).merge(
            check_request=check_request,
            request_threshold=request_threshold,
            blocked_message=blocked_message,
        )
        runnable: Runnable[Any, Any]
        if isinstance(squad, AlignerSquad):
            # The middleware works on messages, whatever output the parser was set up for.
            runnable = squad.with_policy(mine, output="message")
        elif isinstance(squad, Runnable):
            runnable = squad  # e.g. AlignerSquad(...).configurable(): must return a message
        else:
            runnable = AlignerSquad(squad=squad, policy=mine, **squad_options, output="message")
        if isinstance(runnable, AlignerSquad):
            resolved = runnable.resolved_policy
            message = runnable.blocked_reply  # the squad's, unless set here
        else:
            resolved = SquadPolicy.for_surface("langchain", mine)
            message = resolved.blocked_message
        self.squad = runnable
        self.when = when
        self.request_inspector = resolve_request_inspector(resolved.check_request)
        self.request_threshold = resolved.request_threshold
        self.blocked_message = message

    # -- the request check: once per turn, before any model call -------------------------------

    @staticmethod
    def _request(messages: Sequence[AnyMessage]) -> str | None:
        if not messages or not isinstance(messages[-1], HumanMessage):
            return None  # resuming after tools or an interrupt: the request was checked
        return message_text(messages[-1])

    def _blocked_reply(self, check: RequestCheck) -> dict[str, Any]:
        """The state update of a checked request: its verdict, and the blocked reply if the
        request was turned away."""
        if check.allowed:
            return {REQUEST_CHECK_KEY: check.to_record()}  # the reply's record shows it later
        result = AlignmentResult.blocked_request(
            check.request, self.blocked_message, check.to_record()
        )
        reply = AIMessage(
            content=self.blocked_message, response_metadata={METADATA_KEY: record_of(result)}
        )
        return {"messages": [reply], "jump_to": "end", REQUEST_CHECK_KEY: check.to_record()}

    def _check_steps(self, state: AlignersAgentState) -> Machine[dict[str, Any] | None]:
        request = self._request(state["messages"])
        inspector = self.request_inspector
        if inspector is None or request is None:
            return None
        args = (request, self.request_threshold)
        check = yield Work(partial(inspector.check, *args), partial(inspector.acheck, *args))
        return self._blocked_reply(check)

    @hook_config(can_jump_to=["end"])
    def before_agent(self, state: AlignersAgentState, runtime: Any) -> dict[str, Any] | None:
        return drive(self._check_steps(state))

    @hook_config(can_jump_to=["end"])
    async def abefore_agent(self, state: AlignersAgentState, runtime: Any) -> dict[str, Any] | None:
        return await adrive(self._check_steps(state))

    # -- aligning replies ----------------------------------------------------------------------

    @staticmethod
    def _target(messages: Sequence[AnyMessage]) -> tuple[str, AIMessage] | None:
        if not messages or not isinstance(messages[-1], AIMessage):
            return None
        reply = messages[-1]
        if not message_text(reply).strip():
            return None  # tool calls only: nothing an aligner could rewrite
        if (reply.response_metadata.get(METADATA_KEY) or {}).get("stage") == "request":
            return None  # the request check's own blocked reply
        question = next(
            (message_text(m) for m in reversed(messages[:-1]) if isinstance(m, HumanMessage)), ""
        )
        return question, reply

    def _update_steps(self, state: Any) -> Machine[dict[str, Any] | None]:
        """The state update that replaces the last reply with its aligned copy (a step machine:
        the squad's call is its work)."""
        target = self._target(state["messages"])
        if target is None:
            return None
        question, reply = target
        value = {"question": question, "answer": reply}
        aligned = yield Work(partial(self.squad.invoke, value), partial(self.squad.ainvoke, value))
        return self._state_update(aligned, state.get(REQUEST_CHECK_KEY))

    @staticmethod
    def _state_update(aligned: Any, request_check: dict[str, Any] | None) -> dict[str, Any]:
        if not isinstance(aligned, BaseMessage):
            raise TypeError(
                "the middleware's squad must return a message for a message answer, got "
                f"{type(aligned).__name__} (use output='auto' or 'message')"
            )
        record = aligned.response_metadata.get(METADATA_KEY)
        if (
            request_check is not None
            and isinstance(record, dict)
            and record.get("request_check") is None  # the request passed the check this turn
        ):
            aligned.response_metadata[METADATA_KEY] = {**record, "request_check": request_check}
        return {"messages": [aligned]}  # same id: add_messages replaces the reply

    def after_model(self, state: AlignersAgentState, runtime: Any) -> dict[str, Any] | None:
        return drive(self._update_steps(state)) if self.when == "after_model" else None

    async def aafter_model(self, state: AlignersAgentState, runtime: Any) -> dict[str, Any] | None:
        return await adrive(self._update_steps(state)) if self.when == "after_model" else None

    def after_agent(self, state: AlignersAgentState, runtime: Any) -> dict[str, Any] | None:
        return drive(self._update_steps(state)) if self.when == "after_agent" else None

    async def aafter_agent(self, state: AlignersAgentState, runtime: Any) -> dict[str, Any] | None:
        return await adrive(self._update_steps(state)) if self.when == "after_agent" else None
