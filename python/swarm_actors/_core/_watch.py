"""Death watch: an actor learns when another one ends (``Actor.watch`` -> ``Terminated``).

``self.watch(ref)`` asks for one ``Terminated(ref, reason)`` message when the actor behind
``ref`` ends; ``self.unwatch(ref)`` takes the request back. Each system keeps one
``DeathWatch`` (on its dispatcher, which every cell reaches), the only owner of the watch
tables of its cells:

* ``watchers``: for each watched cell of this system, who to tell when it ends: a callable per
  watch (``notify(reason)``), keyed by who watches. A local watcher's callable delivers
  ``Terminated`` into its mailbox; the NATS layer registers callables that send a notice to the
  watcher's node (``_nats._watch``).
* ``watching``: for each watcher cell of this system, the watches it made (key: the watched
  ref) and how to cancel each: ``unwatch``, and the watcher's own end, cancel them, so a
  stopped watcher leaves nothing behind on either side.

The cell calls ``ended`` once it is stopped (after ``on_stop``, once it is unregistered: a
watcher that looks the name up again finds it gone), and ``failed`` just before its
supervisor stops it for a failure. Each ref kind that can be watched says how
(``__swarm_watch__``, see ``Watchable``): an ``ActorRef`` registers here, a ``RemoteRef`` with
the node that runs the actor. Virtual refs cannot be watched (see ``DeathWatch.watch``).

Costs: nothing for actors that nobody watches but two dict lookups when they stop; a watch is
two dict entries (a remote one also a small entry on the watched actor's node).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args

import msgspec

from swarm_actors._core._contract import Ref
from swarm_actors._exceptions import InvalidArgumentError
from swarm_actors._log import get_logger

if TYPE_CHECKING:
    from swarm_actors._core._cell import Cell

__all__ = ["REASONS", "DeathWatch", "Reason", "Terminated", "Watchable"]

log = get_logger("swarm_actors")

Reason = Literal["stopped", "failed", "node_down", "already_dead"]
"""Why a watched actor is gone; see ``Terminated.reason``."""

REASONS: frozenset[str] = frozenset(get_args(Reason))

Notify = Callable[["Reason"], None]
"""Tells one watcher that the watched actor ended, and why (a ``Reason``)."""

Cancel = Callable[[], None]
"""Takes one watch back (the watcher unwatched, or stopped)."""


class Terminated(msgspec.Struct, frozen=True):
    """The actor behind ``ref`` is gone: sent to each actor that watched it, once.

    ``ref`` is the ref the watcher passed to ``watch`` (equal to it, so it can be looked up in
    the watcher's own tables). ``reason`` says how it ended:

    * ``"stopped"``: it was stopped: ``ref.stop()``, its parent stopping, its system stopping
      (also on another node, when that node shuts down cleanly);
    * ``"failed"``: its supervisor stopped it after a failure (``Directive.STOP``, or a failure
      escalated past the top level);
    * ``"node_down"``: the node it ran on left the cluster without saying so (killed,
      disconnected): detected through the cluster's liveness, within about ``Cluster.node_ttl``
      seconds (the node's heartbeat must expire, so a node that is only slow is never reported);
    * ``"already_dead"``: it was not running when ``watch`` was called (or never existed on the
      node the ref names): delivered at once, how it ended is not known.

    It arrives in the watcher's mailbox like any message, after what is already queued (so
    after the messages the watched actor sent before it ended, but for those still waiting for
    room in a full mailbox: ``Terminated`` itself never waits for room), and is handled by a
    ``@handler`` for ``Terminated`` (or ``on_receive``). ``watch`` refuses an actor that has
    neither, rather than let the message be lost (Akka fails such a watcher with a
    ``DeathPactException``; dropping it with a log line would hide the bug until an actor dies):
    the mistake shows where it is made, with the handler to add.
    """

    ref: Ref[Any]
    """The watched ref, as given to ``watch``."""
    reason: Reason
    """``"stopped"``, ``"failed"``, ``"node_down"`` or ``"already_dead"`` (see above)."""


class Watchable(Protocol):
    """A ref kind that can be watched: how ``Actor.watch`` registers a watch of its actor.

    Optional beside ``Ref``: a ref without ``__swarm_watch__`` cannot be watched.
    """

    def __swarm_watch__(self, watcher: Cell) -> Cancel | None:
        """Register ``watcher``'s watch of this ref's actor; how to cancel it.

        ``None``: nothing to cancel, because ``Terminated`` was delivered already (the actor
        is gone). Raises ``InvalidArgumentError`` for an actor that cannot be watched.
        """
        ...


_NOT_A_REF = (
    "watch takes the ref of a started actor (an ActorRef from system.start / start_child / "
    "lookup, or a RemoteRef from lookup / resolve), got {what}"
)
_VIRTUAL = (
    "{ref!r} cannot be watched: only refs of started actors can (ActorRef, RemoteRef); a "
    "virtual actor is never dead (passivation is not death: its next message activates it "
    "again), so no Terminated would ever come; watch actors started with system.start or "
    "start_child"
)


class DeathWatch:
    """The watch tables of one system's cells (see the module docstring)."""

    __slots__ = ("_failed", "_watchers", "_watching")

    def __init__(self) -> None:
        self._watchers: dict[Cell, dict[Hashable, Notify]] = {}
        self._watching: dict[Cell, dict[Hashable, Cancel]] = {}
        self._failed: set[Cell] = set()

    # --- what Actor.watch / unwatch call --------------------------------------------------

    def watch(self, watcher: Cell, ref: object) -> None:
        """``watcher`` watches the actor behind ``ref`` (see ``Actor.watch``)."""
        self._check_watcher(watcher)
        hook = getattr(type(ref), "__swarm_watch__", None)
        if hook is None:
            if isinstance(ref, Ref) and not isinstance(ref, type):
                raise InvalidArgumentError(_VIRTUAL.format(ref=ref))
            raise InvalidArgumentError(_NOT_A_REF.format(what=f"{ref!r} ({type(ref).__name__})"))
        if watcher.is_stopped():
            return  # its end already cleaned its watches: a new one would never be cancelled
        mine = self._watching.get(watcher)
        if mine is not None and ref in mine:
            return  # watched already: one Terminated
        cancel = hook(ref, watcher)
        if cancel is not None:
            self._watching.setdefault(watcher, {})[ref] = cancel

    def unwatch(self, watcher: Cell, ref: object) -> None:
        """``watcher`` takes its watch of ``ref`` back: no ``Terminated`` for it from now on.

        Also one already in the watcher's mailbox, not handled yet, is taken out. Unwatching
        a ref that is not watched does nothing.
        """
        mine = self._watching.get(watcher)
        cancel = mine.pop(ref, None) if mine is not None else None
        if cancel is not None:
            if not mine:
                del self._watching[watcher]
            cancel()
            return
        for item in watcher.queue:
            if type(item) is Terminated and item.ref == ref:
                watcher.withdraw(item)
                return

    def _check_watcher(self, watcher: Cell) -> None:
        if watcher.virtual_id is not None:
            raise InvalidArgumentError(
                f"{watcher.path} is a virtual actor: it cannot watch, since a watch would not "
                "survive its passivation; watch from an actor started with system.start or "
                "start_child"
            )
        if watcher.resolve(Terminated) is None:
            name = watcher.actor_class.__qualname__
            raise InvalidArgumentError(
                f"{name} has no handler for Terminated, so the watch's message would be lost: "
                f"add `@handler async def on_terminated(self, msg: Terminated) -> None` to {name}"
            )

    # --- what refs call -------------------------------------------------------------------

    def watch_cell(self, watcher: Cell, cell: Cell, ref: Any) -> Cancel | None:
        """A watch of ``cell``, an actor of this process, reported as ``ref``.

        ``cell`` may belong to another system of this process: its own system's tables hold
        its watchers.
        """
        if cell is watcher:
            raise InvalidArgumentError(
                f"{watcher.path} cannot watch itself: it would never handle its own Terminated"
            )
        if cell.is_stopped():
            self.deliver(watcher, ref, "already_dead")
            return None
        owner = cell.dispatcher.watches
        key = (watcher, ref)
        owner.add_watcher(cell, key, lambda reason: self.deliver(watcher, ref, reason))
        return lambda: owner.remove_watcher(cell, key)

    def add_watcher(self, cell: Cell, key: Hashable, notify: Notify) -> None:
        """Call ``notify(reason)`` once ``cell`` (of this system) ends; ``key`` takes it back."""
        self._watchers.setdefault(cell, {})[key] = notify

    def remove_watcher(self, cell: Cell, key: Hashable) -> None:
        """Forget the watch ``key`` of ``cell`` (it will not be notified)."""
        watchers = self._watchers.get(cell)
        if watchers is not None:
            watchers.pop(key, None)
            if not watchers:
                del self._watchers[cell]

    def deliver(self, watcher: Cell, ref: Any, reason: Reason) -> None:
        """The watch of ``ref`` by ``watcher`` (of this system) is over: ``Terminated`` now."""
        mine = self._watching.get(watcher)
        if mine is not None:
            mine.pop(ref, None)
            if not mine:
                del self._watching[watcher]
        # Past the mailbox's capacity, as the runtime's own notice: never lost to a full box.
        # A watcher that is stopped meanwhile refuses it (nobody is left to handle it).
        watcher.post_urgent(Terminated(ref, reason))

    # --- what cells call ------------------------------------------------------------------

    def failed(self, cell: Cell) -> None:
        """``cell``'s supervisor is about to stop it for a failure (its watchers learn why)."""
        if not cell.is_stopped():  # stopped meanwhile (by someone else): no ``ended`` to come
            self._failed.add(cell)

    def ended(self, cell: Cell) -> None:
        """``cell`` is stopped: notify its watchers, and cancel the watches it made."""
        reason: Reason = "failed" if cell in self._failed else "stopped"
        self._failed.discard(cell)
        watchers = self._watchers.pop(cell, None)
        if watchers is not None:
            for notify in watchers.values():
                try:
                    notify(reason)
                except Exception:  # one watcher's trouble is not the others'
                    log.exception("watch.notify_failed", actor=cell.path)
        watching = self._watching.pop(cell, None)
        if watching is not None:
            for cancel in watching.values():
                try:
                    cancel()
                except Exception:
                    log.exception("watch.cancel_failed", actor=cell.path)

    def counts(self) -> tuple[int, int]:
        """``(watched cells, watching cells)`` of this system (for tests: nothing leaks)."""
        return len(self._watchers), len(self._watching)
