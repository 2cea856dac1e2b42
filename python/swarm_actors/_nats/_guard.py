"""Start ``nats-server`` so that it dies with the process that started it (its *owner*).

Run as a script by ``NatsServer.spawn`` (see ``_nats_server``), never imported for its work::

    python -I -S _nats_guard.py <directory to remove if the owner dies, or ""> <binary> <args>...

with stdin the read end of a pipe whose only write end the owner holds. This process forks a
*guardian*, then replaces itself with ``nats-server`` (``execv``): the owner's child, whose PID
the owner signals, pauses and reaps, is the server itself. The guardian blocks reading the pipe.
It reads end-of-file when every write end is closed: when the owner closes it after reaping
the server (a normal stop: the server is gone, the guardian was re-parented, and just exits),
or when the owner dies, the kernel closing its descriptors whatever killed it (SIGKILL
included). If the server is then still the guardian's parent, the guardian SIGKILLs it, waits
for it to exit and removes the owner's temporary work directory.

Only the standard library is used, with ``-I -S`` (no site packages, no environment): the
launcher is a fresh, single-threaded interpreter, so forking it is safe.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

_EXIT_WAIT = 10.0  # seconds the guardian waits for a killed server to exit before cleaning up


def _close_from(low: int) -> None:
    """Close every descriptor from ``low`` up (listed where possible: limits can be huge)."""
    for listing in ("/proc/self/fd", "/dev/fd"):
        try:
            fds = [int(name) for name in os.listdir(listing)]
        except (OSError, ValueError):
            continue
        for fd in fds:
            if fd >= low:
                with contextlib.suppress(OSError):  # the listing's own, closed already
                    os.close(fd)
        return
    os.closerange(low, 4096)


def guard(server: int, cleanup: str) -> None:
    """The guardian: wait for the owner to go, then kill ``server`` if it still runs."""
    # A Ctrl-C in the owner's terminal reaches the whole process group: the owner decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _close_from(3)  # the store lock above all: it must be free once the server is gone
    while True:
        try:
            if not os.read(0, 4096):
                break
        except OSError:
            break
    if os.getppid() != server:  # the server exited already; we were re-parented
        return
    try:
        os.kill(server, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + _EXIT_WAIT
    while os.getppid() == server and time.monotonic() < deadline:
        time.sleep(0.005)
    if cleanup:
        import shutil

        shutil.rmtree(cleanup, ignore_errors=True)


def main(argv: list[str]) -> None:
    """Fork the guardian, then become the server (``argv``: cleanup directory, command)."""
    cleanup, command = argv[1], argv[2:]
    server = os.getpid()
    if os.fork() == 0:
        try:
            guard(server, cleanup)
        finally:
            os._exit(0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # the server reads nothing; the pipe stays the guardian's alone
    os.close(devnull)
    try:
        os.execv(command[0], command)
    except OSError as e:
        sys.stderr.write(f"cannot run {command[0]}: {e}\n")
        sys.stderr.flush()
        os._exit(127)


if __name__ == "__main__":
    main(sys.argv)
