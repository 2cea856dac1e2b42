"""pytest fixtures for code built on swarm-actors (needs ``pytest-asyncio``).

Enable them in your ``conftest.py``::

    pytest_plugins = ["swarm_actors.pytest_plugin"]

* ``actor_system``: a fresh ``ActorSystem`` per test, always stopped afterwards, even when the
  test fails (draining first; after ``SWARM_STOP_TIMEOUT`` seconds, discarding). Configure it
  with ``@pytest.mark.swarm_system(max_active=..., passivate_after=..., ...)`` (keyword
  arguments of ``ActorSystem``).
* ``virtual_clock``: a ``VirtualClock``; when a test asks for both, ``actor_system`` runs on it,
  so timers, backoff and passivation move only when the test calls ``advance``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import structlog

from swarm_actors._system import ActorSystem
from swarm_actors.testing import VirtualClock

__all__ = ["SWARM_STOP_TIMEOUT", "actor_system", "virtual_clock"]

SWARM_STOP_TIMEOUT = 10.0
"""Seconds the ``actor_system`` fixture waits for a draining stop before discarding."""

log = structlog.get_logger("swarm_actors.testing")


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``swarm_system`` marker."""
    config.addinivalue_line(
        "markers",
        "swarm_system(**kwargs): keyword arguments for the actor_system fixture's ActorSystem",
    )


@pytest.fixture
def virtual_clock() -> VirtualClock:
    """A ``VirtualClock`` at time 0; ``actor_system`` uses it when the test requests both."""
    return VirtualClock()


@pytest_asyncio.fixture
async def actor_system(request: pytest.FixtureRequest) -> AsyncIterator[ActorSystem]:
    """A started ``ActorSystem``, stopped after the test whatever happened in it."""
    marker = request.node.get_closest_marker("swarm_system")
    options = dict(marker.kwargs) if marker is not None else {}
    if "virtual_clock" in request.fixturenames and "clock" not in options:
        options["clock"] = request.getfixturevalue("virtual_clock")
    system = ActorSystem(**options)
    await system.__aenter__()
    try:
        yield system
    finally:
        draining = asyncio.ensure_future(system.stop_all())
        done, _ = await asyncio.wait([draining], timeout=SWARM_STOP_TIMEOUT)
        if not done:
            log.warning(
                "actor_system did not drain in time; discarding", timeout=SWARM_STOP_TIMEOUT
            )
            await system.stop_all(drain=False)  # cuts the draining stops short
        await draining
