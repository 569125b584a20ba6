"""Sources in LangChain: ``AlignerSquad`` takes the answer's context in its dict input, and
``grounded_chain`` turns the standard retriever chain into one whose answer is checked against
the retrieved documents.

Real langchain-core objects throughout: an InMemoryVectorStore over DeterministicFakeEmbedding,
its retriever, a ChatPromptTemplate and FakeListChatModel answering with one sentence no
document supports; the grounded member is the word-overlap rule inspector (verdicts readable by
eye) or the tiny random grounded cross-encoder.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_core.vectorstores import InMemoryVectorStore

from aligners import DEFAULT_NOT_COVERED
from langchain_aligners import METADATA_KEY, AlignerSquad
from tests.grounding_helpers import (
    GROUNDED_ANSWER,
    MIXED_ANSWER,
    PASSAGES,
    REPAIRED_ANSWER,
    grounded_squad,
)

BREAD = "To bake bread, mix flour, water, yeast and salt."
QUESTION = "Tell me about the Eiffel Tower."
PROMPT = ChatPromptTemplate.from_messages(
    [("system", "Answer only from these sources:\n\n{context}"), ("human", "{question}")]
)


@pytest.fixture(scope="module")
def retriever() -> Any:
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=16))
    store.add_documents([Document(page_content=t) for t in [*PASSAGES, BREAD]])
    return store.as_retriever(search_kwargs={"k": 3})  # every document


class PromptSpy:
    """Keeps the prompts the chat model was given."""

    def __init__(self) -> None:
        self.prompts: list[Any] = []

    def __call__(self, value: Any) -> Any:
        self.prompts.append(value)
        return value


def llm(reply: str) -> FakeListChatModel:
    return FakeListChatModel(responses=[reply])


def assert_passages_index(record: dict[str, Any], docs: list[Document]) -> None:
    """Each supported sentence's passage is the document holding all its words."""
    claims = [s for s in record["grounding"]["sentences"] if not s["trivial"] and s["supported"]]
    assert claims
    for sentence in claims:
        text = docs[sentence["passage"]].page_content.lower()
        words = sentence["text"].lower().rstrip(".").replace("'s", "").split()
        assert all(w in text for w in words), (sentence, text)


def test_grounded_chain_drops_what_the_retrieved_documents_do_not_support(retriever):
    spy = PromptSpy()
    squad = AlignerSquad(squad=grounded_squad())
    chain = squad.grounded_chain(retriever, PROMPT | RunnableLambda(spy) | llm(MIXED_ANSWER))

    message = chain.invoke(QUESTION)

    assert isinstance(message, AIMessage) and message.content == REPAIRED_ANSWER
    record = message.response_metadata[METADATA_KEY]
    assert record["question"] == QUESTION and record["original"] == MIXED_ANSWER
    assert record["action"] == "rewritten" and record["flagged"] == ["grounded"]
    docs = retriever.invoke(QUESTION)
    assert record["grounding"]["passages"] == len(docs) == 3
    assert_passages_index(record, docs)
    # The model was asked with the retrieved documents, as in the standard chain.
    system = spy.prompts[0].to_messages()[0].content
    assert all(d.page_content in system for d in docs)


def test_a_supported_answer_comes_back_unchanged(retriever):
    chain = AlignerSquad(squad=grounded_squad()).grounded_chain(
        retriever, PROMPT | llm(GROUNDED_ANSWER) | StrOutputParser()
    )
    assert chain.invoke(QUESTION) == GROUNDED_ANSWER  # a str in, a str out


def test_streaming_batching_and_async_give_the_same_answer(retriever):
    def chain(parser: bool = False) -> Any:
        generator = PROMPT | llm(MIXED_ANSWER)
        if parser:
            generator = generator | StrOutputParser()
        return AlignerSquad(squad=grounded_squad()).grounded_chain(retriever, generator)

    chunks = list(chain().stream(QUESTION))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    assert total.content == REPAIRED_ANSWER
    assert total.response_metadata[METADATA_KEY]["grounding"]["passages"] == 3
    assert "".join(chain(parser=True).stream(QUESTION)) == REPAIRED_ANSWER
    assert chain(parser=True).batch([QUESTION, QUESTION]) == [REPAIRED_ANSWER] * 2

    async def run() -> tuple[Any, Any, str]:
        invoked = await chain(parser=True).ainvoke(QUESTION)
        batched = await chain(parser=True).abatch([QUESTION])
        streamed = "".join([p async for p in chain(parser=True).astream(QUESTION)])
        return invoked, batched, streamed

    assert asyncio.run(run()) == (REPAIRED_ANSWER, [REPAIRED_ANSWER], REPAIRED_ANSWER)


def test_dict_inputs_take_documents_strings_or_one_text():
    squad = AlignerSquad(squad=grounded_squad(), output="record")
    docs = [Document(page_content=PASSAGES[0]), Document(page_content=" "), PASSAGES[1]]
    record = squad.invoke({"question": QUESTION, "answer": MIXED_ANSWER, "context": docs})
    assert record["text"] == REPAIRED_ANSWER
    # A blank document gives no passage; the numbers still index the list given.
    claims = [s for s in record["grounding"]["sentences"] if not s["trivial"]]
    assert [s["passage"] for s in claims if s["supported"]] == [0, 2]
    one_text = squad.invoke({"answer": MIXED_ANSWER, "context": " ".join(PASSAGES)})
    assert one_text["text"] == REPAIRED_ANSWER and one_text["grounding"]["passages"] == 1
    renamed = AlignerSquad(squad=grounded_squad(), context_key="docs")
    assert renamed.invoke({"answer": MIXED_ANSWER, "docs": PASSAGES}) == REPAIRED_ANSWER


def test_without_a_context_grounded_is_skipped_with_the_reason():
    record = AlignerSquad(squad=grounded_squad(), output="record").invoke(
        {"question": QUESTION, "answer": MIXED_ANSWER}
    )
    assert record["text"] == MIXED_ANSWER and record["action"] == "passed"
    assert "no context" in record["not_inspected"]["grounded"]


def test_bad_contexts_are_named():
    squad = AlignerSquad(squad=grounded_squad())
    with pytest.raises(TypeError, match=r"context\[1\] must be a str passage, got int"):
        squad.invoke({"answer": MIXED_ANSWER, "context": [PASSAGES[0], 3]})
    with pytest.raises(TypeError, match="context must be a str, a list of str or a list of Doc"):
        squad.invoke({"answer": MIXED_ANSWER, "context": {"text": PASSAGES[0]}})
    forgiving = AlignerSquad(squad=grounded_squad(), on_error="return_original", output="record")
    record = forgiving.invoke({"answer": MIXED_ANSWER, "context": [7]})
    assert record["action"] == "failed" and record["text"] == MIXED_ANSWER
    # In a batch, a bad context costs only its own answer.
    outputs = squad.batch(
        [{"answer": MIXED_ANSWER, "context": [7]}, {"answer": MIXED_ANSWER, "context": PASSAGES}],
        return_exceptions=True,
    )
    assert isinstance(outputs[0], TypeError) and outputs[1] == REPAIRED_ANSWER


def test_the_trained_inspector_path_with_a_tiny_grounded_dir(retriever, tiny_grounded_dir: Path):
    squad = AlignerSquad(criteria=["grounded"], inspector=str(tiny_grounded_dir), output="record")
    chain = squad.grounded_chain(retriever, PROMPT | llm(MIXED_ANSWER))
    record = chain.invoke(QUESTION)
    report = record["grounding"]
    assert report["passages"] == 3 and report["sentences"]
    for sentence in report["sentences"]:  # the check the repair acted on
        assert MIXED_ANSWER[sentence["start"] : sentence["end"]] == sentence["text"]
        if not sentence["trivial"]:
            assert 0 <= sentence["passage"] < 3
    if record["text"] != DEFAULT_NOT_COVERED:  # the repair only drops sentences
        assert all(s["text"] in record["text"] for s in report["sentences"] if s["supported"])
