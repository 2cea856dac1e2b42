"""Where runs live: the data directory, run ids, and the ``latest`` pointer.

Every command that makes or reads a run (``demo`` now; ``replay``, ``dashboard``, ``archive``
later) finds it the same way: ``--data-dir DIR`` (else ``$SWARM_DATA_DIR``, else the per-user
data directory, ``platformdirs.user_data_path("swarm-actors")``: ``~/.local/share/swarm-actors``
on Linux, ``~/Library/Application Support/swarm-actors`` on macOS, ``%LOCALAPPDATA%`` on
Windows) and ``--run RUN`` (an id, a unique prefix of one, ``latest``, or a run directory's
path; default ``latest``). The layout::

    DATA/runs/<run_id>/
        workspace/      the copy (or git worktree) the swarm edits
        blobs/          the content-addressed blob store (large contents of events)
        journal/        the embedded nats-server's JetStream store (the run's journal)
        summary.json    how the run ended (written when it ends)
        approved.patch  the approved changes, when there are any
    DATA/runs/latest    the newest run: a relative symlink to its directory where the
                        platform allows one, else a file holding its id

Run ids sort by start time to the second (``20261202T114512Z-3fa9c1``: UTC, then 24 random
bits), so a listing is a history; ``latest`` is the run made last. Nothing here deletes a run.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from swarm_actors._exceptions import InvalidArgumentError, RunNotFoundError

__all__ = [
    "DATA_DIR_ENV",
    "RunPaths",
    "latest_run",
    "list_runs",
    "new_run",
    "new_run_id",
    "resolve_data_dir",
    "run_dir",
]

DATA_DIR_ENV = "SWARM_DATA_DIR"
"""The environment variable naming the data directory when ``--data-dir`` is not given."""

LATEST = "latest"
_RUN_ID = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")


@dataclass(frozen=True)
class RunPaths:
    """The paths of one run (nothing is created by reading them)."""

    run_id: str
    root: Path
    """``DATA/runs/<run_id>``."""

    @property
    def workspace(self) -> Path:
        """The directory the swarm edits."""
        return self.root / "workspace"

    @property
    def blobs(self) -> Path:
        """The run's blob store."""
        return self.root / "blobs"

    @property
    def journal(self) -> Path:
        """The embedded server's JetStream store: the run's journal."""
        return self.root / "journal"

    @property
    def summary(self) -> Path:
        """``summary.json``, written when the run ends."""
        return self.root / "summary.json"

    @property
    def patch(self) -> Path:
        """Where the approved changes go as a patch."""
        return self.root / "approved.patch"


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The data directory: ``data_dir``, else ``$SWARM_DATA_DIR``, else the per-user one.

    The result is absolute (``~`` expanded); it is not created here.
    """
    if data_dir is None or str(data_dir) == "":
        data_dir = os.environ.get(DATA_DIR_ENV) or None
    if data_dir is None:
        import platformdirs

        return platformdirs.user_data_path("swarm-actors", appauthor=False)
    return Path(data_dir).expanduser().absolute()


def new_run_id(now: float | None = None) -> str:
    """A fresh run id, time-ordered and safe in paths and NATS subjects."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{os.urandom(3).hex()}"


def _runs(data_dir: Path) -> Path:
    return data_dir / "runs"


def new_run(data_dir: str | os.PathLike[str] | None = None, run_id: str | None = None) -> RunPaths:
    """Make a new run's directory under ``DATA/runs`` and point ``latest`` at it.

    Raises ``InvalidArgumentError`` for a ``run_id`` unfit for a path or taken already.
    """
    runs = _runs(resolve_data_dir(data_dir))
    if run_id is not None and (not _RUN_ID.match(run_id) or run_id == LATEST):
        raise InvalidArgumentError(
            f"a run id is 1-128 letters, digits, '.', '_' or '-' (and not {LATEST!r}), "
            f"got {run_id!r}"
        )
    runs.mkdir(parents=True, exist_ok=True)
    while True:
        rid = run_id or new_run_id()
        try:
            (runs / rid).mkdir()
        except FileExistsError:
            if run_id is not None:
                raise InvalidArgumentError(
                    f"run {run_id!r} exists already in {runs}: pick another id"
                ) from None
            continue
        break
    _point_latest(runs, rid)
    return RunPaths(rid, runs / rid)


def _point_latest(runs: Path, run_id: str) -> None:
    """Replace ``runs/latest`` atomically: a symlink where allowed, else a file with the id."""
    tmp = runs / f".latest-{os.getpid()}-{os.urandom(3).hex()}"
    try:
        os.symlink(run_id, tmp, target_is_directory=True)
    except (OSError, NotImplementedError):
        tmp.write_text(run_id + "\n")
    try:
        os.replace(tmp, runs / LATEST)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def latest_run(data_dir: str | os.PathLike[str] | None = None) -> str | None:
    """The id of the newest run ``latest`` points at, or ``None`` when there is none."""
    pointer = _runs(resolve_data_dir(data_dir)) / LATEST
    if pointer.is_symlink():
        run_id = os.readlink(pointer)
    elif pointer.is_file():
        run_id = pointer.read_text().strip()
    else:
        return None
    run_id = Path(run_id).name
    return run_id if _RUN_ID.match(run_id) and (pointer.parent / run_id).is_dir() else None


def list_runs(data_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """The ids of the runs under ``DATA/runs``, oldest first (to the second)."""
    runs = _runs(resolve_data_dir(data_dir))
    if not runs.is_dir():
        return []
    return sorted(
        p.name
        for p in runs.iterdir()
        if p.name != LATEST and _RUN_ID.match(p.name) and p.is_dir() and not p.is_symlink()
    )


def run_dir(run: str | None = None, data_dir: str | os.PathLike[str] | None = None) -> RunPaths:
    """Find a run: ``None`` or ``"latest"``, an id, a unique prefix of an id, or a run's path.

    Raises ``RunNotFoundError`` naming what was looked for and where, and how to list the runs.
    """
    data = resolve_data_dir(data_dir)
    runs = _runs(data)
    if run is None or run == LATEST:
        found = latest_run(data)
        if found is None:
            raise RunNotFoundError(
                f"no run yet under {runs}: start one with `swarm-actors demo`, or pass "
                "--data-dir where the runs are",
                run=LATEST,
                data_dir=str(data),
            )
        return RunPaths(found, runs / found)
    if os.sep in run or (os.altsep and os.altsep in run):
        path = Path(run).expanduser().absolute()
        if path.is_dir():
            return RunPaths(path.name, path)
        raise RunNotFoundError(f"no run directory at {path}", run=run, data_dir=str(data))
    ids = list_runs(data)
    if run in ids:
        return RunPaths(run, runs / run)
    matches = [rid for rid in ids if rid.startswith(run)]
    if len(matches) == 1:
        return RunPaths(matches[0], runs / matches[0])
    if matches:
        raise RunNotFoundError(
            f"{run!r} matches {len(matches)} runs under {runs} ({', '.join(matches[:5])}"
            f"{', ...' if len(matches) > 5 else ''}): give more of the id",
            run=run,
            data_dir=str(data),
        )
    raise RunNotFoundError(
        f"no run {run!r} under {runs} ({len(ids)} runs there; the newest is "
        f"{ids[-1] if ids else 'none'}): check --data-dir and --run",
        run=run,
        data_dir=str(data),
    )
