r"""Pools across nodes: the members other nodes run, and pools of placed virtual actors.

Both are ``MemberSource``\\ s of the engine's ``PoolRef`` (``_core._pool``).

**A named pool spans the nodes that open it.** ``system.pool(Coder, size=2, name="coders")`` on
a node starts its members under cluster-wide names ``coders~<node>~<n>`` (its supervisor is
``coders~<node>``), so another process that opens a pool of the same name adds its members to
the same set. ``ClusterMembers`` reads them from the node's mirror of the name registry (a
dict, re-read only when the registry changed) and routes to them through ``RemoteRef``\\ s. A
member counts while its node heartbeats: the node bucket is listed every ``node_ttl / 4``
seconds (this node's TTL, at least 0.2), so a node that was killed drops out within its own TTL
plus that; an ask that its node refuses (``NoSuchActorError``: nothing was delivered) drops the
member at once and goes to another. A node that leaves cleanly releases its members' names,
which drops them at once. Every node sorts the members by name, so consistent hashing sends a
key to the same member from every node.

**A named pool travels in messages.** A round-robin or least-busy named pool's ref goes on the
wire as ``(POOL_NODE, "<routing>:<name>", ...)``; the receiving node builds a *view*
(``pool_from_wire``): a ``PoolRef`` with the same routing over every registered member, its
own node's included, that starts, resizes and stops nothing. A consistent-hash pool does not
travel (its key function stays in its process). Every pool and view of a node shares one
listing of the live nodes (``_Liveness``).

**A placed pool** (``placed=True``): its members are the cluster's virtual actors
``Cls / "<name>#<n>"``, the same from every node, and consistent hashing reuses the Hilbert
placement. A key that is a position (a tree path, as ``system.placed`` takes) maps to its
Hilbert index, the curve being the ring: member ``n`` holds the point at the bit-reversed
``n`` (0, 1/2, 1/4, 3/4, 1/8... of the curve: evenly spread for any size, and a new member only
splits one member's arc) and owns the keys from its point to the next. So related keys (a
parent and its children, neighbours: a contiguous run of the curve) land on the same member.
The member itself is placed at the position of its point, on the shard where its arc begins:
it runs on the node holding those keys' own placed actors (or a neighbour's). Other keys
(str, bytes, int) are hashed onto the same curve. Members are virtual actors: activated on
their first message, supervised as every virtual actor is; ``resize`` changes which keys go
where on this node only (open the pool with the same size everywhere).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from swarm_actors._core._actor import Actor, class_names
from swarm_actors._core._messages import ACTOR_CLASSES
from swarm_actors._core._pool import LEAST_BUSY, ROUND_ROBIN, HashRing, PoolRef, key_hash
from swarm_actors._core._supervision import OneForOne
from swarm_actors._exceptions import InvalidArgumentError, WireFormatError
from swarm_actors._log import get_logger
from swarm_actors._nats._placement import check_position
from swarm_actors._nats._remote import RemoteRef
from swarm_actors._nats._wire import POOL_NODE
from swarm_actors._tuplecore import hilbert_decode, hilbert_encode

if TYPE_CHECKING:
    from swarm_actors._core._contract import Ref, RefForm
    from swarm_actors._nats._cluster import ClusterState
    from swarm_actors._nats._transport import Transport

__all__ = [
    "ClusterMembers",
    "PlacedMembers",
    "pool_from_wire",
    "supervisor_name",
]

_log = get_logger("swarm_actors.transport")


def supervisor_name(pool: str, node: str) -> str:
    """The registry name of the supervisor of ``node``'s members of pool ``pool``."""
    return f"{pool}~{node}"


class _Liveness:
    """The nodes that heartbeat now, as one node sees them: one listing task per node.

    Listed every ``node_ttl / 4`` seconds (at least 0.2) while the node is attached; shared by
    every pool of the node and every pool ref it received.
    """

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        cluster = transport.system.cluster
        self._interval = max(0.2, (cluster.node_ttl if cluster is not None else 10.0) / 4)
        self.live: set[str] | None = None
        """Ids of the heartbeating nodes (``None``: not listed yet)."""
        self.version = 0
        """Bumped when ``live`` changes."""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Keep listing, from now on (once per node; the node's closing cancels it)."""
        if self._task is None and not self._transport.closed:
            self._task = asyncio.get_running_loop().create_task(self._poll())
            self._transport.track(self._task)

    async def list(self) -> None:
        """List the live nodes now."""
        try:
            live = await self._transport.registry.live_nodes()
        except Exception as exc:  # a reconnect in progress: keep the last view
            _log.debug("pool.live_nodes_failed", error=repr(exc))
            return
        if live != self.live:
            self.live = live
            self.version += 1

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.list()


_LIVENESS: weakref.WeakKeyDictionary[Transport, _Liveness] = weakref.WeakKeyDictionary()


def _liveness(transport: Transport) -> _Liveness:
    found = _LIVENESS.get(transport)
    if found is None:
        found = _LIVENESS[transport] = _Liveness(transport)
    return found


class ClusterMembers:
    """The members of a named pool on other nodes (see the module docstring).

    ``view``: the source of a pool ref received in a message (``pool_from_wire``): it is the
    whole pool there, this node's own members included, and it starts and stops nothing.
    """

    def __init__(
        self,
        transport: Transport,
        pool: str,
        actor_class: type[Actor],
        routing: str,
        *,
        view: bool = False,
    ) -> None:
        self._transport = transport
        self._registry = transport.registry
        self._liveness = _liveness(transport)
        self._pool = pool
        self._class = actor_class
        self._routing = routing
        self._view = view
        self._prefix = f"{pool}~"
        self._seen = (-1, -1)  # the registry's and the liveness's versions ``members`` read
        self._dirty = True
        self._refused: dict[str, str] = {}  # member -> incarnation whose node refused it
        self._refs: dict[str, Ref[Any]] = {}

    @property
    def owns_members(self) -> bool:
        """A view is the whole pool; a pool's own source only adds the other nodes' members."""
        return self._view

    async def open(self) -> None:
        """List the live nodes once, then keep listing them in the background."""
        await self._liveness.list()
        self._liveness.start()

    def changed(self) -> bool:
        """Whether the registry or the live nodes changed since ``members``."""
        return self._dirty or (self._registry.version, self._liveness.version) != self._seen

    def members(self) -> list[tuple[str, Ref[Any]]]:
        """``(name, ref)`` of the live members (on other nodes, unless a view), sorted by name."""
        registry = self._registry
        self._seen = (registry.version, self._liveness.version)
        self._dirty = False
        me = self._transport.node_id
        live = self._liveness.live
        found: list[tuple[str, Ref[Any]]] = []
        refs: dict[str, Ref[Any]] = {}
        for name, entry in registry.entries(self._prefix):
            if name.count("~") != 2:
                continue  # a supervisor
            ref = self._refs.get(name)
            if entry.node == me:
                if not self._view:
                    continue  # this node's members: the pool's own cells
                cell = self._transport.names.get(name)
                if cell is None:
                    continue
                ref = cell.ref  # (a member replaced under its name has a new cell)
            elif (live is not None and entry.node not in live) or self._refused.get(
                name
            ) == entry.incarnation:
                continue  # its node is dead, or refused it
            ref = ref or RemoteRef(self._transport, name)
            refs[name] = ref
            found.append((name, ref))
        self._refs = refs
        return found

    def unreachable(self, slot: str) -> None:
        """The member's node refused a message for it: route around it until it registers anew."""
        entry = self._registry.get(slot)
        self._refused[slot] = entry.incarnation if entry is not None else ""
        self._dirty = True

    def ring(self, slots: Sequence[str]) -> HashRing | None:
        """``None``: the members' names are hashed onto the ring."""
        return None

    def point(self, key: object) -> int | None:
        """``None``: keys are hashed."""
        return None

    async def resize(self, size: int) -> None:
        """A view routes over the members the nodes opened: it has none of its own to resize."""
        raise InvalidArgumentError(
            "a pool received from another node cannot be resized: open the pool on this node "
            "(system.pool(..., name=...)) and resize that"
        )

    def wire_form(self, pool: PoolRef[Any]) -> RefForm | None:
        """``(POOL_NODE, "<routing>:<name>", path, role, classes)``: the same from every node."""
        cls = self._class
        return (
            POOL_NODE,
            f"{self._routing}:{self._pool}",
            f"/{self._pool}",
            cls.role,
            class_names(cls),
        )

    async def close(self) -> None:
        """Nothing to release: the node's liveness listing is shared."""


def pool_from_wire(transport: Transport, name: str, classes: tuple[str, ...]) -> PoolRef[Any]:
    """The pool ref that arrived in a message: a view of the named pool (see the module doc).

    It holds nothing but its members' refs (no task, no cache): a peer sending many such refs
    costs only the messages. ``WireFormatError`` for a name no pool sends.
    """
    routing, _, pool = name.partition(":")
    if routing not in (ROUND_ROBIN, LEAST_BUSY) or not pool or "~" in pool:
        raise WireFormatError(f"not a pool ref: {name!r}")
    found = ACTOR_CLASSES.get(classes[0]) if classes else None
    actor_class: type[Actor] = (
        found if isinstance(found, type) and issubclass(found, Actor) else Actor
    )
    source = ClusterMembers(transport, pool, actor_class, routing, view=True)
    source._liveness.start()
    return PoolRef(
        transport.system,
        actor_class,
        (),
        {},
        routing=routing,
        key=None,
        strategy=OneForOne(),
        name=pool,
        source=source,
    )


def _reversed_bits(number: int, bits: int) -> int:
    """``number``'s lowest ``bits`` bits in reverse order (the van der Corput sequence)."""
    return int(format(number, f"0{bits}b")[::-1], 2) if number < 1 << bits else number


class PlacedMembers:
    """The members of a placed pool: placed virtual actors on a Hilbert ring (module doc)."""

    owns_members = True

    def __init__(
        self, cluster: ClusterState, actor_class: type[Actor], pool: str, size: int
    ) -> None:
        self._cluster = cluster
        self._class = actor_class
        self._pool = pool
        placement = cluster.placement
        self._dims, self._bits = placement.dims, placement.bits
        self._total = placement.dims * placement.bits
        self._level_bits = placement.level_bits
        self._size = size
        self._changed = True

    def position(self, index: int) -> tuple[int, ...]:
        """The tree path whose Hilbert index is ``index`` (``Placement.point`` inverted)."""
        coords = hilbert_decode(index, self._dims, self._bits)
        dims, bits, level_bits, total = self._dims, self._bits, self._level_bits, self._total
        path: list[int] = []
        for start in range(0, total, level_bits):
            ordinal = 0
            for j in range(start, start + level_bits):
                bit = 0
                if j < total:
                    bit = (coords[j % dims] >> (bits - 1 - j // dims)) & 1
                ordinal = (ordinal << 1) | bit
            path.append(ordinal)
        return tuple(path)

    def index(self, position: Sequence[int]) -> int:
        """The Hilbert index of a tree path (as the cluster places it)."""
        return hilbert_encode(self._cluster.placement.point(position), self._bits)

    def _point(self, number: int) -> int:
        return _reversed_bits(number, self._total)

    def changed(self) -> bool:
        """Whether the size changed since ``members``."""
        return self._changed

    def members(self) -> list[tuple[str, Ref[Any]]]:
        """``(key, PlacedRef)`` of every member, in the order of their numbers."""
        self._changed = False
        out: list[tuple[str, Ref[Any]]] = []
        for number in range(self._size):
            key = f"{self._pool}#{number}"
            position = self.position(self._point(number))
            out.append((key, self._cluster.ref(self._class, key, position)))
        return out

    def unreachable(self, slot: str) -> None:
        """Placed actors are reached wherever they run: nothing to route around."""

    def ring(self, slots: Sequence[str]) -> HashRing | None:
        """One point per member, on the Hilbert curve."""
        return HashRing(
            (self._point(int(slot.rpartition("#")[2])), i) for i, slot in enumerate(slots)
        )

    def point(self, key: object) -> int | None:
        """A position's Hilbert index; another key hashed onto the curve."""
        if isinstance(key, (tuple, list)):
            position = check_position(key)
            assert position is not None
            return self.index(position)
        digest = key_hash(key)  # 64 bits
        return digest >> (64 - self._total) if self._total <= 64 else digest << (self._total - 64)

    async def resize(self, size: int) -> None:
        """Route over ``size`` members from now on (their actors are virtual: nothing stops)."""
        self._size = size
        self._changed = True

    def wire_form(self, pool: PoolRef[Any]) -> RefForm | None:
        """``None``: a placed pool is opened by name on each node (its key function stays)."""
        return None

    async def close(self) -> None:
        """Nothing to release: the members are the cluster's virtual actors."""
