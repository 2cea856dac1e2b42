"""The archiver: a durable JetStream consumer that batches events into the archive.

Exactly once in the table, from at-least-once delivery:

* A durable pull consumer (its name per archive, ``archive-<digest of the archive>``) keeps
  the position on the server: in the run's own JetStream store for a finished run, in the
  server's for ``--nats``. A restarted archiver continues after the last acknowledged batch.
* A batch is 1,000 messages or 1 s, whichever comes first (ClickHouse wants few, large
  inserts), inserted as one Arrow block, and acknowledged only after the insert returned.
* A crash between insert and acknowledgement hands the batch out again (after ``ack_wait``).
  Redelivered messages say so (``delivered > 1``): for a batch holding any, the ids already in
  the table are looked up and skipped, so even ``count()`` without ``FINAL`` counts each event
  once. The table's ``ReplacingMergeTree`` on the event id is the backstop (two archivers on
  one table, a stream holding an event twice): ``FINAL`` reads it deduplicated.
* While one batch is inserted (in a worker thread) and acknowledged, the next is pulled; one
  batch is settled at a time, in order. A batch that waits longer than ``ack_wait`` comes
  again and is found stored, as after a crash.
* What is not an event this build can read (a newer schema version, bytes that do not
  decode) goes to ``dead_letters`` with the reason, in the same batch, and is acknowledged
  with it: it never stops the archiver, and it is kept rather than dropped.

Without ``follow`` the archiver stops once the consumer has nothing pending (every message
stored when it looked is archived and acknowledged); with ``follow`` it keeps up until
cancelled, or until :meth:`Archiver.finish` (a live run ended: what it was handed is settled,
and the rest is archived from the run's store, where the consumer's position is kept).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from swarm_actors._events._schema import decode_event
from swarm_actors._exceptions import EventDecodeError, InvalidArgumentError, SchemaVersionError
from swarm_actors._log import get_logger
from swarm_actors.archive._rows import dead_table, event_row, events_table

if TYPE_CHECKING:
    from swarm_actors._nats._durable import DurableConsumer, RawDelivery
    from swarm_actors._nats._jetstream import JetStreamJournal
    from swarm_actors.archive._store import ArchiveStore

__all__ = ["ArchiveStats", "Archiver", "consumer_name"]

_log = get_logger("swarm_actors.archive")
_TAKEOVER_WAIT = 1.0  # s: ack_wait while taking over a finished archiver's unacknowledged batch


def consumer_name(store: ArchiveStore) -> str:
    """The durable consumer name of an archive: one position per archive (location, database)."""
    digest = hashlib.sha256(f"{store.location}\0{store.database}".encode()).hexdigest()
    return f"archive-{digest[:16]}"


@dataclass
class ArchiveStats:
    """What an archiver has done so far (updated after each batch)."""

    archived: int = 0
    """Events inserted into ``events``."""
    duplicates: int = 0
    """Redelivered events found already archived, and so skipped."""
    dead_letters: int = 0
    """Messages put in ``dead_letters``."""
    batches: int = 0
    """Batches inserted and acknowledged."""
    last_sequence: int = 0
    """The highest stream sequence acknowledged."""
    started: float = field(default_factory=time.monotonic)
    """When the archiver started (``time.monotonic``)."""

    @property
    def rate(self) -> float:
        """Messages settled per second since the start."""
        elapsed = time.monotonic() - self.started
        total = self.archived + self.duplicates + self.dead_letters
        return total / elapsed if elapsed > 0 else 0.0


class Archiver:
    """Archive a JetStream journal's events into an :class:`ArchiveStore`.

    ``journal`` is the stream to read (``open_run_journal(...).journal`` for a run, or a
    ``JetStreamJournal`` on a server); ``store`` the archive. ``batch_size`` rows or
    ``batch_interval`` seconds make a batch; ``ack_wait`` is how long a batch handed out to an
    archiver that died waits before it is handed out again. ``on_batch`` is called with the
    stats after each batch (progress); ``stats`` continues another archiver's counts.
    """

    def __init__(
        self,
        journal: JetStreamJournal,
        store: ArchiveStore,
        *,
        batch_size: int = 1000,
        batch_interval: float = 1.0,
        ack_wait: float = 30.0,
        name: str | None = None,
        on_batch: Callable[[ArchiveStats], None] | None = None,
        stats: ArchiveStats | None = None,
    ) -> None:
        if batch_size < 1 or not batch_interval > 0 or not ack_wait > 0:
            raise InvalidArgumentError("batch_size >= 1, batch_interval > 0 and ack_wait > 0")
        self._journal = journal
        self._store = store
        self._batch_size = batch_size
        self._interval = batch_interval
        self._ack_wait = ack_wait
        self.name = name or consumer_name(store)
        """The durable consumer's name."""
        self._on_batch = on_batch
        self.stats = stats if stats is not None else ArchiveStats()
        """What was archived so far (``stats``, given: counted on from there)."""
        self._finishing = False
        self._taken_over = False

    def finish(self) -> None:
        """Stop following: :meth:`run` settles what it was handed and returns.

        It pulls without waiting from then on and returns at the first empty pull, without
        asking the server what is pending (a live run's server may be going away).
        """
        self._finishing = True

    async def run(self, *, follow: bool = False, taken_over: bool = False) -> ArchiveStats:
        """Archive until nothing is pending (or, with ``follow``, until cancelled or finished).

        Pipelined: the next batch is pulled while the previous one is inserted (in a worker
        thread: chDB releases the GIL) and acknowledged; one batch is settled at a time, in
        order, so an acknowledgement still follows its own batch's insert.

        ``taken_over``: the archiver that used the consumer before is known to be gone (a live
        run's, finished as the run's server stopped): what it was handed and could not
        acknowledge comes again at once (a short ``ack_wait`` meanwhile), not after
        ``ack_wait``; and every batch is checked for events already archived (a killed server
        forgets the last of what it handed out and was acknowledged).
        """
        consumer = self._journal.durable(
            self.name, ack_wait=self._ack_wait, max_ack_pending=2 * self._batch_size
        )
        settling: asyncio.Task[None] | None = None
        wait = follow
        self._taken_over = taken_over
        async with consumer:
            if taken_over and await consumer.ack_pending():
                await consumer.set_ack_wait(min(self._ack_wait, _TAKEOVER_WAIT))
            try:
                while True:
                    batch = await self._collect(consumer, wait=wait and not self._finishing)
                    if settling is not None:
                        await settling
                        settling = None
                    if batch:
                        settling = asyncio.create_task(self._settle(consumer, batch))
                        wait = follow
                    elif self._finishing:
                        return self.stats
                    elif not follow:
                        if await consumer.pending() == 0:
                            return self.stats
                        # Out to an archiver that died (until ack_wait), or acks on their way:
                        # wait for them with a pull that lasts, rather than ask again at once.
                        wait = True
            finally:
                if settling is not None:
                    settling.cancel()  # unacknowledged: the batch comes again, found stored
                    await asyncio.wait((settling,))
                    if not settling.cancelled():
                        settling.exception()  # seen: what is raised here is the first error
                if consumer.ack_wait != self._ack_wait:
                    await consumer.set_ack_wait(self._ack_wait)

    async def _collect(self, consumer: DurableConsumer, *, wait: bool) -> list[RawDelivery]:
        """Up to ``batch_size`` messages, or what came within ``batch_interval``."""
        batch: list[RawDelivery] = []
        deadline = time.monotonic() + self._interval
        while len(batch) < self._batch_size:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            # Following, a pull waits for what comes within the batch's second; else it takes
            # what is stored and ends at once (no second lost at the end of the journal).
            got = await consumer.fetch_raw(
                self._batch_size - len(batch), timeout=left, no_wait=not wait
            )
            batch += got
            if not got and not wait:
                break  # nothing more right now: archive what there is, then see if it is all
        return batch

    async def _settle(self, consumer: DurableConsumer, batch: list[RawDelivery]) -> None:
        rows, dead, duplicates = await asyncio.to_thread(self._insert, batch)
        await consumer.ack_many(batch)
        stats = self.stats
        stats.archived += rows
        stats.dead_letters += dead
        stats.duplicates += duplicates
        stats.batches += 1
        stats.last_sequence = max(stats.last_sequence, batch[-1].sequence)
        _log.debug("archive.batch", rows=rows, dead=dead, duplicates=duplicates)
        if self._on_batch is not None:
            self._on_batch(stats)

    def _insert(self, batch: list[RawDelivery]) -> tuple[int, int, int]:
        """Decode and insert one batch (in a worker thread); (rows, dead letters, skipped)."""
        rows: list[tuple[Any, ...]] = []
        dead: list[tuple[Any, ...]] = []
        ids: list[str] = []
        stream = self._journal.stream
        for d in batch:
            try:
                event = decode_event(d.data)
            except EventDecodeError as exc:
                version = exc.version if isinstance(exc, SchemaVersionError) else None
                reason = f"{type(exc).__name__}: {exc}"
                dead.append((stream, d.sequence, d.subject, d.stored_ns, reason, version, d.data))
                _log.warning("archive.dead_letter", sequence=d.sequence, reason=reason)
                continue
            rows.append(event_row(event, d.sequence, d.stored_ns))
            ids.append(event.event_id)
        skipped = 0
        # Handed out before: some may be stored. Taking over from a live run's archiver, any
        # may be: a killed server forgets what it handed out and acknowledged last.
        if self._taken_over or any(d.delivered > 1 for d in batch):
            seen = self._store.existing_ids(ids)
            if seen:
                kept = [row for row in rows if row[0] not in seen]
                skipped = len(rows) - len(kept)
                rows = kept
        # Dead letters first: a crash between the two inserts redelivers the batch, and the
        # dead letters' ReplacingMergeTree on the stream sequence absorbs the repeat.
        self._store.insert_arrow("dead_letters", dead_table(dead))
        self._store.insert_arrow("events", events_table(rows))
        return len(rows), len(dead), skipped
