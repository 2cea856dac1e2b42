"""The transport: an ``ActorSystem`` attached to NATS is a *node* that other processes reach.

Each node subscribes (raw-bytes fast path, ``_nats_fastpath``) to ``swarm.node.<id>`` and
receives *frames* there (``_wire``): tells, asks, and the answers to its own asks. It answers
requests on ``swarm.node.<id>.live`` with its incarnation: the registry asks a node directly
before taking over its names when its heartbeat is missing (see ``_registry``).

Sending: ``_outbox`` batches everything sent to a node in one event-loop iteration into one
NATS message (and refuses a message over the payload limit before sending anything).

Delivery is at most once, like NATS core: a frame to a node that is gone is lost. Frames with
asks are published with a reply subject ``swarm.node.<me>.nr.<dest>``, so that the server's
"no responders" status tells this node at once that ``dest`` has no subscriber; its pending
asks then fail with ``ActorDeadError`` instead of waiting for their timeouts.

Receiving runs in nats-py's read loop: decode, look the target up by name, and enqueue into
its mailbox as a local tell does (asks with a future whose completion sends the answer). An ask
to an idle actor with an empty mailbox runs its handler right there, as a local ask does. The
answers of a frame are sent as soon as the frame is handled. A full mailbox never makes the
node drop or block everything: if the actor is idle, it takes a turn at once in the read loop
(so reading slows to the actor's pace, and TCP pushes back on the sender); if it is busy in a
suspended handler, the message waits in a per-actor overflow queue (in order) that a task feeds
into the mailbox as space frees up, up to ``OVERFLOW_LIMIT`` messages, beyond which tells are
dead letters and asks fail with ``MailboxFullError``.

Bad input (garbage, truncated or wrong-schema bytes, unknown types) never builds a message:
an ask that can be identified gets a ``Failure`` answer, a NATS message with a reply subject
gets a ``Failure`` frame there, tells become dead letters published on
``swarm.deadletter.<node>`` (the offending bytes, the reason in headers), and each is a
structured log line (``swarm_actors.transport``). The node keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections import deque
from functools import partial
from typing import TYPE_CHECKING, Any

from swarm_actors._core._cell import Ask as Entry
from swarm_actors._core._telemetry import traceparent_context
from swarm_actors._exceptions import (
    ActorDeadError,
    MailboxFullError,
    TransportError,
    WireFormatError,
)
from swarm_actors._log import get_logger
from swarm_actors._nats._conn import NatsOptions, connect
from swarm_actors._nats._fastpath import fast_subscribe, unsubscribe_quietly
from swarm_actors._nats._outbox import Outbox, node_subject
from swarm_actors._nats._placement import Placement
from swarm_actors._nats._registry import NameEntry, Registry, cluster_replicas
from swarm_actors._nats._wire import (
    NO_SUCH_ACTOR,
    STOP,
    Ask,
    AskOut,
    Codec,
    Failure,
    NoSuchActorError,
    Reply,
    ReplyOut,
    Tell,
    decode_frame,
    decode_frame_leniently,
    describe_exception,
    frame,
    rebuild_exception,
    salvage_ask,
    type_name,
)

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.subscription import Subscription

    from swarm_actors._core._cell import Cell
    from swarm_actors._core._ref import ActorRef
    from swarm_actors._nats._cluster import Cluster
    from swarm_actors._nats._server import NatsServer
    from swarm_actors._system import ActorSystem

__all__ = ["Transport", "node_subject"]

_log = get_logger("swarm_actors.transport")

PROBE_TIMEOUT = 2.0
"""Seconds a node waits for another to answer a liveness probe before counting it as gone."""

OVERFLOW_LIMIT = 65_536
"""Messages per actor held beyond a full mailbox before remote tells are refused."""

_DEAD = "swarm_actors._exceptions.ActorDeadError"
VIRTUAL_NODE = "~"
"""The node of a ref to a placed virtual actor on the wire (its name is the virtual target)."""


class Transport:
    """The NATS side of one ``ActorSystem`` (one node); see the module docstring."""

    def __init__(
        self,
        system: ActorSystem,
        options: NatsOptions | None,
        *,
        node: str | None,
        data_dir: str | None,
        node_ttl: float,
        replicas: int | None = None,
        placement: Placement | None = None,
    ) -> None:
        self.system = system
        self._replicas = replicas
        self._placement = placement or Placement()
        self.cluster: Cluster | None = None
        self.node_id = node or f"n{uuid.uuid4().hex[:12]}"
        self.subject = node_subject(self.node_id)
        self.incarnation = uuid.uuid4().hex
        self._options = options
        self._data_dir = data_dir
        self._node_ttl = node_ttl
        self.server: NatsServer | None = None
        self.client: Client
        self.registry: Registry
        self.codec = Codec(self._ref_to_wire, self._ref_from_wire, _ref_class())
        self.outbox: Outbox
        self._subs: list[Subscription] = []
        self._loop = asyncio.get_running_loop()
        self._corr = itertools.count(1)
        self._pending: dict[int, tuple[asyncio.Future[Any], str]] = {}
        self._overflow: dict[Cell, deque[Any]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._releases: set[asyncio.Task[None]] = set()  # awaited, not cancelled, by close
        self.closed = False

    # --- lifecycle --------------------------------------------------------------------------

    async def open(self) -> None:
        """Start the embedded server if asked, connect, subscribe, join the registry."""
        try:
            options = self._options
            if options is None:
                from swarm_actors._nats._server import start_embedded

                self.server = await start_embedded(self._data_dir)
                options = NatsOptions(servers=self.server.url)
            if options.name is None:
                options = _with_name(options, f"swarm-{self.node_id}")
            self.client = await connect(options)
            self.outbox = Outbox(
                self.client, self.codec.encoder, self.node_id, self.subject, self._tasks
            )
            for subject in (self.subject, f"{self.subject}.nr.*"):
                self._subs.append(await fast_subscribe(self.client, subject, self._on_message))
            self._subs.append(
                await fast_subscribe(self.client, live_subject(self.node_id), self._on_probe)
            )
            replicas = self._replicas or cluster_replicas(self.client._server_info)
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
            from swarm_actors._nats._cluster import Cluster

            self.cluster = Cluster(self, self._placement, self._node_ttl)
            await self.cluster.open()
            await self.client.flush()
        except BaseException:
            await self._teardown()
            raise

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
        gone = TransportError(f"node {self.node_id} closed its NATS connection")
        for future, _ in self._pending.values():
            if not future.done():
                future.set_exception(gone)
        self._pending.clear()
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

    def _ref_to_wire(self, obj: Any) -> tuple[str, str, str, str, tuple[str, ...]] | None:
        from swarm_actors._core._capability import class_names
        from swarm_actors._core._virtual import VirtualRef
        from swarm_actors._nats._cluster import PlacedRef
        from swarm_actors._nats._remote import RemoteRef

        if isinstance(obj, RemoteRef):
            return obj._wire_spec()
        if isinstance(obj, PlacedRef):
            cls = obj._class
            return (VIRTUAL_NODE, obj._target, obj.path, cls.role, class_names(cls))
        if isinstance(obj, _ref_class()):
            cell = obj._cell
            cls = cell.actor_class
            if cell.virtual_id is not None:
                target = self.cluster.target_of(cell.virtual_id) if self.cluster else None
                if target is None:
                    raise TypeError(
                        "refs to local virtual actors (batch_spawn members) cannot be sent to "
                        "another process; use system.placed(Cls, key, position=...) for actors "
                        "the cluster places"
                    )
                return (VIRTUAL_NODE, target, cell.path, cls.role, class_names(cls))
            return (self.node_id, cell.name, cell.path, cls.role, class_names(cls))
        if isinstance(obj, VirtualRef):
            raise TypeError("refs to local virtual actors cannot be sent to another process")
        return None

    def _ref_from_wire(
        self, node: str, name: str, path: str, role: str, classes: tuple[str, ...]
    ) -> Any:
        from swarm_actors._nats._remote import RemoteRef

        if node == VIRTUAL_NODE and self.cluster is not None:
            try:
                return self.cluster.ref_for(name)
            except ValueError as exc:
                raise WireFormatError(f"bad virtual actor ref: {exc}") from None
        if node == self.node_id:
            cell = self.system._names.get(name)
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
    ) -> Any:
        """Send an ask and wait for its answer (``TimeoutError`` after ``timeout`` seconds)."""
        corr = next(self._corr)
        wire_type = type_name(type(message)) if kind is None else kind
        envelope = AskOut(name, wire_type, message, trace, sender, corr, self.subject)
        self.outbox.append(self.outbox.subject_of(node), envelope, trace, node)
        future: asyncio.Future[Any] = self._loop.create_future()
        self._pending[corr] = (future, node)
        handle = None
        if timeout is not None:
            handle = self._loop.call_later(timeout, _expire, future, timeout, name, node)
        try:
            return await future
        finally:
            if handle is not None:
                handle.cancel()
            self._pending.pop(corr, None)

    # --- receiving --------------------------------------------------------------------------

    def _on_message(self, subject: bytes, reply: bytes, data: bytes, status: bytes | None) -> None:
        try:
            if status is not None:
                if status == b"503":
                    self._unreachable(subject.decode().rpartition(".")[2])
                return
            try:
                envelopes = decode_frame(data)
            except WireFormatError:
                self._bad_frame(subject.decode(), reply.decode(), data)
                return
            self._dispatch(envelopes)
            if self.outbox.filling:  # answers (and sends) of handlers that ran inline: off now
                self.outbox.flush_all()
        except Exception:  # never into nats-py's read loop
            _log.exception("transport.receive_failed", node=self.node_id)

    def _dispatch(self, envelopes: list[Any]) -> None:
        names = self.system._names
        decoders = self.codec.decoders  # read directly: this loop runs once per remote message
        overflow = self._overflow
        for envelope in envelopes:
            # One envelope's failure costs only that envelope: the rest of its frame is still
            # delivered (a try costs nothing until it catches, since Python 3.11).
            try:
                kind = type(envelope)
                if kind is Tell:
                    cell = names.get(envelope.target)
                    if cell is None:
                        if envelope.target[:1] == "~" and self.cluster is not None:
                            self._virtual_tell(envelope)
                        else:
                            self._dead_letter(envelope, "no such actor")
                        continue
                    decoder = decoders.get(envelope.type)
                    try:
                        if decoder is None:
                            message = self.codec.decode_body(envelope.type, envelope.body)
                        else:
                            message = decoder.decode(envelope.body)
                    except Exception as exc:  # see Codec.decode_body: any failure is a bad body
                        if not isinstance(exc, WireFormatError):  # say which type, as decode_body
                            exc = self.codec.body_error(envelope.type, exc)
                        self._dead_letter(envelope, str(exc))
                        continue
                    if envelope.trace and cell.tracer is not None:
                        message = Entry(message, None, traceparent_context(envelope.trace))
                    if overflow or not cell.post(message):  # as a local tell does
                        self._enqueue(cell, message, envelope)
                elif kind is Ask:
                    self._on_ask(envelope)
                elif kind is Reply:
                    self._on_reply(envelope)
                else:
                    self._on_failure(envelope)
            except Exception as exc:
                self._undeliverable(envelope, exc)

    def _undeliverable(self, envelope: Any, exc: Exception) -> None:
        """An envelope whose delivery failed unexpectedly: answer it or dead-letter it."""
        _log.error("transport.deliver_failed", node=self.node_id, error=repr(exc), exc_info=exc)
        reason = f"could not be delivered: {exc!r}"
        if type(envelope) is Ask:
            self._answer_failure(envelope.reply, envelope.corr, *describe_exception(exc))
        elif type(envelope) is Tell:
            self._dead_letter(envelope, reason)
        else:  # an answer this node could not read: its asker must not wait for another
            pending = self._pending.pop(envelope.corr, None)
            if pending is not None and not pending[0].done():
                pending[0].set_exception(WireFormatError(f"the answer {reason}"))

    def _enqueue(self, cell: Cell, item: Any, envelope: Tell | Ask) -> None:
        if cell not in self._overflow and cell.post(item):
            return
        if cell.accepting and cell.runnable and cell not in self._overflow:
            # Full, and idle: take a turn right here. Frames arrive faster than the dispatcher
            # gives the actor turns; handling them in the read loop slows reading down to the
            # actor's pace (TCP pushes back on the sender) instead of piling messages up.
            cell.turn_now()
            if cell.post(item):
                return
        if not cell.accepting:
            self._refuse(item, envelope, ActorDeadError(f"{cell.path} is stopped", actor=cell.path))
        else:
            waiting = self._overflow.get(cell)
            if waiting is None:
                waiting = self._overflow[cell] = deque()
                self._track(self._loop.create_task(self._feed(cell, waiting)))
            if len(waiting) >= OVERFLOW_LIMIT:
                error = MailboxFullError(
                    f"mailbox of {cell.path} is full and {OVERFLOW_LIMIT} remote messages wait",
                    actor=cell.path,
                    capacity=cell.capacity,
                )
                self._refuse(item, envelope, error)
            else:
                waiting.append((item, envelope))

    async def _feed(self, cell: Cell, waiting: deque[Any]) -> None:
        """Move overflowed remote messages into ``cell``'s mailbox, in order, as it drains."""
        try:
            while waiting:
                item, envelope = waiting[0]
                try:
                    await cell.put(item)
                except ActorDeadError as exc:
                    for item, envelope in waiting:
                        self._refuse(item, envelope, exc)
                    waiting.clear()
                    return
                waiting.popleft()
        finally:
            if self._overflow.get(cell) is waiting:
                del self._overflow[cell]

    def _refuse(self, item: Any, envelope: Tell | Ask, error: Exception) -> None:
        future = item.future if type(item) is Entry else None
        if future is not None:
            if not future.done():
                future.set_exception(error)
        else:
            self._dead_letter(envelope, str(error))

    def _virtual_tell(self, envelope: Tell) -> None:
        assert self.cluster is not None
        try:
            message = self.codec.decode_body(envelope.type, envelope.body)
            self.cluster.on_tell(envelope, message)
        except (WireFormatError, ValueError) as exc:
            self._dead_letter(envelope, str(exc))

    def _virtual_ask(self, envelope: Ask) -> None:
        assert self.cluster is not None
        try:
            message = self.codec.decode_body(envelope.type, envelope.body)
        except WireFormatError as exc:
            self._answer_failure(envelope.reply, envelope.corr, *describe_exception(exc))
            return
        future: asyncio.Future[Any] = self._loop.create_future()
        future.add_done_callback(
            partial(self._answer, envelope.reply, envelope.corr, envelope.target)
        )
        try:
            self.cluster.on_ask(envelope, message, future)
        except ValueError as exc:
            text = f"bad virtual actor target {envelope.target!r}: {exc}"
            self._answer_failure(envelope.reply, envelope.corr, NO_SUCH_ACTOR, text, "")

    def _on_ask(self, envelope: Ask) -> None:
        cell = self.system._names.get(envelope.target)
        if (
            cell is None
            and envelope.target[:1] == "~"
            and self.cluster is not None
            and envelope.type != STOP
        ):
            self._virtual_ask(envelope)
            return
        if cell is None:
            message = f"no actor named {envelope.target!r} on node {self.node_id}"
            self._answer_failure(envelope.reply, envelope.corr, NO_SUCH_ACTOR, message, "")
            return
        if envelope.type == STOP:
            self._stop(cell, envelope)
            return
        try:
            message = self.codec.decode_body(envelope.type, envelope.body)
        except WireFormatError as exc:
            _log.warning(
                "transport.bad_message",
                node=self.node_id,
                target=envelope.target,
                type=envelope.type,
                reason=str(exc),
            )
            self._answer_failure(envelope.reply, envelope.corr, *describe_exception(exc))
            return
        if cell.runnable and not cell.queue and not envelope.trace and cell not in self._overflow:
            self._ask_inline(cell, message, envelope)
            return
        future: asyncio.Future[Any] = self._loop.create_future()
        future.add_done_callback(partial(self._answer, envelope.reply, envelope.corr, cell.path))
        context = None
        if envelope.trace and cell.tracer is not None:
            context = traceparent_context(envelope.trace)
        self._enqueue(cell, Entry(message, future, context), envelope)

    def _ask_inline(self, cell: Cell, message: Any, envelope: Ask) -> None:
        """The actor is idle: run the handler now, in the read loop, as a local inline ask does.

        Saves the two event-loop iterations of a mailbox round (the dispatcher's turn, then
        the reply future's callback) on every remote ask to an idle actor. Nothing is queued
        before it (the mailbox is empty), so order is kept; a handler that suspends is
        finished in the actor's own task, and answered from there.
        """
        reply, corr = envelope.reply, envelope.corr
        try:
            done, value = cell.ask_inline(message)
        except (Exception, asyncio.CancelledError) as exc:  # the handler's, or unhandled
            self._answer_failure(reply, corr, *describe_exception(exc))
            return
        if done:
            self._reply(reply, corr, cell.path, value)
        else:  # the handler suspended: its task answers ``value``
            value.add_done_callback(partial(self._answer, reply, corr, cell.path))

    def _stop(self, cell: Cell, envelope: Ask) -> None:
        drain = bytes(envelope.body) != b"\xc2"  # msgpack False
        task = self._loop.create_task(cell.stop(drain))
        self._track(task)
        future: asyncio.Future[Any] = self._loop.create_future()
        future.add_done_callback(partial(self._answer, envelope.reply, envelope.corr, cell.path))
        task.add_done_callback(partial(_chain, future))

    def _answer(self, reply: str, corr: int, path: str, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            self._answer_failure(reply, corr, _DEAD, f"{path} stopped", path)
            return
        error = future.exception()
        if isinstance(error, NoSuchActorError):  # the asker may look again (a shard moved)
            self._answer_failure(reply, corr, NO_SUCH_ACTOR, str(error), "")
            return
        if error is not None:
            self._answer_failure(reply, corr, *describe_exception(error))
            return
        self._reply(reply, corr, path, future.result())

    def _reply(self, reply: str, corr: int, path: str, result: Any) -> None:
        try:
            self.outbox.append(reply, ReplyOut(corr, type_name(type(result)), result))
        except (TypeError, ValueError) as exc:  # MessageTooLargeError is a ValueError
            error_type, text, _ = describe_exception(exc)
            text = f"the reply of {path} could not be sent: {text}"
            self._answer_failure(reply, corr, error_type, text, path)
        except TransportError:
            pass  # closing

    def _answer_failure(self, reply: str, corr: int, error: str, text: str, actor: str) -> None:
        if not reply:
            return
        with contextlib.suppress(TransportError):  # closing
            self.outbox.append(reply, Failure(corr, error, text, actor))

    def _on_reply(self, envelope: Reply) -> None:
        pending = self._pending.pop(envelope.corr, None)
        if pending is None or pending[0].done():
            return  # the asker timed out or was cancelled: a late answer
        future = pending[0]
        try:
            future.set_result(self.codec.decode_body(envelope.type, envelope.body))
        except WireFormatError as exc:
            future.set_exception(exc)

    def _on_failure(self, envelope: Failure) -> None:
        pending = self._pending.pop(envelope.corr, None)
        if pending is None:
            if envelope.corr == 0:  # about a frame this node sent that was unreadable
                _log.warning("transport.frame_refused", node=self.node_id, reason=envelope.message)
            return
        future = pending[0]
        if future.done():
            return
        if envelope.error == NO_SUCH_ACTOR:
            future.set_exception(NoSuchActorError(envelope.message, actor=envelope.actor))
        else:
            error = rebuild_exception(envelope.error, envelope.message, envelope.actor)
            future.set_exception(error)

    def _unreachable(self, node: str) -> None:
        """The server says no one listens on ``node``'s subject: fail the asks sent there."""
        for corr, (future, target) in list(self._pending.items()):
            if target == node and not future.done():
                del self._pending[corr]
                # Nobody received it: the asker may look the name up again and retry.
                future.set_exception(
                    NoSuchActorError(f"node {node} is not connected to NATS (no responders)")
                )

    # --- bad input --------------------------------------------------------------------------

    def _bad_frame(self, subject: str, reply: str, data: bytes) -> None:
        try:
            parts = decode_frame_leniently(data)
        except WireFormatError as exc:
            self._reject(subject, reply, data, str(exc))
            return
        good = []
        for part in parts:
            if isinstance(part, tuple):
                raw, error = part
                salvaged = salvage_ask(raw)
                if salvaged is not None:
                    corr, ask_reply, target = salvaged
                    self._log_bad(subject, target, str(error), len(raw))
                    self._answer_failure(ask_reply, corr, *describe_exception(error))
                else:
                    self._reject(subject, reply, raw, str(error))
            else:
                good.append(part)
        self._dispatch(good)

    def _reject(self, subject: str, reply: str, data: bytes, reason: str) -> None:
        """Unreadable bytes: log, publish them as a dead letter, and answer a reply subject."""
        self._log_bad(subject, "", reason, len(data))
        self.system.dead_letters += 1
        self._publish_dead_letter(data, reason, "", "", "")
        if reply:
            refusal = Failure(0, "swarm_actors._exceptions.WireFormatError", reason, "")
            self.outbox.publish(reply, frame([refusal], self.codec.encoder))

    def _log_bad(self, subject: str, target: str, reason: str, size: int) -> None:
        _log.warning(
            "transport.bad_frame",
            node=self.node_id,
            subject=subject,
            target=target,
            reason=reason,
            size=size,
        )

    def _dead_letter(self, envelope: Tell | Ask, reason: str) -> None:
        self.system.dead_letters += 1
        _log.warning(
            "transport.dead_letter",
            node=self.node_id,
            target=envelope.target,
            type=envelope.type,
            sender=envelope.sender,
            reason=reason,
        )
        body = bytes(envelope.body)
        self._publish_dead_letter(body, reason, envelope.target, envelope.type, envelope.sender)

    def _publish_dead_letter(
        self, data: bytes, reason: str, target: str, wire_type: str, sender: str
    ) -> None:
        headers = {"Swarm-Reason": reason[:1000], "Swarm-Node": self.node_id}
        for key, value in (("Swarm-Target", target), ("Swarm-Type", wire_type)):
            if value:
                headers[key] = value[:200]
        if sender:
            headers["Swarm-Sender"] = sender[:200]
        self.outbox.publish(f"swarm.deadletter.{self.node_id}", data, headers=headers)

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- liveness ---------------------------------------------------------------------------

    def _on_probe(self, subject: bytes, reply: bytes, data: bytes, status: bytes | None) -> None:
        """Another node asks whether this one is alive: answer with the incarnation."""
        if reply and status is None:
            self.outbox.publish(reply.decode(), self.incarnation.encode())

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
        from swarm_actors._core._capability import class_names

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


def _chain(future: asyncio.Future[Any], task: asyncio.Task[Any]) -> None:
    if future.done():
        return
    if task.cancelled():
        future.cancel()
    elif (error := task.exception()) is not None:
        future.set_exception(error)
    else:
        future.set_result(task.result())


def live_subject(node: str) -> str:
    """Where node ``node`` answers liveness probes with its incarnation."""
    return f"{node_subject(node)}.live"


def _with_name(options: NatsOptions, name: str) -> NatsOptions:
    import dataclasses

    return dataclasses.replace(options, name=name)


def _ref_class() -> type[ActorRef[Any]]:
    from swarm_actors._core._ref import ActorRef

    return ActorRef
