"""Time travel (issue 15): checkout at the 10,000th change against git, verify, journal size.

A synthetic run is written as a real run directory (a JetStream store behind a private
nats-server, a blob store): a starting snapshot of ``--files`` text files of 200 lines, then
``--changes`` workspace changes, each rewriting 1-3 lines of one file (``FileChange`` events
with their inline diff, sealed into the coder's hash chain, exactly as ``Workspace`` records
them). The same history is made a git repository (one commit per change, ``git
fast-import``). Side by side, in one run:

* checkout of the workspace right after the last change: ``replay checkout`` from the start
  of the journal (read every event, fold every change), from a stored snapshot (read the
  journal from the snapshot on, fold the tail: ``checkout_run``), the fold alone (events in
  memory), against ``git checkout`` of the same commit (from the first one) in the repository;
* verify of a ``--verify-events`` journal (in memory, decoded): every event a state change
  (the worst case), and the demo's mix (one in eight a state change); ``verify_chain`` as on
  main (canonical bytes through the generic ``encode_proto``) against now
  (``_tuplecore.state_change_bytes``), and ``verify_run`` (chains, numbering, runs);
* the journal's bytes per change (the event as stored, and the JetStream store on disk)
  against the bytes the change changed (lines removed and added).

Every checkout is compared with git's tree, byte for byte (the "check" column).

Run: python bench/bench_replay.py [--changes 10000] [--files 50] [--verify-events 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import msgspec

from _common import fmt_rate, machine, progress, table
from swarm_actors._events._protomap import encode_proto
from swarm_actors._runs import RunPaths
from swarm_actors.events import (
    BlobStore,
    ChangeForm,
    JetStreamJournal,
    MemoryJournal,
    SignalKind,
    StateChange,
    SwarmEvent,
    SystemSignal,
    encode_event,
    new_event,
    verify_chain,
)
from swarm_actors.replay import (
    RunReplay,
    checkout_run,
    load_run,
    store_snapshots,
    verify_run,
)
from swarm_actors.testing import NatsServer
from swarm_actors.tools import (
    FILE_CHANGE_TYPE,
    FILE_SYSTEM,
    FileChange,
    JournalRecorder,
    snapshot_change,
    store_snapshot,
    take_snapshot,
)
from swarm_actors.tools._diff import unified_diff
from swarm_actors.tools._record import encode_file_change

RUN_ID = "bench-replay"


def _line(rng: random.Random) -> str:
    return "    value = " + "".join(rng.choice("abcdefghij") for _ in range(28)) + "\n"


def make_history(
    root: Path, blobs: BlobStore, files: int, changes: int, seed: int = 1
) -> tuple[list[SwarmEvent], list[dict[str, bytes]], int]:
    """The run's events, the workspace after each change (sparse: start and end), changed bytes."""
    rng = random.Random(seed)
    texts = {f"pkg/mod_{i:03d}.py": [_line(rng) for _ in range(200)] for i in range(files)}
    root.mkdir(parents=True)
    for name, lines in texts.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("".join(lines))
    journal = MemoryJournal(max_events=changes + 10)
    swarm = JournalRecorder(journal, role="swarm", agent_id="/swarm", run_id=RUN_ID)
    events = [swarm.record(snapshot_change(store_snapshot(take_snapshot(root, blobs), blobs)))]
    coder = JournalRecorder(journal, role="coder", agent_id="/coder-1", run_id=RUN_ID)
    states = [{k: "".join(v).encode() for k, v in texts.items()}]
    changed = 0
    names = sorted(texts)
    for _ in range(changes):
        name = rng.choice(names)
        old = texts[name]
        new = list(old)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(new))
            changed += len(new[at])
            new[at] = _line(rng)
            changed += len(new[at])
        before, after = "".join(old).encode(), "".join(new).encode()
        change = FileChange(
            op="write",
            path=name,
            before_sha256=hashlib.sha256(before).hexdigest(),
            after_sha256=hashlib.sha256(after).hexdigest(),
            before_size=len(before),
            after_size=len(after),
            diff=unified_diff(old, new, name),
        )
        event = coder.record(
            StateChange(
                target_type=FILE_SYSTEM,
                target_resource=name,
                data=encode_file_change(change),
                is_reversible=True,
                form=ChangeForm.DELTA,
                content_type=FILE_CHANGE_TYPE,
            )
        )
        events.append(event)
        texts[name] = new
    states.append({k: "".join(v).encode() for k, v in texts.items()})
    return events, states, changed


async def write_store(run: RunPaths, events: list[SwarmEvent]) -> None:
    async with NatsServer(store_dir=run.journal) as server:
        journal = await JetStreamJournal.connect(server.client_options())
        try:
            for i in range(0, len(events), 512):
                await journal.append_many(events[i : i + 512])
        finally:
            await journal.close()


def git_repo(repo: Path, events: list[SwarmEvent], start: dict[str, bytes]) -> list[str]:
    """The same history as git commits (``git fast-import``); the commit ids, first to last."""
    repo.mkdir()
    git = ["git", "-c", "user.name=b", "-c", "user.email=b@b", "-C", str(repo)]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    files = dict(start)
    stream = bytearray()

    def commit(mark: int, paths: list[str]) -> None:
        stream.extend(b"commit refs/heads/main\n")
        stream.extend(f"mark :{mark}\ncommitter b <b@b> {1_700_000_000 + mark} +0000\n".encode())
        stream.extend(b"data 1\nc\n")
        for path in paths:
            data = files[path]
            stream.extend(f"M 100644 inline {path}\ndata {len(data)}\n".encode())
            stream.extend(data + b"\n")

    commit(1, sorted(files))
    from swarm_actors.replay import apply_file_change
    from swarm_actors.tools import decode_file_change

    mark = 1
    for event in events:
        payload = event.payload
        if type(payload) is StateChange and payload.content_type == FILE_CHANGE_TYPE:
            change = decode_file_change(payload.data)
            apply_file_change(files, change)
            mark += 1
            commit(mark, [change.path])
    subprocess.run([*git, "fast-import", "--quiet"], input=bytes(stream), check=True)
    marks = subprocess.run(
        [*git, "rev-list", "--reverse", "main"], check=True, capture_output=True, text=True
    ).stdout.split()
    subprocess.run([*git, "checkout", "-q", "-f", marks[0]], check=True)
    return marks


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and ".git" not in p.parts
    }


def checkout_rows(
    tmp: Path, files: int, changes: int, repeats: int
) -> tuple[list[list[object]], dict[str, object]]:
    run = RunPaths(RUN_ID, tmp / "runs" / RUN_ID)
    run.root.mkdir(parents=True)
    blobs = BlobStore(run.blobs)
    progress(f"making a run of {changes:,} changes to {files} files")
    events, states, changed = make_history(tmp / "start", blobs, files, changes)
    asyncio.run(write_store(run, events))
    progress("the same history as git commits")
    commits = git_repo(tmp / "git", events, states[0])
    end = states[-1]
    last_seq = len(events)  # journal sequences 1..N: the last one is the last change

    def timed(fn: object) -> tuple[float, object]:
        started = time.perf_counter()
        result = fn()  # type: ignore[operator]
        return time.perf_counter() - started, result

    results: dict[str, list[float]] = {
        k: [] for k in ("full", "snap", "tail", "fold", "git", "load")
    }
    checks: dict[str, bool] = {}
    replay = asyncio.run(load_run(run))
    for r in range(repeats):
        out = tmp / f"full{r}"
        took, _ = timed(lambda o=out: asyncio.run(checkout_run(run, last_seq, o, store=False)))
        results["full"].append(took)
        checks["full"] = tree(out) == end
        took, _ = timed(lambda: asyncio.run(load_run(run)))
        results["load"].append(took)
        fresh = RunReplay(replay.entries, replay.blobs, run_id=RUN_ID)
        took, files_now = timed(lambda f=fresh: f.files_at(last_seq))
        results["fold"].append(took)
        checks["fold"] = files_now == end
        subprocess.run(["git", "-C", str(tmp / "git"), "checkout", "-q", commits[0]], check=True)
        took, _ = timed(
            lambda: subprocess.run(
                ["git", "-C", str(tmp / "git"), "checkout", "-q", commits[-1]], check=True
            )
        )
        results["git"].append(took)
        checks["git"] = tree(tmp / "git") == end
    store_snapshots(replay, run)
    before_last = replay.files_at(last_seq - 1)  # the snapshot before it, then 999 changes
    for r in range(repeats):
        out = tmp / f"snap{r}"
        took, _ = timed(lambda o=out: asyncio.run(checkout_run(run, last_seq, o)))
        results["snap"].append(took)
        checks["snap"] = tree(out) == end
        out = tmp / f"tail{r}"
        took, _ = timed(lambda o=out: asyncio.run(checkout_run(run, last_seq - 1, o)))
        results["tail"].append(took)
        checks["tail"] = tree(out) == before_last
    best = {k: min(v) for k, v in results.items()}
    git = best["git"]
    rows = [
        [
            f"`checkout_run` of change {changes:,}, from the journal's start",
            f"{best['full'] * 1e3:.0f} ms",
            f"{best['full'] / git:.1f}x",
            "ok" if checks["full"] else "DIFFERS",
        ],
        [
            f"`checkout_run`, from a stored snapshot (every {1000:,}) + the tail",
            f"{best['snap'] * 1e3:.0f} ms",
            f"{best['snap'] / git:.1f}x",
            "ok" if checks["snap"] else "DIFFERS",
        ],
        [
            f"`checkout_run` of change {changes - 1:,}: a snapshot + {999:,} changes of tail",
            f"{best['tail'] * 1e3:.0f} ms",
            f"{best['tail'] / git:.1f}x",
            "ok" if checks["tail"] else "DIFFERS",
        ],
        [
            "  of which: the fold alone from the start (events in memory)",
            f"{best['fold'] * 1e3:.0f} ms",
            f"{best['fold'] / git:.1f}x",
            "ok" if checks["fold"] else "DIFFERS",
        ],
        [
            "  of which: `load_run` (a private nats-server, read every event)",
            f"{best['load'] * 1e3:.0f} ms",
            f"{best['load'] / git:.1f}x",
            "",
        ],
        [
            f"`git checkout` of commit {changes + 1:,} (from the first)",
            f"{git * 1e3:.0f} ms",
            "1.0x",
            "ok" if checks["git"] else "DIFFERS",
        ],
    ]
    sizes = sum(len(encode_event(e)) for e in events[1:])
    store = sum(p.stat().st_size for p in (run.journal).rglob("*.blk"))
    info = {"changes": changes, "event_bytes": sizes, "store_bytes": store, "changed": changed}
    return rows, info


def _chain_of(n: int, mix: int) -> list[SwarmEvent]:
    """``n`` events of 4 agents; every ``mix``-th a state change (1: all), with a 300 B diff."""
    data = encode_file_change(
        FileChange(
            op="write",
            path="pkg/mod.py",
            before_sha256="a" * 64,
            after_sha256="b" * 64,
            before_size=8000,
            after_size=8000,
            diff="--- a/pkg/mod.py\n+++ b/pkg/mod.py\n@@ -10,7 +10,7 @@\n"
            + "     value = abcdefghijabcdefghijabcdefghij\n" * 6,
        )
    )
    heads = [b""] * 4
    numbers = [0] * 4
    events = []
    for i in range(n):
        a = i % 4
        numbers[a] += 1
        if i % mix == 0:
            ev = new_event(
                StateChange(
                    target_type="actor_state",  # a file change's size, not folded by verify
                    target_resource="pkg/mod.py",
                    prev_hash=heads[a],
                    data=data,
                    is_reversible=True,
                    form=ChangeForm.DELTA,
                    content_type="application/msgpack",
                ),
                agent_role="coder",
                agent_id=f"/coder-{a}",
                sequence=numbers[a],
                run_id=RUN_ID,
            )
            heads[a] = ev.payload.hash  # type: ignore[union-attr]
        else:
            ev = new_event(
                SystemSignal(kind=SignalKind.HEALTH),
                agent_role="coder",
                agent_id=f"/coder-{a}",
                sequence=numbers[a],
                run_id=RUN_ID,
            )
        events.append(ev)
    return events


def _old_verify(events: list[SwarmEvent]) -> None:
    """``verify_chain`` as on main: the canonical bytes through the generic ``encode_proto``."""
    heads: dict[str, bytes] = {}
    for event in events:
        change = event.payload
        if type(change) is not StateChange:
            continue
        unsealed = msgspec.structs.replace(event, payload=msgspec.structs.replace(change, hash=b""))
        digest = hashlib.sha256(change.prev_hash + encode_proto(unsealed)).digest()
        if change.prev_hash != heads.get(event.agent_id, b"") or digest != change.hash:
            raise AssertionError("broken")
        heads[event.agent_id] = change.hash


def verify_rows(n: int, repeats: int) -> list[list[object]]:
    from swarm_actors.events import JournalEntry

    rows: list[list[object]] = []
    for mix, label in ((1, "every event a state change"), (8, "one in eight a state change")):
        progress(f"verify: {n:,} events, {label}")
        events = _chain_of(n, mix)
        entries = [JournalEntry(i + 1, "swarm.events.coder.x", e, 0) for i, e in enumerate(events)]
        replay = RunReplay(entries, None, run_id=RUN_ID)

        # The three take turns, so that a busy moment of the machine hits each alike.
        work = {
            "old": lambda e=events: _old_verify(e),
            "new": lambda e=events: verify_chain(e),
            "full": lambda r=replay: verify_run(r),
        }
        best = dict.fromkeys(work, 0.0)
        for _ in range(repeats):
            for name, fn in work.items():
                started = time.perf_counter()
                fn()
                best[name] = max(best[name], n / (time.perf_counter() - started))
        old, new, full = best["old"], best["new"], best["full"]
        assert verify_run(replay).ok
        rows += [
            [f"`verify_chain` as on main ({label})", fmt_rate(old), "1.0x"],
            [f"`verify_chain` now ({label})", fmt_rate(new), f"{new / old:.2f}x"],
            [
                f"`verify_run` (chains, numbering, runs; {label})",
                fmt_rate(full),
                f"{full / old:.2f}x",
            ],
        ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=10_000)
    parser.add_argument("--files", type=int, default=50)
    parser.add_argument("--verify-events", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-replay-"))
    try:
        checkout, info = checkout_rows(tmp, args.files, args.changes, args.repeats)
        verify = verify_rows(args.verify_events, args.repeats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    changes = info["changes"]
    per_event = info["event_bytes"] / changes
    per_store = info["store_bytes"] / (changes + 1)
    per_changed = info["changed"] / changes
    print(f"## Replay (issue 15): `python bench/bench_replay.py --changes {args.changes}`\n")
    print(machine() + "\n")
    print(table(["checkout", "time", "vs git", "check"], checkout) + "\n")
    print(table(["verify", "events/s", "vs main"], verify) + "\n")
    print(
        table(
            ["journal bytes per change", "bytes", "per changed byte"],
            [
                ["changed bytes (lines removed + added)", f"{per_changed:.0f}", "1.0x"],
                [
                    "the event as stored (msgpack)",
                    f"{per_event:.0f}",
                    f"{per_event / per_changed:.1f}x",
                ],
                [
                    "the JetStream store on disk",
                    f"{per_store:.0f}",
                    f"{per_store / per_changed:.1f}x",
                ],
            ],
        )
    )


if __name__ == "__main__":
    main()
