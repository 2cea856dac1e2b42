"""The SQL archive: every event of the journal in one ClickHouse table, chDB by default.

Owns the archive's tables (``events``: one wide, append-only row per event with every payload
kind's fields as columns; ``dead_letters``; ``schema_versions``), their DDL versioned with the
event schema (``ddl/v<N>.sql``), the archiver (a durable JetStream consumer batching into it,
exactly once in the table across crashes) and the shipped queries (``queries/*.sql``).

Layers: the event model, the NATS layer's JetStream journal and durable consumers, and the
run conventions (``_runs``, ``_runjournal``); ``chdb`` / ``clickhouse-connect`` / ``pyarrow``
come with the ``swarm-actors[archive]`` extra and are imported only when a store is opened.

Typical use (what ``swarm-actors archive`` and ``swarm-actors sql`` do)::

    from swarm_actors.archive import ArchiveStore, archive_events, run_query

    with ArchiveStore.open(path=data_dir / "archive") as store:
        stats = await archive_events(store, run=run_dir(None, data_dir))
        print(run_query(store, "error-rate", window="30d").rows)
"""

from swarm_actors._public import publish as _publish
from swarm_actors.archive._api import archive_dir, archive_events
from swarm_actors.archive._archiver import Archiver, ArchiveStats, consumer_name
from swarm_actors.archive._queries import QUERIES, Query, parse_window, run_query
from swarm_actors.archive._rows import COLUMNS
from swarm_actors.archive._store import ArchiveStore, QueryResult, ddl_versions

__all__ = [
    "COLUMNS",
    "QUERIES",
    "ArchiveStats",
    "ArchiveStore",
    "Archiver",
    "Query",
    "QueryResult",
    "archive_dir",
    "archive_events",
    "consumer_name",
    "ddl_versions",
    "parse_window",
    "run_query",
]

_publish(
    __name__,
    ArchiveStats,
    ArchiveStore,
    Archiver,
    Query,
    QueryResult,
    archive_dir,
    archive_events,
    consumer_name,
    ddl_versions,
    parse_window,
    run_query,
)
