"""``RemoteRef``: a ``Ref`` to an actor that runs on another node (process or host)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from opentelemetry import trace

from swarm_actors._config import DEFAULT, Timeout
from swarm_actors._core._capability import check_send_remote, current_sender
from swarm_actors._core._ref import resolve_timeout
from swarm_actors._core._sender import check_reply_to
from swarm_actors._core._telemetry import sampled_context, start_ask_span, traceparent
from swarm_actors._exceptions import ActorDeadError
from swarm_actors._nats._wire import STOP, NoSuchActorError

if TYPE_CHECKING:
    from swarm_actors._core._actor import Actor
    from swarm_actors._core._cell import Cell
    from swarm_actors._core._contract import Ref, RefForm, WireNode
    from swarm_actors._nats._transport import Transport

__all__ = ["RemoteRef"]

A = TypeVar("A", bound="Actor")


class RemoteRef(Generic[A]):
    """A ref to an actor on another node: a ``Ref``, as a local ``ActorRef`` is (not one).

    ``system.lookup(name)`` returns one for an actor registered by another node, and a ref put
    in a message arrives as one on the other side. A ref from the registry follows the name: if
    the actor is restarted on another node, the next message goes there. A ref that arrived in
    a message is pinned to the node it came from (the name alone may mean another actor
    elsewhere), and follows the registry only once that node answers "no such actor".

    Differences from a local ref:

    * ``tell`` is at most once (like NATS core): it returns once the message is buffered for
      sending, and a message to a node that vanished is lost; it raises ``ActorDeadError`` only
      when the name is not registered anywhere;
    * ``ask`` answers like a local ask (``TimeoutError``, ``ActorDeadError``,
      ``UnhandledMessageError``), and other exceptions of the remote handler arrive as
      ``RemoteError`` with the remote type name and message;
    * ``is_alive`` is what this node knows (the name is registered, or the ref is pinned);
    * it has no ``stats()``: the counters live on the other node (ask the actor instead).

    Messages (and replies) must be msgpack-encodable, and their types importable under the same
    name on both sides (see ``register_message_type``).
    """

    __slots__ = (
        "_classes",
        "_name",
        "_path",
        "_pinned",
        "_resolved",
        "_role",
        "_subject",
        "_transport",
        "_version",
    )

    def __init__(
        self,
        transport: Transport,
        name: str,
        *,
        node: str | None = None,
        path: str = "",
        role: str = "",
        classes: tuple[str, ...] = (),
    ) -> None:
        self._transport = transport
        self._name = name
        self._pinned = node
        self._path = path or f"/{name}"
        self._role = role
        self._classes = classes
        # Where messages go, valid while the registry's version is _version (-1: look up).
        self._version = -1
        self._resolved = ""
        self._subject = ""

    @property
    def name(self) -> str:
        """The actor's name on its node."""
        return self._name

    @property
    def path(self) -> str:
        """The actor's path on its node."""
        entry = self._entry()
        return entry.path if entry is not None else self._path

    @property
    def node(self) -> str | None:
        """Id of the node the actor runs on (``None`` if not registered anywhere now)."""
        try:
            return self._node()
        except ActorDeadError:
            return None

    @property
    def is_alive(self) -> bool:
        """Whether this node believes the actor runs (registered, or pinned to a node)."""
        return self._pinned is not None or self._entry() is not None

    def _entry(self) -> Any:
        if self._pinned is not None:
            return None
        return self._transport.registry.get(self._name)

    def _node(self) -> str:
        registry = self._transport.registry
        if self._version == registry.version:
            return self._resolved
        if self._pinned is not None:
            node = self._pinned
        else:
            entry = registry.get(self._name)
            if entry is None:
                raise ActorDeadError(
                    f"no actor named {self._name!r} is registered", actor=self._path
                )
            node = entry.node
        self._resolved = node
        self._subject = self._transport.outbox.subject_of(node)
        self._version = registry.version
        return node

    def _capabilities(self) -> tuple[str, tuple[str, ...], str]:
        entry = self._entry()
        if entry is not None:
            return entry.role, entry.classes, entry.path
        return self._role, self._classes, self._path

    def _check_send(self, node: str) -> None:
        role, classes, path = self._capabilities()
        check_send_remote(role, classes, path, node)

    def __swarm_watch__(self, watcher: Cell) -> Callable[[], None] | None:
        """Register ``watcher``'s watch with the actor's node (see ``Actor.watch``)."""
        return self._transport.watches.watch(watcher, self)

    def __swarm_wire__(self, node: WireNode) -> RefForm:
        """The ref on the wire (see ``Ref``): the same from any node, the one it runs on."""
        role, classes, path = self._capabilities()
        return (self._node(), self._name, path, role, classes)

    def _trace(self) -> str:
        if self._transport.tracer is None:
            return ""
        context = sampled_context()
        return traceparent(context) if context is not None else ""

    async def tell(self, message: Any, reply_to: Ref[Any] | None = None) -> None:
        """Send ``message`` (at most once); see the class docstring.

        Raises ``MessageCapabilityError`` (sending nothing) if the sending actor may not message
        this one, ``MessageTooLargeError`` if it exceeds the server's payload limit, and
        ``TypeError`` if it (or ``reply_to``) cannot be encoded. Waits while the NATS client's
        buffer is full. The remote handler's ``self.sender`` is ``reply_to`` if given, else a
        ref back to the sending actor (``None`` from outside any actor).
        """
        transport = self._transport
        if self._version != transport.registry.version:
            self._node()
        sender = current_sender()  # one read: the capability check and the sender
        if sender is not None and sender.grant is not None:
            self._check_send(self._resolved)
        transport.outbox.tell(
            self._subject,
            self._name,
            message,
            "" if transport.tracer is None else self._trace(),
            "" if sender is None else sender.path,
            0,
            self._origin(sender, reply_to),
        )
        stalled = transport.outbox.stalled
        if stalled is not None:
            # Shielded: nats-py swallows a cancellation of its publish, which would swallow
            # this caller's own (a timeout around the tell would never fire).
            await asyncio.shield(stalled)

    def tell_nowait(self, message: Any, reply_to: Ref[Any] | None = None) -> None:
        """Send ``message`` now (buffered for this event-loop iteration); never waits."""
        node = self._node()
        sender = current_sender()
        if sender is not None and sender.grant is not None:
            self._check_send(node)
        self._transport.outbox.tell(
            self._subject,
            self._name,
            message,
            self._trace(),
            "" if sender is None else sender.path,
            0,
            self._origin(sender, reply_to),
        )

    def _origin(self, sender: Cell | None, reply_to: Any) -> Any:
        """What the remote handler's ``self.sender`` is: ``reply_to``, or the sending actor."""
        if reply_to is not None:
            return check_reply_to(reply_to)
        return None if sender is None else self._transport.origin(sender)

    async def ask(self, message: Any, *, timeout: Timeout = DEFAULT) -> Any:
        """Send ``message`` and return the remote handler's result; see the class docstring.

        ``timeout`` defaults to the system's ``Timeouts.ask``; ``None`` waits without limit.
        """
        seconds = resolve_timeout(timeout, self._transport.system)
        return await self._ask(message, seconds, None)

    async def _ask(self, message: Any, timeout: float | None, kind: str | None) -> Any:
        node = self._node()
        sender = current_sender()
        if sender is not None and sender.grant is not None:
            self._check_send(node)
        sender_path = sender.path if sender is not None else ""
        transport = self._transport
        origin = None if sender is None else transport.origin(sender)
        tracer = transport.tracer
        context = sampled_context() if tracer is not None else None
        for attempt in range(2):
            try:
                if tracer is None or context is None:
                    return await transport.ask(
                        node, self._name, message, timeout, "", sender_path, kind, origin
                    )
                span = start_ask_span(tracer, self.path, message, context)
                with trace.use_span(span, end_on_exit=True):
                    parent = trace.set_span_in_context(span, context)
                    return await transport.ask(
                        node,
                        self._name,
                        message,
                        timeout,
                        traceparent(parent),
                        sender_path,
                        kind,
                        origin,
                    )
            except NoSuchActorError:
                # The registry may have moved on (restarted elsewhere): look once more.
                entry = await transport.registry.fetch(self._name)
                if attempt or entry is None or entry.node == node:
                    raise
                self._pinned = None
                self._version = -1
                node = entry.node
        raise AssertionError("unreachable")  # pragma: no cover

    async def stop(self, *, drain: bool = True) -> int:
        """Stop the remote actor (as ``ActorRef.stop`` does there); returns discarded count."""
        result = await self._ask(drain, None, STOP)
        return int(result)

    def __repr__(self) -> str:
        where = self._pinned or "registry"
        return f"<RemoteRef {self._name} on {where}>"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, RemoteRef)
            and other._name == self._name
            and other._pinned == self._pinned
            and other._transport is self._transport
        )

    def __hash__(self) -> int:
        return hash(("remote", self._name, self._pinned))
