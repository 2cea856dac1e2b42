"""Virtual actors: addressable whether or not they are running.

``system.virtual(Session, "user-42")`` returns a ``VirtualRef`` at once. The first message
*activates* the actor: a fresh instance is built, its last state (if it was ever passivated) is
decoded and handed to ``restore``, ``on_start`` runs, and the message is delivered. An idle actor
is *passivated*: it stops (draining its mailbox), its ``snapshot()`` is encoded with msgspec
msgpack and kept as a compress token in the Rust ``AgentTree``. Passivation happens when the
number of active virtual actors passes ``Passivation.max_active`` (least recently used first,
through the tree's O(1) LRU) or when an actor handled nothing for ``Passivation.idle_after``
seconds.

A placed actor (``attach_placer``) keeps its state in the placer's store: once it is
passivated and that state is written, the placer calls ``release`` and everything this registry
kept for its key goes (its agent, key, class, ledger), so that a node reached by many distinct
keys holds memory for its active actors only. The next message reads the state back (one store
read per reactivation). Senders that hold the agent across a wait ``pin`` it meanwhile.

Guarantees: at most one activation per key at any time (concurrent first messages share one
activation); a message that arrives while its actor is being passivated, or whose sender was
waiting for room in the mailbox when the passivation began, waits for the passivation to
finish and then reactivates it: nothing is lost.

``system.batch_spawn(Worker, depth=4, branching=32)`` describes 1,082,400 virtual actors
(1,048,576 leaves) in constant time; ``batch[i]`` is the ref of leaf ``i``.

Both transitions have a synchronous fast path: when ``on_start`` / ``on_stop`` do not suspend
and the actor has no queued messages, children or running handler, activation and passivation
create no task and no future.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import typing
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import msgspec

from swarm_actors._config import DEFAULT, Timeout
from swarm_actors._core._actor import Actor
from swarm_actors._core._capability import CURRENT_SENDER, check_send, checks_sends, current_sender
from swarm_actors._core._cell import RUNNING, Cell, _Resume, cell_class_for
from swarm_actors._core._recorder import Ledger, record_signal
from swarm_actors._core._ref import _check_timeout, _traced, with_origin
from swarm_actors._events._schema import SignalKind
from swarm_actors._exceptions import ActorDeadError, SystemStoppedError
from swarm_actors._log import get_logger
from swarm_actors._tuplecore import AgentTree, BatchInfo

if TYPE_CHECKING:
    from swarm_actors._core._contract import Placer, Ref, RefForm, WireNode
    from swarm_actors._system import ActorSystem

__all__ = ["VirtualBatch", "VirtualRef", "VirtualStats"]

A = TypeVar("A", bound="Actor")

log = get_logger("swarm_actors")

_STATE_DECODERS: dict[type, msgspec.msgpack.Decoder[Any]] = {}
_STATE_ENCODER = msgspec.msgpack.Encoder()
_BASE_ON_START = Actor.on_start
_BASE_ON_STOP = Actor.on_stop
_new_ref = object.__new__
_NO_KWARGS: dict[str, Any] = {}  # a virtual actor's constructor arguments; only ever read

PASSIVATION_BATCH = 64
"""Most actors passivated at once when ``max_active`` is passed (see ``_enforce_limit``).

Small on purpose: a passivation frees about three GC-tracked objects (cell, mailbox, instance),
and CPython's young-generation counter (allocations minus frees, collecting at 700) never goes
below zero: a burst of frees larger than its value is partly lost. With 256 at once the
counter crept up by ~4 per activation: a young collection every ~170 activations, promoting
every live actor to the old generation and triggering full collections, about a third of the
million-actor run. 64 (~200 frees) keeps the counter flat.
"""


def _state_decoder(actor_class: type) -> msgspec.msgpack.Decoder[Any]:
    """A decoder into the annotation of ``restore``'s parameter, cached per class."""
    try:
        return _STATE_DECODERS[actor_class]
    except KeyError:
        pass
    hint: Any = Any
    fn = actor_class.restore  # type: ignore[attr-defined]
    params = list(inspect.signature(fn).parameters.values())
    if len(params) == 2:
        hint = typing.get_type_hints(fn).get(params[1].name, Any)
    decoder = _STATE_DECODERS[actor_class] = msgspec.msgpack.Decoder(hint)
    return decoder


def _drive(coro: Coroutine[Any, Any, Any]) -> tuple[bool, Any]:
    """Run a coroutine until it first suspends: ``(True, result)`` or ``(False, yielded)``."""
    try:
        return False, coro.send(None)
    except StopIteration as stop:
        return True, stop.value


class VirtualStats(msgspec.Struct, frozen=True):
    """Counters of the virtual-actor registry."""

    active: int
    """Virtual actors running now."""
    activations: int
    """Activations so far."""
    passivations: int
    """Passivations so far."""
    known: int
    """Agents in the hierarchy (virtual, active and passivated)."""


class VirtualRegistry:
    """Keeps the ``AgentTree`` and the running cells of an ``ActorSystem``'s virtual actors."""

    def __init__(
        self,
        system: ActorSystem,
        *,
        max_active: int | None,
        passivate_after: float | None,
        virtual_signals: bool = False,
    ) -> None:
        self.system = system
        self.tree = AgentTree()
        self.max_active = max_active
        self.closed = False  # the system is stopping or stopped: no more activations
        self._cell_classes: dict[type[Actor], type[Cell]] = {}
        self.passivate_after = passivate_after
        self.cells: dict[int, Cell] = {}
        self.classes: dict[int, type[Actor]] = {}  # spawned (keyed) agents
        self.batches: list[tuple[BatchInfo, type[Actor]]] = []
        self.keys: dict[tuple[type, str], int] = {}
        self.transitions: dict[int, asyncio.Future[None]] = {}
        self.activations = 0
        self.passivations = 0
        self._sweep_marks: dict[int, int] = {}
        self._sweeping = False
        self._queued: set[int] = set()  # passivations handed to a task, not yet started
        self.virtual_signals = virtual_signals
        # Event ledgers of passivated agents that recorded events (sequence and chain head
        # must survive passivation); agents that never record are not in it.
        self.ledgers: dict[int, Ledger] = {}
        # Across nodes (``attach_placer``): agents placed on shards, and those whose state must
        # be read from the placer's store before they next activate.
        self.cluster: Placer | None = None
        self.placed: dict[int, Any] = {}
        self.fetch_first: set[int] = set()
        # Placed agents a sender holds across a wait (see ``pin``): never released meanwhile.
        self._pins: dict[int, int] = {}

    # --- the cluster ------------------------------------------------------------------------

    def attach_placer(self, placer: Placer) -> None:
        """Let ``placer`` (the cluster) rule the agents marked with ``place``."""
        self.cluster = placer

    def place(self, agent: int, ref: object) -> None:
        """Mark ``agent`` as placed (``ref``: its placed ref).

        Before it activates here, the placer is asked whether this node owns it, and for the
        state it was last left with.
        """
        self.placed[agent] = ref
        self.fetch_first.add(agent)

    def pin(self, agent: int) -> bool:
        """Keep placed ``agent`` from being released until ``unpin``; ``False``: not placed.

        A sender that holds an agent id across a wait (activation, a full mailbox, a
        passivation) pins it: released meanwhile, its id would name no agent any more.
        """
        if agent not in self.placed:
            return False
        self._pins[agent] = self._pins.get(agent, 0) + 1
        return True

    def unpin(self, agent: int) -> None:
        """End a ``pin``; the last one lets the placer release the agent if it is idle."""
        count = self._pins[agent] - 1
        if count:
            self._pins[agent] = count
            return
        del self._pins[agent]
        if self.cluster is not None and agent not in self.cells:
            self.cluster.release_soon(agent)

    def releasable(self, agent: int) -> bool:
        """Whether placed ``agent`` is passivated and idle: nothing here refers to it."""
        return (
            agent in self.placed
            and agent not in self.cells
            and agent not in self.transitions
            and agent not in self._queued
            and agent not in self._pins
            and self.tree.status(agent) == "compressed"
        )

    def release(self, agent: int, ident: str) -> None:
        """Forget the passivated, idle placed ``agent`` of key ``ident`` (see ``releasable``).

        Its state is in the placer's store: its key, class, ledger and agent go, and the next
        message to its key binds a new agent, which reads the state from the store first. The
        ledger goes too (as when the actor moves to another node, its chain starts again).
        """
        del self.placed[agent]
        self.fetch_first.discard(agent)
        actor_class = self.classes.pop(agent)
        del self.keys[(actor_class, ident)]
        self.ledgers.pop(agent, None)
        self._sweep_marks.pop(agent, None)
        self.tree.forget(agent)

    def refetch(self, agent: int) -> None:
        """Read placed ``agent``'s state from the placer again before it next activates here.

        Another node may run it meanwhile: the state this node kept may be stale.
        """
        self.fetch_first.add(agent)

    # --- addressing -------------------------------------------------------------------------

    def ref(self, actor_class: type[A], key: str, ident: str | None = None) -> VirtualRef[A]:
        """The ref of ``actor_class`` / ``key``; ``ident`` (default ``key``) tells keys apart."""
        if not isinstance(key, str) or not key:
            raise TypeError(f"a virtual actor key must be a non-empty str, got {key!r}")
        ident = key if ident is None else ident
        agent = self.keys.get((actor_class, ident))
        if agent is None:
            agent = self.tree.spawn(self.tree.root, actor_class.__qualname__)
            self.keys[(actor_class, ident)] = agent
            self.classes[agent] = actor_class
            # A spawned agent starts active in the tree; it has no state yet, so record it as
            # passivated with an empty token until its first message.
            self.tree.compress(agent, b"")
        return VirtualRef(self, actor_class, agent, key)

    def batch(self, actor_class: type[A], depth: int, branching: int) -> VirtualBatch[A]:
        info = self.tree.batch_spawn(self.tree.root, actor_class.__qualname__, depth, branching)
        self.batches.append((info, actor_class))
        return VirtualBatch(self, actor_class, info)

    # --- activation -------------------------------------------------------------------------

    async def ensure_active(self, agent: int, actor_class: type[Actor], key: Any) -> Cell:
        while True:
            cell = self.cells.get(agent)
            if cell is not None and cell.accepting:
                return cell
            pending = self.transitions.get(agent)
            if pending is not None:
                await asyncio.shield(pending)
                continue
            if self.placed and agent in self.placed:
                assert self.cluster is not None
                self.cluster.check_owner(agent)  # NotOwnerError: another node runs it now
                if agent in self.fetch_first:
                    await self._fetch(agent)
                    continue
            return await self._activate(agent, actor_class, key)

    async def _fetch(self, agent: int) -> None:
        """Load the actor's state from the cluster's store (it may have run on another node)."""
        assert self.cluster is not None
        done: asyncio.Future[None] = self.system._loop.create_future()  # type: ignore[union-attr]
        self.transitions[agent] = done
        try:
            data = await self.cluster.fetch(agent)
            if self.tree.status(agent) == "compressed":
                self.tree.restore(agent)  # the local token is stale: replace it
            self.tree.compress(agent, data or b"")
            self.fetch_first.discard(agent)
        finally:
            del self.transitions[agent]
            done.set_result(None)

    async def _activate(self, agent: int, actor_class: type[Actor], key: Any) -> Cell:
        if self.closed:
            raise self._stopped_error(actor_class, key)
        data = self.tree.activate(agent)  # restored if compressed, else materialized / touched
        cell = self._build(agent, actor_class, key, data)
        if actor_class.on_start is not _BASE_ON_START:
            done: asyncio.Future[None] | None = None
            previous = CURRENT_SENDER.get()  # set back, not reset: see Cell.create_instance
            CURRENT_SENDER.set(cell)  # its sends are checked as its own
            try:
                start = cell.actor.on_start()  # type: ignore[union-attr]
                finished, value = _drive(start)
                if not finished:
                    # on_start suspends: other messages must wait for this activation.
                    done = self.system._loop.create_future()  # type: ignore[union-attr]
                    self.transitions[agent] = done
                    await _Resume(start, value)
            except BaseException:
                self._give_back(agent, data)
                if cell.ledger is not None:
                    self.ledgers[agent] = cell.ledger
                raise
            finally:
                CURRENT_SENDER.set(previous)
                if done is not None:
                    del self.transitions[agent]
                    done.set_result(None)
        return self._activated(agent, cell)

    def activate_now(self, agent: int, actor_class: type[Actor], key: Any) -> Cell | None:
        """Activate without waiting when possible (default ``on_start``, no transition)."""
        if (
            agent in self.transitions
            or actor_class.on_start is not _BASE_ON_START
            or (self.placed and agent in self.placed)
        ):
            return None
        if self.closed:
            raise self._stopped_error(actor_class, key)
        data = self.tree.activate(agent)  # restored if compressed, else materialized / touched
        return self._running(agent, self._build(agent, actor_class, key, data))

    def _stopped_error(self, actor_class: type[Actor], key: Any) -> SystemStoppedError:
        return SystemStoppedError(
            f"cannot activate {actor_class.__qualname__}:{key}: the ActorSystem is stopped"
        )

    def _build(self, agent: int, actor_class: type[Actor], key: Any, data: bytes | None) -> Cell:
        """Make the cell and instance of ``agent`` with its state ``data`` restored (not started).

        The caller made the agent active in the tree (``data``: its token's, ``None`` if it had
        none), so it is the most recently used one; on failure the token is given back.
        """
        try:
            cell_class = self._cell_classes.get(actor_class)
            if cell_class is None:
                cell_class = self._cell_classes[actor_class] = cell_class_for(actor_class)
            cell = cell_class(self.system, actor_class, (), _NO_KWARGS, None, None)
            actor = cell.install(key, agent)
            if data:
                decoder = _STATE_DECODERS.get(actor_class) or _state_decoder(actor_class)
                actor.restore(decoder.decode(data))
        except BaseException:
            self._give_back(agent, data)
            raise
        if self.ledgers:
            cell.ledger = self.ledgers.pop(agent, None)
        return cell

    def _give_back(self, agent: int, data: bytes | None) -> None:
        """Activation failed: the actor keeps the state (token) it was activated from.

        One that had none is left compressed with an empty token, which activates the same
        way (the tree made it active already, and no running actor stands behind it).
        """
        if self.tree.status(agent) == "active":
            self.tree.compress(agent, b"" if data is None else data)

    def _activated(self, agent: int, cell: Cell) -> Cell:
        # The most recently used now, not when its state was restored (``on_start`` may have
        # waited since): the limit below must not pick the actor being activated.
        self.tree.touch(agent)
        return self._running(agent, cell)

    def _running(self, agent: int, cell: Cell) -> Cell:
        """``cell`` (the most recently used agent in the tree) runs now; enforce the limits."""
        cells = self.cells
        cells[agent] = cell
        self.activations += 1
        cell.set_running()
        if self.virtual_signals:
            record_signal(cell, SignalKind.ACTIVATED)
        max_active = self.max_active
        if max_active is not None and len(cells) > max_active:
            self._enforce_limit()
        if self.passivate_after is not None and not self._sweeping:
            self._sweeping = True
            self.system.clock.call_later(self.passivate_after, self._sweep)
        return cell

    def ref_of(self, cell: Cell) -> Any:
        """The ref that reaches the virtual actor of ``cell``: its ``PlacedRef`` or ``VirtualRef``.

        What a message it sends remembers as its sender (see ``_sender``): an activation may
        be passivated before the reply comes, the virtual actor is still there.
        """
        agent = cell.virtual_id
        assert agent is not None
        placed = self.placed.get(agent)
        if placed is not None:
            return placed
        actor = cell.actor
        return VirtualRef(self, cell.actor_class, agent, agent if actor is None else actor.key)

    def forget(self, cell: Cell) -> None:
        """A virtual actor's cell stopped (passivation or supervision)."""
        agent = cell.virtual_id
        if agent is not None and self.cells.get(agent) is cell:
            del self.cells[agent]

    # --- passivation ------------------------------------------------------------------------

    def _enforce_limit(self) -> None:
        """More than ``max_active`` run: passivate the least recently used.

        A small batch beyond the one that must go (1/64 of ``max_active``, at most
        ``PASSIVATION_BATCH``) goes at once, so the next activations need not prune at all.
        """
        max_active = self.max_active
        if max_active is None or len(self.cells) <= max_active:
            return
        keep = max_active - min(max_active // 64, PASSIVATION_BATCH)
        # The tree counts its root as active; ask for keep + 1 to keep ``keep`` actors.
        # ``passivate_soon`` inlined: this loop runs once per passivation.
        transitions, queued, cells = self.transitions, self._queued, self.cells
        for agent in self.tree.prune(keep + 1):
            if agent in transitions or agent in queued:
                continue
            cell = cells.get(agent)
            if cell is None:
                self.passivate_soon(agent)
            elif not self._passivate_sync(agent, cell):
                self._passivate_later(agent)

    def passivate_soon(self, agent: int) -> None:
        """Passivate now if the actor is idle and simple; otherwise in a task."""
        if agent in self.transitions or agent in self._queued:
            return
        cell = self.cells.get(agent)
        if cell is None:
            if self.tree.status(agent) == "active":
                self.tree.compress(agent, b"")
            return
        if not self._passivate_sync(agent, cell):
            self._passivate_later(agent)

    def _passivate_later(self, agent: int) -> None:
        self._queued.add(agent)
        self.system._spawn(self.passivate(agent))

    def _passivate_sync(self, agent: int, cell: Cell) -> bool:
        if cell.queue and cell.runnable:
            # Drain what is queued in one turn under the actor's own guard (handlers that do
            # not suspend finish here); whatever remains goes the asynchronous way.
            cell.turn_now()
        if (
            cell.queue
            or cell.busy
            or (cell.stashes and cell.stashed_count())  # passivated, its stash would be lost
            or cell.children
            or cell.state is not RUNNING
        ):
            return False
        if cell.actor_class.on_stop is _BASE_ON_STOP:
            # Nothing runs between the decision and the seal: ``seal`` itself refuses the
            # senders waiting for room, as ``begin_passivation`` would.
            self._seal(agent, cell)
            return True
        actor = cell.actor
        assert actor is not None
        # From here on senders wait for this passivation (and then reactivate): nothing can
        # slip into a mailbox that is about to be sealed. Senders already waiting for room are
        # refused and go round the same way: the turn above woke only as many of them as it
        # made room for, and no later turn would wake the others.
        cell.begin_passivation()
        coro = actor.on_stop()
        token = CURRENT_SENDER.set(cell)
        try:
            finished, value = _drive(coro)
        except Exception:
            log.exception("on_stop raised during passivation", actor=cell.path)
            finished, value = True, None
        finally:
            CURRENT_SENDER.reset(token)
        if not finished:
            done: asyncio.Future[None] = self.system._loop.create_future()  # type: ignore[union-attr]
            self.transitions[agent] = done
            task = self.system._spawn(self._finish_passivation(agent, cell, coro, value, done))
            task.add_done_callback(functools.partial(self._abandoned, agent, cell, coro, done))
            return True
        self._seal(agent, cell)
        return True

    async def _finish_passivation(
        self,
        agent: int,
        cell: Cell,
        coro: Coroutine[Any, Any, Any],
        yielded: Any,
        done: asyncio.Future[None],
    ) -> None:
        CURRENT_SENDER.set(cell)  # a task of its own: its context only ever runs this actor
        try:
            try:
                await _Resume(coro, yielded)
            except Exception:
                log.exception("on_stop raised during passivation", actor=cell.path)
            finally:
                # Cancelled too (stop_all cancels pending tasks): on_stop is cut short, but the
                # actor is sealed all the same. Unsealed, it would lose its state and its agent
                # would stay active in the tree with no running actor.
                self._seal(agent, cell)
        finally:
            del self.transitions[agent]
            done.set_result(None)

    def _abandoned(
        self,
        agent: int,
        cell: Cell,
        coro: Coroutine[Any, Any, Any],
        done: asyncio.Future[None],
        task: asyncio.Task[None],
    ) -> None:
        """End a passivation whose ``_finish_passivation`` task never ran.

        ``stop_all`` cancels pending tasks, and a task cancelled before its first step never
        runs its coroutine: without this, the transition would never end and every message to
        the actor (and ``passivate``) would wait for it forever. Ends it as a cancelled
        ``_finish_passivation`` does: on_stop cut short, the actor sealed.
        """
        if done.done():  # _finish_passivation ran and ended the transition
            return
        token = CURRENT_SENDER.set(cell)
        try:
            coro.close()  # on_stop never resumed: unwind it now (its finally blocks run)
        except Exception:
            log.exception("on_stop raised during passivation", actor=cell.path)
        finally:
            CURRENT_SENDER.reset(token)
        try:
            self._seal(agent, cell)
        finally:
            del self.transitions[agent]
            done.set_result(None)

    def _seal(self, agent: int, cell: Cell) -> None:
        """Stop the cell for good and keep its snapshot as a compress token."""
        actor = cell.seal()
        try:
            state = actor.snapshot()
            data = b"" if state is None else _STATE_ENCODER.encode(state)
        except Exception:
            log.exception("snapshot failed; the actor's state is lost", actor=cell.path)
            data = b""
        self.tree.compress(agent, data)
        if self.placed and agent in self.placed:
            assert self.cluster is not None
            self.cluster.on_seal(agent, data)
        cells = self.cells
        if cells.get(agent) is cell:
            del cells[agent]
        self.passivations += 1
        if self.virtual_signals:
            record_signal(cell, SignalKind.PASSIVATED)
        if cell.ledger is not None:
            self.ledgers[agent] = cell.ledger

    async def passivate(self, agent: int) -> None:
        """Passivate ``agent`` (draining its mailbox first); no-op if it is not running."""
        self._queued.discard(agent)
        while agent in self.transitions:
            await asyncio.shield(self.transitions[agent])
        cell = self.cells.get(agent)
        if cell is None or not cell.accepting:
            return
        if self._passivate_sync(agent, cell):
            while agent in self.transitions:  # on_stop suspended: wait for the seal
                await asyncio.shield(self.transitions[agent])
            return
        done: asyncio.Future[None] = self.system._loop.create_future()  # type: ignore[union-attr]
        self.transitions[agent] = done
        try:
            await cell.stop(drain=True)  # runs on_stop; new messages wait for `done`
            self._seal(agent, cell)
        finally:
            del self.transitions[agent]
            done.set_result(None)

    def _sweep(self) -> None:
        """Passivate actors that handled nothing since the previous sweep."""
        marks = {}
        for agent, cell in list(self.cells.items()):
            if (
                self._sweep_marks.get(agent) == cell.processed
                and not cell.queue
                and not cell.busy
                and not cell.stashed_count()
            ):
                self.passivate_soon(agent)
            else:
                marks[agent] = cell.processed
        self._sweep_marks = marks
        if self.cells and self.passivate_after is not None:
            self.system.clock.call_later(self.passivate_after, self._sweep)
        else:
            self._sweeping = False

    def stats(self) -> VirtualStats:
        return VirtualStats(
            active=len(self.cells),
            activations=self.activations,
            passivations=self.passivations,
            known=len(self.tree) - 1,
        )

    def close(self) -> None:
        """The system is stopping: activations are refused from now on."""
        self.closed = True

    async def passivate_all(self) -> None:
        for agent in list(self.cells):
            await self.passivate(agent)


class VirtualRef(Generic[A]):
    """A reference to a virtual actor: messages activate it on demand.

    A ``Ref``, as ``ActorRef`` is: ``tell``, ``tell_nowait`` (raises ``MailboxFullError`` /
    ``ActorDeadError``, and refuses to activate: use ``tell`` for a passivated actor), ``ask``.
    It reaches an actor of this process only: it cannot be sent to another one.
    """

    __slots__ = ("_agent", "_class", "_key", "_registry")

    def __init__(self, registry: VirtualRegistry, actor_class: type[A], agent: int, key: Any):
        self._registry = registry
        self._class = actor_class
        self._agent = agent
        self._key = key

    @property
    def key(self) -> Any:
        """The key: the string given to ``system.virtual``, or the agent id of a batch member."""
        return self._key

    @property
    def agent_id(self) -> int:
        """Id of the actor in the system's ``AgentTree``."""
        return self._agent

    @property
    def is_active(self) -> bool:
        """Whether the actor is running now."""
        cell = self._registry.cells.get(self._agent)
        return cell is not None and cell.accepting

    @property
    def path(self) -> str:
        """The actor's path, as its cell has it when active: ``/Class:key``."""
        return f"/{self._class.__qualname__}:{self._key}"

    @property
    def is_alive(self) -> bool:
        """Whether a message can reach the actor: until its system stops (it activates)."""
        return not self._registry.system.stopped

    async def tell(self, message: Any, reply_to: Ref[Any] | None = None) -> None:
        """Send ``message``, activating the actor if needed; waits while its mailbox is full.

        Raises ``MessageCapabilityError`` (sending nothing) if the sending actor's
        ``may_message`` does not include this one. ``reply_to``: as for ``ActorRef.tell``.
        """
        registry = self._registry
        sender = current_sender()
        if sender is not None:
            if sender.grant is not None:
                self._check_send()
            message = with_origin(message, sender, reply_to)
        elif reply_to is not None:
            message = with_origin(message, None, reply_to)
        if (
            registry.system._tracer is not None
            and (context := registry.system._dispatcher.traces.sampled()) is not None
        ):
            message = _traced(message, context)
        agent = self._agent
        cell = registry.cells.get(agent)
        if cell is not None and cell.post(message):
            registry.tree.touch(agent)
            return
        if cell is None and (cell := registry.activate_now(agent, self._class, self._key)):
            cell.post(message)  # a fresh mailbox takes it; activation made it the most recent
            return
        pinned = bool(registry.placed) and registry.pin(agent)  # held across the waits below
        try:
            while True:
                cell = await registry.ensure_active(agent, self._class, self._key)
                registry.tree.touch(agent)
                try:
                    await cell.put(message)
                    return
                except ActorDeadError:
                    continue  # passivated between activation and delivery: go round again
        finally:
            if pinned:
                registry.unpin(agent)

    def tell_nowait(self, message: Any, reply_to: Ref[Any] | None = None) -> None:
        """Send to a running actor without waiting; raises ``ActorDeadError`` if not running."""
        sender = current_sender()
        if sender is not None and sender.grant is not None:
            self._check_send()
        cell = self._registry.cells.get(self._agent)
        if cell is None:
            raise ActorDeadError(f"virtual actor {self._key!r} is not active; use tell()")
        self._registry.tree.touch(self._agent)
        message = with_origin(message, sender, reply_to)
        if cell.tracer is not None and (context := cell.dispatcher.traces.sampled()) is not None:
            message = _traced(message, context)
        cell.enqueue_nowait(message)

    async def ask(self, message: Any, *, timeout: Timeout = DEFAULT) -> Any:
        """Send ``message`` and return the reply, activating the actor if needed.

        ``timeout`` defaults to the system's ``Timeouts.ask``; ``None`` waits without limit.
        It covers everything: an activation, the wait for room in a full mailbox, the answer.
        """
        _check_timeout(timeout)
        if checks_sends():
            self._check_send()
        registry = self._registry
        agent = self._agent
        deadline: float | None = None
        pinned = False  # a placed agent held across a wait (activation, room) is pinned
        try:
            while True:
                cell = registry.cells.get(agent)
                if cell is None or not cell.accepting:
                    pinned = pinned or bool(registry.placed and registry.pin(agent))
                    cell = await registry.ensure_active(agent, self._class, self._key)
                if len(cell.queue) >= cell.capacity:
                    pinned = pinned or bool(registry.placed and registry.pin(agent))
                    # Wait for room here, not inside the ask, where a refusal could not be told
                    # from a reply: if a passivation begins meanwhile, the mailbox refuses the
                    # message before it is enqueued, and it goes round to the next activation (as
                    # in ``tell``).
                    if timeout is DEFAULT:
                        timeout = registry.system.timeouts.ask
                    if deadline is None and timeout is not None:
                        deadline = cell.loop.time() + timeout
                    try:
                        async with asyncio.timeout_at(deadline):
                            await cell.room()
                    except ActorDeadError:
                        pass  # passivating: the next activation gets it
                    except TimeoutError:
                        raise TimeoutError(
                            f"ask to {cell.path} found the mailbox full for {timeout:g} s "
                            "(nothing was sent)"
                        ) from None
                    continue
                if deadline is not None:  # waited for room: the rest of the time for the answer
                    timeout = max(deadline - cell.loop.time(), 1e-9)
                registry.tree.touch(agent)
                # With room, the ask enqueues the message (or runs its handler inline) before it
                # first suspends, so nothing can refuse it: an ``ActorDeadError`` from here on means
                # the delivered message was dropped or its handler cancelled (a stop that did not
                # drain). It is not resent: it may have been partly handled.
                return await cell.ref.ask(message, timeout=timeout)
        finally:
            if pinned:
                registry.unpin(agent)

    def _check_send(self) -> None:
        check_send(self._class, f"/{self._class.__qualname__}:{self._key}")

    async def passivate(self) -> None:
        """Passivate the actor now (no-op if it is not running)."""
        await self._registry.passivate(self._agent)

    def __repr__(self) -> str:
        return f"<VirtualRef {self._class.__qualname__}:{self._key!r}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VirtualRef) and other._agent == self._agent

    def __hash__(self) -> int:
        return hash(("virtual", self._agent))

    def __swarm_wire__(self, node: WireNode) -> RefForm:
        """Refused (``TypeError``): a local virtual actor is not reachable from elsewhere."""
        raise TypeError("refs to local virtual actors cannot be sent to another process")


class VirtualBatch(Generic[A]):
    """A lazily described subtree of virtual actors (see ``ActorSystem.batch_spawn``)."""

    __slots__ = ("_class", "_info", "_leaf_first", "_leaves", "_registry")

    def __init__(self, registry: VirtualRegistry, actor_class: type[A], info: BatchInfo):
        self._registry = registry
        self._class = actor_class
        self._info = info
        # Kept as ints: each ``info`` attribute is a call into the Rust object.
        self._leaves = info.leaves
        self._leaf_first = info.leaf_first_id

    @property
    def info(self) -> BatchInfo:
        """The batch as the agent tree describes it (ids, depth, branching, counts)."""
        return self._info

    def __len__(self) -> int:
        """Number of leaves (``branching ** depth``)."""
        return self._leaves

    def __getitem__(self, index: int) -> VirtualRef[A]:
        """Ref of leaf ``index`` (0-based, negative counts from the end)."""
        n = self._leaves
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"leaf {index} out of range for a batch of {n} leaves")
        agent = self._leaf_first + index
        # Built without calling __init__: a million-leaf batch is mostly indexed in loops.
        ref = _new_ref(VirtualRef)
        ref._registry = self._registry
        ref._class = self._class
        ref._agent = ref._key = agent
        return ref

    def node(self, agent_id: int) -> VirtualRef[A]:
        """Ref of any node of the batch (intermediate levels included) by agent id."""
        first = self._info.first_id
        if not first <= agent_id < first + self._info.count:
            raise IndexError(f"agent {agent_id} is not in this batch")
        return VirtualRef(self._registry, self._class, agent_id, agent_id)
