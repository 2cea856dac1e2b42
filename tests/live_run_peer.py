"""A stand-in for a live run with the embedded server, in another OS process.

Run as a script::

    python tests/live_run_peer.py RUN_DIR

It starts a nats-server on the run's store (``RUN_DIR/journal``), appends events of the run,
writes ``live.json`` and prints ``ready``. Then, one command a line on stdin:

* ``more N``: append N more events, print ``ok``;
* ``end``: end as a run does: remove ``live.json``, print ``ended``;
* ``stop``: then append the events of its stopping (after the file is gone: a follower that
  saw the end must still get them, from the store), stop the server and exit.

Killed instead (SIGKILL), it leaves its ``live.json`` behind and its server dies with it, as
a killed run's does.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import msgspec

from swarm_actors._nats._jetstream import JetStreamJournal
from swarm_actors._runjournal import clear_live_url, write_live_url
from swarm_actors.events import AgentDecision, SwarmEvent, new_event
from swarm_actors.testing import NatsServer

FIRST = 20
"""Events stored before ``ready``."""
STOPPING = 5
"""Events stored after ``live.json`` is removed, on ``end``."""


def event(n: int, run_id: str) -> SwarmEvent:
    """The run's ``n``-th event (numbered from 0)."""
    return new_event(
        AgentDecision(choice=f"choice {n}", confidence_score=0.5),
        agent_role="coder",
        agent_id="/coder-0",
        sequence=n + 1,
        run_id=run_id,
    )


async def main(root: Path) -> None:
    run_id = root.name
    async with NatsServer(store_dir=root / "journal") as server:
        journal = await JetStreamJournal.connect(server.client_options())
        try:
            other = msgspec.structs.replace(event(0, run_id), run_id="other")
            await journal.append(other)  # another run on the same stream: skipped by readers
            count = FIRST
            await journal.append_many([event(n, run_id) for n in range(count)])
            write_live_url(root, server.url)
            print("ready", flush=True)
            loop = asyncio.get_running_loop()
            while line := (await loop.run_in_executor(None, sys.stdin.readline)).split():
                if line[0] == "more":
                    more = int(line[1])
                    await journal.append_many(
                        [event(n, run_id) for n in range(count, count + more)]
                    )
                    count += more
                    print("ok", flush=True)
                elif line[0] == "end":
                    clear_live_url(root)
                    print("ended", flush=True)
                elif line[0] == "stop":
                    await journal.append_many(
                        [event(n, run_id) for n in range(count, count + STOPPING)]
                    )
                    break
        finally:
            await journal.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
