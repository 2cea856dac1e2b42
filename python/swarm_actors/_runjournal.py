"""Open a run's journal to read it: a finished run, or one still going on.

Every reader of runs (``replay``, ``archive``, ``dashboard``, ``memory``, a ``worker`` joining
the demo) finds a run's events the same way, with :func:`open_run_journal`:

* ``nats=URL``: the run is on a NATS server someone runs (``demo --nats URL``, a cluster):
  read the ``SWARM_EVENTS`` stream there, keeping the run's own events (``run_id``).
* else, while a run with the embedded server is going on, its directory holds ``live.json``
  (written by ``run_swarm`` once the server is up, removed when the run ends): connect to it,
  so a reader sees the run live.
* else the run is finished (or was killed): start a private ``nats-server`` on the run's
  JetStream store (``DATA/runs/<id>/journal``) and read it there. The store is locked while a
  server runs on it, so a run still going on is never opened twice.

A ``live.json`` left behind by a run that was killed names a server that is gone: it is found
not to answer and the store is opened instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from swarm_actors._events._journal import JournalEntry
from swarm_actors._exceptions import RunNotFoundError
from swarm_actors._runs import RunPaths

if TYPE_CHECKING:
    from swarm_actors._events._journal import Journal
    from swarm_actors._nats._conn import NatsOptions

__all__ = [
    "LIVE_FILE",
    "RunJournal",
    "clear_live_url",
    "live_options",
    "open_run_journal",
    "write_live_url",
]

LIVE_FILE = "live.json"
"""The file in a run's directory naming its embedded server (and its credentials) while the
run goes on (mode 0600: the embedded server admits only who holds its nkey seed)."""


def write_live_url(run_root: Path, url: str) -> None:
    """Record that the run in ``run_root`` is live on this process's embedded server at ``url``.

    With the server's credentials (its nkey seed or token), in a file only the user can read:
    the embedded server lets in its own process only, and so a reader or a ``worker`` of the
    same user joins the run with them. Written atomically.
    """
    from swarm_actors._nats._server import embedded_credentials

    record: dict[str, str] = {"url": url}
    creds = embedded_credentials([url])
    if "nkeys_seed_file" in creds:
        record["nkeys_seed"] = Path(creds["nkeys_seed_file"]).read_text().strip()
    elif "token" in creds:
        record["token"] = str(creds["token"])
    tmp = run_root / f".{LIVE_FILE}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(record, out)
    os.replace(tmp, run_root / LIVE_FILE)


def clear_live_url(run_root: Path) -> None:
    """Forget the run's live server (it ended)."""
    with contextlib.suppress(FileNotFoundError):
        (run_root / LIVE_FILE).unlink()


def live_options(run_root: Path) -> NatsOptions | None:
    """How to reach the live run's server, or ``None`` (finished, never embedded, no file)."""
    from swarm_actors._nats._conn import NatsOptions

    try:
        record = json.loads((run_root / LIVE_FILE).read_text())
        url = record["url"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(url, str) or not url.startswith(("nats://", "tls://")):
        return None
    seed, token = record.get("nkeys_seed"), record.get("token")
    return NatsOptions(
        servers=url,
        nkeys_seed=seed if isinstance(seed, str) else None,
        token=token if isinstance(token, str) and not isinstance(seed, str) else None,
    )


class RunJournal:
    """A run's journal, open for reading: its entries, and whether the run is live."""

    def __init__(self, run: RunPaths, journal: Journal, *, live: bool, url: str | None) -> None:
        self.run = run
        """The run's paths."""
        self.journal = journal
        """The journal holding the run (it may hold other runs too: :meth:`entries` filters)."""
        self.live = live
        """Whether the run was going on when it was opened (read from its own server)."""
        self.url = url
        """The server read from."""

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self.run.run_id

    async def entries(
        self, *, start_sequence: int | None = None, follow: bool = False
    ) -> AsyncGenerator[JournalEntry, None]:
        """The run's entries in journal order; with ``follow``, then each new one (until cancelled).

        Entries of other runs sharing the stream are skipped. Without ``follow`` the read ends
        at the last entry stored when it started.
        """
        run_id = self.run.run_id
        source = (
            self.journal.tail(start_sequence=start_sequence or 1)
            if follow
            else self.journal.read(start_sequence=start_sequence)
        )
        async with contextlib.aclosing(source) as stream:
            async for entry in stream:
                if entry.event.run_id == run_id:
                    yield entry

    async def load(self) -> list[JournalEntry]:
        """Every entry of the run stored so far."""
        return [entry async for entry in self.entries()]


async def _answers(options: NatsOptions, timeout: float) -> bool:
    from swarm_actors._nats._conn import connect

    try:
        client = await connect(
            dataclasses.replace(options, connect_timeout=timeout, reconnect=False)
        )
    except Exception:
        return False
    await client.close()
    return True


@contextlib.asynccontextmanager
async def open_run_journal(
    run: RunPaths, *, nats: str | None = None, timeout: float = 10.0
) -> AsyncIterator[RunJournal]:
    """Open ``run``'s journal for reading (see the module docstring for where it is found).

    Raises ``RunNotFoundError`` when the run has no journal here and names no server.
    """
    from swarm_actors._nats._conn import NatsOptions
    from swarm_actors._nats._jetstream import JetStreamJournal

    options = NatsOptions(servers=nats) if nats is not None else live_options(run.root)
    if options is not None and nats is None and not await _answers(options, min(timeout, 2.0)):
        options = None  # a killed run left its file behind: read the store
    if options is not None:
        journal = await JetStreamJournal.connect(options, configure=False)
        try:
            yield RunJournal(run, journal, live=nats is None, url=options.urls[0])
        finally:
            await journal.close()
        return
    store = run.journal
    if not (store / "jetstream").is_dir():
        raise RunNotFoundError(
            f"run {run.run_id} has no journal at {store}: it was not recorded with the "
            "embedded server (pass --nats URL for a run on a server of your own)",
            run=run.run_id,
            data_dir=str(run.root.parent.parent),
        )
    from swarm_actors._nats._server import NatsServer

    async with NatsServer(store_dir=store) as server:
        journal = await JetStreamJournal.connect(server.client_options(), configure=False)
        try:
            yield RunJournal(run, journal, live=False, url=server.url)
        finally:
            await journal.close()
