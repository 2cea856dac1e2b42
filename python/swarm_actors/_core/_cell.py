"""The actor engine: one ``Cell`` per running actor, and the dispatcher that runs their turns.

Design (measured on a 2-core machine with CPython 3.11): a task per actor and an ``asyncio.Queue``
mailbox top out near 440k tells/s. Here a mailbox is a plain ``deque`` and a ready actor is
appended to the dispatcher's ready queue; one loop callback then runs the turns of every ready
actor. A handler coroutine is driven by the dispatcher's runner (``_runner``, a generator that
``yield from``s one handler after another, so a handler's return costs no ``StopIteration``):
most handlers finish without suspending, so they cost one call and no task. Only a handler
that really awaits something is handed to a task (with the runner in the middle of it), which
finishes it (see ``_finish``) while the actor stays busy, so the actor still handles one
message at a time.

An ``ask`` to an idle actor with an empty mailbox runs the handler inline in the caller's task
under the same one-at-a-time guard, so a round trip costs no event-loop iteration at all unless
the handler suspends.

A handler that suspends (the path of every real agent: a model call, a tool, I/O) is finished
by ``_finish``, a generator-based coroutine that drives it directly, in a copy of the context it
started in. A bare yield (``asyncio.sleep(0)``) is resumed at the task's first step, which is
the next iteration it asked for, so a suspending ask costs two iterations (a plain
``asyncio.Queue`` actor needs three). That task then serves the mailbox while it has messages
(each next handler started in the task and finished by a real ``yield from``), and lingers one
iteration when it is empty: an asker answered there usually asks again in that iteration, and
its ask is served without a task of its own. Ask timeouts with the system's default share one
timer (``Deadlines``) instead of a ``call_later`` each.

None of these paths keeps the message being handled anywhere but in local variables, and each
assumes one handler at a time. An actor class that asks for more (``max_concurrency > 1``, or
a stash: ``stash=True``) runs in a ``TrackedCell`` instead: every handler call is a ``Call``
with a task of its own once it suspends, at some cost per message that plain actors do not pay
(see ``cell_class_for``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import inspect
import time
import types
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from contextvars import Token
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, cast

from swarm_actors._core._capability import CURRENT_SENDER
from swarm_actors._core._mailbox import INLINE_CHECKPOINT, Ask
from swarm_actors._core._recorder import Ledger, record_signal
from swarm_actors._core._ref import ActorRef
from swarm_actors._core._sender import ORIGIN, origin_of
from swarm_actors._core._supervision import Directive
from swarm_actors._core._telemetry import (
    InContext,
    SampledCache,
    attach_context,
    detach_context,
)
from swarm_actors._core._watch import DeathWatch
from swarm_actors._events._schema import SignalKind
from swarm_actors._exceptions import (
    ActorDeadError,
    EscalatedError,
    InvalidArgumentError,
    MailboxFullError,
    UnhandledMessageError,
)
from swarm_actors._log import get_logger

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

    from swarm_actors._core._actor import Actor
    from swarm_actors._core._timers import Timers
    from swarm_actors._system import ActorSystem

__all__ = [
    "INLINE_CHECKPOINT",
    "Ask",
    "Cell",
    "Dispatcher",
    "TrackedCell",
    "cell_class_for",
]  # Ask and the constant: from _mailbox

log = get_logger("swarm_actors")

TURN_BUDGET = 256
"""Messages one actor handles per turn before the dispatcher moves on (fairness)."""

SPARE_RUNNERS = 64
"""Free handler runners a dispatcher keeps besides its ``runner`` (see ``Dispatcher.spares``)."""


_MISSING = object()


class State(enum.Enum):
    """Life of a cell."""

    STARTING = "starting"
    RUNNING = "running"
    SUSPENDED = "suspended"  # failed; waiting for its supervisor's decision
    STOPPING = "stopping"
    STOPPED = "stopped"


# Plain module globals: reading ``State.RUNNING`` costs ~70 ns (enum class attribute), a
# global ~5 ns, and the engine checks states on every turn.
STARTING = State.STARTING
RUNNING = State.RUNNING
SUSPENDED = State.SUSPENDED
STOPPING = State.STOPPING
STOPPED = State.STOPPED


def _resume(coro: Coroutine[Any, Any, Any], first: Any) -> Generator[Any, Any, Any]:
    """Continue a coroutine that already yielded ``first`` (``yield from`` started midway).

    Re-yielding the very object the coroutine yielded lets the driving task wait on it exactly
    as if it had awaited the coroutine from the start; cancellation is thrown through.
    """
    value = first
    while True:
        try:
            sent = yield value
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            try:
                value = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
            continue
        try:
            value = coro.send(sent)
        except StopIteration as stop:
            return stop.value


class _Done:
    """What a handler runner yields once its handler returned (see ``_runner``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<handler returned>"


_DONE: Any = _Done()


@types.coroutine
def _runner(dispatcher: Dispatcher) -> Generator[Any, Any, None]:
    """Runs handler coroutines one after another: ``send(coro)`` starts the next one.

    ``send`` returns ``_DONE`` once the handler returned (its result is then in
    ``dispatcher.result``), or what the handler yielded when it suspended: the runner is then
    in the middle of it and goes on in the actor's task (see ``Cell._finish``).
    What the handler raises comes out of ``send`` and ends the runner.

    Why: a coroutine driven by ``coro.send(None)`` reports its return with a ``StopIteration``
    raised and caught in Python (about 1,000 instructions, an eighth of a tell); ``yield from``
    takes the return value with no exception at all.
    """
    coro = yield None
    while True:
        dispatcher.result = yield from coro
        coro = yield _DONE


def handler_of(coro: Any) -> Any:
    """The handler coroutine behind what a task finishes: a runner's, or itself."""
    if isinstance(coro, InContext):
        coro = coro.coro
    if type(coro) is types.GeneratorType:  # a runner (see ``_runner``)
        coro = coro.gi_yieldfrom
    return coro


class _Resume:
    __slots__ = ("coro", "first")

    def __init__(self, coro: Coroutine[Any, Any, Any], first: Any) -> None:
        self.coro = coro
        self.first = first

    def __await__(self) -> Generator[Any, Any, Any]:
        return _resume(self.coro, self.first)


def expire(future: asyncio.Future[Any], timeout: float, path: str) -> None:
    """An ask to ``path`` got no answer within ``timeout`` seconds: fail it (if still waiting)."""
    if not future.done():
        future.set_exception(TimeoutError(f"ask to {path} got no reply within {timeout:g} s"))


class Deadlines:
    """The deadlines of one system's asks with its default timeout, in buckets on one timer.

    A ``call_later`` per ask and its ``cancel`` cost about 1.5 µs, a sixth of an ask whose
    handler suspends; a clock read, a tuple and a sorted queue per ask still cost 2.3k
    instructions (49 bytecodes and a ``path`` lookup). Here an ask costs no clock read: it is
    put in the open bucket (``bucket``, a dict: future -> cell, the cell only for the error's
    path) and its asker deletes it once answered, so a bucket holds only asks still waiting.
    One timer ticks every eighth of the timeout (``step``) while any ask waits: a tick closes
    the open bucket, which then expires (its asks still there fail with ``TimeoutError``)
    ``timeout`` after that tick, and opens a new one. An ask made at ``t`` therefore fails no
    earlier than ``t + timeout`` and at most ``timeout / 8`` later (plus the event loop's own
    lateness): ticks are armed for a closed bucket's deadline when that comes before the next
    step. With no ask waiting the timer stops; the next ask arms it again (``start``).

    An explicit ``timeout=`` gets buckets of its own, one set per value (``of``; the roles of
    the swarm ask with a few fixed timeouts), up to ``MAX_TIMEOUTS`` values; beyond them, and
    for what is left of a timeout after waiting for room, a ``call_later`` of its own
    (``later``), cancelled once answered.
    """

    MAX_TIMEOUTS: ClassVar[int] = 16
    """Explicit timeout values given buckets of their own (a value's buckets stay while unused:
    a timer only ticks while asks wait)."""

    __slots__ = ("bucket", "closed", "handle", "loop", "now", "others", "step", "timeout")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float | None) -> None:
        self.loop = loop
        # asyncio's own loops tell time with time.monotonic: called directly, not through a
        # Python method (other loops, e.g. uvloop, keep their own clock).
        base_time = asyncio.BaseEventLoop.time
        self.now = time.monotonic if type(loop).time is base_time else loop.time
        self.timeout = timeout  # the system's default (None: asks wait without a limit)
        self.step = None if timeout is None else timeout / 8
        self.bucket: dict[asyncio.Future[Any], Cell] = {}  # the open bucket
        self.closed: deque[tuple[float, dict[asyncio.Future[Any], Cell]]] = deque()
        self.handle: asyncio.TimerHandle | None = None
        self.others: dict[float, Deadlines] = {}  # the buckets of explicit timeouts, by value

    def of(self, timeout: float) -> Deadlines | None:
        """The buckets of asks with an explicit ``timeout`` (``None``: too many values in use)."""
        if timeout == self.timeout:
            return self
        found = self.others.get(timeout)
        if found is None and len(self.others) < self.MAX_TIMEOUTS:
            found = self.others[timeout] = Deadlines(self.loop, timeout)
        return found

    def later(self, future: asyncio.Future[Any], timeout: float, cell: Cell) -> asyncio.TimerHandle:
        """Fail ``future`` unless answered within ``timeout`` (not the default): its own timer."""
        return self.loop.call_later(timeout, expire, future, timeout, cell.path)

    def start(self) -> None:
        """An ask was put in the open bucket while the timer was stopped: arm it."""
        if self.step is not None:
            self.handle = self.loop.call_later(self.step, self._tick)

    def _tick(self) -> None:
        now = self.now()
        timeout = self.timeout
        step = self.step
        assert timeout is not None
        assert step is not None
        closed = self.closed
        if self.bucket:
            closed.append((now + timeout, self.bucket))
            self.bucket = {}
        while closed and closed[0][0] <= now:
            _, bucket = closed.popleft()
            for future, cell in list(bucket.items()):  # (expire changes no bucket: safe)
                expire(future, timeout, cell.path)
        if not all(bucket for _, bucket in closed):  # all their asks answered: forgotten
            self.closed = closed = deque(c for c in closed if c[1])
        if closed:
            self.handle = self.loop.call_at(min(now + step, closed[0][0]), self._tick)
        else:
            self.handle = None  # nothing waits (the open bucket is empty): stop


_NO_CHILDREN = cast("dict[str, Cell]", types.MappingProxyType({}))
"""Every childless cell's ``children``: most actors never have any, and a dict each would cost
an allocation per (virtual) activation. Read-only, so that a write not made through
``Cell.adopt`` fails loudly instead of giving every cell the child."""


class Dispatcher:
    """Runs the turns of ready actors from one event-loop callback.

    One per ``ActorSystem``, reached from every cell: it also holds the system's own state of
    the hot paths, which no two systems in a process share: the inline-ask budget until the
    next checkpoint (``inline_left``) and the sampled-context cache (``traces``); and its
    death watch (``watches``, see ``_watch``), which every cell tells when it stops; and the
    virtual-actor registry (``virtuals``), where a virtual actor's sender ref comes from.
    """

    __slots__ = (
        "deadlines",
        "inline_left",
        "loop",
        "new_future",
        "pending",
        "ready",
        "result",
        "runner",
        "running",
        "spares",
        "stale",
        "traces",
        "virtuals",
        "watches",
    )

    def __init__(
        self, loop: asyncio.AbstractEventLoop, ask_timeout: float | None, virtuals: Any = None
    ) -> None:
        self.loop = loop
        self.watches = DeathWatch()  # the system's death watch (``Actor.watch``)
        self.virtuals = virtuals  # the system's VirtualRegistry (see _sender.origin_of)
        self.ready: deque[Cell] = deque()
        self.pending = False
        self.stale = 0
        self.inline_left = INLINE_CHECKPOINT  # asks answered inline until the next checkpoint
        self.traces = SampledCache()
        self.running = False
        self.deadlines = Deadlines(loop, ask_timeout)  # the system's Timeouts.ask
        # An ask's reply future: ``loop.create_future`` is a Python method that only calls
        # ``asyncio.Future`` on asyncio's own loops, so they call it directly (a frame less).
        create_future = asyncio.BaseEventLoop.create_future
        self.new_future: Callable[[], asyncio.Future[Any]] = (
            partial(asyncio.Future, loop=loop)
            if type(loop).create_future is create_future
            else loop.create_future
        )
        # The handler runner free for the next turn (``None``: taken, or handed to a task
        # with a suspended handler), and the result of the handler it finished last.
        self.result: Any = None
        # Free runners besides ``runner``: the calls of a ``TrackedCell`` suspend several at
        # once, each with a runner, and give them back here when they return (up to
        # ``SPARE_RUNNERS``), so that the next first steps need no new one.
        self.spares: list[Generator[Any, Any, None]] = []
        self.runner: Generator[Any, Any, None] | None = self.new_runner()

    def free_runner(self, runner: Generator[Any, Any, None]) -> None:
        """``runner`` finished its handler in a task: keep it for the next handler (or drop it)."""
        if self.runner is None:
            self.runner = runner
        elif len(self.spares) < SPARE_RUNNERS:
            self.spares.append(runner)

    def new_runner(self) -> Generator[Any, Any, None]:
        """A handler runner ready to take a handler (see ``_runner``): a spare one, or a new one."""
        spares = self.spares
        if spares:
            return spares.pop()
        runner = _runner(self)
        runner.send(None)
        return runner

    def ran_out_of_band(self, cell: Cell) -> None:
        """``cell``'s turn is about to run directly (a synchronous passivation).

        Its entry in ``ready``, if any, goes stale. With a sender that never yields, stale
        entries would grow ``ready`` forever and keep dead cells alive long enough for the
        cyclic GC to promote them (costly full collections), so they are swept out once
        they are a quarter of the queue.

        The usual case costs no sweep: the least recently used actor (the one passivated) was
        mostly scheduled before every other one still waiting, so its entry is at the front and
        goes at once, with the stale entries behind it. Freeing dead cells one by one also
        matters for the GC: CPython's young-generation counter (allocations minus frees) never
        goes below zero, so thousands of cells freed at once by a sweep go uncounted and the
        next allocations trigger collections that promote every live actor.
        """
        if cell.scheduled:
            ready = self.ready
            # Not while ``run`` pops: it counts on the entries it took the length of.
            if not self.running and ready and ready[0] is cell:
                ready.popleft()
                while ready and not ready[0].scheduled:
                    ready.popleft()
                    if self.stale:
                        self.stale -= 1
                return
            self.stale += 1
            if self.stale > 256 and 4 * self.stale > len(self.ready):
                self.ready = deque(c for c in self.ready if c.scheduled and c is not cell)
                self.stale = 0

    def run(self) -> None:
        self.pending = False
        ready = self.ready
        self.running = True
        try:
            for _ in range(len(ready)):
                ready.popleft().run_turn()
        finally:
            self.running = False


class Cell:
    """Runtime state of one actor: mailbox, instance, children, failures.

    The cell is the only writer of its state machine (``state``, ``accepting``, ``runnable``,
    ``busy``, ``scheduled``, ``actor``) and of its mailbox: refs, the transport and virtual
    activation go through its methods (``post``, ``put``, ``enqueue_nowait``, ``ask_inline``,
    ``install``, ``begin_passivation``, ``seal``, ...). ``tests/test_cell_writers.py`` holds
    every other module to that.
    """

    dispatched: ClassVar[bool] = True
    """Whether the dispatcher runs this cell's turns (``False``: stepped by hand, see testing)."""
    stashes: ClassVar[bool] = False
    """Whether the cell has a stash (``stashed_count`` may be non-zero): a ``TrackedCell``."""

    __slots__ = (
        "_name",
        "_path",
        "accepting",
        "actor",
        "actor_class",
        "args",
        "awaiting",
        "busy",
        "cache",
        "capacity",
        "children",
        "dispatcher",
        "drained",
        "dropped",
        "failures",
        "grant",
        "kwargs",
        "ledger",
        "loop",
        "parent",
        "processed",
        "put_waiters",
        "queue",
        "restart_times",
        "restarts",
        "runnable",
        "running",
        "scheduled",
        "state",
        "stop_note",
        "stopping",
        "system",
        "task",
        "timers",
        "tracer",
        "virtual_id",
        "virtual_key",
    )

    def __init__(
        self,
        system: ActorSystem,
        actor_class: type[Actor],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        name: str | None,
        parent: Cell | None,
    ) -> None:
        self.system = system
        self.dispatcher = dispatcher = system._dispatcher
        self.loop = dispatcher.loop
        self.actor_class = actor_class
        self.args = args
        self.kwargs = kwargs
        # Both made on first use (see ``name``): a virtual actor passivated before anything
        # asked its name (most of them) never formats either string.
        self._name = name
        self._path: str | None = None
        self.parent = parent
        self.children: dict[str, Cell] = _NO_CHILDREN  # ``adopt`` makes its own dict
        self.actor: Actor | None = None
        self.queue: deque[Any] = deque()
        self.capacity = actor_class.mailbox_size
        # Senders blocked on a full mailbox; a deque only once one blocks (most never do).
        self.put_waiters: deque[asyncio.Future[None]] | tuple[()] = ()
        self.cache = actor_class._dispatch  # message type -> unbound handler, per class
        # Its sends are checked against this (see _capability); None: it may message anyone.
        self.grant = actor_class.message_grant
        self.state = STARTING
        self.accepting = True
        self.runnable = False  # may run a turn now: RUNNING and not busy
        self.scheduled = False
        self.busy = False
        self.stop_note = ""  # why a stop went further than asked (for its STOPPED signal)
        # The handler coroutine finishing in ``task`` (read only while busy, to report it).
        self.running: Coroutine[Any, Any, Any] | None = None
        # The actor whose answer this one's handler is waiting for (an ask in progress), so
        # that an ask closing a cycle of waits is refused instead of deadlocking.
        self.awaiting: Cell | None = None
        self.task: asyncio.Task[None] | None = None
        self.processed = 0
        self.dropped = 0
        self.failures = 0
        self.restarts = 0
        self.restart_times: deque[float] | None = None  # created by the first failure
        self.stopping: asyncio.Future[int] | None = None
        self.drained: asyncio.Future[None] | None = None
        self.timers: Timers | None = None  # created on first use: most actors have none
        self.virtual_id: int | None = None
        self.virtual_key: Any = None  # a virtual actor's key (its name, see ``name``)
        self.ledger: Ledger | None = None  # event sequence and chain head, from its first event
        self.tracer: Tracer | None = system._tracer  # None: tracing off, see _telemetry

    @property
    def name(self) -> str:
        """The actor's name among its siblings; a virtual actor's is ``Class:key``."""
        name = self._name
        if name is None:
            name = self._name = f"{self.actor_class.__qualname__}:{self.virtual_key}"
        return name

    @property
    def path(self) -> str:
        """The actor's path: its parent's, then ``/`` and its name."""
        path = self._path
        if path is None:
            parent = self.parent
            path = self._path = f"{'' if parent is None else parent.path}/{self.name}"
        return path

    def adopt(self, name: str, child: Cell) -> None:
        """Keep ``child`` under ``name`` among the children (the first one makes the dict)."""
        children = self.children
        if children is _NO_CHILDREN:
            children = self.children = {}
        children[name] = child

    @property
    def ref(self) -> ActorRef[Any]:
        """A ref to this cell, made on demand (refs compare by cell).

        The cell keeps no ref, so a stopped cell is freed by reference counting rather than
        by the cycle collector.
        """
        return ActorRef(self)

    def get_timers(self) -> Timers:
        from swarm_actors._core._timers import Timers as TimersClass

        if self.timers is None:
            self.timers = TimersClass(self)
        return self.timers

    def cancel_timers(self) -> None:
        if self.timers is not None:
            self.timers.cancel_all()

    # --- instance lifecycle ---------------------------------------------------------------

    def install(self, key: Any, virtual_id: int) -> Actor:
        """Build the instance of a virtual actor (``key``, agent ``virtual_id``); not started.

        Its state is restored and ``on_start`` run by the caller (virtual activation).
        """
        actor = self.actor_class()
        actor._cell = self
        actor.system = self.system
        actor.key = key
        self.virtual_key = key
        self.virtual_id = virtual_id
        self.actor = actor
        return actor

    async def create_instance(self) -> None:
        """Build a fresh instance and run its ``on_start``; errors propagate."""
        actor = self.actor_class(*self.args, **self.kwargs)
        actor._cell = self
        actor.system = self.system
        if self.virtual_id is not None and self.actor is not None:
            # A virtual actor restarted by its supervisor: the new instance keeps its key.
            actor.key = self.actor.key
        self.actor = actor
        # Set and set back, not reset(token): the caller may be a handler run inline whose
        # rest moves to its actor's own task (another context) while on_start awaits, and a
        # token can only be reset in the context it was made in.
        previous = CURRENT_SENDER.get()
        CURRENT_SENDER.set(self)
        try:
            await actor.on_start()
        finally:
            CURRENT_SENDER.set(previous)

    async def run_on_stop(self, actor: Actor) -> None:
        """Run ``actor.on_stop`` as this actor (sends from it are checked as its own)."""
        previous = CURRENT_SENDER.get()  # set back, not reset: see create_instance
        CURRENT_SENDER.set(self)
        try:
            await actor.on_stop()
        finally:
            CURRENT_SENDER.set(previous)

    def is_stopped(self) -> bool:
        """Whether the cell is STOPPED for good."""
        return self.state is STOPPED

    def is_running(self) -> bool:
        """Whether the cell is RUNNING (a call, so type narrowing does not go stale)."""
        return self.state is RUNNING

    def set_running(self) -> None:
        self.state = RUNNING
        self.runnable = self.dispatched and not self.busy
        if self.queue and self.runnable:
            self.schedule()

    def fail_start(self, error: ActorDeadError) -> None:
        """The actor could not start: refuse senders, fail what was sent meanwhile, STOPPED."""
        self.refuse_senders(error)
        self.state = STOPPED
        self.discard_queue(error)
        self.dispatcher.watches.ended(self)

    def begin_passivation(self) -> None:
        """A virtual actor is being passivated: no more messages, no more turns (STOPPING).

        Senders already waiting for room are refused too (they go round to the next
        activation); ``seal`` ends it.
        """
        self.refuse_senders()
        self.runnable = False
        self.state = STOPPING

    def seal(self) -> Actor:
        """End a passivation: STOPPED for good, timers cancelled; returns the instance.

        Without ``begin_passivation`` first (nothing to wait for in between, the caller checked
        the cell idle), it refuses the senders waiting for room itself. The cell lets the
        instance go (without it the cell holds no cycle); the caller keeps its snapshot.
        """
        self.accepting = False
        if self.put_waiters:
            self.refuse_senders()
        self.state = STOPPED
        self.runnable = False
        if self.timers is not None:
            self.timers.cancel_all()
        actor = self.actor
        assert actor is not None
        self.actor = None
        return actor

    # --- mailbox ----------------------------------------------------------------------------

    def schedule(self) -> None:
        self.scheduled = True
        d = self.dispatcher
        d.ready.append(self)
        if not d.pending:
            d.pending = True
            # A fresh context: turns must not see the context of whichever sender scheduled
            # them (a traced message brings its own, see _telemetry).
            self.loop.call_soon(d.run, context=contextvars.Context())

    def post(self, item: Any) -> bool:
        """Deliver ``item`` if the mailbox takes it now; ``False`` if stopped or full.

        The one delivery path: every send (local, remote, virtual) ends here.
        """
        queue = self.queue
        if self.accepting and len(queue) < self.capacity:
            queue.append(item)
            if not self.scheduled and self.runnable:
                self.schedule()
            return True
        return False

    def post_urgent(self, item: Any) -> bool:
        """Deliver a notice of the runtime (``Terminated``) even past the mailbox's capacity.

        ``False`` once the actor takes no more messages (nobody is left to handle it).
        """
        if not self.accepting:
            return False
        self.queue.append(item)
        if not self.scheduled and self.runnable:
            self.schedule()
        return True

    def withdraw(self, item: Any) -> None:
        """Take ``item`` back out of the mailbox, if still there (an ``unwatch``)."""
        with contextlib.suppress(ValueError):
            self.queue.remove(item)

    def enqueue_nowait(self, item: Any) -> None:
        """Deliver ``item`` now or raise ``ActorDeadError`` (stopped) / ``MailboxFullError``."""
        if self.post(item):
            return
        if not self.accepting:
            raise ActorDeadError(f"{self.path} is stopped", actor=self.path)
        raise MailboxFullError(
            f"mailbox of {self.path} is full ({self.capacity} messages)",
            actor=self.path,
            capacity=self.capacity,
        )

    async def put(self, item: Any) -> None:
        """Deliver ``item``, waiting while the mailbox is full (backpressure).

        ``room`` returns only with room and raises ``ActorDeadError`` once the actor takes no
        more messages, so this loops at most once unless another sender took the slot.
        """
        while not self.post(item):
            await self.room()

    def turn_now(self) -> None:
        """Run a turn right here, out of the dispatcher's order (the mailbox must be drained).

        In a fresh context: the turn must not see the caller's context variables.
        """
        if self.scheduled:  # its entry in the ready queue goes stale
            self.dispatcher.ran_out_of_band(self)
        contextvars.Context().run(self.run_turn)

    async def room(self) -> None:
        """Wait until the mailbox has room for a message (return at once if it has).

        Raises ``ActorDeadError`` if the actor takes no more messages, now or while waiting: a
        sender that gets it has enqueued nothing. It returns only when there is room, so a
        caller that enqueues before it next awaits is neither refused nor made to wait.
        """
        while True:
            if not self.accepting:
                raise ActorDeadError(f"{self.path} is stopped", actor=self.path)
            if len(self.queue) < self.capacity:
                return
            waiter: asyncio.Future[None] = self.loop.create_future()
            waiters = self.put_waiters
            if not isinstance(waiters, deque):
                waiters = self.put_waiters = deque()
            waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter in waiters:
                    waiters.remove(waiter)
                elif waiter.done() and not waiter.cancelled():
                    self._wake_putters()  # pass the freed slot on
                raise

    def _wake_putters(self) -> None:
        free = self.capacity - len(self.queue)
        waiters = self.put_waiters
        if not isinstance(waiters, deque):
            return
        while waiters and free > 0:
            w = waiters.popleft()
            if not w.done():
                w.set_result(None)
                free -= 1

    def resolve(self, message_type: type) -> Callable[..., Coroutine[Any, Any, Any]] | None:
        """The unbound handler for a message type, or ``None`` when unhandled."""
        return self.actor_class._resolve(message_type)

    def unhandled_error(self, message: Any) -> UnhandledMessageError:
        """The error an asker gets for a message no handler claims."""
        return UnhandledMessageError(
            f"{self.actor_class.__qualname__} ({self.path}) has no handler for "
            f"{type(message).__qualname__}",
            actor=self.path,
        )

    def unhandled(self, message: Any, reply: asyncio.Future[Any] | None) -> None:
        error = self.unhandled_error(message)
        if reply is not None:
            if not reply.done():
                reply.set_exception(error)
        else:
            self.system._dead_letter(self.path, message, "unhandled")

    # --- turns ------------------------------------------------------------------------------

    def _step(
        self, budget: int
    ) -> tuple[Coroutine[Any, Any, Any], Any, asyncio.Future[Any] | None] | None:
        """Handle queued messages; return the handler that suspended, if one did.

        Stops when the budget is spent, the queue is empty, or a handler fails or suspends.
        """
        token = CURRENT_SENDER.set(self)  # sends made by the handlers come from this actor
        try:
            return self._handle_queued(budget)
        finally:
            CURRENT_SENDER.reset(token)

    def _handle_queued(
        self, budget: int
    ) -> tuple[Coroutine[Any, Any, Any], Any, asyncio.Future[Any] | None] | None:
        queue = self.queue
        dispatcher = self.dispatcher
        runner: Any = dispatcher.runner  # (handed on as the coroutine of a suspended handler)
        if runner is None:
            runner = dispatcher.new_runner()
        else:
            dispatcher.runner = None  # taken: a handler it runs may run another one (an ask)
        # ``ORIGIN`` as this call bound it: set when a message's origin differs from the one
        # before it, not set and reset around every message (a burst from one sender, the
        # usual case, binds it once), and put back as it was when the call returns.
        bound: Any = None
        token: Token[Any] | None = None
        try:
            while queue and budget:
                budget -= 1
                item = queue.popleft()
                entry = None  # an entry whose handler runs in a context of its own
                origin = None
                if type(item) is Ask:
                    message, reply = item.message, item.future
                    # A traced entry carries its sender's trace context, an entry with a
                    # sender its origin (``_sender``): current while the handler's first step
                    # runs, and kept by the handler wherever it is resumed (InContext), so
                    # that each handler call keeps its own, however many are in flight.
                    origin = item.origin
                    if item.context is not None or origin is not None:
                        entry = item
                else:
                    message, reply = item, None
                fn = self.cache.get(type(message), _MISSING)
                if fn is _MISSING:
                    fn = self.resolve(type(message))
                self.processed += 1
                if fn is None:
                    self.unhandled(message, reply)
                    continue
                if origin is not bound:
                    value = None if origin is None else (self, origin)
                    if token is None:
                        token = ORIGIN.set(value)
                    else:
                        ORIGIN.set(value)
                    bound = origin
                if entry is not None:
                    attached = None if entry.context is None else attach_context(entry.context)
                handed: Any = runner
                try:
                    yielded = runner.send(fn(self.actor, message))  # type: ignore[operator]
                    if yielded is not _DONE and entry is not None:
                        handed = InContext(runner, contextvars.copy_context())
                except (Exception, asyncio.CancelledError) as exc:
                    self.fail(exc, reply)  # (the runner ended with the handler)
                    return None
                finally:
                    if entry is not None and attached is not None:
                        detach_context(attached)
                if yielded is _DONE:
                    if reply is not None and not reply.done():
                        reply.set_result(dispatcher.result)
                    dispatcher.result = None
                    continue
                return handed, yielded, reply  # the runner goes on in the actor's task
            dispatcher.runner = runner
            return None
        finally:
            if token is not None:
                ORIGIN.reset(token)

    def ask_inline(self, message: Any, origin: Any = None) -> tuple[bool, Any]:
        """Run the handler of an ask in the caller, the actor being idle (``runnable``, empty).

        The one inline-ask path (local refs and the transport). Returns ``(True, result)``, or
        ``(False, future)`` when the handler suspended: it then finishes in the actor's own task
        (cancelling the caller cannot interrupt it halfway), which answers ``future``. Raises
        what the handler raised (the actor goes on: an ask's error is its answer), or
        ``UnhandledMessageError``. While the handler runs here its sends come from the actor,
        and an asking actor (the current sender) is marked as waiting for this one. The
        handler's ``self.sender`` is ``origin`` (a remote asker, from the transport) or else the
        asking actor (see ``_sender``).
        """
        fn = self.cache.get(type(message), _MISSING)
        if fn is _MISSING:
            fn = self.resolve(type(message))
        self.processed += 1
        if fn is None:
            raise self.unhandled_error(message)
        self.runnable = False
        self.busy = True
        token = CURRENT_SENDER.set(self)
        asker = token.old_value
        if asker is Token.MISSING:
            asker = None
        if asker is not None:
            asker.awaiting = self  # the handler, run here, may ask the asker back
            if origin is None:
                origin = asker if asker.virtual_id is None else origin_of(asker)
        bound = None if origin is None else ORIGIN.set((self, origin))
        dispatcher = self.dispatcher
        runner: Any = dispatcher.runner  # taken while the handler runs (see _handle_queued)
        if runner is None:
            runner = dispatcher.new_runner()
        else:
            dispatcher.runner = None
        handed: Any = runner
        try:
            yielded = runner.send(fn(self.actor, message))  # type: ignore[operator]
            if yielded is not _DONE and bound is not None:
                # Its sender goes with it, as in _handle_queued.
                handed = InContext(runner, contextvars.copy_context())
        except (Exception, asyncio.CancelledError) as exc:
            self.busy = False
            if self.fail(exc, None, asked=True):
                self.after_handler()  # the error is the asker's answer: the actor goes on
            raise
        finally:
            if bound is not None:
                ORIGIN.reset(bound)
            CURRENT_SENDER.reset(token)
            if asker is not None:
                asker.awaiting = None
        if yielded is _DONE:
            dispatcher.runner = runner
            result, dispatcher.result = dispatcher.result, None
            self.busy = False
            self.after_handler()
            return True, result
        future: asyncio.Future[Any] = self.loop.create_future()
        self.finish_in_task(handed, yielded, future)
        return False, future

    def run_turn(self) -> None:
        """Handle queued messages (a turn); called in a context of the dispatcher's own.

        Every caller runs it in a fresh context (the dispatcher's callback, ``turn_now``), so
        the sender is set and never reset: the context ends with the turns it ran, and each
        turn sets its own. A reset (and its token) would cost as much again as the set.
        """
        self.scheduled = False
        if not self.runnable:
            return
        CURRENT_SENDER.set(self)  # sends made by the handlers come from this actor
        suspended = self._handle_queued(TURN_BUDGET)
        if self.put_waiters:  # the turn made room, even if its last handler suspended
            self._wake_putters()
        if suspended is not None:
            self.finish_in_task(*suspended)
            return
        if self.queue:
            if self.runnable and not self.scheduled:
                self.schedule()
        elif self.drained is not None and not self.busy:
            self._set_drained()

    def finish_in_task(
        self,
        coro: Coroutine[Any, Any, Any],
        yielded: Any,
        reply: asyncio.Future[Any] | None,
    ) -> None:
        """The handler suspended: finish it in a task; the actor is busy until then.

        The handler runs on in a copy of the context it started in (an inline asker's, or the
        dispatcher turn's), with its sends the actor's; the task's own context starts clean:
        the next messages it serves (see ``_finish``) never see an asker's context variables
        (its trace, or whatever it bound, e.g. a request id for its logs).
        """
        self.busy = True
        self.runnable = False
        handler_context = None
        if type(coro) is not InContext:  # a traced message's handler is wrapped already
            handler_context = contextvars.copy_context()
            handler_context.run(CURRENT_SENDER.set, self)  # an inline asker's may be current
        context = contextvars.Context()
        context.run(CURRENT_SENDER.set, self)  # the sends of the handlers it serves next
        self.running = coro
        self.task = self.loop.create_task(
            self._finish(coro, yielded, reply, handler_context),  # a generator-based coroutine
            context=context,
        )

    @types.coroutine
    def _finish(
        self,
        coro: Coroutine[Any, Any, Any],
        value: Any,
        reply: asyncio.Future[Any] | None,
        context: contextvars.Context | None,
    ) -> Generator[Any, Any, None]:
        """The coroutine of the actor's task while it is busy (see ``finish_in_task``).

        It drives the suspended handler itself, in ``context`` if given (a traced handler
        carries its own), yielding what the handler yields and throwing in what the task
        throws (cancellation), as ``yield from`` would.

        Then it serves the mailbox: while messages are queued it starts the next handler in
        this task's own context and finishes it with a real ``yield from`` (the handler's
        return costs no ``StopIteration`` in Python), without a new task. When the mailbox is
        empty it lingers one event-loop iteration before it lets the actor go idle: an asker
        that just got its answer usually asks again in that iteration, and its ask is then
        served here instead of costing a task of its own (creating, registering and freeing
        a task costs about as much as the rest of the ask). While it lingers the actor counts
        as busy, so asks are queued instead of run inline next to it.

        A handler that left a context variable bound in this task's context ends the serving:
        the next message is handled by a dispatcher turn, in a fresh context, so it never sees
        what the handler before it bound (one comparison of contexts per message: equal
        contexts that share their mapping compare in constant time).
        """
        # A bare yield (``asyncio.sleep(0)``) asks to be resumed at the next event-loop
        # iteration, and this task's first step *is* that iteration: resumed at once, not
        # yielded again (which would cost a second iteration).
        send_now = value is None
        if self.state is STOPPING:
            # stop(drain=False) came before this first step and left the cancelling to this
            # task (see _stop): cancelled at its first yield, the handler unwinds below.
            this = asyncio.current_task()
            assert this is not None
            this.cancel()
            send_now = False
        clean: contextvars.Context | None = None  # this task's context before it served
        driven = True  # the handler is driven step by step (its own context, or InContext)
        while True:
            try:
                if driven:
                    send: Callable[[Any], Any]
                    throw: Callable[[BaseException], Any]
                    close: Callable[[], Any]
                    if context is None:
                        send, throw, close = coro.send, coro.throw, coro.close
                    else:
                        run: Any = context.run
                        send = partial(run, coro.send)
                        throw = partial(run, coro.throw)
                        close = partial(run, coro.close)
                    if send_now:
                        send_now = False
                        value = send(None)
                    while value is not _DONE:  # (a plain coroutine's return: StopIteration)
                        try:
                            sent = yield value
                        except GeneratorExit:
                            close()
                            raise
                        except BaseException as exc:
                            value = throw(exc)
                        else:
                            value = send(sent)
                    # A runner's handler returned (see ``_runner``): the runner is free for
                    # the next handlers (unless wrapped: a traced message's).
                    dispatcher = self.dispatcher
                    result, dispatcher.result = dispatcher.result, None
                    runner: Any = coro
                    if type(runner) is types.GeneratorType:
                        dispatcher.free_runner(runner)
                else:
                    # Started in this task, in its context: give the task what the handler
                    # first yielded (a bare yield is resumed at the next iteration, as it
                    # asked), then let ``yield from`` drive the rest.
                    while True:
                        try:
                            yield value
                        except GeneratorExit:
                            coro.close()
                            raise
                        except BaseException as exc:
                            value = coro.throw(exc)
                        else:
                            break
                    result = yield from coro
            except StopIteration as stop:
                result = stop.value
            except asyncio.CancelledError as exc:
                self.busy = False
                self.task = None
                if self.state is STOPPING:  # stop(drain=False) cancelled the handler
                    if reply is not None and not reply.done():
                        reply.set_exception(ActorDeadError(f"{self.path} stopped", actor=self.path))
                    return
                self.fail(exc, reply)
                return
            except Exception as exc:
                self.busy = False
                self.task = None
                if self.fail(exc, reply):
                    self.after_handler()  # an ask's error was its answer: go on
                return
            if reply is not None:
                # No ``done()`` test first: a call less on every answer (a try costs nothing,
                # ``contextlib.suppress`` would cost two calls).
                try:  # noqa: SIM105
                    reply.set_result(result)
                except asyncio.InvalidStateError:
                    pass  # the asker gave up (its timeout, a cancellation)
            suspended = False
            budget = TURN_BUDGET  # messages handled without a yield (fairness, as a turn)
            queue = self.queue
            while True:  # serve the mailbox until a handler suspends, or let the actor go
                if self.state is not RUNNING or not self.dispatched:
                    break
                if clean is None:
                    clean = contextvars.copy_context()
                elif contextvars.copy_context() != clean:
                    break  # a handler left something bound here: a fresh turn goes on
                if not queue:
                    if self.drained is not None:
                        break
                    self.running = None  # no handler in progress (see handler_in_progress)
                    if self.put_waiters:  # room for them before this task yields
                        self._wake_putters()
                    try:
                        yield None  # linger (see above)
                    except BaseException:  # cancelled (a stop, the loop's shutdown) or closed
                        self.busy = False
                        self.task = None
                        self.after_handler()
                        raise
                    if self.state is not RUNNING or not queue:
                        break
                    budget = TURN_BUDGET
                if not budget:  # let other tasks run; a turn goes on
                    break
                budget -= 1
                # ``_handle_queued`` for one message, written out (this is every message of a
                # busy actor): a traced or not yet resolved one takes the general path.
                item = queue[0]
                if type(item) is Ask:
                    if item.context is None and item.origin is None:
                        message, reply = item.message, item.future
                        fn = self.cache.get(type(message))
                    else:
                        fn = None
                else:
                    message, reply = item, None
                    fn = self.cache.get(type(message))
                if fn is None:
                    handed = self._handle_queued(1)
                    if handed is not None:
                        coro, value, reply = handed
                        # A runner, or a traced message's handler (wrapped already), is driven
                        # step by step.
                        driven = type(coro) is not types.CoroutineType
                        context = None
                        suspended = True
                        break
                else:
                    queue.popleft()
                    self.processed += 1
                    try:
                        coro = fn(self.actor, message)
                        value = coro.send(None)
                    except StopIteration as stop:
                        if reply is not None and not reply.done():
                            reply.set_result(stop.value)
                        continue
                    except (Exception, asyncio.CancelledError) as exc:
                        self.fail(exc, reply)
                    else:
                        # The handler's own coroutine, finished by ``yield from``. (Flags,
                        # not a tuple of what suspended: 9 bytecodes less per message.)
                        driven = False
                        suspended = True
                        break
                if not self.is_running():  # a handler failed: supervision has it
                    self.busy = False
                    self.task = None
                    if self.put_waiters:
                        self._wake_putters()
                    return
            if self.put_waiters:  # room for them, whether a handler suspended or not
                self._wake_putters()
            if not suspended:
                break
            self.running = coro
        self.busy = False
        self.task = None
        self.after_handler()

    def after_handler(self) -> None:
        """A handler finished (inline or in a task): resume the mailbox."""
        if self.state is RUNNING:
            self.runnable = True
            if self.queue:
                if not self.scheduled:
                    self.schedule()
            elif self.drained is not None:
                self._set_drained()
        if self.put_waiters:
            self._wake_putters()

    def _set_drained(self) -> None:
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    # --- failures and supervision -----------------------------------------------------------

    def fail(
        self, exc: BaseException, reply: asyncio.Future[Any] | None, *, asked: bool = False
    ) -> bool:
        """A handler raised. Returns whether the actor goes on (the caller resumes its mailbox).

        An ``Exception`` from an ask's handler (``reply`` set, or ``asked`` when the asker gets
        it by other means) is that asker's answer, and the actor goes on as it was: its state is
        kept (the ``Resume`` rule, see the supervision module). Anything else suspends the actor
        and lets its supervisor decide.
        """
        self.failures += 1
        if reply is not None:
            asked = True
            if not reply.done():
                reply.set_exception(exc)
        if asked and isinstance(exc, Exception) and self.state is RUNNING:
            log.debug("actor.ask_failed", actor=self.path, error=repr(exc))
            return True
        if self.drained is not None:
            # A stop(drain=True) is waiting: it stops here; what is left is discarded.
            self._set_drained()
            return False
        if self.state in (STOPPING, STOPPED):
            return False
        self.state = SUSPENDED
        self.runnable = False
        self.system._spawn(self.supervise(exc))
        return False

    def strategy(self) -> Any:
        return self.parent.actor_class.supervision if self.parent else self.system.supervision

    async def supervise(self, exc: BaseException) -> None:
        # Its own task, outside any handler (the failed one's sender may be in the context it
        # was spawned from): on_failure and a restart's on_start see no sender.
        ORIGIN.set(None)
        actor = self.actor
        if actor is not None:
            try:
                await actor.on_failure(exc)
            except Exception:
                log.exception("on_failure raised", actor=self.path)
        strategy = self.strategy()
        try:
            directive = strategy.decider(exc)
        except Exception:
            log.exception("supervision decider raised; escalating", actor=self.path)
            directive = Directive.ESCALATE
        now = self.system.clock.now()
        if self.restart_times is None:
            self.restart_times = deque()
        restart_times = self.restart_times
        while restart_times and now - restart_times[0] > strategy.within:
            restart_times.popleft()
        if directive is Directive.RESTART and len(restart_times) >= strategy.max_restarts:
            directive = Directive.ESCALATE
        log.warning(
            "actor failed",
            actor=self.path,
            error=repr(exc),
            directive=directive.value,
            restarts=self.restarts,
        )
        record_signal(
            self,
            SignalKind.CRASHED,
            detail=f"{directive.value}: {exc!r}",
            error_type=type(exc).__qualname__,
            restarts=self.restarts,
        )
        siblings = (
            [c for c in self.parent.children.values() if c is not self]
            if self.parent and strategy.all_for_one
            else []
        )
        if directive is Directive.RESTART:
            delay = strategy.backoff.delay(len(restart_times))
            restart_times.append(now)
            for sibling in siblings:
                sibling.suspend()
            if delay > 0:
                await self.system.clock.sleep(delay)
            for cell in (self, *siblings):
                await cell.restart()
        elif directive is Directive.RESUME:
            self.resume()
        elif directive is Directive.STOP:
            self.dispatcher.watches.failed(self)  # its watchers learn it failed
            for cell in (self, *siblings):
                await cell.stop(drain=False)
        else:
            await self.escalate(exc)

    def resume(self) -> None:
        """Go on after a failure, with the same instance and state (``Directive.RESUME``)."""
        if self.state is SUSPENDED:
            self.state = RUNNING
            self.after_handler()

    def suspend(self) -> None:
        if self.state is RUNNING:
            self.state = SUSPENDED
            self.runnable = False

    async def escalate(self, exc: BaseException) -> None:
        parent = self.parent
        if parent is None:
            log.error("failure escalated to the system: stopping the actor", actor=self.path)
            self.dispatcher.watches.failed(self)
            await self.stop(drain=False)
            return
        error = EscalatedError(f"child {self.path} escalated {exc!r}", actor=parent.path)
        error.__cause__ = exc
        parent.fail(error, None)

    async def restart(self) -> None:
        if self.state in (STOPPING, STOPPED):
            return
        self.state = SUSPENDED
        self.runnable = False
        self.cancel_timers()
        if self.children:
            await asyncio.gather(*(c.stop(drain=False) for c in list(self.children.values())))
        old = self.actor
        if old is not None:
            try:
                await self.run_on_stop(old)
            except Exception:
                log.exception("on_stop raised during restart", actor=self.path)
        try:
            await self.create_instance()
        except Exception as exc:
            log.exception("restart failed in on_start", actor=self.path)
            self.fail(exc, None)
            return
        self.restarts += 1
        record_signal(self, SignalKind.RESTARTED, restarts=self.restarts)
        self.set_running()

    # --- stopping ---------------------------------------------------------------------------

    async def stop(self, drain: bool = True) -> int:
        """Stop the actor and its subtree; returns how many queued messages were discarded."""
        if self.stopping is not None:
            if not drain and self.drained is not None:
                self._set_drained()  # a discarding stop cuts a draining one short
            return await asyncio.shield(self.stopping)
        self.stopping = self.loop.create_future()
        try:
            discarded = await self._stop(drain)
        except BaseException as exc:
            self.stopping.set_exception(exc)
            raise
        self.stopping.set_result(discarded)
        return discarded

    def refuse_senders(self, error: ActorDeadError | None = None) -> None:
        """Take no more messages: senders waiting for room in the mailbox get ``error``.

        ``error`` defaults to an ``ActorDeadError``, made only if a sender waits. A cell must
        stop accepting through here: a sender left waiting would never be woken.
        """
        self.accepting = False
        waiters = self.put_waiters
        if not waiters:
            return
        self.put_waiters = ()
        if error is None:
            error = ActorDeadError(f"{self.path} is stopped", actor=self.path)
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(error)

    def discard_queue(self, error: ActorDeadError) -> int:
        """Drop every queued message, failing the asks among them with ``error``; the count."""
        discarded = 0
        while self.queue:
            item = self.queue.popleft()
            discarded += 1
            if type(item) is Ask and item.future is not None and not item.future.done():
                item.future.set_exception(error)
        self.dropped += discarded
        return discarded

    def take_queue(self) -> list[Any]:
        """Remove every queued message and return them untouched (oldest first).

        For a pool whose member stops unexpectedly: its queue goes to another member instead
        of being discarded (see ``_pool``). Asks keep their futures: whoever handles them
        answers their askers.
        """
        items = list(self.queue)
        self.queue.clear()
        if self.put_waiters:
            self._wake_putters()
        return items

    async def cut_short(self, reason: str) -> None:
        """A draining stop ran out of time: cancel the handler in progress, discard the rest.

        The handler is reported (an error log and the actor's STOPPED signal) with ``reason``.
        """
        if self.state is STOPPED:
            return
        if self.busy and (self.task is None or self.running is not None):  # not lingering
            handler = self.handler_in_progress()
            log.error("actor.handler_cancelled", actor=self.path, handler=handler, reason=reason)
            self.stop_note = f"cancelled its handler {handler} in progress: {reason}"
        await self.stop(drain=False)

    async def cancel_handlers(self) -> None:
        """Cancel the handler in progress (STOPPING) and wait for it to unwind.

        Its task answers the asker (``ActorDeadError``). A task not yet started (the handler
        suspended in this loop iteration) is left to cancel itself when it starts: cancelled
        now, it would never run ``_finish`` at all, and the handler would stay suspended and
        its asker unanswered forever.
        """
        task = self.task
        if task is not None:
            finish = cast("Generator[Any, Any, None]", task.get_coro())  # _finish's
            if inspect.getgeneratorstate(finish) != inspect.GEN_CREATED:
                task.cancel()
            # Wait for the handler to unwind without re-raising its cancellation here (a
            # cancellation of *this* caller still propagates).
            await asyncio.wait([task])

    def in_flight(self) -> int:
        """How many handler calls are in progress (started and not finished): 0 or 1 here."""
        return 1 if self.busy and (self.task is None or self.running is not None) else 0

    def stashed_count(self) -> int:
        """How many messages ``stash`` holds back (none: this cell has no stash)."""
        return 0

    def stash(self) -> None:
        """``Actor.stash``: only a ``TrackedCell`` has a stash; say how to get one."""
        raise self._no_stash()

    def unstash_all(self) -> int:
        """``Actor.unstash_all``: only a ``TrackedCell`` has a stash; say how to get one."""
        raise self._no_stash()

    def _no_stash(self) -> Exception:
        name = self.actor_class.__qualname__
        if self.actor_class.stashing:  # a stash class in a cell without one (run_actor's)
            return InvalidArgumentError(
                f"{name} declares stash=True, but it runs in a cell that steps messages one "
                "by one and has no stash (swarm_actors.testing.run_actor): test it with a "
                "real ActorSystem"
            )
        return InvalidArgumentError(
            f"{name} has no stash: declare it with `class {name}(Actor, stash=True)` to use "
            "self.stash() and self.unstash_all()"
        )

    def handler_in_progress(self) -> str:
        """The qualified name of the handler this actor is running, or ``"?"``."""
        coro = self.running if self.task is not None else None  # None: inline, in an asker
        return getattr(handler_of(coro), "__qualname__", "?")

    async def _stop(self, drain: bool) -> int:
        dead = ActorDeadError(f"{self.path} is stopped", actor=self.path)
        self.refuse_senders(dead)
        if drain and self.state is RUNNING and (self.queue or self.busy):
            self.drained = self.loop.create_future()
            await self.drained
        was = self.state
        self.state = STOPPING
        self.runnable = False
        discarded = self.discard_queue(dead)
        await self.cancel_handlers()
        self.cancel_timers()
        if self.children:
            await asyncio.gather(*(c.stop(drain) for c in list(self.children.values())))
        if self.actor is not None and was is not STARTING:
            try:
                await self.run_on_stop(self.actor)
            except Exception:
                log.exception("on_stop raised", actor=self.path)
        self.state = STOPPED
        self.system._unregister(self)
        self.dispatcher.watches.ended(self)  # its watchers get Terminated; its watches go
        detail = f"discarded {discarded} message(s)"
        if self.stop_note:
            detail = f"{detail}; {self.stop_note}"
        record_signal(self, SignalKind.STOPPED, detail=detail)
        return discarded


# --- actors that run several handlers at once, or stash --------------------------------------


class Call:
    """One handler call of a ``TrackedCell``, from its first step until it returns or raises.

    ``reply`` is the ask's answer (``None`` for a tell, and for an inline ask until the handler
    suspends or stashes: only then does the asker need a future). ``stashed``: the entry that
    ``stash`` took the message back in (the handler's return then answers nothing).
    ``retired``: a stop or a restart cancelled it (``None``: not), with the text of the
    ``ActorDeadError`` its asker gets.
    """

    __slots__ = (
        "asked",
        "context",
        "coro",
        "message",
        "origin",
        "reply",
        "retired",
        "stashed",
        "task",
    )

    def __init__(
        self,
        message: Any,
        reply: asyncio.Future[Any] | None,
        context: Any = None,
        asked: bool = False,
        origin: Any = None,
    ) -> None:
        self.message = message
        self.reply = reply
        self.context = context  # the sender's trace context, kept if the message is stashed
        self.origin = origin  # who sent it: ``self.sender`` (see ``_sender``), kept if stashed
        self.asked = asked or reply is not None
        # Once it suspends: the runner in the middle of its handler (see ``_runner``).
        self.coro: Coroutine[Any, Any, Any] | None = None
        self.task: asyncio.Task[None] | None = None
        self.stashed: Ask | None = None  # its entry in the stash, once stashed
        self.retired: str | None = None


CURRENT_CALL: contextvars.ContextVar[Call | None] = contextvars.ContextVar(
    "swarm_actors_call", default=None
)
"""The ``TrackedCell`` handler call running in this context (what ``stash`` defers)."""


class TrackedCell(Cell):
    """The cell of an actor class with ``max_concurrency > 1`` or ``stash=True``.

    Every handler call is tracked on its own (a ``Call``): it starts with a synchronous first
    step (in a dispatcher turn, or inline in an asker, like ``Cell``'s), and one that suspends
    is finished by a task of its own. Up to ``limit`` calls are in flight at once; handlers
    start in mailbox order, one first step after the other, and finish in any order. The
    actor is ``busy`` while any call is in flight and ``runnable`` while it is RUNNING with a
    free slot: a turn (or an inline ask, the mailbox being empty) then starts another call.

    This path costs more per message than ``Cell``'s (a ``Call``, a context variable, a task
    per suspending handler, no serving task that lingers), which is why plain actors keep
    ``Cell``: the classes that need it declare so.

    Failures: an ask's ``Exception`` is its answer and the other calls go on, as in ``Cell``.
    Any other failure suspends the actor (no call starts) while the calls already in flight go
    on; the supervisor's ``RESUME`` lets them be, a ``RESTART`` first cancels them (they
    belong to the old instance: their asks get ``ActorDeadError``), a stop cancels them too.

    The stash (``stash=True``) holds messages that ``Actor.stash`` took back, in their
    order, up to the mailbox's capacity; ``unstash_all`` puts them back in front of the
    mailbox, and so does a restart (the new instance sees them first). A stop discards them
    (their asks get ``ActorDeadError``), draining or not: nothing else would ever unstash them.
    """

    __slots__ = ("calls", "current", "deciding", "limit", "stash_limit", "stashed")

    stashes: ClassVar[bool] = True

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        actor_class = self.actor_class
        self.limit = actor_class.max_concurrency
        self.calls: dict[Call, None] = {}  # in flight (suspended), in the order they started
        self.current: Call | None = None  # the call whose first step runs now
        self.deciding = False  # a supervisor's decision about this actor is pending
        self.stashed: deque[Any] = deque()
        self.stash_limit = self.capacity if actor_class.stashing else 0

    def set_running(self) -> None:
        self.state = RUNNING
        self.runnable = self.dispatched and len(self.calls) < self.limit
        if self.queue and self.runnable and not self.scheduled:
            self.schedule()

    def after_handler(self) -> None:
        """A call finished (or the actor resumed): open a slot and start what is queued."""
        if self.state is RUNNING:
            self.runnable = self.dispatched and len(self.calls) < self.limit
            if self.queue:
                if self.runnable and not self.scheduled:
                    self.schedule()
            elif self.drained is not None and not self.calls:
                self._set_drained()
        if self.put_waiters:
            self._wake_putters()

    # --- starting and finishing calls -----------------------------------------------------

    def _first_step(self, fn: Callable[..., Any], call: Call) -> tuple[bool, Any]:
        """Run ``call``'s handler up to its first suspension, here, as this actor.

        The caller has made the actor not ``runnable`` meanwhile (an ask from the handler to
        this actor is queued, not run inline inside it). Returns ``(True, result)`` if it
        finished, ``(False, None)`` if it suspended (the call is in flight and a task of its
        own finishes it; an ask got its ``reply`` future), and raises what the handler raised.
        """
        previous = self.current
        self.current = call  # what ``stash`` defers, until the handler first suspends
        context = call.context
        if context is not None:
            attached = attach_context(context)
        # The call's sender: set for its first step, and copied with this context into the
        # task that finishes it (``_suspended``), so each call in flight keeps its own.
        bound = None if call.origin is None else ORIGIN.set((self, call.origin))
        dispatcher = self.dispatcher
        runner: Any = dispatcher.runner  # taken while the handler runs (see Cell._handle_queued)
        if runner is None:
            runner = dispatcher.new_runner()
        else:
            dispatcher.runner = None
        try:
            value = runner.send(fn(self.actor, call.message))  # (raised: the runner ended)
            if value is _DONE:
                dispatcher.runner = runner
                result, dispatcher.result = dispatcher.result, None
                return True, result
            self._suspended(call, runner, value)  # the runner goes on in the call's task
            return False, None
        finally:
            if bound is not None:
                ORIGIN.reset(bound)
            if context is not None:
                detach_context(attached)
            self.current = previous

    def _suspended(self, call: Call, coro: Coroutine[Any, Any, Any], value: Any) -> None:
        """``call``'s handler suspended: in flight from now on, finished by a task of its own."""
        self.calls[call] = None
        self.busy = True
        if call.asked and call.reply is None:
            call.reply = self.loop.create_future()
        call.coro = coro
        # The task goes on in a copy of this context (where the handler's sends are the
        # actor's and its trace is current), with the call bound for ``stash``.
        context = contextvars.copy_context()
        context.run(CURRENT_CALL.set, call)
        call.task = self.loop.create_task(self._drive(call, coro, value), context=context)

    def _leave(self, call: Call) -> None:
        calls = self.calls
        if calls.pop(call, False) is None:  # it was in flight
            self.busy = bool(calls)
            # The task's context holds the call (``CURRENT_CALL``): without this, the two
            # (and the call's ask, and its answer) would wait for the cyclic GC.
            call.task = None

    def _settle(self, call: Call, result: Any) -> None:
        """The handler returned ``result``: answer its ask (unless it stashed the message)."""
        self._leave(call)
        reply = call.reply
        if reply is not None and call.stashed is None and not reply.done():
            reply.set_result(result)

    def _fault(self, call: Call, exc: BaseException) -> bool:
        """The handler raised: its ask's answer, or a failure for the supervisor (``fail``).

        Raised after ``stash``, it still is the handler's failure, and the message leaves the
        stash (it is not handled twice, and its asker gets the error now). Returns whether
        the actor goes on.
        """
        self._leave(call)
        if call.stashed is not None:
            self._unstash_one(call)
        return self.fail(exc, call.reply, asked=call.asked)

    def fail(
        self, exc: BaseException, reply: asyncio.Future[Any] | None, *, asked: bool = False
    ) -> bool:
        """``Cell.fail``; a failure while a decision is pending is covered by that decision.

        (Another call in flight may fail while the supervisor decides about the first one:
        counted, answered if it was an ask, logged, and not supervised a second time.)
        """
        if self.deciding:
            self.failures += 1
            if reply is not None and not reply.done():
                reply.set_exception(exc)
            log.warning("actor.failed_while_suspended", actor=self.path, error=repr(exc))
            return False
        goes_on = super().fail(exc, reply, asked=asked)
        if self.state is SUSPENDED:
            self.deciding = True  # the supervisor was asked
        return goes_on

    def suspend(self) -> None:
        """``Cell.suspend`` (a sibling failed): a decision is pending for this actor too."""
        if self.state is RUNNING:
            self.deciding = True
        super().suspend()

    def resume(self) -> None:
        self.deciding = False
        super().resume()

    @types.coroutine
    def _drive(
        self, call: Call, coro: Coroutine[Any, Any, Any], first: Any
    ) -> Generator[Any, Any, None]:
        """The task of a call whose handler suspended: finish it, then answer and leave.

        ``coro`` is a runner (see ``_runner``) in the middle of the handler: driven step by
        step until it yields ``_DONE`` (the handler returned), throwing in what the task throws
        (cancellation), as ``yield from`` would; then it is free for the next handler.
        """
        value = first
        # A bare yield (``asyncio.sleep(0)``) asks to be resumed at the next event-loop
        # iteration, and this task's first step *is* that iteration: resumed at once, not
        # yielded again (which would cost a second iteration).
        send_now = value is None
        if call.retired is not None:
            # A stop or a restart came before this first step and left the cancelling to this
            # task (see ``cancel_handlers``): cancelled at its first yield, the handler unwinds.
            this = asyncio.current_task()
            assert this is not None
            this.cancel()
            send_now = False
        try:
            if send_now:
                value = coro.send(None)
            while value is not _DONE:
                try:
                    sent = yield value
                except GeneratorExit:
                    coro.close()
                    raise
                except BaseException as exc:
                    value = coro.throw(exc)
                else:
                    value = coro.send(sent)
        except asyncio.CancelledError as exc:
            if call.retired is None:  # not the engine's cancellation: a failure, as in Cell
                if self._fault(call, exc):
                    self.after_handler()
                return
            self._leave(call)
            reply = call.reply
            if reply is not None and call.stashed is None and not reply.done():
                reply.set_exception(ActorDeadError(call.retired, actor=self.path))
            return
        except Exception as exc:
            if self._fault(call, exc):
                self.after_handler()
            return
        dispatcher = self.dispatcher
        result, dispatcher.result = dispatcher.result, None
        dispatcher.free_runner(cast(Any, coro))  # the next first step may take it
        self._settle(call, result)
        self.after_handler()

    def run_turn(self) -> None:
        self.scheduled = False
        if not self.runnable:
            return
        self.runnable = False  # while first steps run here: an ask to itself is queued
        queue = self.queue
        calls = self.calls
        limit = self.limit
        budget = TURN_BUDGET
        token = CURRENT_SENDER.set(self)  # sends made by the handlers come from this actor
        try:
            while queue and budget and len(calls) < limit and self.state is RUNNING:
                budget -= 1
                item = queue.popleft()
                if type(item) is Ask:
                    call = Call(item.message, item.future, item.context, origin=item.origin)
                else:
                    call = Call(item, None)
                message = call.message
                fn = self.cache.get(type(message), _MISSING)
                if fn is _MISSING:
                    fn = self.resolve(type(message))
                self.processed += 1
                if fn is None:
                    self.unhandled(message, call.reply)
                    continue
                try:
                    done, result = self._first_step(fn, call)  # type: ignore[arg-type]
                except (Exception, asyncio.CancelledError) as exc:
                    self._fault(call, exc)
                    continue
                if done:
                    reply = call.reply
                    if reply is not None and call.stashed is None and not reply.done():
                        reply.set_result(result)
        finally:
            CURRENT_SENDER.reset(token)
        if self.put_waiters:
            self._wake_putters()
        if self.state is RUNNING:
            self.runnable = self.dispatched and len(calls) < limit
            if queue:
                if self.runnable and not self.scheduled:
                    self.schedule()
            elif self.drained is not None and not calls:
                self._set_drained()

    def ask_inline(self, message: Any, origin: Any = None) -> tuple[bool, Any]:
        """Start the call of an ask in the caller: a slot is free and the mailbox empty.

        As ``Cell.ask_inline``: ``(True, result)``, ``(False, future)`` when the handler
        suspended or stashed the message, or the handler's exception raised.
        """
        fn = self.cache.get(type(message), _MISSING)
        if fn is _MISSING:
            fn = self.resolve(type(message))
        self.processed += 1
        if fn is None:
            raise self.unhandled_error(message)
        self.runnable = False  # while its first step runs here (see run_turn)
        was_busy = self.busy
        self.busy = True
        token = CURRENT_SENDER.set(self)
        asker = token.old_value
        if asker is Token.MISSING:
            asker = None
        if asker is not None:
            asker.awaiting = self  # the handler, run here, may ask the asker back
        if asker is not None and origin is None:
            origin = asker if asker.virtual_id is None else origin_of(asker)
        call = Call(message, None, asked=True, origin=origin)
        try:
            done, result = self._first_step(fn, call)  # type: ignore[arg-type]
        except (Exception, asyncio.CancelledError) as exc:
            self.busy = was_busy or bool(self.calls)
            if self._fault(call, exc):  # the error is the asker's answer: the actor goes on
                self.after_handler()
            raise
        finally:
            CURRENT_SENDER.reset(token)
            if asker is not None:
                asker.awaiting = None
        self.busy = was_busy or bool(self.calls)
        self.after_handler()
        if not done or call.stashed is not None:
            return False, call.reply
        return True, result

    # --- stopping and restarting ----------------------------------------------------------

    async def cancel_handlers(self, reason: str = "") -> None:
        """Cancel every call in flight and wait for them to unwind.

        Their asks get ``ActorDeadError`` (with ``reason``, or saying that the actor stopped).
        """
        tasks = []
        for call in list(self.calls):
            call.retired = reason or f"{self.path} stopped"
            task = call.task
            if task is None:
                continue  # in its first step: a handler that stops its own actor
            tasks.append(task)
            if inspect.getgeneratorstate(task.get_coro()) != inspect.GEN_CREATED:  # type: ignore[arg-type]
                task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    async def restart(self) -> None:
        if self.state in (STOPPING, STOPPED):
            return
        self.state = SUSPENDED  # no call starts while the old instance's calls unwind
        self.runnable = False
        if self.calls:
            await self.cancel_handlers(
                f"{self.path} restarted after a failure: the call in progress was cancelled"
            )
        self._unstash_front()  # the new instance sees them first
        self.deciding = False  # carried out: a failure of the new instance is a new one
        await super().restart()

    def discard_queue(self, error: ActorDeadError) -> int:
        """``Cell.discard_queue``, and the stash with it."""
        discarded = super().discard_queue(error)
        stashed = self.stashed
        count = len(stashed)
        while stashed:
            item = stashed.popleft()
            if type(item) is Ask and item.future is not None and not item.future.done():
                item.future.set_exception(error)
        self.dropped += count
        return discarded + count

    # --- reporting ------------------------------------------------------------------------

    def in_flight(self) -> int:
        return len(self.calls)

    def handler_in_progress(self) -> str:
        """The qualified names of the handlers in flight, in the order they started."""
        names = []
        for call in self.calls:
            names.append(getattr(handler_of(call.coro), "__qualname__", "?"))
        return ", ".join(names) or "?"

    # --- the stash ------------------------------------------------------------------------

    def stashed_count(self) -> int:
        return len(self.stashed)

    def stash(self) -> None:
        """Take the message of the call running here back, to be handled after ``unstash_all``.

        Its ask stays unanswered (the asker keeps waiting, within its timeout); whatever the
        handler returns is dropped. Raises ``MailboxFullError`` when the stash holds as many
        messages as the mailbox can, and ``ActorDeadError`` once the actor is stopping.
        """
        if not self.stash_limit:
            raise self._no_stash()
        call = self.current
        if call is None:  # not in a first step: in the task of a call in flight, if any
            call = CURRENT_CALL.get()
            if call is not None and call not in self.calls:
                call = None
        if call is None:
            raise InvalidArgumentError(
                f"{self.actor_class.__qualname__}: self.stash() defers the message being "
                "handled, so call it in a handler of this actor (not in on_start, on_stop, "
                "or a task the handler made)"
            )
        if call.stashed is not None:
            return
        if self.state is STOPPING or self.state is STOPPED:
            raise ActorDeadError(
                f"{self.path} is stopping: nothing can be stashed", actor=self.path
            )
        if len(self.stashed) >= self.stash_limit:
            raise MailboxFullError(
                f"the stash of {self.path} is full ({self.stash_limit} messages): call "
                "self.unstash_all() before stashing more, or raise mailbox_size",
                actor=self.path,
                capacity=self.stash_limit,
            )
        if call.asked and call.reply is None:
            call.reply = self.loop.create_future()  # an inline ask: its asker waits on it now
        call.stashed = Ask(call.message, call.reply, call.context, call.origin)
        self.stashed.append(call.stashed)

    def unstash_all(self) -> int:
        """Put every stashed message back in front of the mailbox, in order; how many."""
        if not self.stash_limit:
            raise self._no_stash()
        count = self._unstash_front()
        if count and self.runnable and not self.scheduled:
            self.schedule()
        return count

    def _unstash_front(self) -> int:
        stashed = self.stashed
        count = len(stashed)
        if count:
            self.queue.extendleft(reversed(stashed))
            stashed.clear()
        return count

    def _unstash_one(self, call: Call) -> None:
        """The handler of a stashed message raised: the message leaves the stash."""
        entry = call.stashed
        if entry is not None and entry in self.stashed:
            self.stashed.remove(entry)


def cell_class_for(actor_class: type[Actor]) -> type[Cell]:
    """The cell an actor class runs in: ``TrackedCell`` if it asks for concurrency or a stash."""
    if actor_class.max_concurrency > 1 or actor_class.stashing:
        return TrackedCell
    return Cell
