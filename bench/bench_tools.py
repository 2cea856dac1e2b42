"""Workspace writes: ``Workspace.write`` with events on, against plain writes, in one run.

Each round rewrites one of 64 files in a fresh directory with content that differs from the
file's previous content (so a text write has a real diff), sequentially:

* plain: ``open`` a temporary file, ``write``, ``os.replace`` over the target (no fsync): the
  baseline the issue names;
* ``Workspace(durable=False).write``, events off (no recorder): the same without fsync, plus
  the confined path walk, the old content read and hashed, the diff, and the hop to a worker
  thread;
* the same with events on: plus the ``StateChange`` sealed (SHA-256 chain) into a
  ``MemoryJournal``, binary or large contents put into an in-memory ``BlobStore``;
* the same called directly (no thread hop), to show what the hop costs;
* plain + fsync: plain, plus ``fsync`` of the file and of the directory: the durability of a
  default (``durable=True``) ``Workspace`` write, without the rest;
* ``Workspace.write`` (durable), events on: the default workspace.

The fsync rows measure this machine's disk (shared, noisy); the others measure the code.

Sizes: 1 KiB of text (diff inline), 256 KiB of text (over the 64 KiB inline limit: both sides
go to the blob store), 64 KiB binary (blobs). Every rate is the best of ``--repeats`` runs,
the variants taking turns;
the last content written is read back and compared (the "check" column).

Run: python bench/bench_tools.py [--writes 400] [--repeats 5] [--dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _common import fmt_rate, machine, progress, table
from swarm_actors.events import BlobStore, MemoryJournal
from swarm_actors.tools import Workspace

FILES = 64


def contents(kind: str, writes: int) -> list[bytes]:
    """``writes`` distinct contents of one kind; consecutive ones differ in one line."""
    if kind == "binary 64 KiB":
        base = bytes(range(256)) * 256
        return [i.to_bytes(4, "big") + base[4:] for i in range(writes)]
    size = 1024 if kind == "text 1 KiB" else 256 * 1024
    line = "x = 'some python-looking text for the diff'\n"
    body = (line * (size // len(line) + 1))[: size - 32]
    return [f"# version {i}\n{body}".encode() for i in range(writes)]


def plain(directory: Path, data: list[bytes], durable: bool) -> float:
    started = time.perf_counter()
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY) if durable else -1
    for i, content in enumerate(data):
        target = directory / f"f{i % FILES}"
        temp = directory / f".f{i % FILES}.tmp"
        with open(temp, "wb") as f:
            f.write(content)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(temp, target)
        if durable:
            os.fsync(dir_fd)
    if durable:
        os.close(dir_fd)
    return time.perf_counter() - started


def workspace(
    directory: Path, data: list[bytes], *, events: bool, durable: bool, thread: bool = True
) -> float:
    journal = MemoryJournal() if events else None
    blobs = BlobStore() if events else None
    ws = Workspace(directory, journal=journal, blobs=blobs, durable=durable)

    async def run() -> float:
        started = time.perf_counter()
        for i, content in enumerate(data):
            await ws.write(f"f{i % FILES}", content)
        return time.perf_counter() - started

    def direct() -> float:
        assert ws.recorder is not None
        started = time.perf_counter()
        for i, content in enumerate(data):
            plan = ws._write(f"f{i % FILES}", content, True)
            ws._record_plan(plan)
        return time.perf_counter() - started

    try:
        took = asyncio.run(run()) if thread else direct()
        if journal is not None:
            assert len(journal.entries()) == len(data)
        return took
    finally:
        ws.close()


def measure(
    variants: list[tuple[str, Callable[[Path, list[bytes]], float]]],
    data: list[bytes],
    repeats: int,
    where: str,
) -> list[tuple[str, float, bool]]:
    """Each variant's best rate; the variants take turns, so a busy moment hits them all."""
    best = dict.fromkeys((name for name, _ in variants), float("inf"))
    ok = dict.fromkeys(best, True)
    for _ in range(repeats):
        for name, fn in variants:
            with tempfile.TemporaryDirectory(prefix="bench-tools-", dir=where) as tmp:
                directory = Path(tmp)
                best[name] = min(best[name], fn(directory, data))
                last = len(data) - 1
                ok[name] = ok[name] and (directory / f"f{last % FILES}").read_bytes() == data[last]
    for name in best:
        progress(f"  {name}: {len(data) / best[name]:,.0f} writes/s")
    return [(name, len(data) / best[name], ok[name]) for name in best]


def fs_type(path: str) -> str:
    """The file system type of ``path`` (from /proc/mounts), for the report."""
    best, kind = "", "an unknown file system"
    real = os.path.realpath(path)
    try:
        with open("/proc/mounts") as mounts:
            for line in mounts:
                fields = line.split()
                point = fields[1]
                if (real == point or real.startswith(point.rstrip("/") + "/")) and len(point) > len(
                    best
                ):
                    best, kind = point, fields[2]
    except OSError:
        pass
    return kind


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", default=os.getcwd(), help="where the files are written")
    args = parser.parse_args()
    rows = []
    for kind in ("text 1 KiB", "text 256 KiB", "binary 64 KiB"):
        progress(kind)
        data = contents(kind, args.writes)
        variants: list[tuple[str, Callable[[Path, list[bytes]], float]]] = [
            ("plain open/write/rename", lambda d, c: plain(d, c, durable=False)),
            (
                "Workspace, durable=False, events off",
                lambda d, c: workspace(d, c, events=False, durable=False),
            ),
            (
                "Workspace, durable=False, events on",
                lambda d, c: workspace(d, c, events=True, durable=False),
            ),
            (
                "the same, no thread hop",
                lambda d, c: workspace(d, c, events=True, durable=False, thread=False),
            ),
            ("plain + fsync file and dir", lambda d, c: plain(d, c, durable=True)),
            (
                "Workspace (durable), events on",
                lambda d, c: workspace(d, c, events=True, durable=True),
            ),
        ]
        results = measure(variants, data, args.repeats, args.dir)
        base, durable = results[0][1], results[4][1]
        for name, rate, ok in results:
            rows.append(
                [
                    kind,
                    name,
                    fmt_rate(rate),
                    f"{rate / base:.2f}x",
                    f"{rate / durable:.2f}x",
                    f"{1e6 / rate:.0f} µs",
                    "ok" if ok else "WRONG",
                ]
            )
    print("## Tools: workspace writes with events, against plain writes\n")
    print(
        f"`python bench/bench_tools.py --writes {args.writes} --repeats {args.repeats}` "
        f"on {machine()}; files in {fs_type(args.dir)}; variants take turns, best of the "
        "repeats.\n"
    )
    headers = ["content", "writer", "writes/s", "vs plain", "vs plain+fsync", "per write", "check"]
    print(table(headers, rows))
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
