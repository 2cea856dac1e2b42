"""The inbox of a node: routes each incoming envelope to what is registered to receive it.

A node (``_transport``) subscribes :meth:`Inbox.on_message` to its subjects; the inbox decodes
the frames and routes each envelope to one of four kinds of addressee:

* a named actor of this system (the system's name table, given at construction): tells are
  enqueued into its mailbox as a local tell is, asks with a future whose completion sends the
  answer; an ask to an idle actor with an empty mailbox runs its handler right there, as a
  local ask does;
* a virtual target (``~class~position~key``): handed to the resolver the cluster registered
  with :meth:`Inbox.route_virtual` (``VirtualTargets``);
* death-watch traffic (``_watch``): asks of kind ``swarm:watch`` to a named actor, and tells to
  the reserved targets ``!...`` (no actor name starts with ``!``), handed to the handler
  registered with :meth:`Inbox.route_watches`;
* an ask this node sent (by its correlation id, registered with :meth:`Inbox.expect`): the
  answer completes the asker's future. Answers are taken only from the node's reply subjects
  (:meth:`Inbox.answers`, see ``_transport``), and only from the node the ask was sent to: an
  answer on the frame subject ``swarm.node.<id>``, where anyone may publish, is dropped.

The answers of a frame are sent as soon as the frame is handled. A full mailbox never makes
the node drop or block everything: if the actor is idle, it takes a turn at once in the read
loop (so reading slows to the actor's pace, and TCP pushes back on the sender); if it is busy
in a suspended handler, the message waits in a per-actor overflow queue (in order) that a task
feeds into the mailbox as space frees up, up to ``OVERFLOW_LIMIT`` messages, beyond which
tells are dead letters and asks fail with ``MailboxFullError``.

Bad input (garbage, truncated or wrong-schema bytes, unknown types) never builds a message: an
ask that can be identified gets a ``Failure`` answer, a NATS message with a reply subject gets
a ``Failure`` frame there, tells become dead letters published on ``swarm.deadletter.<node>``
(the offending bytes, the reason in headers), and each is a structured log line
(``swarm_actors.transport``). An ask whose reply subject no answer could be published on
(``_wire.valid_reply``: a wildcard, an empty token, longer than ``MAX_REPLY_SUBJECT``) is a
dead letter too, and never runs: publishing there could cost the node its connection. An
answer to one of this node's asks that cannot be read fails that ask at once. The node keeps
serving; whatever still escapes a handler loses one message, not the connection (``_compat``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from swarm_actors._core._cell import Ask as Entry
from swarm_actors._core._telemetry import traceparent_context
from swarm_actors._exceptions import (
    ActorDeadError,
    MailboxFullError,
    TransportError,
    WireFormatError,
)
from swarm_actors._log import get_logger
from swarm_actors._nats._watch import WATCH
from swarm_actors._nats._wire import (
    NO_SUCH_ACTOR,
    STOP,
    Ask,
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
    reply_subject,
    salvage_answer,
    salvage_ask,
    type_name,
    valid_reply,
)

if TYPE_CHECKING:
    from swarm_actors._core._cell import Cell
    from swarm_actors._nats._outbox import Outbox
    from swarm_actors._system import ActorSystem

__all__ = ["OVERFLOW_LIMIT", "Inbox", "VirtualTargets"]

_log = get_logger("swarm_actors.transport")

OVERFLOW_LIMIT = 65_536
"""Messages per actor held beyond a full mailbox before remote tells are refused."""

_DEAD = "swarm_actors._exceptions.ActorDeadError"


class VirtualTargets(Protocol):
    """What the inbox hands envelopes addressed to virtual targets to (the cluster)."""

    def on_tell(self, envelope: Tell, message: Any, origin: Any = None) -> None:
        """A tell arrived for a virtual target (``message`` decoded, ``origin`` its sender)."""
        ...

    def on_ask(
        self, envelope: Ask, message: Any, future: asyncio.Future[Any], origin: Any = None
    ) -> None:
        """An ask arrived for a virtual target; ``future`` answers it (``origin``: its asker)."""
        ...


class WatchRoutes(Protocol):
    """What the inbox hands death-watch traffic to (``_watch.NodeWatches``)."""

    def on_watch(self, cell: Cell, body: Any) -> str:
        """Another node watches ``cell``; the answer to its ask (``WireFormatError``: bad body)."""
        ...

    def on_tell(self, envelope: Tell) -> None:
        """A tell to a reserved target (``!...``); ``WireFormatError`` for a bad one."""
        ...


class Inbox:
    """Routes a node's incoming envelopes (see the module docstring).

    ``names`` is the system's table of named actors (read, never written, here); answers and
    dead letters go out through ``outbox``; tasks it starts go into ``tasks`` (the node's:
    cancelled when it closes).
    """

    def __init__(
        self,
        system: ActorSystem,
        names: Mapping[str, Cell],
        node_id: str,
        codec: Codec,
        outbox: Outbox,
        tasks: set[asyncio.Task[Any]],
    ) -> None:
        self.system = system
        self.names = names
        self.node_id = node_id
        self.codec = codec
        self.outbox = outbox
        self.virtual_targets: VirtualTargets | None = None
        self.watches: WatchRoutes | None = None
        self._loop = asyncio.get_running_loop()
        self._pending: dict[int, tuple[asyncio.Future[Any], str]] = {}
        self._overflow: dict[Cell, deque[Any]] = {}
        self._tasks = tasks

    def route_virtual(self, targets: VirtualTargets) -> None:
        """Hand envelopes addressed to virtual targets (``~...``) to ``targets`` from now on."""
        self.virtual_targets = targets

    def route_watches(self, watches: WatchRoutes) -> None:
        """Hand watch asks and tells to reserved targets (``!...``) to ``watches`` from now on."""
        self.watches = watches

    # --- asks this node sent ----------------------------------------------------------------

    def expect(self, corr: int, future: asyncio.Future[Any], node: str) -> bool:
        """Complete ``future`` with ``node``'s answer to ask ``corr``; ``False`` if it is taken."""
        if corr in self._pending:
            return False
        self._pending[corr] = (future, node)
        return True

    def forget(self, corr: int) -> None:
        """Stop waiting for the answer to ask ``corr`` (answered, timed out or cancelled)."""
        self._pending.pop(corr, None)

    def fail_pending(self, error: Exception) -> None:
        """Fail every ask still waiting for an answer with ``error`` (the node is closing)."""
        for future, _ in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()

    # --- receiving --------------------------------------------------------------------------

    def on_message(self, subject: bytes, reply: bytes, data: bytes, status: bytes | None) -> None:
        """A NATS message on the node's subjects (a frame, or a status about one it sent)."""
        try:
            if status is not None:
                if status == b"503":
                    self._unreachable(subject.decode().rpartition(".")[2])
                return
            try:
                envelopes = decode_frame(data)
            except WireFormatError:
                # A reply subject no answer can go to (not ASCII, a wildcard, too long): none.
                answer_to = reply_subject(reply) if reply else None
                self._bad_frame(subject.decode(errors="replace"), answer_to or "", data)
                return
            self._dispatch(envelopes)
            if self.outbox.filling:  # answers (and sends) of handlers that ran inline: off now
                self.outbox.flush_all()
        except Exception:  # never into nats-py's read loop
            _log.exception("transport.receive_failed", node=self.node_id)

    def _dispatch(self, envelopes: list[Any]) -> None:
        names = self.names
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
                        if envelope.target[:1] == "~" and self.virtual_targets is not None:
                            self._virtual_tell(envelope)
                        elif envelope.target[:1] == "!" and self.watches is not None:
                            self._watch_tell(envelope)
                        else:
                            self.dead_letter(envelope, "no such actor")
                        continue
                    decoder = decoders.get(envelope.type)
                    origin = envelope.origin
                    try:
                        if decoder is None:
                            message = self.codec.decode_body(envelope.type, envelope.body)
                        else:
                            message = decoder.decode(envelope.body)
                        if origin is not None:  # the sender: ``self.sender`` of its handler
                            origin = self.codec.origin(origin)
                    except Exception as exc:  # see Codec.decode_body: any failure is a bad body
                        if not isinstance(exc, WireFormatError):  # say which type, as decode_body
                            exc = self.codec.body_error(envelope.type, exc)
                        self.dead_letter(envelope, str(exc))
                        continue
                    if envelope.trace and cell.tracer is not None:
                        context = traceparent_context(envelope.trace)
                        message = Entry(message, None, context, origin)
                    elif origin is not None:
                        message = Entry(message, None, None, origin)
                    if overflow or not cell.post(message):  # as a local tell does
                        self._enqueue(cell, message, envelope)
                elif kind is Ask:
                    self._on_ask(envelope)
                else:  # an answer where anyone may publish: not one this node asked for
                    self._stray_answer(envelope, "the frame subject")
            except Exception as exc:
                self._undeliverable(envelope, exc)

    def _undeliverable(self, envelope: Any, exc: Exception) -> None:
        """An envelope whose delivery failed unexpectedly: answer it or dead-letter it."""
        _log.error("transport.deliver_failed", node=self.node_id, error=repr(exc), exc_info=exc)
        reason = f"could not be delivered: {exc!r}"
        if type(envelope) is Ask:
            self._answer_failure(envelope.reply, envelope.corr, *describe_exception(exc))
        elif type(envelope) is Tell:
            self.dead_letter(envelope, reason)
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

    deliver = _enqueue
    """Deliver ``item`` (a message, or an ``Ask`` entry) that ``envelope`` brought to ``cell``."""

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
            self.dead_letter(envelope, str(error))

    def _virtual_tell(self, envelope: Tell) -> None:
        assert self.virtual_targets is not None
        try:
            message = self.codec.decode_body(envelope.type, envelope.body)
            origin = None if envelope.origin is None else self.codec.origin(envelope.origin)
            self.virtual_targets.on_tell(envelope, message, origin)
        except (WireFormatError, ValueError) as exc:
            self.dead_letter(envelope, str(exc))

    def _watch_tell(self, envelope: Tell) -> None:
        assert self.watches is not None
        try:
            self.watches.on_tell(envelope)
        except WireFormatError as exc:
            self.dead_letter(envelope, str(exc))

    def _watch_ask(self, cell: Cell, envelope: Ask) -> None:
        assert self.watches is not None
        try:
            answer = self.watches.on_watch(cell, envelope.body)
        except WireFormatError as exc:
            self._answer_failure(envelope.reply, envelope.corr, *describe_exception(exc))
            return
        self._reply(envelope.reply, envelope.corr, cell.path, answer)

    def _virtual_ask(self, envelope: Ask) -> None:
        assert self.virtual_targets is not None
        try:
            message = self.codec.decode_body(envelope.type, envelope.body)
            origin = None if envelope.origin is None else self.codec.origin(envelope.origin)
        except WireFormatError as exc:
            self._answer_failure(envelope.reply, envelope.corr, *describe_exception(exc))
            return
        future: asyncio.Future[Any] = self._loop.create_future()
        future.add_done_callback(
            partial(self._answer, envelope.reply, envelope.corr, envelope.target)
        )
        try:
            self.virtual_targets.on_ask(envelope, message, future, origin)
        except ValueError as exc:
            text = f"bad virtual actor target {envelope.target!r}: {exc}"
            self._answer_failure(envelope.reply, envelope.corr, NO_SUCH_ACTOR, text, "")

    def _on_ask(self, envelope: Ask) -> None:
        if not valid_reply(envelope.reply):  # no answer can be sent: nothing runs it
            self.dead_letter(envelope, f"ask with an unusable reply subject {envelope.reply!r:.80}")
            return
        cell = self.names.get(envelope.target)
        if (
            cell is None
            and envelope.target[:1] == "~"
            and self.virtual_targets is not None
            and envelope.type not in (STOP, WATCH)
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
        if envelope.type == WATCH and self.watches is not None:
            self._watch_ask(cell, envelope)
            return
        try:
            message = self.codec.decode_body(envelope.type, envelope.body)
            origin = None if envelope.origin is None else self.codec.origin(envelope.origin)
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
            self._ask_inline(cell, message, envelope, origin)
            return
        future: asyncio.Future[Any] = self._loop.create_future()
        future.add_done_callback(partial(self._answer, envelope.reply, envelope.corr, cell.path))
        context = None
        if envelope.trace and cell.tracer is not None:
            context = traceparent_context(envelope.trace)
        self._enqueue(cell, Entry(message, future, context, origin), envelope)

    def _ask_inline(self, cell: Cell, message: Any, envelope: Ask, origin: Any) -> None:
        """The actor is idle: run the handler now, in the read loop, as a local inline ask does.

        Saves the two event-loop iterations of a mailbox round (the dispatcher's turn, then
        the reply future's callback) on every remote ask to an idle actor. Nothing is queued
        before it (the mailbox is empty), so order is kept; a handler that suspends is
        finished in the actor's own task, and answered from there.
        """
        reply, corr = envelope.reply, envelope.corr
        try:
            done, value = cell.ask_inline(message, origin)
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

    # --- answers ----------------------------------------------------------------------------

    def answers(self, prefix: str) -> Callable[[bytes, bytes, bytes, bytes | None], None]:
        """The handler of the node's reply subjects ``<prefix>.<answering node>``.

        An answer counts only for an ask sent to the node its subject names: in a secure
        cluster no other node may publish there (``_auth.node_permissions``), and without one
        a forger must still guess a random correlation id. A 503 status there says the
        destination node has no subscriber (see ``_unreachable``).
        """
        start = len(prefix) + 1

        def on_answer(subject: bytes, reply: bytes, data: bytes, status: bytes | None) -> None:
            try:
                node = subject[start:].decode(errors="replace")
                if status is not None:
                    if status == b"503":
                        self._unreachable(node)
                    return
                try:
                    parts: list[Any] = decode_frame(data)
                except WireFormatError:
                    parts = self._readable(subject, data)
                for envelope in parts:
                    try:
                        kind = type(envelope)
                        if kind is Reply:
                            self._on_reply(envelope, node)
                        elif kind is Failure:
                            self._on_failure(envelope, node)
                        else:
                            self._stray_answer(envelope, "a reply subject")
                    except Exception as exc:
                        self._undeliverable(envelope, exc)
            except Exception:  # never into nats-py's read loop
                _log.exception("transport.receive_failed", node=self.node_id)

        return on_answer

    def _readable(self, subject: bytes, data: bytes) -> list[Any]:
        """The envelopes of a damaged answer frame that can still be read (the rest logged)."""
        try:
            parts = decode_frame_leniently(data)
        except WireFormatError as exc:
            self._log_bad(subject.decode(errors="replace"), "", str(exc), len(data))
            return []
        good = []
        for part in parts:
            if isinstance(part, tuple):
                raw, error = part
                self._log_bad(subject.decode(errors="replace"), "", str(error), len(raw))
            else:
                good.append(part)
        return good

    def _stray_answer(self, envelope: Any, where: str) -> None:
        _log.warning(
            "transport.stray_envelope",
            node=self.node_id,
            kind=type(envelope).__name__,
            where=where,
        )

    def _answered(self, corr: int, node: str) -> asyncio.Future[Any] | None:
        """The future of the ask ``corr`` that this node sent to ``node``, now answered."""
        pending = self._pending.get(corr)
        if pending is None or pending[1] != node:
            return None  # a late answer (timed out, cancelled), or not from the node asked
        del self._pending[corr]
        return None if pending[0].done() else pending[0]

    def _on_reply(self, envelope: Reply, node: str) -> None:
        future = self._answered(envelope.corr, node)
        if future is None:
            return
        try:
            future.set_result(self.codec.decode_body(envelope.type, envelope.body))
        except WireFormatError as exc:
            future.set_exception(exc)

    def _on_failure(self, envelope: Failure, node: str) -> None:
        if envelope.corr == 0:  # about a frame this node sent that was unreadable
            _log.warning(
                "transport.frame_refused", node=self.node_id, by=node, reason=envelope.message
            )
            return
        future = self._answered(envelope.corr, node)
        if future is None:
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
                answered = salvage_answer(raw) if salvaged is None else None
                if salvaged is not None:
                    corr, ask_reply, target = salvaged
                    self._log_bad(subject, target, str(error), len(raw))
                    self._answer_failure(ask_reply, corr, *describe_exception(error))
                elif answered is not None and answered in self._pending:
                    # An answer to an ask of this node that cannot be read: its asker gets
                    # the error now rather than a timeout later.
                    self._log_bad(subject, "", str(error), len(raw))
                    future = self._pending.pop(answered)[0]
                    if not future.done():
                        future.set_exception(WireFormatError(f"unreadable answer: {error}"))
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

    def dead_letter(self, envelope: Tell | Ask, reason: str) -> None:
        """Count, log and publish ``envelope`` as undeliverable (``swarm.deadletter.<node>``)."""
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


def _chain(future: asyncio.Future[Any], task: asyncio.Task[Any]) -> None:
    if future.done():
        return
    if task.cancelled():
        future.cancel()
    elif (error := task.exception()) is not None:
        future.set_exception(error)
    else:
        future.set_result(task.result())
