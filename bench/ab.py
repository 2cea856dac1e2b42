"""Before and after, side by side: one benchmark run alternately from two source trees.

These machines are noisy (two cores, other work running), so a figure measured an hour earlier
says little. This runner takes two checkouts of the project (``--before`` and ``--after``: any
directory with ``python/swarm_actors`` and ``bench/``, e.g. a ``git worktree`` of an older
commit with its built extension copied in) and runs the same benchmark from each, alternating
``before, after, before, after, ...``, so both sides see the same conditions. Each side runs
its *own* copy of the benchmark script against its *own* package (``PYTHONPATH``), so an API
that changed between the two is measured through each tree's own spelling.

Every Markdown table row the benchmark prints is collected by its first cell; the summary
shows, for each row and column, the value of every round, before and after, next to each other.

Run: python bench/ab.py --before DIR --after DIR --bench actors [--rounds 3] [-- ARGS...]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from _common import progress

SCRIPTS = {
    "actors": "bench_actors.py",
    "virtual": "bench_virtual.py",
    "transport": "bench_transport.py",
    "nats": "bench_nats.py",
    "telemetry": "bench_telemetry.py",
}


def run_once(tree: Path, script: str, args: list[str]) -> str:
    """Run ``tree``'s copy of ``script`` against ``tree``'s package; its Markdown report."""
    env = dict(os.environ, PYTHONPATH=str(tree / "python"))
    done = subprocess.run(
        [sys.executable, str(tree / "bench" / script), *args],
        cwd=tree,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if done.returncode:
        sys.exit(f"{tree / 'bench' / script} failed with exit code {done.returncode}")
    return done.stdout


def table_rows(report: str) -> dict[str, dict[str, str]]:
    """Every table row of a Markdown report: first cell -> {column header: cell}."""
    rows: dict[str, dict[str, str]] = {}
    headers: list[str] = []
    for line in report.splitlines():
        if not line.startswith("|"):
            headers = []
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not headers:
            headers = cells
        elif not all(set(c) <= {"-", ":"} for c in cells):
            rows[cells[0]] = dict(zip(headers[1:], cells[1:], strict=False))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, required=True)
    parser.add_argument("--bench", choices=sorted(SCRIPTS), required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("args", nargs="*", help="arguments for the benchmark (after --)")
    ns = parser.parse_args()
    sides = {"before": ns.before.resolve(), "after": ns.after.resolve()}
    seen: dict[str, dict[str, dict[str, list[str]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    for round_ in range(ns.rounds):
        for side, tree in sides.items():
            progress(f"round {round_ + 1}/{ns.rounds}: {side} ({tree})")
            for row, cells in table_rows(run_once(tree, SCRIPTS[ns.bench], ns.args)).items():
                for column, value in cells.items():
                    seen[row][column][side].append(value)
    print(f"## {ns.bench}: before and after, alternating, {ns.rounds} rounds\n")
    print(
        f"`python bench/ab.py --before {ns.before} --after {ns.after} --bench {ns.bench} "
        f"--rounds {ns.rounds}{' -- ' + ' '.join(ns.args) if ns.args else ''}`\n"
    )
    print("| row | column | before (each round) | after (each round) |")
    print("|---|---|---|---|")
    for row, columns in seen.items():
        for column, by_side in columns.items():
            before = " · ".join(by_side.get("before", [])) or "—"
            after = " · ".join(by_side.get("after", [])) or "—"
            if before != after:
                print(f"| {row} | {column} | {before} | {after} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
