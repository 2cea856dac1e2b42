"""Actors across processes: two nodes (ActorSystems) on one real nats-server, and a subprocess."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.errors import KeyNotFoundError

from helpers import Add, Get, unique, until, until_async, until_dead
from log_capture import capture_logs
from nats_sync import observe, sync
from swarm_actors import (
    Actor,
    ActorDeadError,
    ActorNameError,
    ActorSystem,
    InvalidArgumentError,
    MailboxFullError,
    UnhandledMessageError,
    handler,
)
from swarm_actors._events._journal import MemoryJournal
from swarm_actors._nats import _inbox as inbox_module
from swarm_actors._nats._registry import NAMES_BUCKET, NODES_BUCKET, NameEntry, Registry, name_key
from swarm_actors._nats._wire import (
    AskOut,
    Failure,
    Reply,
    TellOut,
    decode_frame,
    frame,
    type_name,
)
from swarm_actors.cluster import Cluster, NatsOptions, RemoteRef
from swarm_actors.errors import (
    AuthenticationError,
    JournalTimeoutError,
    MessageTooLargeError,
    RemoteError,
    TransportError,
)
from swarm_actors.testing import NatsServer
from transport_peer import AskBack, Boom, Counter, Record, Sleep, Totals

pytestmark = pytest.mark.asyncio

PEER = Path(__file__).with_name("transport_peer.py")
Nodes = tuple[ActorSystem, ActorSystem]


@pytest_asyncio.fixture
async def nodes(nats_server: NatsServer) -> AsyncIterator[tuple[ActorSystem, ActorSystem]]:
    """Two nodes (a, b) on the shared server."""
    async with (
        ActorSystem(nats=nats_server.url, cluster=Cluster(node=unique("na"))) as a,
        ActorSystem(nats=nats_server.url, cluster=Cluster(node=unique("nb"))) as b,
    ):
        yield a, b


async def remote(system: ActorSystem, name: str) -> RemoteRef[Any]:
    ref = await system.resolve(name, timeout=5.0)
    assert isinstance(ref, RemoteRef)
    return ref


# --- tell and ask -------------------------------------------------------------------------


async def test_tell_and_ask_across_nodes_keep_order(nodes: Nodes) -> None:
    a, b = nodes
    name = unique()
    await b.start(Counter, name=name)
    ref = await remote(a, name)
    assert a.lookup(name) == ref  # once a's mirror of the registry has it
    assert ref.node == b.node
    assert ref.path == f"/{name}"
    for i in range(300):
        await ref.tell(Record(i))
    await ref.tell(Add(5))
    totals = await ref.ask(Totals(0, []), timeout=5.0)
    assert totals == Totals(5, list(range(300)))  # a Struct reply decodes to its type
    assert await ref.ask(Get(), timeout=5.0) == 5


async def test_ask_timeout_raises_builtin_timeout(nodes: Nodes) -> None:
    a, b = nodes
    name = unique()
    await b.start(Counter, name=name)
    ref = await remote(a, name)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await ref.ask(Sleep(2.0), timeout=0.2)
    assert time.monotonic() - started < 1.5
    assert await ref.ask(Sleep(0.0), timeout=5.0) == "slept"


async def test_remote_errors_arrive_typed(nodes: Nodes) -> None:
    a, b = nodes
    name = unique()
    await b.start(Counter, name=name)
    ref = await remote(a, name)
    with pytest.raises(RemoteError) as info:
        await ref.ask(Boom("kaput"), timeout=5.0)
    assert info.value.remote_type == "builtins.KeyError"
    assert info.value.remote_message == "'kaput'"
    with pytest.raises(UnhandledMessageError) as unhandled:
        await ref.ask("no handler takes a str", timeout=5.0)
    assert unhandled.value.actor == f"/{name}"
    assert await ref.ask(Get(), timeout=5.0) == 0  # restarted after Boom, still serving


async def test_dead_and_unknown_actors(nodes: Nodes) -> None:
    a, b = nodes
    name = unique()
    local = await b.start(Counter, name=name)
    ref = await remote(a, name)
    assert await ref.stop() == 0  # RemoteRef.stop stops it on its node
    assert not local.is_alive
    await until(lambda: a.lookup(name) is None, 10, "a's mirror drops the stopped actor's name")
    with pytest.raises(ActorDeadError):
        await ref.ask(Get(), timeout=5.0)
    # A ref pinned to b (as one that arrived in a message) asks b, which has no such actor.
    assert a._transport is not None
    pinned: RemoteRef[Any] = RemoteRef(a._transport, name, node=b.node)
    with pytest.raises(ActorDeadError, match="no actor named"):
        await pinned.ask(Get(), timeout=5.0)
    assert not hasattr(pinned, "stats")  # the counters live on b: only a local ref has them


async def test_ask_to_a_vanished_node_fails_without_waiting(nats_server: NatsServer) -> None:
    name = unique()
    async with ActorSystem(nats=nats_server.url) as a:
        transport = a._transport
        assert transport is not None
        # No node ever listened there: the server answers "no responders" at once.
        ghost: RemoteRef[Any] = RemoteRef(transport, name, node=unique("ghost"))
        started = time.monotonic()
        with pytest.raises(ActorDeadError, match="no responders"):
            await ghost.ask(Get(), timeout=30.0)
        assert time.monotonic() - started < 2.0
        # A node that stopped: once the server has seen it go, the same.
        b = ActorSystem(nats=nats_server.url)
        await b.start(Counter, name=name)
        node = (await remote(a, name)).node
        await b.stop_all()
        gone: RemoteRef[Any] = RemoteRef(transport, name, node=node)
        failure = await until_dead(gone)  # once the server has noticed b's disconnect
        assert "no responders" in str(failure)


async def test_resolve_waits_for_a_name_registered_later(
    nodes: Nodes,
) -> None:
    a, b = nodes
    name = unique()
    assert a._transport is not None
    registry = a._transport.registry
    waiting = asyncio.ensure_future(a.resolve(name, timeout=5.0))
    await until(lambda: name in registry._waiters, 5, "the resolve waits for the name")
    assert not waiting.done()
    await b.start(Counter, name=name)
    ref = await waiting
    assert await ref.ask(Get(), timeout=5.0) == 0
    missing = unique()
    # The same error as without NATS: typed, naming the actor.
    with pytest.raises(ActorDeadError, match=f"no actor named '{missing}' on any node") as info:
        await a.resolve(missing, timeout=0.1)
    assert info.value.actor == missing
    async with ActorSystem() as local:
        with pytest.raises(ActorDeadError, match=f"no actor named '{missing}'") as info:
            await local.resolve(missing)
        assert info.value.actor == missing


# --- names --------------------------------------------------------------------------------


async def test_a_node_joining_later_mirrors_the_names_already_there(
    nats_server: NatsServer, nats_client: Client
) -> None:
    kept, released = [unique() for _ in range(200)], unique()
    async with ActorSystem(nats=nats_server.url, cluster=Cluster(node=unique("na"))) as a:
        names = await nats_client.jetstream().key_value(NAMES_BUCKET)  # a made it
        for name in kept:
            await a.start(Counter, name=name)
        gone = await a.start(Counter, name=released)
        await gone.stop()

        async def released_in_bucket() -> bool:
            try:
                await names.get(name_key(released))
            except KeyNotFoundError:
                return True
            return False

        # The release is written in the background.
        await until_async(released_in_bucket, 10, "the stopped actor's name leaves the bucket")
        async with ActorSystem(nats=nats_server.url, cluster=Cluster(node=unique("nb"))) as b:
            # At once: joining fills the mirror with the bucket's entries before it returns.
            refs = [b.lookup(name) for name in kept]
            assert all(isinstance(ref, RemoteRef) and ref.node == a.node for ref in refs)
            assert b.lookup(released) is None
            assert await b.lookup(kept[-1]).ask(Get(), timeout=5.0) == 0  # type: ignore[union-attr]


async def test_names_are_unique_across_nodes(nodes: Nodes) -> None:
    a, b = nodes
    name = unique()
    first = await b.start(Counter, name=name)
    with pytest.raises(ActorNameError, match="already runs on node"):
        await a.start(Counter, name=name)
    assert await a.resolve(name, timeout=5.0) is not None  # b's registration is intact
    await first.stop()

    async def started_on_a() -> bool:
        try:
            await a.start(Counter, name=name)
        except ActorNameError:  # b's release is on its way
            return False
        return True

    await until_async(started_on_a, 10, "a takes the name b released")
    assert isinstance(await b.resolve(name, timeout=5.0), RemoteRef)
    assert not isinstance(a.lookup(name), RemoteRef)


async def test_a_claim_under_way_does_not_hide_the_names_holder(
    nodes: Nodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = nodes
    name = unique()
    await b.start(Counter, name=name)
    held = await remote(a, name)
    assert a._transport is not None
    registry = a._transport.registry
    claim = registry.claim
    claimed = asyncio.Event()

    async def observed_claim(*args: Any) -> None:
        claimed.set()
        await claim(*args)

    monkeypatch.setattr(registry, "claim", observed_claim)
    claiming = asyncio.ensure_future(a.start(Counter, name=name))  # b holds it: refused
    await asyncio.wait_for(claimed.wait(), 5)  # a's cell exists; its claim is under way
    assert not claiming.done()
    during = a.lookup(name)  # b's actor, not the cell a may never get to run
    assert isinstance(during, RemoteRef)
    assert during.node == b.node
    assert await during.ask(Get(), timeout=5.0) == 0
    with pytest.raises(ActorNameError):
        await claiming
    assert a.lookup(name) == held


async def test_a_name_restarted_on_the_same_node_is_taken_back(
    nodes: Nodes,
) -> None:
    a, _ = nodes
    name = unique()
    ref = await a.start(Counter, name=name)
    await ref.stop()
    again = await a.start(Counter, name=name)  # no wait for the release to reach the server
    assert again.is_alive


async def test_a_dead_nodes_name_is_taken_over(nodes: Nodes, nats_client: Client) -> None:
    a, b = nodes
    name = unique()
    kv = await nats_client.jetstream().key_value(NAMES_BUCKET)
    dead = NameEntry("ghost", "x" * 32, f"/{name}", "counter", ())
    await kv.put(name_key(name), msgspec.msgpack.encode(dead))  # no node heartbeats as ghost
    ref = await a.start(Counter, name=name)
    stored = msgspec.msgpack.decode((await kv.get(name_key(name))).value or b"", type=NameEntry)
    assert stored.node == a.node
    remote_ref = await remote(b, name)
    await ref.tell(Add(2))
    assert await remote_ref.ask(Get(), timeout=5.0) == 2


async def test_the_name_mirror_never_goes_back_to_an_older_revision() -> None:
    """A watch update that arrives late never rolls a name back (no NATS: the mirror alone).

    This node took a dead node's name over (revision 7) before its watch delivered the dead
    node's entry (revision 3): the mirror keeps the takeover, and later a release.
    """
    registry = Registry(cast(Any, None), "live", "inc-live", 1)
    name = "team.lead@1"  # stored as a key with escapes
    key = name_key(name)
    dead = NameEntry("dead", "inc-dead", "/team.lead@1", "lead", ("m:Lead",))
    live = NameEntry("live", "inc-live", "/team.lead@1", "lead", ("m:Lead",))
    registry._claimed(name, live, 7)  # the compare-and-set over the dead node's revision 3
    version = registry.version
    registry._apply(key, msgspec.msgpack.encode(dead), None, 3)  # the watch catches up late
    assert registry.get(name) == live
    registry._apply(key, b"", "DEL", 5)  # the dead node's release, older than the takeover
    assert registry.get(name) == live
    assert registry.version == version  # nothing changed: cached resolutions stay valid
    registry._apply(key, msgspec.msgpack.encode(live), None, 7)  # the takeover itself
    assert registry.get(name) == live
    registry._apply(key, b"", "DEL", 8)  # released since
    assert registry.get(name) is None
    registry._apply(key, msgspec.msgpack.encode(live), None, 7)  # older than the release
    registry._apply(key, msgspec.msgpack.encode(dead), None, 3)
    assert registry.get(name) is None
    other = NameEntry("other", "inc-other", "/team.lead@1", "lead", ("m:Lead",))
    registry._apply(key, msgspec.msgpack.encode(other), None, 9)  # a newer claim: applied
    assert registry.get(name) == other


async def test_waiting_for_a_name_sees_a_registration_made_while_it_reads() -> None:
    """The watch delivers a name while ``wait``'s read is under way (answered before it)."""
    registry = Registry(cast(Any, None), "here", "inc-here", 1)
    name = "late"
    entry = NameEntry("there", "inc-there", "/late", "", ())
    reading = asyncio.Event()
    answer = asyncio.Event()

    class Bucket:
        async def get(self, key: str) -> Any:
            reading.set()
            await answer.wait()
            raise KeyNotFoundError  # the read saw the bucket before the registration

    registry._names = cast(Any, Bucket())
    waiting = asyncio.ensure_future(registry.wait(name))
    await reading.wait()
    registry._apply(name_key(name), msgspec.msgpack.encode(entry), None, 4)  # the watch
    answer.set()
    assert await asyncio.wait_for(waiting, 2.0) == entry


async def test_names_with_unusual_characters(nodes: Nodes) -> None:
    a, b = nodes
    name = f"svc:{uuid.uuid4().hex[:6]}@host+x=1.~y"
    await b.start(Counter, name=name)
    ref = await remote(a, name)
    assert ref.name == name
    assert await ref.ask(Get(), timeout=5.0) == 0


async def test_generated_names_stay_local_but_refs_reach_them(
    nodes: Nodes,
) -> None:
    a, b = nodes
    anonymous = await a.start(Counter)  # "counter-1" on a: not registered cluster-wide
    await anonymous.tell(Add(7))
    name = unique()
    await b.start(Counter, name=name)
    assert b.lookup(anonymous.name) is None
    ref = await remote(a, name)
    # b's actor receives a's ref inside a message and asks it back across the wire.
    assert await ref.ask(AskBack(anonymous), timeout=5.0) == 7


async def test_refs_round_trip_as_refs(nodes: Nodes) -> None:
    a, b = nodes
    name = unique()
    await b.start(Counter, name=name)
    mine = await a.start(Counter, name=unique())

    class Echo(Actor):
        @handler
        async def echo(self, msg: AskBack) -> AskBack:
            return msg

    echo_name = unique()
    await b.start(Echo, name=echo_name)
    echo = await remote(a, echo_name)
    back = await echo.ask(AskBack(mine), timeout=5.0)
    assert back.who == mine  # our own ref comes home as the local ref
    assert type(back.who) is type(mine)
    other = await echo.ask(AskBack(await remote(a, name)), timeout=5.0)
    assert isinstance(other.who, RemoteRef)
    assert other.who.node == b.node


# --- batching and sizes -------------------------------------------------------------------


async def test_many_tells_travel_in_few_nats_messages(nodes: Nodes, nats_client: Client) -> None:
    a, b = nodes
    name = unique()
    await b.start(Counter, name=name)
    ref = await remote(a, name)
    seen: list[int] = []

    async def count(msg: Msg) -> None:
        seen.append(len(decode_frame(msg.data)))

    sub = await nats_client.subscribe(f"swarm.node.{b.node}", cb=count)
    await sync(nats_client)  # (flush() alone does not make the subscription live: see nats_sync)
    for _ in range(1000):
        await ref.tell(Add(1))
    assert await ref.ask(Get(), timeout=5.0) == 1000
    await until(lambda: sum(seen) >= 1001, 10, "the observer sees every frame")
    await sub.unsubscribe()
    assert sum(seen) == 1001  # every tell and the ask
    assert len(seen) <= 3  # in one frame per loop iteration (and per 64 KiB)


async def test_other_subscribers_see_every_frame_in_publish_order(
    nodes: Nodes, nats_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Frames the outbox hands to the socket itself (``_write_now``) and what nats-py sends
    for the same client (plain publishes, JetStream requests of the registry) reach another
    subscriber whole, once, and in the order the node published them."""
    a, b = nodes
    name = unique()
    await b.start(Counter, name=name)
    ref = await remote(a, name)
    transport = a._transport
    assert transport is not None
    outbox, client = transport.outbox, transport.client
    to_b, probe = f"swarm.node.{b.node}", f"swarm.node.{unique('probe')}"  # nobody serves probe
    published: list[tuple[str, bytes]] = []  # in the order they enter nats-py's pending list
    original = outbox.publish

    def publish(
        subject: str, payload: bytes, reply: str = "", headers: dict[str, str] | None = None
    ) -> None:
        if subject == to_b:
            published.append((subject, payload))
        original(subject, payload, reply, headers)

    monkeypatch.setattr(outbox, "publish", publish)
    seen = await observe(nats_client, "swarm.node.*")  # one subscription: one delivery order

    async def plain(data: bytes) -> None:
        published.append((probe, data))
        await client.publish(probe, data)

    near = outbox.flush_bytes - 40
    for i in range(5):
        await ref.tell(Record(i))  # alone in its frame, written at the end of the iteration
        await plain(b"after a frame %d" % i)
        await asyncio.sleep(0)
        await ref.tell(Add(1))
        assert await ref.ask(Get(), timeout=5.0) == i + 1  # an ask: written at once
        await plain(b"after an ask %d" % i)
        for size in (near, near + 60, 3 * outbox.flush_bytes):  # around and over the bound
            await ref.tell(Totals(0, [1] * size))
            await ref.tell(Record(i))
        await plain(b"after large frames %d" % i)
        for _ in range(200):
            await ref.tell(Record(i))
        await a.start(Counter, name=unique())  # the registry's requests on the same client
        await plain(b"after a registration %d" % i)
    assert await ref.ask(Get(), timeout=5.0) == 5
    observed: list[tuple[str, bytes]] = []
    async with asyncio.timeout(10.0):
        while len(observed) < len(published):
            msg = await seen.get()
            if msg.subject in (to_b, probe):
                observed.append((msg.subject, msg.data))
    assert len(published) > 40
    assert observed == published


async def test_frames_are_split_at_the_byte_bound(nodes: Nodes) -> None:
    a, b = nodes
    name = unique()
    await b.start(Counter, name=name)
    ref = await remote(a, name)
    transport = a._transport
    assert transport is not None
    before = transport.outbox.frames_sent
    chunk = b"x" * 10_000  # no handler takes bytes: a (local) dead letter on b, after travelling
    for i in range(40):  # 400 kB in one loop iteration: several frames of <= ~64 kB
        await ref.tell(Record(i))
        await ref.tell(chunk)
    assert await ref.ask(Get(), timeout=5.0) == 0
    frames = transport.outbox.frames_sent - before
    assert 6 <= frames <= 10


async def test_oversized_message_is_refused_before_sending(
    nodes: Nodes,
) -> None:
    a, b = nodes
    name = unique()
    await b.start(Counter, name=name)
    ref = await remote(a, name)
    transport = a._transport
    assert transport is not None
    before = transport.outbox.frames_sent
    big = b"x" * (transport.outbox.max_payload + 1)
    with pytest.raises(MessageTooLargeError) as info:
        await ref.tell(big)
    assert info.value.limit == transport.outbox.max_payload
    assert info.value.size > transport.outbox.max_payload
    with pytest.raises(MessageTooLargeError):
        await ref.ask(big, timeout=1.0)
    assert transport.outbox.frames_sent == before
    # Just under the limit goes through on its own, between small ones.
    await ref.tell(Add(1))
    await ref.tell(b"y" * (transport.outbox.max_payload - 200))
    await ref.tell(Add(1))
    assert await ref.ask(Get(), timeout=5.0) == 2


async def test_tell_waits_when_nats_cannot_keep_up_and_stays_cancellable() -> None:
    async with (
        NatsServer() as server,
        ActorSystem(nats=server.url) as a,
        ActorSystem(nats=server.url) as b,
    ):
        name = unique()
        await b.start(Counter, name=name)
        ref = await remote(a, name)
        transport = a._transport
        assert transport is not None
        sent = 0

        async def flood() -> None:
            nonlocal sent
            while True:
                await ref.tell(Record(sent))
                sent += 1

        server.pause()  # nothing leaves the sockets any more
        flooding = asyncio.ensure_future(flood())
        try:
            # A tell returns without suspending unless a publish is stalled (nats-py's buffer
            # is full): this task runs only while the flood waits. Cancel it once it waits on
            # a stall, not after a fixed time: the stall that was pending after 1 s on an idle
            # machine could be one that nats-py was just clearing on a loaded one.
            def stalled() -> bool:
                stall = transport.outbox.stalled
                return stall is not None and not stall.done()

            await until(stalled, 60, "a tell waits on a stalled publish")
            assert not flooding.done()
            flooding.cancel()  # the cancellation gets through a tell waiting for nats-py
            with pytest.raises(asyncio.CancelledError):
                await flooding
            assert sent < 2_000_000  # bounded by the buffers
        finally:
            flooding.cancel()
            server.resume()  # (a failure above would otherwise leave it paused for the teardown)
        totals = await ref.ask(Totals(0, []), timeout=30.0)
        # Every message got through, in order (the cancelled tell had buffered its own).
        assert totals.seen == list(range(sent + 1))


async def test_full_mailbox_keeps_remote_messages_in_order(
    nodes: Nodes,
) -> None:
    a, b = nodes

    class Slow(Actor, mailbox_size=2):
        def __init__(self) -> None:
            self.seen: list[int] = []

        @handler
        async def record(self, msg: Record) -> None:
            await asyncio.sleep(0)
            self.seen.append(msg.item)

        @handler
        async def get(self, msg: Get) -> list[int]:
            return self.seen

    name = unique()
    await b.start(Slow, name=name)
    ref = await remote(a, name)
    for i in range(50):
        await ref.tell(Record(i))
    assert await ref.ask(Get(), timeout=5.0) == list(range(50))


async def test_full_mailbox_of_an_idle_actor_is_served_from_the_read_loop(nodes: Nodes) -> None:
    a, b = nodes

    class Tiny(Actor, mailbox_size=2):
        def __init__(self) -> None:
            self.seen: list[int] = []

        @handler
        async def record(self, msg: Record) -> None:
            self.seen.append(msg.item)

        @handler
        async def get(self, msg: Get) -> list[int]:
            return self.seen

    name = unique()
    tiny = await b.start(Tiny, name=name)
    ref = await remote(a, name)
    for i in range(500):  # one frame: far more than the mailbox holds
        ref.tell_nowait(Record(i))
    assert await ref.ask(Get(), timeout=5.0) == list(range(500))
    assert tiny.stats().dropped == 0


async def test_overflow_beyond_its_limit_is_refused_not_buffered(
    nodes: Nodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = nodes
    monkeypatch.setattr(inbox_module, "OVERFLOW_LIMIT", 3)
    gate = asyncio.Event()

    class Blocked(Actor, mailbox_size=1):
        def __init__(self) -> None:
            self.seen: list[int] = []

        @handler
        async def record(self, msg: Record) -> None:
            await gate.wait()
            self.seen.append(msg.item)

        @handler
        async def get(self, msg: Get) -> list[int]:
            return self.seen

    name = unique()
    local = await b.start(Blocked, name=name)
    ref = await remote(a, name)
    before = b.dead_letters
    for i in range(10):  # 1 in the handler, 1 in the mailbox, 3 waiting: 5 refused
        await ref.tell(Record(i))
    asking = asyncio.ensure_future(ref.ask(Get(), timeout=5.0))  # refused too: mailbox full
    with pytest.raises(MailboxFullError):
        await asking
    assert b.dead_letters - before == 5
    gate.set()

    # The backlog drains (a remote ask arriving before it has would be refused, as above);
    # local asks wait for room instead. (They may answer inline: yield to let it drain.)
    async def drained() -> bool:
        return len(await local.ask(Get())) >= 5

    await until_async(drained, 10, "the backlog drains", poll=0.005)
    assert await ref.ask(Get(), timeout=5.0) == [0, 1, 2, 3, 4]


async def test_tells_to_unregistered_names_raise(nodes: Nodes) -> None:
    a, b = nodes
    name = unique()
    actor = await b.start(Counter, name=name)
    ref = await remote(a, name)
    await actor.stop()
    await until(lambda: not ref.is_alive, 10, "a's mirror drops the stopped actor's name")
    assert ref.node is None
    with pytest.raises(ActorDeadError, match="is registered"):
        await ref.tell(Add(1))
    with pytest.raises(ActorDeadError):
        ref.tell_nowait(Add(1))


# --- bad input ----------------------------------------------------------------------------


async def dead_letters(client: Client, node: str) -> asyncio.Queue[Msg]:
    return await observe(client, f"swarm.deadletter.{node}")


async def test_garbage_frames_are_dead_letters_and_the_node_keeps_working(
    nodes: Nodes, nats_client: Client
) -> None:
    a, b = nodes
    name = unique()
    await b.start(Counter, name=name)
    letters = await dead_letters(nats_client, b.node or "")
    subject = f"swarm.node.{b.node}"
    good = frame([TellOut(name, "helpers:Add", Add(1), "", "")], msgspec.msgpack.Encoder())
    with capture_logs() as logs:
        await nats_client.publish(subject, b"\x00garbage\xff")
        await nats_client.publish(subject, good[:-3])  # truncated
        letter = await asyncio.wait_for(letters.get(), 5.0)
        assert letter.data == b"\x00garbage\xff"
        assert letter.headers is not None
        assert "not a valid frame" in letter.headers["Swarm-Reason"]
        truncated = await asyncio.wait_for(letters.get(), 5.0)
        assert truncated.data == good[:-3]
    bad = [e for e in logs if e["event"] == "transport.bad_frame"]
    assert len(bad) == 2
    assert {e["log_level"] for e in bad} == {"warning"}
    ref = await remote(a, name)
    await nats_client.publish(subject, good)  # a well-formed frame from a plain client works
    await sync(nats_client)  # the server routed it to b before a's frames below
    await ref.tell(Add(1))
    assert await ref.ask(Get(), timeout=5.0) == 2


async def test_garbage_request_gets_an_error_reply(nodes: Nodes, nats_client: Client) -> None:
    _, b = nodes
    reply = await nats_client.request(f"swarm.node.{b.node}", b"\x93not msgpack", timeout=5.0)
    envelopes = decode_frame(reply.data)
    assert len(envelopes) == 1
    failure = envelopes[0]
    assert isinstance(failure, Failure)
    assert failure.error.endswith("WireFormatError")
    assert "not a valid frame" in failure.message


async def test_wrong_schema_asks_get_failures_and_tells_dead_letters(
    nodes: Nodes, nats_client: Client
) -> None:
    _, b = nodes
    name = unique()
    await b.start(Counter, name=name)
    letters = await dead_letters(nats_client, b.node or "")
    inbox = nats_client.new_inbox()
    answers: asyncio.Queue[Msg] = asyncio.Queue()
    await nats_client.subscribe(inbox, cb=answers.put)
    encoder = msgspec.msgpack.Encoder()
    subject = f"swarm.node.{b.node}"

    async def ask(type_name: str, body: Any, corr: int) -> Failure:
        envelope = AskOut(name, type_name, body, "", "", corr, inbox)
        await nats_client.publish(subject, frame([envelope], encoder))
        answer = decode_frame((await asyncio.wait_for(answers.get(), 5.0)).data)[0]
        assert isinstance(answer, Failure)
        assert answer.corr == corr
        return answer

    unknown = await ask("nowhere:Nothing", {"x": 1}, 1)
    assert "unknown message type" in unknown.message
    assert unknown.error.endswith("WireFormatError")
    wrong_shape = await ask("helpers:Add", {"n": "not an int"}, 2)
    assert "not a valid helpers:Add" in wrong_shape.message
    # An envelope with a wrong field type, still recognisable as an ask, next to a good tell.
    broken_ask = encoder.encode([1, name, "helpers:Get", {}, 5, "", 3, inbox])
    good_tell = encoder.encode(TellOut(name, "helpers:Add", Add(4), "", ""))
    mixed = b"\xdd\x00\x00\x00\x02" + broken_ask + good_tell
    await nats_client.publish(subject, mixed)
    broken = decode_frame((await asyncio.wait_for(answers.get(), 5.0)).data)[0]
    assert isinstance(broken, Failure)
    assert broken.corr == 3
    # Tells: unknown type and unknown actor are dead letters with their reasons.
    tells = [
        TellOut(name, "nowhere:Nothing", 1, "", "/someone"),
        TellOut("nobody-" + name, "helpers:Add", Add(1), "", ""),
    ]
    await nats_client.publish(subject, frame(tells, encoder))
    first = await asyncio.wait_for(letters.get(), 5.0)
    second = await asyncio.wait_for(letters.get(), 5.0)
    assert first.headers is not None
    assert second.headers is not None
    assert "unknown message type" in first.headers["Swarm-Reason"]
    assert first.headers["Swarm-Sender"] == "/someone"
    assert second.headers["Swarm-Reason"] == "no such actor"
    # The good tell of the mixed frame was delivered; the node still serves.
    await nats_client.publish(
        subject, frame([AskOut(name, "helpers:Get", Get(), "", "", 9, inbox)], encoder)
    )
    answer = decode_frame((await asyncio.wait_for(answers.get(), 5.0)).data)[0]
    assert isinstance(answer, Reply)
    assert answer.corr == 9
    assert msgspec.msgpack.decode(answer.body) == 4


class Opaque:
    """A field type msgspec cannot decode: the wire's decode hook refuses it."""


class Loose(msgspec.Struct):
    anything: object  # annotated ``object``, not ``Any``: holds whatever was sent


class Strict(msgspec.Struct):
    thing: Opaque


class Picky(msgspec.Struct):
    n: int

    def __post_init__(self) -> None:
        if self.n < 0:
            raise LookupError(f"n must not be negative, got {self.n}")  # not a ValueError


class Nested(msgspec.Struct):
    deep: Any


class Taker(Actor):
    @handler
    async def loose(self, msg: Loose) -> object:
        return msg.anything

    @handler
    async def strict(self, msg: Strict) -> str:
        return "never"

    @handler
    async def picky(self, msg: Picky) -> int:
        return msg.n

    @handler
    async def nested(self, msg: Nested) -> str:
        return "shallow enough"


async def test_every_decoder_stage_failing_answers_each_ask_and_dead_letters_each_tell(
    nodes: Nodes, nats_client: Client
) -> None:
    _, b = nodes
    name = unique()
    await b.start(Taker, name=name)
    letters = await dead_letters(nats_client, b.node or "")
    inbox = nats_client.new_inbox()
    answers: asyncio.Queue[Msg] = asyncio.Queue()
    await nats_client.subscribe(inbox, cb=answers.put)
    encoder = msgspec.msgpack.Encoder()
    deep = msgspec.Raw(b"\x81\xa4deep" + b"\x91" * 1000 + b"\xc0")  # {"deep": [[[...]]]}
    bad_bodies: list[tuple[str, Any, str]] = [
        (type_name(Strict), {"thing": 1}, "Opaque"),  # the decode hook refuses the field type
        (type_name(Picky), {"n": -1}, "must not be negative"),  # __post_init__ raises
        (type_name(Nested), deep, "not a valid"),  # deeper than the stack
        (type_name(Picky), msgspec.Raw(b"\xa3abc"), "not a valid"),  # a str, not a Picky
    ]
    envelopes: list[Any] = []
    for corr, (kind, body, _) in enumerate(bad_bodies, start=1):
        envelopes.append(AskOut(name, kind, body, "", "", corr, inbox))
        envelopes.append(TellOut(name, kind, body, "", "/sprayer"))
    envelopes.append(AskOut(name, type_name(Loose), Loose([1, "x"]), "", "", 99, inbox))
    # One frame: each bad message costs only itself; the good ask at its end is answered.
    await nats_client.publish(f"swarm.node.{b.node}", frame(envelopes, encoder))
    got: dict[int, Any] = {}
    while len(got) < len(bad_bodies) + 1:
        for answer in decode_frame((await asyncio.wait_for(answers.get(), 5.0)).data):
            assert isinstance(answer, Failure | Reply)
            got[answer.corr] = answer
    for corr, (_, _, reason) in enumerate(bad_bodies, start=1):
        failure = got[corr]
        assert isinstance(failure, Failure), failure
        assert failure.error.endswith("WireFormatError")
        assert reason in failure.message
    good = got[99]
    assert isinstance(good, Reply)
    assert msgspec.msgpack.decode(good.body) == [1, "x"]
    reasons = []
    for _ in bad_bodies:
        letter = await asyncio.wait_for(letters.get(), 5.0)
        assert letter.headers is not None
        assert letter.headers["Swarm-Sender"] == "/sprayer"
        reasons.append(letter.headers["Swarm-Reason"])
    for reason, (_, _, expected) in zip(reasons, bad_bodies, strict=True):
        assert expected in reason
    # The node still serves the actor.
    ref = await remote(nodes[0], name)
    assert await ref.ask(Picky(3), timeout=5.0) == 3


async def test_wrong_credentials_fail_fast() -> None:
    async with NatsServer(user="swarm", password="right") as server:
        started = time.monotonic()
        with pytest.raises(AuthenticationError):
            async with ActorSystem(
                nats=NatsOptions(servers=server.url, user="swarm", password="wrong")
            ):
                pass
        assert time.monotonic() - started < 3.0
        options = NatsOptions(servers=server.url, user="swarm", password="right")
        async with ActorSystem(nats=options) as system:
            assert system.node is not None


async def test_a_server_without_jetstream_is_refused_clearly() -> None:
    async with NatsServer(jetstream=False) as server:
        with pytest.raises(TransportError, match="JetStream"):
            async with ActorSystem(nats=server.url):
                pass


async def test_bad_nats_arguments_are_refused() -> None:
    with pytest.raises(InvalidArgumentError):
        ActorSystem(nats=42)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        ActorSystem(nats="nats://127.0.0.1:4222", cluster=Cluster(node="has.dot"))
    with pytest.raises(InvalidArgumentError):
        ActorSystem(cluster=Cluster(node="n1"))
    with pytest.raises(InvalidArgumentError):
        ActorSystem(nats="nats://127.0.0.1:4222", cluster=Cluster(data_dir="/tmp/x"))


async def test_node_ids_are_unique_among_live_nodes(nats_server: NatsServer) -> None:
    node = unique("dup")
    async with ActorSystem(nats=nats_server.url, cluster=Cluster(node=node)):
        with pytest.raises(TransportError, match="in use by a live node"):
            async with ActorSystem(nats=nats_server.url, cluster=Cluster(node=node)):
                pass


class Unstorable(MemoryJournal):
    """A journal whose server could not store what it was given (flush reports it)."""

    async def flush(self) -> None:
        raise JournalTimeoutError("1 of 1 events not confirmed within 30 s", sequences=(None,))


async def test_a_node_leaves_nats_even_when_its_journal_cannot_flush(
    nats_server: NatsServer, nats_client: Client
) -> None:
    name = unique()
    system = ActorSystem(
        nats=nats_server.url, cluster=Cluster(node=unique("nj")), journal=Unstorable()
    )
    await system.__aenter__()
    await system.start(Counter, name=name)
    transport = system._transport
    assert transport is not None
    with pytest.raises(JournalTimeoutError):  # the failure is reported...
        await system.stop_all()
    assert transport.client.is_closed  # ...and the node left NATS all the same
    names = await nats_client.jetstream().key_value(NAMES_BUCKET)
    with pytest.raises(KeyNotFoundError):
        await names.get(name_key(name))  # its names released


async def test_a_live_nodes_names_are_not_taken_when_its_heartbeat_is_missing(
    nodes: Nodes, nats_client: Client
) -> None:
    a, b = nodes
    name = unique()
    await a.start(Counter, name=name)
    await remote(b, name)
    # As after the node bucket elected a new leader: keys whose TTL ran out while nobody could
    # heartbeat are gone, though their nodes are fine. a answers b's probe: the name stays.
    heartbeats = await nats_client.jetstream().key_value(NODES_BUCKET)
    assert a.node is not None
    await heartbeats.delete(a.node)
    with pytest.raises(ActorNameError, match=f"runs on node {a.node}"):
        await b.start(Counter, name=name)
    assert a.lookup(name) is not None
    assert isinstance(b.lookup(name), RemoteRef)
