"""The transport: an ``ActorSystem`` attached to NATS is a *node* that other processes reach.

This module is the node: its connection (and embedded server), its subscriptions, its outbox
and its liveness. Each node subscribes (raw-bytes fast path, ``_compat``) to
``swarm.node.<id>`` and receives *frames* there (``_wire``): tells, asks, and the answers to its
own asks, which its ``Inbox`` (``_inbox``) routes to the actors, virtual targets and pending
asks registered with it. It answers requests on ``swarm.node.<id>.live`` with its incarnation:
the registry asks a node directly before taking over its names when its heartbeat is missing
(see ``_registry``).

Sending: ``_outbox`` batches everything sent to a node in one event-loop iteration into one
NATS message (and refuses a message over the payload limit before sending anything).

Delivery is at most once, like NATS core: a frame to a node that is gone is lost.

Answers never travel on ``swarm.node.<id>``, where any node may publish. Each connection of a
node draws a random reply prefix ``swarm.reply.<me>.<token>`` (``_auth.reply_prefix``): an ask
to node ``dest`` names ``<prefix>.<dest>`` as its reply subject, and the frame carrying it is
published with that reply subject too, so that the server's "no responders" status tells this
node at once that ``dest`` has no subscriber (its pending asks then fail with
``NoSuchActorError`` instead of waiting for their timeouts). The inbox accepts an answer only
there, and only from the node the ask went to; correlation ids are random 63-bit numbers
(``os.urandom``), not a count. In a secure cluster (``_auth.node_permissions``) only this node
may subscribe to ``swarm.reply.<me>.>`` and only ``dest`` may publish to ``...<dest>``: no
other node sees an ask or the answer to it, and none can answer in ``dest``'s place.

Receiving runs in nats-py's read loop (see ``_inbox``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import uuid
from array import array
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from swarm_actors._core._actor import class_names
from swarm_actors._core._contract import Ref
from swarm_actors._exceptions import AuthenticationError, TransportError, WireFormatError
from swarm_actors._log import get_logger
from swarm_actors._nats._auth import inbox_prefix, reply_prefix
from swarm_actors._nats._compat import fast_subscribe, server_info, unsubscribe_quietly
from swarm_actors._nats._conn import NatsOptions, connect
from swarm_actors._nats._inbox import Inbox
from swarm_actors._nats._outbox import Outbox, node_subject
from swarm_actors._nats._placement import Placement
from swarm_actors._nats._registry import NameEntry, Registry, cluster_replicas
from swarm_actors._nats._watch import NodeWatches
from swarm_actors._nats._wire import (
    POOL_NODE,
    VIRTUAL_NODE,
    AskOut,
    Codec,
    reply_subject,
    type_name,
)

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.subscription import Subscription

    from swarm_actors._core._cell import Cell
    from swarm_actors._core._virtual import VirtualRegistry
    from swarm_actors._core._watch import DeathWatch
    from swarm_actors._nats._cluster import ClusterState
    from swarm_actors._nats._server import NatsServer
    from swarm_actors._system import ActorSystem

__all__ = ["Transport", "node_subject"]

_log = get_logger("swarm_actors.transport")

PROBE_TIMEOUT = 2.0
"""Seconds a node waits for another to answer a liveness probe before counting it as gone."""


class Transport:
    """The NATS side of one ``ActorSystem`` (one node); see the module docstring.

    ``names`` is the system's table of named actors and ``virtual`` its virtual-actor
    registry: the system hands them over explicitly, and the node and its cluster use
    nothing else of it but its public API.
    """

    def __init__(
        self,
        system: ActorSystem,
        options: NatsOptions | None,
        *,
        names: Mapping[str, Cell],
        virtual: VirtualRegistry,
        death_watch: DeathWatch,
        node: str | None,
        data_dir: str | None,
        node_ttl: float,
        replicas: int | None = None,
        placement: Placement | None = None,
    ) -> None:
        self.system = system
        self.names = names
        self.virtual = virtual
        self._death_watch = death_watch
        self.watches: NodeWatches
        """Death watches across nodes (``_watch``), made when the node connects."""
        self.tracer = system.tracer
        """The system's tracer (``None``: tracing is off), kept in step by the system: the
        node's refs read it on every send, where a property of the system costs a call."""
        self._replicas = replicas
        self._placement = placement or Placement()
        self.cluster: ClusterState | None = None
        self.node_id = node or f"n{uuid.uuid4().hex[:12]}"
        self.subject = node_subject(self.node_id)
        self.reply_prefix = reply_prefix(self.node_id)
        """Where the answers to this node's asks arrive: ``<reply_prefix>.<answering node>``."""
        self.incarnation = uuid.uuid4().hex
        self._options = options
        self._data_dir = data_dir
        self._node_ttl = node_ttl
        self.server: NatsServer | None = None
        self.client: Client
        self.registry: Registry
        self.codec = Codec(self, self._ref_from_wire, Ref)
        self.outbox: Outbox
        self.inbox: Inbox
        self._subs: list[Subscription] = []
        self._loop = asyncio.get_running_loop()
        self._corr = _corr_ids()
        self._denied: list[Exception] | None = []  # permission refusals while opening
        self._tasks: set[asyncio.Task[Any]] = set()
        self._releases: set[asyncio.Task[None]] = set()  # awaited, not cancelled, by close
        self.closed = False
        self.probes_refused = 0
        """Liveness probes dropped because their reply subject was unusable."""

    # --- lifecycle --------------------------------------------------------------------------

    async def open(self) -> None:
        """Start the embedded server if asked, connect, subscribe, join the registry."""
        try:
            options = self._options
            if options is None:
                from swarm_actors._nats._server import start_embedded

                self.server = await start_embedded(self._data_dir)
                options = self.server.client_options()
            elif not _has_credentials(options):  # this process's embedded server lets it in
                from swarm_actors._nats._server import embedded_credentials

                options = dataclasses.replace(options, **embedded_credentials(options.urls))
            if options.name is None:
                options = dataclasses.replace(options, name=f"swarm-{self.node_id}")
            if options.inbox_prefix is None:  # one that a node's permissions let it read
                options = dataclasses.replace(options, inbox_prefix=inbox_prefix(self.node_id))
            self.client = await connect(options, error_cb=self._on_error)
            self.outbox = Outbox(
                self.client, self.codec.encoder, self.node_id, self.reply_prefix, self._tasks
            )
            self.inbox = Inbox(
                self.system, self.names, self.node_id, self.codec, self.outbox, self._tasks
            )
            self.watches = NodeWatches(self, self._death_watch, self._node_ttl)
            self.inbox.route_watches(self.watches)
            self._subs.append(
                await fast_subscribe(self.client, self.subject, self.inbox.on_message)
            )
            self._subs.append(
                await fast_subscribe(
                    self.client, f"{self.reply_prefix}.*", self.inbox.answers(self.reply_prefix)
                )
            )
            self._subs.append(
                await fast_subscribe(self.client, live_subject(self.node_id), self._on_probe)
            )
            await self._check_permissions()
            replicas = self._replicas or cluster_replicas(server_info(self.client))
            self.registry = Registry(
                self.client.jetstream(),
                self.node_id,
                self.incarnation,
                self._node_ttl,
                replicas=replicas,
                probe=self.probe,
            )
            try:
                await self.registry.open(fresh=self.server is not None)
            except (TransportError, asyncio.CancelledError):
                raise
            except Exception as exc:  # nats-py's JetStream errors, timeouts included
                raise TransportError(
                    f"the name registry (JetStream key-value buckets) is unavailable: {exc!r}; "
                    "the server needs JetStream enabled"
                ) from exc
            from swarm_actors._nats._cluster import ClusterState

            self.cluster = ClusterState(self, self._placement, self._node_ttl)
            await self.cluster.open()
            self.inbox.route_virtual(self.cluster)
            await self.client.flush()
        except BaseException:
            await self._teardown()
            raise

    async def _on_error(self, error: Exception) -> None:
        """A client error (already logged by ``connect``): keep permission refusals of open."""
        if self._denied is not None and "permissions violation" in str(error).lower():
            self._denied.append(error)

    async def _check_permissions(self) -> None:
        """Raise ``AuthenticationError`` if the server refused one of the node's subscriptions.

        A refused SUB stays silent but for a "Permissions Violation" error, which the server
        sends when it handles the SUB: a node whose credentials are another node's (or not a
        node's) would hear nothing at all, so it does not start. The node probes itself (the
        request travels behind its SUBs, so the errors have arrived when it is answered) and
        checks what errors came.
        """
        from nats.errors import Error as NatsError

        # No answer means a refused subscription: judged below by the server's errors.
        with contextlib.suppress(NatsError, TimeoutError):
            await self.client.request(live_subject(self.node_id), b"", timeout=PROBE_TIMEOUT)
        denied, self._denied = self._denied, None  # later refusals are only logged
        if denied:
            raise AuthenticationError(
                f"the NATS server does not let node {self.node_id} subscribe to its own subjects "
                f"({denied[0]}): are these credentials made for node {self.node_id} "
                "(swarm-actors cluster init)?"
            )

    async def close(self) -> None:
        """Send what is buffered, release the names, disconnect, stop an embedded server."""
        if self.closed:
            return
        self.closed = True
        if self.cluster is not None:
            try:  # hand the shards over while the connection is still up
                await self.cluster.close()
            except Exception as exc:
                _log.warning("transport.handover_failed", node=self.node_id, error=repr(exc))
        self.outbox.close()
        await asyncio.gather(*self._releases, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.inbox.fail_pending(TransportError(f"node {self.node_id} closed its NATS connection"))
        try:
            await self.registry.close()
            await self.client.flush()
        except Exception as exc:  # closing anyway
            _log.debug("transport.close_error", error=repr(exc))
        await self._teardown()

    async def _teardown(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            for sub in self._subs:
                await unsubscribe_quietly(client, sub)
            try:
                await client.close()
            except Exception as exc:
                _log.debug("transport.close_error", error=repr(exc))
        if self.server is not None:
            await self.server.stop()

    # --- refs on the wire -------------------------------------------------------------------

    def virtual_address(self, agent: int) -> tuple[str, str] | None:
        """Where the local virtual actor ``agent`` is reached from anywhere (``WireNode``)."""
        target = self.cluster.target_of(agent) if self.cluster is not None else None
        return None if target is None else (VIRTUAL_NODE, target)

    def origin(self, sender: Cell) -> Any:
        """The ref a message sent by ``sender`` (a local actor) names as its origin on the wire.

        ``None`` when no other node could reach it (a ``system.virtual`` actor, a batch
        member): the receiving handler's ``self.sender`` is then ``None``, and the message
        goes all the same.
        """
        if sender.virtual_id is None or self.virtual_address(sender.virtual_id) is not None:
            return sender.ref  # described by name (or virtual target) when encoded
        return None

    def _ref_from_wire(
        self, node: str, name: str, path: str, role: str, classes: tuple[str, ...]
    ) -> Any:
        from swarm_actors._nats._remote import RemoteRef

        if node == POOL_NODE:
            from swarm_actors._nats._pool import pool_from_wire

            return pool_from_wire(self, name, classes)
        if node == VIRTUAL_NODE and self.cluster is not None:
            try:
                return self.cluster.ref_for(name)
            except ValueError as exc:
                raise WireFormatError(f"bad virtual actor ref: {exc}") from None
        if node == self.node_id:
            cell = self.names.get(name)
            if cell is not None and cell.path == path:
                return cell.ref
        return RemoteRef(self, name, node=node, path=path, role=role, classes=classes)

    # --- sending ----------------------------------------------------------------------------

    async def ask(
        self,
        node: str,
        name: str,
        message: Any,
        timeout: float | None,
        trace: str,
        sender: str,
        kind: str | None = None,
        origin: Any = None,
    ) -> Any:
        """Send an ask and wait for its answer (``TimeoutError`` after ``timeout`` seconds).

        ``origin``: the ref the remote handler's ``self.sender`` is (``None``: nobody).
        """
        corr = next(self._corr)
        future: asyncio.Future[Any] = self._loop.create_future()
        while not self.inbox.expect(corr, future, node):  # a collision: 2**-63 per pending ask
            corr = next(self._corr)
        wire_type = type_name(type(message)) if kind is None else kind
        reply = self.outbox.reply_to(node)
        envelope = AskOut(name, wire_type, message, trace, sender, corr, reply, origin)
        try:
            self.outbox.append(self.outbox.subject_of(node), envelope, trace, node)
        except BaseException:
            self.inbox.forget(corr)
            raise
        handle = None
        if timeout is not None:
            handle = self._loop.call_later(timeout, _expire, future, timeout, name, node)
        try:
            return await future
        finally:
            if handle is not None:
                handle.cancel()
            self.inbox.forget(corr)

    def track(self, task: asyncio.Task[Any]) -> None:
        """Keep ``task`` until it ends; closing the node cancels it."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- liveness ---------------------------------------------------------------------------

    def _on_probe(self, subject: bytes, reply: bytes, data: bytes, status: bytes | None) -> None:
        """Another node asks whether this one is alive: answer with the incarnation.

        Anyone may publish here: a request whose reply subject could not be published to (not
        UTF-8, a wildcard, longer than a server accepts) is dropped and counted, never
        answered (a bad subject in this node's ``PUB`` would make the server close its
        connection).
        """
        if not reply or status is not None:
            return
        subject_text = reply_subject(reply)
        if subject_text is None:
            self.probes_refused += 1
            _log.warning("transport.bad_probe", node=self.node_id, reply=repr(reply[:100]))
            return
        self.outbox.publish(subject_text, self.incarnation.encode())

    async def probe(self, node: str) -> str | None:
        """The incarnation ``node`` answers with (``None``: not connected, or no answer in time).

        Asked only when the registry's node bucket has no heartbeat of a node whose name is
        to be taken over: a live node answers from its read loop, whatever JetStream is doing.
        """
        from nats.errors import Error as NatsError

        try:
            answer = await self.client.request(live_subject(node), b"", timeout=PROBE_TIMEOUT)
        except (NatsError, TimeoutError):  # no responders, no answer in time, disconnected
            return None
        return answer.data.decode(errors="replace")

    # --- names ------------------------------------------------------------------------------

    def entry_for(self, cell: Cell) -> NameEntry:
        """The registry entry of a local actor."""
        cls = cell.actor_class
        return NameEntry(self.node_id, self.incarnation, cell.path, cls.role, class_names(cls))

    def release_soon(self, name: str) -> None:
        """Unregister ``name`` in the background (an actor stopped)."""
        if self.closed:
            return
        revision = self.registry.forget(name)
        if revision is not None:
            task = self._loop.create_task(self.registry.delete(name, revision))
            self._releases.add(task)
            task.add_done_callback(self._releases.discard)


def _expire(future: asyncio.Future[Any], timeout: float, name: str, node: str) -> None:
    if not future.done():
        future.set_exception(
            TimeoutError(f"ask to {name} on node {node} got no reply within {timeout:g} s")
        )


def live_subject(node: str) -> str:
    """Where node ``node`` answers liveness probes with its incarnation."""
    return f"{node_subject(node)}.live"


def _has_credentials(options: NatsOptions) -> bool:
    given = (options.user, options.token, options.creds_file, options.nkeys_seed)
    return any(value is not None for value in given) or options.nkeys_seed_file is not None


def _corr_ids() -> Iterator[int]:
    """Correlation ids of asks: random, non-zero, below 2**63 (0 means "no ask").

    Drawn from ``os.urandom`` 8 KiB at a time (about 0.1 us each; ``secrets.randbits`` costs
    2 us an ask): an id seen on the wire tells nothing about the next.
    """
    while True:
        for value in array("Q", os.urandom(8 * 1024)):
            yield (value >> 1) or 1
