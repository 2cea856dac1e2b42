"""Where the embedded archive lives, and archiving a run or a server's stream in one call."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from swarm_actors._exceptions import InvalidArgumentError
from swarm_actors._runs import resolve_data_dir
from swarm_actors.archive._archiver import Archiver, ArchiveStats

if TYPE_CHECKING:
    from swarm_actors._runs import RunPaths
    from swarm_actors.archive._store import ArchiveStore

__all__ = ["archive_dir", "archive_events"]


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
) -> ArchiveStats:
    """Archive the events of ``run`` (its journal, live or finished) or of the server ``nats``.

    With ``nats`` the whole ``SWARM_EVENTS`` stream there is archived (every run on it; the
    table's ``run_id`` tells them apart); else the run's journal, opened as every reader of
    runs opens it (``open_run_journal``: the live run's server, or a private server on its
    store, where the durable consumer's position is kept too). Without ``follow``, returns
    once everything stored is archived; with it, keeps up until cancelled.
    """
    if (run is None) == (nats is None):
        raise InvalidArgumentError("archive a run (its directory) or a NATS server's stream")

    from swarm_actors._nats._jetstream import JetStreamJournal

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
        )

    if nats is not None:
        from swarm_actors._nats._conn import NatsOptions

        journal = await JetStreamJournal.connect(NatsOptions(servers=nats), configure=False)
        try:
            return await archiver(journal).run(follow=follow)
        finally:
            await journal.close()
    from swarm_actors._runjournal import open_run_journal

    assert run is not None
    async with open_run_journal(run) as rj:
        return await archiver(rj.journal).run(follow=follow)
