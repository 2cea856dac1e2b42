"""``Checks``: tests, linters and compilers run as subprocesses that cannot outlive their run.

Each run starts its command in a new session (its own process group) and kills the whole
group (``SIGKILL`` to ``-pgid``) when the timeout fires, when the awaiting task is cancelled,
and after the command exits (stragglers it left running in the background). A grandchild that
made a session of its own (``setsid``) has left the group and is out of reach: only a cgroup
could hold it, and none is assumed here.

Output (stdout and stderr, each) is captured up to ``output_cap`` bytes: the first and the
last halves are kept, the middle is cut and ``truncated`` says so; the pipes are drained to
the end so a chatty command never blocks. The environment is built from an allow-list
(``env_allow``) plus ``env``; ``HOME`` and ``TMPDIR`` point at a private directory removed
after the run. The working directory is a path inside the root, resolved like any
workspace path (no link or ``..`` leading out). Where the machine lets an unprivileged user
make namespaces, the command runs in a new network namespace (``unshare -rn``: loopback
only, and it runs as root of a user namespace); elsewhere it shares the network, and each
result says which (``network_isolated``, and the event's summary).

Machine formats are parsed where the tool has one (``_parse``): pytest's JUnit XML
(``--junitxml`` to a temporary file) and ruff's JSON (``--output-format json``). Every run,
timed out or not, is a ``ToolRun`` event; its whole output goes to the blob store when one
is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Final

import msgspec

from swarm_actors._events._blobs import BlobStore
from swarm_actors._events._journal import Journal
from swarm_actors._events._schema import ToolRun
from swarm_actors._exceptions import CheckTimeoutError, InvalidArgumentError, ToolError
from swarm_actors._log import get_logger
from swarm_actors.tools._confine import locate, open_root
from swarm_actors.tools._fs import Workspace
from swarm_actors.tools._parse import CheckSummary, parse_junit, parse_ruff
from swarm_actors.tools._proc import Capture, kill_group, start_process
from swarm_actors.tools._record import EventRecorder, JournalRecorder

__all__ = ["DEFAULT_ENV", "CheckResult", "Checks", "network_isolation"]

log = get_logger("swarm_actors.tools")

DEFAULT_ENV: Final = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "SYSTEMROOT")
"""Environment variables a check inherits from this process (all others are dropped)."""

_PREVIEW = 500
_isolation: bool | None = None
_isolation_lock: asyncio.Lock | None = None


class CheckResult(msgspec.Struct, frozen=True, kw_only=True):
    """One finished (or killed) run of a check."""

    tool: str
    """Short name of the tool (``"pytest"``, ``"ruff"``, or the command's name)."""
    argv: tuple[str, ...]
    """The command as run (without the ``unshare`` prefix)."""
    cwd: str
    """The working directory, relative to the root (``""``: the root)."""
    exit_status: int
    """Exit code, or minus the signal that ended it (``-9`` when killed)."""
    duration: float
    """Wall-clock seconds."""
    timed_out: bool
    """The timeout fired and the process group was killed."""
    stdout: bytes
    """Captured standard output (cut in the middle when over the cap)."""
    stderr: bytes
    """Captured standard error (likewise)."""
    truncated: bool
    """Some output was cut."""
    network_isolated: bool
    """It ran in a network namespace of its own (loopback only)."""
    summary: CheckSummary
    """What the tool's machine output says."""
    output_ref: str = ""
    """Blob-store digest of the whole captured output (empty without a blob store)."""

    @property
    def ok(self) -> bool:
        """Exit status 0 and no timeout."""
        return self.exit_status == 0 and not self.timed_out


# --- the process ------------------------------------------------------------------------------


async def network_isolation() -> bool:
    """Whether ``unshare -rn`` works for this user here (checked once per process)."""
    global _isolation, _isolation_lock
    if _isolation is not None:
        return _isolation
    if _isolation_lock is None:
        _isolation_lock = asyncio.Lock()
    async with _isolation_lock:
        if _isolation is None:
            _isolation = await _probe_unshare()
            log.info("check network isolation", available=_isolation)
    return _isolation


async def _probe_unshare() -> bool:
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    try:
        proc = await start_process(
            (unshare, "-rn", "--", "true"),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
    except OSError:
        return False
    try:
        async with asyncio.timeout(10):
            return await proc.wait() == 0
    except TimeoutError:
        return False
    finally:
        kill_group(proc.pid)


# --- the runner -------------------------------------------------------------------------------


class Checks:
    """Runs checks in a workspace: confined, time-limited, captured, and recorded as events.

    ``root`` is the workspace's directory, or a ``Workspace`` (then its ``recorder`` and
    ``blobs`` are the defaults). ``timeout`` (seconds) and ``output_cap`` (bytes per stream)
    apply to every run unless a run gives its own. ``network``: ``"isolate"`` runs each
    command in its own network namespace where the machine allows it (and says so in the
    result), ``"allow"`` never tries. Events: ``recorder`` or ``journal`` as for ``Workspace``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | Workspace,
        *,
        recorder: EventRecorder | None = None,
        journal: Journal | None = None,
        role: str = "tools",
        agent_id: str = "/tools/checks",
        blobs: BlobStore | None = None,
        timeout: float = 600.0,
        output_cap: int = 1 << 20,
        network: str = "isolate",
        env_allow: Sequence[str] = DEFAULT_ENV,
        env: Mapping[str, str] | None = None,
        python: str = sys.executable,
    ) -> None:
        if recorder is not None and journal is not None:
            raise InvalidArgumentError("pass recorder= or journal=, not both")
        if network not in ("isolate", "allow"):
            raise InvalidArgumentError(f"network must be 'isolate' or 'allow', not {network!r}")
        _check_timeout(timeout)
        if isinstance(output_cap, bool) or not isinstance(output_cap, int) or output_cap < 2:
            raise InvalidArgumentError(f"output_cap must be an int >= 2, got {output_cap!r}")
        if isinstance(root, Workspace):
            recorder = recorder if recorder is not None or journal is not None else root.recorder
            blobs = blobs if blobs is not None else root.blobs
            root = root.root
        self.root, fd, self._dev = open_root(root)
        os.close(fd)
        if journal is not None:
            recorder = JournalRecorder(journal, role=role, agent_id=agent_id)
        self.recorder = recorder
        """Where run events go (``None``: not recorded)."""
        self.blobs = blobs
        """Where whole outputs go (``None``: only a preview in the event)."""
        self.timeout = timeout
        """Default timeout of a run, in seconds."""
        self.output_cap = output_cap
        """Bytes kept per stream (half from the start, half from the end)."""
        self.network = network
        """``"isolate"`` or ``"allow"``."""
        self.env_allow = tuple(env_allow)
        """Names of the variables a run inherits."""
        self.env = dict(env or {})
        """Variables every run gets, on top of the inherited ones."""
        self.python = python
        """The interpreter ``pytest`` runs with."""

    async def run(
        self,
        argv: Sequence[str],
        *,
        tool: str | None = None,
        cwd: str | os.PathLike[str] = ".",
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        parse: Callable[[CheckResult], CheckSummary] | None = None,
    ) -> CheckResult:
        """Run ``argv`` in ``cwd`` (inside the root); the result, also recorded as an event.

        Raises ``CheckTimeoutError`` (a ``TimeoutError``, carrying the result) when the
        timeout fires, after killing the process group and recording the event; ``ToolError``
        when the command cannot be started; ``PathEscapeError`` for a ``cwd`` outside.
        Cancelling the awaiting task kills the process group too (and lets the cancellation
        through). ``parse`` turns the result into a ``CheckSummary``.
        """
        argv = tuple(os.fspath(a) for a in argv)
        if not argv:
            raise InvalidArgumentError("argv is empty: give the command to run")
        limit = _check_timeout(self.timeout if timeout is None else timeout)
        relative, directory = self._cwd(cwd)
        isolated = self.network == "isolate" and await network_isolation()
        home = tempfile.mkdtemp(prefix="swarm-check-")
        try:
            result = await self._spawn(argv, tool, relative, directory, limit, env, isolated, home)
            if parse is not None and not result.timed_out:
                try:
                    result = msgspec.structs.replace(result, summary=parse(result))
                except Exception as exc:  # the run stands; its output was not what we expected
                    text = f"output not parsed: {type(exc).__name__}: {exc}"[:200]
                    result = msgspec.structs.replace(result, summary=CheckSummary(text=text))
        finally:
            shutil.rmtree(home, ignore_errors=True)
        result = self._record(result)
        if result.timed_out:
            raise CheckTimeoutError(
                f"{' '.join(argv)!r} ran past its timeout of {limit:g} s; its process group "
                "was killed: raise timeout= or make the check faster",
                result=result,
            )
        return result

    async def pytest(
        self,
        *args: str,
        cwd: str | os.PathLike[str] = ".",
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
    ) -> CheckResult:
        """``python -m pytest *args`` with a JUnit XML report parsed into the summary."""
        with tempfile.TemporaryDirectory(prefix="swarm-junit-") as report_dir:
            report = os.path.join(report_dir, "junit.xml")

            def parse(result: CheckResult) -> CheckSummary:
                with open(report, "rb") as f:
                    return parse_junit(f.read())

            argv = (self.python, "-m", "pytest", f"--junitxml={report}", "-p", "no:cacheprovider")
            return await self.run(
                (*argv, *args), tool="pytest", cwd=cwd, timeout=timeout, env=env, parse=parse
            )

    async def ruff(
        self,
        *args: str,
        cwd: str | os.PathLike[str] = ".",
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        ruff: str = "ruff",
    ) -> CheckResult:
        """``ruff check --output-format json *args`` with its findings parsed."""
        root = self.root

        def parse(result: CheckResult) -> CheckSummary:
            return parse_ruff(result.stdout, root)

        argv = (ruff, "check", "--output-format", "json", "--no-cache", *args)
        return await self.run(argv, tool="ruff", cwd=cwd, timeout=timeout, env=env, parse=parse)

    # --- internals -------------------------------------------------------------------------

    def _cwd(self, cwd: str | os.PathLike[str]) -> tuple[str, str]:
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with locate(fd, self._dev, cwd, want_dir=True) as found:
                relative = found.relative
        finally:
            os.close(fd)
        return relative, os.path.join(self.root, relative) if relative else self.root

    def _environment(self, extra: Mapping[str, str] | None, home: str) -> dict[str, str]:
        env = {k: os.environ[k] for k in self.env_allow if k in os.environ}
        env.update(HOME=home, TMPDIR=home)
        env.update(self.env)
        env.update(extra or {})
        return env

    async def _spawn(
        self,
        argv: tuple[str, ...],
        tool: str | None,
        relative: str,
        directory: str,
        limit: float,
        env: Mapping[str, str] | None,
        isolated: bool,
        home: str,
    ) -> CheckResult:
        environment = self._environment(env, home)
        program = argv[0]
        found: str | None
        if "/" in program:
            found = os.path.join(directory, program)
            found = found if os.access(found, os.X_OK) else None
        else:
            found = shutil.which(program, path=environment.get("PATH", os.defpath))
        if found is None:  # said here: under unshare it would be unshare's exit status 127
            raise ToolError(
                f"cannot run {program!r}: not found or not executable; install it or fix PATH "
                "(checks see only the variables in env_allow and env)"
            )
        command = ("unshare", "-rn", "--", *argv) if isolated else argv
        started = time.monotonic()
        try:
            proc = await start_process(
                command,
                cwd=directory,
                env=environment,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise ToolError(
                f"cannot run {argv[0]!r}: {exc.strerror or exc}; install it or fix PATH "
                "(checks see only the variables in env_allow)"
            ) from exc
        except asyncio.CancelledError:  # cancelled while starting: start_process killed it
            nothing = Capture(2)
            with contextlib.suppress(Exception):  # the cancellation is what the caller gets
                self._record(
                    self._result(
                        argv, tool, relative, started, None, nothing, nothing, isolated, "cancelled"
                    ),
                    quiet=True,
                )
            raise
        assert proc.stdout is not None
        assert proc.stderr is not None
        out, err = Capture(self.output_cap), Capture(self.output_cap)
        readers = [
            asyncio.ensure_future(out.drain(proc.stdout)),
            asyncio.ensure_future(err.drain(proc.stderr)),
        ]
        timed_out = False
        try:
            try:
                async with asyncio.timeout(limit):
                    await proc.wait()
            except TimeoutError:
                timed_out = True
            finally:
                kill_group(proc.pid)  # the timeout, a cancellation, or stragglers after exit
            await proc.wait()
            # The group is dead, so the pipes close; a setsid escapee could hold them open.
            _, pending = await asyncio.wait(readers, timeout=5)
            for reader in pending:
                reader.cancel()
        except BaseException:  # cancelled: the group is killed; reap it, then let it through
            for reader in readers:
                reader.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(proc.wait()), 5)
            with contextlib.suppress(Exception):  # the cancellation is what the caller gets
                self._record(
                    self._result(
                        argv,
                        tool,
                        relative,
                        started,
                        proc.returncode,
                        out,
                        err,
                        isolated,
                        "cancelled",
                    ),
                    quiet=True,
                )
            raise
        return self._result(
            argv,
            tool,
            relative,
            started,
            proc.returncode,
            out,
            err,
            isolated,
            "timed out" if timed_out else "",
        )

    def _result(
        self,
        argv: tuple[str, ...],
        tool: str | None,
        relative: str,
        started: float,
        returncode: int | None,
        out: Capture,
        err: Capture,
        isolated: bool,
        note: str,
    ) -> CheckResult:
        duration = time.monotonic() - started
        status = returncode if returncode is not None else -signal.SIGKILL
        timed_out = note == "timed out"
        return CheckResult(
            tool=tool or os.path.basename(argv[0]),
            argv=argv,
            cwd=relative,
            exit_status=status,
            duration=duration,
            timed_out=timed_out,
            stdout=out.value(),
            stderr=err.value(),
            truncated=out.truncated or err.truncated,
            network_isolated=isolated,
            summary=CheckSummary(text=note),
        )

    def _record(self, result: CheckResult, *, quiet: bool = False) -> CheckResult:
        output = result.stdout + (b"\n--- stderr ---\n" + result.stderr if result.stderr else b"")
        ref = self.blobs.put(output) if self.blobs is not None else ""
        result = msgspec.structs.replace(result, output_ref=ref)
        if self.recorder is None:
            return result
        summary = result.summary
        network = "network isolated" if result.network_isolated else "network shared"
        text = "; ".join(t for t in (summary.text, network) if t)
        payload = ToolRun(
            tool=result.tool,
            argv=result.argv,
            cwd=result.cwd,
            exit_status=result.exit_status,
            duration_ns=int(result.duration * 1e9),
            timed_out=result.timed_out,
            passed=summary.passed,
            failed=summary.failed,
            errors=summary.errors,
            skipped=summary.skipped,
            summary=text,
            output_ref=ref,
            output_bytes=len(output),
            truncated=result.truncated,
            output_preview=output[-_PREVIEW:].decode("utf-8", "replace")[-_PREVIEW:],
        )
        try:
            self.recorder.record(payload)
        except Exception as exc:
            log.error("check run not recorded", argv=result.argv, error=repr(exc))
            if not quiet:
                raise
        return result


def _check_timeout(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InvalidArgumentError(f"timeout must be a number of seconds > 0, got {value!r}")
    if value != value or value == float("inf"):
        raise InvalidArgumentError(f"timeout must be finite, got {value!r}")
    return float(value)
