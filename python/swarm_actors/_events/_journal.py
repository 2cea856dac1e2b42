"""The event journal: the API every journal implements, and ``MemoryJournal``, the in-process one.

A journal stores events under their subjects (``subject_for``) with a journal-wide sequence,
1-based and gap-free as stored (a JetStream journal's stream sequence). Readers replay from a
sequence or a time with a NATS subject filter (``*`` one token, ``>`` the rest); ``tail``
follows new events. The runtime writes lifecycle signals from synchronous code on hot paths
(every virtual-actor activation and passivation), hence ``append_nowait``; everything that
must know its event is stored awaits ``append``.

``MemoryJournal`` keeps the events as objects (no encoding), in a list indexed by sequence:
an append costs two dict lookups and a dict insert (deduplication, the role's cached subjects)
and two list appends, 0.3-0.5 µs here; a read from any sequence or time starts in O(log n).
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import AsyncGenerator, Sequence
from typing import Protocol, runtime_checkable

import msgspec

from swarm_actors._events._schema import SwarmEvent, _subjects, subject_for
from swarm_actors._exceptions import InvalidArgumentError, JournalClosedError, SubjectError

__all__ = ["ALL_EVENTS", "Journal", "JournalEntry", "MemoryJournal", "subject_matches"]

ALL_EVENTS = "swarm.events.>"
"""The subject filter that matches every event."""

_YIELD_EVERY = 4096  # a long in-memory read lets the event loop run this often


class JournalEntry(msgspec.Struct, frozen=True, gc=False):
    """One stored event: its journal sequence, subject and storage time."""

    sequence: int
    """Journal-wide sequence, 1-based (a JetStream journal's stream sequence)."""
    subject: str
    """``swarm.events.<agent_role>.<kind>``."""
    event: SwarmEvent
    """The event."""
    stored_ns: int
    """When the journal stored it (Unix ns, never decreasing along the journal): what
    ``start_time_ns`` seeks by. JetStream: the message's stream timestamp; ``MemoryJournal``:
    the event's ``timestamp_ns``, raised to the previous entry's if lower."""


@runtime_checkable
class Journal(Protocol):
    """The journal API: the in-process ``MemoryJournal`` and the JetStream journal implement it.

    Sequences are journal sequences (``JournalEntry.sequence``), not agent sequences. Appending
    an event whose ``event_id`` was stored within the journal's duplicate window stores nothing
    and answers the original sequence (JetStream: ``Nats-Msg-Id`` and the stream's
    ``duplicate_window``; ``MemoryJournal``: a count of recent events). A closed journal raises
    ``JournalClosedError`` from every method but ``close``.
    """

    async def append(self, event: SwarmEvent) -> int:
        """Store ``event``; its journal sequence, returned only once it is stored.

        Raises ``SubjectError`` for a role that cannot be a subject token.
        """
        ...

    async def append_many(self, events: Sequence[SwarmEvent]) -> list[int]:
        """Store ``events`` in order (pipelined); their sequences, once all are stored."""
        ...

    def append_nowait(self, event: SwarmEvent) -> int | None:
        """Hand ``event`` over for storage without waiting; never blocks or suspends.

        For synchronous callers on hot paths (lifecycle signals). Answers the sequence if the
        event is already stored (``MemoryJournal`` stores at once), else ``None``: a journal
        that stores remotely queues it (``JournalFullError`` when its buffer is full) and
        reports a failure to store it from the next ``flush``.
        """
        ...

    async def flush(self) -> None:
        """Wait until every event handed to ``append_nowait`` before this call is stored.

        Raises the first error met storing one of them since the last ``flush``. Events handed
        over meanwhile are not waited for (a steady stream of them cannot hold it up).
        """
        ...

    def read(
        self,
        *,
        start_sequence: int | None = None,
        start_time_ns: int | None = None,
        subject: str = ALL_EVENTS,
    ) -> AsyncGenerator[JournalEntry, None]:
        """The stored entries matching ``subject``, oldest first; finite.

        From ``start_sequence``, or the first entry stored at or after ``start_time_ns`` (not
        both: ``InvalidArgumentError``), or the first entry retained; up to the last sequence
        stored when ``read`` was called. Arguments are checked when it is called. A read that
        is still going when the journal closes raises ``JournalClosedError``. An async
        generator: ``contextlib.aclosing`` it to release it at once when leaving early.
        """
        ...

    def tail(
        self, *, start_sequence: int | None = None, subject: str = ALL_EVENTS
    ) -> AsyncGenerator[JournalEntry, None]:
        """Entries matching ``subject`` from ``start_sequence``, then each new one as it is stored.

        Without ``start_sequence``, only entries stored after the call. Runs until cancelled
        or until the journal closes (then it ends). A tail that falls behind the journal's
        retention continues from the oldest entry left (the sequence numbers show the gap).
        ``contextlib.aclosing`` it so that leaving the loop releases it (a subscription) at once.
        """
        ...

    async def last_sequence(self) -> int:
        """The sequence of the last stored entry (0 when nothing was ever stored)."""
        ...

    async def close(self) -> None:
        """Flush, then close; idempotent."""
        ...


def _check_filter(subject: str) -> tuple[str, ...]:
    tokens = tuple(subject.split("."))
    for i, token in enumerate(tokens):
        bad = (
            not token
            or any(c.isspace() for c in token)
            or (token != "*" and "*" in token)
            or (">" in token and (token != ">" or i != len(tokens) - 1))
        )
        if bad:
            raise SubjectError(f"invalid subject filter {subject!r}", token=subject)
    return tokens


def _tokens_match(pattern: tuple[str, ...], subject: Sequence[str]) -> bool:
    for i, token in enumerate(pattern):
        if token == ">":
            return len(subject) > i
        if i >= len(subject) or (token != "*" and token != subject[i]):
            return False
    return len(subject) == len(pattern)


def subject_matches(subject_filter: str, subject: str) -> bool:
    """Whether ``subject`` matches a NATS subject filter (``*``: one token, ``>``: the rest)."""
    return _tokens_match(_check_filter(subject_filter), subject.split("."))


class _Filter:
    """A compiled subject filter with its verdicts cached per subject (subjects are few)."""

    __slots__ = ("cache", "tokens")

    def __init__(self, subject: str) -> None:
        self.tokens = _check_filter(subject)
        self.cache: dict[str, bool] = {}

    def __call__(self, subject: str) -> bool:
        verdict = self.cache.get(subject)
        if verdict is None:
            verdict = self.cache[subject] = _tokens_match(self.tokens, subject.split("."))
        return verdict


def _compile(subject: str) -> _Filter | None:
    """``None`` for a filter that matches every event subject."""
    return None if subject in (ALL_EVENTS, ">") else _Filter(subject)


class MemoryJournal:
    """An in-process ``Journal``: events kept as objects, in append order.

    ``max_events`` bounds retention (oldest dropped first). Deduplication remembers the ids of
    the last ``dedup_window`` to ``2 * dedup_window`` appended events, in two generations of
    dicts (JetStream's duplicate window is a time; this one is a count: a retry comes soon
    after the first attempt, and small dicts keep appends fast: an append with a 64k window
    costs about 150 ns more than with the default). Use it from one event loop.

    An entry's ``stored_ns`` is its event's ``timestamp_ns``, raised to the previous entry's
    ``stored_ns`` if lower: in one process an event is appended right after it is made, so that
    is its storage time to within a microsecond, without a clock read per append; and it never
    decreases, so a time seek is a binary search.

    Appends store the event, its time and nothing else (subjects are cached per role and
    entries are built when read), so an append costs a few hundred nanoseconds.
    """

    def __init__(self, *, max_events: int | None = None, dedup_window: int = 8192) -> None:
        if max_events is not None and max_events < 1:
            raise InvalidArgumentError(f"max_events must be >= 1, got {max_events}")
        if dedup_window < 1:
            raise InvalidArgumentError(f"dedup_window must be >= 1, got {dedup_window}")
        self._max = max_events
        self._window = dedup_window
        # Parallel lists indexed by sequence - _base; entries before _head are dropped (None).
        self._events: list[SwarmEvent | None] = []
        self._times: list[int] = []
        self._head = 0
        self._base = 1
        self._last_seq = 0
        self._last_ns = 0
        self._ids: dict[str, int] = {}  # the current dedup generation
        self._old_ids: dict[str, int] = {}  # the previous one
        self._closed = False
        self._tails = 0
        self._changed: asyncio.Event | None = None
        self.duplicates = 0
        """Appends that found their event id already stored."""
        self.dropped = 0
        """Entries dropped by retention."""

    # --- writing ----------------------------------------------------------------------------

    def append_nowait(self, event: SwarmEvent) -> int:
        """Store ``event`` now; its sequence (``Journal.append_nowait``: nothing is pending)."""
        if self._closed:
            raise JournalClosedError("the journal is closed")
        event_id = event.event_id
        seq = self._ids.get(event_id)
        if seq is None:
            seq = self._old_ids.get(event_id)
        if seq is not None:
            self.duplicates += 1
            return seq
        if event.agent_role not in _subjects:
            subject_for(event)  # checks the role (SubjectError) and caches its subjects
        now = event.timestamp_ns
        if now < self._last_ns:
            now = self._last_ns
        self._last_ns = now
        seq = self._last_seq = self._last_seq + 1
        self._events.append(event)
        self._times.append(now)
        ids = self._ids
        ids[event_id] = seq
        if len(ids) >= self._window:
            self._old_ids = ids
            self._ids = {}
        if self._max is not None and seq - self._base - self._head >= self._max:
            self._events[self._head] = None  # drop the oldest
            self._head += 1
            self.dropped += 1
            if self._head >= 1024 and self._head * 2 >= len(self._events):
                self._compact()
        if self._tails:
            changed = self._changed
            assert changed is not None
            changed.set()
            changed.clear()
        return seq

    def _compact(self) -> None:
        """Forget dropped slots; amortized O(1) as it runs when half the list is dropped."""
        del self._events[: self._head]
        del self._times[: self._head]
        self._base += self._head
        self._head = 0

    async def append(self, event: SwarmEvent) -> int:
        """Store ``event``; its sequence (the original's for a duplicate event id)."""
        return self.append_nowait(event)

    async def append_many(self, events: Sequence[SwarmEvent]) -> list[int]:
        """Store ``events`` in order; their sequences."""
        store = self.append_nowait
        return [store(event) for event in events]

    async def flush(self) -> None:
        """Nothing to wait for: ``append_nowait`` stores at once."""
        self._check_open()

    # --- reading ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise JournalClosedError("the journal is closed")

    @property
    def first_sequence(self) -> int:
        """Sequence of the oldest retained entry (``last_sequence + 1`` when none is)."""
        return self._base + self._head

    def __len__(self) -> int:
        """Number of retained entries."""
        return self._last_seq + 1 - self.first_sequence

    def _start(self, start_sequence: int | None, start_time_ns: int | None) -> int:
        """The first sequence to read: asked for, or the oldest retained if that is later."""
        if start_sequence is not None and start_time_ns is not None:
            raise InvalidArgumentError("give start_sequence or start_time_ns, not both")
        first = self._base + self._head
        if start_sequence is not None:
            if start_sequence < 1:
                raise InvalidArgumentError(f"start_sequence must be >= 1, got {start_sequence}")
            return max(start_sequence, first)
        if start_time_ns is not None:
            return self._base + bisect.bisect_left(self._times, start_time_ns, lo=self._head)
        return first

    def _entry(self, seq: int) -> JournalEntry | None:
        """The oldest retained entry with a sequence >= ``seq``, if any."""
        if seq > self._last_seq:
            return None
        index = max(seq - self._base, self._head)  # retention may have moved on
        event = self._events[index]
        assert event is not None
        return JournalEntry(self._base + index, subject_for(event), event, self._times[index])

    def read(
        self,
        *,
        start_sequence: int | None = None,
        start_time_ns: int | None = None,
        subject: str = ALL_EVENTS,
    ) -> AsyncGenerator[JournalEntry, None]:
        """Stored entries matching ``subject``, oldest first, up to the last one stored now."""
        self._check_open()
        match = _compile(subject)
        return self._iterate(self._start(start_sequence, start_time_ns), self._last_seq, match)

    def tail(
        self, *, start_sequence: int | None = None, subject: str = ALL_EVENTS
    ) -> AsyncGenerator[JournalEntry, None]:
        """Entries matching ``subject`` from ``start_sequence`` (default: new ones), then follow."""
        self._check_open()
        match = _compile(subject)
        start = self._last_seq + 1 if start_sequence is None else self._start(start_sequence, None)
        return self._follow(start, match)

    async def _iterate(
        self, seq: int, end: int, match: _Filter | None
    ) -> AsyncGenerator[JournalEntry, None]:
        count = 0
        while True:
            if self._closed:
                raise JournalClosedError("the journal closed during a read")
            entry = self._entry(seq)
            if entry is None or entry.sequence > end:
                return
            seq = entry.sequence + 1
            if match is None or match(entry.subject):
                yield entry
            count += 1
            if count % _YIELD_EVERY == 0:
                await asyncio.sleep(0)

    async def _follow(self, seq: int, match: _Filter | None) -> AsyncGenerator[JournalEntry, None]:
        if self._changed is None:
            self._changed = asyncio.Event()
        changed = self._changed
        self._tails += 1
        count = 0
        try:
            while True:
                entry = self._entry(seq)
                if entry is None:
                    if self._closed:
                        return
                    await changed.wait()
                    continue
                seq = entry.sequence + 1
                if match is None or match(entry.subject):
                    yield entry
                count += 1
                if count % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)
        finally:
            self._tails -= 1

    def entries(self, subject: str = ALL_EVENTS) -> list[JournalEntry]:
        """The retained entries matching ``subject``, now (a synchronous view for tests)."""
        match = _compile(subject)
        out = []
        for seq in range(self._base + self._head, self._last_seq + 1):
            entry = self._entry(seq)
            assert entry is not None
            if match is None or match(entry.subject):
                out.append(entry)
        return out

    async def last_sequence(self) -> int:
        """Sequence of the last stored entry (0 if none)."""
        self._check_open()
        return self._last_seq

    async def close(self) -> None:
        """Close: appends and new reads raise ``JournalClosedError``; tails end."""
        if self._closed:
            return
        self._closed = True
        if self._changed is not None:
            self._changed.set()
