"""swarm_actors.tools.GitRun: the run's own branch and worktree; the user's checkout untouched."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from swarm_actors.errors import GitError, InvalidArgumentError
from swarm_actors.events import MemoryJournal
from swarm_actors.tools import GitRun, GitStatus, Workspace, git_command, is_repository

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed"),
]

CLEAN = {
    "PATH": os.environ["PATH"],
    "HOME": "/nonexistent",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "user",
    "GIT_AUTHOR_EMAIL": "user@example.com",
    "GIT_COMMITTER_NAME": "user",
    "GIT_COMMITTER_EMAIL": "user@example.com",
}


def git(repo: Path, *args: str) -> str:
    """The user's own git, as a shell would run it (test set-up and inspection)."""
    return subprocess.run(
        ["git", *args], cwd=repo, env=CLEAN, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A user's repository: two commits, a staged change, an unstaged one, an untracked file."""
    repo = tmp_path / "project"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "app.py").write_text("print('v1')\n")
    (repo / "README").write_text("readme\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "first")
    (repo / "app.py").write_text("print('v2')\n")
    git(repo, "commit", "-q", "-am", "second")
    (repo / "README").write_text("readme, staged edit\n")
    git(repo, "add", "README")
    (repo / "app.py").write_text("print('user is editing')\n")
    (repo / "notes.txt").write_text("untracked\n")
    # Traps a careless git would fall into: a hook that marks it ran, signing required, and a
    # GIT_DIR in the parent environment pointing elsewhere.
    for name in ("pre-commit", "post-commit", "post-checkout", "reference-transaction"):
        hook = repo / ".git" / "hooks" / name
        hook.write_text(f"#!/bin/sh\ntouch {tmp_path / 'hook-ran'}\nexit 1\n")
        hook.chmod(0o755)
    git(repo, "config", "commit.gpgsign", "true")
    git(repo, "config", "gpg.program", "/bin/false")
    return repo


def snapshot(repo: Path) -> dict[str, object]:
    """Everything of the user's checkout that must not change."""
    files = {
        str(p.relative_to(repo)): p.read_bytes()
        for p in repo.rglob("*")
        if p.is_file() and ".git" not in p.relative_to(repo).parts
    }
    return {
        "HEAD": (repo / ".git" / "HEAD").read_text(),
        "head commit": git(repo, "rev-parse", "HEAD"),
        "main": git(repo, "rev-parse", "refs/heads/main"),
        "index": hashlib.sha256((repo / ".git" / "index").read_bytes()).hexdigest(),
        "index mtime": (repo / ".git" / "index").stat().st_mtime_ns,
        "files": files,
        "status": git(repo, "--no-optional-locks", "status", "--porcelain"),
    }


async def test_a_run_commits_on_its_own_branch_and_leaves_the_user_alone(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("GIT_INDEX_FILE", str(tmp_path / "other-index"))
    before = snapshot(repo)
    base = git(repo, "rev-parse", "HEAD").strip()

    run = await GitRun.start(repo, branch="swarm/run-1", worktrees=tmp_path / "runs")
    assert run.base == base
    assert Path(run.path).parent == (tmp_path / "runs").resolve()
    # The run starts from the user's last commit, not their uncommitted edits.
    assert (Path(run.path) / "app.py").read_text() == "print('v2')\n"
    assert await run.status() == ()

    journal = MemoryJournal()
    ws = Workspace(run.path, journal=journal)
    await ws.write("app.py", "print('v3')\n")
    await ws.write("lib/util.py", "X = 1\n")
    assert set(await run.status()) == {
        GitStatus("app.py", " ", "M"),
        GitStatus("lib/util.py", "?", "?"),
    }
    diff = await run.diff()
    assert "-print('v2')\n+print('v3')" in diff
    assert "+++ b/lib/util.py" in diff
    assert "+X = 1" in diff

    first = await run.commit("app: print v3")
    assert first is not None
    await ws.write("lib/util.py", "X = 2\n")
    second = await run.commit("util: X = 2", "lib/util.py")
    assert second is not None
    assert await run.commit("nothing changed") is None
    assert await run.log() == (second, first)
    assert await run.status() == ()
    assert not (tmp_path / "hook-ran").exists()  # hooks never run, signing never asked
    author = git(repo, "log", "-1", "--format=%an <%ae>|%cn", "swarm/run-1")
    assert author.strip() == "swarm-actors <swarm-actors@localhost>|swarm-actors"
    parents = git(repo, "rev-list", "--parents", "-n", "1", first).split()
    assert parents == [first, base]

    assert snapshot(repo) == before  # HEAD, branch, index (bytes and mtime), files, status
    assert not (tmp_path / "elsewhere").exists()
    assert not (tmp_path / "other-index").exists()

    await run.remove()
    assert not await asyncio.to_thread(Path(run.path).exists)
    assert git(repo, "rev-parse", "swarm/run-1").strip() == second  # the run's work stays
    assert snapshot(repo) == before


async def test_runs_are_refused_cleanly(repo: Path, tmp_path: Path) -> None:
    await GitRun.start(repo, branch="run-a", worktrees=tmp_path / "runs")
    with pytest.raises(GitError) as info:  # the branch exists
        await GitRun.start(repo, branch="run-a", worktrees=tmp_path / "runs2")
    assert info.value.returncode != 0
    assert "already exists" in info.value.stderr
    plain = tmp_path / "plain"
    plain.mkdir()
    assert not await is_repository(plain)
    assert await is_repository(repo)
    with pytest.raises(GitError):
        await GitRun.start(plain, branch="run-b", worktrees=tmp_path / "runs")
    for bad in ("-x", "a..b", "a b", "", "ends/", "x" * 300):
        with pytest.raises(InvalidArgumentError):
            await GitRun.start(repo, branch=bad, worktrees=tmp_path / "runs")
    run = await GitRun.start(repo, branch="run-c", worktrees=tmp_path / "runs", base="HEAD~1")
    assert (Path(run.path) / "app.py").read_text() == "print('v1')\n"
    with pytest.raises(InvalidArgumentError):
        await run.commit("  ")
    await run.remove(delete_branch=True)
    with pytest.raises(subprocess.CalledProcessError):
        git(repo, "rev-parse", "--verify", "-q", "refs/heads/run-c")


async def test_git_commands_time_out_and_are_killed(repo: Path) -> None:
    # A hook-free way to make git wait: read a commit message from a FIFO nobody writes.
    fifo = repo.parent / "msg"
    os.mkfifo(fifo)
    with pytest.raises(TimeoutError):
        await git_command(repo, "commit", "--allow-empty", "-F", str(fifo), timeout=0.5)
