"""Where the embedded archive lives, and archiving a run or a server's stream in one call."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from swarm_actors._exceptions import ArchiveError, InvalidArgumentError
from swarm_actors._log import get_logger
from swarm_actors._runs import resolve_data_dir
from swarm_actors.archive._archiver import Archiver, ArchiveStats

if TYPE_CHECKING:
    from swarm_actors._runs import RunPaths
    from swarm_actors.archive._store import ArchiveStore

__all__ = ["archive_dir", "archive_events"]

_log = get_logger("swarm_actors.archive")


def archive_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The embedded (chDB) archive's directory: ``DATA/archive``, one for every run."""
    return resolve_data_dir(data_dir) / "archive"


async def archive_events(
    store: ArchiveStore,
    *,
    run: RunPaths | None = None,
    nats: str | None = None,
    follow: bool = False,
    ack_wait: float = 30.0,
    batch_size: int = 1000,
    batch_interval: float = 1.0,
    on_batch: Callable[[ArchiveStats], None] | None = None,
    poll: float = 0.5,
    patience: float = 30.0,
    on_run_end: Callable[[], None] | None = None,
) -> ArchiveStats:
    """Archive the events of ``run`` (its journal, live or finished) or of the server ``nats``.

    With ``nats`` the whole ``SWARM_EVENTS`` stream there is archived (every run on it; the
    table's ``run_id`` tells them apart); else the run's journal, opened as every reader of
    runs opens it (``open_run_journal``: the live run's server, or a private server on its
    store, where the durable consumer's position is kept too). Without ``follow``, returns
    once everything stored is archived. With it: a live run is archived as it goes on until
    it ends (seen every ``poll`` seconds, ``wait_run_ended``), then the rest from its store
    (opened with ``patience`` for the ending run's lock; ``on_run_end`` is called between
    the two), and the stats of both are returned; a finished run is archived to its end;
    ``nats`` keeps up until cancelled.
    """
    if (run is None) == (nats is None):
        raise InvalidArgumentError("archive a run (its directory) or a NATS server's stream")

    from swarm_actors._nats._jetstream import JetStreamJournal

    stats = ArchiveStats()

    def archiver(journal: object) -> Archiver:
        if not isinstance(journal, JetStreamJournal):  # a run's journal is always one
            raise InvalidArgumentError("the archive reads JetStream journals only")
        return Archiver(
            journal,
            store,
            batch_size=batch_size,
            batch_interval=batch_interval,
            ack_wait=ack_wait,
            on_batch=on_batch,
            stats=stats,
        )

    if nats is not None:
        from swarm_actors._nats._conn import NatsOptions

        journal = await JetStreamJournal.connect(NatsOptions(servers=nats), configure=False)
        try:
            return await archiver(journal).run(follow=follow)
        finally:
            await journal.close()
    from swarm_actors._runjournal import open_run_journal, open_run_store

    assert run is not None
    async with open_run_journal(run) as rj:
        if not (follow and rj.live):
            return await archiver(rj.journal).run()  # a finished run: nothing more comes
        await _archive_until_ended(archiver(rj.journal), run, poll, patience)
    if on_run_end is not None:
        on_run_end()
    async with open_run_store(run, patience=patience, poll=poll) as rj:
        return await archiver(rj.journal).run(taken_over=True)


async def _archive_until_ended(live: Archiver, run: RunPaths, poll: float, patience: float) -> None:
    """Archive the live run until it ends, then settle what was handed out (best effort)."""
    from swarm_actors._runjournal import wait_run_ended

    task = asyncio.ensure_future(live.run(follow=True))
    ended = asyncio.ensure_future(wait_run_ended(run, poll=poll))
    try:
        await asyncio.wait((task, ended), return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            ended.result()
            live.finish()
            try:
                await task
            except Exception as exc:  # the server went away under the last batch
                # Unacknowledged, it is handed out again from the store (after ack_wait) and
                # found archived: nothing is lost or counted twice.
                _log.warning("archive.live_end", run=run.run_id, error=repr(exc))
        elif task.exception() is not None:  # following never returns by itself: it raised
            # The run's server stopping under a pull or an acknowledgement: if the run ended,
            # the store has the rest; anything else (the archive failing) is raised.
            if not isinstance(task.exception(), ArchiveError):
                await asyncio.wait((ended,), timeout=patience)
            if not ended.done():
                task.result()
            _log.warning("archive.live_end", run=run.run_id, error=repr(task.exception()))
    finally:
        for pending in (task, ended):
            pending.cancel()
        await asyncio.wait((task, ended))
