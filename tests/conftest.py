"""Shared fixtures: Hypothesis profiles, and real nats-server processes for the NATS tests."""

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, settings
from nats.aio.client import Client

from swarm_actors import NatsOptions
from swarm_actors._nats_conn import connect
from swarm_actors.testing import NatsCluster, NatsServer

# The fixtures users get (actor_system, virtual_clock); our own tests use them too.
pytest_plugins = ["swarm_actors.pytest_plugin"]

# "ci" explores more; "dev" keeps the local loop fast. Select with HYPOTHESIS_PROFILE.
settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile(
    "ci", max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


# --- NATS: real nats-server processes on free loopback ports, always stopped by PID ---------


# Small JetStream limits: the server's defaults are a large share of RAM and disk.
TEST_FILE_STORE = 64 * 1024 * 1024
TEST_MEMORY_STORE = 16 * 1024 * 1024


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    """One JetStream server for the whole session (it starts in ~20 ms, but why repeat it).

    Shared: tests must not stop, kill or pause it (start their own ``NatsServer`` for faults)
    and must use unique stream names and subjects (``unique_name``). Started and stopped with
    ``asyncio.run`` because the server object holds no event-loop state and each test has its
    own loop.
    """
    server = NatsServer(
        name="swarm-test", max_file_store=TEST_FILE_STORE, max_memory_store=TEST_MEMORY_STORE
    )
    asyncio.run(server.start())
    try:
        yield server
    finally:
        asyncio.run(server.stop())


@pytest_asyncio.fixture
async def nats_client(nats_server: NatsServer) -> AsyncIterator[Client]:
    """A client of the shared ``nats_server``, closed after the test."""
    client = await connect(NatsOptions(servers=nats_server.url, name="test"))
    try:
        yield client
    finally:
        await client.close()


@pytest_asyncio.fixture
async def nats_cluster() -> AsyncIterator[NatsCluster]:
    """A fresh 3-node JetStream cluster (about 0.6 s to form): tests may kill and restart nodes."""
    async with NatsCluster(
        3, max_file_store=TEST_FILE_STORE, max_memory_store=TEST_MEMORY_STORE
    ) as cluster:
        yield cluster


@pytest.fixture
def unique_name() -> str:
    """A name no other test uses: valid as a stream, consumer or subject token."""
    return f"T{uuid.uuid4().hex[:16]}"
