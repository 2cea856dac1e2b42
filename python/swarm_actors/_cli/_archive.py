"""``swarm-actors archive`` and ``swarm-actors sql``: the SQL archive from the command line.

``archive`` copies a run's events (``--run``, read as every reader of runs reads them: the
live run's server, or a private server on its finished store) or a NATS server's whole event
stream (``--nats URL``) into the archive: chDB under ``DATA/archive`` by default, a ClickHouse
server with ``--clickhouse URL``. Without ``--follow`` it stops once everything stored is
archived. With it, a live run is archived as it goes on until it ends, then the rest from its
store, and the command exits 0 (a finished run: to its end); with ``--nats URL`` (no run's end
is known there) it keeps up until interrupted. Progress on stderr; the counts on stdout at the
end.

``sql`` runs a query on the archive: SQL text, or a shipped query by name (``--query NAME``
with its parameters, ``--list`` to see them), printed as a table (rich on a terminal, aligned
text otherwise), JSON lines or CSV.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from swarm_actors.archive import ArchiveStats, ArchiveStore, QueryResult

__all__ = ["add_archive_commands"]


def _open_store(args: argparse.Namespace) -> ArchiveStore:
    from swarm_actors.archive import ArchiveStore, archive_dir

    if args.clickhouse:
        return ArchiveStore.open(url=args.clickhouse)
    return ArchiveStore.open(path=archive_dir(args.data_dir))


def _run_ended(quiet: bool) -> Any:
    def report() -> None:
        if not quiet:
            print("the run ended: archiving the rest from its store", file=sys.stderr)

    return report


def _progress(quiet: bool) -> Any:
    def report(stats: ArchiveStats) -> None:
        if not quiet:
            print(
                f"archived {stats.archived} events ({stats.dead_letters} dead letters, "
                f"{stats.duplicates} already there) up to sequence {stats.last_sequence}, "
                f"{stats.rate:,.0f}/s",
                file=sys.stderr,
            )

    return report


def cmd_archive(args: argparse.Namespace) -> int:
    """Run ``swarm-actors archive``."""
    from swarm_actors._runs import run_dir
    from swarm_actors.archive import archive_events
    from swarm_actors.errors import ArchiveError, InvalidArgumentError, TransportError

    try:
        run = None if args.nats else run_dir(args.run, args.data_dir)
        with _open_store(args) as store:
            stats = asyncio.run(
                archive_events(
                    store,
                    run=run,
                    nats=args.nats,
                    follow=args.follow,
                    ack_wait=args.ack_wait,
                    on_batch=_progress(bool(args.quiet)),
                    on_run_end=_run_ended(bool(args.quiet)),
                )
            )
            where = store.location
    except (ArchiveError, InvalidArgumentError, TransportError) as exc:
        print(f"swarm-actors archive: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except ConnectionError as exc:  # the server went away (a live run ended, then ^C)
        print(
            f"swarm-actors archive: the connection to the server was lost ({exc}); what was "
            "acknowledged is archived: run `swarm-actors archive` again for the rest",
            file=sys.stderr,
        )
        return 1
    result = {
        "archived": stats.archived,
        "dead_letters": stats.dead_letters,
        "duplicates": stats.duplicates,
        "batches": stats.batches,
        "last_sequence": stats.last_sequence,
        "archive": where,
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


def _cell(value: Any) -> Any:
    """A value as JSON and CSV write it: datetimes in ISO 8601, decimals as floats."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple):
        return [_cell(v) for v in value]
    return value


def _print_result(result: QueryResult, fmt: str) -> None:
    columns, rows = result.columns, result.rows
    out = sys.stdout
    if fmt == "json":
        for row in rows:
            out.write(json.dumps(dict(zip(columns, map(_cell, row), strict=True))) + "\n")
    elif fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(columns)
        writer.writerows([_cell(v) for v in row] for row in rows)
    elif out.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(*columns)
        for row in rows:
            table.add_row(*(str(_cell(v)) for v in row))
        Console().print(table)
    else:
        text = [[str(_cell(v)) for v in row] for row in rows]
        widths = [max([len(c), *(len(r[i]) for r in text)]) for i, c in enumerate(columns)]
        for line in [list(columns), *text]:
            out.write("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
            out.write("\n")


def cmd_sql(args: argparse.Namespace) -> int:
    """Run ``swarm-actors sql``."""
    from swarm_actors.archive import QUERIES, run_query
    from swarm_actors.errors import ArchiveError, InvalidArgumentError

    if args.list:
        for query in QUERIES.values():
            takes = ", ".join(f"--{k} (default {v!r})" for k, v in query.defaults.items())
            print(f"{query.name}: {query.summary}; {takes}")
        return 0
    if (args.sql is None) == (args.query is None):
        print(
            "swarm-actors sql: give SQL text or --query NAME (--list shows them)", file=sys.stderr
        )
        return 2
    fmt = "json" if args.json else args.format
    try:
        with _open_store(args) as store:
            if args.query is not None:
                params = {
                    name: getattr(args, name, None)
                    for name in QUERIES[args.query].defaults
                    if name != "run"
                }
                if "run" in QUERIES[args.query].defaults and args.run:
                    params["run"] = _run_id(args)
                result = run_query(store, args.query, **params)
            else:
                result = store.query(args.sql)
    except (ArchiveError, InvalidArgumentError) as exc:
        print(f"swarm-actors sql: {exc}", file=sys.stderr)
        return 2
    _print_result(result, fmt)
    return 0


def _run_id(args: argparse.Namespace) -> str:
    """The run ``--run`` names: a run of the data directory (``latest``, a prefix), else as is."""
    from swarm_actors._runs import run_dir
    from swarm_actors.errors import RunNotFoundError

    try:
        return run_dir(args.run, args.data_dir).run_id
    except RunNotFoundError:
        return str(args.run)  # archived from a server: no directory here


def add_archive_commands(
    sub: Any, *, add_common: Any, add_data_dir: Any, positive_float: Any
) -> None:
    """Add ``archive`` and ``sql`` to the ``swarm-actors`` subcommands."""
    from swarm_actors.archive import QUERIES

    p = sub.add_parser(
        "archive",
        help="copy events into the SQL archive (chDB, or a ClickHouse server)",
        description="Copy a run's events (or a NATS server's event stream) into the SQL "
        "archive, exactly once: chDB under DATA/archive, or a ClickHouse server.",
    )
    add_common(p)
    add_data_dir(p)
    p.add_argument("--run", default=None, help="the run to archive (default: the latest)")
    p.add_argument(
        "--nats", metavar="URL", help="archive the event stream of this NATS server instead"
    )
    p.add_argument(
        "--clickhouse", metavar="URL", help="a ClickHouse server (default: chDB, embedded)"
    )
    p.add_argument(
        "--follow",
        action="store_true",
        help="keep archiving new events live: until the run ends (then exit 0), or with "
        "--nats until interrupted",
    )
    p.add_argument(
        "--ack-wait",
        type=positive_float,
        default=30.0,
        metavar="SECONDS",
        help="how soon a batch an archiver took and never confirmed (it died) comes again "
        "(default: 30)",
    )
    p.add_argument("--json", action="store_true", help="print the counts as one JSON object")
    p.set_defaults(func=cmd_archive)

    q = sub.add_parser(
        "sql",
        help="query the SQL archive",
        description="Run SQL on the archive (tables: events, dead_letters, schema_versions), "
        "or a shipped query by name.",
    )
    add_common(q)
    add_data_dir(q)
    q.add_argument("sql", nargs="?", metavar="QUERY", help="the SQL to run")
    q.add_argument("--query", choices=sorted(QUERIES), help="a shipped query, by name")
    q.add_argument("--list", action="store_true", help="list the shipped queries")
    q.add_argument("--run", default=None, help="shipped queries: only this run")
    q.add_argument("--agent", default=None, help="error-rate: only this agent (id or role)")
    q.add_argument("--window", default=None, help="error-rate: e.g. 30d, 12h (default: 30d)")
    q.add_argument("--threshold", type=float, default=None, help="low-confidence: below this")
    q.add_argument("--limit", type=int, default=None, help="at most this many rows")
    q.add_argument("--clickhouse", metavar="URL", help="a ClickHouse server (default: chDB)")
    q.add_argument(
        "--format", choices=("table", "json", "csv"), default="table", help="(default: table)"
    )
    q.add_argument("--json", action="store_true", help="the same as --format json")
    q.set_defaults(func=cmd_sql)
