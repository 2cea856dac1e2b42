"""Type stubs for the Rust extension ``swarm_actors._tuplecore``.

This module is private: import its names from the public modules that export them,
``swarm_actors.space`` (the tuple space; its classes report that module), ``swarm_actors.tree``
(the agent hierarchy; likewise) and ``swarm_actors.hilbert``. ``TupleSpace`` here is the
synchronous core that ``swarm_actors.space.TupleSpace`` extends.
"""

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Literal, SupportsIndex, TypeAlias, final

from typing_extensions import disjoint_base

__all__ = [
    "ANY",
    "AgentInfo",
    "AgentTree",
    "AnyType",
    "BatchInfo",
    "Capability",
    "SpaceStats",
    "TreeStats",
    "TupleSpace",
    "__version__",
    "hilbert_decode",
    "hilbert_decode_batch",
    "hilbert_encode",
    "hilbert_encode_batch",
    "state_change_bytes",
]

__version__: str

# --- tuple space --------------------------------------------------------------------------

@final
class AnyType:
    """The type of ``ANY``, the template wildcard that matches any field value."""

ANY: AnyType
"""Template wildcard: matches any value in its position."""

@final
class SpaceStats:
    """Counters and sizes of a tuple space, as returned by ``TupleSpace.stats()``."""

    @property
    def tuples(self) -> int:
        """Tuples currently stored."""
    @property
    def waiters(self) -> int:
        """Blocked takers and readers."""
    @property
    def outs(self) -> int:
        """Tuples written, including those handed straight to a waiter."""
    @property
    def takes(self) -> int:
        """Tuples removed by a take, including hand-offs."""
    @property
    def reads(self) -> int:
        """Tuples returned by reads, including copies handed to waiting readers."""
    @property
    def handoffs(self) -> int:
        """Tuples handed straight to a waiting taker without being stored."""
    @property
    def expired(self) -> int:
        """Tuples reclaimed because their lease expired."""
    @property
    def signatures(self) -> int:
        """Distinct signatures (arity and field types) seen."""
    @property
    def postings(self) -> int:
        """Index keys currently held."""

@final
class Capability:
    """The rights of a restricted handle (see ``TupleSpace.restrict``)."""

    @property
    def lanes(self) -> tuple[Any, ...] | None:
        """The lanes granted, or ``None`` when every lane is."""
    @property
    def read(self) -> bool:
        """Whether reads are granted."""
    @property
    def take(self) -> bool:
        """Whether takes are granted."""
    @property
    def write(self) -> bool:
        """Whether writes are granted."""

@disjoint_base
class TupleSpace:
    """A Linda tuple space owned by Rust (the core of ``swarm_actors.space.TupleSpace``)."""

    def __new__(cls, *, clock: Callable[[], float] | None = None) -> TupleSpace: ...
    def out(self, tuple: Sequence[Any], *, ttl: float | None = None) -> None:
        """Write ``tuple``; with ``ttl`` (seconds) it expires and is reclaimed after that long."""
    def take_nowait(self, template: Sequence[Any]) -> tuple[Any, ...] | None:
        """Remove and return the oldest tuple matching ``template``, or ``None``."""
    def read_nowait(self, template: Sequence[Any]) -> tuple[Any, ...] | None:
        """Return the oldest tuple matching ``template`` without removing it, or ``None``."""
    def take_all(
        self, template: Sequence[Any], *, limit: int | None = None
    ) -> list[tuple[Any, ...]]:
        """Remove and return up to ``limit`` matching tuples (all when ``None``), oldest first."""
    def read_all(
        self, template: Sequence[Any], *, limit: int | None = None
    ) -> list[tuple[Any, ...]]:
        """Return up to ``limit`` matching tuples (all when ``None``), oldest first."""
    def count(self, template: Sequence[Any]) -> int:
        """Number of stored tuples matching ``template``."""
    def __len__(self) -> int:
        """Number of stored (unexpired) tuples."""
    def stats(self) -> SpaceStats:
        """Counters and sizes."""
    @property
    def capability(self) -> Capability | None:
        """The rights of this handle, or ``None`` when it is unrestricted."""
    def restrict(
        self,
        *,
        lanes: Iterable[Any] | None = None,
        read: bool = True,
        take: bool = True,
        write: bool = True,
    ) -> Any:
        """A handle on the same space limited to ``lanes`` and the granted operations.

        Returns an instance of the caller's class. Restricting a restricted handle can only
        narrow it.
        """
    def _add_waiter(self, template: Sequence[Any], take: bool, future: Any) -> int: ...
    def _remove_waiter(self, waiter_id: int) -> bool: ...
    def _put_back(self, tuple: Sequence[Any], expires: int | None) -> None: ...

# --- Hilbert mapping ----------------------------------------------------------------------

def hilbert_encode(point: Sequence[SupportsIndex], bits: SupportsIndex) -> int:
    """Return the Hilbert index of one point.

    ``point`` is a sequence of ``dims`` non-negative ints, each ``< 2**bits``; ``dims`` is
    ``len(point)``. The index is an int in ``range(2**(dims * bits))``. Requires
    ``1 <= bits <= 64`` and ``dims * bits <= 128``; with ``dims == 1`` the curve is the
    identity and ``bits`` may go up to 128.

    Raises ``CoordinateError`` for a value outside the domain (negative, too large, a bool or
    not an int, or bad ``bits``) and ``ArityError`` if ``point`` is not a sequence.
    """

def hilbert_decode(
    index: SupportsIndex, dims: SupportsIndex, bits: SupportsIndex
) -> tuple[int, ...]:
    """Return the point at a Hilbert index, as a tuple of ``dims`` ints.

    ``index`` must be an int in ``range(2**(dims * bits))``. Requires ``dims >= 1``,
    ``1 <= bits <= 64`` and ``dims * bits <= 128``; with ``dims == 1`` the curve is the
    identity and ``bits`` may go up to 128. Inverse of ``hilbert_encode``.

    Raises ``CoordinateError`` for an index, ``dims`` or ``bits`` outside the domain.
    """

def hilbert_encode_batch(
    points: Iterable[Sequence[SupportsIndex]], bits: SupportsIndex
) -> list[int]:
    """Return the Hilbert indices of many points, as a list of ints (one per point, in order).

    ``points`` is an iterable of sequences of non-negative ints; all must have the same length
    ``dims``. Same domain as ``hilbert_encode``. Lists of tuples (or lists) are read fastest;
    the curve is computed with the GIL released for large batches.

    Raises ``ArityError`` naming the first point whose length differs from the first point's
    (or that is not a sequence), and ``CoordinateError`` naming the point and coordinate of the
    first value outside the domain.
    """

def hilbert_decode_batch(
    indices: Iterable[SupportsIndex], dims: SupportsIndex, bits: SupportsIndex
) -> list[tuple[int, ...]]:
    """Return the points at many Hilbert indices, as a list of tuples of ``dims`` ints.

    ``indices`` is an iterable of ints, each in ``range(2**(dims * bits))``. Same domain as
    ``hilbert_decode``, of which this is the batch form; the curve is computed with the GIL
    released for large batches.

    Raises ``CoordinateError`` naming the position of the first index outside the domain, or
    for bad ``dims`` / ``bits``.
    """

# --- agent hierarchy ----------------------------------------------------------------------

_AgentStatus: TypeAlias = Literal["virtual", "active", "compressed"]

@final
class AgentInfo:
    """Everything about one agent, as returned by ``AgentTree.info()``.

    Immutable; compares and hashes by value.
    """

    @property
    def id(self) -> int:
        """The agent's id."""
    @property
    def parent(self) -> int | None:
        """The parent's id, ``None`` for the root."""
    @property
    def kind(self) -> str:
        """The agent's kind (``"root"`` for the root)."""
    @property
    def depth(self) -> int:
        """Depth below the root (the root is at depth 0)."""
    @property
    def path(self) -> tuple[int, ...]:
        """Child ordinals from the root down to this agent (``()`` for the root)."""
    @property
    def hilbert(self) -> int:
        """Hilbert index of the path's first ``dims`` ordinals.

        Zero-padded when the path is shorter, each ordinal clamped to ``2**bits - 1``.
        """
    @property
    def status(self) -> _AgentStatus:
        """``"virtual"``, ``"active"`` or ``"compressed"``, when ``info()`` was called."""
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class BatchInfo:
    """What ``AgentTree.batch_spawn()`` reserved.

    A full subtree of ``depth`` levels with ``branching`` children per node, numbered level
    by level from ``first_id``. Immutable; compares and hashes by value.
    """

    @property
    def parent(self) -> int:
        """The agent the batch hangs below."""
    @property
    def kind(self) -> str:
        """Kind of every node of the batch."""
    @property
    def depth(self) -> int:
        """Number of levels."""
    @property
    def branching(self) -> int:
        """Children per node."""
    @property
    def first_id(self) -> int:
        """First id of the batch (the first child of ``parent``)."""
    @property
    def count(self) -> int:
        """Number of nodes in all levels; the ids are ``range(first_id, first_id + count)``."""
    @property
    def leaf_first_id(self) -> int:
        """First id of the last level."""
    @property
    def leaves(self) -> int:
        """Number of nodes in the last level (``branching ** depth``)."""
    def level_range(self, level: int) -> range:
        """The ids of ``level`` (1 to ``depth``; level 1 holds the children of ``parent``).

        Raises ``InvalidArgumentError`` for a level outside ``1..depth``.
        """
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class TreeStats:
    """Agent counts of a tree, as returned by ``AgentTree.stats()``.

    Immutable; compares and hashes by value.
    """

    @property
    def virtual(self) -> int:
        """Batch nodes never materialized."""
    @property
    def active(self) -> int:
        """Active agents, the root included."""
    @property
    def compressed(self) -> int:
        """Compressed agents."""
    @property
    def total(self) -> int:
        """All agents: ``virtual + materialized``."""
    @property
    def materialized(self) -> int:
        """Agents held in memory: ``active + compressed``."""
    @property
    def batches(self) -> int:
        """Number of batches spawned."""
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class AgentTree:
    """An agent hierarchy where a million agents cost almost nothing.

    Ids are non-negative ints, handed out in order and never reused; the root is id 0 (kind
    ``"root"``, always active). An agent is *virtual* (a node of a batch never touched: it
    costs nothing), *active* (materialized, tracked for least-recently-used pruning) or
    *compressed* (its state held as a compact, validated token). ``touch`` materializes and
    marks use, ``prune`` names the agents to passivate, ``compress`` / ``restore`` passivate
    and revive them, ``token`` / ``load_token`` move a compressed agent between trees.

    Each parent numbers its children 0, 1, 2… in creation order; an agent's ``path`` is the
    list of those ordinals from the root, and its Hilbert index is computed from the first
    ``dims`` of them on a curve of ``bits`` bits per dimension (``dims * bits <= 128``).

    A refused call raises a subclass of ``AgentError`` or ``InvalidArgumentError`` and leaves
    the tree unchanged. Ids and counts must be ints in ``0..2**64``: a negative or too large
    int raises ``InvalidArgumentError``, anything else ``TypeError``.
    """

    def __new__(cls, *, dims: int = 4, bits: int = 32) -> AgentTree:
        """Create a tree holding only the root.

        ``dims`` (>= 1) and ``bits`` (1 to 64) shape the Hilbert curve used for
        ``info().hilbert``; ``dims * bits`` must not exceed 128.
        """
    @property
    def root(self) -> int:
        """Id of the root agent (0)."""
    @property
    def dims(self) -> int:
        """Hilbert dimensions."""
    @property
    def bits(self) -> int:
        """Bits per Hilbert dimension."""
    def spawn(self, parent: int, kind: str) -> int:
        """Spawn an active agent of ``kind`` (a non-empty string) below ``parent``.

        Returns its id. The parent may be in any state and keeps it. The new agent is the
        most recently used.
        """
    def batch_spawn(self, parent: int, kind: str, depth: int, branching: int) -> BatchInfo:
        """Describe a full subtree below ``parent`` without creating it.

        ``branching`` children of ``parent``, ``branching`` children of each, for ``depth``
        levels (1 to 64). Its nodes take the next ``count`` ids level by level and are all
        virtual. Constant time and memory, even for a billion leaves. Raises
        ``InvalidArgumentError`` for ``depth`` or ``branching`` 0, or when the subtree would
        exhaust the 64-bit id space.
        """
    def info(self, id: int) -> AgentInfo:
        """Everything about agent ``id`` (virtual ones are resolved, not materialized)."""
    def status(self, id: int) -> _AgentStatus:
        """``"virtual"``, ``"active"`` or ``"compressed"``."""
    def touch(self, id: int) -> None:
        """Record a use of ``id`` in constant time.

        A virtual agent becomes active, an active one the most recently used. Raises
        ``AgentStateError`` for a compressed agent (restore it first).
        """
    def prune(self, max_active: int) -> list[int]:
        """The least recently used active agents beyond ``max_active``, oldest first.

        For the caller to snapshot and ``compress``; nothing changes. The root counts towards
        ``max_active`` but is never returned. Cost is proportional to the number returned.
        """
    def compress(self, id: int, state: bytes) -> None:
        """Compress the active agent ``id``, keeping ``state`` as a validated token.

        LZ4 is used when that shrinks the token of a state of 128 bytes or more (smaller ones
        are stored as they are: trying costs more than it saves). The agent leaves the LRU
        order.
        """
    def restore(self, id: int) -> bytes:
        """Restore the compressed agent ``id`` and return its state, byte-identical.

        It becomes active and the most recently used. Raises ``CorruptStateError`` (the agent
        stays compressed) if the length or digest does not match.
        """
    def activate(self, id: int) -> bytes | None:
        """Make ``id`` active and the most recently used, as an activation needs it, in one call.

        A compressed agent is restored and its state returned (as ``restore``); a virtual or
        active one is touched (as ``touch``) and ``None`` returned. Raises as they do
        (``CorruptStateError``: the agent stays compressed).
        """
    def token(self, id: int) -> bytes:
        """The serialized token of the compressed agent ``id``.

        A versioned header, the xxh3-128 digest and length of the state, and the payload.
        ``load_token`` on another tree makes the same id compressed with this state.
        """
    def load_token(self, id: int, token: bytes) -> None:
        """Validate ``token`` completely and make ``id`` compressed with its state.

        ``id`` must be virtual or compressed (its token is replaced); an active agent must be
        compressed first. Raises ``CorruptStateError`` for invalid, truncated or altered
        bytes; nothing changes then.
        """
    def forget(self, id: int) -> None:
        """Forget the compressed, childless spawned agent ``id`` for good.

        Its token and record are dropped and its id names no agent from then on
        (``UnknownAgentError``; ids are never reused): for states kept elsewhere. Raises
        ``AgentStateError`` unless it is compressed, ``InvalidArgumentError`` for a batch node or
        an agent with children.
        """
    def children(self, id: int) -> Iterator[int]:
        """The ids of the children of ``id`` that exist now, in ordinal order, lazily.

        A batch node's own children come first, then spawned children and batch blocks.
        Nothing is materialized.
        """
    def child_count(self, id: int) -> int:
        """Number of children of ``id``."""
    def stats(self) -> TreeStats:
        """Agent counts by status."""
    def __len__(self) -> int:
        """Number of agents, virtual ones included."""
    def __contains__(self, id: object, /) -> bool:
        """Whether ``id`` is an agent of this tree (``False`` for anything but an int >= 0)."""

# --- events ---------------------------------------------------------------------------------

def state_change_bytes(event: object) -> bytes:
    """The canonical protobuf bytes of ``event`` (a ``SwarmEvent`` with a ``StateChange``).

    Its change's ``hash`` left out: what ``state_hash`` hashes after ``prev_hash``.
    """
