"""Topics: publish/subscribe among the actors of a system, with NATS subjects' rules.

A *topic* is a NATS subject without its prefix: tokens of printable ASCII separated by dots
(``"orders.eu.created"``). Subscriptions take *patterns*, where ``*`` is any one token and
``>`` (last) one or more tokens. Every topic is the subject ``swarm.topic.<topic>``, except
the ``events.<role>.<kind>`` topics: the runtime's own events (``SwarmEvent``), which are
journaled under ``swarm.events.<role>.<kind>`` (see ``_events._schema.subject_for``); nobody
publishes there but the journal. Matching is done on the full subjects, so ``">"`` and
``"*.x"`` never match an event: only patterns that start with a literal ``events.`` do.

``Topics`` is the subscription table of one system: per pattern, the subscribers, each one
an actor of this process (its cell) or any ``Ref`` subscribed from outside. Publishing
delivers to the subscribers of every matching pattern, at most once per (pattern,
subscriber), as a NATS client with two overlapping subscriptions gets a message twice.
Delivery is a tell that never waits: a full mailbox drops the message for that subscriber
(counted in ``TopicStats.dropped``, logged at the 1st, 2nd, 4th, 8th... drop of each), and
nothing one subscriber does (a full mailbox, a crash in its handler) stops the others. Local
subscribers of one publish share the one message object: treat messages as immutable.

Across nodes, a ``TopicLink`` (the NATS layer's, installed with ``attach``) holds one NATS
subscription per distinct pattern of this system and publishes what this system publishes to
other nodes; what it receives for a pattern is handed to ``deliver`` for that pattern's
subscribers. Local subscribers are always served directly by ``publish`` (see the link for
how a node ignores its own publications coming back from the server).

Events: without NATS (or with a journal that does not publish on NATS) the system hands each
event it journals to ``event_tap`` (``None`` while no events pattern has subscribers, so an
unwatched system pays one attribute read per event).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from swarm_actors._core._capability import CURRENT_SENDER
from swarm_actors._core._mailbox import Ask
from swarm_actors._events._schema import SUBJECT_PREFIX, SwarmEvent, subject_for
from swarm_actors._exceptions import ActorDeadError, InvalidArgumentError, SwarmError
from swarm_actors._log import get_logger

if TYPE_CHECKING:
    from opentelemetry.context import Context

    from swarm_actors._core._cell import Cell

__all__ = [
    "EVENTS_PREFIX",
    "TOPIC_PREFIX",
    "TopicLink",
    "TopicStats",
    "Topics",
    "event_pattern",
    "pattern_subject",
    "topic_subject",
]

log = get_logger("swarm_actors.topics")

TOPIC_PREFIX = "swarm.topic"
"""Every user topic ``t`` is the NATS subject ``swarm.topic.<t>``."""
EVENTS_PREFIX = SUBJECT_PREFIX
"""The runtime's events: topic ``events.<role>.<kind>`` is the subject ``swarm.events...``."""
MAX_TOPIC = 200
"""The longest topic or pattern, in characters (a subject's line must fit the server's)."""

_TOKEN = re.compile(r"[!-~]+")  # printable ASCII, no space; "." splits tokens before this
_EVENTS = "events"


def _subject(topic: object, pattern: bool) -> str:
    what = "pattern" if pattern else "topic"
    if not isinstance(topic, str):
        raise TypeError(f"a {what} must be a str, got {type(topic).__name__}")
    if not topic or len(topic) > MAX_TOPIC:
        raise InvalidArgumentError(
            f"a {what} must be 1-{MAX_TOPIC} characters, got {len(topic)}: e.g. 'orders.created'"
        )
    tokens = topic.split(".")
    last = len(tokens) - 1
    for i, token in enumerate(tokens):
        if not token:
            raise InvalidArgumentError(
                f"{what} {topic!r} has an empty token: tokens are separated by single dots, "
                "with none at either end (e.g. 'orders.created')"
            )
        if _TOKEN.fullmatch(token) is None:
            raise InvalidArgumentError(
                f"{what} {topic!r}: token {token!r} must be printable ASCII without spaces"
            )
        if ("*" in token or ">" in token) and token not in ("*", ">"):
            raise InvalidArgumentError(
                f"{what} {topic!r}: '*' and '>' are whole tokens only (e.g. 'orders.*'), "
                f"not part of {token!r}"
            )
        if token == ">" and i != last:
            raise InvalidArgumentError(f"{what} {topic!r}: '>' must be the last token")
        if token in ("*", ">") and not pattern:
            raise InvalidArgumentError(
                f"cannot publish to {topic!r}: wildcards ('*', '>') belong in subscriptions; "
                "publish to one concrete topic"
            )
    if tokens[0] == _EVENTS:
        if not pattern:
            raise InvalidArgumentError(
                f"cannot publish to {topic!r}: the 'events.' topics carry the runtime's own "
                "events (record them with Actor.decide / record_change); choose another "
                "first token"
            )
        return f"{EVENTS_PREFIX}{topic[len(_EVENTS) :]}"
    return f"{TOPIC_PREFIX}.{topic}"


def topic_subject(topic: object) -> str:
    """The NATS subject of a topic to publish to; ``InvalidArgumentError`` naming the fix."""
    return _subject(topic, False)


def pattern_subject(pattern: object) -> str:
    """The NATS subject filter of a subscription pattern (wildcards allowed)."""
    return _subject(pattern, True)


def event_pattern(subject: str) -> bool:
    """Whether a subject filter (``pattern_subject``) is one of the runtime's events."""
    return subject.startswith(f"{EVENTS_PREFIX}.")


def _matches(pattern: tuple[str, ...], subject: list[str]) -> bool:
    for i, token in enumerate(pattern):
        if token == ">":
            return len(subject) > i
        if i >= len(subject) or (token != "*" and token != subject[i]):
            return False
    return len(subject) == len(pattern)


@dataclass(frozen=True, slots=True)
class TopicStats:
    """A snapshot of a system's topics (``ActorSystem.topic_stats``)."""

    patterns: int
    """Distinct patterns subscribed in this system (one NATS subscription each, with NATS)."""
    subscriptions: int
    """(pattern, subscriber) pairs."""
    published: int
    """Messages this system published."""
    delivered: int
    """Messages put into subscribers' mailboxes (or handed to subscribed refs) here."""
    dropped: int
    """Deliveries dropped here: a full mailbox, or a subscribed ref that refused."""
    received: int
    """Messages that came from other nodes (each counted once per pattern)."""


class TopicLink(Protocol):
    """What carries topics between nodes (the NATS layer's, see ``Topics.attach``)."""

    async def listen(self, pattern: str) -> None:
        """Subscribe to the subject filter ``pattern`` (it has its first subscriber)."""
        ...

    def unlisten(self, pattern: str) -> None:
        """Unsubscribe from ``pattern`` soon (its last subscriber left)."""
        ...

    def publish(self, subject: str, message: Any, sender: str) -> None:
        """Send ``message`` to the other nodes' subscribers of ``subject`` (may raise)."""
        ...

    def backpressure(self) -> Awaitable[None] | None:
        """Something to await before publishing more (the connection is behind), or None."""
        ...


class _Pattern:
    """One subscribed pattern: its tokens and its subscribers (cells or refs)."""

    __slots__ = ("cells", "refs", "subject", "tokens")

    def __init__(self, subject: str) -> None:
        self.subject = subject
        self.tokens = tuple(subject.split("."))
        self.cells: dict[Cell, int] = {}  # subscriber -> messages dropped for it
        self.refs: dict[Any, int] = {}

    def __len__(self) -> int:
        return len(self.cells) + len(self.refs)


class Topics:
    """The topic subscriptions of one system and their delivery (see the module docstring)."""

    def __init__(self, spawn: Callable[[Coroutine[Any, Any, None]], object]) -> None:
        self._spawn = spawn  # runs a coroutine in a task the system cancels when it stops
        self._patterns: dict[str, _Pattern] = {}
        self._by_cell: dict[Cell, set[str]] = {}
        self._matching: dict[str, tuple[_Pattern, ...]] = {}  # subject -> its patterns (cache)
        self._link: TopicLink | None = None
        self._events_local = True
        self.event_tap: Callable[[SwarmEvent], None] | None = None
        """Called with each event the system journals while events are watched locally."""
        self.published = 0
        self.delivered = 0
        self.dropped = 0
        self.received = 0

    # --- subscriptions ----------------------------------------------------------------------

    async def subscribe(self, pattern: str, subscriber: Any, cell: bool) -> None:
        """Add ``subscriber`` (a cell when ``cell``, else a ref) to the filter ``pattern``.

        Returns once a NATS subscription covers it (with a link): messages published
        anywhere after that reach it. Subscribing twice to one pattern is one subscription.
        """
        entry = self._patterns.get(pattern)
        if entry is None:
            entry = self._patterns[pattern] = _Pattern(pattern)
            self._matching.clear()
        table: dict[Any, int] = entry.cells if cell else entry.refs
        added = subscriber not in table
        if added:
            table[subscriber] = 0
            if cell:
                self._by_cell.setdefault(subscriber, set()).add(pattern)
            self._update_tap()
        if self._link is not None and self._listens(pattern):
            try:
                await self._link.listen(pattern)  # at once if the pattern is subscribed already
            except BaseException:
                if added:
                    self._discard(pattern, subscriber, cell)
                raise

    def unsubscribe(self, pattern: str, subscriber: Any, cell: bool) -> bool:
        """Remove ``subscriber`` from ``pattern`` at once; whether it was subscribed."""
        return self._discard(pattern, subscriber, cell)

    def drop(self, cell: Cell) -> None:
        """``cell`` stopped: end all its subscriptions."""
        patterns = self._by_cell.pop(cell, None)
        if patterns:
            for pattern in patterns:
                self._discard(pattern, cell, True)

    def _discard(self, pattern: str, subscriber: Any, cell: bool) -> bool:
        entry = self._patterns.get(pattern)
        if entry is None:
            return False
        table: dict[Any, int] = entry.cells if cell else entry.refs
        if table.pop(subscriber, None) is None:
            return False
        if cell:
            mine = self._by_cell.get(subscriber)
            if mine is not None:
                mine.discard(pattern)
                if not mine:
                    del self._by_cell[subscriber]
        if not entry:
            del self._patterns[pattern]
            self._matching.clear()
            self._update_tap()
            if self._link is not None and self._listens(pattern):
                self._link.unlisten(pattern)
        return True

    def patterns(self) -> list[str]:
        """The subject filters subscribed now."""
        return list(self._patterns)

    # --- links and events -------------------------------------------------------------------

    async def attach(self, link: TopicLink, *, events_via_link: bool) -> None:
        """Carry topics across nodes through ``link`` from now on (the system connected).

        ``events_via_link``: the system's journal publishes its events where the link
        receives them; events patterns are then served by the link, not by ``event_tap``.
        """
        self._link = link
        self._events_local = not events_via_link
        self._update_tap()
        for pattern in list(self._patterns):
            if self._listens(pattern):
                await link.listen(pattern)

    def detach(self) -> None:
        """The link is gone (the system left NATS)."""
        self._link = None
        self._events_local = True
        self._update_tap()

    def _listens(self, pattern: str) -> bool:
        """Whether the link subscribes to ``pattern`` (events only when they travel on it)."""
        return self._events_local is False or not event_pattern(pattern)

    def _update_tap(self) -> None:
        watched = self._events_local and any(event_pattern(p) for p in self._patterns)
        self.event_tap = self.on_event if watched else None

    def on_event(self, event: SwarmEvent) -> None:
        """An event the system journaled: deliver it to the events patterns it matches."""
        try:
            subject = subject_for(event)
        except SwarmError:
            return
        self._fan_out(subject, event, None)

    # --- publishing -------------------------------------------------------------------------

    def publish(self, subject: str, message: Any, sender: str) -> None:
        """Publish ``message`` on ``subject`` (checked): other nodes first, then locally.

        An error of the link (a message it cannot encode, too large) raises before anything
        is delivered.
        """
        if self._link is not None:
            self._link.publish(subject, message, sender)
        self.published += 1
        self._fan_out(subject, message, None)

    def backpressure(self) -> Awaitable[None] | None:
        """What ``ActorSystem.publish`` waits for before publishing (``None``: nothing)."""
        return None if self._link is None else self._link.backpressure()

    def matching(self, subject: str) -> tuple[_Pattern, ...]:
        found = self._matching.get(subject)
        if found is None:
            tokens = subject.split(".")
            found = tuple(p for p in self._patterns.values() if _matches(p.tokens, tokens))
            if len(self._matching) >= 4096:
                self._matching.clear()
            self._matching[subject] = found
        return found

    def _fan_out(self, subject: str, message: Any, context: Context | None) -> None:
        for entry in self.matching(subject):
            self._deliver(entry, message, context)

    def deliver(self, pattern: str, message: Any, context: Context | None) -> None:
        """A message from another node for the subscribers of ``pattern``."""
        entry = self._patterns.get(pattern)
        if entry is not None:
            self.received += 1
            self._deliver(entry, message, context)

    def _deliver(self, entry: _Pattern, message: Any, context: Context | None) -> None:
        delivered = 0
        if entry.cells:
            stopped: list[Cell] = []
            # Iterated as it is: nothing below adds or removes a subscriber (post() never runs
            # a handler; a drop only updates its count), and stopped cells are dropped after.
            for cell in entry.cells:
                item = message
                if cell.tracer is not None:
                    ctx = context if context is not None else cell.dispatcher.traces.sampled()
                    if ctx is not None:
                        item = Ask(message, None, ctx)
                if cell.post(item):
                    delivered += 1
                elif cell.accepting:
                    self._dropped(entry, entry.cells, cell, cell.path, "its mailbox is full")
                else:  # stopped (a passivated virtual actor): its subscriptions end
                    stopped.append(cell)
            for cell in stopped:
                self.drop(cell)
        if entry.refs:
            # The subscriber chose to listen: the publisher's may_message does not apply.
            token = CURRENT_SENDER.set(None)
            try:
                for ref in tuple(entry.refs):
                    try:
                        ref.tell_nowait(message)
                        delivered += 1
                    except ActorDeadError:  # not active: a tell may activate it
                        self._spawn(self._tell(entry, ref, message))
                    except Exception as exc:  # full, refused: this subscriber only
                        self._dropped(entry, entry.refs, ref, ref.path, repr(exc))
            finally:
                CURRENT_SENDER.reset(token)
        self.delivered += delivered

    async def _tell(self, entry: _Pattern, ref: Any, message: Any) -> None:
        """Deliver with ``tell``, which activates a virtual actor (and may wait for room)."""
        try:
            await ref.tell(message)
            self.delivered += 1
        except ActorDeadError:  # really gone: its subscriptions end
            self._discard(entry.subject, ref, False)
        except Exception as exc:
            if ref in entry.refs:
                self._dropped(entry, entry.refs, ref, ref.path, repr(exc))

    def _dropped(
        self, entry: _Pattern, table: dict[Any, int], who: Any, path: str, reason: str
    ) -> None:
        self.dropped += 1
        count = table[who] = table[who] + 1
        if count & (count - 1) == 0:  # the 1st, 2nd, 4th, 8th... drop of this subscriber
            log.warning(
                "topic.dropped", actor=path, pattern=entry.subject, reason=reason, dropped=count
            )

    def stats(self) -> TopicStats:
        """Counters and sizes now."""
        return TopicStats(
            patterns=len(self._patterns),
            subscriptions=sum(len(p) for p in self._patterns.values()),
            published=self.published,
            delivered=self.delivered,
            dropped=self.dropped,
            received=self.received,
        )
