"""Type stubs for the Rust extension ``swarm_actors._tuplecore``.

Import the public names from ``swarm_actors``; this module is private.
"""

from collections.abc import Callable, Iterable, Sequence
from typing import Any, final

from typing_extensions import disjoint_base

__all__ = [
    "ANY",
    "AnyType",
    "Capability",
    "SpaceStats",
    "TupleSpace",
    "__version__",
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
    """A Linda tuple space owned by Rust (the synchronous core; use ``swarm_actors.TupleSpace``)."""

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
    def _put_back(self, tuple: Sequence[Any]) -> None: ...
