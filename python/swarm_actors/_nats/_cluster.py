"""Virtual actors across nodes: placement, shard leases, the shared state store, and routing.

With ``nats=``, ``system.placed(Cls, key, position=...)`` returns a ``PlacedRef``. Its shard
(``_placement``) decides the node: the one holding the shard's lease (``_shards``). A message
to a shard this node holds is delivered locally, exactly as a local ``VirtualRef`` does; any
other goes to the owner's node subject, addressed by a *virtual target* ``~class~position~key``
(names of named actors never start with ``~``). A node receiving a message for a shard it does
not hold (the owner moved meanwhile) sends it on to the owner it knows, or, for an ask, answers
"not here" so that the asker looks again.

State travels with the shard: an actor's snapshot is written to the ``swarm_state`` bucket when
it is passivated (compare-and-set on the revision this node last read or wrote, so a node whose
lease was taken cannot overwrite a newer state), and read from there when the actor first
activates on a node. A node hands a shard over only after every actor of it was passivated and
its state written; a node that dies loses what its active actors did since they were last
passivated (state is persisted at passivation, as in Orleans without explicit writes).

Memory follows the active actors, not the keys ever reached: once a placed actor is passivated
and its state written (or found unchanged), everything this node kept for it is forgotten
(``release``: its ref, agent, revision and digest here, its agent and key in the registry), and
its next message reads the state from the store again. Refs that users hold bind again on their
next message.

Each actor's state has its own key (``name_key`` of its virtual target). State that a release
before ``KEY_ENCODING`` 2 stored, when distinct actors could share a key ("€" and " AC"), is
read only by the one actor that could have written it, and refused (``TransportError``) when
another could have: see ``ClusterState.fetch``.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import defaultdict, deque
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import msgspec

from swarm_actors._config import DEFAULT, Timeout
from swarm_actors._core._actor import class_names
from swarm_actors._core._capability import check_send, checks_sends, current_sender
from swarm_actors._core._cell import Ask as Entry
from swarm_actors._core._messages import ACTOR_CLASSES, type_name
from swarm_actors._core._ref import resolve_timeout
from swarm_actors._core._sender import check_reply_to
from swarm_actors._core._telemetry import sampled_context, traceparent, traceparent_context
from swarm_actors._core._virtual import VirtualRef
from swarm_actors._exceptions import ActorDeadError, NotOwnerError, TransportError
from swarm_actors._log import get_logger
from swarm_actors._nats._placement import Placement
from swarm_actors._nats._registry import (
    legacy_key,
    legacy_owner,
    name_key,
    open_bucket,
    settled,
    stamp_encoding,
)
from swarm_actors._nats._shards import ShardLeases
from swarm_actors._nats._wire import VIRTUAL_NODE, NoSuchActorError, Tell

if TYPE_CHECKING:
    from nats.js.kv import KeyValue

    from swarm_actors._core._actor import Actor
    from swarm_actors._core._cell import Cell
    from swarm_actors._core._contract import Ref, RefForm, WireNode
    from swarm_actors._nats._transport import Transport
    from swarm_actors._nats._wire import Ask

__all__ = ["STATE_BUCKET", "ClusterState", "NotOwnerError", "PlacedRef", "PlacementStats"]

A = TypeVar("A", bound="Actor")

_log = get_logger("swarm_actors.placement")

STATE_BUCKET = "swarm_state"
DEFAULT_HANDOVER_TIMEOUT = 30.0
"""Seconds a message waits for its shard to get an owner (a dead node's lease must expire)."""


class PlacementStats(msgspec.Struct, frozen=True):
    """What one node did for the cluster's virtual actors (``ActorSystem.placement_stats``)."""

    shards: tuple[int, ...]
    """The shards this node holds now."""
    sent_local: int
    """Messages of this node's placed refs delivered on this node (no NATS hop)."""
    sent_remote: int
    """Messages of this node's placed refs sent to the node holding their shard."""
    received: int
    """Messages for placed actors that arrived from other nodes and were delivered here."""
    forwarded: int
    """Tells that arrived after their shard had left this node, sent on to its new owner."""
    remembered: int = 0
    """Placed actors this node keeps anything for: the active ones, and passivated ones whose
    state is not yet written (the others are forgotten, see ``ClusterState.release``)."""


MAX_HOPS = 16
"""A tell forwarded this often (owners' views disagree that long) becomes a dead letter."""
_FORWARD_BACKOFF = 0.005  # the wait before a tell's second forward; doubles each hop after
_FORWARD_BACKOFF_MAX = 0.5


def virtual_target(class_name: str, key: str, position: tuple[int, ...] | None) -> str:
    """The wire address of a virtual actor: ``~class~position~key``."""
    where = "-" if position is None else ".".join(map(str, position))
    return f"~{class_name}~{where}~{key}"


def parse_target(target: str) -> tuple[type[Actor], str, tuple[int, ...] | None]:
    """Class, key and position of a virtual target; ``ValueError`` if it is not one."""
    _, class_name, where, key = target.split("~", 3)
    cls = ACTOR_CLASSES.get(class_name)
    if cls is None:
        raise ValueError(f"no actor class {class_name!r} in this process")
    if not key:
        raise ValueError("empty key")
    position = None if where == "-" else tuple(int(p) for p in where.split(".")) if where else ()
    return cls, key, position


class ClusterState:
    """The placement side of one node's transport (see the module docstring).

    Its shard leases, the placed actors it runs, their state in the store and the routing of
    their messages. Not the public ``Cluster`` (``_options``), which holds a node's settings.
    """

    def __init__(self, transport: Transport, placement: Placement, ttl: float) -> None:
        self.transport = transport
        self.system = transport.system
        self.node = transport.node_id
        self.placement = placement
        self._ttl = ttl
        self.registry = transport.virtual
        self.leases: ShardLeases
        self._store: KeyValue | None = None
        # Entries of the store with a lower revision were written by a release before
        # ``KEY_ENCODING`` 2 (see ``fetch``); 1: the store began with this release.
        self._legacy_before = 1
        self._refs: dict[str, PlacedRef[Any]] = {}  # by target: those bound to a local agent
        self._agents: dict[int, set[int]] = defaultdict(set)  # shard -> placed agents
        self._revisions: dict[int, int] = {}  # agent -> state revision last read or written
        self._digests: dict[int, bytes] = {}  # agent -> digest of the state at that revision
        self._dirty: dict[int, bytes] = {}  # agent -> state not yet written
        self._writers: dict[int, asyncio.Task[None]] = {}  # agent -> its write task
        self._dropping: set[int] = set()  # shards lost without handover: state not written
        self._backlog: dict[int, deque[tuple[Any, Tell | Ask]]] = {}  # activating, remotely
        self.handover_timeout = DEFAULT_HANDOVER_TIMEOUT
        self.sent_local = 0
        """Messages of this node's placed refs delivered on this node."""
        self.sent_remote = 0
        """Messages of this node's placed refs sent to another node."""
        self.received = 0
        """Messages for placed actors that arrived from other nodes and were delivered here."""
        self.forwarded = 0
        """Tells that arrived for a shard this node no longer holds, sent on."""

    async def open(self) -> None:
        """Bind the state bucket and join the shard leases."""
        registry = self.transport.registry
        self._store = await open_bucket(
            registry.js, STATE_BUCKET, memory=False, replicas=registry.replicas
        )
        self._legacy_before = await stamp_encoding(self._store, STATE_BUCKET)
        self.registry.attach_placer(self)
        self.leases = ShardLeases(registry.js, registry, self.placement, self._ttl, self._lost)
        await self.leases.open()

    async def close(self) -> None:
        """Hand over every shard (passivating and persisting its actors)."""
        await self.leases.close()
        await self._flush_writes(list(self._writers))

    def stats(self) -> PlacementStats:
        """Counters of this node's placement (see ``PlacementStats``)."""
        held = tuple(sorted(s for s in self.leases.held if self.leases.valid(s)))
        return PlacementStats(
            held,
            self.sent_local,
            self.sent_remote,
            self.received,
            self.forwarded,
            len(self.registry.placed),
        )

    # --- refs -------------------------------------------------------------------------------

    def ref(self, actor_class: type[A], key: str, position: tuple[int, ...] | None) -> PlacedRef[A]:
        target = virtual_target(type_name(actor_class), key, position)
        ref = self._refs.get(target)
        if ref is None:
            # Kept (in ``bind``) only once it reaches an actor of this node, and only until
            # that actor is forgotten: refs made for any key a peer names must not pile up.
            shard = self.placement.shard(type_name(actor_class), key, position)
            ref = PlacedRef(self, actor_class, key, position, target, shard)
        return ref

    def bind(self, ref: PlacedRef[Any]) -> VirtualRef[Any]:
        """The local ``VirtualRef`` behind a placed ref (created on first use, or again).

        Again: after its actor was forgotten (``release``).
        """
        local = self.registry.ref(ref._class, ref._key, ref._target)
        agent = local.agent_id
        if agent not in self.registry.placed:
            self.registry.place(agent, ref)
            self._agents[ref.shard].add(agent)
            self._refs.setdefault(ref._target, ref)
        return local

    def release_soon(self, agent: int) -> None:
        """Forget ``agent`` (see ``release``) once the code that passivated it has run on."""
        asyncio.get_running_loop().call_soon(self.release, agent)

    def release(self, agent: int) -> None:
        """Forget a placed actor that is passivated, idle and whose state is in the store.

        Its ref, agent, revision and digest here, its key and agent in the registry: the next
        message binds a new agent, which reads the state from the store before it activates
        (one read per reactivation, the price of memory bounded by the active actors). Does
        nothing while anything still refers to it: a write on its way, messages waiting for
        its activation, a sender holding it (``VirtualRegistry.pin``), a transition.
        """
        registry = self.registry
        if (
            agent in self._writers
            or agent in self._dirty
            or agent in self._backlog
            or not registry.releasable(agent)
        ):
            return
        ref: PlacedRef[Any] = registry.placed[agent]
        target = ref._target
        registry.release(agent, target)
        if self._refs.get(target) is ref:
            del self._refs[target]
        ref._local = None
        agents = self._agents.get(ref.shard)
        if agents is not None:
            agents.discard(agent)
            if not agents:
                del self._agents[ref.shard]
        self._revisions.pop(agent, None)
        self._digests.pop(agent, None)

    def target_of(self, agent: int) -> str | None:
        """The virtual target of a local placed agent (refs to it sent in messages)."""
        ref = self.registry.placed.get(agent)
        return ref._target if ref is not None else None

    # --- ownership and state ----------------------------------------------------------------

    def check_owner(self, agent: int) -> None:
        """Raise ``NotOwnerError`` unless this node may activate ``agent`` now."""
        ref = self.registry.placed[agent]
        if not self.leases.valid(ref.shard):
            raise NotOwnerError(f"shard {ref.shard} of {ref._target} is not held by {self.node}")

    async def fetch(self, agent: int) -> bytes | None:
        """The stored state of ``agent`` (``None``: never stored).

        Raises ``TransportError`` for a state an earlier release stored under a key that
        another actor shared (see ``_legacy``): it is refused, not handed to either.
        """
        assert self._store is not None
        ref = self.registry.placed[agent]
        while agent in self._writers:  # a write of an earlier tenure is still on its way
            await asyncio.shield(self._writers[agent])
        target = ref._target
        entry = await self._get(_state_key(target))
        if entry is not None and (entry.revision or 0) < self._legacy_before:
            self._legacy(target, entry.key)  # written by version 1: is it this actor's?
        if entry is None and self._legacy_before > 1:
            adopted = await self._adopt(target)
            if adopted is not None:  # the next write creates the current key
                self._revisions[agent] = 0
                self._digests[agent] = _digest(adopted)
                return adopted
        if entry is None:
            self._revisions[agent] = 0
            self._digests[agent] = _digest(b"")
            return None
        self._revisions[agent] = entry.revision or 0
        self._digests[agent] = _digest(entry.value or b"")
        return entry.value

    async def _get(self, key: str) -> KeyValue.Entry | None:
        from nats.js.errors import KeyNotFoundError

        store = self._store
        assert store is not None
        try:
            return await settled(lambda: store.get(key))
        except KeyNotFoundError:
            return None

    async def _adopt(self, target: str) -> bytes | None:
        """The state an earlier release stored for ``target`` under its version-1 key, if any.

        The caller writes the next state under the current key (the old one stays, unread from
        then on).
        """
        old = legacy_key(target)
        if old == _state_key(target):
            return None
        entry = await self._get(old)
        if entry is None or (entry.revision or 0) >= self._legacy_before:
            return None  # none, or the current key of another actor
        self._legacy(target, old)
        return entry.value or b""

    def _legacy(self, target: str, key: str) -> None:
        """Refuse the version-1 entry at ``key`` unless ``target`` alone had that key."""
        if legacy_owner(key, _is_target) != target:
            raise TransportError(
                f"the state of {target} was stored by an earlier release under the key {key!r} "
                f"of bucket {STATE_BUCKET}, which another actor's state shared; refused. Delete "
                "that key (or write the right state under this release's key) to go on"
            )

    def on_seal(self, agent: int, data: bytes) -> None:
        """An actor was passivated with state ``data``: write it to the store (in a task)."""
        ref = self.registry.placed[agent]
        if ref.shard in self._dropping:
            _log.error("placement.state_dropped", actor=ref._target, reason="lease lost")
            return  # ``_lost`` forgets it
        if not data and not self._revisions.get(agent):
            self.release_soon(agent)
            return  # nothing to keep, and nothing stored to overwrite
        if agent not in self._writers and self._digests.get(agent) == _digest(data):
            self.release_soon(agent)
            return  # unchanged since this node read or wrote it: no write per passivation
        self._dirty[agent] = data
        if agent not in self._writers:
            task = asyncio.get_running_loop().create_task(self._write(agent, ref))
            self._writers[agent] = task

    async def _write(self, agent: int, ref: PlacedRef[Any]) -> None:
        assert self._store is not None
        try:
            while agent in self._dirty:
                data = self._dirty.pop(agent)
                try:
                    self._revisions[agent] = await self._store.update(
                        _state_key(ref._target), data, last=self._revisions.get(agent, 0)
                    )
                    self._digests[agent] = _digest(data)
                except Exception as exc:  # fenced (another node wrote since), or NATS is gone
                    _log.error("placement.state_write_failed", actor=ref._target, error=repr(exc))
                    self._revisions.pop(agent, None)
                    self._digests.pop(agent, None)
        finally:
            del self._writers[agent]
        self.release(agent)  # written (or fenced: the store's state is the one to read next)

    async def _flush_writes(self, agents: list[int]) -> None:
        tasks = [self._writers[a] for a in agents if a in self._writers]
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _lost(self, shards: list[int], graceful: bool) -> None:
        """Give ``shards`` up: passivate their actors; persist their state if ``graceful``."""
        if not graceful:
            self._dropping.update(shards)
        try:
            agents = [a for s in shards for a in self._agents.get(s, ())]
            for _ in range(3):  # an activation may have been under way: look again
                active = [a for a in agents if a in self.registry.cells]
                if not active:
                    break
                await asyncio.gather(*(self.registry.passivate(a) for a in active))
            await self._flush_writes(agents)
            for agent in agents:  # next time, read the state the next owner leaves
                if agent not in self.registry.placed:
                    continue  # forgotten already
                self.release(agent)
                if agent not in self.registry.placed:
                    continue  # forgotten now: its next activation reads the store
                self.registry.refetch(agent)
                self._revisions.pop(agent, None)
                self._digests.pop(agent, None)
                if self.registry.tree.status(agent) == "compressed":  # drop the stale state
                    self.registry.tree.restore(agent)
                    self.registry.tree.compress(agent, b"")
        finally:
            self._dropping.difference_update(shards)

    # --- receiving --------------------------------------------------------------------------

    def ref_for(self, target: str) -> PlacedRef[Any]:
        """The placed ref of a virtual target (``ValueError`` if malformed or unknown class)."""
        ref = self._refs.get(target)
        if ref is None:
            cls, key, position = parse_target(target)
            ref = self.ref(cls, key, position)
            if ref._target != target:
                raise ValueError(f"not a canonical virtual target: {target!r}")
        return ref

    def on_tell(self, envelope: Tell, message: Any, origin: Any = None) -> None:
        """A tell arrived for a virtual target (``message`` decoded, ``origin`` its sender)."""
        ref = self.ref_for(envelope.target)
        if envelope.trace:
            message = Entry(message, None, traceparent_context(envelope.trace), origin)
        elif origin is not None:
            message = Entry(message, None, None, origin)
        if self.leases.valid(ref.shard):
            self.received += 1
            self._deliver(ref, message, envelope)
        elif envelope.hops >= MAX_HOPS:
            self.transport.inbox.dead_letter(
                envelope,
                f"forwarded {envelope.hops} times: the nodes' views of the owner of shard "
                f"{ref.shard} disagree",
            )
        else:  # the shard moved: send it on (or wait for an owner)
            self._forward(ref, message, envelope, envelope.hops + 1)

    def on_ask(
        self, envelope: Ask, message: Any, future: asyncio.Future[Any], origin: Any = None
    ) -> None:
        """An ask arrived for a virtual target; ``future`` answers it (``origin``: its asker)."""
        ref = self.ref_for(envelope.target)
        if not self.leases.valid(ref.shard):
            future.set_exception(NotOwnerError(f"{self.node} does not hold {envelope.target}"))
            return
        context = traceparent_context(envelope.trace) if envelope.trace else None
        self.received += 1
        self._deliver(ref, Entry(message, future, context, origin), envelope)

    def _deliver(self, ref: PlacedRef[Any], item: Any, envelope: Tell | Ask) -> None:
        local = ref._bound()
        agent = local.agent_id
        cell = self.registry.cells.get(agent)
        if cell is not None and cell.accepting and agent not in self._backlog:
            self.registry.tree.touch(agent)
            self.transport.inbox.deliver(cell, item, envelope)
            return
        backlog = self._backlog.get(agent)
        if backlog is None:
            backlog = self._backlog[agent] = deque()
            task = asyncio.get_running_loop().create_task(self._activate(ref, agent, backlog))
            self.transport.track(task)
        backlog.append((item, envelope))

    async def _activate(self, ref: PlacedRef[Any], agent: int, backlog: deque[Any]) -> None:
        """Activate ``agent`` for messages that arrived from other nodes, then deliver them."""
        cell: Cell | None = None
        error: Exception | None = None
        try:
            cell = await self.registry.ensure_active(agent, ref._class, ref._key)
        except Exception as exc:
            error = exc
        finally:
            if self._backlog.get(agent) is backlog:
                del self._backlog[agent]
        for item, envelope in backlog:
            if cell is not None:
                self.transport.inbox.deliver(cell, item, envelope)
            elif type(item) is Entry and item.future is not None:
                if not item.future.done():
                    item.future.set_exception(error or ActorDeadError("activation failed"))
            elif isinstance(error, NotOwnerError) and type(envelope) is Tell:
                self._forward(ref, item, envelope, envelope.hops + 1)
            else:
                self.transport.inbox.dead_letter(envelope, f"activation failed: {error!r}")

    def _forward(self, ref: PlacedRef[Any], message: Any, envelope: Tell, hops: int) -> None:
        """Send on, in a task, a tell whose shard is not held here; dead-letter it if that fails."""
        forwarding = self._forwarding(ref, message, envelope, hops)
        self.transport.track(asyncio.get_running_loop().create_task(forwarding))

    async def _forwarding(
        self, ref: PlacedRef[Any], message: Any, envelope: Tell, hops: int
    ) -> None:
        # Every way a forward can end without sending is a dead letter, counted and published
        # with the tell's own envelope: no owner within ``handover_timeout`` (TransportError),
        # an actor that refused it, or the node closing meanwhile (the cancellation goes on).
        try:
            await ref._forward(message, hops)
        except Exception as exc:
            self.transport.inbox.dead_letter(envelope, f"could not be forwarded: {exc}")
        except asyncio.CancelledError:
            self.transport.inbox.dead_letter(envelope, "the node closed while forwarding it")
            raise


class PlacedRef(Generic[A]):
    """A ref to a virtual actor of the cluster: the same on every node attached to the NATS.

    ``system.placed(Cls, key, position=path)`` on a system with ``nats=`` returns one. Messages go
    to whichever node holds the actor's shard now (locally if this one does), and the actor is
    activated there on demand, with the state it was last passivated with on any node. A
    ``Ref`` with the API of ``VirtualRef`` (a sibling, not a subclass: it can be sent to other
    nodes); ``tell`` is at most once across nodes (like ``RemoteRef``) and, while the
    shard has no owner (a dead node's lease has not expired yet), waits up to
    ``handover_timeout`` seconds for one (``TransportError`` after that). ``is_active``,
    ``agent_id`` and ``passivate`` are about this node's activation of it.
    """

    __slots__ = ("_class", "_cluster", "_key", "_local", "_position", "_target", "shard")

    def __init__(
        self,
        cluster: ClusterState,
        actor_class: type[A],
        key: str,
        position: tuple[int, ...] | None,
        target: str,
        shard: int,
    ) -> None:
        self._cluster = cluster
        self._class = actor_class
        self._key = key
        self._position = position
        self._target = target
        self.shard = shard
        """The actor's shard (see ``Placement``)."""
        self._local: VirtualRef[A] | None = None

    @property
    def key(self) -> str:
        """The actor's key."""
        key: str = self._key
        return key

    @property
    def position(self) -> tuple[int, ...] | None:
        """The actor's position in the hierarchy (``None``: placed by hashing its key)."""
        return self._position

    @property
    def path(self) -> str:
        """The actor's path, as its cell has it: ``/Class:key``."""
        return f"/{self._class.__qualname__}:{self._key}"

    @property
    def node(self) -> str | None:
        """The node holding the actor's shard, as this node last heard (``None``: none now)."""
        return self._cluster.leases.owner(self.shard)

    def _bind(self) -> VirtualRef[A]:
        local = self._local = self._cluster.bind(self)
        return local

    def _bound(self) -> VirtualRef[A]:
        """The local ref, bound again if its actor was forgotten meanwhile.

        Agent ids are not reused: an agent still placed is the one this ref bound.
        """
        local = self._local
        if local is None or local.agent_id not in self._cluster.registry.placed:
            local = self._bind()
        return local

    @property
    def agent_id(self) -> int:
        """Id of the actor in this node's ``AgentTree``."""
        return self._bound().agent_id

    @property
    def is_active(self) -> bool:
        """Whether the actor runs on this node now."""
        return self._local is not None and self._local.is_active

    @property
    def is_alive(self) -> bool:
        """Whether a message can reach the actor: while this node is attached to the cluster."""
        return not self._cluster.transport.closed

    def tell_nowait(self, message: Any, reply_to: Ref[Any] | None = None) -> None:
        """Send without waiting: to the actor running here, or buffered for its node.

        Raises ``ActorDeadError`` when it would have to wait: the actor is not active on this
        node although this node holds its shard, or its shard has no owner now.
        """
        if checks_sends():
            check_send(self._class, self.path)
        if reply_to is not None:
            check_reply_to(reply_to)
        cluster = self._cluster
        if cluster.leases.valid(self.shard):
            self._bound().tell_nowait(message, reply_to=reply_to)
            cluster.sent_local += 1
            return
        owner = cluster.leases.owner(self.shard)
        if owner is None or owner == cluster.node:
            raise ActorDeadError(f"shard {self.shard} of {self.path} has no owner now; use tell()")
        cluster.sent_remote += 1
        self._send(owner, message, 0, reply_to)

    async def passivate(self) -> None:
        """Passivate the actor if it runs on this node (no-op otherwise)."""
        if self._local is not None:
            await self._local.passivate()

    async def tell(self, message: Any, reply_to: Ref[Any] | None = None) -> None:
        """Send ``message`` to the actor, wherever it runs; see the class docstring.

        ``reply_to``: the handler's ``self.sender`` (default: the sending actor's ref).
        """
        if checks_sends():
            check_send(self._class, self.path)
        if reply_to is not None:
            check_reply_to(reply_to)
        await self._route(message, 0, reply_to)

    async def _forward(self, message: Any, hops: int) -> None:
        """Send on a tell that arrived here after its shard left (its ``hops``-th forward).

        From the second forward on, wait a little longer each time before sending: a tell that
        bounces between nodes whose lease mirrors disagree lets them catch up instead of
        spinning, and is dead-lettered by the node that sees it arrive ``MAX_HOPS`` times.
        """
        self._cluster.forwarded += 1
        _log.debug("placement.forward", target=self._target, shard=self.shard, hops=hops)
        if hops > 1:
            await asyncio.sleep(min(_FORWARD_BACKOFF * 2 ** (hops - 2), _FORWARD_BACKOFF_MAX))
        await self._route(message, hops)

    async def _route(self, message: Any, hops: int = 0, reply_to: Any = None) -> None:
        cluster = self._cluster
        leases = cluster.leases
        deadline: float | None = None
        loop = asyncio.get_running_loop()
        while True:
            if leases.valid(self.shard):
                local = self._bound()
                try:
                    await local.tell(message, reply_to=reply_to)
                    cluster.sent_local += 1
                    return
                except NotOwnerError:
                    pass  # lost the shard while activating: route again
            else:
                owner = leases.owner(self.shard)
                if owner is not None and owner != cluster.node:
                    cluster.sent_remote += 1
                    self._send(owner, message, hops, reply_to)
                    stalled = cluster.transport.outbox.stalled
                    if stalled is not None:
                        await asyncio.shield(stalled)
                    return
            if deadline is None:
                deadline = loop.time() + cluster.handover_timeout
            await self._wait_owner(deadline)

    def _send(self, node: str, message: Any, hops: int = 0, reply_to: Any = None) -> None:
        transport = self._cluster.transport
        sender = current_sender()
        if type(message) is Entry:  # forwarded with its trace context and its sender
            context, origin, message = message.context, message.origin, message.message
            trace = traceparent(context) if context is not None else ""
        else:
            trace = self._trace()
            origin = reply_to
            if origin is None and sender is not None:
                origin = transport.origin(sender)
        transport.outbox.tell(
            transport.outbox.subject_of(node),
            self._target,
            message,
            trace,
            "" if sender is None else sender.path,
            hops,
            origin,
        )

    def _trace(self) -> str:
        """The ``traceparent`` of the sender's sampled span (``""``: none, or tracing is off)."""
        if self._cluster.transport.tracer is None:
            return ""
        context = sampled_context()
        return traceparent(context) if context is not None else ""

    async def _wait_owner(self, deadline: float) -> None:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise TransportError(
                f"shard {self.shard} of {self._target} has had no owner for "
                f"{self._cluster.handover_timeout:g} s"
            )
        try:
            async with asyncio.timeout(min(remaining, 1.0)):
                await self._cluster.leases.changed()
        except TimeoutError:
            pass  # look again (a lease may have expired without a change reaching us)

    async def ask(self, message: Any, *, timeout: Timeout = DEFAULT) -> Any:
        """Send ``message`` and return the reply, wherever the actor runs.

        Raises ``TimeoutError`` after ``timeout`` seconds (waiting for a shard's owner
        included; default: the system's ``Timeouts.ask``, ``None`` for no limit), and what a
        local ask raises.
        """
        timeout = resolve_timeout(timeout, self._cluster.system)
        if checks_sends():
            check_send(self._class, self.path)
        cluster = self._cluster
        leases = cluster.leases
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout if timeout is not None else cluster.handover_timeout)
        while True:
            remaining = None if timeout is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"ask to {self._target} got no reply within {timeout:g} s")
            try:
                if leases.valid(self.shard):
                    local = self._bound()
                    result = await local.ask(message, timeout=remaining)
                    cluster.sent_local += 1
                    return result
                owner = leases.owner(self.shard)
                if owner is not None and owner != cluster.node:
                    cluster.sent_remote += 1
                    sender = current_sender()
                    return await cluster.transport.ask(
                        owner,
                        self._target,
                        message,
                        remaining,
                        self._trace(),
                        "" if sender is None else sender.path,
                        None,
                        None if sender is None else cluster.transport.origin(sender),
                    )
            except NoSuchActorError:  # the owner moved or died: look again
                pass
            await self._wait_owner(deadline)

    def __repr__(self) -> str:
        return f"<PlacedRef {self._class.__qualname__}:{self._key!r} shard {self.shard}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlacedRef) and other._target == self._target

    def __hash__(self) -> int:
        return hash(("placed", self._target))

    def __swarm_wire__(self, node: WireNode) -> RefForm:
        """The ref on the wire (see ``Ref``): its virtual target, the same from any node."""
        cls = self._class
        return (VIRTUAL_NODE, self._target, self.path, cls.role, class_names(cls))


def _digest(state: bytes) -> bytes:
    return hashlib.blake2b(state, digest_size=16).digest()


def _state_key(target: str) -> str:
    return name_key(target)


def _is_target(name: str) -> bool:
    """Whether ``name`` is the canonical virtual target of an actor class of this process."""
    try:
        cls, key, position = parse_target(name)
    except ValueError:
        return False
    return virtual_target(type_name(cls), key, position) == name
