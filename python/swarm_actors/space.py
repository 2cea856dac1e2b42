"""The tuple space: Linda coordination with an index owned by Rust.

``TupleSpace`` holds tuples of ``int``, ``float``, ``str``, ``bytes``, ``bool`` and ``None``;
templates match them by value, by type formal (``int``, ``str``, ...) or with ``ANY``.
``TupleSpace.restrict`` derives a ``Capability``-limited handle (lanes, read, take, write);
``TupleSpace.stats`` returns ``SpaceStats``. Every ``ActorSystem`` has one (``system.space``,
``self.space`` in actors, limited by the class's ``swarm_actors.SpaceGrant``). Errors are the
``SpaceError`` family of ``swarm_actors.errors``.
"""

from swarm_actors._public import publish as _publish
from swarm_actors._space import TupleSpace
from swarm_actors._tuplecore import ANY, AnyType, Capability, SpaceStats

__all__ = ["ANY", "AnyType", "Capability", "SpaceStats", "TupleSpace"]

# The Rust classes name this module themselves (``#[pyclass(module = ...)]``).
_publish(__name__, TupleSpace)
