"""Reading a run for replay: its journal entries (finished or live) and its blob store.

The journal is read through ``open_run_journal`` (``swarm_actors._runjournal``: a live run's
embedded server, a finished run's store behind a private server, or ``nats=URL``). What the
read cannot deliver is not fatal here: a gap (sequences the store lost) or a message that is
no event is kept as a ``JournalProblem`` and the read goes on after it, so that ``verify`` can
name what is missing and where, and the rest of the run can still be shown.
"""

from __future__ import annotations

import contextlib
import os

import msgspec

from swarm_actors._runjournal import open_run_journal
from swarm_actors._runs import RunPaths, run_dir
from swarm_actors.errors import EventDecodeError, JournalGapError
from swarm_actors.events import BlobStore, Journal, JournalEntry
from swarm_actors.replay._replay import RunReplay

__all__ = ["JournalProblem", "load_run", "read_run_entries"]


class JournalProblem(msgspec.Struct, frozen=True, kw_only=True):
    """Something the journal could not deliver: missing sequences, or a message not an event."""

    kind: str
    """``"gap"`` (sequences missing from the store) or ``"undecodable"``."""
    first: int
    """The first journal sequence concerned."""
    last: int
    """The last journal sequence concerned (inclusive)."""
    message: str
    """What the journal said."""


async def read_run_entries(
    journal: Journal, run_id: str
) -> tuple[list[JournalEntry], list[JournalProblem]]:
    """The entries of ``run_id`` in ``journal``, and the problems met reading them.

    Read unfiltered, so that every lost sequence is known (a message that is no event is the
    one after the last delivered: the read stops just before it). Entries of other runs
    sharing the journal are skipped.
    """
    entries: list[JournalEntry] = []
    problems: list[JournalProblem] = []
    start: int | None = None
    last_seen = 0
    while True:
        try:
            async with contextlib.aclosing(journal.read(start_sequence=start)) as stream:
                async for entry in stream:
                    last_seen = entry.sequence
                    if entry.event.run_id == run_id:
                        entries.append(entry)
            return entries, problems
        except JournalGapError as exc:
            problems.append(
                JournalProblem(kind="gap", first=exc.first, last=exc.last, message=str(exc))
            )
            last_seen = exc.last
        except EventDecodeError as exc:
            bad = last_seen + 1
            problems.append(
                JournalProblem(kind="undecodable", first=bad, last=bad, message=str(exc))
            )
            last_seen = bad
        start = last_seen + 1


async def load_run(
    run: RunPaths | str | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    nats: str | None = None,
) -> RunReplay:
    """A run, read for replay: ``run`` as ``swarm-actors --run`` takes it (default: latest).

    ``data_dir`` as ``--data-dir``; ``nats`` for a run on a server of your own. Works on a
    finished run and on one going on (what is stored when it is read). Raises
    ``RunNotFoundError`` for no such run, or a run without a journal.
    """
    paths = run if isinstance(run, RunPaths) else run_dir(run, data_dir)
    async with open_run_journal(paths, nats=nats) as rj:
        entries, problems = await read_run_entries(rj.journal, paths.run_id)
    blobs = BlobStore(paths.blobs) if paths.blobs.is_dir() else None
    return RunReplay(entries, blobs, run_id=paths.run_id, problems=problems)
