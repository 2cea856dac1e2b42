"""Run every Python benchmark in turn and collect their Markdown reports.

Each benchmark is a standalone script printing a Markdown section to stdout and progress to
stderr. This runner streams the progress, saves each report to ``bench/out/<name>.md`` and the
concatenation to ``bench/out/results.md`` (copy the figures into ``bench/RESULTS.md`` with the
command that produced them).

Run: python bench/run.py [--quick]
    [--only space,tree,hilbert,virtual,actors,telemetry,events,nats,transport,placement,sender]
    [--only space,tree,hilbert,virtual,actors,telemetry,events,nats,transport,placement,topics]
    [--only space,tree,hilbert,virtual,actors,telemetry,events,nats,transport,placement,tools]
    [--only space,tree,hilbert,virtual,actors,telemetry,events,nats,transport,placement,watch]
    [--only space,tree,hilbert,virtual,actors,telemetry,events,nats,transport,placement,pool]
    [--only space,tree,hilbert,virtual,actors,telemetry,events,nats,transport,placement,brains]
    [--only space,tree,hilbert,virtual,actors,telemetry,events,nats,transport,placement,
        concurrency]
    [--only ...,swarm,archive]
    [--only dashboard]
    [--only ...,swarm,replay]
    [--only ...,memory]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"

BENCHES: dict[str, tuple[list[str], list[str]]] = {
    # name: (full arguments, --quick arguments)
    "space": ([], ["--sizes", "1000,100000", "--budget", "0.2"]),
    "hilbert": ([], ["--points", "200000", "--repeats", "2"]),
    "tree": ([], ["--agents", "100000", "--seed-agents", "1000"]),
    "virtual": ([], ["--leaves", "100000", "--max-active", "1000", "--cycles", "20000"]),
    "actors": ([], ["--quick"]),
    "telemetry": ([], ["--tells", "200000", "--asks", "50000", "--rounds", "2"]),
    "events": ([], ["--events", "30000", "--repeats", "2"]),
    "nats": ([], ["--quick"]),
    "transport": ([], ["--quick"]),
    "placement": ([], ["--quick"]),
    "sender": ([], ["--quick"]),
    "topics": ([], ["--quick"]),
    "tools": ([], ["--writes", "100", "--repeats", "1"]),
    "watch": ([], ["--quick"]),
    "pool": ([], ["--quick"]),
    "brains": (["--nats"], ["--quick"]),
    "concurrency": ([], ["--quick"]),
    "swarm": (["--nats"], ["--items", "200", "--coders", "8", "--repeats", "1"]),
    "archive": ([], ["--events", "5000", "--rows", "100000", "--repeats", "1"]),
    "dashboard": ([], ["--events", "20000", "--live-seconds", "10"]),
    "revert": ([], ["--changes", "400", "--repeats", "1"]),
    "replay_run": ([], []),
    "replay": ([], ["--changes", "2000", "--verify-events", "20000", "--repeats", "1"]),
    "memory": ([], ["--entries", "2000", "--queries", "100", "--latency-entries", "20000"]),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated subset of: " + ", ".join(BENCHES))
    parser.add_argument("--quick", action="store_true", help="smaller sizes (smoke run)")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    OUT.mkdir(exist_ok=True)
    sections = []
    for i, name in enumerate(names, 1):
        full, quick = BENCHES[name]
        cmd = [sys.executable, str(HERE / f"bench_{name}.py"), *(quick if args.quick else full)]
        print(f"[{i}/{len(names)}] {name}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
        started = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False, cwd=HERE)
        took = time.perf_counter() - started
        if proc.returncode != 0:
            print(f"{name} failed with exit code {proc.returncode}", file=sys.stderr)
            return proc.returncode
        print(f"[{i}/{len(names)}] {name} done in {took:.0f} s", file=sys.stderr, flush=True)
        (OUT / f"{name}.md").write_text(proc.stdout)
        sections.append(proc.stdout.strip())
    report = "\n\n".join(sections) + "\n"
    (OUT / "results.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
