"""LangChain integration of the aligners engine.

``prompt | llm | AlignerSquad()`` aligns any chain's output; ``AlignerSquad().wrap(chain)`` also
hands the chain's question to the squad; ``AlignerSquadMiddleware`` (needs ``langchain``) aligns
agent replies; ``RequestGuard(chain)`` checks the request before any chain runs;
``ChatAlignersLocal`` runs a local model (SmolLM2 by default) as a chat model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from langchain_aligners._inputs import METADATA_KEY, question_from_input
from langchain_aligners.chat_model import ChatAlignersLocal
from langchain_aligners.request_guard import RequestGuard
from langchain_aligners.squad import (
    APPLIED_EVENT,
    SCORES_EVENT,
    AlignerSquad,
    wrap_with_question,
)

if TYPE_CHECKING:
    from langchain_aligners.middleware import AlignerSquadMiddleware


def __getattr__(name: str) -> Any:
    # Imported on first use so that `import langchain_aligners` works without `langchain`.
    if name == "AlignerSquadMiddleware":
        from langchain_aligners.middleware import AlignerSquadMiddleware

        return AlignerSquadMiddleware
    raise AttributeError(f"module 'langchain_aligners' has no attribute {name!r}")


__all__ = [
    "APPLIED_EVENT",
    "METADATA_KEY",
    "SCORES_EVENT",
    "AlignerSquad",
    "AlignerSquadMiddleware",
    "ChatAlignersLocal",
    "RequestGuard",
    "question_from_input",
    "wrap_with_question",
]
