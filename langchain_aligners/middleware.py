"""``AlignerSquadMiddleware``: aligners inside ``langchain.agents.create_agent``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage
from langchain_core.runnables import Runnable

try:
    from langchain.agents.middleware import AgentMiddleware, AgentState
except ImportError as error:  # the agents extra is optional
    raise ImportError(
        "AlignerSquadMiddleware needs the `langchain` package (langchain>=1.0, for "
        "create_agent): pip install 'aligners[agents]'"
    ) from error

from aligners import Squad
from langchain_aligners._inputs import message_text
from langchain_aligners.squad import AlignerSquad

When = Literal["after_agent", "after_model"]


class AlignerSquadMiddleware(AgentMiddleware[AgentState[Any], Any, Any]):
    """Aligns the agent's final AI message (``when="after_agent"``) or every model reply that has
    text (``when="after_model"``; replies that are only tool calls are left alone).

    ``squad`` is an :class:`AlignerSquad`, an engine ``Squad``, any runnable that maps
    ``{"question", "answer"}`` to a message (e.g. ``AlignerSquad(...).configurable()``), or None
    with AlignerSquad fields as keyword arguments.

    The aligned message replaces the original in the state (same id); its
    ``response_metadata["aligners"]`` holds the squad's record. The question is the last human
    message before the reply.

    Example:
        >>> middleware = [AlignerSquadMiddleware(criteria=["ethical"])]
        >>> agent = create_agent(llm, tools, middleware=middleware)  # doctest: +SKIP
    """

    def __init__(
        self,
        squad: AlignerSquad | Squad | Runnable[Any, Any] | None = None,
        *,
        when: When = "after_agent",
        **squad_options: Any,
    ) -> None:
        super().__init__()
        if when not in ("after_agent", "after_model"):
            raise ValueError(f"when must be 'after_agent' or 'after_model', got {when!r}")
        if isinstance(squad, Runnable) and squad_options:
            raise ValueError("pass squad options to AlignerSquad(...), not to the middleware")
        runnable: Runnable[Any, Any]
        if isinstance(squad, AlignerSquad):
            # The middleware works on messages, whatever output the parser was set up for.
            runnable = squad.model_copy(update={"output": "message"})
        elif isinstance(squad, Runnable):
            runnable = squad  # e.g. AlignerSquad(...).configurable(): must return a message
        else:
            runnable = AlignerSquad(**{"squad": squad, **squad_options, "output": "message"})
        self.squad = runnable
        self.when = when

    @staticmethod
    def _target(messages: Sequence[AnyMessage]) -> tuple[str, AIMessage] | None:
        if not messages or not isinstance(messages[-1], AIMessage):
            return None
        reply = messages[-1]
        if not message_text(reply).strip():
            return None  # tool calls only: nothing an aligner could rewrite
        question = next(
            (message_text(m) for m in reversed(messages[:-1]) if isinstance(m, HumanMessage)), ""
        )
        return question, reply

    def _update(self, state: Any) -> dict[str, Any] | None:
        target = self._target(state["messages"])
        if target is None:
            return None
        question, reply = target
        aligned = self.squad.invoke({"question": question, "answer": reply})
        return self._state_update(aligned)

    async def _aupdate(self, state: Any) -> dict[str, Any] | None:
        target = self._target(state["messages"])
        if target is None:
            return None
        question, reply = target
        aligned = await self.squad.ainvoke({"question": question, "answer": reply})
        return self._state_update(aligned)

    @staticmethod
    def _state_update(aligned: Any) -> dict[str, Any]:
        if not isinstance(aligned, BaseMessage):
            raise TypeError(
                "the middleware's squad must return a message for a message answer, got "
                f"{type(aligned).__name__} (use output='auto' or 'message')"
            )
        return {"messages": [aligned]}  # same id: add_messages replaces the reply

    def after_model(self, state: AgentState[Any], runtime: Any) -> dict[str, Any] | None:
        return self._update(state) if self.when == "after_model" else None

    async def aafter_model(self, state: AgentState[Any], runtime: Any) -> dict[str, Any] | None:
        return await self._aupdate(state) if self.when == "after_model" else None

    def after_agent(self, state: AgentState[Any], runtime: Any) -> dict[str, Any] | None:
        return self._update(state) if self.when == "after_agent" else None

    async def aafter_agent(self, state: AgentState[Any], runtime: Any) -> dict[str, Any] | None:
        return await self._aupdate(state) if self.when == "after_agent" else None
