"""Speculative execution: several brains race for an idempotent request; the first answer wins.

The kernel's baseline waited for the loser (a thread pool's ``with`` block joins every
thread). Here the losers are cancelled and not awaited: the winner's answer returns as soon as
it is there, while the cancelled calls unwind in their own tasks (their exceptions retrieved,
so nothing is logged as never retrieved). A failed racer does not end the race; if every racer
fails, the first failure is raised. A request that is not ``idempotent`` goes to the first
brain only: racing would send it twice.
"""

from __future__ import annotations

import asyncio
import contextlib

import msgspec

from swarm_actors._exceptions import InvalidArgumentError
from swarm_actors.brains._types import Brain, BrainRequest, BrainResponse

__all__ = ["SpeculativeBrain"]


def _retrieve(task: asyncio.Task[BrainResponse]) -> None:
    if not task.cancelled():
        task.exception()  # mark it retrieved: a loser's failure is not an error of the race


class SpeculativeBrain:
    """Races ``brains`` (two or more: providers, models or replicas) for idempotent requests.

    ``losers_cancelled`` counts the calls cancelled because another answered first.
    """

    def __init__(self, *brains: Brain) -> None:
        if len(brains) < 2:
            raise InvalidArgumentError("SpeculativeBrain races two or more brains")
        self._brains = brains
        self.losers_cancelled = 0
        """Calls cancelled because another brain answered first."""

    @property
    def provider(self) -> str:
        """The racers' providers, joined with ``|``."""
        return "|".join(b.provider for b in self._brains)

    async def complete(self, request: BrainRequest) -> BrainResponse:
        """The first answer of the race (``speculative=True``), or the first brain's alone."""
        if not request.idempotent:
            return await self._brains[0].complete(request)
        tasks = [asyncio.ensure_future(b.complete(request)) for b in self._brains]
        pending: set[asyncio.Task[BrainResponse]] = set(tasks)
        errors: list[BaseException] = []
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in tasks:  # in racer order, so a tie goes to the earlier brain
                    if task not in done or task.cancelled():
                        continue
                    exc = task.exception()
                    if exc is None:
                        return msgspec.structs.replace(task.result(), speculative=True)
                    errors.append(exc)
        finally:
            for task in pending:  # the losers: cancelled, not awaited
                task.cancel()
                task.add_done_callback(_retrieve)
                self.losers_cancelled += 1
            for task in tasks:
                if task.done():
                    with contextlib.suppress(asyncio.CancelledError):
                        _retrieve(task)
        raise errors[0]
