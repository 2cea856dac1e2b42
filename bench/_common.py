"""Shared helpers for the benchmark scripts: timing, RSS, seed-kernel loading, tables."""

from __future__ import annotations

import importlib.util
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
SEED_KERNEL = ROOT.parent / "shared" / "reference" / "seed_kernel.py"


def progress(msg: str) -> None:
    """Progress goes to stderr so stdout stays a clean Markdown report."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load_seed_kernel() -> ModuleType | None:
    """The seed kernel, loaded from ``../shared/reference`` when present (never copied here)."""
    if not SEED_KERNEL.exists():
        return None
    spec = importlib.util.spec_from_file_location("seed_kernel", SEED_KERNEL)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["seed_kernel"] = module  # dataclasses resolve string annotations through it
    spec.loader.exec_module(module)
    return module


def rss_bytes() -> int:
    """Resident set size of this process."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def best_of(repeats: int, fn: Callable[[], float]) -> float:
    """Run a timing function several times; keep the best (least disturbed) result."""
    return min(fn() for _ in range(repeats))


def fmt_rate(x: float) -> str:
    if x >= 1e6:
        return f"{x / 1e6:.2f}M/s"
    if x >= 1e3:
        return f"{x / 1e3:.1f}k/s"
    return f"{x:.0f}/s"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def machine() -> str:
    return (
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} cores, {platform.machine()}"
    )


def callgrind_per_unit(argv: Callable[[int], list[str]], sizes: tuple[int, int]) -> float:
    """CPU instructions per unit of work, counted by callgrind at two sizes (the difference).

    ``argv(size)`` is the command doing ``size`` units; start-up and tear-down cancel out in the
    difference. ``PYTHONHASHSEED=0``, so the counts repeat to the instruction: the way to
    compare two trees on a machine whose speed swings (valgrind must be installed).
    """
    counts = []
    for size in sizes:
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv(size)],
            env=dict(os.environ, PYTHONHASHSEED="0"),
            capture_output=True,
            text=True,
            check=True,
        )
        found = re.search(r"Collected : (\d+)", done.stderr)
        if found is None:
            raise SystemExit(f"no callgrind total in valgrind's output:\n{done.stderr[-2000:]}")
        counts.append(int(found.group(1)))
    return (counts[1] - counts[0]) / (sizes[1] - sizes[0])
