"""``swarm-actors cluster init``: a secure cluster's credentials and server configuration."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["cluster_init"]


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
    elif sys.stdout.isatty():
        _print_rich(report)
    else:
        _print_plain(report)
    return 0


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
