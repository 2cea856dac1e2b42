"""One rate limiter for all agents of a swarm, in requests and tokens per period.

A provider limits the key, not the process: every agent that calls with the same key must
draw from one budget. ``LocalRateLimiter`` is that budget within a process (aiolimiter's
leaky buckets, one for requests and one for tokens; waiters of equal size are served in
arrival order). ``KVRateLimiter`` holds across processes and nodes: a token bucket stored
in a JetStream key-value bucket, updated by compare-and-set on the key's revision, so two
nodes never spend the same capacity. It refills by wall-clock time (keep the nodes' clocks
in sync, as NTP does), and waits with jitter when empty, so it is fair in the long run rather
than first come, first served.

Both wait at most ``timeout`` seconds and then raise the builtin ``TimeoutError``.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import msgspec
from aiolimiter import AsyncLimiter
from nats.js.api import KeyValueConfig
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError

from swarm_actors._exceptions import InvalidArgumentError
from swarm_actors._log import get_logger

if TYPE_CHECKING:
    from nats.js.client import JetStreamContext
    from nats.js.kv import KeyValue

__all__ = ["KVRateLimiter", "LocalRateLimiter", "RateLimiter", "RateLimits"]

log = get_logger("swarm_actors.brains")


class RateLimits(msgspec.Struct, frozen=True, kw_only=True):
    """How much a key may be used per ``period`` seconds (a minute by default).

    The whole period's worth may be used in a burst; capacity comes back evenly over the period.
    """

    requests: float
    """Requests per period."""
    tokens: float | None = None
    """Tokens (in and out, estimated before the call) per period, or ``None`` for no limit."""
    period: float = 60.0
    """The period in seconds."""

    def __post_init__(self) -> None:
        if self.requests <= 0 or (self.tokens is not None and self.tokens <= 0):
            raise InvalidArgumentError("RateLimits needs requests > 0 and tokens > 0 (or None)")
        if self.period <= 0:
            raise InvalidArgumentError("RateLimits needs period > 0")


@runtime_checkable
class RateLimiter(Protocol):
    """Admits model calls at the rate a provider allows."""

    async def acquire(self, tokens: int = 0) -> None:
        """Wait until one request and ``tokens`` tokens may be spent, and spend them.

        Raises ``TimeoutError`` when that does not happen within the limiter's timeout.
        """
        ...


class LocalRateLimiter:
    """A rate limiter for the agents of one process (share the instance among them)."""

    def __init__(self, limits: RateLimits, *, timeout: float = 120.0) -> None:
        self.limits = limits
        """The limits."""
        self._timeout = timeout
        self._requests = AsyncLimiter(limits.requests, limits.period)
        self._tokens = (
            AsyncLimiter(limits.tokens, limits.period) if limits.tokens is not None else None
        )

    async def acquire(self, tokens: int = 0) -> None:
        """Spend one request and ``tokens`` tokens (at most a period's worth), waiting if needed."""
        amount = min(float(tokens), self._tokens.max_rate) if self._tokens is not None else 0.0
        if self._requests.has_capacity(1) and (
            self._tokens is None or self._tokens.has_capacity(amount)
        ):  # no wait: no timeout to arm (the common case, and the fast one)
            await self._requests.acquire(1)
            if self._tokens is not None and amount > 0:
                await self._tokens.acquire(amount)
            return
        try:
            async with asyncio.timeout(self._timeout):
                await self._requests.acquire(1)
                if self._tokens is not None and amount > 0:
                    await self._tokens.acquire(amount)
        except TimeoutError:
            raise TimeoutError(
                f"the rate limiter ({self.limits.requests:g} requests / "
                f"{self.limits.period:g} s) admitted no call within {self._timeout} s"
            ) from None


class _Bucket(msgspec.Struct, array_like=True):
    requests: float
    tokens: float
    updated: float  # wall-clock seconds


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(_Bucket).decode


class KVRateLimiter:
    """A rate limiter shared by every process and node: a token bucket in a JetStream KV bucket.

    Build it with ``open`` (creating the KV bucket if needed). Every limiter opened with the
    same ``bucket`` and ``name`` on the same NATS system draws from the same capacity.
    """

    def __init__(
        self, kv: KeyValue, limits: RateLimits, *, name: str, timeout: float = 120.0
    ) -> None:
        self._kv = kv
        self.limits = limits
        """The limits."""
        self._key = f"limiter.{name}"
        self._timeout = timeout
        self.conflicts = 0
        """Compare-and-set conflicts: another process spent capacity at the same moment."""

    @classmethod
    async def open(
        cls,
        js: JetStreamContext,
        limits: RateLimits,
        *,
        name: str,
        bucket: str = "swarm_limits",
        timeout: float = 120.0,
    ) -> KVRateLimiter:
        """A limiter on the KV ``bucket`` of ``js`` (created if absent), keyed by ``name``."""
        try:
            kv = await js.key_value(bucket)
        except BucketNotFoundError:
            kv = await js.create_key_value(KeyValueConfig(bucket=bucket, history=1))
        return cls(kv, limits, name=name, timeout=timeout)

    def _refill(self, bucket: _Bucket, now: float) -> _Bucket:
        limits = self.limits
        elapsed = max(0.0, now - bucket.updated)
        requests = min(limits.requests, bucket.requests + elapsed * limits.requests / limits.period)
        cap = limits.tokens or 0.0
        tokens = min(cap, bucket.tokens + elapsed * cap / limits.period)
        return _Bucket(requests, tokens, max(now, bucket.updated))

    async def _take(self, tokens: int) -> float:
        """Spend the capacity if it is there (0.0), else the seconds until it may be."""
        limits = self.limits
        want = min(float(tokens), limits.tokens) if limits.tokens is not None else 0.0
        now = time.time()
        try:
            entry = await self._kv.get(self._key)
        except KeyNotFoundError:
            entry = None
        if entry is None or entry.value is None:
            bucket = _Bucket(limits.requests, limits.tokens or 0.0, now)
            revision = None
        else:
            bucket = self._refill(_decode(entry.value), now)
            revision = entry.revision
        if bucket.requests >= 1 and bucket.tokens >= want:
            spent = _Bucket(bucket.requests - 1, bucket.tokens - want, bucket.updated)
            try:
                if revision is None:
                    await self._kv.create(self._key, _encode(spent))
                else:
                    await self._kv.update(self._key, _encode(spent), last=revision)
            except KeyWrongLastSequenceError:  # also what create() raises on an existing key
                self.conflicts += 1
                return random.uniform(0.0, 0.01)  # lost the race: read again soon
            return 0.0
        rate_r = limits.requests / limits.period
        wait = (1 - bucket.requests) / rate_r
        if limits.tokens is not None:
            wait = max(wait, (want - bucket.tokens) / (limits.tokens / limits.period))
        return max(wait, 0.001)

    async def try_acquire(self, tokens: int = 0) -> bool:
        """Spend one request and ``tokens`` tokens if available now; whether it did."""
        while True:
            wait = await self._take(tokens)
            if wait == 0.0:
                return True
            if wait > 0.01:
                return False

    async def acquire(self, tokens: int = 0) -> None:
        """Spend one request and ``tokens`` tokens, waiting (with jitter) until they are there."""
        deadline = time.monotonic() + self._timeout
        while (wait := await self._take(tokens)) > 0.0:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"the shared rate limiter {self._key!r} admitted no call within "
                    f"{self._timeout} s"
                )
            # Full jitter up to the refill time: waiters across nodes spread out.
            await asyncio.sleep(min(left, random.uniform(wait * 0.5, wait * 1.5), 5.0))
