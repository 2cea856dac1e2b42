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

Following a live run to its end: the embedded server's client reconnects forever, so a tail of
a run's server never ends by itself when the run stops. The run's end is seen on disk instead
(:func:`run_is_live`: ``live.json`` removed, or the run's store no longer locked by a server,
as after a kill); the rest is then read from the run's store, which the ending run's server may
hold locked for a moment (:func:`open_run_store` tries again for a while).
:func:`follow_run_entries` does all of it for a reader of entries; :func:`wait_run_ended`
serves code that follows with its own consumer (the archive's durable consumer).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from swarm_actors._events._journal import JournalEntry
from swarm_actors._exceptions import RunNotFoundError
from swarm_actors._log import get_logger
from swarm_actors._runs import RunPaths

if TYPE_CHECKING:
    from swarm_actors._events._journal import Journal
    from swarm_actors._nats._conn import NatsOptions

__all__ = [
    "LIVE_FILE",
    "RunJournal",
    "clear_live_url",
    "follow_run_entries",
    "live_options",
    "open_run_journal",
    "open_run_store",
    "run_is_live",
    "wait_run_ended",
    "write_live_url",
]

_log = get_logger("swarm_actors.runs")

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

    def __init__(
        self, run: RunPaths, journal: Journal, *, live: bool, url: str | None, store: bool = False
    ) -> None:
        self.run = run
        """The run's paths."""
        self.journal = journal
        """The journal holding the run (it may hold other runs too: :meth:`entries` filters)."""
        self.live = live
        """Whether the run was going on when it was opened (read from its own server)."""
        self.url = url
        """The server read from."""
        self._own_store = store  # a private server on the finished run's store

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self.run.run_id

    async def entries(
        self, *, start_sequence: int | None = None, follow: bool = False, poll: float = 0.5
    ) -> AsyncGenerator[JournalEntry, None]:
        """The run's entries in journal order; with ``follow``, then each new one.

        Entries of other runs sharing the stream are skipped. Without ``follow`` the read ends
        at the last entry stored when it started. With ``follow``:

        * a finished run (its store): the same, nothing more can come;
        * a live run (its own server): each new entry until the run ends (checked every
          ``poll`` seconds, :func:`run_is_live`). The entries the run stored as it stopped
          may then be missing here: :func:`follow_run_entries` reads them from its store;
        * a run on a server of your own (``nats=URL``): until cancelled (no end is known).
        """
        run_id = self.run.run_id
        tail = follow and not self._own_store
        source = (
            self.journal.tail(start_sequence=start_sequence or 1)
            if tail
            else self.journal.read(start_sequence=start_sequence)
        )
        if tail and self.live:
            source = _until_ended(source, self.run, poll)
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
    if options is not None and nats is None and not _store_locked(run.journal):
        options = None  # a killed run left its file behind, and its store is free: read it
    if options is not None and nats is None and not await _answers(options, min(timeout, 2.0)):
        options = None  # a killed run left its file behind: read the store
    if options is not None:
        journal = await JetStreamJournal.connect(options, configure=False)
        try:
            yield RunJournal(run, journal, live=nats is None, url=options.urls[0])
        finally:
            await journal.close()
        return
    async with open_run_store(run, patience=0) as rj:
        yield rj


def _store_locked(store: Path, *, unknown: bool = True) -> bool:
    """Whether a nats-server holds the store's lock (``store_in_use``).

    ``unknown`` when that cannot be told (``True``: ``live.json`` alone decides).
    """
    from swarm_actors._nats._server import store_in_use

    in_use = store_in_use(store)
    return unknown if in_use is None else in_use


def run_is_live(run: RunPaths) -> bool:
    """Whether ``run`` is going on with its embedded server.

    Its ``live.json`` is there and its store is locked by a server: a run killed without
    removing its ``live.json`` took its server with it, and the lock with them.
    """
    return (run.root / LIVE_FILE).exists() and _store_locked(run.journal)


async def wait_run_ended(run: RunPaths, *, poll: float = 0.5, timeout: float | None = None) -> None:
    """Return once ``run`` is no longer live (:func:`run_is_live`), checking every ``poll`` s.

    For code that follows a live run with a consumer of its own: it stops that consumer
    then, and reads the rest from the run's store (:func:`open_run_store`). Raises
    ``TimeoutError`` when ``timeout`` seconds pass first (default: wait as long as it lasts).
    """
    async with asyncio.timeout(timeout):
        while run_is_live(run):  # noqa: ASYNC110 (the run's end is only seen on disk)
            await asyncio.sleep(poll)


@contextlib.asynccontextmanager
async def open_run_store(
    run: RunPaths, *, patience: float = 30.0, poll: float = 0.5
) -> AsyncIterator[RunJournal]:
    """Open the finished ``run``'s store (a private nats-server on ``run.journal``).

    A run that just ended may still hold its store locked for a moment (its server
    stopping): the open is tried again every ``poll`` seconds for ``patience`` seconds, then
    the last ``NatsServerError`` is raised. ``RunNotFoundError`` when there is no store.
    """
    from swarm_actors._exceptions import NatsServerError
    from swarm_actors._nats._jetstream import JetStreamJournal
    from swarm_actors._nats._server import NatsServer

    store = run.journal
    if not (store / "jetstream").is_dir():
        raise RunNotFoundError(
            f"run {run.run_id} has no journal at {store}: it was not recorded with the "
            "embedded server (pass --nats URL for a run on a server of your own)",
            run=run.run_id,
            data_dir=str(run.root.parent.parent),
        )
    deadline = time.monotonic() + patience
    while True:
        if time.monotonic() < deadline and _store_locked(store, unknown=False):
            await asyncio.sleep(poll)  # the ending run's server still holds the lock
            continue
        server = NatsServer(store_dir=store)
        try:
            await server.start()
        except NatsServerError:
            await server.stop()
            # Taken again just now (another reader starting)? Else it is not the lock: raise.
            if time.monotonic() >= deadline or not _store_locked(store, unknown=False):
                raise
            continue
        except BaseException:
            await server.stop()
            raise
        break
    try:
        journal = await JetStreamJournal.connect(server.client_options(), configure=False)
        try:
            yield RunJournal(run, journal, live=False, url=server.url, store=True)
        finally:
            await journal.close()
    finally:
        await server.stop()


async def follow_run_entries(
    run: RunPaths,
    *,
    start_sequence: int | None = None,
    nats: str | None = None,
    poll: float = 0.5,
    patience: float = 30.0,
    on_live: Callable[[], None] | None = None,
    on_end: Callable[[], None] | None = None,
) -> AsyncGenerator[JournalEntry, None]:
    """Every entry of ``run`` from ``start_sequence``, each once, in order; ends with the run.

    A finished run: its store read to its end. A live run: tailed on its own server until it
    ends (:func:`run_is_live`, checked every ``poll`` s; ``on_live`` is called once the tail
    is open, ``on_end`` once its end is seen), then the rest read from its store
    (:func:`open_run_store`, with ``patience``), from the entry after the last one given:
    none lost, none repeated. With ``nats`` (a run on a server of your own, which says
    nothing of a run's end) it follows until cancelled.
    """
    if nats is not None:
        async with open_run_journal(run, nats=nats) as rj:
            if on_live is not None:
                on_live()
            async with contextlib.aclosing(
                rj.entries(start_sequence=start_sequence, follow=True)
            ) as s:
                async for entry in s:
                    yield entry
        return
    from swarm_actors._exceptions import NatsServerError

    start = start_sequence
    if run_is_live(run):
        async with contextlib.AsyncExitStack() as stack:
            try:
                rj = await stack.enter_async_context(open_run_journal(run))
            except NatsServerError:
                return_early = False  # it ended as we opened it, its store still locked
            else:
                if rj.live and on_live is not None:
                    on_live()
                # Live: until the run ends. Else it ended between the look and the open, and
                # this is its store already: read to its end.
                tail = await stack.enter_async_context(
                    contextlib.aclosing(rj.entries(start_sequence=start, follow=True))
                )
                try:
                    async for entry in tail:
                        yield entry
                        start = entry.sequence + 1
                except Exception as exc:
                    if run_is_live(run):
                        raise
                    # The run's server went away under the tail as the run ended: the rest
                    # is in its store.
                    _log.warning("run.live_read_lost", run=run.run_id, error=repr(exc))
                if rj.live and on_end is not None:
                    on_end()
                return_early = not rj.live
        if return_early:
            return
    async with (
        open_run_store(run, patience=patience, poll=poll) as rj,
        contextlib.aclosing(rj.entries(start_sequence=start)) as s,
    ):
        async for entry in s:
            yield entry


async def _until_ended(
    source: AsyncGenerator[JournalEntry, None], run: RunPaths, poll: float
) -> AsyncGenerator[JournalEntry, None]:
    """``source``'s entries until ``run`` ends (then it ends, the tail closed)."""
    ended = asyncio.ensure_future(wait_run_ended(run, poll=poll))
    try:
        async with contextlib.aclosing(source) as stream:
            while True:
                step = asyncio.ensure_future(stream.__anext__())
                try:
                    await asyncio.wait((step, ended), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    if not step.done():  # the run ended, or we are cancelled: stop the tail
                        step.cancel()
                        await asyncio.wait((step,))
                if step.cancelled():
                    ended.result()  # raises what stopped the wait, if anything did
                    return
                try:
                    entry = step.result()
                except StopAsyncIteration:
                    return
                yield entry  # one taken just as the run ended is given, not lost
                if ended.done():
                    return
    finally:
        ended.cancel()
        await asyncio.wait((ended,))
