"""The contracts between the engine and the layers that plug into it.

``Ref`` is what every ref implements, whatever it points at: a local actor (``ActorRef``), an
actor on another node (``RemoteRef``), a virtual actor of this process (``VirtualRef``) or of
the cluster (``PlacedRef``). The four are siblings: none is a subclass of another, each has
what it can mean (``stats()`` only where the counters live, on ``ActorRef``) and describes
itself for the wire (``__swarm_wire__``), so that the transport never asks which kind it has.

``WireNode`` is what a ref is told about the node it is being sent from, and ``Placer`` what
the virtual-actor registry asks the cluster about actors placed on shards
(``VirtualRegistry.attach_placer``). Both are implemented by the NATS layer; the engine only
calls them. Nothing here imports the wire format: a ref's wire form is a plain tuple that the
NATS layer's codec packs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    from swarm_actors._config import Timeout

__all__ = ["Placer", "Ref", "RefForm", "WireNode"]

A_co = TypeVar("A_co", covariant=True)

RefForm = tuple[str, str, str, str, tuple[str, ...]]
"""A ref as the wire carries it: ``(node, name, path, role, classes)``.

``node`` is the id of the node the actor runs on, or the placer's marker for a placed virtual
actor (then ``name`` is its virtual target); ``role`` and ``classes`` are what the receiving
node checks ``may_message`` against.
"""


class WireNode(Protocol):
    """The node a ref is being encoded on: what a ref needs to know to describe itself."""

    @property
    def node_id(self) -> str:
        """Id of this node (where its local named actors are reached)."""
        ...

    def virtual_address(self, agent: int) -> tuple[str, str] | None:
        """``(node, name)`` that reach the local virtual actor ``agent`` from anywhere.

        ``None`` when nothing does: the actor is not placed by the cluster (a ``batch_spawn``
        member, or a ``system.virtual`` actor).
        """
        ...


@runtime_checkable
class Ref(Protocol[A_co]):
    """A handle to an actor, whatever and wherever it is: the API every ref kind shares.

    Refs are hashable and compare equal when they point at the same actor. ``Ref[Counter]``
    says which actor class it reaches (for readers and type checkers; nothing checks it at run
    time). In a message that crosses processes, annotate a ref field ``Ref[...]``: the
    receiving side gets whichever kind reaches the actor from there.
    """

    @property
    def path(self) -> str:
        """The actor's path (``/parent/child``; ``/Class:key`` for a virtual actor)."""
        ...

    @property
    def is_alive(self) -> bool:
        """Whether messages sent now can reach the actor, as far as this process knows."""
        ...

    async def tell(self, message: Any, reply_to: Ref[Any] | None = None) -> None:
        """Send ``message`` without waiting for it to be handled (may wait for room).

        The handler's ``self.sender`` is ``reply_to`` if given, else the sending actor's ref
        (``None`` when sent from outside any actor). ``reply_to`` may be given by position, as
        Akka's ``tell(msg, sender)``: a keyword-only parameter would cost every tell about 200
        instructions (CPython 3.11 fills keyword-only defaults from a dict and does not
        specialize such calls), and ``tell`` is the hottest path.
        """
        ...

    def tell_nowait(self, message: Any, reply_to: Ref[Any] | None = None) -> None:
        """Send ``message`` now, or raise instead of waiting (``reply_to``: as for ``tell``)."""
        ...

    async def ask(self, message: Any, *, timeout: Timeout = ...) -> Any:
        """Send ``message`` and return the handler's result (``TimeoutError`` after ``timeout``)."""
        ...

    def __eq__(self, other: object) -> bool: ...

    def __hash__(self) -> int: ...

    def __swarm_wire__(self, node: WireNode) -> RefForm:
        """The ref as the wire carries it, sent from ``node``.

        ``TypeError`` if it cannot reach its actor from another process (a local virtual
        actor that the cluster does not place).
        """
        ...


class Placer(Protocol):
    """The cluster, as the virtual-actor registry sees it: actors placed on shards.

    ``VirtualRegistry.attach_placer`` installs it; the registry calls it only for agents
    marked with ``VirtualRegistry.place``.
    """

    def check_owner(self, agent: int) -> None:
        """Raise (``NotOwnerError``) unless this node may activate ``agent`` now."""
        ...

    async def fetch(self, agent: int) -> bytes | None:
        """The state ``agent`` was last passivated with on any node (``None``: never)."""
        ...

    def on_seal(self, agent: int, data: bytes) -> None:
        """``agent`` was passivated here with state ``data``: keep it for the next owner."""
        ...

    def release_soon(self, agent: int) -> None:
        """``agent`` may have become idle: forget it soon if its state is in the store."""
        ...
