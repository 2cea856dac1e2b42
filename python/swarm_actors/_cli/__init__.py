"""The ``swarm-actors`` command line.

``swarm-actors demo [PATH]`` runs the role swarm (an architect, a pool of coders and a
reviewer over NATS, every decision and change in the journal) on a copy of the sample project
shipped with the package, or on the user's project at ``PATH`` (a copy, or a git worktree on a
branch of its own: the user's files and branch are never touched). It shows the agents live,
ends with a summary and says how to take the approved changes. Exit status: 0 when the
workspace's tests pass at the end, 1 when they do not, 2 for bad input.

``swarm-actors worker --role coder [--nats URL]`` joins coders to a running swarm: the demo's
embedded server (found in the ``--run`` run's directory while it goes on) or a server's URL.

``swarm-actors replay list|show|checkout|diff|verify`` travels through a run's journal: its
timeline, any event in full, the workspace at any event, and every hash chain checked
(``_cli/_replay.py``). ``replay revert SEQ`` undoes a change (and what depends on it) as new
events, ``replay rerun SEQ`` forks a new run that asks the brain again, and ``replay run``
re-executes the run with its recorded model answers, calling no model
(``_cli/_replay_revert.py``).

``swarm-actors dashboard [--run RUN]`` serves mission control for a run on 127.0.0.1: the
agent graph, the event log, diffs and verdicts, traces, model calls and a replay slider, live
while the run goes on (``swarm_actors._cli._dashboard``).

``swarm-actors archive`` copies a run's events into the SQL archive (chDB under
``DATA/archive``, or a ClickHouse server); ``swarm-actors sql`` queries it (``_archive``).

``swarm-actors cluster init --nodes a,b,c --out DIR`` makes the credentials of a secure
cluster: one nkey seed file per node (mode 0600) and the ``nats-server`` configuration that
admits them, each node allowed only its own subjects (see the README, "Running across hosts
securely"). It prints what it wrote, as a table on a terminal or as JSON with ``--json``.

``swarm-actors memory search "QUERY"`` and ``swarm-actors memory stats`` read the data
directory's memory of earlier runs (``swarm_actors.memory``), which each demo run consults and
feeds (``demo --no-memory``: neither).

Runs live under a data directory (``--data-dir``, else ``$SWARM_DATA_DIR``, else the per-user
data directory) as ``runs/<run_id>/``; ``--run`` names one (``swarm_actors._runs``).

Logs go to stderr, warnings and errors only by default: ``-v`` adds info, ``-vv`` debug, ``-q``
keeps errors only (and hides the demo's progress). Progress goes to stderr; stdout has only the
command's result (with ``--json``, one JSON object). The library itself configures no logging;
this command, an application, does.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from swarm_actors import __version__

if TYPE_CHECKING:
    from swarm_actors._cli._parsers import Subparsers
    from swarm_actors.cluster import NatsOptions

__all__ = ["log_level", "main", "parser"]


def _cmd_demo(args: argparse.Namespace) -> int:
    from swarm_actors._cli._demo import run_demo
    from swarm_actors.errors import ConnectError, InvalidArgumentError, SwarmError

    try:
        return run_demo(args)
    except InvalidArgumentError as exc:  # bad input: the message names the fix
        print(f"swarm-actors demo: {exc}", file=sys.stderr)
        return 2
    except ConnectError as exc:
        if args.nats == "embedded":
            raise
        print(f"swarm-actors demo: --nats {args.nats}: {exc}", file=sys.stderr)
        return 2
    except SwarmError as exc:  # the run failed: say why, the traceback with -vv
        logging.getLogger("swarm_actors").debug("the run failed", exc_info=True)
        print(f"swarm-actors demo: the run failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("swarm-actors demo: interrupted", file=sys.stderr)
        return 130


def _cmd_worker(args: argparse.Namespace) -> int:
    from swarm_actors import swarm
    from swarm_actors._cli._demo import make_brain
    from swarm_actors.errors import InvalidArgumentError, TransportError

    try:
        brain = make_brain(args)
        url = args.nats or _live_run_url(args)
        asyncio.run(swarm.run_worker(role=args.role, nats_url=url, coders=args.coders, brain=brain))
    except (InvalidArgumentError, TransportError) as exc:
        print(f"swarm-actors worker: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


def _live_run_url(args: argparse.Namespace) -> NatsOptions:
    """The embedded server of the ``--run`` run (``InvalidArgumentError`` when it is not live)."""
    from swarm_actors._runjournal import live_options
    from swarm_actors._runs import run_dir
    from swarm_actors.errors import InvalidArgumentError, RunNotFoundError

    try:
        run = run_dir(args.run, args.data_dir)
    except RunNotFoundError as exc:
        raise InvalidArgumentError(f"no --nats URL, and {exc}") from None
    options = live_options(run.root)
    if options is None:
        raise InvalidArgumentError(
            f"run {run.run_id} is not going on (it names no live server in {run.root}): start "
            "`swarm-actors demo` first, or pass --nats URL of a swarm on a server of your own"
        )
    return options


def _cmd_cluster_init(args: argparse.Namespace) -> int:
    from swarm_actors._cli._cluster import cluster_init

    return cluster_init(args)


def _cmd_memory(args: argparse.Namespace) -> int:
    from swarm_actors._cli import _memory
    from swarm_actors.errors import InvalidArgumentError

    try:
        return (
            _memory.memory_search(args)
            if args.memory_command == "search"
            else (_memory.memory_stats(args))
        )
    except InvalidArgumentError as exc:
        print(f"swarm-actors memory {args.memory_command}: {exc}", file=sys.stderr)
        return 2


def _add_verbosity(parser: argparse.ArgumentParser, *, default: object) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=default,
        help="log more to stderr: -v info, -vv debug (default: warnings)",
    )
    group.add_argument(
        "-q", "--quiet", action="store_true", default=default, help="log errors only"
    )


def _add_brain(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--brain",
        choices=("deterministic", "openai"),
        default="deterministic",
        help="who decides: rules and ruff, no model (default), or an OpenAI-compatible model",
    )
    parser.add_argument("--model", help="the model of --brain openai (else $SWARM_MODEL)")
    parser.add_argument(
        "--base-url", help="the API of --brain openai (else $OPENAI_BASE_URL, else OpenAI's)"
    )


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        default=None,
        help="where runs are kept (default: $SWARM_DATA_DIR, else the per-user data directory)",
    )


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def parser() -> argparse.ArgumentParser:
    """The argument parser of the ``swarm-actors`` command."""
    parser = argparse.ArgumentParser(prog="swarm-actors", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"swarm-actors {__version__}")
    _add_verbosity(parser, default=None)
    sub = parser.add_subparsers(dest="command", required=True)

    p_demo = sub.add_parser(
        "demo",
        help="run the role swarm on the sample project, or on yours",
        description="An architect, coders and a reviewer fix a Python project's linter "
        "findings without breaking its tests: safe fixes approved, fixes that break a test "
        "rejected and reverted. Works on a copy or a git worktree, never on your files.",
    )
    # Also accepted after the command; SUPPRESS keeps the subcommand from resetting them.
    _add_verbosity(p_demo, default=argparse.SUPPRESS)
    p_demo.add_argument(
        "path", nargs="?", metavar="PATH", help="a Python project (default: the shipped sample)"
    )
    p_demo.add_argument(
        "--test-cmd",
        metavar="CMD",
        help="how to run the project's tests, e.g. 'python -m pytest -q' (default: pytest or "
        "unittest, detected, with this Python)",
    )
    _add_brain(p_demo)
    p_demo.add_argument("--coders", type=_positive, default=3, help="coders (default: 3)")
    _add_data_dir(p_demo)
    p_demo.add_argument(
        "--run", metavar="RUN", help="the new run's id (default: made up from the time)"
    )
    p_demo.add_argument(
        "--nats",
        default="embedded",
        metavar="URL",
        help="a NATS server to run on (`swarm-actors worker` joins either way) "
        "(default: a private embedded one)",
    )
    p_demo.add_argument(
        "--json", action="store_true", help="print the summary as one JSON object on stdout"
    )
    p_demo.add_argument(
        "--no-memory",
        action="store_true",
        help="neither consult nor feed the data directory's memory of earlier runs",
    )
    p_demo.set_defaults(func=_cmd_demo)

    p_worker = sub.add_parser(
        "worker",
        help="join workers to a swarm running on a NATS server",
        description="Start workers of one role that join a running swarm through NATS; "
        "they stop when the swarm ends.",
    )
    _add_verbosity(p_worker, default=argparse.SUPPRESS)
    p_worker.add_argument("--role", required=True, help="the role to join as: coder")
    p_worker.add_argument(
        "--nats",
        metavar="URL",
        help="the swarm's NATS server (default: the embedded server of the --run run, while "
        "it goes on)",
    )
    p_worker.add_argument(
        "--run", default=None, help="the demo run to join without --nats (default: the latest)"
    )
    _add_data_dir(p_worker)
    p_worker.add_argument("--coders", type=_positive, default=1, help="how many (default: 1)")
    _add_brain(p_worker)
    p_worker.set_defaults(func=_cmd_worker)

    from swarm_actors._cli._dashboard import add_parser as add_dashboard

    add_dashboard(sub)
    from swarm_actors._cli._replay import add_replay_parser
    from swarm_actors._cli._replay_revert import add_parsers as add_revert_parsers

    def common(p: argparse.ArgumentParser) -> None:
        _add_verbosity(p, default=argparse.SUPPRESS)
        _add_data_dir(p)

    replay_sub = add_replay_parser(sub, common)
    add_revert_parsers(
        replay_sub, add_data_dir=_add_data_dir, add_brain=_add_brain, add_verbosity=_add_verbosity
    )

    p_cluster = sub.add_parser("cluster", help="a secure cluster's credentials")
    cluster_sub = p_cluster.add_subparsers(dest="cluster_command", required=True)
    p_init = cluster_sub.add_parser(
        "init",
        help="write each node's nkey and the nats-server configuration that admits them",
        description="Write one nkey seed file per node (mode 0600), an accounts include file "
        "giving each node only its own subjects, and a minimal nats-server configuration.",
    )
    _add_verbosity(p_init, default=argparse.SUPPRESS)
    p_init.add_argument(
        "--nodes", required=True, help="comma-separated node ids (Cluster(node=...))"
    )
    p_init.add_argument(
        "--out", type=Path, default=None, help="directory to write to (default: DATA_DIR/cluster)"
    )
    p_init.add_argument(
        "--data-dir",
        default=os.environ.get("SWARM_DATA_DIR"),
        help="the swarm's data directory (default: $SWARM_DATA_DIR, else the current one)",
    )
    p_init.add_argument("--account", default="SWARM", help="the NATS account (default: SWARM)")
    p_init.add_argument("--port", type=int, default=4222, help="client port of the server config")
    p_init.add_argument(
        "--admin", action="store_true", help="also write admin.nk, an unrestricted user"
    )
    p_init.add_argument("--force", action="store_true", help="overwrite files already there")
    p_init.add_argument("--json", action="store_true", help="print what was written as JSON")
    p_init.set_defaults(func=_cmd_cluster_init)
    _add_memory(sub)

    from swarm_actors._cli._archive import add_archive_commands

    add_archive_commands(
        sub,
        add_common=lambda p: _add_verbosity(p, default=argparse.SUPPRESS),
        add_data_dir=_add_data_dir,
        positive_float=_positive_float,
    )
    return parser


def _add_memory(sub: Subparsers) -> None:
    p_memory = sub.add_parser("memory", help="what earlier runs approved and rejected")
    memory_sub = p_memory.add_subparsers(dest="memory_command", required=True)
    p_search = memory_sub.add_parser(
        "search",
        help="the remembered changes that best answer a query",
        description="Search memory: exact keys (paths, rule codes, failing tests), BM25 and "
        "embeddings, fused by rank.",
    )
    p_search.add_argument("query", help='what to look for, e.g. "unused import in money.py"')
    p_search.add_argument("-k", type=_positive, default=5, help="how many (default: 5)")
    p_search.add_argument(
        "--key",
        action="append",
        help="an exact key every hit must have: path:FILE, rule:CODE, sig:TEST_ID, kind:KIND",
    )
    p_stats = memory_sub.add_parser("stats", help="what memory holds")
    for p in (p_search, p_stats):
        _add_verbosity(p, default=argparse.SUPPRESS)
        _add_data_dir(p)
        p.add_argument("--json", action="store_true", help="print one JSON object")
        p.set_defaults(func=_cmd_memory)


def log_level(args: argparse.Namespace) -> int:
    """The ``logging`` level the ``-v`` / ``-q`` flags of ``args`` ask for."""
    if args.quiet:
        return logging.ERROR
    verbose = args.verbose or 0
    return logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``swarm-actors`` command."""
    cli = parser()
    args = cli.parse_args(argv)
    if args.verbose and args.quiet:  # one before the command, the other after it
        cli.error("-v/--verbose and -q/--quiet exclude each other")
    logging.basicConfig(
        level=log_level(args),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    result: int = args.func(args)
    return result
