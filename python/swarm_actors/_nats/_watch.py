"""Death watch across nodes: this node's watches of other nodes' actors, and theirs of its own.

The engine's ``DeathWatch`` (``_core._watch``) keeps who watches whom inside one process; this
module carries watches over the transport's existing subjects. No new subscription is needed:

* **Registering.** ``Actor.watch`` of a ``RemoteRef`` draws a random 63-bit watch id and asks
  the node running the actor (an ask of kind ``swarm:watch`` to the actor's name, body
  ``[watcher node, watch id]``, on that node's frame subject). That node registers the watch
  with its ``DeathWatch`` and answers with its incarnation. "No such actor" from it, while it
  answers liveness probes, means the actor is gone: ``Terminated("already_dead")`` at once.
* **Notifying.** When the actor ends, its node sends a tell to the reserved target
  ``!terminated`` of the watcher's node (``[watch id, reason]``; no actor name starts with
  ``!``), which delivers ``Terminated`` with the ref as it was watched. ``unwatch``, or the
  watcher's own end, sends ``!unwatch`` (``[watcher node, watch id]``) to drop the
  registration there. Ids are random, so a node that does not know one cannot guess it.
* **Node death.** One monitor task per node holding watched actors (not per watch) probes it
  every ``node_ttl / 4`` on ``swarm.node.<id>.live`` (core NATS, answered in that node's read
  loop). A node is down by the registry's own rule (``Registry.is_live``): its heartbeat in
  ``swarm_nodes`` is gone (or carries another incarnation) *and* it does not answer the probe;
  a node answering with another incarnation restarted, which ended its actors too. The bucket
  is read only while probes go unanswered, every ``node_ttl / 20``, so a SIGKILLed node is
  reported about ``node_ttl`` after its death (``bench/bench_watch.py``): its last heartbeat
  expires between 3/4 and 1 ``node_ttl`` after it, plus one read.

Why this detection: NATS tells no client that another disconnected (only system-account users
see connection events, and nodes are not those), so the watcher's node must ask, and one probe
per watched node and round is the least traffic that can notice. A failed probe alone is not
death: a node reconnecting after a server failover answers no probe for a moment while its
actors run on, and its heartbeat outlives that. Deciding by the rule the cluster already uses
to take a dead node's names and shards over means a watcher hears ``node_down`` exactly when
the cluster agrees the node is gone. A KV watch of ``swarm_nodes`` would cost no polling, but
that bucket writes no delete marker when a heartbeat expires (watchers never see it), and
changing its configuration would touch every running cluster's bucket.

Delivery is at most once, as for tells: a notice lost while the watcher's node was cut off is
not sent again (the actor's node forgets a watch once it notified it). A watcher's node that
dies leaves its registrations on the other nodes until they notice, by the same rule: a node
holding registrations lists the heartbeats every ``node_ttl`` and drops those of watcher
nodes that have none and answer no probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from array import array
from collections.abc import Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any, cast

import msgspec

from swarm_actors._core._watch import REASONS, DeathWatch, Reason
from swarm_actors._exceptions import NoSuchActorError, TransportError, WireFormatError
from swarm_actors._log import get_logger

if TYPE_CHECKING:
    from swarm_actors._core._cell import Cell
    from swarm_actors._nats._remote import RemoteRef
    from swarm_actors._nats._transport import Transport
    from swarm_actors._nats._wire import Tell

__all__ = ["NOTICE", "UNWATCH", "WATCH", "NodeWatches"]

_log = get_logger("swarm_actors.transport")

WATCH = "swarm:watch"
"""The kind of the ask that registers a watch with the node running the actor."""
NOTICE = "!terminated"
"""The reserved target of the tell that tells a watcher's node that a watched actor ended."""
UNWATCH = "!unwatch"
"""The reserved target of the tell that takes a registered watch back."""
REGISTER_TIMEOUT = 2.0
"""Seconds a registration waits for its answer before the node's monitor tries again."""

_NOTICE = msgspec.msgpack.Decoder(tuple[int, str])
_WATCHER = msgspec.msgpack.Decoder(tuple[str, int])


class _Remote:
    """A watch this node made of an actor on another node."""

    __slots__ = ("incarnation", "node", "ref", "registered", "registering", "watcher")

    def __init__(self, watcher: Cell, ref: RemoteRef[Any], node: str, incarnation: str | None):
        self.watcher = watcher
        self.ref = ref
        self.node = node
        self.incarnation = incarnation  # of the node when registered (None: not known yet)
        self.registered = False
        self.registering = False


class NodeWatches:
    """Watches across nodes, both sides, for one node (see the module docstring)."""

    def __init__(self, transport: Transport, death_watch: DeathWatch, node_ttl: float) -> None:
        self._transport = transport
        self._death = death_watch
        self.interval = node_ttl / 4
        """Seconds between liveness probes of a node holding watched actors."""
        self.suspect_interval = max(0.05, node_ttl / 20)
        """Seconds between checks of a node that stopped answering probes."""
        self._mine: dict[int, _Remote] = {}  # watch id -> a watch this node made
        self._by_node: dict[str, set[int]] = {}  # node -> ids of the watches of its actors
        self._monitors: dict[str, asyncio.Task[None]] = {}
        self._owned: dict[tuple[str, int], Cell] = {}  # (watcher node, id) -> watched cell
        self._sweeper: asyncio.Task[None] | None = None
        self._ttl = node_ttl
        self._ids = _watch_ids()
        self.suspect_checks = 0
        """Heartbeat reads for nodes that did not answer a probe (for tests and benchmarks)."""

    def counts(self) -> tuple[int, int]:
        """``(watches made here of other nodes' actors, watches of this node's actors)``."""
        return len(self._mine), len(self._owned)

    # --- the watcher's side ---------------------------------------------------------------

    def watch(self, watcher: Cell, ref: RemoteRef[Any]) -> Callable[[], None] | None:
        """Register ``watcher``'s watch of the actor behind ``ref`` (``RemoteRef``'s hook)."""
        transport = self._transport
        node = ref.node
        if node is None:  # no node has the name now
            self._death.deliver(watcher, ref, "already_dead")
            return None
        if node == transport.node_id:  # a ref that came back home: a local watch
            cell = transport.names.get(ref.name)
            if cell is None or cell.path != ref.path:
                self._death.deliver(watcher, ref, "already_dead")
                return None
            return self._death.watch_cell(watcher, cell, ref)
        entry = transport.registry.get(ref.name)
        incarnation = entry.incarnation if entry is not None and entry.node == node else None
        watch_id = next(self._ids)
        while watch_id in self._mine:  # pragma: no cover - 2**-63 per watch
            watch_id = next(self._ids)
        self._mine[watch_id] = _Remote(watcher, ref, node, incarnation)
        self._by_node.setdefault(node, set()).add(watch_id)
        self._register(watch_id)
        if node not in self._monitors:
            task = asyncio.get_running_loop().create_task(self._monitor(node))
            self._monitors[node] = task
            transport.track(task)
        return partial(self._cancel, watch_id)

    def _register(self, watch_id: int) -> None:
        remote = self._mine[watch_id]
        remote.registering = True
        self._transport.track(asyncio.get_running_loop().create_task(self._registering(watch_id)))

    async def _registering(self, watch_id: int) -> None:
        remote = self._mine[watch_id]
        transport = self._transport
        body = [transport.node_id, watch_id]
        try:
            answer = await transport.ask(
                remote.node, remote.ref.name, body, REGISTER_TIMEOUT, "", remote.watcher.path, WATCH
            )
        except NoSuchActorError:
            # "No such actor" from the node, or no subscriber at all: a probe tells which.
            if self._mine.get(watch_id) is remote and await transport.probe(remote.node):
                self._end(watch_id, "already_dead")
            return  # the node is not answering: its monitor decides
        except (TimeoutError, TransportError):
            return  # the monitor registers it again once the node answers
        except Exception as exc:  # an older node, say: it stays pending, and logged
            _log.warning("watch.register_failed", node=remote.node, error=repr(exc))
            return
        finally:
            remote.registering = False
        if self._mine.get(watch_id) is not remote:  # unwatched (or notified) meanwhile
            self._send_unwatch(remote.node, watch_id)
            return
        remote.registered = True
        remote.incarnation = str(answer)

    def _cancel(self, watch_id: int) -> None:
        """The watcher unwatched, or stopped: forget the watch here and on the actor's node."""
        remote = self._forget(watch_id)
        if remote is not None:
            self._send_unwatch(remote.node, watch_id)

    def _send_unwatch(self, node: str, watch_id: int) -> None:
        outbox = self._transport.outbox
        body = [self._transport.node_id, watch_id]
        with contextlib.suppress(TransportError):  # closing: the registration goes with us
            outbox.tell(outbox.subject_of(node), UNWATCH, body, "", "")

    def _forget(self, watch_id: int) -> _Remote | None:
        remote = self._mine.pop(watch_id, None)
        if remote is not None:
            ids = self._by_node.get(remote.node)
            if ids is not None:
                ids.discard(watch_id)
                if not ids:
                    del self._by_node[remote.node]
        return remote

    def _end(self, watch_id: int, reason: Reason) -> None:
        remote = self._forget(watch_id)
        if remote is not None:
            self._death.deliver(remote.watcher, remote.ref, reason)

    async def _monitor(self, node: str) -> None:
        """Probe ``node`` while it holds watched actors; report them ``node_down`` once it died."""
        transport = self._transport
        try:
            while self._by_node.get(node):
                answer = await transport.probe(node)
                if answer is not None:
                    for watch_id in list(self._by_node.get(node, ())):
                        remote = self._mine[watch_id]
                        if remote.incarnation not in (None, answer):  # the node restarted
                            self._end(watch_id, "node_down")
                        elif not remote.registered and not remote.registering:
                            self._register(watch_id)
                    delay = self.interval
                else:
                    try:
                        beat = await transport.registry.incarnation_of(node)
                    except Exception as exc:  # JetStream unavailable: ask again
                        _log.debug("watch.heartbeat_unknown", node=node, error=repr(exc))
                    else:
                        self.suspect_checks += 1
                        for watch_id in list(self._by_node.get(node, ())):
                            incarnation = self._mine[watch_id].incarnation
                            if beat is None or incarnation not in (None, beat):
                                self._end(watch_id, "node_down")
                    delay = self.suspect_interval
                await asyncio.sleep(delay)
        finally:
            if self._monitors.get(node) is asyncio.current_task():
                del self._monitors[node]

    # --- the watched actor's side ---------------------------------------------------------

    def on_watch(self, cell: Cell, body: msgspec.Raw) -> str:
        """Another node watches ``cell``: register it; this node's incarnation is the answer."""
        node, watch_id = _decode(_WATCHER, body)
        key = (node, watch_id)
        self._owned[key] = cell
        self._death.add_watcher(cell, key, partial(self._notify, node, watch_id))
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
            self._transport.track(self._sweeper)
        return self._transport.incarnation

    async def _sweep(self) -> None:
        """Drop the registrations of watcher nodes that died, every ``node_ttl``, while any.

        One listing of the heartbeat bucket a round; a node missing from it is dropped only if
        it does not answer a probe either (the registry's rule, as for the other direction).
        """
        transport = self._transport
        try:
            while self._owned:
                await asyncio.sleep(self._ttl)
                watchers = {node for node, _ in self._owned}
                try:
                    live = await transport.registry.live_nodes()
                except Exception as exc:  # JetStream unavailable: the next round
                    _log.debug("watch.sweep_failed", error=repr(exc))
                    continue
                for node in watchers - live:
                    if await transport.probe(node) is None:
                        self._drop_watcher_node(node)
        finally:
            if self._sweeper is asyncio.current_task():
                self._sweeper = None

    def _drop_watcher_node(self, node: str) -> None:
        for key in [key for key in self._owned if key[0] == node]:
            cell = self._owned.pop(key)
            self._death.remove_watcher(cell, key)
        _log.info("watch.watcher_node_gone", node=node)

    def _notify(self, node: str, watch_id: int, reason: str) -> None:
        self._owned.pop((node, watch_id), None)
        outbox = self._transport.outbox
        with contextlib.suppress(TransportError):  # closing: the watcher's monitor tells it
            outbox.tell(outbox.subject_of(node), NOTICE, [watch_id, reason], "", "")

    # --- tells to the reserved targets ----------------------------------------------------

    def on_tell(self, envelope: Tell) -> None:
        """A tell to a reserved target (``!...``); ``WireFormatError`` for a bad one."""
        if envelope.target == NOTICE:
            watch_id, reason = _decode(_NOTICE, envelope.body)
            if reason not in REASONS:
                raise WireFormatError(f"a watch notice with an unknown reason {reason!r:.40}")
            self._end(watch_id, cast("Reason", reason))  # an unknown id: unwatched, or forged
        elif envelope.target == UNWATCH:
            node, watch_id = _decode(_WATCHER, envelope.body)
            key = (node, watch_id)
            cell = self._owned.pop(key, None)
            if cell is not None:
                self._death.remove_watcher(cell, key)
        else:
            raise WireFormatError(f"no such reserved target {envelope.target!r:.40}")


def _decode(decoder: msgspec.msgpack.Decoder[Any], body: msgspec.Raw) -> Any:
    try:
        return decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise WireFormatError(f"a bad watch message: {exc}") from None


def _watch_ids() -> Iterator[int]:
    """Watch ids: random, non-zero, below 2**63 (see ``_transport._corr_ids``)."""
    while True:
        for value in array("Q", os.urandom(8 * 256)):
            yield (value >> 1) or 1
