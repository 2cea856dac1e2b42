"""Memory: retrieval quality (BM25, embeddings, hybrid), latency at 100,000 entries, and what
memory saves a second run of the demo.

**Corpus.** Generated from real rules and real files, not written for this benchmark: every
pair of one of ruff's rules (``ruff rule --all``: code, name, summary, explanation) and one of
this project's own Python files is a past outcome, approved or rejected, whose text is what the
reviewer stores (``"approved: ruff's fixes of CODE in PATH"``) plus the rule's name, summary and
the first sentence of its "What it does" section. A sample of ``--entries`` pairs is the memory.

**Queries** are paraphrased tasks: the first sentence of the rule's *"Why is this bad?"*
section (ruff's authors' words, not the entry's) and the file named in words (``"in the swarm
roles module"``). Each query has one right answer: its pair's entry. A second set names the
rule code and the path (``"F401 in python/swarm_actors/swarm/_roles.py"``): what exact keys are
for. recall@5: the right entry in the top 5; MRR: the mean of 1/rank (0 past 50).

**Latency**: a store of ``--latency-entries`` entries, hybrid search (keys, BM25, embeddings,
RRF), ``k=5``, 200 paraphrased queries after a warm-up; mean and p95 of the best of 3 passes.

**Second run**: ``swarm-actors demo`` on the sample twice in one data directory (rejected
attempts and wall time), then a third run with ``--no-memory`` in the same directory as the
control (same caches, no memory).

Run: python bench/bench_memory.py [--entries 10000] [--queries 300] [--latency-entries 100000]
    [--no-demo]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, machine, progress, table
from swarm_actors.memory import APPROVED, REJECTED, MemoryEntry, MemoryStore, WordLlamaEmbedder

SEED = 20261202
METHODS = {
    "BM25 alone": ("bm25",),
    "embeddings alone": ("embedding",),
    "hybrid (keys + BM25 + embeddings, RRF)": ("keys", "bm25", "embedding"),
}


def _first_sentence(text: str) -> str:
    text = " ".join(text.split())
    match = re.match(r"(.+?[.!?])(\s|$)", text)
    return (match.group(1) if match else text)[:300]


def _section(explanation: str, title: str) -> str:
    match = re.search(rf"## {re.escape(title)}\n(.+?)(\n## |\Z)", explanation, re.S)
    return _first_sentence(match.group(1)) if match else ""


def rules() -> list[dict[str, str]]:
    """ruff's rules with both sections (the entry's words and the query's)."""
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "rule", "--all", "--output-format", "json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = []
    for rule in json.loads(out):
        does = _section(rule["explanation"], "What it does")
        bad = _section(rule["explanation"], "Why is this bad?")
        if rule["code"] and does and bad:
            found.append(
                {"code": rule["code"], "name": rule["name"], "summary": rule["summary"],
                 "does": does, "bad": bad}
            )  # fmt: skip
    return found


def files() -> list[str]:
    """This project's own Python files (package, tests, benchmarks), as relative paths."""
    return sorted(
        str(p.relative_to(ROOT))
        for base in ("python", "tests", "bench")
        for p in (ROOT / base).rglob("*.py")
        if "_sample" not in p.parts and "__pycache__" not in p.parts
    )


def in_words(path: str) -> str:
    """``python/swarm_actors/swarm/_roles.py`` -> ``"the swarm roles module"``."""
    parts = [p.strip("_").replace("_", " ") for p in Path(path).with_suffix("").parts[-2:]]
    return "the " + " ".join(p for p in parts if p and p != "init") + " module"


def entry(rule: dict[str, str], path: str, rng: random.Random) -> MemoryEntry:
    kind = APPROVED if rng.random() < 0.7 else REJECTED
    text = (
        f"{kind}: ruff's fixes of {rule['code']} ({rule['name']}) in {path}. "
        f"{rule['summary']}. {rule['does']}"
    )
    stem = Path(path).stem.strip("_") or "init"
    reason = (
        "the tests pass and the item's findings went from 1 to 0"
        if kind == APPROVED
        else f"the tests fail with this change (1 failing: tests/test_{stem}.py::Case::test_it)"
    )
    return MemoryEntry(
        kind=kind,
        text=text,
        path=path,
        rules=(rule["code"],),
        reason=reason,
        evidence=("bench-check",) if kind == APPROVED else (),
        run_id=f"bench-{rng.randrange(50)}",
    )


def corpus(
    n: int, rng: random.Random
) -> tuple[list[MemoryEntry], list[tuple[dict[str, str], str]]]:
    all_rules, all_files = rules(), files()
    pairs = [(r, f) for r in all_rules for f in all_files]
    if n > len(pairs):
        raise SystemExit(f"--entries {n}: only {len(pairs)} (rule, file) pairs exist")
    chosen = rng.sample(pairs, n)
    return [entry(r, f, rng) for r, f in chosen], chosen


def quality(store: MemoryStore, targets: list[tuple[str, str]]) -> list[list[object]]:
    rows: list[list[object]] = []
    for label, methods in METHODS.items():
        hits5 = 0
        rr = 0.0
        for query, want in targets:
            ids = [h.id for h in store.search(query, k=50, methods=methods)]
            if want in ids:
                rank = ids.index(want) + 1
                rr += 1.0 / rank
                hits5 += rank <= 5
        rows.append([label, f"{hits5 / len(targets):.3f}", f"{rr / len(targets):.3f}"])
    return rows


def build(
    directory: Path, entries: list[MemoryEntry], embedder: WordLlamaEmbedder
) -> tuple[MemoryStore, float]:
    started = time.perf_counter()
    store = MemoryStore(directory, embedder=embedder)
    store.add_many(entries)
    return store, time.perf_counter() - started


def demo(data_dir: Path, *extra: str) -> dict[str, object]:
    run = subprocess.run(
        [sys.executable, "-m", "swarm_actors._cli", "demo", "--json", "-q", "--data-dir",
         str(data_dir), *extra],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "python")},
    )  # fmt: skip
    report: dict[str, object] = json.loads(run.stdout)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--latency-entries", type=int, default=100_000)
    parser.add_argument("--no-demo", action="store_true")
    args = parser.parse_args()
    rng = random.Random(SEED)
    embedder = WordLlamaEmbedder()
    if not embedder.wait(120):
        raise SystemExit(f"wordllama did not load: {embedder.error}")
    out = ["## Memory (`bench/bench_memory.py`)", ""]
    with tempfile.TemporaryDirectory() as tmp:
        progress(f"corpus of {args.entries} entries")
        entries, chosen = corpus(args.entries, rng)
        store, took = build(Path(tmp) / "quality", entries, embedder)
        picks = rng.sample(range(len(entries)), args.queries)
        paraphrased = [
            (f"{chosen[i][0]['bad']} In {in_words(chosen[i][1])}.", entries[i].id) for i in picks
        ]
        coded = [(f"{chosen[i][0]['code']} in {chosen[i][1]}", entries[i].id) for i in picks]
        progress("quality")
        out += [
            f"{machine()}. `python bench/bench_memory.py --entries {args.entries} --queries "
            f"{args.queries} --latency-entries {args.latency_entries}`. Corpus: {args.entries} "
            f"(ruff rule, package file) outcomes; stored in {took:.1f} s.",
            "",
            f"Paraphrased queries ({args.queries}: the rule's *Why is this bad?* sentence and "
            "the file in words; no code, no path):",
            "",
            table(["method", "recall@5", "MRR"], quality(store, paraphrased)),
            "",
            f"Queries naming the rule code and the path ({args.queries}):",
            "",
            table(["method", "recall@5", "MRR"], quality(store, coded)),
            "",
        ]
        example = paraphrased[0][0]
        out += [f"Example paraphrased query: _{example}_", ""]
        progress(f"latency store of {args.latency_entries} entries")
        big, _ = corpus(args.latency_entries, random.Random(SEED + 1))
        store, took = build(Path(tmp) / "latency", big, embedder)
        queries = [q for q, _ in paraphrased][:200]
        for q in queries[:10]:
            store.search(q, k=5)
        # Best of 3 passes (the machine is shared: the best pass is the least disturbed one).
        passes = []
        for _ in range(3):
            times = []
            for q in queries:
                started = time.perf_counter()
                store.search(q, k=5)
                times.append(time.perf_counter() - started)
            times.sort()
            passes.append(times)
        times = min(passes, key=sum)
        mean = sum(times) / len(times) * 1000
        p95 = times[int(len(times) * 0.95) - 1] * 1000
        per_method = []
        for label, methods in METHODS.items():
            best = float("inf")
            for _ in range(3):
                started = time.perf_counter()
                for q in queries:
                    store.search(q, k=5, methods=methods)
                best = min(best, (time.perf_counter() - started) / len(queries) * 1000)
            per_method.append([label, f"{best:.2f}"])
        out += [
            f"Latency at {len(store):,} entries (stored in {took:.0f} s; the target is < 20 ms "
            f"a query): hybrid mean **{mean:.2f} ms**, p95 {p95:.2f} ms.",
            "",
            table(["method", "ms / query (mean)"], per_method),
            "",
        ]
    if not args.no_demo:
        with tempfile.TemporaryDirectory() as tmp:
            progress("demo run 1")
            first = demo(Path(tmp))
            progress("demo run 2")
            second = demo(Path(tmp))
            progress("demo run 3 (--no-memory)")
            control = demo(Path(tmp), "--no-memory")
        rows = [
            [name, r["rejected"], r["approved"], r["escalated"], f"{r['seconds']:.1f}"]
            for name, r in (
                ("run 1 (memory empty)", first),
                ("run 2 (memory of run 1)", second),
                ("run 3, --no-memory (control)", control),
            )
        ]
        out += [
            "Second run of `swarm-actors demo` on the sample, one data directory, deterministic "
            "brain (wall time: the swarm's `seconds`; the machine is shared and noisy):",
            "",
            table(["run", "rejected attempts", "approved", "escalated", "wall time (s)"], rows),
            "",
        ]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
