"""What many test modules share: waiting on a condition, unique names, common message types.

Waiting: a test that sleeps a fixed time and then asserts (or cancels) claims something about
timing it cannot know: on a loaded machine the sleep ends before the state it stood for, and
the test fails, or, worse, checks nothing. So tests wait on the state itself. Where an event
or a future marks it, they await that; where only a field shows it (state other tasks or
another process change), they poll it with :func:`until`, :func:`until_async` or
:func:`until_sync`. A wait that times out fails the test with an ``AssertionError`` that says
what did not happen; the timeout is a bound on a hang, never the thing measured.

The message types are ``msgspec.Struct``\\ s, so they also travel between nodes: the wire
names them by ``module:qualname`` (``helpers:Get``), which every process running the tests
can import (the tests directory is on ``sys.path``, as it is for ``transport_peer.py`` run as
a script).
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

import msgspec

from swarm_actors import ActorDeadError
from swarm_actors.testing import NatsServer


async def until(
    condition: Callable[[], bool],
    timeout: float = 10.0,
    what: str = "the condition",
    *,
    poll: float = 0.01,
) -> None:
    """Return once ``condition()`` holds; fail the test if it does not within ``timeout`` s.

    For state that other tasks change and no event marks. ``condition`` is checked at once,
    then every ``poll`` seconds; ``poll=0`` checks it on every turn of the event loop, for a
    state that lasts only while the test does not run (it returns before time passes).
    """
    try:
        async with asyncio.timeout(timeout):
            while not condition():  # noqa: ASYNC110 (no event marks the state)
                await asyncio.sleep(poll)
    except TimeoutError:
        raise AssertionError(f"not within {timeout:g} s: {what}") from None


async def until_async(
    condition: Callable[[], Awaitable[bool]],
    timeout: float = 10.0,
    what: str = "the condition",
    *,
    state: Callable[[], Awaitable[object]] | None = None,
    poll: float = 0.05,
) -> None:
    """:func:`until` for a condition that needs I/O (a server's state); errors count as not yet.

    On failure the message holds the last error, and what ``state()`` returns then (how
    things looked).
    """
    last: Exception | None = None
    try:
        async with asyncio.timeout(timeout):
            while True:
                try:
                    if await condition():
                        return
                except Exception as exc:  # e.g. no leader yet: ask again
                    last = exc
                await asyncio.sleep(poll)
    except TimeoutError:
        seen = ""
        if state is not None:
            try:
                seen = f"; then: {await state()}"
            except Exception as exc:
                seen = f"; then: {exc!r}"
        raise AssertionError(
            f"not within {timeout:g} s: {what} (last error: {last!r}){seen}"
        ) from None


def until_sync(
    condition: Callable[[], bool],
    timeout: float = 10.0,
    what: str = "the condition",
    *,
    poll: float = 0.02,
) -> None:
    """:func:`until` for code without an event loop: another process's state, a file."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(poll)


class _Asks(Protocol):
    async def ask(self, message: Any, *, timeout: float = ...) -> Any: ...


async def until_dead(ref: _Asks, timeout: float = 10.0) -> ActorDeadError:
    """Ask ``ref`` for its state until the ask fails with ``ActorDeadError``; that error.

    For a ref to an actor whose node is gone: until the server has noticed the dead
    connection, an ask waits out its (short) timeout instead; after that it fails at once.
    """
    try:
        async with asyncio.timeout(timeout):
            while True:
                try:
                    await ref.ask(Get(), timeout=0.2)
                except TimeoutError:  # not noticed yet
                    continue
                except ActorDeadError as exc:
                    return exc
                raise AssertionError("an actor that should be gone answered")
    except TimeoutError:
        raise AssertionError(
            f"asks did not fail with ActorDeadError within {timeout:g} s"
        ) from None


class Turns:
    """How many turns the event loop has made since :func:`count_turns` began."""

    def __init__(self) -> None:
        self.count = 0


@asynccontextmanager
async def count_turns() -> AsyncIterator[Turns]:
    """Count the event loop's turns while the block runs, for tests of what yields to the loop.

    A task adds one on each turn; it is running (and the count 0) when the block starts.
    """
    turns = Turns()

    async def tick() -> None:
        while True:
            turns.count += 1
            await asyncio.sleep(0)

    ticker = asyncio.ensure_future(tick())
    await asyncio.sleep(0)  # it ran once: from here on, one count a turn
    turns.count = 0
    try:
        yield turns
    finally:
        ticker.cancel()
        await asyncio.wait([ticker])  # (wait, unlike await, does not raise its cancellation)


def instance(ref: Any) -> Any:
    """The actor object behind a local ref, for tests that look inside it."""
    return ref._cell.actor


def active(ref: Any) -> bool:
    """Whether a virtual actor is active: a call, so mypy does not narrow it across awaits."""
    return bool(ref.is_active)


def unique(prefix: str = "x") -> str:
    """A name no other test uses (a NATS subject token, KV key, stream or actor name)."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


# --- message types --------------------------------------------------------------------------


class Add(msgspec.Struct):
    """Add ``n`` to a counter."""

    n: int


class Get(msgspec.Struct):
    """Ask for an actor's state."""


class Set(msgspec.Struct):
    """Set an actor's state to ``value``."""

    value: int


class Tick(msgspec.Struct):
    """A timer's tick, or a message without content."""


class Boom(msgspec.Struct):
    """Handled by raising."""


class Fail(msgspec.Struct):
    """Handled by raising (an actor's failure, for supervision)."""


class Unknown(msgspec.Struct):
    """A message no test actor has a handler for."""


@asynccontextmanager
async def ready_process(
    *args: str, stdin: bool = False
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``python *args`` in another process, once it prints ``ready`` (30 s); killed after.

    Its stdout and stderr are read up to that line; if it ends before it, the test fails with
    what it printed.
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        stdin=asyncio.subprocess.PIPE if stdin else None,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        output = []
        async with asyncio.timeout(30):
            while (line := await proc.stdout.readline()) and line.strip() != b"ready":
                output.append(line)
        assert line.strip() == b"ready", b"".join(output).decode()
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def own_journal_server(name: str) -> Iterator[NatsServer]:
    """A JetStream server of a test module's own, for its journals (a module fixture's body).

    Journals on ``swarm.events.<unique>.>`` cannot share the session's server: they would
    overlap ``SWARM_EVENTS`` (on ``swarm.events.>``), the stream that the systems of other tests
    journal to by default, and JetStream refuses overlapping streams.
    """
    from swarm_actors.testing.pytest_plugin import NATS_TEST_FILE_STORE, NATS_TEST_MEMORY_STORE

    server = NatsServer(
        name=name, max_file_store=NATS_TEST_FILE_STORE, max_memory_store=NATS_TEST_MEMORY_STORE
    )
    asyncio.run(server.start())
    try:
        yield server
    finally:
        asyncio.run(server.stop())


class Payload:
    """A handler's answer whose freeing a test can watch (``MADE`` holds a weakref to each)."""


class Make(msgspec.Struct):
    """Make a ``Payload`` (see ``make_payload``)."""

    hold: Any = None  # an asyncio.Event to wait for first: the handler suspends


MADE: list[weakref.ref[Payload]] = []
"""Weak references to every ``Payload`` made, so a test can check that none is kept."""


async def make_payload(msg: Make) -> Payload:
    """What a ``Make`` handler does: wait for ``msg.hold`` if given, then a watched ``Payload``."""
    if msg.hold is not None:
        await msg.hold.wait()
    made = Payload()
    MADE.append(weakref.ref(made))
    return made
