"""Shard leases: which node runs the virtual actors of each shard (see ``_placement``).

A JetStream key-value bucket, ``swarm_shards``, holds one key per owned shard (``s<n>``) whose
value is the owner's node id and incarnation. Every write carries a per-message TTL (the
node TTL), so a lease that is not renewed disappears from the server after the TTL (the bucket
places a delete marker that every node's watch sees).

* **Acquire**: a create-only write (fails if any node holds the key).
* **Renew**: every ``ttl / 3`` seconds, a write with the expected last revision (compare-and-set)
  and a fresh TTL. A renewal refused for its revision means another node holds the shard now:
  the shard is lost at once.
* **Self-fencing**: a node counts a lease as valid only until ``sent + ttl - margin``, where
  ``sent`` is when it *sent* its last successful renewal. The server measures the TTL from when
  it *received* that write, later, so a node stops serving a shard before the server lets any
  other node take it: at most one node runs a key, also when a node is cut off from NATS.
* **Balance**: live nodes (the ``swarm_nodes`` heartbeats) are sorted; node ``i`` of ``n`` aims
  at the contiguous shard range ``[i * S / n, (i + 1) * S / n)`` (contiguous, so that Hilbert
  neighbours stay together). Each round a node acquires the free shards of its range, and
  releases (hands over) shards of another live node's range: ``on_lost`` passivates their
  actors and persists their state, then the lease is deleted (compare-and-set), and that node
  acquires it on its next round. A free shard nobody claims for two rounds is taken by any
  node (views of the membership may differ for a moment).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import msgspec

from swarm_actors._exceptions import TransportError
from swarm_actors._log import get_logger
from swarm_actors._nats._placement import Placement
from swarm_actors._nats._registry import Registry, open_bucket, settled, watch_bucket

if TYPE_CHECKING:
    from nats.js.client import JetStreamContext
    from nats.js.kv import KeyValue

__all__ = ["SHARDS_BUCKET", "ShardLeases"]

_log = get_logger("swarm_actors.placement")

SHARDS_BUCKET = "swarm_shards"
_PLACEMENT_KEY = "placement"
HANDOVERS_PER_ROUND = 16
"""Shards a node hands over per round at most (a joining node takes its share gradually)."""
_WRONG_LAST_SEQUENCE = (10071, 10164)

OnLost = Callable[[list[int], bool], Awaitable[None]]


class _Owner(msgspec.Struct, array_like=True, frozen=True):
    node: str
    incarnation: str


_ENCODE = msgspec.msgpack.Encoder().encode
_DECODE_OWNER = msgspec.msgpack.Decoder(_Owner).decode
_DECODE_PLACEMENT = msgspec.msgpack.Decoder(Placement).decode


class _Lease:
    __slots__ = ("leaving", "revision", "until")

    def __init__(self, revision: int, until: float) -> None:
        self.revision = revision
        self.until = until
        self.leaving = False


class ShardLeases:
    """One node's leases, and its mirror of every shard's owner (see the module docstring).

    ``on_lost(shards, graceful)`` is awaited when this node gives shards up: ``graceful`` when
    it hands them over (their state can still be written), not when the lease was lost.
    """

    def __init__(
        self,
        js: JetStreamContext,
        registry: Registry,
        placement: Placement,
        ttl: float,
        on_lost: OnLost,
    ) -> None:
        self._js = js
        self._registry = registry
        self.node = registry.node
        self.placement = placement
        self.shards = placement.shards
        self._ttl = max(1, round(ttl))
        self._margin = max(0.2, self._ttl * 0.2)
        self._on_lost = on_lost
        self._value = _ENCODE(_Owner(registry.node, registry.incarnation))
        self._kv: KeyValue | None = None
        self._watch_sub: JetStreamContext.PushSubscription | None = None
        self.held: dict[int, _Lease] = {}
        self.owners: dict[int, str] = {}
        self.version = 0
        """Bumped on every change of ``owners`` (refs cache their route against it)."""
        self._changed: asyncio.Event = asyncio.Event()
        self._orphaned: dict[int, int] = {}  # free shard -> rounds seen free
        self._live_before: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._round_done: asyncio.Event = asyncio.Event()
        self.rounds = 0
        self._closing = False
        self._stop = asyncio.Event()

    # --- lifecycle --------------------------------------------------------------------------

    async def open(self) -> None:
        """Bind the bucket, check the cluster's placement, mirror the owners, start the loop."""
        self._kv = kv = await open_bucket(
            self._js, SHARDS_BUCKET, memory=False, replicas=self._registry.replicas, markers=True
        )
        await self._agree_on_placement(kv)
        self._watch_sub = await watch_bucket(self._js, SHARDS_BUCKET, self._apply)
        self._tasks.append(asyncio.get_running_loop().create_task(self._run()))

    async def _agree_on_placement(self, kv: KeyValue) -> None:
        from nats.js.errors import KeyWrongLastSequenceError

        mine = msgspec.msgpack.encode(self.placement)
        # Retried while the bucket, just created, has no server answering for it yet.
        with contextlib.suppress(KeyWrongLastSequenceError):
            await settled(lambda: kv.create(_PLACEMENT_KEY, mine))
            return
        theirs = await settled(lambda: kv.get(_PLACEMENT_KEY))
        try:
            placement = _DECODE_PLACEMENT(theirs.value or b"")
        except (msgspec.DecodeError, Exception) as exc:
            raise TransportError(f"the cluster's placement record is unreadable: {exc}") from None
        if placement != self.placement:
            raise TransportError(
                f"this node's placement {self.placement!r} differs from the cluster's "
                f"{placement!r}: every node must place virtual actors the same way"
            )

    async def close(self) -> None:
        """Hand every held shard over (passivating its actors), and stop."""
        # nats-py's publish can swallow a cancellation (it awaits its own futures): the flag
        # makes the loop stop at its next step whatever happens to the cancel.
        self._closing = True
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._watch_sub is not None:
            watch, self._watch_sub = self._watch_sub, None
            with contextlib.suppress(Exception):  # a closed connection: gone anyway
                await watch.unsubscribe()
        held = [s for s, lease in self.held.items() if not lease.leaving]
        if held:
            await self._release(held)

    # --- reading (hot path) -----------------------------------------------------------------

    def valid(self, shard: int) -> bool:
        """Whether this node may run the actors of ``shard`` now."""
        lease = self.held.get(shard)
        return lease is not None and not lease.leaving and time.monotonic() < lease.until

    def owner(self, shard: int) -> str | None:
        """The node holding ``shard`` as this node last heard (``None``: free)."""
        return self.owners.get(shard)

    async def changed(self) -> None:
        """Wait for the next change of an owner or of this node's leases."""
        await self._changed.wait()

    async def next_round(self) -> None:
        """Wait until the balancing loop has finished one more round (tests, start-up)."""
        self._round_done.clear()
        await self._round_done.wait()

    # --- the loop ---------------------------------------------------------------------------

    async def _run(self) -> None:
        period = self._ttl / 3
        while not self._closing:
            started = time.monotonic()
            try:
                await self._renew_all()
                await self._balance()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS unavailable for a moment: the next round retries
                _log.warning("placement.round_failed", node=self.node, error=repr(exc))
            await self._fence_expired()
            self.rounds += 1
            self._round_done.set()
            self._notify()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.05, period - (time.monotonic() - started))):
                    await self._stop.wait()

    async def _renew_all(self) -> None:
        shards = [s for s, lease in self.held.items() if not lease.leaving]
        results = await asyncio.gather(*(self._renew(s) for s in shards), return_exceptions=True)
        lost = [s for s, ok in zip(shards, results, strict=True) if ok is False]
        if lost:
            _log.warning("placement.lease_lost", node=self.node, shards=lost)
            await self._drop(lost, graceful=False)

    async def _renew(self, shard: int) -> bool:
        """``False`` if another node holds the shard now; raises if NATS did not answer."""
        from nats.js.errors import APIError

        lease = self.held[shard]
        sent = time.monotonic()
        headers = {"Nats-Expected-Last-Subject-Sequence": str(lease.revision)}
        try:
            ack = await self._js.publish(
                f"$KV.{SHARDS_BUCKET}.s{shard}",
                self._value,
                headers=headers,
                msg_ttl=self._ttl,
                timeout=self._ttl / 4,
            )
        except APIError as exc:
            if exc.err_code in _WRONG_LAST_SEQUENCE:
                return False
            raise
        lease.revision = ack.seq
        lease.until = sent + self._ttl - self._margin
        return True

    async def _fence_expired(self) -> None:
        now = time.monotonic()
        expired = [s for s, lease in self.held.items() if not lease.leaving and lease.until <= now]
        if expired:
            _log.error("placement.fenced", node=self.node, shards=expired, reason="not renewed")
            await self._drop(expired, graceful=False)

    async def _balance(self) -> None:
        live = await self._registry.live_nodes() | {self.node}
        order = sorted(live)
        count, shards = len(order), self.shards

        def ideal(shard: int) -> str:
            return order[shard * count // shards]

        for shard in range(shards):
            if self._closing:
                return
            if shard in self.held:
                continue
            if self.owners.get(shard) is not None:
                self._orphaned.pop(shard, None)
                continue
            rounds = self._orphaned.get(shard, 0)
            if ideal(shard) == self.node or rounds >= 2:
                await self._acquire(shard)
            else:
                self._orphaned[shard] = rounds + 1
        stable = live & self._live_before  # live in the previous round too
        self._live_before = live
        handover = [
            s
            for s, lease in self.held.items()
            if not lease.leaving and ideal(s) != self.node and ideal(s) in stable
        ][:HANDOVERS_PER_ROUND]
        if handover and not self._closing:
            await self._release(handover)

    async def _acquire(self, shard: int) -> None:
        from nats.js.errors import KeyWrongLastSequenceError

        assert self._kv is not None
        sent = time.monotonic()
        try:
            revision = await self._kv.create(f"s{shard}", self._value, msg_ttl=self._ttl)
        except KeyWrongLastSequenceError:
            return  # another node was first
        if self._closing:  # closed while acquiring: give it back at once
            with contextlib.suppress(Exception):
                await self._kv.delete(f"s{shard}", last=revision)
            return
        self.held[shard] = _Lease(revision, sent + self._ttl - self._margin)
        self._orphaned.pop(shard, None)
        self._set_owner(shard, self.node)
        _log.debug("placement.acquired", node=self.node, shard=shard)

    async def _release(self, shards: list[int]) -> None:
        """Hand ``shards`` over: passivate and persist their actors, then delete the leases."""
        await self._give_up(shards, handover=True)
        _log.info("placement.handed_over", node=self.node, shards=shards)

    async def _drop(self, shards: list[int], *, graceful: bool) -> None:
        """The leases of ``shards`` are lost (taken, or not renewed in time): stop serving."""
        await self._give_up(shards, handover=graceful)

    async def _give_up(self, shards: list[int], *, handover: bool) -> None:
        for shard in shards:
            self.held[shard].leaving = True  # valid() is false from here on
        self._notify()
        try:
            await self._on_lost(shards, handover)
        finally:
            for shard in shards:
                lease = self.held.pop(shard, None)
                if handover and lease is not None and self._kv is not None:
                    try:
                        await self._kv.delete(f"s{shard}", last=lease.revision)
                    except Exception as exc:  # expired or taken meanwhile: the TTL cleans up
                        _log.debug("placement.release_failed", shard=shard, error=repr(exc))
                if self.owners.get(shard) == self.node:
                    self._set_owner(shard, None)

    # --- the mirror -------------------------------------------------------------------------

    def _apply(self, key: str, value: bytes, operation: str | None, revision: int) -> None:
        if not key.startswith("s") or not key[1:].isdigit():
            return
        shard = int(key[1:])
        if operation is not None or not value:  # released, or expired (delete marker)
            if shard not in self.held:
                self._set_owner(shard, None)
            return
        try:
            owner = _DECODE_OWNER(value)
        except msgspec.DecodeError:
            _log.warning("placement.bad_lease", shard=shard)
            return
        if shard not in self.held or owner.node == self.node:
            self._set_owner(shard, owner.node)

    def _set_owner(self, shard: int, node: str | None) -> None:
        if self.owners.get(shard) == node:
            return
        if node is None:
            del self.owners[shard]
        else:
            self.owners[shard] = node
        self.version += 1
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
