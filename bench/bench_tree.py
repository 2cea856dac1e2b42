"""Agent hierarchy benchmark: swarm-actors' ``AgentTree`` against the seed kernel, in one run.

Usage::

    python bench/bench_tree.py [--agents 1000000] [--seed-agents 3000]

Prints a Markdown section (``## Agent hierarchy``) to stdout and progress to stderr. Memory is
process RSS (``/proc/self/statm``): the tree lives in Rust, where ``tracemalloc`` sees nothing.
Each memory measurement runs in a fresh child process so earlier frees cannot hide growth.

The seed kernel (``../shared/reference/seed_kernel.py`` from the repository root) is loaded
with ``importlib`` when present; its column is skipped with a note otherwise. Its spawn is
quadratic (every spawn scans all agents) and every compress rebuilds the lane list, so it runs
on ``--seed-agents`` agents and its figures are per agent at that size.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from _common import fmt_rate as rate
from _common import load_seed_kernel, rss_bytes

REPO = Path(__file__).resolve().parent.parent
STATE_BYTES = 64
# The Rust batch record (56 bytes) plus the 8-byte entry in the parent's child list.
BATCH_RECORD_BYTES = 56 + 8


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    """Fastest of ``repeat`` timings, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def states(n: int) -> list[bytes]:
    """A pool of random (incompressible) 64-byte states, reused cyclically."""
    rng = random.Random(42)
    return [rng.randbytes(STATE_BYTES) for _ in range(n)]


# --- child-process measurements ---------------------------------------------------------------


def child_tree_memory(agents: int) -> dict[str, Any]:
    """Materialize ``agents`` virtual agents, then compress each with a 64-byte state."""
    from swarm_actors._tuplecore import AgentTree

    tree = AgentTree()
    branching = 1000
    batch = tree.batch_spawn(0, "leaf", 2, branching)
    first = batch.leaf_first_id
    pool = states(1024)
    touch, compress = tree.touch, tree.compress
    gc.collect()
    base = rss_bytes()
    start = time.perf_counter()
    for i in range(first, first + agents):
        touch(i)
    materialize_s = time.perf_counter() - start
    active_rss = rss_bytes() - base
    start = time.perf_counter()
    for n, i in enumerate(range(first, first + agents)):
        compress(i, pool[n & 1023])
    compress_s = time.perf_counter() - start
    compressed_rss = rss_bytes() - base
    assert tree.stats().compressed == agents
    return {
        "materialize_rate": agents / materialize_s,
        "compress_rate": agents / compress_s,
        "active_bytes": active_rss / agents,
        "compressed_bytes": compressed_rss / agents,
    }


def child_tree_spawn_memory(agents: int) -> dict[str, Any]:
    """Spawn ``agents`` agents under the root, then compress each with a 64-byte state."""
    from swarm_actors._tuplecore import AgentTree

    tree = AgentTree()
    pool = states(1024)
    spawn, compress = tree.spawn, tree.compress
    gc.collect()
    base = rss_bytes()
    start = time.perf_counter()
    for _ in range(agents):
        spawn(0, "worker")
    spawn_s = time.perf_counter() - start
    for n in range(1, agents + 1):
        compress(n, pool[n & 1023])
    return {"spawn_rate": agents / spawn_s, "compressed_bytes": (rss_bytes() - base) / agents}


def child_tree_batch_memory(depth: int, branching: int, calls: int) -> dict[str, Any]:
    """RSS growth of ``calls`` batch_spawn calls on one tree."""
    from swarm_actors._tuplecore import AgentTree

    tree = AgentTree()
    gc.collect()
    base = rss_bytes()
    for _ in range(calls):
        tree.batch_spawn(0, "leaf", depth, branching)
    return {"bytes_per_batch": (rss_bytes() - base) / calls}


def child_seed_memory(agents: int) -> dict[str, Any]:
    seed = load_seed_kernel()
    assert seed is not None
    space = seed.TupleSpace(policy=seed.RuntimePolicy(compression_threshold=10**9))
    root = seed.YoolTuple("root", (0,), "root", "lane", "bench", agent_id=None)
    pool = states(1024)
    gc.collect()
    base = rss_bytes()
    start = time.perf_counter()
    ids = [space.spawn_agent(root, "worker", {"state": pool[n & 1023]}) for n in range(agents)]
    spawn_s = time.perf_counter() - start
    active_rss = rss_bytes() - base
    start = time.perf_counter()
    for i in ids:
        space.compress_token(i)
    compress_s = time.perf_counter() - start
    compressed_rss = rss_bytes() - base
    return {
        "materialize_rate": agents / spawn_s,
        "compress_rate": agents / compress_s,
        "active_bytes": active_rss / agents,
        "compressed_bytes": compressed_rss / agents,
    }


def child_seed_batch_memory(depth: int, branching: int, calls: int) -> dict[str, Any]:
    seed = load_seed_kernel()
    assert seed is not None
    space = seed.TupleSpace(policy=seed.RuntimePolicy(compression_threshold=10**9))
    root = seed.YoolTuple("root", (0,), "root", "lane", "bench", agent_id=None)
    gc.collect()
    base = rss_bytes()
    for _ in range(calls):
        space.batch_spawn(root, "leaf", depth=depth, branching=branching)
    return {"bytes_per_batch": (rss_bytes() - base) / calls}


CHILDREN: dict[str, Callable[..., dict[str, Any]]] = {
    "tree_memory": child_tree_memory,
    "tree_batch_memory": child_tree_batch_memory,
    "tree_spawn_memory": child_tree_spawn_memory,
    "seed_memory": child_seed_memory,
    "seed_batch_memory": child_seed_batch_memory,
}


def in_child(name: str, *args: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", name, *map(str, args)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


# --- in-process measurements ------------------------------------------------------------------


def tree_speed(agents: int, prune_count: int) -> dict[str, Any]:
    from swarm_actors._tuplecore import AgentTree

    result: dict[str, Any] = {}
    for label, depth in (("batch_1m", 4), ("batch_1g", 6)):
        seconds = best_of(200, lambda d=depth: AgentTree().batch_spawn(0, "leaf", d, 32))
        base = best_of(200, AgentTree)
        result[label] = max(seconds - base, 0.0)
    tree = AgentTree()
    big = tree.batch_spawn(0, "leaf", 6, 32)
    rng = random.Random(3)
    leaves = [big.leaf_first_id + rng.randrange(big.leaves) for _ in range(100_000)]
    info = tree.info
    result["resolve_rate"] = len(leaves) / best_of(3, lambda: [info(i) for i in leaves])

    tree = AgentTree()
    batch = tree.batch_spawn(0, "leaf", 2, 1000)
    ids = list(range(batch.leaf_first_id, batch.leaf_first_id + agents))
    touch = tree.touch
    for i in ids:
        touch(i)
    shuffled = ids[:]
    random.Random(5).shuffle(shuffled)

    def touch_all(order: list[int]) -> None:
        for i in order:
            touch(i)

    result["touch_seq_rate"] = agents / best_of(3, lambda: touch_all(ids))
    result["touch_random_rate"] = agents / best_of(3, lambda: touch_all(shuffled))
    active = tree.stats().active
    pruned: list[int] = []

    def do_prune() -> None:
        pruned[:] = tree.prune(active - prune_count)

    result["prune_s"] = best_of(5, do_prune)
    assert len(pruned) == prune_count
    pool = states(1024)
    compress = tree.compress
    for n, i in enumerate(shuffled):
        compress(i, pool[n & 1023])
    restore = tree.restore
    start = time.perf_counter()
    for i in shuffled:
        restore(i)
    result["restore_rate"] = agents / (time.perf_counter() - start)
    return result


def seed_speed(seed: ModuleType, agents: int, touch_agents: int) -> dict[str, Any]:
    result: dict[str, Any] = {}
    policy = seed.RuntimePolicy(compression_threshold=10**9)

    def fresh() -> tuple[Any, Any]:
        space = seed.TupleSpace(policy=policy)
        return space, seed.YoolTuple("root", (0,), "root", "lane", "bench", agent_id=None)

    for label, depth in (("batch_1m", 4), ("batch_1g", 6)):

        def one(d: int = depth) -> None:
            space, root = fresh()
            space.batch_spawn(root, "leaf", depth=d, branching=32)

        result[label] = max(best_of(200, one) - best_of(200, fresh), 0.0)

    pool = states(1024)
    # The seed's spawn cannot reach a million agents (it is quadratic): build its agent objects
    # directly for the touch comparison, registered as spawn_agent would.
    registry = {
        i: seed.YoolTuple(
            "worker",
            (0, i),
            f"subagent_{i}",
            "lane",
            "bench",
            {"state": pool[i & 1023]},
            parent_id=0,
            agent_id=i,
        )
        for i in range(touch_agents)
    }
    ids = list(registry)
    shuffled = ids[:]
    random.Random(5).shuffle(shuffled)

    def touch_all(order: list[int]) -> None:
        for i in order:
            registry[i].touch()

    result["touch_seq_rate"] = touch_agents / best_of(3, lambda: touch_all(ids))
    result["touch_random_rate"] = touch_agents / best_of(3, lambda: touch_all(shuffled))
    registry.clear()  # free the million objects before the next measurement
    shuffled.clear()
    space, root = fresh()
    ids = [space.spawn_agent(root, "worker", {"state": pool[n & 1023]}) for n in range(agents)]
    keep = agents - agents // 10
    start = time.perf_counter()
    compressed = space.prune_idle(keep)
    result["prune_s"] = time.perf_counter() - start
    result["prune_count"] = compressed
    return result


# --- report -----------------------------------------------------------------------------------


def duration(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1_000_000)
    parser.add_argument("--seed-agents", type=int, default=3_000)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        name, *params = args.child
        print(json.dumps(CHILDREN[name](*map(int, params))))
        return

    agents, seed_agents = args.agents, args.seed_agents
    prune_count = agents // 10
    seed = load_seed_kernel()

    log(f"swarm-actors: batch_spawn, resolve, touch, prune, restore on {agents:,} agents")
    ours = tree_speed(agents, prune_count)
    log("swarm-actors: memory of materialized + compressed agents (child process)")
    ours.update(in_child("tree_memory", agents))
    spawned = in_child("tree_spawn_memory", agents)
    ours["spawn_rate"], ours["spawn_bytes"] = spawned["spawn_rate"], spawned["compressed_bytes"]
    ours["batch_1m_bytes"] = in_child("tree_batch_memory", 4, 32, 20_000)["bytes_per_batch"]
    ours["batch_1g_bytes"] = in_child("tree_batch_memory", 6, 32, 20_000)["bytes_per_batch"]

    theirs: dict[str, Any] | None = None
    if seed is not None:
        log(f"seed kernel: the same on {seed_agents:,} agents (its spawn is quadratic)")
        theirs = seed_speed(seed, seed_agents, agents)
        theirs.update(in_child("seed_memory", seed_agents))
        theirs["batch_1m_bytes"] = in_child("seed_batch_memory", 4, 32, 2_000)["bytes_per_batch"]
        theirs["batch_1g_bytes"] = in_child("seed_batch_memory", 6, 32, 2_000)["bytes_per_batch"]

    def seed_cell(fn: Callable[[dict[str, Any]], str]) -> str:
        return fn(theirs) if theirs is not None else "—"

    rows = [
        (
            "batch_spawn, 1,048,576 leaves (depth 4 x 32): time",
            duration(ours["batch_1m"]),
            seed_cell(lambda s: duration(s["batch_1m"])),
            "seed: a counter, no addressable agent",
        ),
        (
            "batch_spawn, 1,048,576 leaves: memory per call",
            f"{ours['batch_1m_bytes']:.0f} B RSS ({BATCH_RECORD_BYTES} B record)",
            seed_cell(lambda s: f"{s['batch_1m_bytes']:.0f} B RSS"),
            "RSS growth over many calls / calls",
        ),
        (
            "batch_spawn, 1,073,741,824 leaves (depth 6 x 32): time",
            duration(ours["batch_1g"]),
            seed_cell(lambda s: duration(s["batch_1g"])),
            "",
        ),
        (
            "batch_spawn, 1,073,741,824 leaves: memory per call",
            f"{ours['batch_1g_bytes']:.0f} B RSS ({BATCH_RECORD_BYTES} B record)",
            seed_cell(lambda s: f"{s['batch_1g_bytes']:.0f} B RSS"),
            "",
        ),
        (
            "resolve a virtual leaf (`info`) of the 1e9-leaf batch",
            rate(ours["resolve_rate"]),
            seed_cell(lambda s: "impossible"),
            "parent, kind, depth, path, Hilbert, status",
        ),
        (
            "materialize agents",
            rate(ours["materialize_rate"]),
            seed_cell(lambda s: rate(s["materialize_rate"])),
            "ours: `touch` of a virtual id; seed: `spawn_agent`",
        ),
        (
            "RSS per active agent",
            f"{ours['active_bytes']:.0f} B",
            seed_cell(lambda s: f"{s['active_bytes']:.0f} B (incl. 64 B state)"),
            "",
        ),
        (
            "compress with a 64-byte state",
            rate(ours["compress_rate"]),
            seed_cell(lambda s: rate(s["compress_rate"])),
            "seed: replaces the state by a digest (lossy)",
        ),
        (
            "RSS per compressed agent (64 B state included)",
            f"{ours['compressed_bytes']:.0f} B ({ours['compressed_bytes'] - 64:.0f} B overhead)",
            seed_cell(lambda s: f"{s['compressed_bytes']:.0f} B"),
            "",
        ),
        (
            "spawn agents (`spawn`, explicit records), then compress each",
            f"{rate(ours['spawn_rate'])}; "
            f"{ours['spawn_bytes']:.0f} B RSS per agent ({ours['spawn_bytes'] - 64:.0f} B "
            "overhead)",
            seed_cell(lambda s: f"{rate(s['materialize_rate'])}; {s['compressed_bytes']:.0f} B"),
            "ours also keeps parent, ordinal, kind and depth",
        ),
        (
            "touch from Python, sequential ids",
            rate(ours["touch_seq_rate"]),
            seed_cell(lambda s: rate(s["touch_seq_rate"])),
            "seed: `agents[id].touch()`, same number of agents",
        ),
        (
            "touch from Python, random ids",
            rate(ours["touch_random_rate"]),
            seed_cell(lambda s: rate(s["touch_random_rate"])),
            "",
        ),
        (
            f"prune {prune_count:,} of {agents:,} active",
            duration(ours["prune_s"]),
            seed_cell(
                lambda s: f"{duration(s['prune_s'])} ({s['prune_count']:,} of {seed_agents:,})"
            ),
            "seed: sorts every agent, then compresses",
        ),
        (
            "restore (decode + verify digest)",
            rate(ours["restore_rate"]),
            seed_cell(lambda s: "impossible"),
            "seed tokens cannot be restored",
        ),
    ]

    command = "python bench/bench_tree.py" + "".join(
        f" {a}" for a in sys.argv[1:] if not a.startswith("--child")
    )
    out = [
        "## Agent hierarchy",
        "",
        f"`{command}` — swarm-actors on {agents:,} agents"
        + (
            f", seed kernel on {seed_agents:,} agents."
            if seed is not None
            else "; seed kernel column skipped: ../shared/reference/seed_kernel.py not found."
        ),
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}. "
        "Rates are the best of 3 runs; memory is RSS growth in a fresh child process.",
        "",
        "| measurement | swarm-actors | seed kernel | note |",
        "| --- | --- | --- | --- |",
    ]
    out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    if theirs is not None:
        ratio = ours["touch_random_rate"] / theirs["touch_random_rate"]
        out += [
            "",
            f"Random touch: {ratio:.2f}x the seed's rate on as many agents; the seed's touch "
            "only stamps a time on a Python object (no LRU order, so its prune must sort). "
            f"Its spawn, compress and prune run on {seed_agents:,} agents (spawn is "
            "quadratic); it cannot restore a compressed agent nor address a batch node.",
        ]
    print("\n".join(out))


if __name__ == "__main__":
    main()
