"""How LangChain values become (question, answer) pairs, and how results go back into them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NamedTuple

from langchain_core.documents import Document
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    convert_to_messages,
)
from langchain_core.messages.tool import ToolCallChunk, tool_call_chunk
from langchain_core.prompt_values import ChatPromptValue, PromptValue
from langchain_core.runnables.utils import AddableDict

from aligners import AlignmentResult, as_passages

#: Key of the squad's record in ``AIMessage.response_metadata``.
METADATA_KEY = "aligners"


def message_text(message: BaseMessage) -> str:
    """A message's text content (``.text`` is a property in langchain-core 1.x, a method in 0.3)."""
    text = message.text
    if callable(text) and not isinstance(text, str):
        text = text()
    return str(text)


def answer_text(answer: Any) -> str:
    """The text of an answer: a str, or a message's text content."""
    if isinstance(answer, str):
        return answer
    if isinstance(answer, BaseMessage):
        return message_text(answer)
    raise TypeError(
        "AlignerSquad aligns a str, a chat message, or a dict with a question and an answer; "
        f"got {type(answer).__name__}"
    )


def question_from_input(value: Any, key: str = "question") -> str:
    """The user's question inside a chain's input.

    A str is the question; a prompt value or a list of messages gives its last human message;
    a dict gives ``value[key]`` (itself any of these forms).
    """
    if isinstance(value, str):
        return value
    if isinstance(value, ChatPromptValue):
        return _last_human(value.messages)
    if isinstance(value, PromptValue):
        return value.to_string()
    if isinstance(value, BaseMessage):
        return message_text(value)
    if isinstance(value, Mapping):
        if key not in value:
            raise ValueError(
                f"the chain input has no {key!r} key to take the question from "
                f"(keys: {sorted(map(str, value))}); pass question_key= naming the right one"
            )
        return question_from_input(value[key], key)
    if isinstance(value, (list, tuple)):
        return _last_human(convert_to_messages(value))
    raise TypeError(
        "cannot find a question in a chain input of type "
        f"{type(value).__name__}: expected a str, messages, a prompt value or a dict"
    )


def _last_human(messages: Any) -> str:
    for message in reversed(list(messages)):
        if isinstance(message, HumanMessage):
            return message_text(message)
    return ""


class Sources(NamedTuple):
    """An answer's passages, and the index in the given list of each (blank items give no
    passage, so a record's passage numbers are mapped back through ``positions``)."""

    passages: tuple[str, ...]
    positions: tuple[int, ...]

    def renumber(self, result: AlignmentResult) -> AlignmentResult:
        """``result`` with its grounding's passage numbers indexing the given list."""
        if result.grounding is None or self.positions == tuple(range(len(self.positions))):
            return result
        for sentence in result.grounding.sentences:
            if sentence.passage is not None:
                sentence.passage = self.positions[sentence.passage]
        return result


def context_passages(context: Any, key: str = "context") -> Sources | None:
    """An answer's sources as passages: a str is one, a list holds one per item (a str or a
    ``Document``, whose ``page_content`` is the passage); None gives None.

    Raises:
        TypeError: an item is neither (named by its index under ``key``).
    """
    if context is None:
        return None
    if isinstance(context, Document):
        context = [context]
    if isinstance(context, str):
        passages = as_passages(context, key)
        return Sources(passages, tuple(range(len(passages))))
    if isinstance(context, (list, tuple)):
        context = [c.page_content if isinstance(c, Document) else c for c in context]
        passages = as_passages(context, key)  # checks every item, drops blank ones
        positions = tuple(i for i, c in enumerate(context) if c.strip())
        return Sources(passages, positions)
    raise TypeError(
        f"{key} must be a str, a list of str or a list of Documents, got {type(context).__name__}"
    )


def join_documents(docs: Any) -> str:
    """The retrieved documents as one prompt text (the usual ``format_docs``): their
    ``page_content`` separated by blank lines."""
    if isinstance(docs, str):
        return docs
    return "\n\n".join(d.page_content if isinstance(d, Document) else str(d) for d in docs)


def has_tool_calls(message: Any) -> bool:
    """Whether a message asks for tool calls (complete or streamed)."""
    return bool(getattr(message, "tool_calls", None) or getattr(message, "tool_call_chunks", None))


def tool_calls_only(answer: Any, text: str) -> bool:
    """A reply that only calls tools: nothing for an aligner to read, passed through as is."""
    return isinstance(answer, AIMessage) and has_tool_calls(answer) and not text.strip()


def tool_call_chunks_of(message: BaseMessage | None) -> list[ToolCallChunk]:
    """The tool calls of a message as stream chunks (to re-emit them after aligned text)."""
    if message is None:
        return []
    chunks = getattr(message, "tool_call_chunks", None)
    if chunks:
        return list(chunks)
    return [
        tool_call_chunk(
            name=call["name"], args=json.dumps(call["args"]), id=call.get("id"), index=i
        )
        for i, call in enumerate(getattr(message, "tool_calls", None) or [])
    ]


def without_tool_calls(message: BaseMessage) -> dict[str, Any]:
    """The update that removes a message's tool calls (a blocked reply must not run tools)."""
    update: dict[str, Any] = {}
    if isinstance(message, AIMessage):
        update.update(tool_calls=[], invalid_tool_calls=[])
        if isinstance(message, AIMessageChunk):
            update["tool_call_chunks"] = []
    extra = {
        k: v
        for k, v in message.additional_kwargs.items()
        if k not in ("tool_calls", "function_call")
    }
    if extra != message.additional_kwargs:
        update["additional_kwargs"] = extra
    return update


def with_text(content: Any, text: str) -> Any:
    """Message content with its text replaced: non-text parts (images, audio, ...) are kept in
    place, the text parts become one block holding ``text`` where the first one was."""
    if isinstance(content, str):
        return text
    blocks: list[Any] = []
    placed = False
    for block in content:
        if isinstance(block, str) or (isinstance(block, dict) and block.get("type") == "text"):
            if not placed:
                blocks.append({"type": "text", "text": text})
                placed = True
            continue
        blocks.append(block)
    if not placed:
        blocks.insert(0, {"type": "text", "text": text})
    return blocks


def with_result(
    message: BaseMessage, text: str, record: dict[str, Any], *, blocked: bool = False
) -> BaseMessage:
    """A copy of ``message`` with new content and the record in its metadata (no mutation).

    Tool calls are kept, unless the answer was blocked: a withheld reply runs no tools.
    """
    metadata = {**getattr(message, "response_metadata", {}), METADATA_KEY: record}
    update: dict[str, Any] = {"content": text if blocked else with_text(message.content, text)}
    if blocked:
        update.update(without_tool_calls(message))
    if hasattr(message, "response_metadata"):
        update["response_metadata"] = metadata
    else:
        kwargs = update.get("additional_kwargs", message.additional_kwargs)
        update["additional_kwargs"] = {**kwargs, METADATA_KEY: record}
    return message.model_copy(update=update)


def record_passed(result: AlignmentResult) -> bool:
    """Whether the answer passed; an answer no inspector scored (the squad failed) did not."""
    return bool(result.trajectory) and result.passed


def record_of(result: AlignmentResult) -> dict[str, Any]:
    """The JSON-ready record a result leaves in metadata and events."""
    record = result.to_record()
    record["passed"] = record_passed(result)
    return record


def gather(chunks: Any) -> Any:
    """Join streamed chunks into one value (strings, message chunks, dicts of either)."""
    total: Any = None
    for chunk in chunks:
        total = _add(total, chunk)
    return total


async def agather(chunks: Any) -> Any:
    """Async :func:`gather`."""
    total: Any = None
    async for chunk in chunks:
        total = _add(total, chunk)
    return total


def _add(total: Any, chunk: Any) -> Any:
    if isinstance(chunk, Mapping) and not isinstance(chunk, AddableDict):
        chunk = AddableDict(chunk)
    if total is None:
        return chunk
    try:
        return total + chunk
    except TypeError:  # values that do not add (e.g. a full AIMessage after chunks): last wins
        return chunk


def stream_chunk(text: str, template: BaseMessage | None, **extra: Any) -> AIMessageChunk:
    """A message chunk of aligned text shaped like the upstream message."""
    return AIMessageChunk(content=text, id=template.id if template else None, **extra)
