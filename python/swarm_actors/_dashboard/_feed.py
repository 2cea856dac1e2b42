"""The dashboard's copy of a run's events: rows in journal order, an index, and who waits.

One task fills a :class:`Feed` (:func:`follow_run` for a run on disk or on a server; a
benchmark or a test may fill it from any journal); every page connected reads the same rows
at its own pace, each from its own cursor. Nothing is queued per page: a slow page reads a
bigger batch next time, so a page never holds the server's memory hostage and a backlog can
only be the rows it has not read yet.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import msgspec

from swarm_actors._log import get_logger
from swarm_actors._runjournal import follow_run_entries
from swarm_actors._runs import RunPaths
from swarm_actors.events import AgentDecision, BlobStore, JournalEntry, SwarmEvent

from ._rows import row_of

__all__ = ["Feed", "FeedTask", "Status", "follow_run"]

log = get_logger(__name__)

Status = Literal["loading", "live", "done", "failed"]
"""``loading`` history, following a ``live`` run, ``done`` (the run ended and was read to its
end), ``failed`` (the journal could not be read: ``Feed.error`` says why)."""

FeedTask = Callable[["Feed"], Awaitable[None]]
"""What fills a feed: a coroutine function given the feed, cancelled when the server stops."""

_encode = msgspec.json.Encoder().encode


class Feed:
    """The rows of one run's events, the events themselves by sequence, and a change signal."""

    def __init__(self, *, run_id: str = "", blobs: BlobStore | None = None) -> None:
        self.run_id = run_id
        """The run shown."""
        self.blobs = blobs
        """The run's blob store (diffs of large files), when it has one."""
        self.rows: list[bytes] = []
        """Each event's row (``row_of``), JSON-encoded, in journal order."""
        self.entries: list[JournalEntry] = []
        """The entries, parallel to ``rows``."""
        self.status: Status = "loading"
        """Where the feed is (see ``Status``)."""
        self.error = ""
        """Why the feed failed, when it did."""
        self.live = False
        """The run was going on when it was opened."""
        self._position: dict[int, int] = {}  # journal sequence -> index in rows
        self._by_id: dict[str, int] = {}  # event id -> index
        self._caused: dict[str, list[int]] = {}  # event id -> indexes of the decisions it caused
        # A cause stored after its effect (two processes' appends can cross): the effect's
        # sequence and link kind wait here, and go out with the cause's row ("e").
        self._waiting: dict[str, list[tuple[int, str]]] = {}
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, entry: JournalEntry) -> None:
        """Append ``entry`` (an entry seen before, by sequence, is skipped)."""
        if entry.sequence in self._position:
            return
        index = len(self.rows)
        event = entry.event
        row = row_of(entry, self._sequence_of)
        if event.causation_id and "c" not in row:
            self._waiting.setdefault(event.causation_id, []).append((entry.sequence, "cause"))
        if isinstance(event.payload, AgentDecision):
            for cited in event.payload.memory_ids:
                if cited not in self._by_id:
                    self._waiting.setdefault(cited, []).append((entry.sequence, "cites"))
        if self._waiting and (late := self._waiting.pop(event.event_id, None)):
            row["e"] = late
        self.rows.append(_encode(row))
        self.entries.append(entry)
        self._position[entry.sequence] = index
        self._by_id[event.event_id] = index
        if event.causation_id and isinstance(event.payload, AgentDecision):
            self._caused.setdefault(event.causation_id, []).append(index)
        self._notify()

    def _sequence_of(self, event_id: str) -> int | None:
        index = self._by_id.get(event_id)
        return None if index is None else self.entries[index].sequence

    def set_status(self, status: Status, *, error: str = "") -> None:
        """Move to ``status`` and wake the pages (they show it)."""
        self.status, self.error = status, error
        self._notify()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait(self, timeout: float) -> bool:
        """Wait until anything changes (rows or status); ``False`` when ``timeout`` passed first."""
        changed = self._changed
        try:
            await asyncio.wait_for(changed.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def index_after(self, sequence: int) -> int:
        """The index of the first row with a journal sequence above ``sequence``."""
        if sequence <= 0 or not self.entries:
            return 0
        lo, hi = 0, len(self.entries)
        while lo < hi:  # rows are in journal order, so sequences rise
            mid = (lo + hi) // 2
            if self.entries[mid].sequence <= sequence:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def entry(self, sequence: int) -> JournalEntry | None:
        """The entry stored at ``sequence``, if the feed has it."""
        index = self._position.get(sequence)
        return None if index is None else self.entries[index]

    def by_event_id(self, event_id: str) -> JournalEntry | None:
        """The entry of the event ``event_id``, if the feed has it."""
        index = self._by_id.get(event_id)
        return None if index is None else self.entries[index]

    def verdicts(self, event_id: str) -> list[SwarmEvent]:
        """The decisions caused by ``event_id`` (a reviewer's verdict on a change), in order."""
        return [self.entries[i].event for i in self._caused.get(event_id, ())]

    def info(self) -> dict[str, Any]:
        """What the page's status line shows."""
        return {
            "run_id": self.run_id,
            "status": self.status,
            "error": self.error,
            "live": self.live,
            "events": len(self.rows),
            "head": self.entries[-1].sequence if self.entries else 0,
        }


def follow_run(
    run: RunPaths, *, nats: str | None = None, poll: float = 0.5, patience: float = 30.0
) -> FeedTask:
    """A feed task for ``run``: its history, then live until it ends (then ``done``).

    With ``nats`` the run is read from that server and followed until the dashboard stops.
    """

    async def fill(feed: Feed) -> None:
        def live() -> None:
            feed.live = True
            feed.set_status("live")

        try:
            entries = follow_run_entries(run, nats=nats, poll=poll, patience=patience, on_live=live)
            async with contextlib.aclosing(entries) as stream:
                async for entry in stream:
                    feed.add(entry)
            feed.set_status("done")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("cannot read the run's journal", run=run.run_id, error=repr(exc))
            feed.set_status("failed", error=f"{type(exc).__name__}: {exc}")

    return fill
