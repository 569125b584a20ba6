"""Step machines that do no I/O, and their sync and async drivers: the squad's stage loop, a
remote backend's retries, each integration's calls.

A machine is a generator: it yields the work it needs done (score, rewrite, re-score, stream a
rewrite, emit text) and receives each result. The logic lives in the machine once; a driver only
decides how work runs: :func:`drive` in the calling thread, :func:`adrive` on an event loop
(models run in worker threads or through their async clients). Streams drive the same machine
and forward the text it emits (:func:`drive_stream`, :func:`adrive_stream`). A step that fails is
raised inside the machine where it waits, so the machine decides what a failure means.

The integrations write their sync and async paths the same way: one machine, these drivers.
"""

from __future__ import annotations

import asyncio
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
)
from dataclasses import dataclass
from functools import partial
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
    """Pieces to stream (an aligner's rewrite, a squad's answer): the driver sends each piece,
    passed through ``each`` (default: the piece itself), to its consumer and sends back
    ``(pieces, error)`` (the pieces as they came, and the error of a stream that broke off, else
    None)."""

    pieces: Callable[[], Iterator[Any]]
    apieces: Callable[[], AsyncIterator[Any]]
    each: Callable[[Any], Iterable[Any]] | None = None


@dataclass(frozen=True)
class Emit:
    """Something the stream sends as it is (text, or an integration's chunk)."""

    text: Any


Step = Work | StreamRewrite | Emit
Machine = Generator[Step, Any, T]


def _advance(machine: Machine[T], reply: Any, error: BaseException | None) -> Step:
    """The machine's next step: ``reply`` sent in, or ``error`` raised where it waits (so the
    machine may handle a failed step; if it does not, the error leaves through the driver)."""
    return machine.throw(error) if error is not None else machine.send(reply)


def drive(machine: Machine[T]) -> T:
    """Run a machine that only asks for :class:`Work`, in this thread."""
    stream = drive_stream(machine)
    try:
        sent = next(stream)
    except StopIteration as done:
        result: T = done.value
        return result
    raise TypeError(f"drive() runs Work steps only; the machine sent {sent!r} (drive_stream)")


async def adrive(machine: Machine[T]) -> T:
    """Run a machine that only asks for :class:`Work` without blocking the event loop."""
    result: list[T] = []
    async for sent in adrive_stream(machine, result):
        raise TypeError(f"adrive() runs Work steps only; the machine sent {sent!r}")
    return result[0]


async def arun(step: Work) -> Any:
    """One :class:`Work` step on an event loop: its async form, else ``run`` in a thread."""
    return await (step.arun() if step.arun else asyncio.to_thread(step.run))


def drive_stream(machine: Machine[T]) -> Generator[Any, None, T]:
    """Run a stream machine in this thread: yield what it emits and streams, run its work;
    its result is the generator's return value."""
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = _advance(machine, reply, error)
        except StopIteration as done:
            result: T = done.value
            return result
        reply, error = None, None
        if isinstance(step, Emit):
            yield step.text
        elif isinstance(step, StreamRewrite):
            pieces: list[Any] = []
            stream: Any = None
            try:
                stream = step.pieces()
                for piece in stream:
                    pieces.append(piece)
                    yield from step.each(piece) if step.each else (piece,)
            except Exception as failure:
                reply = (pieces, failure)
            finally:  # a consumer that stops early closes the source now (its connection, slot)
                if (close := getattr(stream, "close", None)) is not None:
                    close()
            reply = reply or (pieces, None)
        else:
            try:
                reply = step.run()
            except Exception as failure:
                error = failure


async def adrive_stream(
    machine: Machine[T], result: list[T] | None = None
) -> AsyncGenerator[Any, None]:
    """Run a stream machine on an event loop: yield what it emits and streams, await its work;
    its result is appended to ``result`` (an async generator returns no value)."""
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = _advance(machine, reply, error)
        except StopIteration as done:
            if result is not None:
                result.append(done.value)
            return
        reply, error = None, None
        if isinstance(step, Emit):
            yield step.text
        elif isinstance(step, StreamRewrite):
            pieces: list[Any] = []
            astream: Any = None
            try:
                astream = step.apieces()
                async for piece in astream:
                    pieces.append(piece)
                    for out in step.each(piece) if step.each else (piece,):
                        yield out
            except Exception as failure:
                reply = (pieces, failure)
            finally:
                if (aclose := getattr(astream, "aclose", None)) is not None:
                    await aclose()
            reply = reply or (pieces, None)
        else:
            try:
                reply = await arun(step)
            except Exception as failure:
                error = failure


def emitting(items: Iterable[Any]) -> Machine[None]:
    """A stream machine that sends ``items`` as they are (either driver)."""
    for item in items:
        yield Emit(item)


def mapped(machine: Machine[T], each: Callable[[Any], Iterable[Any]]) -> Machine[T]:
    """``machine`` with what it sends (emitted and streamed) passed through ``each``: one item
    in, any number out. Its work and its result are left as they are."""
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = _advance(machine, reply, error)
        except StopIteration as done:
            result: T = done.value
            return result
        reply, error = None, None
        if isinstance(step, Emit):
            for item in each(step.text):
                yield Emit(item)
            continue
        if isinstance(step, StreamRewrite):
            step = StreamRewrite(step.pieces, step.apieces, partial(_each, step.each, each))
        try:
            reply = yield step
        except Exception as failure:
            error = failure


def _each(
    first: Callable[[Any], Iterable[Any]] | None, then: Callable[[Any], Iterable[Any]], piece: Any
) -> list[Any]:
    return [out for item in (first(piece) if first else (piece,)) for out in then(item)]


def resume(machine: Machine[T], reply: Any) -> Machine[T]:
    """The rest of a machine whose last step was answered with ``reply`` outside it: use as
    ``yield from resume(machine, reply)`` after taking its first step by hand."""
    try:
        step = machine.send(reply)
        while True:
            try:
                reply = yield step
            except Exception as error:
                step = machine.throw(error)
            else:
                step = machine.send(reply)
    except StopIteration as done:
        result: T = done.value
        return result
