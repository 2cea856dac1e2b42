"""Hilbert mapping throughput of swarm_actors, next to the `hilbertcurve` package in the same run.

Run from the repository root with the extension built (``maturin develop --release``)::

    python bench/bench_hilbert.py [--points N] [--oracle-points N] [--repeats N]

Writes a Markdown section to stdout and progress lines to stderr. Points are 3-d with 21 bits
per axis (63-bit indices), built as a list of tuples before any timing. Each measurement is
repeated and reported as best and median; the garbage collector is off inside timed regions, as
``timeit`` does. `hilbertcurve` is pure Python, so it runs on a smaller sample; its results are
also compared with ours, so the table records correctness next to speed.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import shlex
import statistics
import sys
import time
from collections.abc import Callable

from hilbertcurve.hilbertcurve import HilbertCurve

from swarm_actors._tuplecore import (
    hilbert_decode,
    hilbert_decode_batch,
    hilbert_encode,
    hilbert_encode_batch,
)

DIMS = 3
BITS = 21
TARGET_ENCODE_RATE = 5_000_000


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def measure(label: str, count: int, repeats: int, run: Callable[[], object]) -> tuple[float, float]:
    """Return (best, median) throughput in points/s of ``run``, which handles ``count`` points."""
    rates = []
    for attempt in range(repeats):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            run()
            elapsed = time.perf_counter() - start
        finally:
            gc.enable()
        rates.append(count / elapsed)
        log(f"  {label}: run {attempt + 1}/{repeats}: {count / elapsed:,.0f} points/s")
    return max(rates), statistics.median(rates)


def fmt(rate: float) -> str:
    return f"{rate:,.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000, help="batch size for ours")
    parser.add_argument(
        "--oracle-points", type=int, default=20_000, help="sample size for hilbertcurve"
    )
    parser.add_argument("--scalar-points", type=int, default=200_000, help="scalar-call sample")
    parser.add_argument("--repeats", type=int, default=5, help="timings per measurement")
    args = parser.parse_args()

    rng = random.Random(20240521)
    log(f"building {args.points:,} random {DIMS}-d {BITS}-bit points")
    points = [
        (rng.getrandbits(BITS), rng.getrandbits(BITS), rng.getrandbits(BITS))
        for _ in range(args.points)
    ]
    sample = points[: args.oracle_points]
    scalar_sample = points[: args.scalar_points]
    curve = HilbertCurve(BITS, DIMS)

    # Correctness first (untimed): ours against the reference on the sample, and round trips.
    log("checking results against hilbertcurve")
    indices = hilbert_encode_batch(points, BITS)
    reference = curve.distances_from_points([list(p) for p in sample])
    agrees = indices[: len(sample)] == reference
    round_trip = hilbert_decode_batch(indices, DIMS, BITS) == points
    scalar_agrees = [hilbert_encode(p, BITS) for p in sample[:2000]] == reference[:2000]
    sample_indices = indices[: len(sample)]
    scalar_sample_indices = indices[: len(scalar_sample)]

    rows: list[tuple[str, int, float, float, float | None, int | None]] = []

    log("encode batch")
    best, median = measure(
        "ours", len(points), args.repeats, lambda: hilbert_encode_batch(points, BITS)
    )
    ref_best, _ = measure(
        "hilbertcurve",
        len(sample),
        max(1, args.repeats // 2),
        lambda: curve.distances_from_points(sample),
    )
    rows.append(("`hilbert_encode_batch`", len(points), best, median, ref_best, len(sample)))

    log("decode batch")
    best, median = measure(
        "ours", len(points), args.repeats, lambda: hilbert_decode_batch(indices, DIMS, BITS)
    )
    ref_best, _ = measure(
        "hilbertcurve",
        len(sample),
        max(1, args.repeats // 2),
        lambda: curve.points_from_distances(sample_indices),
    )
    rows.append(("`hilbert_decode_batch`", len(points), best, median, ref_best, len(sample)))

    log("encode, one call per point")
    best, median = measure(
        "ours",
        len(scalar_sample),
        args.repeats,
        lambda: [hilbert_encode(p, BITS) for p in scalar_sample],
    )
    ref_best, _ = measure(
        "hilbertcurve",
        len(sample),
        max(1, args.repeats // 2),
        lambda: [curve.distance_from_point(p) for p in sample],
    )
    rows.append(
        ("`hilbert_encode` (scalar)", len(scalar_sample), best, median, ref_best, len(sample))
    )

    log("decode, one call per point")
    best, median = measure(
        "ours",
        len(scalar_sample),
        args.repeats,
        lambda: [hilbert_decode(h, DIMS, BITS) for h in scalar_sample_indices],
    )
    ref_best, _ = measure(
        "hilbertcurve",
        len(sample),
        max(1, args.repeats // 2),
        lambda: [curve.point_from_distance(h) for h in sample_indices],
    )
    rows.append(
        ("`hilbert_decode` (scalar)", len(scalar_sample), best, median, ref_best, len(sample))
    )

    command = shlex.join(["python", "bench/bench_hilbert.py", *sys.argv[1:]])
    encode_best = rows[0][2]
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    out = [
        "## Hilbert mapping",
        "",
        f"{DIMS}-d points, {BITS} bits per axis, random coordinates, built as a list of tuples "
        f"before timing. Best and median of {args.repeats} runs (hilbertcurve: best of "
        f"{max(1, args.repeats // 2)}), garbage collector off while timing.",
        "",
        "| operation | points | best (points/s) | median (points/s) "
        "| hilbertcurve best (points/s) | speed-up |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, count, best, median, ref, ref_count in rows:
        ref_text = f"{fmt(ref)} ({ref_count:,} pts)" if ref else "-"
        ratio = f"{best / ref:,.0f}x" if ref else "-"
        out.append(f"| {name} | {count:,} | {fmt(best)} | {fmt(median)} | {ref_text} | {ratio} |")
    verdict = "met" if encode_best >= TARGET_ENCODE_RATE else "NOT met"
    out += [
        "",
        f"- Target of {TARGET_ENCODE_RATE:,} points/s for `hilbert_encode_batch`: **{verdict}**.",
        f"- Same indices as hilbertcurve on {len(sample):,} points (batch): **{agrees}**; "
        f"scalar calls on 2,000 points: **{scalar_agrees}**.",
        f"- `hilbert_decode_batch(hilbert_encode_batch(points))` returns the points: "
        f"**{round_trip}**.",
        f"- Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores"
        + (f", load average {load[0]:.2f} at the end" if load else "")
        + ".",
        "",
        "```",
        command,
        "```",
    ]
    print("\n".join(out))
    return 0 if agrees and round_trip and scalar_agrees else 1


if __name__ == "__main__":
    sys.exit(main())
