"""Placement of virtual actors across nodes: Hilbert shards, leases, handover, node death."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections import Counter as Histogram
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import msgspec
import pytest
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.js.errors import KeyNotFoundError

from helpers import Add, Get, unique, until, until_async
from nats_sync import observe
from swarm_actors import Actor, ActorSystem, InvalidArgumentError, Passivation, handler
from swarm_actors._nats._cluster import parse_target, virtual_target
from swarm_actors._nats._placement import check_position
from swarm_actors._nats._registry import name_key
from swarm_actors._nats._shards import SHARDS_BUCKET
from swarm_actors._nats._transport import live_subject
from swarm_actors.cluster import Cluster, PlacedRef, Placement
from swarm_actors.errors import NotConnectedError, TransportError
from swarm_actors.hilbert import hilbert_encode
from swarm_actors.testing import NatsServer
from transport_peer import Tally, peer

TTL = 2.0  # short leases: rounds every 2/3 s, a dead node's shards free after 2 s


def tree(depth: int, branching: int) -> list[tuple[int, ...]]:
    """Every path of a full tree, the root included."""
    paths: list[tuple[int, ...]] = [()]
    for level in range(1, depth + 1):
        paths += list(itertools.product(range(branching), repeat=level))
    return paths


def same_shard_share(placement: Placement, paths: list[tuple[int, ...]]) -> float:
    """Share of (child -> sibling or parent) pairs whose two ends share a shard."""
    shard = {p: placement.shard("W", "/".join(map(str, p)), p) for p in paths}
    same = total = 0
    for path in paths:
        if not path:
            continue
        parent = path[:-1]
        branching = max(q[-1] for q in paths if len(q) == len(path)) + 1
        for other in [*[(*parent, i) for i in range(branching) if i != path[-1]], parent]:
            total += 1
            same += shard[other] == shard[path]
    return same / total


# --- the placement function ---------------------------------------------------------------


def test_placement_rejects_bad_configurations() -> None:
    for bad in (
        {"shards": 48},
        {"shards": 0},
        {"shards": 8192},
        {"strategy": "random"},
        {"dims": 0},
        {"dims": 3, "bits": 64},
        {"level_bits": 0},
        {"shards": 64, "dims": 1, "bits": 4},
    ):
        with pytest.raises(InvalidArgumentError):
            Placement(**bad)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"shards": 48}, "shards must be a power of two, 1-4096, got 48"),
        ({"shards": 4097}, "shards must be a power of two"),
        ({"shards": True}, "shards must be a power of two"),
        ({"strategy": "random"}, 'strategy must be "hilbert" or "hash", got \'random\''),
        ({"dims": 2.0}, "dims, bits and level_bits must be ints"),
        ({"bits": 8.0}, "dims, bits and level_bits must be ints"),
        ({"level_bits": 3.0}, "dims, bits and level_bits must be ints"),
        ({"bits": 0}, "need dims >= 1, 1 <= bits <= 64 and dims \\* bits <= 128, got 3, 0"),
        ({"bits": 65, "dims": 1}, "need dims >= 1"),
        ({"dims": 3, "bits": 43}, "need dims >= 1"),
        ({"level_bits": 25}, "level_bits must be 1 to dims \\* bits, got 25"),
        ({"shards": 16, "dims": 1, "bits": 3}, "more shards than cells of the Hilbert grid"),
    ],
)
def test_placement_names_what_is_wrong(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=f"^{message}"):
        Placement(**settings)


def test_placement_accepts_its_boundaries() -> None:
    for settings in (
        {"shards": 1},
        {"shards": 4096},
        {"dims": 1, "bits": 64},
        {"dims": 2, "bits": 64},  # dims * bits = 128
        {"level_bits": 24},  # dims * bits
        {"level_bits": 1},
        {"shards": 8, "dims": 1, "bits": 3},  # as many shards as cells
        {"shards": 2, "dims": 1, "bits": 1, "level_bits": 1},  # the coarsest grid: one bit
        {"shards": 8, "dims": 3, "bits": 1, "level_bits": 3},
    ):
        Placement(**cast(dict[str, Any], settings))


def spec_point(placement: Placement, position: tuple[int, ...]) -> tuple[int, ...]:
    """The module docstring's rule, written out: path bits dealt round-robin to the axes."""
    total = placement.dims * placement.bits
    level = placement.level_bits
    path = "".join(format(o % (1 << level), f"0{level}b") for o in position)
    path = path[:total].ljust(total, "0")
    coords = [0] * placement.dims
    for j, bit in enumerate(path):
        if bit == "1":
            coords[j % placement.dims] |= 1 << (placement.bits - 1 - j // placement.dims)
    return tuple(coords)


@pytest.mark.parametrize(
    "placement",
    [Placement(), Placement(level_bits=2), Placement(dims=2, bits=5, level_bits=4, shards=16)],
)
def test_a_position_maps_to_the_grid_point_its_path_spells(placement: Placement) -> None:
    rng = random.Random(11)
    for _ in range(300):
        position = tuple(rng.randrange(40) for _ in range(rng.randrange(12)))
        point = placement.point(position)
        assert point == spec_point(placement, position), position
        top = placement.dims * placement.bits - (placement.shards.bit_length() - 1)
        assert placement.shard("W", "k", position) == hilbert_encode(point, placement.bits) >> top
    assert Placement().point((3, 1)) == (0, 128, 192)
    assert Placement().point((7,) * 9) == (255, 255, 255)  # deeper levels share the cell
    assert Placement(level_bits=2).point((3, 1, 2)) == (192, 192, 0)  # 3 wraps to 2 bits


def test_shards_are_the_same_in_every_process() -> None:
    placement = Placement()
    # Pinned values: a change here moves every stored actor to another shard.
    assert [placement.shard("W", f"user-{i}") for i in range(4)] == [4, 51, 60, 7]
    assert placement.shard("transport_peer:Tally", "team-3", (3, 1)) == 17
    assert Placement(strategy="hash").shard("W", "user-1", (3, 1)) == 51  # position ignored
    assert Placement(shards=1).shard("W", "x", (5,)) == 0
    assert Placement(shards=4096).shard("W", "x", (7, 7, 7, 7)) == 2925


def test_positions_are_checked() -> None:
    assert check_position(None) is None
    assert check_position([1, 0, 2]) == (1, 0, 2)
    assert check_position(()) == ()
    bad: object
    for bad in ("12", b"12", 12, {1: 2}):
        with pytest.raises(InvalidArgumentError, match=r"^position must be a sequence"):
            check_position(bad)
    for bad in ([1, -1], [1, 2.0], [True]):
        with pytest.raises(InvalidArgumentError, match=r"^position must hold non-negative ints"):
            check_position(bad)


def test_hilbert_placement_keeps_families_together_and_hash_does_not() -> None:
    paths = tree(4, 8)  # 4,681 actors, as in the locality benchmark
    hilbert = same_shard_share(Placement(shards=64), paths)
    hashed = same_shard_share(Placement(shards=64, strategy="hash"), paths)
    assert hilbert > 0.95
    assert hashed < 0.05  # about 1/64
    # Every shard gets work: the tree's leaves cover the grid.
    used = Histogram(Placement(shards=64).shard("W", "", p) for p in paths)
    assert len(used) == 64
    assert max(used.values()) < 3 * len(paths) / 64


def test_positions_are_subtrees_of_the_grid() -> None:
    placement = Placement(shards=64)
    # A node and all its descendants two levels down share the node's top 6 bits = one shard.
    for top in itertools.product(range(8), repeat=2):
        shards = {placement.shard("W", "", top + rest) for rest in tree(2, 8)}
        assert len(shards) == 1
    # Keys without a position spread by hash, the same in every process (not Python's hash).
    keys = [placement.shard("W", f"user-{i}") for i in range(6400)]
    assert keys[:3] == [Placement(shards=64).shard("W", f"user-{i}") for i in range(3)]
    assert min(Histogram(keys).values()) > 50


def test_virtual_targets_round_trip_and_refuse_garbage() -> None:
    name = "transport_peer:Tally"
    for position in (None, (), (3, 1, 4)):
        target = virtual_target(name, "a~b c", position)
        assert parse_target(target) == (Tally, "a~b c", position)
    for bad in ("~nope:Cls~-~k", "~transport_peer:Tally~-~", "~transport_peer:Tally~x.1~k", "~"):
        with pytest.raises(ValueError, match=r"actor class|empty key|invalid literal|not enough"):
            parse_target(bad)


# --- one and two nodes --------------------------------------------------------------------


class Where(msgspec.Struct):
    pass


@asynccontextmanager
async def node(
    url: str,
    name: str,
    *,
    ttl: float = TTL,
    placement: Placement | None = None,
    passivation: Passivation | None = None,
) -> AsyncIterator[ActorSystem]:
    cluster = Cluster(node=name, node_ttl=ttl, placement=placement or Placement())
    async with ActorSystem(nats=url, cluster=cluster, passivation=passivation) as system:
        yield system


def placed(ref: Any) -> PlacedRef[Any]:
    assert isinstance(ref, PlacedRef)
    return ref


def place(system: ActorSystem, key: str) -> PlacedRef[Any]:
    return placed(system.placed(Tally, key))


def leases(system: ActorSystem) -> Any:
    assert system._transport is not None
    assert system._transport.cluster is not None
    return system._transport.cluster.leases


@asynccontextmanager
async def two_nodes(
    ttl: float = TTL,
) -> AsyncIterator[tuple[NatsServer, ActorSystem, ActorSystem]]:
    """A server and nodes ``a`` and ``b``, once they hold shards 0-31 and 32-63 (name order)."""
    async with (
        NatsServer() as server,
        node(server.url, "na" + unique(), ttl=ttl) as a,
        node(server.url, "nb" + unique(), ttl=ttl) as b,
    ):
        await until(
            lambda: set(leases(a).held) == set(range(32)) and set(leases(b).held) >= B_RANGE,
            20,
            "an even split into contiguous ranges",
        )
        yield server, a, b


B_RANGE = set(range(32, 64))


def key_of(system: ActorSystem) -> str:
    """A fresh key whose shard is in ``B_RANGE``."""
    return next(k for k in (unique() for _ in range(1000)) if place(system, k).shard in B_RANGE)


@pytest.mark.asyncio
async def test_a_single_node_runs_placed_actors_and_persists_their_state() -> None:
    async with NatsServer() as server:
        async with node(server.url, unique("n"), passivation=Passivation(idle_after=0.1)) as a:
            with pytest.raises(InvalidArgumentError):
                a.placed(Tally, "k", position=[1, -1])
            with pytest.raises(InvalidArgumentError):
                a.placed(Tally, "k", position="12")  # type: ignore[arg-type]
            await until(lambda: len(leases(a).held) == 64, 10, "the node to take every shard")
            ref = a.placed(Tally, "t1", position=(2, 7))
            assert isinstance(ref, PlacedRef)
            assert a.placed(Tally, "t1", position=(2, 7)) == ref  # equal: the same actor
            assert a.placed(Tally, "t1") != ref  # another position: another actor
            assert await ref.ask(Add(2), timeout=5) == 2
            await ref.tell(Add(3))
            assert await ref.ask(Get(), timeout=5) == 5
            # Passivated when idle: its state is in the cluster's store now.
            await until(lambda: a.virtual_stats().passivations >= 1, 5, "passivation")
            assert a.virtual_stats().active == 0
            assert await ref.ask(Add(1), timeout=5) == 6
            # Passivating it unchanged writes nothing; a change is written again.
            store = await a._transport.client.jetstream().key_value("swarm_state")  # type: ignore[union-attr]
            key = name_key(placed(ref)._target)
            await until(lambda: a.virtual_stats().passivations >= 2, 5, "passivation")
            # The count goes up when the actor is sealed; its state is written after that, in a
            # task of its own: wait for the write itself, not just the passivation.
            await until_async(lambda: _holds(store, key, 6), 5)
            written = (await store.get(key)).revision
            assert written is not None
            assert await ref.ask(Get(), timeout=5) == 6
            await until(lambda: a.virtual_stats().passivations >= 3, 5, "passivation")
            assert await ref.ask(Add(1), timeout=5) == 7
            await until(lambda: a.virtual_stats().passivations >= 4, 5, "passivation")
            await until_async(lambda: _revision_above(store, key, written), 5)
            # One write since: the bucket (only this key in it) counts revisions over all keys.
            assert (await store.get(key)).revision == written + 1
            assert await ref.ask(Add(-1), timeout=5) == 6
        # A new node on the same server reads the state the first one left.
        async with node(server.url, unique("n")) as b:
            await until(lambda: len(leases(b).held) == 64, 10, "the shards")
            assert await b.placed(Tally, "t1", position=(2, 7)).ask(Get(), timeout=5) == 6


@pytest.mark.asyncio
async def test_a_system_with_nats_makes_placed_refs_only_once_connected() -> None:
    system = ActorSystem(nats="nats://127.0.0.1:1", cluster=Cluster(node="x"))
    with pytest.raises(NotConnectedError, match="async with"):
        system.placed(Tally, "k")
    with pytest.raises(TransportError, match="NATS"):
        system.placement_stats()


@pytest.mark.asyncio
async def test_nodes_with_different_placements_refuse_to_mix() -> None:
    async with NatsServer() as server, node(server.url, unique("n")):
        with pytest.raises(TransportError, match="placement"):
            async with node(server.url, unique("n"), placement=Placement(shards=16)):
                pass


@pytest.mark.asyncio
async def test_two_nodes_split_the_shards_and_serve_the_same_actors() -> None:
    async with two_nodes() as (_server, a, b):  # contiguous ranges, in node-id order
        refs_a = [placed(a.placed(Tally, f"key-{i}")) for i in range(40)]
        refs_b = [placed(b.placed(Tally, f"key-{i}")) for i in range(40)]
        for i, (ra, rb) in enumerate(zip(refs_a, refs_b, strict=True)):
            assert ra.shard == rb.shard
            assert await ra.ask(Add(i), timeout=10) == i
            assert await rb.ask(Add(1), timeout=10) == i + 1  # the same actor, from b
            owner = a.node if ra.shard < 32 else b.node
            assert await rb.ask("where", timeout=10) == owner
        stats = a.placement_stats()
        assert stats.shards == tuple(range(32))
        assert stats.sent_local > 0
        assert stats.sent_remote > 0
        assert stats.received > 0
        assert b.placement_stats().received >= stats.sent_remote


# --- handover: at most one activation per key ---------------------------------------------

ACTIVATIONS: list[tuple[str, str, float, float]] = []  # key, node, started, stopped
RUNNING: dict[str, str] = {}  # key -> node running it now


class Exclusive(Actor):
    """Records when and where it runs; fails loudly if it runs twice at once."""

    def __init__(self) -> None:
        self.total = 0
        self.started = 0.0

    async def on_start(self) -> None:
        other = RUNNING.get(self.key)
        assert other is None, f"{self.key} already runs on {other}"
        RUNNING[self.key] = self.system.node or ""
        self.started = time.monotonic()

    async def on_stop(self) -> None:
        del RUNNING[self.key]
        ACTIVATIONS.append((self.key, self.system.node or "", self.started, time.monotonic()))

    @handler
    async def add(self, msg: Add) -> int:
        await asyncio.sleep(0)  # let handovers interleave with handlers
        self.total += msg.n
        return self.total

    def snapshot(self) -> int:
        return self.total

    def restore(self, state: int) -> None:
        self.total = state


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_handover_keeps_one_activation_per_key_and_its_state() -> None:
    ACTIVATIONS.clear()
    RUNNING.clear()
    keys = [f"x{i}" for i in range(64)]
    async with NatsServer() as server, node(server.url, "na" + unique()) as a:
        await until(lambda: len(leases(a).held) == 64, 10, "a to take every shard")
        totals = dict.fromkeys(keys, 0)
        stop = asyncio.Event()

        async def load(system: ActorSystem) -> None:
            while not stop.is_set():
                for key in keys:
                    await system.placed(Exclusive, key).ask(Add(1), timeout=20)
                    totals[key] += 1

        loaders = [asyncio.ensure_future(load(a))]
        await until(lambda: sum(totals.values()) >= 200, 20, "load")
        async with node(server.url, "nb" + unique()) as b:
            loaders.append(asyncio.ensure_future(load(b)))
            # b joins: a hands half of the shards over while both keep asking.
            await until(lambda: len(leases(b).held) == 32, 30, "the handover to b")
            before = sum(totals.values())
            await until(lambda: sum(totals.values()) >= before + 200, 20, "load after")
            stop.set()
            await asyncio.gather(*loaders)
            # Every acknowledged increment is in the actor's total, wherever it runs now.
            for key in keys:
                assert await b.placed(Exclusive, key).ask(Add(0), timeout=20) == totals[key]
            moved = {k for k, n, _, _ in ACTIVATIONS if n == a.node} & {
                k for k in keys if placed(b.placed(Exclusive, k)).shard >= 32
            }
            assert moved  # some keys really ran on a, then on b
    # No two activations of a key overlapped in time (on_start also asserted it live).
    by_key: dict[str, list[tuple[float, float]]] = {}
    for key, _, started, stopped in ACTIVATIONS:
        by_key.setdefault(key, []).append((started, stopped))
    for key, spans in by_key.items():
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert end <= start, f"{key} ran twice at once"


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_a_handover_frees_a_shard_only_after_its_state_is_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With slow state writes, the next owner still reads what the last one left."""
    keys = [f"slow{i}" for i in range(16)]
    async with NatsServer() as server, node(server.url, "na" + unique()) as a:
        await until(lambda: len(leases(a).held) == 64, 10, "a to take every shard")
        for key in keys:
            assert await a.placed(Tally, key).ask(Add(5), timeout=10) == 5
        cluster = a._transport.cluster  # type: ignore[union-attr]
        assert cluster is not None
        store = cluster._store
        assert store is not None
        write = store.update

        async def slow_update(*args: Any, **kwargs: Any) -> int:
            await asyncio.sleep(0.3)  # a busy server: the write lands long after the request
            return int(await write(*args, **kwargs))

        monkeypatch.setattr(store, "update", slow_update)
        async with node(server.url, "nb" + unique()) as b:
            await until(lambda: len(leases(b).held) == 32, 30, "the handover to b")
            moved = [k for k in keys if place(b, k).shard in leases(b).held]
            assert moved, "some of the keys moved to b"
            for key in moved:
                assert await b.placed(Tally, key).ask(Add(1), timeout=10) == 6, key


# --- node death ---------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_a_dead_nodes_shards_are_taken_over_with_their_persisted_state() -> None:
    async with (
        NatsServer() as server,
        peer(server.url, "na" + unique(), unique("c"), TTL) as proc,
        node(server.url, "nb" + unique()) as b,
    ):
        # The peer, first to start and first in name order, keeps shard 0.
        await until(lambda: leases(b).owner(0) not in (None, b.node), 10, "the peer holds shard 0")
        peer_node = leases(b).owner(0)
        ref = placed(b.placed(Tally, "survivor", position=(0,)))  # shard 0: the peer's range
        assert ref.shard == 0
        assert await ref.ask("where", timeout=10) == peer_node
        assert await ref.ask(Add(5), timeout=10) == 5
        # The peer passivates it when idle (passivate_after=0.2) and writes its state.
        store = await b._transport.client.jetstream().key_value("swarm_state")  # type: ignore[union-attr]
        await until_async(lambda: _stored(store), 10)
        proc.kill()
        await proc.wait()
        killed = time.monotonic()
        # An ask published before the server has seen the dead connection close is delivered
        # to it and lost: nothing answers it, not even "no responders" (asks are at most
        # once: the asker cannot know it was not handled), and it times out. Ask once the
        # server says that nobody listens there any more.
        client = b._transport.client  # type: ignore[union-attr]
        await until_async(lambda: _nobody_listens(client, live_subject(peer_node)), 10)
        # b takes shard 0 once the dead node's lease expires, and restores the state.
        assert await ref.ask(Add(1), timeout=30) == 6
        assert await ref.ask("where", timeout=10) == b.node
        assert time.monotonic() - killed < 15


async def _nobody_listens(client: Client, subject: str) -> bool:
    try:
        await client.request(subject, b"", timeout=0.5)
    except NoRespondersError:
        return True
    except TimeoutError:  # still subscribed: the server has not noticed the death yet
        return False
    return False


async def _stored(store: Any) -> bool:
    try:
        keys = await store.keys()
    except Exception:
        return False
    return any("survivor" in k for k in keys)


# --- refs in messages, and bad virtual targets from a plain client -------------------------


class Relay(msgspec.Struct):
    """Ask ``to`` for its total (a placed ref inside a message)."""

    to: Any


class Asker(Actor):
    @handler
    async def relay(self, msg: Relay) -> int:
        total: int = await msg.to.ask(Get(), timeout=10)
        return total


@pytest.mark.asyncio
async def test_placed_refs_travel_inside_messages() -> None:
    async with two_nodes() as (_server, a, b):
        tally = a.placed(Tally, "carried", position=(7, 7))  # shard 63: b's range
        assert await tally.ask(Add(4), timeout=10) == 4
        asker = await a.start(Asker, name=unique("asker"))
        on_b = await b.resolve(asker.name, timeout=5)
        # b sends a placed ref to the asker on a, which asks the actor through it.
        assert await on_b.ask(Relay(b.placed(Tally, "carried", position=(7, 7))), timeout=10) == 4


@pytest.mark.asyncio
async def test_bad_virtual_targets_from_a_plain_client_are_refused() -> None:
    from nats.aio.client import Client

    from swarm_actors._nats._wire import AskOut, Failure, TellOut, decode_frame, frame

    async with NatsServer() as server, node(server.url, "na" + unique()) as a:
        await until(lambda: len(leases(a).held) == 64, 10, "a to take every shard")
        client = Client()
        await client.connect(server.url)
        try:
            letters = await observe(client, f"swarm.deadletter.{a.node}")
            inbox = client.new_inbox()
            answers = await observe(client, inbox)
            encoder = msgspec.msgpack.Encoder()
            subject = f"swarm.node.{a.node}"
            for target in ("~no.such:Class~-~k", "~transport_peer:Tally~x~k"):
                tell = TellOut(target, "helpers:Add", Add(1), "", "")
                await client.publish(subject, frame([tell], encoder))
                letter = await asyncio.wait_for(letters.get(), 5)
                assert (letter.headers or {}).get("Swarm-Target") == target
                ask = AskOut(target, "helpers:Add", Add(1), "", "", 7, inbox)
                await client.publish(subject, frame([ask], encoder))
                answer = decode_frame((await asyncio.wait_for(answers.get(), 5)).data)[0]
                assert isinstance(answer, Failure)
                assert answer.corr == 7
                assert "bad virtual actor target" in answer.message
            # A well-formed one from a plain client reaches the actor.
            good = AskOut("~transport_peer:Tally~-~plain", "helpers:Add", Add(2), "", "", 8, inbox)
            await client.publish(subject, frame([good], encoder))
            reply = decode_frame((await asyncio.wait_for(answers.get(), 5)).data)[0]
            assert msgspec.msgpack.decode(reply.body) == 2  # type: ignore[union-attr]
            assert await a.placed(Tally, "plain").ask(Get(), timeout=5) == 2
        finally:
            await client.close()


# --- owners that disagree -----------------------------------------------------------------


def forwarded(system: ActorSystem) -> int:
    return system.placement_stats().forwarded


def disagree(
    monkeypatch: pytest.MonkeyPatch, system: ActorSystem, shard: int, other: str | None
) -> None:
    """Make ``system`` believe that ``other`` holds ``shard``, and that it does not."""
    mirror = leases(system)
    valid, owner = mirror.valid, mirror.owner
    monkeypatch.setattr(mirror, "valid", lambda s: False if s == shard else valid(s))
    monkeypatch.setattr(mirror, "owner", lambda s: other if s == shard else owner(s))


@pytest.mark.asyncio
@pytest.mark.parametrize("converge", [False, True], ids=["forever", "after-a-while"])
async def test_a_tell_bouncing_between_disagreeing_nodes_is_delivered_or_dead_lettered(
    converge: bool,
) -> None:
    from nats.aio.client import Client

    async with two_nodes() as (server, a, b):
        key = key_of(b)
        ref = placed(a.placed(Tally, key))
        client = Client()
        await client.connect(server.url)
        letters = await observe(client, "swarm.deadletter.*")
        try:
            with pytest.MonkeyPatch.context() as patch:
                disagree(patch, a, ref.shard, b.node)  # (a does not hold it anyway)
                disagree(patch, b, ref.shard, a.node)
                await ref.tell(Add(1))
                started = time.monotonic()
                if converge:  # after a few bounces
                    await until(lambda: forwarded(a) + forwarded(b) >= 4, 10, "the tell to bounce")
                else:
                    letter = await asyncio.wait_for(letters.get(), 15)
                    headers = letter.headers or {}
                    assert "forwarded 16 times" in headers.get("Swarm-Reason", ""), headers
                    assert headers.get("Swarm-Target") == ref._target
                    # It backed off: 16 hops took seconds, not the milliseconds of a spin.
                    assert time.monotonic() - started > 1.0
                    assert forwarded(a) + forwarded(b) == 16
            # b's view is right again: the tell (if not dead-lettered) reaches the actor.
            expected = 1 if converge else 0
            await until_async(lambda: _total_is(b.placed(Tally, key), expected), 10)
            assert await b.placed(Tally, key).ask(Get(), timeout=5) == expected
            assert letters.empty()
        finally:
            await client.close()


async def _holds(store: Any, key: str, state: int) -> bool:
    try:
        entry = await store.get(key)
    except KeyNotFoundError:  # not even the first write has landed
        return False
    return bool(entry.value == msgspec.msgpack.encode(state))


async def _revision_above(store: Any, key: str, revision: int) -> bool:
    return bool((await store.get(key)).revision > revision)


async def _total_is(ref: Any, total: int) -> bool:
    return bool(await ref.ask(Get(), timeout=5) == total)


@pytest.mark.asyncio
async def test_tells_waiting_on_an_activation_that_lost_its_shard_are_sent_on() -> None:
    from swarm_actors._nats._cluster import NotOwnerError

    async with two_nodes() as (_server, a, b):
        key = key_of(b)
        cluster = b._transport.cluster  # type: ignore[union-attr]
        assert cluster is not None
        check_owner = cluster.check_owner
        refused: list[int] = []

        def lose_once(agent: int) -> None:
            # The shard is lost while the first activation is under way (once).
            if not refused:
                refused.append(agent)
                raise NotOwnerError("lost while activating")
            check_owner(agent)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(cluster, "check_owner", lose_once)
            for _ in range(3):
                await a.placed(Tally, key).tell(Add(1))  # from a: they wait on b's activation
            await until(lambda: bool(refused), 10, "the tells to reach b")
            await until_async(lambda: _total_is(b.placed(Tally, key), 3), 10)


# --- self-fencing -------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_a_node_whose_lease_writes_stall_stops_serving_before_another_can_take_over() -> None:
    """A live node that cannot renew its leases fences itself before the server frees them.

    The server measures a lease's TTL from when it *received* the last renewal, so it cannot
    free a shard before ``sent + ttl`` (``sent``: when the node sent that renewal). The node
    must stop serving the shard before then, and so before any other node can acquire it.
    """
    from nats.errors import TimeoutError as NatsTimeoutError

    ttl = 1  # whole seconds (the server's unit): a 0.2 s margin, rounds every 1/3 s
    async with two_nodes(ttl=ttl) as (_server, a, b):
        mine = set(range(32))
        js = leases(a)._js
        publish = js.publish
        prefix = f"$KV.{SHARDS_BUCKET}.s"
        sent: dict[int, float] = {}  # shard -> when a sent its last lease write that succeeded
        stalled = False

        async def slow_kv(
            subject: str, payload: bytes = b"", timeout: float | None = None, **kwargs: Any
        ) -> Any:
            if stalled and subject.startswith("$KV."):
                # The server never answers a's key-value writes and never applies them: each
                # times out (nats-py's default: 5 s), as over a paused connection. Its
                # heartbeats stall too: b sees it gone, and takes its shards once they are free.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout or 5.0):
                        await asyncio.get_running_loop().create_future()
                raise NatsTimeoutError
            started = time.monotonic()
            ack = await publish(subject, payload, timeout=timeout, **kwargs)
            if subject.startswith(prefix):
                sent[int(subject[len(prefix) :])] = started
            return ack

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(js, "publish", slow_kv)
            await until(lambda: mine <= sent.keys(), 10, "a renewal of each of a's leases")
            stalled = True
            stopped: dict[int, float] = {}  # shard -> when a was first seen not serving it
            taken: dict[int, float] = {}  # shard -> when b was first seen serving it

            def fenced_then_taken() -> bool:
                now = time.monotonic()
                held = leases(a).held
                for shard in held.keys() & mine:
                    # The deadline a keeps (deterministic), and what it serves by it (polled).
                    assert held[shard].until < sent[shard] + ttl, f"a's deadline for {shard}"
                serving = set(a.placement_stats().shards)
                for shard in serving:
                    assert now < sent[shard] + ttl, f"a serves {shard} after it may expire"
                both = serving & set(b.placement_stats().shards)
                assert not both, f"a and b both serve shards {sorted(both)}"
                for shard in mine - serving:
                    stopped.setdefault(shard, now)
                for shard in mine & set(b.placement_stats().shards):
                    taken.setdefault(shard, now)
                return mine <= taken.keys()

            await until(fenced_then_taken, 15, "b to take a's shards")
            assert all(stopped[shard] <= taken[shard] for shard in mine)
            # a lets them go (passivating their actors) on its own, still cut off.
            await until(lambda: not leases(a).held.keys() & mine, 10, "a to drop its leases")
