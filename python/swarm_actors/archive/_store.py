"""The archive's store: ClickHouse through ``clickhouse-connect``, embedded (chDB) or a server.

``ArchiveStore.open(path=DIR)`` runs ClickHouse in this process (chDB, the default: its data
in ``DIR``, usually ``DATA/archive``); ``ArchiveStore.open(url="http://host:8123")`` talks to a
ClickHouse server. Both are the same ``clickhouse-connect`` client API
(``get_client(interface="chdb")`` for the first), so the DDL, the inserts and every query are
shared; only the client differs. No ClickHouse server could be had on the machines this was
built on (Debian's ``clickhouse-server`` package is from 2018), so the server path is tested
only as far as it shares code with the embedded one.

chDB hosts one engine per process, on one path: opening a second path while a store is open
raises ``ArchiveError``; several stores on the same path (other databases) share the engine.
Importing chDB costs about 225 MB of memory: the CLI imports it only for ``archive`` / ``sql``.

The schema is versioned with the event schema: ``ddl/v<N>.sql`` for each event schema version
``N`` that changed the table (v2 is the first), applied in order and recorded in
``schema_versions``. A store whose recorded version is newer than this build's
``SCHEMA_VERSION`` is refused (``ArchiveError``: upgrade swarm-actors), never written to.

ClickHouse's own logs are bounded (Langfuse's lesson: unbounded ``system.*_log`` tables grow
until they fill the disk): every session turns query, thread, view and processor logging
off. chDB keeps no other system log tables. A server's logs are its configuration's business:
``clickhouse-server.xml`` beside this module is a ``config.d`` drop-in giving them a TTL.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from swarm_actors._events._schema import SCHEMA_VERSION
from swarm_actors._exceptions import ArchiveError, InvalidArgumentError
from swarm_actors._log import get_logger

if TYPE_CHECKING:
    import pyarrow as pa
    from clickhouse_connect.driver.client import Client

__all__ = ["ArchiveStore", "QueryResult", "ddl_versions"]

_log = get_logger("swarm_actors.archive")

DEFAULT_DATABASE = "swarm"
_DATABASE = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]{0,63}\Z")

#: Session settings of every connection: no query, thread, view or processor logs (bounded
#: system logs). ``FINAL`` deduplicates within each partition only: the month partition is a
#: function of the event (its timestamp), so copies of one event never sit in two partitions,
#: and the error-rate scan at 300k rows took 197 ms instead of 568 ms with it.
SESSION_SETTINGS: Mapping[str, object] = {
    "log_queries": 0,
    "log_query_threads": 0,
    "log_query_views": 0,
    "log_processors_profiles": 0,
    "do_not_merge_across_partitions_select_final": 1,
}

_ENGINE_LOCK = threading.Lock()
_ENGINE_PATH: list[str] = []  # the chDB path this process opened (one engine per process)


def ddl_versions() -> dict[int, str]:
    """The archive DDL shipped with this build: event schema version -> its SQL."""
    out = {}
    for entry in resources.files("swarm_actors.archive").joinpath("ddl").iterdir():
        match = re.fullmatch(r"v(\d+)\.sql", entry.name)
        if match:
            out[int(match.group(1))] = entry.read_text()
    return dict(sorted(out.items()))


def _statements(sql: str, database: str) -> list[str]:
    """The statements of a DDL file (separated by lines holding only ``;``), comments out."""
    text = sql.replace("{db}", database)
    parts = re.split(r"^;\s*$", text, flags=re.MULTILINE)
    out = []
    for part in parts:
        body = "\n".join(ln for ln in part.splitlines() if not ln.lstrip().startswith("--"))
        if body.strip():
            out.append(body.strip())
    return out


@dataclass(frozen=True)
class QueryResult:
    """What a query returned: column names and rows (tuples of Python values)."""

    columns: tuple[str, ...]
    """The column names, in order."""
    rows: list[tuple[Any, ...]]
    """The rows."""


class ArchiveStore:
    """The archive's tables in ClickHouse (chDB or a server); open with :meth:`open`."""

    def __init__(self, client: Client, *, database: str, location: str) -> None:
        self._client = client
        self.database = database
        """The ClickHouse database holding ``events``, ``dead_letters``, ``schema_versions``."""
        self.location = location
        """Where the data is: the chDB directory, or the server's URL (without credentials)."""
        self._lock = threading.Lock()  # a client is not to be used by two threads at once

    @classmethod
    def open(
        cls,
        *,
        path: str | os.PathLike[str] | None = None,
        url: str | None = None,
        database: str = DEFAULT_DATABASE,
    ) -> ArchiveStore:
        """Open (creating or upgrading its tables) the archive at ``path`` (chDB) or ``url``.

        Raises ``ArchiveError`` when the client is missing (install ``swarm-actors[archive]``),
        the server does not answer, or the archive was written by a newer build.
        """
        if (path is None) == (url is None):
            raise InvalidArgumentError("give the archive's path (chDB) or a ClickHouse URL")
        if not _DATABASE.match(database):
            raise InvalidArgumentError(f"invalid database name {database!r}: use [A-Za-z0-9_]")
        try:
            import clickhouse_connect
        except ImportError:
            raise ArchiveError(
                "the archive needs chDB and clickhouse-connect: pip install 'swarm-actors[archive]'"
            ) from None
        settings = dict(SESSION_SETTINGS)
        if url is None:
            assert path is not None
            where = os.path.realpath(Path(path))
            with _ENGINE_LOCK:
                if _ENGINE_PATH and _ENGINE_PATH[0] != where:
                    raise ArchiveError(
                        f"chDB runs one engine per process: {_ENGINE_PATH[0]} is open here, "
                        f"so {where} cannot be (open the other in another process)"
                    )
                Path(where).mkdir(parents=True, exist_ok=True)
                try:
                    client = clickhouse_connect.get_client(
                        interface="chdb", path=where, settings=settings
                    )
                except ImportError:
                    raise ArchiveError(
                        "the embedded archive needs chDB: pip install 'swarm-actors[archive]'"
                    ) from None
                _ENGINE_PATH[:] = [where]
            location = where
        else:
            try:
                client = clickhouse_connect.get_client(dsn=url, settings=settings)
            except Exception as exc:
                raise ArchiveError(f"no ClickHouse server answered at {url}: {exc}") from exc
            location = re.sub(r"//[^@/]*@", "//", url)  # no credentials in messages
        store = cls(client, database=database, location=location)
        store._migrate()
        return store

    def _migrate(self) -> None:
        db = self.database
        self._client.command(f"CREATE DATABASE IF NOT EXISTS {db}")
        self._client.command(
            f"CREATE TABLE IF NOT EXISTS {db}.schema_versions (version UInt32, "
            "applied_at DateTime64(3, 'UTC') DEFAULT now64(3), ddl String) "
            "ENGINE = ReplacingMergeTree ORDER BY version"
        )
        found = self._client.command(f"SELECT max(version) FROM {db}.schema_versions")
        current = int(found) if isinstance(found, (int, str)) else 0
        if current > SCHEMA_VERSION:
            raise ArchiveError(
                f"the archive at {self.location} has schema version {current}, written by a "
                f"newer swarm-actors; this one knows up to {SCHEMA_VERSION}: upgrade it"
            )
        for version, sql in ddl_versions().items():
            if current < version <= SCHEMA_VERSION:
                for statement in _statements(sql, db):
                    self._client.command(statement)
                self._client.insert(
                    f"{db}.schema_versions", [(version, sql)], column_names=["version", "ddl"]
                )
                _log.info("archive.migrated", location=self.location, version=version)
        self._client.database = db

    @property
    def schema_version(self) -> int:
        """The DDL version the archive's tables are at."""
        return int(self.command(f"SELECT max(version) FROM {self.database}.schema_versions"))

    def command(self, sql: str) -> Any:
        """Run one statement; its single value (or summary) back."""
        with self._lock:
            return self._client.command(sql)

    def insert_arrow(self, table: str, data: pa.Table) -> None:
        """Insert an Arrow table into ``table`` of the archive's database (one insert)."""
        if data.num_rows == 0:
            return
        with self._lock:
            self._client.insert_arrow(table, data, database=self.database)

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` the ``events`` table holds already."""
        if not ids:
            return set()
        result = self.query(
            "SELECT DISTINCT event_id FROM events WHERE event_id IN {ids:Array(String)}",
            {"ids": list(ids)},
        )
        return {row[0] for row in result.rows}

    def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> QueryResult:
        """Run a query (``{name:Type}`` placeholders bound from ``parameters``)."""
        try:
            with self._lock:
                result = self._client.query(sql, parameters=dict(parameters or {}))
        except Exception as exc:
            if type(exc).__module__.startswith("clickhouse_connect"):
                raise ArchiveError(f"the query failed: {exc}") from exc
            raise
        return QueryResult(tuple(result.column_names), [tuple(r) for r in result.result_rows])

    def close(self) -> None:
        """Close the client (the chDB engine stays up for this process's other stores)."""
        with contextlib.suppress(Exception):
            self._client.close()

    def __enter__(self) -> ArchiveStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
