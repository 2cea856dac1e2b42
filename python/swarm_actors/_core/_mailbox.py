"""What travels through a mailbox, and the pacing of inline asks.

Its own module so that both the cell (which handles entries) and the refs (which make them)
import it, and neither imports the other at run time for it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from opentelemetry.context import Context as OtelContext

__all__ = ["INLINE_CHECKPOINT", "Ask"]

INLINE_CHECKPOINT = 128
"""Every this many asks answered inline, the asker yields to the event loop once.

An ask to an idle actor whose handler does not suspend completes without an event-loop
iteration. A loop of such asks would otherwise starve every other task: timers (its own
``asyncio.timeout`` included), NATS heartbeats, lease renewals. In ``bench/bench_actors.py``
one ``sleep(0)`` per 128 asks left sequential inline asks unchanged (803k/s, 802k/s) and cost
64 concurrent inline askers 5% (811k/s, 773k/s: they now interleave). The count is per system
(``Dispatcher.inline_left`` in ``_cell``).
"""


class Ask(msgspec.Struct):
    """A mailbox entry that expects a reply (``future``), carries a trace context, a sender.

    A tell is queued bare unless it has a sender (``origin``: it was sent from an actor or
    with ``reply_to``, see ``_sender``) or its sender's trace context travels with it (see
    ``_telemetry``): a tell from outside any actor costs no entry. A ``msgspec.Struct`` for
    its constructor, written in C: a third of a Python ``__init__``'s cost, on every tell
    from an actor and every queued ask.
    """

    message: Any
    future: asyncio.Future[Any] | None
    context: OtelContext | None = None
    origin: Any = None
    """Who sent it (``None``: nobody to reply to); ``_sender`` says what it can be."""
