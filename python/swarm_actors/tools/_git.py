"""Git for a run: its own branch in its own worktree; the user's checkout is never touched.

``GitRun.start`` adds a worktree (``git worktree add -b <branch>``) under a directory it is
given, starting from the user's ``HEAD`` commit: the user's branch, ``HEAD``, index and working
tree stay as they are (``git worktree add`` writes only ``.git/worktrees/<name>`` and the new
branch's ref). The run changes files in ``GitRun.path`` (a ``Workspace`` rooted there) and
commits each approved change on its branch. Read-only commands pass ``--no-optional-locks``
so not even the index's stat cache is refreshed behind anyone's back.

git runs as a subprocess (``asyncio``, no wrapper library) in a cleaned environment: no
variable of this process but ``PATH`` (so no ``GIT_DIR``, ``GIT_INDEX_FILE``... leaking in), no
system or global configuration (``GIT_CONFIG_NOSYSTEM``, ``GIT_CONFIG_GLOBAL=/dev/null``), a
fixed author and committer, no prompts, and ``-c`` overrides of what a repository's own
configuration could make git run or wait for: hooks (``core.hooksPath=/dev/null``), signing
(``commit.gpgsign``, ``tag.gpgsign``), ``core.fsmonitor``, automatic gc, pagers, external
diff drivers and text conversion (``--no-ext-diff --no-textconv``). Each command has a
timeout and its process group is killed when it fires or the caller is cancelled.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Sequence
from typing import Final

import msgspec

from swarm_actors._exceptions import GitError, InvalidArgumentError
from swarm_actors._log import get_logger
from swarm_actors.tools._proc import kill_group, start_process

__all__ = ["GitRun", "GitStatus", "git_command", "is_repository"]

log = get_logger("swarm_actors.tools")

CONFIG: Final = (
    "core.hooksPath=/dev/null",
    "commit.gpgsign=false",
    "tag.gpgsign=false",
    "core.fsmonitor=false",
    "core.untrackedCache=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "core.pager=cat",
    "credential.helper=",
)
"""``-c`` settings every git command runs with (they beat the repository's configuration)."""

_BRANCH = re.compile(r"\A(?!-)(?!.*\.\.)(?!.*//)[A-Za-z0-9._/-]{1,200}(?<![./])\Z")
_TAIL = 4000


class GitStatus(msgspec.Struct, frozen=True):
    """One path ``git status`` reports (porcelain v1 codes)."""

    path: str
    """The path, relative to the worktree root."""
    index: str
    """Status in the index: ``" "`` unchanged, ``M``, ``A``, ``D``, ``R``, ``?`` untracked..."""
    worktree: str
    """Status in the working tree, same codes."""
    orig_path: str = ""
    """For a rename or copy, the path it came from."""


def _environment(name: str, email: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": "/nonexistent",
        "LC_ALL": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
    }


async def git_command(
    cwd: str | os.PathLike[str],
    *args: str,
    timeout: float = 60.0,
    author: tuple[str, str] = ("swarm-actors", "swarm-actors@localhost"),
    ok_codes: Sequence[int] = (0,),
) -> tuple[int, str]:
    """Run ``git <args>`` in ``cwd`` in the cleaned environment; its exit code and stdout.

    Raises ``GitError`` (with git's stderr) for an exit code outside ``ok_codes`` or when
    git cannot be started, and ``TimeoutError`` after killing it when ``timeout`` passes.
    """
    command = ["git"]
    for setting in CONFIG:
        command += ["-c", setting]
    command += args
    try:
        proc = await start_process(
            command,
            cwd=os.fspath(cwd),
            env=_environment(*author),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        raise GitError(f"cannot run git: {exc}; install git", command=tuple(args)) from exc
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
    except TimeoutError:
        raise TimeoutError(f"git {' '.join(args)} took over {timeout:g} s; it was killed") from None
    finally:
        kill_group(proc.pid)
        if proc.returncode is None:
            await asyncio.shield(proc.wait())
    code = proc.returncode
    assert code is not None
    if code not in ok_codes:
        raise GitError(
            f"git {' '.join(args)} failed with exit status {code}",
            command=tuple(args),
            returncode=code,
            stderr=err.decode("utf-8", "replace")[-_TAIL:],
        )
    return code, out.decode("utf-8", "surrogateescape")


async def is_repository(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is inside a git working tree."""
    try:
        code, out = await git_command(
            path, "rev-parse", "--is-inside-work-tree", ok_codes=range(256)
        )
    except (GitError, OSError):
        return False
    return code == 0 and out.strip() == "true"


def _parse_status(out: str) -> tuple[GitStatus, ...]:
    fields = out.split("\0")
    entries = []
    i = 0
    while i < len(fields) and fields[i]:
        record = fields[i]
        index, worktree, path = record[0], record[1], record[3:]
        orig = ""
        if index in "RC":
            i += 1
            orig = fields[i]
        entries.append(GitStatus(path, index, worktree, orig))
        i += 1
    return tuple(entries)


class GitRun:
    """A run's own branch and worktree in the user's repository. Make one with ``start``.

    ``path`` is the worktree (give it to ``Workspace``); ``branch`` the run's branch;
    ``base`` the commit it started from. ``status`` and ``diff`` show the run's changes,
    ``commit`` records one approved change as a commit on the run's branch, ``remove`` takes
    the worktree away (the branch stays, with the run's commits, unless asked otherwise).
    """

    def __init__(
        self,
        repository: str,
        path: str,
        branch: str,
        base: str,
        *,
        timeout: float,
        author: tuple[str, str],
    ) -> None:
        self.repository = repository
        """The user's repository (its top-level directory)."""
        self.path = path
        """The run's worktree."""
        self.branch = branch
        """The run's branch."""
        self.base = base
        """The commit the run started from (the user's ``HEAD`` then)."""
        self.timeout = timeout
        """Timeout of each git command, in seconds."""
        self.author = author
        """Author and committer of the run's commits: (name, email)."""

    @classmethod
    async def start(
        cls,
        repository: str | os.PathLike[str],
        *,
        branch: str,
        worktrees: str | os.PathLike[str],
        base: str = "HEAD",
        timeout: float = 60.0,
        author: tuple[str, str] = ("swarm-actors", "swarm-actors@localhost"),
    ) -> GitRun:
        """Add the worktree ``worktrees/<branch>`` on a new ``branch`` made at ``base``.

        ``base`` is resolved to a commit first (the user's ``HEAD`` by default: committed
        work only; uncommitted changes in the user's checkout are not carried over).
        Raises ``GitError`` when ``repository`` is not a git repository, the branch exists,
        or the directory is taken; ``InvalidArgumentError`` for a malformed branch name.
        """
        if not isinstance(branch, str) or not _BRANCH.match(branch):
            raise InvalidArgumentError(
                f"invalid branch name {branch!r}: use letters, digits, '.', '_', '-', '/'"
            )

        async def git(cwd: str | os.PathLike[str], *args: str) -> str:
            return (await git_command(cwd, *args, timeout=timeout, author=author))[1].strip()

        top = await git(repository, "rev-parse", "--show-toplevel")
        commit = await git(top, "rev-parse", "--verify", f"{base}^{{commit}}")
        await asyncio.to_thread(os.makedirs, worktrees, exist_ok=True)
        home = await asyncio.to_thread(os.path.realpath, worktrees)
        path = os.path.join(home, branch.replace("/", "-"))
        await git(top, "worktree", "add", "--quiet", "-b", branch, path, commit)
        log.info("git run started", repository=top, branch=branch, path=path, base=commit)
        return cls(top, path, branch, commit, timeout=timeout, author=author)

    async def _git(self, *args: str, ok_codes: Sequence[int] = (0,)) -> tuple[int, str]:
        return await git_command(
            self.path, *args, timeout=self.timeout, author=self.author, ok_codes=ok_codes
        )

    async def status(self) -> tuple[GitStatus, ...]:
        """The run's changed and untracked paths (``git status``, every untracked file)."""
        _, out = await self._git(
            "--no-optional-locks", "status", "--porcelain=v1", "-z", "--untracked-files=all"
        )
        return _parse_status(out)

    async def diff(self, *paths: str) -> str:
        """Unified diff of the run's uncommitted changes against its last commit.

        Untracked files are included (as additions), so a new file shows too.
        """
        _, untracked = await self._git(
            "--no-optional-locks", "ls-files", "--others", "--exclude-standard", "-z", "--", *paths
        )
        parts = []
        _, tracked = await self._git(
            "--no-optional-locks", "diff", "--no-ext-diff", "--no-textconv", "HEAD", "--", *paths
        )
        parts.append(tracked)
        for name in filter(None, untracked.split("\0")):
            _, added = await self._git(
                "--no-optional-locks",
                "diff",
                "--no-ext-diff",
                "--no-textconv",
                "--no-index",
                "--",
                os.devnull,
                name,
                ok_codes=(0, 1),
            )
            parts.append(added)
        return "".join(parts)

    async def commit(self, message: str, *paths: str) -> str | None:
        """Commit the run's changes (only ``paths`` when given) on its branch; the commit id.

        ``None`` when there was nothing to commit.
        """
        if not message.strip():
            raise InvalidArgumentError("a commit needs a message: say what changed and why")
        await self._git("add", "--all", "--", *(paths or (".",)))
        code, _ = await self._git("diff", "--cached", "--quiet", "--no-ext-diff", ok_codes=(0, 1))
        if code == 0:
            return None
        await self._git("commit", "--quiet", "--no-verify", "-m", message)
        _, head = await self._git("rev-parse", "HEAD")
        return head.strip()

    async def log(self) -> tuple[str, ...]:
        """The run's commits since ``base``, newest first (ids)."""
        _, out = await self._git("rev-list", f"{self.base}..HEAD")
        return tuple(out.split())

    async def remove(self, *, delete_branch: bool = False) -> None:
        """Remove the worktree (uncommitted changes in it are lost); the branch too if asked."""
        await git_command(
            self.repository,
            "worktree",
            "remove",
            "--force",
            self.path,
            timeout=self.timeout,
            author=self.author,
        )
        if delete_branch:
            await git_command(
                self.repository,
                "branch",
                "-D",
                self.branch,
                timeout=self.timeout,
                author=self.author,
            )
