"""The replay slider's endpoints: the workspace at a journal sequence, over ``swarm_actors.replay``.

The workspace is rebuilt by ``RunReplay`` (the run's starting snapshot, then each recorded
``FileChange``, hashes checked) from the entries the feed holds; a live run's replay is
rebuilt when the feed has grown since the last request. Nothing here reads the run's
``workspace/`` directory: what the page sees of it is what the journal says it was.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
from collections.abc import Mapping
from typing import Any

from swarm_actors._exceptions import InvalidArgumentError
from swarm_actors._runs import RunPaths
from swarm_actors.replay import RunReplay, workspace_diff

from ._app import ReplayApi, safe_path
from ._feed import Feed

__all__ = ["replay_api"]

_MAX_FILES = 5000  # a tree longer than this is cut (the page lists, it does not browse)


def replay_api(run: RunPaths | None, feed: Feed) -> ReplayApi:
    """The ``/api/workspace`` and ``/api/file`` endpoints of ``feed``'s run."""
    cache: dict[str, Any] = {"size": -1, "replay": None}
    lock = asyncio.Lock()

    def current() -> RunReplay:
        if cache["size"] != len(feed):
            cache["replay"] = RunReplay(list(feed.entries), feed.blobs, run_id=feed.run_id)
            cache["size"] = len(feed)
        replay: RunReplay = cache["replay"]
        return replay

    def at_of(replay: RunReplay, query: Mapping[str, str]) -> int:
        text = query.get("at", "")
        try:
            at = int(text) if text else replay.last_seq
        except ValueError:
            raise ValueError(f"at must be a journal sequence, got {text!r}") from None
        return max(0, min(at, replay.last_seq))

    def workspace(query: Mapping[str, str]) -> dict[str, Any]:
        replay = current()
        at = at_of(replay, query)
        start, files = replay.files_at(0), replay.files_at(at)
        steps = [step for step in replay.steps() if step.change is not None]  # no snapshots
        i = bisect.bisect_right([step.seq for step in steps], at) - 1
        change = None
        if i >= 0:
            step = steps[i]
            assert step.change is not None
            change = {
                "sequence": step.seq,
                "op": step.change.op,
                "path": step.change.to_path or step.change.path,
                "agent": step.event.agent_id,
                "diff": replay.diff(max(0, step.seq - 1), step.seq),
            }
        listing = [
            {
                "path": path,
                "size": len(content),
                "sha256": hashlib.sha256(content).hexdigest(),
                "changed": start.get(path) != content,
            }
            for path, content in sorted(files.items())[:_MAX_FILES]
        ]
        return {"at": at, "last": replay.last_seq, "files": listing, "change": change}

    def one_file(query: Mapping[str, str]) -> dict[str, Any]:
        replay = current()
        at = at_of(replay, query)
        path = safe_path(query.get("path", ""))
        start, files = replay.files_at(0), replay.files_at(at)
        if path not in files and path not in start:
            raise LookupError(f"no file {path!r} in the workspace at sequence {at}")
        before = {path: start[path]} if path in start else {}
        after = {path: files[path]} if path in files else {}
        return {"at": at, "path": path, "diff_from_start": workspace_diff(before, after)}

    async def answer(what: str, query: Mapping[str, str]) -> Any:
        if what not in ("workspace", "file"):
            raise LookupError(f"no such endpoint: /api/{what}")
        async with lock:  # one rebuild at a time; a big run's rebuild runs off the loop
            try:
                return await asyncio.to_thread(
                    workspace if what == "workspace" else one_file, query
                )
            except InvalidArgumentError as exc:
                raise ValueError(str(exc)) from None

    return answer
