"""Starting and killing subprocesses as whole process groups (checks and git share this)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Sequence
from typing import Any

__all__ = ["kill_group", "start_process"]


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
