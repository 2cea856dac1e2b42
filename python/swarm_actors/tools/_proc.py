"""Subprocesses as whole process groups (checks and git share this), and capped output."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Sequence
from typing import Any

__all__ = ["Capture", "kill_group", "start_process"]

_READ = 1 << 16


async def start_process(command: Sequence[str], **options: Any) -> asyncio.subprocess.Process:
    """Start ``command`` in a new session (its own process group), cancellation-safe.

    A task cancelled while the process is being started would leave it running unseen
    (asyncio kills only the process itself, not what it started meanwhile): the start is
    shielded, and on cancellation the new group is killed and reaped before the
    cancellation goes on.
    """
    starting = asyncio.ensure_future(
        asyncio.create_subprocess_exec(*command, start_new_session=True, **options)
    )
    try:
        return await asyncio.shield(starting)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            proc = await starting
            kill_group(proc.pid)
            await asyncio.wait_for(proc.wait(), 5)
        raise


def kill_group(pgid: int) -> None:
    """``SIGKILL`` every process of the group ``pgid`` (gone already: nothing to do)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class Capture:
    """A stream read to its end, keeping the first and last ``cap // 2`` bytes."""

    def __init__(self, cap: int) -> None:
        self.half = cap // 2
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    async def drain(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(_READ):
            self.total += len(chunk)
            room = self.half - len(self.head)
            if room > 0:
                self.head += chunk[:room]
                chunk = chunk[room:]
            if chunk:
                self.tail += chunk
                if len(self.tail) > 2 * self.half:  # trim now and then, not on every chunk
                    del self.tail[: len(self.tail) - self.half]

    @property
    def truncated(self) -> bool:
        return self.total > len(self.head) + min(len(self.tail), self.half)

    def value(self) -> bytes:
        tail = bytes(self.tail[-self.half :]) if self.half else b""
        if not self.truncated:
            return bytes(self.head) + tail
        cut = self.total - len(self.head) - len(tail)
        return bytes(self.head) + f"\n[... {cut} bytes cut ...]\n".encode() + tail
