"""The squad's stage loop as a step machine that does no I/O, and its two drivers.

A machine is a generator: it yields the work it needs done (score, rewrite, re-score, stream a
rewrite, emit text) and receives each result. The logic lives in the machine once; a driver only
decides how work runs: :func:`drive` in the calling thread, :func:`adrive` on an event loop
(models run in worker threads or through their async clients). Streams drive the same machine
and forward the text it emits.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Work:
    """Something the machine needs computed; ``arun`` is its async form (None: ``run`` in a
    worker thread)."""

    run: Callable[[], Any]
    arun: Callable[[], Awaitable[Any]] | None = None


@dataclass(frozen=True)
class StreamRewrite:
    """An aligner's rewrite to stream: the driver forwards every piece to its consumer and
    sends back ``(pieces, error)`` (the error of a stream that broke off, else None)."""

    pieces: Callable[[], Iterator[str]]
    apieces: Callable[[], AsyncIterator[str]]


@dataclass(frozen=True)
class Emit:
    """Text the stream sends as it is."""

    text: str


Step = Work | StreamRewrite | Emit
Machine = Generator[Step, Any, T]


def drive(machine: Machine[T]) -> T:
    """Run a machine that only asks for :class:`Work`, in this thread."""
    reply: Any = None
    while True:
        try:
            step = machine.send(reply)
        except StopIteration as done:
            result: T = done.value
            return result
        if not isinstance(step, Work):
            raise TypeError(f"drive() runs Work steps only, got {type(step).__name__}")
        reply = step.run()


async def adrive(machine: Machine[T]) -> T:
    """Run a machine that only asks for :class:`Work` without blocking the event loop."""
    reply: Any = None
    while True:
        try:
            step = machine.send(reply)
        except StopIteration as done:
            result: T = done.value
            return result
        if not isinstance(step, Work):
            raise TypeError(f"adrive() runs Work steps only, got {type(step).__name__}")
        reply = await (step.arun() if step.arun else asyncio.to_thread(step.run))
