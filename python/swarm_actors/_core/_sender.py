"""The sender of the message being handled: what ``Actor.sender`` returns.

A message sent from an actor's code (a handler, ``on_start``, a task a handler started)
remembers who sent it, in its mailbox entry (``Ask.origin``); a message sent from outside
any actor travels bare, as before, at no extra cost. An origin is one of:

* the sending ``Cell`` (a local actor started with ``start``): turned into its ``ActorRef``
  only if the handler reads ``self.sender`` (most never do);
* the sender's ``VirtualRef`` or ``PlacedRef``, for a virtual actor: it is reached through
  those (an activation may be passivated before the reply comes), made when it sends;
* the ref given as ``reply_to`` (``ref.tell(msg, reply_to=other)``), which wins over the
  sending actor;
* the ref a remote node described on the wire (``__swarm_wire__``): a ``RemoteRef`` back to
  the sending actor, or a ``PlacedRef``.

While a handler runs, ``ORIGIN`` holds ``(cell, origin)``: the engine sets it around the
handler's first step, and a handler that suspends keeps a copy of that context wherever it is
resumed (a ``Cell`` wraps it in ``InContext``, as a traced handler; a ``TrackedCell``, the cell
of an actor with ``max_concurrency`` > 1 or a stash, runs each suspended call in a task of its
own made in a copy of that context). A message handled without a sender has no ``ORIGIN`` in
its context at all: nothing is set for it (a tell from outside any actor pays nothing).

It is a context variable and not an attribute of the actor because an attribute is one value
per actor: with several handler calls of one actor in flight (``max_concurrency`` > 1), the
call that suspended first would, once resumed, read the sender of whichever call started last.
A context belongs to one handler call, so each call reads its own sender however the calls
interleave. The cell in the pair is the actor the value was set for: code that runs in that
context for another actor (``on_start`` of a child started from the handler, an actor asked
inline) reads ``None`` rather than a sender that is not its own.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from swarm_actors._exceptions import InvalidArgumentError

if TYPE_CHECKING:
    from swarm_actors._core._cell import Cell
    from swarm_actors._core._contract import Ref

__all__ = ["ORIGIN", "check_reply_to", "origin_of", "sender_of"]

ORIGIN: ContextVar[tuple[Cell, Any] | None] = ContextVar("swarm_actors_origin", default=None)
"""``(cell, origin)`` while ``cell`` handles a message that has a sender (else unset)."""


def origin_of(cell: Cell) -> Any:
    """How a message sent by the actor of ``cell`` remembers it (see the module docstring)."""
    if cell.virtual_id is None:
        return cell
    return cell.dispatcher.virtuals.ref_of(cell)


def sender_of(cell: Cell) -> Ref[Any] | None:
    """The sender of the message ``cell``'s actor is handling in this context, or ``None``."""
    bound = ORIGIN.get()
    if bound is None or bound[0] is not cell:
        return None
    origin = bound[1]
    if hasattr(type(origin), "__swarm_wire__"):  # a ref already (the Ref contract)
        ref: Ref[Any] = origin
        return ref
    return origin.ref  # type: ignore[no-any-return]  # a local Cell: its ActorRef


def check_reply_to(reply_to: object) -> Any:
    """``reply_to`` if it is a ref, else ``InvalidArgumentError`` naming the fix."""
    if not hasattr(type(reply_to), "__swarm_wire__"):
        raise InvalidArgumentError(
            f"reply_to must be an actor ref (an ActorRef, RemoteRef, VirtualRef or PlacedRef, "
            f"e.g. self.ref), got {type(reply_to).__qualname__}"
        )
    return reply_to
