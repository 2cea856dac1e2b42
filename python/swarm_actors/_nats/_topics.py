"""Topics across nodes: one NATS subscription per subscribed pattern, fanned out locally.

``TopicBridge`` is the ``TopicLink`` (``_core._topics``) of a node. Each distinct pattern
the system's actors subscribe to is one subscription of the node's connection to the
pattern's subject (``swarm.topic.<pattern>``, NATS wildcards as they are), on the raw-bytes
route (``_compat.fast_subscribe``); what arrives is handed to the system's ``Topics`` for that
pattern's subscribers. A subscription is taken before ``subscribe`` returns (and the server
has confirmed it with a flush); it is dropped when its pattern's last subscriber leaves.

Publishing: ``Publish`` envelopes (``_wire``) encoded with the node's codec, as tells are
(refs inside messages travel as refs; the receiving side decodes only registered types, and a
body it cannot read is logged and counted as a dead letter), and batched per subject by the
node's outbox: everything published on one topic in one event-loop iteration is one NATS
message. The publishing node delivers to its own subscribers directly (no encoding, no round
trip through the server); the copy the server echoes back to it (the connection does not use
``no_echo``: its self-probe and its journal's events must reach it) is dropped by the
envelope's ``origin``, after decoding the frame's envelopes but not their bodies.

Events (``events.`` patterns, subjects ``swarm.events.<role>.<kind>``) arrive as the
JetStream journals of all nodes publish them (``encode_event`` bytes; the acknowledgement
reply subject is ignored). A retried journal write can show an event twice.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import TYPE_CHECKING, Any

from swarm_actors._core._telemetry import sampled_context, traceparent, traceparent_context
from swarm_actors._core._topics import event_pattern
from swarm_actors._events._schema import decode_event
from swarm_actors._exceptions import EventDecodeError, WireFormatError
from swarm_actors._log import get_logger
from swarm_actors._nats._compat import fast_subscribe, unsubscribe_quietly
from swarm_actors._nats._wire import PublishOut, decode_publications, type_name

if TYPE_CHECKING:
    from nats.aio.subscription import Subscription

    from swarm_actors._core._topics import Topics
    from swarm_actors._nats._transport import Transport

__all__ = ["TopicBridge"]

_log = get_logger("swarm_actors.topics")


class TopicBridge:
    """The ``TopicLink`` of one node (see the module docstring)."""

    def __init__(self, transport: Transport, topics: Topics) -> None:
        self._transport = transport
        self._topics = topics
        self._node = transport.node_id
        self._outbox = transport.outbox
        self._codec = transport.codec
        self._subs: dict[str, Subscription] = {}
        self._live: dict[str, object] = {}  # pattern -> the token its live handler carries
        self._opening: dict[str, asyncio.Future[None]] = {}
        self.echoes = 0
        """This node's own publications that came back from the server (dropped)."""

    async def listen(self, pattern: str) -> None:
        """Subscribe to ``pattern`` unless already subscribed; return once the server has it."""
        if pattern in self._live:
            opening = self._opening.get(pattern)
            if opening is not None:
                await asyncio.shield(opening)
            return
        token = object()
        self._live[pattern] = token
        on_message = self._on_event if event_pattern(pattern) else self._on_topic
        opening = self._opening[pattern] = asyncio.get_running_loop().create_future()
        try:
            client = self._transport.client
            sub = await fast_subscribe(client, pattern, partial(on_message, pattern, token))
            if self._live.get(pattern) is not token:  # unlistened meanwhile
                await unsubscribe_quietly(client, sub)
                return
            self._subs[pattern] = sub
            await client.flush()
        except BaseException as exc:
            if self._live.get(pattern) is token:
                del self._live[pattern]
            if not opening.done():
                opening.set_exception(exc)
                opening.exception()  # retrieved: a second subscriber may not be waiting
            raise
        finally:
            if self._opening.get(pattern) is opening:
                del self._opening[pattern]
            if not opening.done():
                opening.set_result(None)

    def unlisten(self, pattern: str) -> None:
        """Drop the subscription of ``pattern``: nothing more is delivered for it from now."""
        self._live.pop(pattern, None)
        sub = self._subs.pop(pattern, None)
        if sub is not None and not self._transport.closed:
            task = asyncio.get_running_loop().create_task(
                unsubscribe_quietly(self._transport.client, sub)
            )
            self._transport.track(task)

    def publish(self, subject: str, message: Any, sender: str) -> None:
        """Buffer ``message`` for ``subject``'s subscribers on other nodes (see the outbox)."""
        trace = ""
        if self._transport.tracer is not None:
            context = sampled_context()
            trace = traceparent(context) if context is not None else ""
        envelope = PublishOut(self._node, type_name(type(message)), message, trace, sender)
        self._outbox.append(subject, envelope, trace)

    def backpressure(self) -> asyncio.Future[None] | None:
        """The publish waiting for nats-py to flush its buffer, if any."""
        return self._outbox.stalled

    # --- receiving (in nats-py's read loop) -------------------------------------------------

    def _on_topic(
        self,
        pattern: str,
        token: object,
        subject: bytes,
        reply: bytes,
        data: bytes,
        status: bytes | None,
    ) -> None:
        if status is not None or self._live.get(pattern) is not token:
            return
        try:
            envelopes = decode_publications(data)
        except WireFormatError as exc:
            self._bad(subject, "", str(exc))
            return
        node = self._node
        decoders = self._codec.decoders
        topics = self._topics
        traced = self._transport.tracer is not None
        for envelope in envelopes:
            if envelope.origin == node:
                self.echoes += 1
                continue
            try:
                decoder = decoders.get(envelope.type)
                if decoder is None:
                    message = self._codec.decode_body(envelope.type, envelope.body)
                else:
                    message = decoder.decode(envelope.body)
            except Exception as exc:  # see Codec.decode_body: any failure is a bad body
                self._bad(subject, envelope.sender, f"{envelope.type or 'plain value'}: {exc}")
                continue
            context = traceparent_context(envelope.trace) if traced and envelope.trace else None
            topics.deliver(pattern, message, context)

    def _on_event(
        self,
        pattern: str,
        token: object,
        subject: bytes,
        reply: bytes,
        data: bytes,
        status: bytes | None,
    ) -> None:
        if status is not None or self._live.get(pattern) is not token:
            return
        try:
            event = decode_event(data)
        except EventDecodeError as exc:
            self._bad(subject, "", str(exc))
            return
        self._topics.deliver(pattern, event, None)

    def _bad(self, subject: bytes, sender: str, reason: str) -> None:
        """Something on a topic subject that cannot be delivered: a dead letter, logged."""
        self._transport.system.dead_letters += 1
        _log.warning(
            "topic.bad_message",
            node=self._node,
            subject=subject[:200].decode(errors="replace"),
            sender=sender[:200],
            reason=reason[:1000],
        )
