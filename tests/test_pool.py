"""Pools: routing, resize without loss, supervision, broadcast, bad input, across processes."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from collections.abc import Sequence
from typing import Any, cast

import msgspec
import pytest

from helpers import Add, Fail, Get, unique, until
from pool_peer import Relay, UsePool, Where, Worker, pool_peer
from swarm_actors import (
    Actor,
    ActorDeadError,
    ActorRef,
    ActorSystem,
    AllForOne,
    Directive,
    InvalidArgumentError,
    MessageCapabilityError,
    OneForOne,
    PoolRef,
    Ref,
    handler,
)
from swarm_actors._core._pool import VNODES, HashRing, key_hash
from swarm_actors._nats._pool import PlacedMembers
from swarm_actors.cluster import Cluster, PlacedRef, RemoteRef
from swarm_actors.errors import NotConnectedError
from swarm_actors.testing import NatsServer
from transport_peer import Tally


class Job(msgspec.Struct):
    user: str = ""


class Hold(msgspec.Struct):
    """Handled by waiting for the gate the member was made with."""


class Member(Actor):
    """Counts its messages, answers with its path, and can be held at a gate or made to fail."""

    def __init__(self, gate: asyncio.Event | None = None, log: list[str] | None = None) -> None:
        self.gate = gate
        self.log = log if log is not None else []
        self.total = 0

    @handler
    async def job(self, msg: Job) -> str:
        self.log.append(msg.user)
        return self.ref.path

    @handler
    async def add(self, msg: Add) -> None:
        self.total += msg.n

    @handler
    async def get(self, msg: Get) -> int:
        return self.total

    @handler
    async def hold(self, msg: Hold) -> None:
        assert self.gate is not None
        await self.gate.wait()

    @handler
    async def fail(self, msg: Fail) -> None:
        raise RuntimeError("member failed")


class Slow(Actor):
    """A handler that awaits a millisecond, as one awaiting I/O does."""

    def __init__(self, done: list[int]) -> None:
        self.done = done

    @handler
    async def add(self, msg: Add) -> None:
        await asyncio.sleep(0.001)
        self.done.append(msg.n)


def paths(refs: list[Ref[Any]]) -> list[str]:
    return [r.path for r in refs]


def local(pool: PoolRef[Any]) -> list[ActorRef[Any]]:
    """The members of a pool of this process (``ActorRef``\\ s, with ``stats`` and ``stop``)."""
    members = pool.members
    assert all(isinstance(m, ActorRef) for m in members)
    return cast("list[ActorRef[Any]]", members)


def alive(ref: Ref[Any]) -> bool:
    """``is_alive`` as a call (mypy does not keep a property's narrowing across awaits)."""
    return ref.is_alive


# --- routing -------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_round_robin_takes_the_members_in_turn() -> None:
    async with ActorSystem() as system:
        pool = await system.pool(Member, size=4)
        assert isinstance(pool, Ref)
        assert pool.routing == "round_robin"
        assert len(pool.members) == 4
        assert all(m.path.startswith(pool.path + "/") for m in pool.members)
        answers = [await pool.ask(Job()) for _ in range(12)]
        assert answers == paths(pool.members) * 3
        for _ in range(8):
            pool.tell_nowait(Add(1))
            await pool.tell(Add(1))
        assert [await m.ask(Get()) for m in pool.members] == [4, 4, 4, 4]


@pytest.mark.asyncio
async def test_least_busy_picks_the_shortest_mailbox() -> None:
    gate = asyncio.Event()
    async with ActorSystem() as system:
        pool = await system.pool(Member, gate, size=3, routing="least_busy")
        first, _second, _third = local(pool)
        for _ in range(3):  # one each: an idle member is the least busy
            await pool.tell(Hold())
        await until(lambda: all(m._cell.busy for m in local(pool)), what="all members busy")
        await first.tell(Job())
        await first.tell(Job())  # first: busy + 2 queued; the others: busy + 0
        for _ in range(4):
            await pool.tell(Job())
        assert [m.stats().pending for m in local(pool)] == [2, 2, 2]
        await pool.tell(Job())
        assert sum(m.stats().pending for m in local(pool)) == 7
        gate.set()


def test_the_ring_moves_only_the_keys_of_the_member_that_came_or_went() -> None:
    keys = [f"user-{n}" for n in range(20_000)]
    eight = [f"m{n}" for n in range(8)]
    before = HashRing.hashed(eight)
    owner = {k: eight[before.owner(key_hash(k))] for k in keys}
    share = Counter(owner.values())
    assert all(len(keys) / 8 * 0.6 < count < len(keys) / 8 * 1.4 for count in share.values())

    nine = [*eight, "m8"]
    after = HashRing.hashed(nine)
    moved = {
        k: nine[after.owner(key_hash(k))]
        for k in keys
        if nine[after.owner(key_hash(k))] != owner[k]
    }
    assert set(moved.values()) == {"m8"}  # every key that moved went to the new member
    assert 0.05 < len(moved) / len(keys) < 0.2  # about 1/9 of them

    seven = [s for s in eight if s != "m3"]
    fewer = HashRing.hashed(seven)
    for k in keys:
        now = seven[fewer.owner(key_hash(k))]
        assert now == owner[k] or owner[k] == "m3"  # only the removed member's keys moved
    assert VNODES >= 32


@pytest.mark.asyncio
async def test_consistent_hash_keeps_a_key_on_its_member_across_a_resize() -> None:
    async with ActorSystem() as system:
        pool = await system.pool(Member, size=4, routing="consistent_hash", key=lambda m: m.user)
        users = [f"u{n}" for n in range(200)]
        before = {u: await pool.ask(Job(u)) for u in users}
        assert len(set(before.values())) == 4
        assert [await pool.ask(Job(u)) for u in users[:20]] == [before[u] for u in users[:20]]
        await pool.resize(5)
        new = pool.members[-1].path
        after = {u: await pool.ask(Job(u)) for u in users}
        moved = [u for u in users if after[u] != before[u]]
        assert moved
        assert all(after[u] == new for u in moved)
        assert len(moved) < len(users) / 2
        # Integer and bytes keys hash too; anything else is refused, nothing sent.
        ints = await system.pool(
            Member, size=2, routing="consistent_hash", key=lambda m: len(m.user)
        )
        assert await ints.ask(Job("abc")) == await ints.ask(Job("xyz"))
        floats = await system.pool(Member, size=2, routing="consistent_hash", key=lambda m: 1.5)
        with pytest.raises(InvalidArgumentError, match="str, bytes or int"):
            await floats.tell(Job())


# --- resize, broadcast, stop ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_shrinking_drains_the_retired_members_and_loses_nothing() -> None:
    done: list[int] = []
    async with ActorSystem() as system:
        pool = await system.pool(Slow, done, size=8)
        for n in range(400):
            await pool.tell(Add(n))
        assert sum(m.stats().pending for m in local(pool)) > 0  # still queued when we shrink
        retired = local(pool)[2:]
        sending = asyncio.ensure_future(
            asyncio.gather(*(pool.tell(Add(n)) for n in range(400, 500)))
        )
        await pool.resize(2)
        await sending
        assert not any(m.is_alive for m in retired)
        assert [m.stats().dropped for m in retired] == [0] * 6
        assert len(pool.members) == 2
        await until(lambda: len(done) == 500, what="every message handled")
        assert sorted(done) == list(range(500))
        await pool.resize(6)
        assert len(pool.members) == 6
        assert await pool.broadcast(Add(1000)) == 6
        await until(lambda: len(done) == 506, what="the broadcast handled by all")


@pytest.mark.asyncio
async def test_broadcast_reaches_every_member() -> None:
    async with ActorSystem() as system:
        pool = await system.pool(Member, size=5, routing="least_busy")
        assert await pool.broadcast(Add(3)) == 5
        assert [await m.ask(Get()) for m in pool.members] == [3] * 5


@pytest.mark.asyncio
async def test_a_stopped_pool_refuses_messages() -> None:
    async with ActorSystem() as system:
        pool = await system.pool(Member, size=2)
        members = pool.members
        assert alive(pool)
        assert await pool.stop() == 0
        assert not alive(pool)
        assert not any(m.is_alive for m in members)
        with pytest.raises(ActorDeadError):
            await pool.tell(Job())
        with pytest.raises(ActorDeadError):
            await pool.ask(Job())
        with pytest.raises(ActorDeadError):
            await pool.resize(3)
        with pytest.raises(TypeError, match="can be sent"):
            pool.__swarm_wire__(None)  # type: ignore[arg-type]


# --- supervision ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_crashing_member_is_restarted_and_the_pool_keeps_routing() -> None:
    async with ActorSystem() as system:
        pool = await system.pool(Member, size=2)
        first = local(pool)[0]
        await first.tell(Fail())
        await until(lambda: first.stats().restarts == 1, what="the member restarted")
        assert paths(pool.members) == [first.path, pool.members[1].path]
        assert sorted([await pool.ask(Job()) for _ in range(4)]) == sorted(paths(pool.members) * 2)


@pytest.mark.parametrize(
    "supervision",
    [OneForOne(max_restarts=0), OneForOne(decider=lambda exc: Directive.STOP)],
    ids=["restarts-exhausted", "stop"],
)
@pytest.mark.parametrize("routing", ["round_robin", "consistent_hash"])
@pytest.mark.asyncio
async def test_a_member_that_stops_is_replaced_and_its_queue_kept(
    supervision: OneForOne, routing: str
) -> None:
    gate = asyncio.Event()
    key = (lambda m: "k") if routing == "consistent_hash" else None
    async with ActorSystem() as system:
        pool = await system.pool(
            Member, gate, size=2, routing=routing, key=key, supervision=supervision
        )
        doomed = local(pool)[0] if routing == "round_robin" else None
        if doomed is None:  # the member of key "k"
            path = await pool.ask(Job("k"))
            doomed = next(m for m in local(pool) if m.path == path)
        await doomed.tell(Hold())
        await doomed.tell(Fail())
        asks = [asyncio.ensure_future(doomed.ask(Job(f"q{n}"))) for n in range(3)]
        await until(lambda: doomed.stats().pending == 4, what="the asks queued behind the failure")
        gate.set()
        answers = await asyncio.gather(*asks)  # answered by another member or the replacement
        assert doomed.path not in answers
        assert not doomed.is_alive
        await until(lambda: len(pool.members) == 2, what="the member replaced")
        assert doomed not in pool.members
        if routing == "consistent_hash":  # the replacement took its slot: its key came back
            assert set(answers) == {await pool.ask(Job("k"))}


@pytest.mark.asyncio
async def test_a_member_stopped_by_hand_is_routed_around_then_replaced() -> None:
    async with ActorSystem() as system:
        pool = await system.pool(Member, size=3)
        gone = local(pool)[1]
        await gone.stop()
        for _ in range(6):
            assert await pool.ask(Job()) != gone.path
        await until(lambda: len(pool.members) == 3, what="the member replaced")


class SlowStart(Member):
    """A member whose ``on_start`` suspends: starts interleave with everything else."""

    async def on_start(self) -> None:
        await asyncio.sleep(0.001)


@pytest.mark.asyncio
async def test_all_for_one_restarts_every_member() -> None:
    async with ActorSystem() as system:
        pool = await system.pool(Member, size=3, supervision=AllForOne())
        await local(pool)[1].tell(Fail())
        await until(
            lambda: [m.stats().restarts for m in local(pool)] == [1, 1, 1],
            what="every member restarted",
        )


@pytest.mark.asyncio
async def test_concurrent_resizes_and_replacements_keep_the_size_exact() -> None:
    async with ActorSystem() as system:
        pool = await system.pool(SlowStart, size=3)

        async def settled(size: int) -> None:
            await until(lambda: not system._tasks, what="replacements done")
            assert len(pool.members) == size
            assert len(system.actors()) == 1 + size  # the supervisor and its members, no more

        # Each resize counts the members it finds, and a replacement only fills a gap.
        await asyncio.gather(pool.resize(5), pool.resize(5), local(pool)[0].stop())
        await settled(5)
        await asyncio.gather(pool.resize(2), local(pool)[3].stop())
        await settled(2)
        await asyncio.gather(pool.resize(4), local(pool)[1].stop(), pool.resize(3))
        await settled(3)


class Gated(Actor, may_message=("reviewer",)):
    """An actor that may only message reviewers, sending to a pool of members."""

    def __init__(self, pool: PoolRef[Any]) -> None:
        self.pool = pool

    @handler
    async def job(self, msg: Job) -> None:
        await self.pool.tell(Add(1))


@pytest.mark.asyncio
async def test_a_senders_may_message_grant_applies_through_the_pool() -> None:
    async with ActorSystem() as system:
        pool = await system.pool(Member, size=2)
        gated = await system.start(Gated, pool)
        with pytest.raises(MessageCapabilityError):
            await gated.ask(Job())
        assert [await m.ask(Get()) for m in pool.members] == [0, 0]  # nothing was sent


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "fix"),
    [
        ({"size": 0}, "size must be an int >= 1"),
        ({"size": -2}, "size must be an int >= 1"),
        ({"size": True}, "size must be an int >= 1"),
        ({"size": 2.0}, "size must be an int >= 1"),
        ({"routing": "random"}, "routing must be one of"),
        ({"routing": "consistent_hash"}, "needs key="),
        ({"routing": "least_busy", "key": len}, "key= is for"),
        ({"supervision": "restart"}, "supervision must be"),
        ({"name": "a~b"}, "without '~'"),
        ({"name": ""}, "name must be"),
        ({"placed": True}, "placed=True needs name="),
    ],
)
@pytest.mark.asyncio
async def test_a_pool_that_cannot_be_made_is_refused(options: dict[str, Any], fix: str) -> None:
    async with ActorSystem() as system:
        with pytest.raises(InvalidArgumentError, match=fix):
            await system.pool(Member, **options)
        assert system.actors() == []  # nothing was started


@pytest.mark.asyncio
async def test_more_bad_input() -> None:
    async with ActorSystem() as system:
        with pytest.raises(TypeError, match="Actor subclass"):
            await system.pool(int, size=2)  # type: ignore[type-var]
        with pytest.raises(NotConnectedError, match="nats="):
            await system.pool(Member, size=2, name="p", placed=True)
        pool = await system.pool(Member, size=2)
        for bad in (0, -1, "3"):
            with pytest.raises(InvalidArgumentError, match="size must be"):
                await pool.resize(bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError, match="timeout"):
            await pool.ask(Job(), timeout=-1)
        assert len(pool.members) == 2


# --- across nodes --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_named_pool_spans_os_processes(nats_server: NatsServer) -> None:
    name, first, second = unique("pool"), unique("peer"), unique("peer")
    async with ActorSystem(nats=nats_server.url, cluster=Cluster(node=unique("main"))) as system:
        pool = await system.pool(Worker, size=2, name=name)
        assert pool.path == f"/{name}~{system.node}"
        async with (
            pool_peer(nats_server.url, first, name, 2, ttl=1.0) as one,
            pool_peer(nats_server.url, second, name, 1, ttl=1.0) as two,
        ):
            await until(lambda: len(pool.members) == 5, what="the peers' members joined")
            remote = [m for m in pool.members if isinstance(m, RemoteRef)]
            assert [m.node for m in remote] == sorted([first, first, second])
            asked = [await pool.ask(Where(), timeout=10.0) for _ in range(10)]
            assert Counter(node for node, _ in asked) == {system.node: 4, first: 4, second: 2}
            assert await pool.broadcast(Where()) == 5

            # Killed: asks to its members are refused at once (nobody listens on its subject),
            # and go to other members; the pool stops routing to it.
            one.send_signal(signal.SIGKILL)
            await one.wait()
            for _ in range(10):
                node, _ = await pool.ask(Where(), timeout=10.0)
                assert node != first
            assert first not in {getattr(m, "node", None) for m in pool.members}

            # Killed with no traffic: its members drop out once its heartbeat expires.
            two.send_signal(signal.SIGKILL)
            await two.wait()
            await until(lambda: len(pool.members) == 2, what="the dead node's members dropped")
            assert all(not isinstance(m, RemoteRef) for m in pool.members)
            for _ in range(4):
                node, _ = await pool.ask(Where(), timeout=10.0)
                assert node == system.node


@pytest.mark.asyncio
async def test_a_member_that_leaves_cleanly_drops_out_at_once(nats_server: NatsServer) -> None:
    name = unique("pool")
    async with ActorSystem(nats=nats_server.url, cluster=Cluster(node=unique("main"))) as system:
        pool = await system.pool(
            Worker, size=1, name=name, routing="consistent_hash", key=lambda m: m.user
        )
        async with pool_peer(nats_server.url, unique("peer"), name, 3, ttl=1.0) as peer:
            await until(lambda: len(pool.members) == 4, what="the peer's members joined")
            where = {u: await pool.ask(Where(u), timeout=10.0) for u in ("a", "b", "c", "d", "e")}
            assert where == {u: await pool.ask(Where(u), timeout=10.0) for u in where}
            assert len(set(where.values())) > 1  # spread over the members
            assert peer.stdin is not None
            peer.stdin.close()
            assert await asyncio.wait_for(peer.wait(), 15.0) == 0
            await until(lambda: len(pool.members) == 1, what="the names released")
            assert {await pool.ask(Where(u), timeout=10.0) for u in where} == {
                (system.node, pool.members[0].path)
            }


@pytest.mark.asyncio
async def test_every_node_sends_a_key_to_the_same_member(nats_server: NatsServer) -> None:
    name = unique("pool")
    async with (
        ActorSystem(nats=nats_server.url, cluster=Cluster(node=unique("a"))) as one,
        ActorSystem(nats=nats_server.url, cluster=Cluster(node=unique("b"))) as two,
    ):
        pools = [
            await system.pool(
                Worker, size=3, name=name, routing="consistent_hash", key=lambda m: m.user
            )
            for system in (one, two)
        ]
        await until(lambda: [len(p.members) for p in pools] == [6, 6], what="all members")
        users = [f"user-{n}" for n in range(40)]
        here = [await pools[0].ask(Where(u), timeout=10.0) for u in users]
        there = [await pools[1].ask(Where(u), timeout=10.0) for u in users]
        assert here == there
        assert {node for node, _ in here} == {one.node, two.node}


@pytest.mark.asyncio
async def test_a_named_pool_travels_in_a_message(nats_server: NatsServer) -> None:
    name, relay_name = unique("pool"), unique("relay")
    async with (
        ActorSystem(nats=nats_server.url, cluster=Cluster(node=unique("a"))) as one,
        ActorSystem(nats=nats_server.url, cluster=Cluster(node=unique("b"))) as two,
    ):
        pool = await one.pool(Worker, size=2, name=name, routing="least_busy")
        await two.start(Relay, name=relay_name)
        relay = await one.resolve(relay_name, timeout=10.0)
        answers = await relay.ask(UsePool(pool, 4), timeout=10.0)
        assert sorted(map(tuple, answers)) == sorted((one.node, m.path) for m in pool.members * 2)
        # The other node opens the pool too: a view received on either node routes over all.
        theirs = await two.pool(Worker, size=1, name=name)
        await until(lambda: len(pool.members) == 3, what="the other node's member")
        answers = await relay.ask(UsePool(theirs, 6), timeout=10.0)
        assert Counter(node for node, _ in answers) == {one.node: 4, two.node: 2}
        # A pool whose members another process cannot reach, or whose key cannot travel.
        unnamed = await one.pool(Worker, size=1)
        hashed = await one.pool(
            Worker, size=1, name=unique("h"), routing="consistent_hash", key=lambda m: m.user
        )
        for unsendable in (unnamed, hashed):
            with pytest.raises(TypeError, match="can be sent"):
                await relay.ask(UsePool(unsendable, 1), timeout=10.0)


@pytest.mark.asyncio
async def test_a_placed_pool_hashes_positions_on_the_hilbert_curve(nats_server: NatsServer) -> None:
    name = unique("placed")
    async with (
        ActorSystem(nats=nats_server.url, cluster=Cluster(node=unique("a"))) as one,
        ActorSystem(nats=nats_server.url, cluster=Cluster(node=unique("b"))) as two,
    ):

        def position(m: Add) -> tuple[int, ...]:
            return (5, m.n) if m.n >= 0 else (5,)

        here = await one.pool(
            Tally, size=4, name=name, placed=True, routing="consistent_hash", key=position
        )
        there = await two.pool(
            Tally, size=4, name=name, placed=True, routing="consistent_hash", key=position
        )
        assert all(isinstance(m, PlacedRef) for m in here.members)
        assert here.members == there.members  # the same actors from both nodes
        # A parent and its eight children land on one member, from either node.
        totals = [await here.ask(Add(1), timeout=10.0) for _ in range(3)]
        totals += [await there.ask(Add(c), timeout=10.0) for c in range(8)]
        totals.append(await here.ask(Add(-1), timeout=10.0))
        assert totals == [1, 2, 3, 3, 4, 6, 9, 13, 18, 24, 31, 30]
        # The member sits where its stretch of the curve begins.
        source = cast("PlacedMembers", here._source)
        member = here.members[here._pick(Add(0))]
        assert isinstance(member, PlacedRef)
        assert member.position is not None
        assert source.index(member.position) <= source.index(position(Add(3)))

        def keys_of(pool: PoolRef[Any], positions: Sequence[tuple[int, ...]]) -> dict[Any, str]:
            ring = pool._ring
            assert ring is not None
            members = cast("list[PlacedRef[Any]]", pool.members)
            return {p: members[ring.owner(source.index(p))].key for p in positions}

        # Growing adds one point to the curve: only keys of one member's arc move, to the new one.
        keys = [(a, b, c) for a in range(8) for b in range(8) for c in range(8)]
        owner = keys_of(here, keys)
        await here.resize(5)
        assert len(here.members) == 5
        new = cast("PlacedRef[Any]", here.members[-1]).key
        after = keys_of(here, keys)
        moved = {k for k in keys if after[k] != owner[k]}
        assert moved
        assert all(after[k] == new for k in moved)
        assert len(moved) == len(keys) // 8  # half of one quarter of the curve
