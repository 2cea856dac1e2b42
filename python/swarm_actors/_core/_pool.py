"""Pools (routers): one ref in front of N actors of a class.

``await system.pool(Coder, size=4, routing="least_busy")`` starts a supervisor actor with four
``Coder`` children and returns a ``PoolRef``: a ``Ref`` whose ``tell`` / ``ask`` go to one
member, picked per message by the routing:

* ``"round_robin"``: the members in turn.
* ``"least_busy"``: the member with the shortest mailbox (its queued messages, plus one while
  a handler runs); ties go round-robin. A member on another node counts the pool's own asks to
  it still unanswered (its mailbox lives over there).
* ``"consistent_hash"``: ``key(message)`` (a str, bytes or int) is hashed (BLAKE2b, 64 bits)
  onto a ring where each member holds ``VNODES`` points named after its *slot*; the message
  goes to the member owning the nearest point at or below the hash (wrapping around). Adding
  a member to N moves about 1/(N+1) of the keys, all of them to the new member; removing one
  moves only its own keys; a member replaced after a crash keeps its slot, so its keys come
  back to it. A pool of placed actors maps keys through the Hilbert curve instead (a
  ``MemberSource`` may bring its own ring: ``_nats._pool``).

Cost: the ref routes straight to the members' cells, not through a router actor, which would
cost a mailbox hop and a turn per message. A message costs the pick (an index, a scan of N
mailbox lengths, or a hash, cached per key, and a bisect) and, to a local member with room and
nothing to check (no trace, no ``may_message`` grant), the ``post`` a ref's ``tell`` ends in.
``bench/bench_pool.py`` measures it against one ``ActorRef`` and against hand-made pools.

Supervision: the members are children of the pool's supervisor (``Pool``), under the pool's
strategy (``supervision=``, default ``OneForOne()``): a crashing member is restarted in place,
its mailbox kept. A member that stops without the pool asking (``Directive.STOP``, or restarts
exhausted: a pool never escalates) is *replaced* by a new member in its slot, and its queued
messages are kept (askers still get their answers): they go to the other members, or, with
consistent hashing, to the replacement (the keys' member, in their order). Only when no member
can take them are they failed: asks get ``ActorDeadError``, tells are dead letters.

A message sent to a member that has just stopped goes to another member: a tell that raised
``ActorDeadError`` was never queued, so it is sent again; an ask is sent again when the member
refused it before taking it (``NoSuchActorError`` from another node), otherwise its error is
the answer.

Resize: ``await pool.resize(n)`` starts members, or retires the newest ones: a retired member
takes no new message at once and is stopped after it has handled everything it has queued.

Members on other nodes: a ``MemberSource`` (``_nats._pool``) adds them; the engine only calls
it.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import math
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from swarm_actors._config import DEFAULT, Timeout
from swarm_actors._core._actor import Actor
from swarm_actors._core._capability import current_sender
from swarm_actors._core._cell import Ask, Cell
from swarm_actors._core._ref import _check_timeout
from swarm_actors._core._supervision import OneForOne
from swarm_actors._exceptions import (
    ActorDeadError,
    InvalidArgumentError,
    MailboxFullError,
    NoSuchActorError,
)
from swarm_actors._log import get_logger

if TYPE_CHECKING:
    from swarm_actors._core._contract import Ref, RefForm, WireNode
    from swarm_actors._core._ref import ActorRef
    from swarm_actors._system import ActorSystem

__all__ = [
    "CONSISTENT_HASH",
    "LEAST_BUSY",
    "ROUND_ROBIN",
    "ROUTINGS",
    "VNODES",
    "HashRing",
    "MemberSource",
    "Pool",
    "PoolRef",
    "check_pool",
    "key_hash",
    "open_pool",
]

A = TypeVar("A", bound="Actor")

log = get_logger("swarm_actors")

ROUTINGS = ("round_robin", "least_busy", "consistent_hash")
"""The routings a pool takes (``routing=``)."""

VNODES = 64
"""Points each member holds on a consistent-hash ring (more: a more even spread)."""

ROUND_ROBIN, LEAST_BUSY, CONSISTENT_HASH = ROUTINGS
_ROUND_ROBIN, _LEAST_BUSY, _HASH = ROUTINGS


def _hash64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


@functools.lru_cache(maxsize=1 << 16)
def _cached_hash(key: str | bytes | int) -> int:
    return _key_hash(key)


def key_hash(key: object) -> int:
    """The ring point of a routing key: BLAKE2b of its bytes (the same in every process).

    Cached (a hot key costs a dict lookup): a key of exactly ``str``, ``bytes`` or ``int``.
    """
    kind = type(key)
    if kind is str or kind is bytes or kind is int:
        return _cached_hash(key)
    return _key_hash(key)


def _key_hash(key: object) -> int:
    if isinstance(key, str):
        data = b"s" + key.encode("utf-8", "surrogatepass")
    elif isinstance(key, bytes):
        data = b"b" + key
    elif isinstance(key, int) and not isinstance(key, bool):
        data = b"i" + str(key).encode()
    else:
        raise InvalidArgumentError(
            f"a pool's key function must return a str, bytes or int, got {key!r}"
        )
    return _hash64(data)


class HashRing:
    """A consistent-hash ring: points owned by members; a point goes to the nearest at or below.

    Below the first point it wraps around to the last one. Built once per membership change;
    a lookup is one bisect.
    """

    __slots__ = ("_owners", "_points")

    def __init__(self, points: Iterable[tuple[int, int]]) -> None:
        ordered = sorted(points)
        self._points = [point for point, _ in ordered]
        self._owners = [owner for _, owner in ordered]

    @classmethod
    def hashed(cls, slots: Sequence[str], vnodes: int = VNODES) -> HashRing:
        """``vnodes`` points per slot, hashed from its name: member ``i`` is ``slots[i]``."""
        return cls(
            (_hash64(f"{slot}#{v}".encode()), i)
            for i, slot in enumerate(slots)
            for v in range(vnodes)
        )

    def owner(self, point: int) -> int:
        """The member owning ``point``."""
        return self._owners[bisect_right(self._points, point) - 1]


class MemberSource(Protocol):
    """Members of a pool that this process does not start: on other nodes, or placed actors.

    Implemented by the NATS layer; the pool calls it while it routes.
    """

    @property
    def owns_members(self) -> bool:
        """Whether the source is the whole pool (no local members: placed actors)."""
        ...

    def changed(self) -> bool:
        """Whether ``members`` may have changed since it was last called (cheap)."""
        ...

    def members(self) -> list[tuple[str, Ref[Any]]]:
        """``(slot, ref)`` of every member the source knows to be reachable now."""
        ...

    def unreachable(self, slot: str) -> None:
        """A member refused a message before taking it (its node runs no such actor)."""
        ...

    def ring(self, slots: Sequence[str]) -> HashRing | None:
        """The ring of these slots, if the source places keys its own way (``None``: hashed)."""
        ...

    def point(self, key: object) -> int | None:
        """The ring point of a key, if the source places keys its own way (``None``: hashed)."""
        ...

    async def resize(self, size: int) -> None:
        """Set the number of members (sources that own the members)."""
        ...

    def wire_form(self, pool: PoolRef[Any]) -> RefForm | None:
        """The pool as the wire carries it (``None``: it cannot leave this process)."""
        ...

    async def close(self) -> None:
        """The pool stopped: release what the source holds."""
        ...


class Pool(Actor):
    """The supervisor of a pool's local members (its children); it handles no message."""

    def __init__(self, pool: PoolRef[Any]) -> None:
        self.pool = pool

    async def on_stop(self) -> None:
        """The pool stops with its supervisor (its members stopped first)."""
        await self.pool._closing()


class _MemberCell(Cell):
    """The cell of a local member: the pool's strategy, and replacement instead of loss."""

    __slots__ = ("pool",)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        assert self.parent is not None
        assert isinstance(self.parent.actor, Pool)
        self.pool: PoolRef[Any] = self.parent.actor.pool

    def strategy(self) -> Any:
        return self.pool._strategy

    async def escalate(self, exc: BaseException) -> None:
        # Restarts exhausted: the pool replaces the member instead of failing as a whole.
        log.error("pool.member_replaced", actor=self.path, error=repr(exc))
        await self.stop(drain=False)

    def discard_queue(self, error: ActorDeadError) -> int:
        if self.pool._keeps_queue():
            self.pool._adopt(self.take_queue())
            return 0
        return super().discard_queue(error)

    async def _stop(self, drain: bool) -> int:
        try:
            return await super()._stop(drain)
        finally:
            self.pool._member_stopped(self)


class PoolRef(Generic[A]):
    r"""One ref in front of several actors of a class: ``system.pool(Cls, size=, routing=)``.

    A ``Ref`` (``tell``, ``tell_nowait``, ``ask``, ``path``, ``is_alive``): each message goes to
    one member, picked by the routing (``"round_robin"``, ``"least_busy"`` or
    ``"consistent_hash"`` on ``key(message)``; see the module ``_pool``). ``broadcast`` sends to
    every member, ``resize`` grows or shrinks the pool without losing a queued message, and
    ``members`` lists the refs routed to now (local ``ActorRef``\\ s, and ``RemoteRef``\\ s or
    ``PlacedRef``\\ s of a pool that spans nodes).

    Members are supervised by the pool's strategy; one that stops without the pool asking is
    replaced, its queued messages handed to the replacement. ``stop`` stops the pool and its
    members (draining them by default).

    A named round-robin or least-busy pool of a system with ``nats=`` can be put in a message:
    it arrives as a view of the pool, with its routing, over every member the nodes registered
    (it starts, resizes and stops nothing). Another pool cannot (``TypeError``: send one of
    its ``members``, or open the named pool on the other node).
    """

    __slots__ = (
        "__weakref__",
        "_args",
        "_cells",
        "_class",
        "_closed",
        "_dirty",
        "_inflight",
        "_key",
        "_kwargs",
        "_loads",
        "_member_name",
        "_name",
        "_next",
        "_next_slot",
        "_orphans",
        "_refs",
        "_resizing",
        "_retiring",
        "_ring",
        "_routing",
        "_slot_of",
        "_slots",
        "_source",
        "_strategy",
        "_supervisor",
        "_system",
        "_target",
    )

    def __init__(
        self,
        system: ActorSystem,
        actor_class: type[A],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        routing: str,
        key: Callable[[Any], object] | None,
        strategy: OneForOne,
        name: str | None,
        source: MemberSource | None = None,
    ) -> None:
        self._system = system
        self._class = actor_class
        self._args = args
        self._kwargs = kwargs
        self._routing = ROUTINGS[ROUTINGS.index(routing)]  # the constant: compared by identity
        self._key = key
        self._strategy = strategy
        self._name = name
        self._supervisor: ActorRef[Pool] | None = None
        self._member_name: str | None = None  # members' names: f"{this}~{slot number}"
        self._source = source  # members this process does not start (``_open`` may set it)
        self._cells: dict[str, Cell] = {}  # slot -> the local member's cell
        self._slot_of: dict[Cell, str] = {}
        self._next_slot = 0
        self._retiring: set[Cell] = set()
        self._orphans: list[Any] = []  # queued messages of a stopped member, for the next one
        self._closed = False
        self._target = 0  # local members wanted
        self._resizing: asyncio.Lock | None = None
        # What the routing reads, rebuilt when the membership changes (``_dirty``).
        self._dirty = True
        self._refs: list[Ref[A]] = []
        self._slots: list[str] = []
        self._loads: list[Cell | None] = []  # the cell of a local member (its mailbox length)
        self._ring: HashRing | None = None
        self._next = 0
        self._inflight: dict[str, int] = {}  # asks to a remote member still unanswered

    # --- starting and stopping --------------------------------------------------------------

    async def _open(
        self, size: int, supervisor: str | None, source: MemberSource | None
    ) -> PoolRef[A]:
        system = self._system
        self._source = source
        if source is not None and source.owns_members:
            self._target = size
            return self
        self._supervisor = await system._start(Pool, (self,), {}, name=supervisor, parent=None)
        self._member_name = supervisor
        try:
            await self._grow(size)
        except BaseException:
            await self.stop(drain=False)
            raise
        return self

    async def _start_member(self, slot: str, name: str | None) -> None:
        assert self._supervisor is not None
        ref = await self._system._start(
            self._class,
            self._args,
            self._kwargs,
            name=name,
            parent=self._supervisor,
            cell_class=_MemberCell,
        )
        cell = ref._cell
        self._cells[slot] = cell
        self._slot_of[cell] = slot
        self._dirty = True
        if self._orphans:  # a stopped member's queue: its replacement takes it
            orphans, self._orphans = self._orphans, []
            self._deliver(cell, orphans)

    def _new_slot(self) -> tuple[str, str | None]:
        number = self._next_slot
        self._next_slot += 1
        if self._member_name is None:
            return str(number), None
        name = f"{self._member_name}~{number}"
        return name, name

    async def _grow(self, size: int) -> None:
        self._target = size
        while len(self._serving()) < size and not self._closed:
            slot, name = self._new_slot()
            await self._start_member(slot, name)

    async def _closing(self) -> None:
        """The supervisor stops (the pool's ``stop``, or the system's): the pool is closed."""
        self._closed = True
        self._dirty = True
        self._fail(self._orphans)
        self._orphans = []
        if self._source is not None:
            await self._source.close()

    async def stop(self, *, drain: bool = True) -> int:
        """Stop the pool and its members; returns how many queued messages were discarded.

        With ``drain=True`` (default) every member first handles what it has queued. Members on
        other nodes are theirs to stop: they only stop receiving from this pool.
        """
        self._closed = True
        self._dirty = True
        if self._supervisor is None:
            if self._source is not None:
                await self._source.close()
            return 0
        cells = list(self._cells.values())
        await self._supervisor.stop(drain=drain)
        return sum(c.dropped for c in cells)

    # --- members ------------------------------------------------------------------------------

    def _keeps_queue(self) -> bool:
        """Whether a stopping member's queue goes to other members (the pool goes on)."""
        supervisor = self._supervisor
        return not self._closed and supervisor is not None and supervisor.is_alive

    def _adopt(self, items: list[Any]) -> None:
        """A stopped member's queue: to the other members, or kept for its replacement.

        With consistent hashing the replacement (same slot, same keys) takes it all, in order.
        """
        if not items:
            return
        receivers = [c for c in self._cells.values() if c.accepting and c not in self._retiring]
        if not receivers or self._routing is _HASH:
            if self._keeps_queue():
                self._orphans.extend(items)
            else:
                self._fail(items)
            return
        for n in range(len(receivers)):
            self._deliver(receivers[n], items[n :: len(receivers)])

    def _deliver(self, cell: Cell, items: list[Any]) -> None:
        for item in items:
            if not cell.post(item):
                self._system._spawn(self._put(cell, item))

    async def _put(self, cell: Cell, item: Any) -> None:
        try:
            await cell.put(item)
        except ActorDeadError:
            self._adopt([item])

    def _fail(self, items: list[Any]) -> None:
        """Messages no member can take: asks get ``ActorDeadError``, tells are dead letters."""
        for item in items:
            error = ActorDeadError(f"pool {self.path} has no member left", actor=self.path)
            if type(item) is Ask:
                if item.future is not None:
                    if not item.future.done():
                        item.future.set_exception(error)
                    continue
                item = item.message
            self._system._dead_letter(self.path, item, "pool has no member left")

    def _member_stopped(self, cell: Cell) -> None:
        """A member's cell stopped: replace it unless the pool retired it or is closing."""
        self._dirty = True
        slot = self._slot_of.pop(cell, None)
        if slot is None:
            return
        if self._cells.get(slot) is cell:
            del self._cells[slot]
        if cell in self._retiring:
            self._retiring.discard(cell)
            return
        if self._keeps_queue():
            self._system._spawn(self._replace(slot))
        else:
            self._fail(self._orphans)
            self._orphans = []

    def _serving(self) -> list[Cell]:
        """The local members not retired (some may be stopping on their own)."""
        return [c for c in self._cells.values() if c not in self._retiring]

    async def _replace(self, slot: str) -> None:
        name = None if self._member_name is None else slot
        try:
            if len(self._serving()) >= self._target:
                raise ActorDeadError("the pool was resized meanwhile: no replacement needed")
            await self._start_member(slot, name)
        except Exception as exc:
            if not isinstance(exc, ActorDeadError):
                log.error("pool.replacement_failed", pool=self.path, slot=slot, error=repr(exc))
            orphans, self._orphans = self._orphans, []
            receivers = [c for c in self._serving() if c.accepting]
            if receivers:
                self._deliver(receivers[0], orphans)
            else:
                self._fail(orphans)

    async def resize(self, size: int) -> None:
        """Grow or shrink the pool to ``size`` members (an int >= 1).

        New members start before this returns. Members retired (the newest first) take no new
        message from the moment it is called and stop once they have handled what they had
        queued: nothing queued is lost. For a pool spanning nodes this sets this node's members.
        """
        _check_size(size)
        if self._closed:
            raise ActorDeadError(f"pool {self.path} is stopped", actor=self.path)
        source = self._source
        if source is not None and source.owns_members:
            await source.resize(size)
            self._target = size
            self._dirty = True
            return
        if self._resizing is None:
            self._resizing = asyncio.Lock()
        async with self._resizing:  # one resize at a time: each counts the members first
            serving = self._serving()
            if size >= len(serving):
                await self._grow(size)
                return
            self._target = size
            retired = serving[size:]
            self._retiring.update(retired)
            self._dirty = True  # no new message from now on
            await asyncio.gather(*(cell.stop(drain=True) for cell in retired))

    def _rebuild(self) -> None:
        self._dirty = False
        slots: list[str] = []
        refs: list[Any] = []
        loads: list[Cell | None] = []
        retiring = self._retiring
        if not self._closed:
            for slot, cell in self._cells.items():
                if cell.accepting and cell not in retiring:
                    slots.append(slot)
                    refs.append(cell.ref)
                    loads.append(cell)
            source = self._source
            if source is not None:
                for slot, ref in source.members():
                    slots.append(slot)
                    refs.append(ref)
                    loads.append(None)
        self._slots, self._refs, self._loads = slots, refs, loads
        if self._routing is _HASH and slots:
            ring = self._source.ring(slots) if self._source is not None else None
            self._ring = ring or HashRing.hashed(slots)

    @property
    def members(self) -> list[Ref[A]]:
        """Refs of the members the pool routes to now (this node's first)."""
        self._current()
        return list(self._refs)

    @property
    def routing(self) -> str:
        """How the pool picks a member (``"round_robin"``, ``"least_busy"``, ...)."""
        return self._routing

    # --- routing ------------------------------------------------------------------------------

    def _current(self) -> int:
        source = self._source
        if self._dirty or (source is not None and source.changed()):
            self._rebuild()
        return len(self._refs)

    def _pick(self, message: Any, room: bool = False) -> int:
        """The index of the member for ``message`` (``room``: prefer one whose mailbox has room)."""
        source = self._source
        if self._dirty or (source is not None and source.changed()):
            self._rebuild()
        n = len(self._refs)
        if n == 0:
            raise ActorDeadError(f"pool {self.path} has no member", actor=self.path)
        routing = self._routing
        if routing is _ROUND_ROBIN:
            i = self._next % n
            if room:
                for k in range(n):
                    cell = self._loads[(i + k) % n]
                    if cell is None or len(cell.queue) < cell.capacity:
                        i = (i + k) % n
                        break
            self._next = i + 1
            return i
        if routing is _LEAST_BUSY:
            loads = self._loads
            inflight = self._inflight
            start = self._next % n
            best, least = start, math.inf
            for k in range(n):
                j = (start + k) % n
                cell = loads[j]
                load = (
                    len(cell.queue) + cell.busy
                    if cell is not None
                    else inflight.get(self._slots[j], 0)
                )
                if load < least:
                    best, least = j, load
                    if not load:
                        break
            self._next = best + 1
            return best
        assert self._key is not None
        assert self._ring is not None
        key = self._key(message)
        point = source.point(key) if source is not None else None
        return self._ring.owner(key_hash(key) if point is None else point)

    def _gone(self, i: int) -> None:
        """The member at ``i`` refused a message before taking it: route around it."""
        self._dirty = True
        if self._loads[i] is None and self._source is not None:
            self._source.unreachable(self._slots[i])

    async def tell(self, message: Any, reply_to: Ref[Any] | None = None) -> None:
        """Send ``message`` to one member (waits while that member's mailbox is full).

        ``ActorDeadError`` when the pool has no member (stopped); a member that stopped meanwhile
        is skipped. What a member's ``tell`` raises otherwise (``MessageCapabilityError``...).
        The member's ``self.sender`` is ``reply_to`` or the sending actor, as for any ref.
        """
        i = self._pick(message)
        cell = self._loads[i]
        # The hot path: a local member with room, no trace to carry, no sender to remember
        # (sent from outside any actor, no reply_to) and so no grant to check.
        if (
            cell is not None
            and cell.tracer is None
            and reply_to is current_sender()  # type: ignore[comparison-overlap]  # both None
            and cell.post(message)
        ):
            return
        for attempt in range(len(self._refs) + 2):
            if attempt:
                i = self._pick(message)
            try:
                await self._refs[i].tell(message, reply_to)
                return
            except NoSuchActorError:
                self._gone(i)
            except ActorDeadError:  # never queued: send it again, to another member
                self._dirty = True
        raise ActorDeadError(f"pool {self.path}: no member took the message", actor=self.path)

    def tell_nowait(self, message: Any, reply_to: Ref[Any] | None = None) -> None:
        """Send ``message`` to one member now, or raise.

        ``MailboxFullError`` when the member picked is full (with round-robin and least-busy,
        when every member is), ``ActorDeadError`` when the pool has no member.
        """
        for _ in range(len(self._refs) + 2):
            i = self._pick(message, room=True)
            try:
                self._refs[i].tell_nowait(message, reply_to)
                return
            except NoSuchActorError:
                self._gone(i)
            except MailboxFullError:
                raise
            except ActorDeadError:
                self._dirty = True
        raise ActorDeadError(f"pool {self.path}: no member took the message", actor=self.path)

    async def ask(self, message: Any, *, timeout: Timeout = DEFAULT) -> Any:
        """Send ``message`` to one member and return its handler's result.

        As a member's ``ask`` (``TimeoutError`` after ``timeout``, the handler's error...). An
        ask that a member refused before taking it is sent to another member; one it took
        answers with whatever happened to it.
        """
        if timeout is not DEFAULT:
            _check_timeout(timeout)
        for _ in range(len(self._refs) + 2):
            i = self._pick(message, room=True)
            ref = self._refs[i]
            if self._loads[i] is not None:
                if not ref.is_alive:
                    self._dirty = True
                    continue
                return await ref.ask(message, timeout=timeout)
            slot = self._slots[i]
            inflight = self._inflight
            inflight[slot] = inflight.get(slot, 0) + 1
            try:
                return await ref.ask(message, timeout=timeout)
            except NoSuchActorError:
                self._gone(i)
            finally:
                left = inflight.get(slot, 1) - 1
                if left:
                    inflight[slot] = left
                else:
                    inflight.pop(slot, None)
        raise ActorDeadError(f"pool {self.path}: no member took the message", actor=self.path)

    async def broadcast(self, message: Any) -> int:
        """Tell ``message`` to every member; returns how many took it.

        Members that stopped meanwhile are skipped (and not counted).
        """
        self._current()
        sent = 0
        for ref in list(self._refs):
            try:
                await ref.tell(message)
            except ActorDeadError:
                self._dirty = True
                continue
            sent += 1
        return sent

    # --- the Ref contract ---------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The path of the pool's supervisor (its members' parent), ``/<name>`` for a named pool."""
        if self._supervisor is not None:
            return self._supervisor.path
        return f"/{self._name}"

    @property
    def is_alive(self) -> bool:
        """Whether the pool has a member to route to now."""
        return not self._closed and self._current() > 0

    def __repr__(self) -> str:
        return (
            f"<PoolRef {self.path} {self._class.__qualname__} x{len(self._refs)} {self._routing}>"
        )

    def __eq__(self, other: object) -> bool:
        return other is self

    def __hash__(self) -> int:
        return id(self)

    def __swarm_wire__(self, node: WireNode) -> RefForm:
        """The pool on the wire: a named pool spanning nodes, by its name (see the class doc).

        ``TypeError`` for any other pool: its members cannot be reached from another process
        (send one of ``members`` instead), or, with consistent hashing, its key function
        cannot travel.
        """
        form = self._source.wire_form(self) if self._source is not None else None
        if form is None or self._routing is _HASH:
            raise TypeError(
                "only a named round-robin or least-busy pool of a system with nats= can be sent "
                "to another process: send one of pool.members, or open the pool there with "
                "system.pool(..., name=...)"
            )
        return form


async def open_pool(
    pool: PoolRef[A], size: int, supervisor: str | None, source: MemberSource | None
) -> PoolRef[A]:
    """Start ``pool``'s members (its supervisor named ``supervisor``), or take ``source``'s."""
    return await pool._open(size, supervisor, source)


def _check_size(size: object) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise InvalidArgumentError(
            f"a pool's size must be an int >= 1, got {size!r} (stop() the pool to end it)"
        )


def check_pool(
    actor_class: object,
    size: object,
    routing: object,
    key: object,
    supervision: object,
    name: object,
) -> None:
    """``InvalidArgumentError`` (``TypeError`` for a class) for a pool that cannot be made."""
    if not (isinstance(actor_class, type) and issubclass(actor_class, Actor)):
        raise TypeError(f"expected an Actor subclass, got {actor_class!r}")
    if actor_class.max_concurrency > 1 or actor_class.stashing:
        # Members run in _MemberCell, one message at a time and without a stash.
        raise InvalidArgumentError(
            f"{actor_class.__qualname__}: a pool's members handle one message at a time and "
            "have no stash, so max_concurrency > 1 and stash=True are not supported in a pool "
            "yet; start the actor itself (max_concurrency=N runs N calls at once)"
        )
    _check_size(size)
    if routing not in ROUTINGS:
        raise InvalidArgumentError(
            f"routing must be one of {', '.join(map(repr, ROUTINGS))}, got {routing!r}"
        )
    if routing == _HASH and not callable(key):
        raise InvalidArgumentError(
            'routing="consistent_hash" needs key=, a function of the message returning its '
            "routing key (str, bytes or int), e.g. key=lambda m: m.user"
        )
    if routing != _HASH and key is not None:
        raise InvalidArgumentError(f'key= is for routing="consistent_hash", not {routing!r}')
    if supervision is not None and not isinstance(supervision, OneForOne):
        raise InvalidArgumentError(
            f"supervision must be OneForOne(...) or AllForOne(...), got {supervision!r}"
        )
    if name is not None and (not isinstance(name, str) or "~" in name or "/" in name or not name):
        raise InvalidArgumentError(
            f"a pool's name must be a non-empty actor name without '~' or '/', got {name!r}"
        )
