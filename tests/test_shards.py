"""Shard leases without a server: acquiring, renewing, fencing, balancing, handing over.

``ShardLeases`` is driven here against an in-memory key-value bucket that behaves like the
server's for what the leases use (create-only writes, compare-and-set writes and deletes, a
watch that sees every change), with the clock of ``_shards`` under the test's control. The
balancing loop is not running: each test calls the steps of a round itself, so every decision
is deterministic. ``test_placement`` runs the same code against a real nats-server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, cast

import msgspec
import pytest
from nats.js.errors import APIError, KeyNotFoundError, KeyWrongLastSequenceError

from swarm_actors._nats import _shards
from swarm_actors._nats._shards import HANDOVERS_PER_ROUND, SHARDS_BUCKET, ShardLeases
from swarm_actors.cluster import Placement
from swarm_actors.errors import TransportError

PREFIX = f"$KV.{SHARDS_BUCKET}."

Apply = Callable[[str, bytes, "str | None", int], None]


class Clock:
    """Stands in for the ``time`` module of ``_shards``: ``monotonic()`` is ``now``."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(_shards, "time", fake)
    return fake


class Bucket:
    """The server's side of one key-value bucket. Revisions count over all keys."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock
        self.entries: dict[str, tuple[bytes, int]] = {}
        self.last: dict[str, int] = {}  # key -> sequence of its last write (deletes too)
        self.seq = 0
        self.watchers: list[Apply] = []
        self.calls: list[tuple[Any, ...]] = []
        self.write_takes = 0.0  # seconds each write takes (the clock moves on)

    def write(self, key: str, value: bytes, operation: str | None = None) -> int:
        if self.clock is not None:
            self.clock.now += self.write_takes
        self.seq += 1
        self.last[key] = self.seq
        if operation is None:
            self.entries[key] = (value, self.seq)
        else:
            self.entries.pop(key, None)
        for apply in self.watchers:
            apply(key, value, operation, self.seq)
        return self.seq

    def expire(self, key: str) -> None:
        """The server's TTL ran out: it drops the key and leaves a marker."""
        self.write(key, b"", "MaxAge")

    async def create(self, key: str, value: bytes, msg_ttl: float | None = None) -> int:
        self.calls.append(("create", key, msg_ttl))
        if key in self.entries:
            raise KeyWrongLastSequenceError(description="wrong last sequence")
        return self.write(key, value)

    async def delete(self, key: str, last: int | None = None) -> bool:
        self.calls.append(("delete", key, last))
        if last is not None and self.last.get(key) != last:
            raise KeyWrongLastSequenceError(description="wrong last sequence")
        self.write(key, b"", "DEL")
        return True

    async def get(self, key: str) -> Any:
        if key not in self.entries:
            raise KeyNotFoundError
        value, revision = self.entries[key]
        return SimpleNamespace(key=key, value=value, revision=revision)

    def owner(self, shard: int) -> str | None:
        entry = self.entries.get(f"s{shard}")
        return None if entry is None else cast(str, msgspec.msgpack.decode(entry[0])[0])


class JetStream:
    """The JetStream publish a renewal uses: a write that expects the key's last sequence."""

    def __init__(self, bucket: Bucket) -> None:
        self.bucket = bucket
        self.calls: list[dict[str, Any]] = []
        self.error: Exception | None = None  # raised by the next publishes

    async def publish(
        self,
        subject: str,
        payload: bytes,
        *,
        headers: dict[str, str],
        msg_ttl: float,
        timeout: float,
    ) -> Any:
        self.calls.append(
            {"subject": subject, "headers": headers, "msg_ttl": msg_ttl, "timeout": timeout}
        )
        if self.error is not None:
            raise self.error
        assert subject.startswith(PREFIX)
        key = subject[len(PREFIX) :]
        if int(headers["Nats-Expected-Last-Subject-Sequence"]) != self.bucket.last.get(key, 0):
            raise APIError(code=400, err_code=10071, description="wrong last sequence")
        return SimpleNamespace(seq=self.bucket.write(key, payload))


class Registry:
    def __init__(self, node: str, live: set[str]) -> None:
        self.node = node
        self.incarnation = f"{node}-1"
        self.replicas = 1
        self.live = live

    async def live_nodes(self) -> set[str]:
        return set(self.live)


Lost = list[tuple[list[int], bool]]


class Node:
    """One node's ``ShardLeases`` on ``bucket``, with what ``on_lost`` was called with."""

    def __init__(
        self,
        name: str,
        bucket: Bucket,
        *,
        live: set[str] | None = None,
        ttl: float = 3.0,
        shards: int = 8,
        watch: bool = True,
    ) -> None:
        self.bucket = bucket
        self.js = JetStream(bucket)
        self.registry = Registry(name, live if live is not None else set())
        self.lost: Lost = []
        self.valid_while_lost: list[bool] = []
        self.leases = ShardLeases(
            cast(Any, self.js),
            cast(Any, self.registry),
            Placement(shards=shards),
            ttl,
            self.on_lost,
        )
        self.leases._kv = cast(Any, bucket)
        if watch:
            bucket.watchers.append(self.leases._apply)

    async def on_lost(self, shards: list[int], graceful: bool) -> None:
        self.lost.append((shards, graceful))
        self.valid_while_lost += [self.leases.valid(s) for s in shards]

    @property
    def held(self) -> set[int]:
        return set(self.leases.held)

    async def round(self) -> None:
        """One round of the balancing loop, as ``_run`` does it."""
        await self.leases._renew_all()
        await self.leases._balance()
        await self.leases._fence_expired()


def lease_value(node: str, incarnation: str = "i") -> bytes:
    return msgspec.msgpack.encode([node, incarnation])


# --- construction -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ttl", "whole", "valid_for"),
    [
        (0.3, 1, 0.8),  # at least a second (the server's unit); a margin of at least 0.2 s
        (1.0, 1, 0.8),
        (2.0, 2, 1.6),
        (2.6, 3, 2.4),
        (10.0, 10, 8.0),  # a margin of a fifth of the TTL
    ],
)
@pytest.mark.asyncio
async def test_a_lease_is_valid_for_the_ttl_less_a_margin(
    clock: Clock, ttl: float, whole: int, valid_for: float
) -> None:
    bucket = Bucket(clock)
    a = Node("a", bucket, ttl=ttl, shards=1)
    await a.leases._balance()
    assert bucket.calls == [("create", "s0", whole)]  # the server's TTL, whole seconds
    assert a.leases.held[0].until == pytest.approx(1000.0 + valid_for)
    clock.now = 1000.0 + valid_for - 0.01
    assert a.leases.valid(0)
    clock.now = 1000.0 + valid_for
    assert not a.leases.valid(0)


def test_the_lease_value_names_the_node_and_its_incarnation() -> None:
    a = Node("a", Bucket())
    # Read by every node of the cluster (other versions too): a msgpack array.
    assert msgspec.msgpack.decode(a.leases._value) == ["a", "a-1"]
    assert a.leases.node == "a"
    assert a.leases.shards == 8
    assert a.leases.placement == Placement(shards=8)


# --- acquiring --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_lone_node_takes_every_shard(clock: Clock) -> None:
    bucket = Bucket(clock)
    a = Node("a", bucket)  # the registry lists nobody yet: the node counts itself
    await a.leases._balance()
    assert a.held == set(range(8))
    assert all(a.leases.valid(s) for s in range(8))
    assert all(bucket.owner(s) == "a" for s in range(8))
    assert all(a.leases.owner(s) == "a" for s in range(8))


@pytest.mark.asyncio
async def test_each_node_takes_its_contiguous_range_in_name_order(clock: Clock) -> None:
    bucket = Bucket(clock)
    live = {"c", "a", "b"}
    nodes = {name: Node(name, bucket, live=live) for name in sorted(live)}
    for name in ("c", "b", "a"):
        await nodes[name].leases._balance()
    # Node i of n aims at [i * S / n, (i + 1) * S / n): 8 shards over 3 nodes.
    assert nodes["a"].held == {0, 1, 2}
    assert nodes["b"].held == {3, 4, 5}
    assert nodes["c"].held == {6, 7}
    for leases in (n.leases for n in nodes.values()):
        assert [leases.owner(s) for s in range(8)] == list("aaabbbcc")


@pytest.mark.asyncio
async def test_a_node_first_to_a_shard_keeps_it(clock: Clock) -> None:
    bucket = Bucket(clock)
    bucket.write("s0", lease_value("z"))
    a = Node("a", bucket, watch=False)  # it has not heard of z's lease yet
    await a.leases._balance()
    assert a.held == set(range(1, 8))
    assert not a.leases.valid(0)
    assert bucket.owner(0) == "z"


@pytest.mark.asyncio
async def test_a_free_shard_nobody_claims_for_two_rounds_is_taken_by_any_node(
    clock: Clock,
) -> None:
    bucket = Bucket(clock)
    a = Node("a", bucket, live={"a", "b"})  # b is live but does not take its range
    await a.round()
    assert a.held == {0, 1, 2, 3}
    await a.round()
    assert a.held == {0, 1, 2, 3}  # free for two rounds now
    a.registry.live.add("c")  # c just appeared: b gets 3-5, c 6-7
    await a.round()
    creates = [c[1] for c in bucket.calls if c[0] == "create"]
    assert creates == [f"s{s}" for s in (0, 1, 2, 3, 4, 5, 6, 7)]
    # Shards 4 and 5 are b's, and b was live in the last round too: handed over at once with
    # shard 3. c was not: a keeps c's shards until c has been seen live for two rounds.
    assert a.lost == [([3, 4, 5], True)]
    assert a.held == {0, 1, 2, 6, 7}
    await a.round()
    assert a.lost[1:] == [([6, 7], True)]


def created(bucket: Bucket) -> list[int]:
    """The shards ``bucket`` was asked to create since the last call."""
    shards = [int(c[1][1:]) for c in bucket.calls if c[0] == "create"]
    bucket.calls.clear()
    return shards


@pytest.mark.asyncio
async def test_a_shard_that_gets_an_owner_or_was_taken_over_starts_counting_again(
    clock: Clock,
) -> None:
    bucket = Bucket(clock)
    a = Node("a", bucket, live={"a", "b"})  # b is live but does not take its range
    await a.round()
    await a.round()
    assert created(bucket) == [0, 1, 2, 3]
    bucket.write("s4", lease_value("b"))  # b takes shard 4 at last, then loses it
    await a.round()
    # Taken over, and handed back to b (live in the last round too) at once.
    assert created(bucket) == [5, 6, 7]
    assert a.lost == [([5, 6, 7], True)]
    bucket.expire("s4")
    await a.round()
    await a.round()
    assert created(bucket) == []  # free for two rounds again only now
    await a.round()
    assert created(bucket) == [4, 5, 6, 7]


@pytest.mark.asyncio
async def test_a_shard_acquired_while_closing_is_given_back(clock: Clock) -> None:
    bucket = Bucket(clock)
    a = Node("a", bucket, shards=2)
    create = bucket.create

    async def create_then_close(key: str, value: bytes, msg_ttl: float | None = None) -> int:
        revision = await create(key, value, msg_ttl)
        a.leases._closing = True  # close() began while the write was under way
        return revision

    bucket.create = create_then_close  # type: ignore[method-assign]
    await a.leases._balance()
    assert a.held == set()
    assert bucket.entries == {}
    assert bucket.calls == [("create", "s0", 3), ("delete", "s0", 1)]
    assert a.leases.owner(0) is None


@pytest.mark.asyncio
async def test_giving_back_a_shard_acquired_while_closing_may_fail(clock: Clock) -> None:
    bucket = Bucket(clock)
    a = Node("a", bucket, shards=1)
    create = bucket.create

    async def create_then_close(key: str, value: bytes, msg_ttl: float | None = None) -> int:
        revision = await create(key, value, msg_ttl)
        a.leases._closing = True
        return revision

    async def disconnected(key: str, last: int | None = None) -> bool:
        raise ConnectionError("closed")  # the TTL frees the shard

    bucket.create = create_then_close  # type: ignore[method-assign]
    bucket.delete = disconnected  # type: ignore[method-assign]
    await a.leases._balance()
    assert a.held == set()


@pytest.mark.asyncio
async def test_a_closing_node_acquires_and_hands_over_nothing(clock: Clock) -> None:
    bucket = Bucket(clock)
    a = Node("a", bucket, live={"a", "b"})
    await a.round()
    await a.round()  # b is stable: a would hand over what it holds of b's range
    a.leases._closing = True
    for _ in range(3):
        await a.leases._balance()
    assert a.held == {0, 1, 2, 3}
    assert a.lost == []
    assert [c for c in bucket.calls if c[0] == "create"] == [
        ("create", f"s{s}", 3) for s in range(4)
    ]


# --- handing over -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_node_hands_over_a_joining_nodes_range_once_it_has_seen_it_twice(
    clock: Clock,
) -> None:
    bucket = Bucket(clock)
    a = Node("a", bucket, live={"a"})
    b = Node("b", bucket, live={"a", "b"})
    await a.round()
    assert a.held == set(range(8))
    a.registry.live.add("b")
    await a.round()  # b is new to a: it may be gone again at once
    assert a.lost == []
    await a.round()
    assert a.lost == [([4, 5, 6, 7], True)]
    assert a.valid_while_lost == [False] * 4  # not served while being passivated
    assert a.held == {0, 1, 2, 3}
    # Deleted if still at the revision of a's last renewal (8 creates, 16 renewals).
    assert bucket.calls[-4:] == [("delete", f"s{s}", 17 + s) for s in range(4, 8)]
    assert [a.leases.owner(s) for s in range(8)] == list("aaaa") + [None] * 4
    await b.round()
    assert b.held == {4, 5, 6, 7}
    assert [a.leases.owner(s) for s in range(8)] == list("aaaabbbb")


@pytest.mark.asyncio
async def test_a_node_stops_serving_a_shard_before_handing_it_over(clock: Clock) -> None:
    bucket = Bucket(clock)
    a = Node("a", bucket, live={"a"}, shards=2)
    await a.round()
    a.registry.live.add("b")
    await a.round()
    assert a.held == {0, 1}
    seen: list[tuple[bool, str | None, bool]] = []

    async def on_lost(shards: list[int], graceful: bool) -> None:
        # While passivating: no longer valid, still held on the server (state not written).
        seen.append((a.leases.valid(1), bucket.owner(1), graceful))

    a.leases._on_lost = on_lost
    await a.round()
    assert seen == [(False, "a", True)]
    assert bucket.owner(1) is None


@pytest.mark.asyncio
async def test_at_most_sixteen_shards_are_handed_over_per_round(clock: Clock) -> None:
    bucket = Bucket(clock)
    a = Node("a", bucket, live={"a"}, shards=64)
    await a.round()
    assert a.held == set(range(64))
    a.registry.live.add("b")
    await a.round()
    assert a.lost == []
    await a.round()
    assert HANDOVERS_PER_ROUND == 16
    assert a.lost == [(list(range(32, 48)), True)]  # in shard order
    await a.round()
    assert a.lost[1] == (list(range(48, 64)), True)
    assert a.held == set(range(32))


@pytest.mark.asyncio
async def test_a_node_keeps_shards_of_a_node_that_left(clock: Clock) -> None:
    bucket = Bucket(clock)
    a = Node("a", bucket, live={"a"})
    await a.round()
    a.registry.live = {"a", "b"}
    await a.round()
    a.registry.live = {"a"}
    await a.round()
    assert a.held == set(range(8))
    # Nor does it hand over to a node it sees live only every other round.
    for live in ({"a", "b"}, {"a"}, {"a", "b"}):
        a.registry.live = live
        await a.round()
    assert a.lost == []


@pytest.mark.asyncio
async def test_a_handover_whose_lease_was_taken_meanwhile_leaves_it_alone(clock: Clock) -> None:
    bucket = Bucket(clock)
    a = Node("a", bucket, live={"a"}, shards=2)
    await a.round()
    a.registry.live.add("b")
    await a.round()

    async def taken_meanwhile(shards: list[int], graceful: bool) -> None:
        bucket.expire("s1")
        bucket.write("s1", lease_value("b"))

    a.leases._on_lost = taken_meanwhile
    await a.round()
    assert a.held == {0}
    assert bucket.owner(1) == "b"  # the refused delete did not raise
    bucket.write("s1", lease_value("b"))  # b's next renewal
    assert a.leases.owner(1) == "b"


@pytest.mark.asyncio
async def test_a_failed_passivation_still_gives_the_shards_up(clock: Clock) -> None:
    bucket = Bucket(clock)
    a = Node("a", bucket, shards=2)
    await a.round()

    async def failing(shards: list[int], graceful: bool) -> None:
        raise RuntimeError("passivation failed")

    a.leases._on_lost = failing
    with pytest.raises(RuntimeError, match="passivation failed"):
        await a.leases._release([0, 1])
    assert a.held == set()
    assert bucket.entries == {}
    assert a.leases.owners == {}


# --- renewing and fencing ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_renewal_extends_the_lease_from_when_it_was_sent(clock: Clock) -> None:
    bucket = Bucket(clock)
    a = Node("a", bucket, ttl=2.0, shards=2)
    await a.round()
    revisions = {s: lease.revision for s, lease in a.leases.held.items()}
    assert revisions == {0: 1, 1: 2}
    clock.now = 1001.0
    bucket.write_takes = 0.5  # the server applies each write half a second after it was sent
    await a.leases._renew_all()
    assert a.js.calls == [
        {
            "subject": f"{PREFIX}s{s}",
            "headers": {"Nats-Expected-Last-Subject-Sequence": str(revisions[s])},
            "msg_ttl": 2,
            "timeout": 0.5,
        }
        for s in (0, 1)
    ]
    # Valid until sent + ttl - margin, from when each was sent (not when it was applied).
    assert [a.leases.held[s].until for s in (0, 1)] == [
        pytest.approx(1001.0 + 1.6),
        pytest.approx(1001.5 + 1.6),
    ]
    assert [a.leases.held[s].revision for s in (0, 1)] == [3, 4]
    a.js.calls.clear()
    await a.leases._renew_all()  # the next renewal expects the new revisions
    assert [c["headers"] for c in a.js.calls] == [
        {"Nats-Expected-Last-Subject-Sequence": str(r)} for r in (3, 4)
    ]
    assert a.lost == []


@pytest.mark.parametrize("err_code", [10071, 10164])
@pytest.mark.asyncio
async def test_a_renewal_refused_for_its_revision_loses_the_shard_at_once(
    clock: Clock, err_code: int
) -> None:
    bucket = Bucket(clock)
    a = Node("a", bucket, shards=2)
    await a.round()
    a.js.error = APIError(code=400, err_code=err_code, description="wrong last sequence")
    await a.leases._renew_all()
    assert a.lost == [([0, 1], False)]  # not a handover: its state is not written
    assert a.held == set()
    assert bucket.calls[-1][0] == "create"  # the leases are not deleted: another node's now


@pytest.mark.asyncio
async def test_a_renewal_lost_to_another_node_drops_only_that_shard(clock: Clock) -> None:
    bucket = Bucket(clock)
    a = Node("a", bucket, shards=2)
    await a.round()
    bucket.expire("s1")
    bucket.write("s1", lease_value("b"))
    await a.leases._renew_all()
    assert a.lost == [([1], False)]
    assert a.held == {0}
    assert bucket.owner(1) == "b"
    bucket.write("s1", lease_value("b"))  # b's next renewal
    assert a.leases.owner(1) == "b"


@pytest.mark.parametrize(
    "error",
    [APIError(code=503, err_code=10008, description="unavailable"), TimeoutError()],
    ids=["other-api-error", "timeout"],
)
@pytest.mark.asyncio
async def test_a_renewal_nats_did_not_answer_keeps_the_lease_until_its_deadline(
    clock: Clock, error: Exception
) -> None:
    bucket = Bucket(clock)
    a = Node("a", bucket, ttl=2.0, shards=2)
    await a.round()
    a.js.error = error
    clock.now = 1001.0
    await a.round()  # the round's renewals fail: the leases keep their deadline
    assert a.held == {0, 1}
    assert a.lost == []
    with pytest.raises(type(error)):
        await a.leases._renew(0)
    clock.now = 1001.59
    await a.leases._fence_expired()
    assert a.held == {0, 1}
    assert a.leases.valid(0)
    clock.now = 1001.6  # sent + ttl - margin: fenced, before the server can free them
    assert not a.leases.valid(0)
    await a.leases._fence_expired()
    assert a.lost == [([0, 1], False)]
    assert a.held == set()
    assert [c[0] for c in bucket.calls] == ["create", "create"]  # nothing deleted
    assert a.leases.owners == {}


@pytest.mark.asyncio
async def test_only_expired_leases_are_fenced(clock: Clock) -> None:
    bucket = Bucket(clock)
    a = Node("a", bucket, ttl=2.0, shards=2)
    await a.leases._balance()
    a.leases.held[1].until = 1005.0
    clock.now = 1002.0
    await a.leases._fence_expired()
    assert a.lost == [([0], False)]
    assert a.held == {1}


@pytest.mark.asyncio
async def test_leases_being_given_up_are_neither_renewed_nor_fenced(clock: Clock) -> None:
    bucket = Bucket(clock)
    a = Node("a", bucket, ttl=2.0, shards=2)
    await a.leases._balance()
    a.leases.held[0].leaving = True
    clock.now = 1001.0
    await a.leases._renew_all()
    assert [c["subject"] for c in a.js.calls] == [f"{PREFIX}s1"]
    clock.now = 1010.0
    await a.leases._fence_expired()
    assert a.lost == [([1], False)]
    assert a.held == {0}


# --- the mirror of owners ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_mirror_follows_other_nodes_leases(clock: Clock) -> None:
    a = Node("a", Bucket(clock))
    leases = a.leases
    changed = asyncio.ensure_future(leases.changed())
    await asyncio.sleep(0)
    leases._apply("s3", lease_value("b"), None, 5)
    assert leases.owner(3) == "b"
    assert leases.version == 1
    await asyncio.wait_for(changed, 1)
    leases._apply("s3", lease_value("b"), None, 6)  # renewed: no change
    assert leases.version == 1
    leases._apply("s3", lease_value("c"), None, 7)
    assert (leases.owner(3), leases.version) == ("c", 2)
    leases._apply("s3", b"", "MaxAge", 8)  # expired
    assert (leases.owner(3), leases.version) == (None, 3)
    leases._apply("s3", b"", "DEL", 9)
    assert leases.version == 3
    leases._apply("s4", lease_value("b"), None, 10)
    leases._apply("s4", b"", None, 11)  # an empty value: gone too
    assert leases.owner(4) is None
    leases._apply("s5", lease_value("b"), None, 12)
    leases._apply("s5", lease_value("b"), "PURGE", 13)
    assert leases.owners == {}


def test_the_mirror_ignores_other_keys_and_bad_values() -> None:
    leases = Node("a", Bucket()).leases
    for key in ("placement", "s", "sx", "x1", "s1a", "s-1"):
        leases._apply(key, lease_value("b"), None, 1)
    leases._apply("s2", b"\xc1", None, 2)  # not msgpack
    leases._apply("s2", msgspec.msgpack.encode({"node": "b"}), None, 3)
    assert leases.owners == {}
    assert leases.version == 0
    leases._apply("s12", lease_value("b"), None, 4)
    assert leases.owners == {12: "b"}


@pytest.mark.asyncio
async def test_a_held_shard_keeps_its_owner_until_the_node_lets_it_go(clock: Clock) -> None:
    bucket = Bucket(clock)
    a = Node("a", bucket, shards=2)
    await a.leases._balance()
    version = a.leases.version
    # Its own lease expired on the server, or another node's write: a holds it until it finds
    # out itself (a refused renewal, or its deadline).
    a.leases._apply("s0", b"", "MaxAge", 10)
    a.leases._apply("s1", lease_value("b"), None, 11)
    assert (a.leases.owner(0), a.leases.owner(1), a.leases.version) == ("a", "a", version)
    a.leases._apply("s1", lease_value("a"), None, 12)  # its own renewal
    assert a.leases.owner(1) == "a"


@pytest.mark.asyncio
async def test_changes_of_owners_and_leases_wake_waiters(clock: Clock) -> None:
    bucket = Bucket(clock)
    a = Node("a", bucket, shards=1, watch=False)
    waiter = asyncio.ensure_future(a.leases.changed())
    await asyncio.sleep(0)
    assert not waiter.done()
    await a.leases._balance()  # acquired: the owner changes
    await asyncio.wait_for(waiter, 1)
    waiter = asyncio.ensure_future(a.leases.changed())
    await asyncio.sleep(0)

    async def check(shards: list[int], graceful: bool) -> None:
        await asyncio.sleep(0)
        assert waiter.done()  # woken when the lease stopped being valid, before passivating

    a.leases._on_lost = check
    await a.leases._release([0])
    assert a.leases.owners == {}


# --- open and close ---------------------------------------------------------------------


class OpenedBucket(Bucket):
    def __init__(self, clock: Clock | None = None) -> None:
        super().__init__(clock)
        self.opened: list[tuple[Any, ...]] = []
        self.unsubscribed = 0


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, clock: Clock) -> OpenedBucket:
    """A bucket that ``open_bucket`` and ``watch_bucket`` of ``_shards`` return and watch."""
    bucket = OpenedBucket(clock)

    async def open_bucket(
        js: Any, name: str, *, memory: bool, replicas: int, markers: bool = False
    ) -> Bucket:
        assert isinstance(js, JetStream)  # the node's own connection
        bucket.opened.append((name, memory, replicas, markers))
        return bucket

    async def watch_bucket(js: Any, name: str, apply: Apply) -> Any:
        assert isinstance(js, JetStream)
        assert name == SHARDS_BUCKET
        bucket.watchers.append(apply)
        for key, (value, revision) in bucket.entries.items():
            apply(key, value, None, revision)

        async def unsubscribe() -> None:
            bucket.unsubscribed += 1
            raise RuntimeError("the connection is closed")

        return SimpleNamespace(unsubscribe=unsubscribe)

    monkeypatch.setattr(_shards, "open_bucket", open_bucket)
    monkeypatch.setattr(_shards, "watch_bucket", watch_bucket)
    return bucket


async def ignore_lost(shards: list[int], graceful: bool) -> None:
    pass


def unopened(
    name: str, bucket: Bucket, placement: Placement, on_lost: _shards.OnLost = ignore_lost
) -> ShardLeases:
    registry = Registry(name, set())
    registry.replicas = 3
    return ShardLeases(cast(Any, JetStream(bucket)), cast(Any, registry), placement, 1.0, on_lost)


@pytest.mark.asyncio
async def test_open_writes_the_placement_mirrors_the_owners_and_runs_rounds(
    served: OpenedBucket,
) -> None:
    served.write("s5", lease_value("z"))
    lost: Lost = []

    async def on_lost(shards: list[int], graceful: bool) -> None:
        lost.append((shards, graceful))

    leases = unopened("a", served, Placement(shards=8), on_lost=on_lost)
    await leases.open()
    try:
        # Leases live on disk (they outlast a server restart), replicated like the registry,
        # with delete markers so that every watch sees an expiry.
        assert served.opened == [(SHARDS_BUCKET, False, 3, True)]
        assert msgspec.msgpack.decode(served.entries["placement"][0]) == msgspec.to_builtins(
            Placement(shards=8)
        )
        assert leases.owner(5) == "z"
        await asyncio.wait_for(leases.next_round(), 5)
        assert set(leases.held) == set(range(8)) - {5}
        assert leases.rounds >= 1
    finally:
        await leases.close()
    assert lost == [([0, 1, 2, 3, 4, 6, 7], True)]
    assert served.unsubscribed == 1  # its failure (a closed connection) is not raised
    assert set(served.entries) == {"placement", "s5"}
    await leases.close()  # again: nothing left to do
    assert served.unsubscribed == 1
    assert len(lost) == 1


@pytest.mark.asyncio
async def test_a_node_with_the_clusters_placement_joins(served: OpenedBucket) -> None:
    first = unopened("a", served, Placement(shards=16))
    second = unopened("b", served, Placement(shards=16))
    await first._agree_on_placement(cast(Any, served))
    await second._agree_on_placement(cast(Any, served))
    assert served.entries["placement"][1] == 1  # written once


@pytest.mark.asyncio
async def test_a_node_with_another_placement_is_refused(served: OpenedBucket) -> None:
    await unopened("a", served, Placement(shards=16))._agree_on_placement(cast(Any, served))
    other = unopened("b", served, Placement(shards=16, strategy="hash"))
    with pytest.raises(TransportError) as refused:
        await other.open()
    assert str(refused.value) == (
        f"this node's placement {Placement(shards=16, strategy='hash')!r} differs from the "
        f"cluster's {Placement(shards=16)!r}: every node must place virtual actors the same way"
    )
    assert other._tasks == []


@pytest.mark.parametrize("value", [b"\xc1", msgspec.msgpack.encode({"shards": 16, "x": 1})])
@pytest.mark.asyncio
async def test_an_unreadable_placement_record_is_refused(
    served: OpenedBucket, value: bytes
) -> None:
    served.write("placement", value)
    with pytest.raises(
        TransportError, match=r"^the cluster's placement record is unreadable: \S"
    ) as refused:
        await unopened("a", served, Placement())._agree_on_placement(cast(Any, served))
    assert refused.value.__cause__ is None
    assert refused.value.__suppress_context__


@pytest.mark.asyncio
async def test_an_empty_placement_record_is_refused(served: OpenedBucket) -> None:
    served.write("placement", b"")
    with pytest.raises(TransportError) as refused:
        await unopened("a", served, Placement())._agree_on_placement(cast(Any, served))
    assert str(refused.value) == (
        "the cluster's placement record is unreadable: Input data was truncated"
    )


# --- the loop ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_round_that_fails_still_fences_and_counts(clock: Clock) -> None:
    bucket = Bucket(clock)
    a = Node("a", bucket, ttl=1.0, shards=2)
    await a.leases._balance()
    clock.now += 5  # the leases ran out
    a.js.error = TimeoutError()

    async def unavailable() -> set[str]:
        raise TimeoutError("NATS did not answer")

    a.registry.live_nodes = unavailable  # type: ignore[method-assign]
    task = asyncio.ensure_future(a.leases._run())
    try:
        await asyncio.wait_for(a.leases.next_round(), 5)
        assert a.lost == [([0, 1], False)]
        assert a.leases.rounds == 1
    finally:
        a.leases._closing = True
        a.leases._stop.set()
        await asyncio.wait_for(task, 5)


@pytest.mark.asyncio
async def test_close_stops_the_loop_even_if_a_step_swallows_the_cancellation(
    served: OpenedBucket,
) -> None:
    loop: list[asyncio.Task[None]] = []
    loop_done: list[bool] = []  # whether the loop had ended, at each handover

    async def on_lost(shards: list[int], graceful: bool) -> None:
        loop_done.append(loop[0].done())

    leases = unopened("a", served, Placement(shards=2), on_lost)
    await leases.open()
    loop.append(leases._tasks[0])
    await asyncio.wait_for(leases.next_round(), 5)
    assert set(leases.held) == {0, 1}
    registry = cast(Registry, leases._registry)
    live_nodes = registry.live_nodes
    renewing = asyncio.Event()

    swallowed: list[bool] = []

    async def deaf() -> set[str]:
        # nats-py can swallow a cancellation (it awaits futures of its own): the node listing
        # of a round (awaited by the loop's task itself) here, once.
        renewing.set()
        if not swallowed:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                swallowed.append(True)
        return await live_nodes()

    registry.live_nodes = deaf  # type: ignore[method-assign]
    await asyncio.wait_for(renewing.wait(), 5)
    await asyncio.wait_for(leases.close(), 5)
    # The loop ended before the handover began: no round runs beside it.
    assert loop_done == [True]
    assert swallowed
    assert set(served.entries) == {"placement"}


class RecordingAsyncio:
    """Stands in for ``asyncio`` in ``_shards``: records the loop's waits, and shortens them."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    def timeout(self, delay: float) -> Any:
        self.waits.append(delay)
        return asyncio.timeout(0.001)


@pytest.mark.parametrize(
    ("ttl", "round_takes", "wait"),
    [
        (3.0, 0.25, 0.75),  # a round every ttl / 3, from the start of the last one
        (1.0, 0.0, 1 / 3),
        (3.0, 1.5, 0.05),  # a round slower than that: the next starts soon after
    ],
)
@pytest.mark.asyncio
async def test_rounds_start_every_third_of_the_ttl(
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    ttl: float,
    round_takes: float,
    wait: float,
) -> None:
    recorder = RecordingAsyncio()
    monkeypatch.setattr(_shards, "asyncio", recorder)
    a = Node("a", Bucket(clock), ttl=ttl, shards=1)
    live_nodes = a.registry.live_nodes

    async def slow_live_nodes() -> set[str]:
        clock.now += round_takes
        return await live_nodes()

    a.registry.live_nodes = slow_live_nodes  # type: ignore[method-assign]
    task = asyncio.ensure_future(a.leases._run())
    try:
        for _ in range(3):
            await asyncio.wait_for(a.leases.next_round(), 5)
    finally:
        a.leases._closing = True
        a.leases._stop.set()
        await asyncio.wait_for(task, 5)
    assert a.leases.rounds == len(recorder.waits) >= 3
    assert recorder.waits == [pytest.approx(wait)] * len(recorder.waits)
