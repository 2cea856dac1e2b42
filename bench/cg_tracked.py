"""Scenarios of the tracked engine (``TrackedCell``) for callgrind: ``cg_tracked.py KIND N``.

Counted with two sizes and the difference (start-up cancels out), e.g.::

    for n in 2000 8000; do PYTHONHASHSEED=0 PYTHONPATH=python:bench valgrind --tool=callgrind \
        --callgrind-out-file=/tmp/cg.$n python bench/cg_tracked.py c4_tell $n; done
    # instructions per message: (total(8000) - total(2000)) / 6000 (callgrind_annotate's totals)

KIND: ``c4_tell`` / ``c4_ask`` (a ``max_concurrency=4`` actor, handler does not suspend; the
asks are sequential, so each runs inline), ``c4_tell_yield`` / ``c4_ask_yield`` (the handler
suspends once: ``asyncio.sleep(0)``), ``c4_conc_yield`` (4 askers at once, suspending),
``stash_tell`` (a ``stash=True`` actor), ``pool_ask`` (sequential asks to a round-robin pool of
8 plain members: a control, members run in plain cells).
"""

from __future__ import annotations

import asyncio
import sys

import bench_concurrency as bc
import bench_pool as bp
from swarm_actors import ActorSystem


class C4(bc.Serial, max_concurrency=4):
    pass


async def main(kind: str, n: int) -> None:
    async with ActorSystem() as system:
        if kind == "pool_ask":
            counted = bp.Counted(n)
            pool = await system.pool(bp.FastWorker, counted, size=bp.SIZE, routing="round_robin")
            job = bp.JOBS[0]
            for _ in range(n):
                await pool.ask(job)
            assert counted.count == n
            return
        actor, op = kind.split("_")[:2]
        ref = await system.start(C4 if actor == "c4" else bc.Stashing)
        msg = bc.YIELD if kind.endswith("_yield") else bc.INC
        if op == "tell":
            tell = ref.tell
            for _ in range(n):
                await tell(msg)
        elif op == "ask":
            ask = ref.ask
            for _ in range(n):
                await ask(msg)
        else:  # "conc": 4 askers at once

            async def asker() -> None:
                for _ in range(n // 4):
                    await ref.ask(msg)

            await asyncio.gather(*(asker() for _ in range(4)))
        count = await ref.ask(bc.GET)
        assert count == n, count


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
