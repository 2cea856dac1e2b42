"""The ``Actor`` base class and the ``@handler`` decorator.

Users subclass ``Actor`` and either decorate one method per message type with ``@handler`` (the
type comes from the annotation of its message parameter) or override ``on_receive`` for
everything else. Per-class options are class keywords::

    class Counter(Actor, mailbox_size=10_000):
        @handler
        async def add(self, msg: Add) -> None: ...
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, Union, get_args, get_origin

from swarm_actors._core._capability import MessageGrant, class_name, valid_role
from swarm_actors._core._messages import register_actor_class, register_handler_types
from swarm_actors._core._recorder import decision, record_for, state_change
from swarm_actors._core._sender import sender_of
from swarm_actors._core._supervision import OneForOne
from swarm_actors._core._telemetry import ActorLog, step_span
from swarm_actors._exceptions import InvalidArgumentError, NoJournalError, UnhandledMessageError

if TYPE_CHECKING:
    from opentelemetry.trace import Span
    from opentelemetry.util.types import AttributeValue

    from swarm_actors._core._cell import Cell
    from swarm_actors._core._contract import Ref
    from swarm_actors._core._ref import ActorRef
    from swarm_actors._core._timers import Timers
    from swarm_actors._events._schema import Payload, SwarmEvent
    from swarm_actors._space import TupleSpace
    from swarm_actors._system import ActorSystem

__all__ = ["Actor", "SpaceGrant", "class_names", "handler"]

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
A = TypeVar("A", bound="Actor")
R = TypeVar("R")

DEFAULT_MAILBOX_SIZE = 1000


@dataclass(frozen=True, slots=True)
class SpaceGrant:
    """What an actor class may do on the system's tuple space (the seed design's hookwall).

    ``lanes`` are the first fields the actor may use (``None``: every lane); ``read``,
    ``take`` and ``write`` grant those operations. Declared per class:
    ``class Worker(Actor, space=SpaceGrant(lanes=("jobs", "results"), read=False))``.
    """

    lanes: tuple[Any, ...] | None = None
    read: bool = True
    take: bool = True
    write: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.lanes, (str, bytes)):
            raise TypeError('lanes must be a tuple of lane values, e.g. lanes=("jobs",)')
        if self.lanes is not None:
            object.__setattr__(self, "lanes", tuple(self.lanes))


def handler(fn: F) -> F:
    """Mark an ``async def`` method as the handler of the type its message parameter names.

    ``async def on_add(self, msg: Add) -> int`` handles ``Add`` (and subclasses of ``Add`` that
    have no handler of their own). A union annotation registers every member. The class raises
    ``TypeError`` at definition time if the method is not async or has no usable annotation.
    """
    fn.__swarm_handler__ = True  # type: ignore[attr-defined]
    return fn


def _message_types(cls: type, name: str, fn: Callable[..., Any]) -> Iterable[type]:
    if not inspect.iscoroutinefunction(fn):
        raise TypeError(f"{cls.__qualname__}.{name}: a @handler must be an async def method")
    params = list(inspect.signature(fn).parameters.values())
    if len(params) != 2:
        raise TypeError(f"{cls.__qualname__}.{name}: a @handler takes (self, message)")
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:  # unresolvable forward reference
        raise TypeError(f"{cls.__qualname__}.{name}: cannot resolve annotations: {exc}") from exc
    annotation = hints.get(params[1].name)
    if annotation is None:
        raise TypeError(
            f"{cls.__qualname__}.{name}: annotate the message parameter with its type, "
            f"e.g. `async def {name}(self, msg: MyMessage)`"
        )
    members = (
        get_args(annotation)
        if get_origin(annotation) in (Union, types.UnionType)
        else (annotation,)
    )
    for member in members:
        origin = get_origin(member) or member
        if origin is Any:  # a class since Python 3.11, but no message is an instance of it
            raise TypeError(
                f"{cls.__qualname__}.{name}: a @handler cannot take Any; "
                "override on_receive to handle every message"
            )
        if not isinstance(origin, type):
            raise TypeError(f"{cls.__qualname__}.{name}: {member!r} is not a class")
        yield origin


def _result_types(fn: Callable[..., Any]) -> list[type]:
    """The classes a handler's return annotation names (what a remote asker may get back)."""
    annotation = typing.get_type_hints(fn).get("return")
    members = (
        get_args(annotation)
        if get_origin(annotation) in (Union, types.UnionType)
        else (annotation,)
    )
    return [m for m in members if isinstance(m, type) and get_origin(m) is None]


class Actor:
    """Base class of every actor.

    An actor handles one message at a time, in the order each sender sent them. Its state is
    plain attributes; nothing else touches them, so no locks are needed. Subclass it, add
    ``@handler`` methods or override ``on_receive``, and start it with ``ActorSystem.start`` (or
    ``self.start_child`` from another actor) to get an ``ActorRef``.

    Class keywords:

    * ``mailbox_size``: pending messages before ``tell`` waits (default 1000);
    * ``max_concurrency``: how many handler calls may run at once (default 1), for handlers
      that spend their time awaiting I/O (a model call, a fetch). **Above 1, the actor's
      state is yours to guard**: every ``await`` in a handler is a point where another
      handler of the same actor may run and change it (use an ``asyncio.Lock``, or keep
      state changes between two awaits). What still holds: handlers *start* in mailbox order
      (so in each sender's order), one first step (up to its first ``await`` that suspends)
      after another; they *finish* in any order. An ask's exception is its answer and the
      other calls go on; any other failure stops new calls from starting while the
      supervisor decides, lets the calls in flight go on, and a restart or a stop then
      cancels them (their asks get ``ActorDeadError``). ``stop(drain=True)`` waits for the
      mailbox and every call in flight; ``drain=False`` cancels them. An ask runs inline
      (in the asker's task) whenever a slot is free and the mailbox empty. ``AskCycleError``
      is only raised for cycles of one-at-a-time actors (this one may answer while it waits).
      ``ref.stats().in_flight`` counts the calls in progress;
    * ``stash``: ``True`` gives the actor a stash (``self.stash()``, ``self.unstash_all()``)
      holding up to ``mailbox_size`` messages;
    * ``supervision``: the strategy this actor applies to *its children* (default
      ``OneForOne()``);
    * ``role``: the role name in events and capability checks (default: inherited, or the
      class name in lower case); 1-64 letters, digits, ``_`` or ``-``;
    * ``space``: a ``SpaceGrant``, the lanes and operations ``self.space`` allows;
    * ``may_message``: the actors this one may send to, as roles, ``Actor`` classes or
      ``/path`` patterns (see ``MessageGrant``); a send outside it raises
      ``MessageCapabilityError`` and enqueues nothing. Default: no restriction.

    Set by the runtime before ``on_start`` runs:

    * ``self.ref``: this actor's ``ActorRef``;
    * ``self.system``: the ``ActorSystem`` it runs in;
    * ``self.timers``: one-shot and periodic self-messages, cancelled when the actor stops.

    The sender: inside a handler, ``self.sender`` is a ref to the actor that sent the message
    being handled, by ``tell`` or ``ask``, from this node or another (a ``RemoteRef`` back to
    it then), so that ``await self.sender.tell(Reply(...))`` answers a tell. A virtual or
    placed actor's sender is its ``VirtualRef`` / ``PlacedRef``; a sender that named another
    ref with ``tell(msg, reply_to=ref)`` gives that ref. It is ``None`` when there is nobody
    to reply to: a message sent from outside any actor, a timer's message (the clock sent it,
    not an actor), a sender on another node that no other node can reach (a ``virtual`` actor
    of that process), and outside handlers: in ``on_start``, ``on_stop``, ``on_failure``,
    ``restore`` and ``snapshot``. A task that a handler starts keeps that handler's sender.
    Asks still return their answer as the handler's result; ``self.sender`` in an ask's
    handler is the asking actor.

    Death watch: ``self.watch(ref)`` sends this actor a ``Terminated`` once the actor behind
    ``ref`` ends (here or on another node); ``self.unwatch(ref)`` takes it back.

    Always available: ``self.log``, a structlog logger bound with the actor's path (``actor``),
    name (``actor_name``) and the trace and span ids of the message being handled
    (``trace_id``, ``span_id``, when it is traced), whose records go to the standard
    ``logging`` logger named after the actor's class (``<module>.<qualname>``); and
    ``self.step(name)``, a tracing span.
    """

    mailbox_size: ClassVar[int] = DEFAULT_MAILBOX_SIZE
    max_concurrency: ClassVar[int] = 1
    """How many handler calls of this actor may run at once (the class keyword)."""
    stashing: ClassVar[bool] = False
    """Whether this actor has a stash (the class keyword ``stash=True``)."""
    space_grant: ClassVar[SpaceGrant | None] = None
    message_grant: ClassVar[MessageGrant | None] = None
    role: ClassVar[str] = "actor"
    _role_explicit: ClassVar[bool] = False
    supervision: ClassVar[OneForOne] = OneForOne()
    _handlers: ClassVar[dict[type, str]] = {}
    _dispatch: ClassVar[dict[type, Callable[..., Any] | None]] = {}

    _cell: Cell
    system: ActorSystem
    key: Any
    """For a virtual actor: its key (``system.virtual`` key, or agent id of a batch member)."""
    log = ActorLog()

    def __init_subclass__(
        cls,
        *,
        mailbox_size: int | None = None,
        supervision: OneForOne | None = None,
        space: SpaceGrant | None = None,
        role: str | None = None,
        may_message: Iterable[Any] | None = None,
        max_concurrency: int | None = None,
        stash: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        if role is not None:
            if not valid_role(role):
                raise InvalidArgumentError(
                    f"{cls.__qualname__}: role must be 1-64 letters, digits, _ or -, got {role!r}"
                )
            cls.role = role
            cls._role_explicit = True
        elif not cls._role_explicit:
            cls.role = re.sub(r"[^A-Za-z0-9_-]", "_", cls.__name__.lower())[:64]
        if may_message is not None:
            cls.message_grant = MessageGrant.parse(cls.__qualname__, may_message, Actor)
        if space is not None:
            if not isinstance(space, SpaceGrant):
                raise TypeError(f"{cls.__qualname__}: space must be a SpaceGrant")
            cls.space_grant = space
        if mailbox_size is not None:
            if not isinstance(mailbox_size, int) or mailbox_size < 1:
                raise InvalidArgumentError(f"{cls.__qualname__}: mailbox_size must be an int >= 1")
            cls.mailbox_size = mailbox_size
        if max_concurrency is not None:
            if (
                not isinstance(max_concurrency, int)
                or isinstance(max_concurrency, bool)
                or max_concurrency < 1
            ):
                raise InvalidArgumentError(
                    f"{cls.__qualname__}: max_concurrency must be an int >= 1 (1, the default, "
                    f"handles one message at a time), got {max_concurrency!r}"
                )
            cls.max_concurrency = max_concurrency
        if stash is not None:
            if not isinstance(stash, bool):
                raise InvalidArgumentError(
                    f"{cls.__qualname__}: stash must be True or False, got {stash!r}"
                )
            cls.stashing = stash
        if supervision is not None:
            if not isinstance(supervision, OneForOne):
                raise TypeError(f"{cls.__qualname__}: supervision must be OneForOne or AllForOne")
            cls.supervision = supervision
        handlers = dict(cls._handlers)
        for name, fn in vars(cls).items():
            if getattr(fn, "__swarm_handler__", False):
                for message_type in _message_types(cls, name, fn):
                    handlers[message_type] = name
                register_handler_types(_result_types(fn))
        register_handler_types(list(handlers))
        register_actor_class(cls)
        cls._handlers = handlers
        cls._dispatch = {}

    @classmethod
    def _resolve(cls, message_type: type) -> Callable[..., Any] | None:
        """The (unbound) handler of a message type, or ``None``; cached per class."""
        try:
            return cls._dispatch[message_type]
        except KeyError:
            pass
        found: Callable[..., Any] | None = None
        for klass in message_type.__mro__:
            name = cls._handlers.get(klass)
            if name is not None:
                found = getattr(cls, name)
                break
        if found is None and not cls._unhandled():
            found = cls.on_receive
        cls._dispatch[message_type] = found
        return found

    @property
    def ref(self) -> ActorRef[Any]:
        """The ``ActorRef`` of this actor (set up by the runtime before ``on_start`` runs)."""
        return self._cell.ref

    @property
    def sender(self) -> Ref[Any] | None:
        """The sender of the message being handled, as a ref to reply to (see the class docs).

        ``None`` from outside any actor, for a timer's message, and outside handlers. Correct
        per handler call (a context variable, not an attribute): see ``_core/_sender.py``.
        """
        cell = getattr(self, "_cell", None)
        return None if cell is None else sender_of(cell)

    @property
    def space(self) -> TupleSpace:
        """The system's tuple space, restricted to this class's ``SpaceGrant`` (if any).

        Use it for Linda-style coordination: ``await self.space.take(("jobs", int, ANY))``.
        A forbidden lane or operation raises ``CapabilityError`` and changes nothing.
        """
        return self.system._space_for(type(self))

    @property
    def timers(self) -> Timers:
        """One-shot and periodic messages to this actor (cancelled when it stops)."""
        timers: Timers = self._cell.get_timers()
        return timers

    def stash(self) -> None:
        """Defer the message being handled: it is handled again after ``unstash_all``.

        For an actor declared with ``stash=True``, inside one of its handlers (typically while
        it is not ready: during a long initialization, or while it waits for a reply); return
        right after it. An ask stays unanswered, its asker waiting within its timeout, and is
        answered by the handler that finally handles it; what this handler returns is dropped.
        Calling it again for the same message does nothing. An exception the handler raises
        after it is still the handler's failure, and the message leaves the stash.

        The stash keeps the messages' order and holds up to ``mailbox_size`` of them: beyond
        that it raises ``MailboxFullError`` (nothing is dropped silently). A supervisor's
        restart puts the stash back in front of the mailbox (the new instance sees the
        messages first, as Akka does); a stop discards it, drained or not (stashed asks get
        ``ActorDeadError``). With ``max_concurrency > 1`` each call stashes its own message.

        Raises ``InvalidArgumentError`` without ``stash=True``, or outside a handler call
        (``on_start``, ``on_stop``, a task the handler made).
        """
        self._cell.stash()

    def unstash_all(self) -> int:
        """Put every stashed message back in front of the mailbox, in the order they came.

        They are handled next, before anything already queued; returns how many there were.
        Callable from anywhere in the actor (a handler, ``on_start``, a timer's message).
        Raises ``InvalidArgumentError`` without ``stash=True``.
        """
        return self._cell.unstash_all()

    async def on_start(self) -> None:
        """Runs once before the first message, and again on each restart (a fresh instance).

        Runs in the task that called ``start`` (or, on restart, the supervisor's task). If it
        raises, ``start`` raises that error and the actor is not registered; on restart, the
        error counts as another failure.
        """

    async def on_stop(self) -> None:
        """Runs once when the actor stops, after its children stopped and its mailbox drained.

        Also runs on the old instance before a restart. An error is logged and ignored: the
        actor stops anyway.
        """

    async def on_failure(self, exc: BaseException) -> None:
        """Runs after a handler raised ``exc``, before the supervisor decides what happens.

        The actor takes no message until the decision is carried out. An error raised here is
        logged and does not change the decision.
        """

    async def on_receive(self, message: Any) -> Any:
        """Handle a message that no ``@handler`` claims. The default refuses it.

        The refusal is an ``UnhandledMessageError`` raised to the sender of an ``ask``, and a
        logged dead letter for a ``tell``; it is not a failure and never restarts the actor.
        """
        raise UnhandledMessageError(
            f"{type(self).__qualname__} has no handler for {type(message).__qualname__}",
            actor=self._cell.path if hasattr(self, "_cell") else "",
        )

    def snapshot(self) -> Any:
        """The state to keep when this virtual actor is passivated (default: none).

        Return any msgspec-encodable value (a ``msgspec.Struct`` is the natural choice); it is
        encoded with msgpack, compressed into a token held by the Rust agent tree, and passed to
        ``restore`` on the next activation. Runs after ``on_stop``. Ignored for actors started
        with ``start``.
        """
        return None

    def restore(self, state: Any) -> None:
        """Take back the state ``snapshot`` returned, before ``on_start`` of a reactivation.

        Annotate ``state`` with its type (for example a ``msgspec.Struct``) and it is decoded
        into that type; unannotated, it arrives as plain msgpack values (dicts, lists, ...). Not
        called on a first activation (there is no state yet).
        """

    async def subscribe(self, topic: str) -> None:
        """Receive what is published on ``topic`` (``ActorSystem.publish``), from every node.

        ``topic`` is a NATS subject without its prefix: tokens of printable ASCII separated
        by dots, where ``*`` matches one token and ``>`` (last) one or more, e.g.
        ``"orders.*.created"`` or ``"orders.>"``. ``"events.<role>.<kind>"`` patterns
        (``"events.>"``, ``"events.*.system_signal"``...) receive the runtime's own events,
        ``SwarmEvent`` objects (see ``ActorSystem.journal``). Messages arrive as tells (a
        full mailbox drops one: at most once), once per matching pattern the actor holds.
        Subscribing twice to one pattern is one subscription; subscriptions outlive
        restarts and end when the actor stops (a virtual actor's when it is passivated).
        Returns once a subscription on NATS covers it. ``InvalidArgumentError`` for a
        pattern that is not a valid subject (an empty token, whitespace, ``*`` inside a
        token, ``>`` before the end).
        """
        if self._cell.accepting:  # a stopping actor (in on_stop) takes nothing more
            await self.system.subscribe(topic, self.ref)

    def unsubscribe(self, topic: str) -> bool:
        """End the subscription to ``topic`` (the same pattern as subscribed); whether it had one.

        Nothing published afterwards reaches this actor through that pattern.
        """
        return self.system.unsubscribe(topic, self.ref)

    async def start_child(
        self, actor_class: type[A], *args: Any, name: str | None = None, **kwargs: Any
    ) -> ActorRef[A]:
        """Start a child actor supervised by this one; it stops when this actor stops."""
        return await self.system._start(actor_class, args, kwargs, name=name, parent=self.ref)

    def watch(self, ref: R) -> R:
        """Have ``Terminated(ref, reason)`` sent to this actor once the actor behind ``ref`` ends.

        ``ref`` is an ``ActorRef`` (this process) or a ``RemoteRef`` (another node: the watch
        is registered with that node, and its death is detected within about
        ``Cluster.node_ttl`` seconds; see ``Terminated`` for the reasons). An actor already gone
        gets its ``Terminated`` at once (``"already_dead"``); watching the same ref twice
        still sends one. Returns ``ref``. Watches last until the ``Terminated``, ``unwatch``
        or this actor's stop, and survive its restarts.

        Raises ``InvalidArgumentError`` for anything but such a ref (a virtual or placed ref
        too: passivation is not death, so no ``Terminated`` would come), for a watch of
        itself, from a virtual actor, or from an actor class with no handler for
        ``Terminated`` (the message would be lost: the error says what to add).
        """
        cell = self._cell
        cell.dispatcher.watches.watch(cell, ref)
        return ref

    def unwatch(self, ref: Any) -> None:
        """Take back the watch of ``ref``: no ``Terminated`` for it will be handled from now on.

        One already waiting in the mailbox is taken out. Does nothing if ``ref`` is not watched.
        """
        cell = self._cell
        cell.dispatcher.watches.unwatch(cell, ref)

    def decide(
        self,
        choice: str,
        *,
        rationale: str = "",
        alternatives: Sequence[str] = (),
        confidence: float = 0.0,
        trigger: str = "",
        context_hash: str = "",
        memory_ids: Sequence[str] = (),
        cause: SwarmEvent | str | None = None,
    ) -> SwarmEvent:
        """Record a decision (the "why") in the system's journal and return the event.

        ``choice`` is what was decided, ``rationale`` why, ``alternatives`` what was rejected,
        ``confidence`` in [0, 1], ``trigger`` what prompted it, ``context_hash`` and
        ``memory_ids`` what it was based on, and ``cause`` the event (or event id) that led to
        it. The event gets a new id, the time, this actor's role and path, its next sequence,
        and the current trace and span. Raises ``ValueError`` / ``TypeError`` for bad values
        and the journal's error if it refuses the event (nothing is recorded then).
        """
        payload = decision(
            choice,
            rationale=rationale,
            alternatives=tuple(alternatives),
            confidence=confidence,
            trigger=trigger,
            context_hash=context_hash,
            memory_ids=tuple(memory_ids),
        )
        return self._record(payload, cause)

    def record_change(
        self,
        state: Any,
        *,
        resource: str = "",
        target_type: str = "",
        delta: bool = False,
        reversible: bool = False,
        content_type: str | None = None,
        cause: SwarmEvent | str | None = None,
    ) -> SwarmEvent:
        """Record a state change (the "what") in the journal, chained by hash; returns it.

        ``state`` is the new state (or, with ``delta=True``, a delta from the previous one):
        ``bytes`` as they are, anything else encoded with msgspec msgpack. ``resource`` and
        ``target_type`` say what changed. Each change carries the hash of this actor's
        previous change, so ``swarm_actors.events.verify_chain`` finds any gap or tampering
        and ``replay_state`` rebuilds the state as of any earlier sequence. Raises
        ``TypeError`` if ``state`` cannot be encoded (nothing is recorded).
        """
        payload = state_change(
            state,
            resource_name=resource,
            target_type=target_type,
            delta=delta,
            reversible=reversible,
            content_type=content_type,
        )
        return self._record(payload, cause)

    def record_event(
        self, payload: Payload, *, cause: SwarmEvent | str | None = None
    ) -> SwarmEvent:
        """Record any payload (a ``ToolRun``, a ``ModelCall``...) as this actor's next event.

        What ``decide`` and ``record_change`` do for their payloads, for the others: the tools
        and brains an actor uses record their events as the actor's this way (a state change
        is chained like ``record_change``'s). Returns the event; raises the journal's error if
        it refuses it.
        """
        return self._record(payload, cause)

    def _record(self, payload: Payload, cause: SwarmEvent | str | None) -> SwarmEvent:
        cell = self._cell
        journal = cell.system._journal
        if journal is None:
            raise NoJournalError(
                "this ActorSystem keeps no journal (it was made with journal=None, or with nats= "
                "and is not connected yet)"
            )
        return record_for(journal, cell, payload, cause)

    def step(self, name: str, **attributes: AttributeValue) -> AbstractContextManager[Span]:
        """A tracing span for one role-level step, current until the ``with`` block ends.

        ``with self.step("plan", goal=goal) as span:`` makes a span named ``name`` with the
        actor's path and ``attributes``; spans, asks and tells made inside are its children, and
        an exception leaving the block marks it as failed. Its parent is the current span (the
        handled message's); without one, it starts a trace if the sampler says so. When the
        system's tracing is off it costs next to nothing and yields a non-recording span.
        """
        cell = self._cell
        return step_span(cell.tracer, name, cell.path, attributes)

    @classmethod
    def _unhandled(cls) -> bool:
        """Whether ``on_receive`` is the refusing default."""
        return cls.on_receive is Actor.on_receive


def class_names(actor_class: type[Actor]) -> tuple[str, ...]:
    """The names of ``actor_class`` and of every ``Actor`` subclass it derives from.

    How remote capability checks know an actor's classes (see ``MessageGrant.allows_remote``).
    """
    return tuple(
        class_name(c) for c in actor_class.__mro__ if issubclass(c, Actor) and c is not Actor
    )
