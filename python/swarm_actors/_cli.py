"""The ``swarm-actors`` command line.

``swarm-actors demo`` runs a short, self-checking tour of the Rust core: a bag-of-tasks on the
tuple space with blocking workers, a restricted handle, Hilbert placement, and a million-agent
hierarchy that is materialized, pruned, compressed and restored.

``swarm-actors cluster init --nodes a,b,c --out DIR`` makes the credentials of a secure
cluster: one nkey seed file per node (mode 0600) and the ``nats-server`` configuration that
admits them, each node allowed only its own subjects (see the README, "Running across hosts
securely"). It prints what it wrote, as a table on a terminal or as JSON with ``--json``.

Logs go to stderr, warnings and errors only by default: ``-v`` adds info, ``-vv`` debug, ``-q``
keeps errors only. (The library itself configures no logging; this command, an application,
does.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from swarm_actors import __version__
from swarm_actors.errors import CapabilityError
from swarm_actors.hilbert import hilbert_decode, hilbert_encode, hilbert_encode_batch
from swarm_actors.space import TupleSpace
from swarm_actors.tree import AgentTree


def _step(title: str) -> None:
    print(f"\n== {title}", flush=True)


async def _bag_of_tasks(n_tasks: int, n_workers: int) -> None:
    space = TupleSpace()
    results: list[int] = []

    async def worker(name: str) -> int:
        done = 0
        while True:
            _, n = await space.take(("task", int), timeout=5.0)
            if n < 0:
                return done
            space.out(("result", n, n * n))
            done += 1
            # Real work awaits I/O; yielding here lets the other workers share the bag. (A take
            # that finds a match returns without yielding, like asyncio.Queue.get.)
            await asyncio.sleep(0)

    started = time.perf_counter()
    workers = [asyncio.create_task(worker(f"w{i}")) for i in range(n_workers)]
    for n in range(n_tasks):
        space.out(("task", n))
    for _ in range(n_tasks):
        _, n, square = await space.take(("result", int, int), timeout=5.0)
        results.append(square)
    for _ in workers:
        space.out(("task", -1))
    per_worker = await asyncio.gather(*workers)
    elapsed = time.perf_counter() - started
    assert sorted(results) == sorted(n * n for n in range(n_tasks)), "lost or duplicated results"
    print(f"{n_tasks:,} tasks through {n_workers} blocking workers in {elapsed * 1e3:.0f} ms")
    print(f"tasks per worker: {per_worker}; space now holds {len(space)} tuples")

    readonly = space.restrict(lanes=["result"], take=False, write=False)
    try:
        readonly.out(("task", 1))
    except CapabilityError as exc:
        print(f"restricted handle refused a write, as granted: {exc}")


def _hilbert() -> None:
    point = (3, 5, 7)
    index = hilbert_encode(point, 8)
    assert hilbert_decode(index, 3, 8) == point
    print(f"hilbert_encode({point}, bits=8) = {index}; decodes back to {point}")
    grid = [(x, y) for x in range(4) for y in range(4)]
    order = sorted(grid, key=lambda p: hilbert_encode_batch([p], 2)[0])
    print("order-2 curve over a 4x4 grid:", " ".join(f"{x}{y}" for x, y in order))


def _hierarchy(active: int) -> None:
    tree = AgentTree()
    started = time.perf_counter()
    batch = tree.batch_spawn(tree.root, "worker", 4, 32)
    print(
        f"batch_spawn depth 4 x branching 32: {batch.count:,} agents "
        f"({batch.leaves:,} leaves) described in {(time.perf_counter() - started) * 1e6:.0f} us"
    )
    leaves = range(batch.leaf_first_id, batch.leaf_first_id + active)
    started = time.perf_counter()
    for agent in leaves:
        tree.touch(agent)
    print(f"materialized {active:,} leaves in {(time.perf_counter() - started) * 1e3:.0f} ms")
    started = time.perf_counter()
    idle = tree.prune(active // 10)
    for agent in idle:
        tree.compress(agent, agent.to_bytes(8, "little") * 8)
    print(
        f"pruned and compressed {len(idle):,} idle agents in "
        f"{(time.perf_counter() - started) * 1e3:.0f} ms; {tree.stats()}"
    )
    last = idle[-1]
    assert tree.restore(last) == last.to_bytes(8, "little") * 8
    info = tree.info(last)
    print(f"restored agent {last}: depth {info.depth}, path {info.path}, status {info.status}")


def demo(args: argparse.Namespace) -> int:
    """Run the tour; returns the process exit code."""
    print(f"swarm-actors {__version__}: a tour of the Rust core")
    _step("Tuple space: bag of tasks with blocking takes")
    asyncio.run(_bag_of_tasks(args.tasks, args.workers))
    _step("Hilbert mapping (Skilling's transpose algorithm)")
    _hilbert()
    _step("Agent hierarchy: a million agents, lazily")
    _hierarchy(args.active)
    print("\nall checks passed")
    return 0


def cluster_init(args: argparse.Namespace) -> int:
    """Write a secure cluster's credentials and server configuration; print what was written."""
    from swarm_actors.cluster import write_cluster_credentials
    from swarm_actors.errors import InvalidArgumentError

    nodes = [n.strip() for n in args.nodes.split(",") if n.strip()]
    out = args.out if args.out is not None else Path(args.data_dir or ".") / "cluster"
    try:
        written = write_cluster_credentials(
            nodes, out, account=args.account, admin=args.admin, port=args.port, force=args.force
        )
    except InvalidArgumentError as exc:
        print(f"swarm-actors cluster init: {exc}", file=sys.stderr)
        return 2
    report: dict[str, Any] = {
        "directory": str(written.directory),
        "account": written.account,
        "include_file": str(written.include_file),
        "server_config": str(written.server_config),
        "nodes": [
            {"node": node, "seed_file": str(path), "public_key": user.nkey}
            for (node, path), user in zip(written.seed_files.items(), written.users, strict=False)
        ],
        "admin_seed_file": None if written.admin is None else str(written.admin),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    elif sys.stdout.isatty() and _has_rich():
        _print_rich(report)
    else:
        _print_plain(report)
    return 0


def _has_rich() -> bool:
    import importlib.util

    return importlib.util.find_spec("rich") is not None


def _next_steps(report: dict[str, Any]) -> list[str]:
    node = report["nodes"][0]
    return [
        f"servers: include {report['include_file']} in each server's configuration "
        f"(or start from {report['server_config']})",
        "nodes: copy each seed file to its node's host only, then connect with "
        f'NatsOptions(servers=..., nkeys_seed_file="{node["seed_file"]}") and '
        f'Cluster(node="{node["node"]}")',
    ]


def _print_plain(report: dict[str, Any]) -> None:
    print(f"wrote the credentials of {len(report['nodes'])} nodes to {report['directory']}")
    print(f"account {report['account']}: {report['include_file']}")
    print(f"server configuration: {report['server_config']}")
    for entry in report["nodes"]:
        print(f"node {entry['node']}: {entry['seed_file']} ({entry['public_key']})")
    if report["admin_seed_file"]:
        print(f"admin (unrestricted): {report['admin_seed_file']}")
    for line in _next_steps(report):
        print(line)


def _print_rich(report: dict[str, Any]) -> None:  # pragma: no cover - needs a terminal
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"swarm cluster credentials (account {report['account']})")
    for column in ("node", "seed file (0600)", "public key"):
        table.add_column(column)
    for entry in report["nodes"]:
        table.add_row(entry["node"], entry["seed_file"], entry["public_key"])
    if report["admin_seed_file"]:
        table.add_row("admin", report["admin_seed_file"], "(unrestricted)")
    console.print(table)
    console.print(f"server include file: [bold]{report['include_file']}[/bold]")
    console.print(f"server configuration: [bold]{report['server_config']}[/bold]")
    for line in _next_steps(report):
        console.print(line, markup=False)


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


def parser() -> argparse.ArgumentParser:
    """The argument parser of the ``swarm-actors`` command."""
    parser = argparse.ArgumentParser(prog="swarm-actors", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"swarm-actors {__version__}")
    _add_verbosity(parser, default=None)
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="run a short self-checking tour of the core")
    # Also accepted after the command; SUPPRESS keeps the subcommand from resetting them.
    _add_verbosity(p_demo, default=argparse.SUPPRESS)
    p_demo.add_argument("--tasks", type=int, default=10_000, help="bag-of-tasks size")
    p_demo.add_argument("--workers", type=int, default=8, help="concurrent workers")
    p_demo.add_argument("--active", type=int, default=200_000, help="agents to materialize")
    p_demo.set_defaults(func=demo)
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
    p_init.set_defaults(func=cluster_init)
    return parser


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
    for name in ("tasks", "workers", "active"):
        if getattr(args, name, 1) < 1:
            cli.error(f"--{name} must be >= 1")
    logging.basicConfig(
        level=log_level(args),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
