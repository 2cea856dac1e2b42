"""``swarm-actors memory search "QUERY"`` and ``swarm-actors memory stats``: long-term memory.

Memory lives in the data directory (``DATA/memory``, ``swarm_actors.memory``); the demo feeds
it at the end of each run with the run's approved and rejected changes. ``search`` prints the
best entries for a query (hybrid: exact keys, BM25 and embeddings, fused by rank), ``stats``
what the store holds. ``--json``: one JSON object on stdout, nothing else.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from swarm_actors._exceptions import InvalidArgumentError
from swarm_actors._runs import resolve_data_dir

if TYPE_CHECKING:
    from swarm_actors.memory import MemoryStore

__all__ = ["memory_search", "memory_stats", "open_memory"]


def open_memory(data_dir: Path, *, create: bool = True) -> MemoryStore:
    """The data directory's memory store (made when ``create``); bad input names the fix."""
    from swarm_actors.memory import MemoryStore, memory_dir

    where = memory_dir(data_dir)
    if not create and not (where / "entries.jsonl").exists():
        raise InvalidArgumentError(
            f"no memory in {data_dir} yet: run `swarm-actors demo --data-dir {data_dir}` first "
            "(each run stores its approved and rejected changes), or pass the --data-dir that "
            "holds it"
        )
    try:
        return MemoryStore(where)
    except OSError as exc:
        raise InvalidArgumentError(
            f"cannot open memory in {where}: {exc} (pass a writable --data-dir, or "
            "--no-memory to the demo)"
        ) from None


def _hit_json(hit: Any) -> dict[str, Any]:
    e = hit.entry
    return {
        "id": hit.id,
        "score": round(hit.score, 6),
        "ranks": hit.ranks,
        "kind": e.kind,
        "path": e.path,
        "rules": list(e.rules),
        "signatures": list(e.signatures),
        "reason": e.reason,
        "evidence": list(e.evidence),
        "run_id": e.run_id,
        "decision_id": e.decision_id,
        "text": e.text,
    }


def memory_search(args: argparse.Namespace) -> int:
    """Print the entries that best answer ``args.query``."""
    if not args.query.strip():
        raise InvalidArgumentError('give a query: swarm-actors memory search "unused import"')
    data_dir = resolve_data_dir(args.data_dir)
    store = open_memory(data_dir, create=False)
    hits = store.search(args.query, k=args.k, keys=tuple(args.key or ()))
    if args.json:
        print(json.dumps({"query": args.query, "hits": [_hit_json(h) for h in hits]}))
        return 0
    if not hits:
        print(f"nothing in memory ({len(store)} entries) answers {args.query!r}")
        return 0
    if sys.stdout.isatty():  # pragma: no cover - needs a terminal
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"memory: {args.query}")
        for column in ("id", "kind", "file", "rules", "run", "why"):
            table.add_column(column)
        for h in hits:
            e = h.entry
            why = e.reason or e.text.splitlines()[0]
            table.add_row(h.id, e.kind, e.path, ",".join(e.rules), e.run_id, why[:120])
        Console().print(table)
        return 0
    for h in hits:
        e = h.entry
        ranks = " ".join(f"{k}#{v}" for k, v in sorted(h.ranks.items()))
        print(f"{h.id} {e.kind} {e.path} {','.join(e.rules)} run {e.run_id} [{ranks}]")
        print(f"    {(e.reason or e.text.splitlines()[0])[:200]}")
    return 0


def memory_stats(args: argparse.Namespace) -> int:
    """Print what the data directory's memory holds."""
    from msgspec import structs

    data_dir = resolve_data_dir(args.data_dir)
    store = open_memory(data_dir, create=False)
    stats = structs.asdict(store.stats())
    if args.json:
        print(json.dumps(stats))
        return 0
    print(f"memory in {stats['path']}: {stats['entries']} entries from {stats['runs']} runs")
    for kind, count in sorted(stats["by_kind"].items()):
        print(f"  {kind}: {count}")
    print(f"embeddings: {stats['embedder']}")
    print(f"size: {stats['bytes']} bytes")
    return 0
