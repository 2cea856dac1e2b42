"""``swarm-actors demo [PATH]``: the role swarm on the shipped sample or on the user's project.

The run gets a directory of its own (``swarm_actors._runs``) and its workspace there:

* no ``PATH``: a copy of the sample project shipped in the package (``swarm_actors/_sample``);
* ``PATH`` in a git repository: a worktree of the repository's ``HEAD`` on a new branch
  ``swarm/<run_id>`` (``git worktree add`` writes only ``.git/worktrees/...`` and the branch's
  ref: the user's branch, ``HEAD``, index and files stay as they are);
* any other ``PATH``: a copy (without ``.git``, virtualenvs and caches).

The swarm edits the workspace; at the end the approved changes (what is left after every
rejected change was reverted) are a patch, ``approved.patch`` in the run's directory, and for a
worktree also a commit on the run's branch.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import importlib.util
import json
import os
import shlex
import shutil
import sys
import time
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from swarm_actors._cli._view import SummaryView, make_display
from swarm_actors._exceptions import BrainConfigError, GitError, InvalidArgumentError
from swarm_actors._runs import RunPaths, new_run, resolve_data_dir
from swarm_actors.tools import SNAPSHOT_SKIP

if TYPE_CHECKING:
    from swarm_actors.brains import Brain

__all__ = [
    "SKIP",
    "Source",
    "copy_tree",
    "diff_trees",
    "make_brain",
    "parse_test_cmd",
    "run_demo",
    "sample_project",
]

SKIP = SNAPSHOT_SKIP
"""Names never copied into a workspace (version control, virtualenvs, caches): the names a
workspace snapshot leaves out too (``swarm_actors.tools.SNAPSHOT_SKIP``)."""

_MAX_DIFF_BYTES = 2 * 1024 * 1024  # a file bigger than this is reported, not diffed


@dataclass(frozen=True)
class Source:
    """Where the workspace came from."""

    kind: str
    """``"sample"``, ``"copy"`` or ``"worktree"``."""
    origin: Path | None = None
    """The user's ``PATH`` (``None`` for the sample)."""
    repository: Path | None = None
    """For a worktree: the top of the user's repository."""
    branch: str | None = None
    """For a worktree: the run's branch."""
    base: str | None = None
    """For a worktree: the commit it started from (the user's ``HEAD``)."""
    subdir: str = ""
    """For a worktree of a repository whose ``PATH`` is below its top: that path, relative."""


def sample_project() -> Traversable:
    """The sample project shipped in the package (a directory of package data)."""
    return resources.files("swarm_actors").joinpath("_sample")


def copy_tree(src: Traversable | Path, dest: Path) -> int:
    """Copy ``src`` into the new directory ``dest`` without ``SKIP`` names; files copied.

    Symlinks are not followed (a link is skipped: a workspace holds only its own files).
    """
    dest.mkdir(parents=True, exist_ok=False)
    count = 0
    for entry in sorted(src.iterdir(), key=lambda e: e.name):
        if entry.name in SKIP or entry.name.endswith((".pyc", ".pyo")):
            continue
        if isinstance(entry, Path) and entry.is_symlink():
            continue
        if entry.is_dir():
            count += copy_tree(entry, dest / entry.name)
        elif entry.is_file():
            target = dest / entry.name
            if isinstance(entry, Path):
                shutil.copy2(entry, target)
            else:
                target.write_bytes(entry.read_bytes())
            count += 1
    return count


def _files(root: Traversable | Path, prefix: str = "") -> dict[str, Traversable | Path]:
    found: dict[str, Traversable | Path] = {}
    if not root.is_dir():
        return found
    for entry in root.iterdir():
        if entry.name in SKIP or entry.name.endswith((".pyc", ".pyo")):
            continue
        if isinstance(entry, Path) and entry.is_symlink():
            continue
        name = f"{prefix}{entry.name}"
        if entry.is_dir():
            found.update(_files(entry, name + "/"))
        elif entry.is_file():
            found[name] = entry
    return found


def diff_trees(before: Traversable | Path, after: Path) -> str:
    """A unified diff (``a/``, ``b/`` paths, ``git apply`` and ``patch -p1`` read it)."""
    old, new = _files(before), _files(after)
    parts: list[str] = []
    for name in sorted(old.keys() | new.keys()):
        a = old[name].read_bytes() if name in old else b""
        b = new[name].read_bytes() if name in new else b""
        if a == b:
            continue
        header = f"diff --git a/{name} b/{name}\n"
        if len(a) > _MAX_DIFF_BYTES or len(b) > _MAX_DIFF_BYTES or b"\0" in a + b:
            parts.append(f"{header}Binary files a/{name} and b/{name} differ\n")
            continue
        lines = difflib.unified_diff(
            a.decode("utf-8", "surrogateescape").splitlines(keepends=True),
            b.decode("utf-8", "surrogateescape").splitlines(keepends=True),
            f"a/{name}" if name in old else "/dev/null",
            f"b/{name}" if name in new else "/dev/null",
        )
        body = "".join(
            line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
            for line in lines
        )
        parts.append(header + body)
    return "".join(parts)


def is_python_project(path: Path) -> bool:
    """Whether ``path`` holds Python code: a ``.py`` file outside ``SKIP`` directories."""
    stack = [path]
    while stack:
        here = stack.pop()
        try:
            entries = list(os.scandir(here))
        except OSError:
            continue
        for entry in entries:
            if entry.name in SKIP:
                continue
            if entry.is_file(follow_symlinks=False) and entry.name.endswith(".py"):
                return True
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
    return False


def parse_test_cmd(text: str | None, project: Path | None = None) -> list[str] | None:
    """``--test-cmd`` as arguments, checked: its program must exist. ``None`` if not given."""
    if text is None:
        return None
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise InvalidArgumentError(
            f"bad --test-cmd {text!r}: {exc} (quote it like a shell would)"
        ) from None
    if not argv:
        raise InvalidArgumentError(
            "bad --test-cmd '': give a command, e.g. --test-cmd 'python -m pytest -q'"
        )
    program = argv[0]
    if os.sep in program or (os.altsep and os.altsep in program):
        candidates = (
            [Path(program)]
            if Path(program).is_absolute()
            else [p / program for p in (project, Path.cwd()) if p is not None]
        )
        if not any(c.is_file() and os.access(c, os.X_OK) for c in candidates):
            raise InvalidArgumentError(f"bad --test-cmd: {program!r} is not an executable file")
    elif shutil.which(program) is None:
        raise InvalidArgumentError(
            f"bad --test-cmd: {program!r} is not a command on PATH (try "
            f"'{sys.executable} -m pytest -q')"
        )
    return argv


def make_brain(args: argparse.Namespace) -> Brain | None:
    """The brain ``--brain`` asks for: ``None`` for the swarm's deterministic default.

    (``swarm_actors.swarm.default_brain()``: rules over what ruff and the tests report.)
    """
    if args.brain == "deterministic":
        if args.model or args.base_url:
            raise InvalidArgumentError("--model and --base-url go with --brain openai")
        return None
    try:
        from swarm_actors.brains import OpenAIBrain
    except ImportError as exc:  # httpx, tenacity, aiolimiter: the brains extra
        raise InvalidArgumentError(
            f"--brain openai needs the brains extra ({exc.name} is missing): "
            "pip install 'swarm-actors[brains]'"
        ) from None
    try:
        return OpenAIBrain(model=args.model, base_url=args.base_url)
    except BrainConfigError as exc:
        raise InvalidArgumentError(f"--brain openai: {exc}") from None


async def _git(cwd: Path, *args: str, ok: tuple[int, ...] = (0,)) -> str:
    from swarm_actors.tools import git_command

    return (await git_command(cwd, *args, ok_codes=ok))[1]


async def _repository_top(path: Path) -> Path | None:
    from swarm_actors.tools import is_repository

    if shutil.which("git") is None or not await is_repository(path):
        return None
    return Path((await _git(path, "rev-parse", "--show-toplevel")).strip())


async def prepare_workspace(path: Path | None, run: RunPaths) -> tuple[Source, Path]:
    """Make the run's workspace; what it came from and the directory the swarm works in."""
    if path is None:
        copy_tree(sample_project(), run.workspace)
        return Source("sample"), run.workspace
    top = await _repository_top(path)
    if top is None:
        copy_tree(path, run.workspace)
        return Source("copy", origin=path), run.workspace
    head = (await _git(top, "rev-parse", "--verify", "HEAD^{commit}", ok=(0, 128))).strip()
    if not head:
        copy_tree(path, run.workspace)  # a repository with no commit yet: nothing to branch
        return Source("copy", origin=path), run.workspace
    branch = f"swarm/{run.run_id}"
    await _git(top, "worktree", "add", "--quiet", "-b", branch, str(run.workspace), head)
    real, real_top = await asyncio.to_thread(lambda: (path.resolve(), top.resolve()))
    sub = real.relative_to(real_top).as_posix()
    sub = "" if sub == "." else sub
    source = Source("worktree", origin=path, repository=top, branch=branch, base=head, subdir=sub)
    return source, run.workspace / sub if sub else run.workspace


async def _dirty(top: Path, sub: str) -> bool:
    out = await _git(top, "--no-optional-locks", "status", "--porcelain", "--", sub or ".")
    return bool(out.strip())


async def take_changes(
    source: Source, run: RunPaths, workspace: Path
) -> tuple[Path | None, str | None]:
    """Write ``approved.patch`` (and, for a worktree, commit on the run's branch).

    The workspace holds exactly the approved changes at the end (rejected ones were
    reverted). Returns the patch (``None`` when nothing changed) and the branch (``None``
    unless the run's branch holds the changes).
    """
    if source.kind != "worktree":
        before = sample_project() if source.origin is None else source.origin
        patch = diff_trees(before, workspace)
        if not patch:
            return None, None
        run.patch.write_text(patch, encoding="utf-8", errors="surrogateescape")
        return run.patch, None
    from swarm_actors.tools import git_command

    assert source.base is not None
    assert source.branch is not None
    # Caches the checks left behind are not changes (whatever the repository ignores).
    skip = [f":(exclude,glob)**/{name}/**" for name in sorted(SKIP)]
    skip.append(":(exclude,glob)**/*.py[co]")
    await _git(run.workspace, "add", "--all", "--", ".", *skip)
    staged, _ = await git_command(run.workspace, "diff", "--cached", "--quiet", ok_codes=(0, 1))
    if staged:
        message = f"swarm run {run.run_id}: the approved changes"
        await _git(run.workspace, "commit", "--quiet", "--no-verify", "-m", message)
    patch = await _git(
        run.workspace, "diff", "--no-ext-diff", "--no-textconv", "--binary", source.base, "HEAD"
    )
    if not patch:
        return None, None
    run.patch.write_text(patch, encoding="utf-8", errors="surrogateescape")
    return run.patch, source.branch


def _take_lines(source: Source, run: RunPaths, patch: Path | None, branch: str | None) -> list[str]:
    if patch is None:
        return ["no change was approved: there is nothing to take"]
    if source.kind == "sample":
        return [
            f"the fixed sample: {run.workspace}",
            f"its approved changes: {patch}",
        ]
    lines = []
    if branch is not None and source.repository is not None:
        lines.append(
            f"take the approved changes: git -C {shlex.quote(str(source.repository))} merge "
            f"{branch}   (the run's branch)"
        )
    where = source.repository if source.repository is not None else source.origin
    lines.append(
        f"{'or apply' if branch else 'take the approved changes:'} the patch: "
        f"git -C {shlex.quote(str(where))} apply {shlex.quote(str(patch))}"
    )
    if source.kind == "worktree":
        lines.append(
            f"the run's worktree is {run.workspace} "
            f"(git -C {shlex.quote(str(source.repository))} worktree remove "
            f"{shlex.quote(str(run.workspace))} when you are done with it)"
        )
    return lines


def _next_steps(run: RunPaths, data_dir: Path, default_data: Path) -> list[str]:
    extra = "" if data_dir == default_data else f" --data-dir {shlex.quote(str(data_dir))}"
    rid = run.run_id
    return [
        f"swarm-actors replay list --run {rid}{extra}     # the run's events, in order",
        f"swarm-actors replay verify --run {rid}{extra}   # check every hash chain",
        f"swarm-actors dashboard --run {rid}{extra}       # view it in the browser",
    ]


def _rows(summary: Any) -> list[tuple[str, str]]:
    s = summary
    tests = f"{s.tests_before} passing -> {s.tests_after} passing"
    if s.tests_failing_after:
        tests += f", {s.tests_failing_after} failing"
    extra = [("stopped by", s.stopped_by)] if s.stopped_by else []
    extra += [("error", str(e)[:200]) for e in s.errors[:5]]
    return [
        ("items", str(s.items)),
        ("approved", str(s.approved)),
        ("rejected", str(s.rejected)),
        ("reverted", str(s.reverted)),
        ("escalated", str(s.escalated)),
        ("tests", tests),
        ("findings", f"{s.findings_before} -> {s.findings_after}"),
        ("events", str(s.events)),
        ("wall time", f"{s.seconds:.1f} s"),
        ("remembered", f"{s.remembered} new verdicts"),
        *extra,
    ]


def _without_pytest(detected: list[str], workspace: Path) -> list[str] | None:
    """The test command to give the swarm: ``None`` (it detects one) unless that is pytest.

    ...and pytest is not installed here: then unittest, which every Python has (the sample's
    tests are ``TestCase`` classes that both run).
    """
    if detected[1:3] != ["-m", "pytest"] or importlib.util.find_spec("pytest") is not None:
        return None
    print("note: pytest is not installed here; the tests run with unittest", file=sys.stderr)
    start = "tests" if (workspace / "tests").is_dir() else "."
    return [sys.executable, "-m", "unittest", "discover", "-s", start, "-t", "."]


def _check_path(raw: str) -> Path:
    path = Path(raw).expanduser()
    if not path.exists():
        raise InvalidArgumentError(f"no such directory: {raw} (give the root of a Python project)")
    if not path.is_dir():
        raise InvalidArgumentError(f"{raw} is not a directory (give the root of a Python project)")
    if not is_python_project(path):
        raise InvalidArgumentError(f"{raw} is not a Python project: it holds no .py file")
    return path.absolute()


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo; the process's exit status (0 only when the tests pass at the end)."""
    from swarm_actors import swarm

    path = None if args.path is None else _check_path(args.path)
    test_cmd = parse_test_cmd(args.test_cmd, path)
    brain = make_brain(args)
    if args.coders < 1:
        raise InvalidArgumentError(f"--coders must be >= 1, got {args.coders}")
    data_dir = resolve_data_dir(args.data_dir)
    try:
        run = new_run(data_dir, args.run)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"--run: {exc}") from None
    except OSError as exc:
        raise InvalidArgumentError(
            f"cannot make the run's directory under {data_dir}: {exc}"
        ) from None
    try:
        source, workspace = asyncio.run(prepare_workspace(path, run))
    except GitError as exc:
        raise InvalidArgumentError(
            f"cannot make a worktree of {path}: {exc} {exc.stderr.strip()}"
        ) from None
    if source.repository is not None and asyncio.run(_dirty(source.repository, source.subdir)):
        print(
            f"note: {path} has uncommitted changes; the run starts from the last commit "
            f"({(source.base or '')[:12]}) without them",
            file=sys.stderr,
        )
    if test_cmd is None:
        test_cmd = _without_pytest(list(swarm.detect_test_cmd(workspace)), workspace)
    memory = None
    if not args.no_memory:
        from swarm_actors._cli._memory import open_memory

        memory = open_memory(data_dir)
        if memory.embedder is None:
            print(
                "note: memory searches without embeddings (BM25 and exact keys only); "
                "pip install 'swarm-actors[memory]' adds them",
                file=sys.stderr,
            )
    config = swarm.SwarmConfig(
        workspace=workspace,
        run_dir=run.root,
        run_id=run.run_id,
        coders=args.coders,
        brain=brain,
        test_cmd=test_cmd,
        nats=args.nats,
        journal_dir=run.journal,
        memory=memory,
    )
    what = "the sample project" if path is None else str(path)
    display = make_display(
        quiet=args.quiet, json_out=args.json, title=f"swarm run {run.run_id} on {what}"
    )
    started = time.monotonic()
    with display:
        summary = asyncio.run(swarm.run_swarm(config, on_progress=display.progress))
    patch, branch = asyncio.run(take_changes(source, run, workspace))
    report = summary.to_json()
    report.update(
        run_dir=str(run.root),
        workspace=str(workspace),
        data_dir=str(data_dir),
        source=source.kind,
        origin=None if source.origin is None else str(source.origin),
        branch=branch,
        patch=None if patch is None else str(patch),
        cli_seconds=round(time.monotonic() - started, 3),
    )
    run.summary.write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report))
    else:
        default = resolve_data_dir(None)
        view = SummaryView(
            rows=_rows(summary),
            take=_take_lines(source, run, patch, branch),
            next_steps=_next_steps(run, data_dir, default),
            ok=summary.ok,
            headline=(
                f"run {run.run_id}: "
                + ("the tests pass" if summary.ok else "the tests FAIL at the end")
            ),
        )
        view.print(sys.stdout, rich_out=sys.stdout.isatty())
    return 0 if summary.ok else 1
