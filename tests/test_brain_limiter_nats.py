"""The shared rate limiter holds across OS processes: a token bucket in a JetStream KV bucket."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.client import Client

from helpers import ready_process
from swarm_actors.brains import KVRateLimiter, RateLimits
from swarm_actors.testing import NatsServer

# A peer: opens the limiter, says ready, waits for "go", then tries N acquisitions at once
# and prints how many it was granted.
PEER = """
import asyncio, sys
import nats
from swarm_actors.brains import KVRateLimiter, RateLimits

async def main():
    url, bucket, name, tries = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    nc = await nats.connect(url)
    limits = RateLimits(requests=5, tokens=5000, period=3600)
    limiter = await KVRateLimiter.open(nc.jetstream(), limits, name=name, bucket=bucket)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    granted = sum([await limiter.try_acquire(100) for _ in range(tries)])
    print(f"granted {granted} conflicts {limiter.conflicts}", flush=True)
    await nc.close()

asyncio.run(main())
"""


@pytest.mark.asyncio
async def test_two_processes_share_one_budget(nats_server: NatsServer, unique_name: str) -> None:
    args = ("-c", PEER, nats_server.url, unique_name, "openai", "10")
    async with ready_process(*args, stdin=True) as a, ready_process(*args, stdin=True) as b:
        for proc in (a, b):
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
        outputs = []
        for proc in (a, b):
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            outputs.append(line.decode().split())
            await asyncio.wait_for(proc.wait(), 30)
    granted = [int(out[1]) for out in outputs]
    # 5 requests an hour: the two processes together get exactly 5 of their 20 tries.
    assert sum(granted) == 5, outputs


@pytest.mark.asyncio
async def test_tokens_are_limited_and_acquire_times_out(
    nats_client: Client, unique_name: str
) -> None:
    limits = RateLimits(requests=100, tokens=1000, period=3600)
    js = nats_client.jetstream()
    one = await KVRateLimiter.open(js, limits, name="k", bucket=unique_name, timeout=0.3)
    other = await KVRateLimiter.open(js, limits, name="k", bucket=unique_name, timeout=0.3)
    await one.acquire(600)
    assert not await other.try_acquire(600)  # the tokens are shared: 400 left
    assert await other.try_acquire(400)
    with pytest.raises(TimeoutError, match="admitted no call"):
        await one.acquire(10)
    separate = await KVRateLimiter.open(js, limits, name="other-key", bucket=unique_name)
    assert await separate.try_acquire(600)  # another key, another budget
