"""Measure what the LangChain adapter's batching and streaming buy on SmolLM2 (not a test).

Run: ``.venv/bin/python -m tests.langchain.bench_batching`` (prefix ``OMP_NUM_THREADS=1`` on a
machine whose cores are busy: OpenMP threads spin-waiting on oversubscribed cores slow the
larger batched matrices far more than single rows).
"""

from __future__ import annotations

import time
from typing import Any

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable

from aligners import Aligner, FunctionInspector, Squad, SquadMember, get_criterion
from langchain_aligners import AlignerSquad, ChatAlignersLocal


def forced(max_new_tokens: int) -> tuple[AlignerSquad, list[int]]:
    """A squad whose SmolLM2 'helpful' aligner always runs, and its generate-call sizes."""
    aligner = Aligner("smollm2", format="chat", criterion="helpful", max_new_tokens=max_new_tokens)
    inspector = FunctionInspector(lambda q, a: 0.0, "helpful")
    sizes: list[int] = []
    generate = aligner.backend.generate_detailed  # what aligners call

    def counting(prompts: Any, config: Any) -> Any:
        sizes.append(len(prompts))
        return generate(prompts, config)

    aligner.backend.generate_detailed = counting  # type: ignore[method-assign]
    squad = Squad([SquadMember(get_criterion("helpful"), aligner, inspector)])
    return AlignerSquad(squad=squad), sizes


def main() -> None:
    squad, sizes = forced(16)
    words = ("colour", "fruit", "tree", "bird")
    inputs = [{"question": f"Name a {w}.", "answer": f"A {w} is nice."} for w in words]
    squad.invoke(inputs[0])  # load the weights first
    runs = [
        ("AlignerSquad.batch (one engine call)", lambda: squad.batch(inputs)),
        ("Runnable.batch default (thread pool of invokes)", lambda: Runnable.batch(squad, inputs)),
    ]
    for label, run in runs:
        sizes.clear()
        start = time.perf_counter()
        run()
        print(f"{label}: {time.perf_counter() - start:.1f} s, generate calls {sizes}")

    streaming, _ = forced(48)
    prompt = ChatPromptTemplate.from_messages([("human", "{question}")])
    chain = prompt | ChatAlignersLocal(max_new_tokens=32) | StrOutputParser() | streaming
    start, first, pieces = time.perf_counter(), 0.0, 0
    for _ in chain.stream({"question": "How do I get back at a coworker who embarrassed me?"}):
        first = first or time.perf_counter() - start
        pieces += 1
    total = time.perf_counter() - start
    print(f"stream: first aligned piece {first:.1f} s, last {total:.1f} s, {pieces} pieces")


if __name__ == "__main__":
    main()
