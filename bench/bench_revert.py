"""Revert (issue 15): undo the first change of a file with a long history, against git.

A synthetic run: ``--files`` text files of 200 lines, ``--changes`` one-line edits made
through ``Workspace`` into the run's JetStream journal (a private nats-server on the run's
store, as ``swarm-actors demo`` leaves it), round robin over the files. Then:

* ``revert``: ``swarm_actors.replay.revert`` of the first change of file 0, which undoes it
  and every later change to the file (``changes / files`` of them) and appends the
  operator's events; the time includes opening the finished run's journal (a private server
  started on its store) and reading every event of the run;
* ``load_run`` alone: opening the finished run's journal and reading it, what every
  command reading a run pays;
* reference: the same history as git commits (one per change, made with ``git fast-import``),
  and the same undo as git does it: ``git checkout FIRST^ -- file0`` and a commit.

Both end with file 0 as it was before its first change (checked: the "check" column).

Run: python bench/bench_revert.py [--changes 2000] [--files 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from _common import machine, progress, table
from swarm_actors._nats._server import NatsServer
from swarm_actors._runs import RunPaths, new_run
from swarm_actors.events import JetStreamJournal
from swarm_actors.replay import file_changes, load_run, revert
from swarm_actors.tools import JournalRecorder, Workspace

LINES = 200


def version(file: int, edit: int) -> bytes:
    """File ``file`` after its ``edit``-th edit (0: the original): line ``edit % LINES`` set."""
    lines = [f"value_{file}_{n} = {n}\n" for n in range(LINES)]
    for e in range(1, edit + 1):
        lines[e % LINES] = f"value_{file}_{e % LINES} = {e * 7}  # edit {e}\n"
    return "".join(lines).encode()


async def make_run(data: Path, files: int, changes: int) -> tuple[RunPaths, int]:
    """The synthetic run; the journal sequence of file 0's first change."""
    run = new_run(data)
    run.workspace.mkdir()
    for f in range(files):
        (run.workspace / f"f{f}.py").write_bytes(version(f, 0))
    async with NatsServer(store_dir=run.journal) as server:
        journal = await JetStreamJournal.connect(server.client_options())
        try:
            recorder = JournalRecorder(journal, role="coder", agent_id="/coder", run_id=run.run_id)
            with Workspace(run.workspace, recorder=recorder, durable=False) as ws:
                for n in range(changes):
                    f = n % files
                    await ws.write(f"f{f}.py", version(f, n // files + 1))
            await journal.flush()
            entries = [e async for e in journal.read()]
        finally:
            await journal.close()
    first = next(r.sequence for r in file_changes([(e.sequence, e.event) for e in entries]))
    return run, first


def make_git(root: Path, files: int, changes: int) -> str:
    """The same history as git commits; the id of file 0's first change's commit."""
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    stream = []
    mark = 0

    def commit(message: str, blobs: dict[str, bytes]) -> None:
        nonlocal mark
        mark += 1
        stream.append(f"commit refs/heads/main\nmark :{mark}\n".encode())
        stream.append(b"committer b <b@b> 0 +0000\n")
        stream.append(f"data {len(message)}\n{message}\n".encode())
        if mark > 1:
            stream.append(f"from :{mark - 1}\n".encode())
        for name, content in blobs.items():
            stream.append(f"M 100644 inline {name}\ndata {len(content)}\n".encode())
            stream.append(content + b"\n")

    commit("start", {f"f{f}.py": version(f, 0) for f in range(files)})
    for n in range(changes):
        f = n % files
        commit(f"change {n}", {f"f{f}.py": version(f, n // files + 1)})
    subprocess.run(
        ["git", "-C", str(root), "fast-import", "--quiet"], input=b"".join(stream), check=True
    )
    subprocess.run(["git", "-C", str(root), "checkout", "-q", "main"], check=True)
    return subprocess.run(
        ["git", "-C", str(root), "rev-parse", "main~" + str(changes - 1)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def git_undo(root: Path, first: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        ["git", "-C", str(root), "checkout", "-q", f"{first}^", "--", "f0.py"], check=True
    )
    subprocess.run(
        ["git", "-C", str(root), "commit", "-q", "--no-verify", "-m", "undo f0.py"], check=True
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=2000)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    want = hashlib.sha256(version(0, 0)).hexdigest()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        progress(f"making a run of {args.changes} changes over {args.files} files")
        run, first = asyncio.run(make_run(base / "data", args.files, args.changes))
        progress("making the same history in git (fast-import)")
        commit = make_git(base / "git", args.files, args.changes)
        best_revert, best_git, best_load = float("inf"), float("inf"), float("inf")
        ok_revert = ok_git = True
        for r in range(args.repeats):
            progress(f"round {r + 1}")
            copy = RunPaths(run.run_id, base / f"copy{r}" / "runs" / run.run_id)
            shutil.copytree(run.root, copy.root)
            started = time.perf_counter()
            asyncio.run(load_run(copy))
            best_load = min(best_load, time.perf_counter() - started)
            started = time.perf_counter()
            result = asyncio.run(revert(first, run=copy))
            best_revert = min(best_revert, time.perf_counter() - started)
            ok_revert &= hashlib.sha256((copy.workspace / "f0.py").read_bytes()).hexdigest() == want
            undone = len(result.undone)
            repo = base / f"git{r}"
            shutil.copytree(base / "git", repo)
            best_git = min(best_git, git_undo(repo, commit))
            ok_git &= hashlib.sha256((repo / "f0.py").read_bytes()).hexdigest() == want
    rows.append(
        [
            f"`replay.revert` (journal of {args.changes} changes)",
            undone,
            f"{best_revert * 1000:.0f} ms",
            "ok" if ok_revert else "WRONG",
        ]
    )
    rows.append(
        [
            "of which: opening the finished run and reading it (`replay.load_run`)",
            "",
            f"{best_load * 1000:.0f} ms",
            "",
        ]
    )
    rows.append(
        [
            "git checkout FIRST^ -- f0.py + commit",
            undone,
            f"{best_git * 1000:.0f} ms",
            "ok" if ok_git else "WRONG",
        ]
    )
    print(f"## Revert (issue 15): `python bench/bench_revert.py --changes {args.changes}`\n")
    print(machine() + "\n")
    print(table(["undo file 0 from its first change", "changes undone", "best", "check"], rows))
    print(f"\nratio revert / git: {best_revert / best_git:.1f}x")


if __name__ == "__main__":
    main()
