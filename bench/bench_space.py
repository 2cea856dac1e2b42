"""Tuple-space throughput at 1e3..1e6 resident tuples: swarm-actors vs the seed kernel vs a
plain-Python indexed space, side by side in one run.

Each rate is measured in rounds of K operations while the space holds about N tuples: a timed
round of K outs is followed by an untimed take of the same K (and the reverse for takes), so
residency stays within 10% of N. Reported: best of 3 rates, each over >= 200,000 operations or
>= 0.5 s (fewer for the seed kernel, whose take scans and copies the lane on every call).

Run: python bench/bench_space.py [--sizes 1000,10000,100000,1000000]
"""

from __future__ import annotations

import argparse
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from _common import best_of, fmt_rate, load_seed_kernel, machine, progress, table
from swarm_actors.space import ANY, TupleSpace

PAYLOAD = b"0123456789abcdef"
OPS = ("out", "take", "read", "take-key")


class DictSpace:
    """A fair plain-Python baseline: tuples indexed by (arity, lane) in FIFO deques."""

    def __init__(self) -> None:
        self.lanes: dict[tuple[int, Any], deque[tuple[Any, ...]]] = {}

    def out(self, t: tuple[Any, ...]) -> None:
        key = (len(t), t[0])
        q = self.lanes.get(key)
        if q is None:
            q = self.lanes[key] = deque()
        q.append(t)

    @staticmethod
    def _match(template: tuple[Any, ...], t: tuple[Any, ...]) -> bool:
        for f, v in zip(template, t, strict=True):
            if f is ANY:
                continue
            if isinstance(f, type):
                if type(v) is not f:
                    return False
            elif type(f) is not type(v) or f != v:
                return False
        return True

    def take_nowait(self, template: tuple[Any, ...]) -> tuple[Any, ...] | None:
        q = self.lanes.get((len(template), template[0]))
        if not q:
            return None
        for i, t in enumerate(q):
            if self._match(template, t):
                if i == 0:
                    return q.popleft()
                del q[i]
                return t
        return None

    def read_nowait(self, template: tuple[Any, ...]) -> tuple[Any, ...] | None:
        q = self.lanes.get((len(template), template[0]))
        if not q:
            return None
        for t in q:
            if self._match(template, t):
                return t
        return None


class Impl:
    """Adapter: out(i) / take() / read() closures over one implementation."""

    def __init__(
        self,
        name: str,
        make: Callable[[], Any],
        out: Callable[[Any], Callable[[int], Any]],
        take: Callable[[Any], Callable[[], Any]],
        read: Callable[[Any], Callable[[], Any]],
        take_key: Callable[[Any], Callable[[int], Any]],
        max_ops: int,
    ) -> None:
        self.name, self.make, self.out, self.take, self.read = name, make, out, take, read
        self.take_key = take_key
        self.max_ops = max_ops


def impls() -> list[Impl]:
    tpl = ("jobs", int, ANY)
    result = [
        Impl(
            "swarm-actors",
            TupleSpace,
            lambda s: lambda i, o=s.out: o(("jobs", i, PAYLOAD)),
            lambda s: lambda t=s.take_nowait: t(tpl),
            lambda s: lambda r=s.read_nowait: r(tpl),
            lambda s: lambda i, t=s.take_nowait: t(("jobs", i, ANY)),
            200_000,
        ),
        Impl(
            "plain-Python dict space",
            DictSpace,
            lambda s: lambda i, o=s.out: o(("jobs", i, PAYLOAD)),
            lambda s: lambda t=s.take_nowait: t(tpl),
            lambda s: lambda r=s.read_nowait: r(tpl),
            lambda s: lambda i, t=s.take_nowait: t(("jobs", i, ANY)),
            200_000,
        ),
    ]
    seed = load_seed_kernel()
    if seed is not None:
        yool, policy = seed.YoolTuple, seed.RuntimePolicy()
        lane = {"lane": "jobs"}
        result.append(
            Impl(
                "seed kernel",
                lambda: seed.TupleSpace(policy=policy),
                lambda s: (
                    lambda i, o=s.out_tuple: o(
                        yool("job", (i,), "bench", "jobs", "bench", {"payload": PAYLOAD})
                    )
                ),
                lambda s: lambda t=s.in_tuple: t(lane),
                lambda s: lambda r=s.rd_tuple: r(lane),
                lambda s: lambda i, t=s.in_tuple: t({"lane": "jobs", "map": (i,)}),
                2_000,
            )
        )
    else:
        progress("seed kernel not found at ../shared/reference/seed_kernel.py: column skipped")
    return result


def measure(impl: Impl, n: int, budget_s: float) -> dict[str, float]:
    space = impl.make()
    out, take, read = impl.out(space), impl.take(space), impl.read(space)
    take_key = impl.take_key(space)
    fill_start = time.perf_counter()
    for i in range(n):
        out(i)
    progress(f"  {impl.name}: filled {n:,} in {time.perf_counter() - fill_start:.2f} s")
    # Rounds start small and double while they stay short, so a slow implementation (the seed
    # kernel copies the lane on every take) is measured over fewer operations, never for long.
    k_max = max(1, min(n // 10, 10_000))
    next_id = n

    def one_round(op: str, k: int) -> float:
        nonlocal next_id
        if op == "out":
            ids = range(next_id, next_id + k)
            next_id += k
            t0 = time.perf_counter()
            for i in ids:
                out(i)
            spent = time.perf_counter() - t0
            for _ in range(k):
                take()
        elif op == "take":
            t0 = time.perf_counter()
            for _ in range(k):
                take()
            spent = time.perf_counter() - t0
            ids = range(next_id, next_id + k)
            next_id += k
            for i in ids:
                out(i)
        elif op == "take-key":
            # Ids spread over the whole lane: every take removes from the middle.
            step = max(1, n // k)
            keys = [(next_id - n) + j * step for j in range(k)]
            t0 = time.perf_counter()
            for i in keys:
                take_key(i)
            spent = time.perf_counter() - t0
            for i in keys:
                out(i)
        else:
            t0 = time.perf_counter()
            for _ in range(k):
                read()
            spent = time.perf_counter() - t0
        return spent

    def rate(op: str) -> float:
        done, spent, k = 0, 0.0, min(16, k_max)
        deadline = time.perf_counter() + budget_s * 4
        while done < impl.max_ops and spent < budget_s and time.perf_counter() < deadline:
            took = one_round(op, k)
            spent += took
            done += k
            if took < budget_s / 20:
                k = min(k * 2, k_max)
        return done / spent

    return {op: best_of(3, lambda op=op: rate(op)) for op in OPS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--budget", type=float, default=0.5, help="seconds per timed rate")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    candidates = impls()
    results: dict[tuple[str, int], dict[str, float]] = {}
    for n in sizes:
        for impl in candidates:
            progress(f"{impl.name} at {n:,} resident")
            results[(impl.name, n)] = measure(impl, n, args.budget)
    ours = "swarm-actors"
    rows = []
    for n in sizes:
        for op in OPS:
            row: list[object] = [f"{n:,}", op, fmt_rate(results[(ours, n)][op])]
            for impl in candidates[1:]:
                r = results[(impl.name, n)][op]
                row += [fmt_rate(r), f"{results[(ours, n)][op] / r:.1f}x"]
            rows.append(row)
    headers = ["resident", "op", ours]
    for impl in candidates[1:]:
        headers += [impl.name, f"{ours} / {impl.name}"]
    print("## Tuple space\n")
    print(f"`python bench/bench_space.py --sizes {args.sizes}` on {machine()}.")
    print(
        "`take`/`read`: template `('jobs', int, ANY)` (seed kernel: `{'lane': 'jobs'}`), the "
        "oldest of the lane. `take-key`: `('jobs', i, ANY)` for ids spread across the lane "
        "(seed kernel: `{'lane': 'jobs', 'map': (i,)}`). Rates are best of 3.\n"
    )
    print(table(headers, rows))
    print()


if __name__ == "__main__":
    main()
