"""Shared fixtures: Hypothesis profiles, and real nats-server processes for the NATS tests."""

import os
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, settings
from nats.aio.client import Client

from swarm_actors._nats._conn import connect
from swarm_actors.cluster import NatsOptions
from swarm_actors.events import BlobStore, MemoryJournal
from swarm_actors.testing import NatsServer

# The fixtures users get (actor_system, virtual_clock); our own tests use them too.
pytest_plugins = ["swarm_actors.testing.pytest_plugin"]

# "ci" explores more; "dev" keeps the local loop fast. Select with HYPOTHESIS_PROFILE.
settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile(
    "ci", max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


# --- NATS: nats_server and nats_cluster come from swarm_actors.testing.pytest_plugin ---


@pytest_asyncio.fixture
async def nats_client(nats_server: NatsServer) -> AsyncIterator[Client]:
    """A client of the shared ``nats_server``, closed after the test."""
    client = await connect(NatsOptions(servers=nats_server.url, name="test"))
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def unique_name() -> str:
    """A name no other test uses: valid as a stream, consumer or subject token."""
    return f"T{uuid.uuid4().hex[:16]}"


# --- tools: an in-memory journal and blob store for a workspace's or a check's events ----------


@pytest_asyncio.fixture
async def journal() -> AsyncIterator[MemoryJournal]:
    """An in-memory journal, closed after the test (a module may define its own ``journal``)."""
    j = MemoryJournal()
    yield j
    await j.close()


@pytest.fixture
def blobs() -> BlobStore:
    """An in-memory content-addressed blob store."""
    return BlobStore()
