"""``self.sender``: the sender of the message being handled, and ``tell(..., reply_to=ref)``.

Locally (actor to actor, from outside, asks, explicit reply-to, virtual senders, outside
handlers, one sender per handler call however calls interleave) and across two OS processes
over NATS (a remote ref back to the sender, a placed actor's ``PlacedRef``, reply-to across
nodes). The wire form of the origin (and what an older node's frame without it means) is
checked on the codec.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from helpers import unique, until_async
from sender_peer import Call, Describe, Echo, Ping, Pings, Pong, Received, Roamer, describe, peer
from swarm_actors import Actor, ActorRef, ActorSystem, InvalidArgumentError, handler
from swarm_actors.cluster import RemoteRef
from swarm_actors.testing import NatsServer


async def received(ref: Any, count: int) -> list[tuple[int, str]]:
    """The ``Pong``\\ s ``ref`` (an ``Echo``) received, once it has ``count`` of them."""
    seen: list[tuple[int, str]] = []

    async def enough() -> bool:
        seen[:] = [tuple(pair) for pair in await ref.ask(Received(), timeout=5.0)]
        return len(seen) >= count

    await until_async(enough, 15.0, f"{count} Pongs received")
    return seen


class Tick(msgspec.Struct):
    pass


# --- locally ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_handler_replies_to_the_actor_that_told_it() -> None:
    async with ActorSystem() as system:
        echo = await system.start(Echo, name="echo")
        client = await system.start(Echo, name="client")
        await client.tell(Call(echo, 1))  # client's handler tells echo: echo's sender is client
        assert await received(client, 1) == [(1, "ActorRef /echo")]
        # The Pong's handler (in client) saw echo as its sender, and echo saw client:
        await echo.tell(Call(client, 2))
        assert await received(echo, 1) == [(2, "ActorRef /client")]


@pytest.mark.asyncio
async def test_the_sender_is_none_from_outside_any_actor() -> None:
    async with ActorSystem() as system:
        echo = await system.start(Echo)
        await echo.tell(Pong(1, "x"))
        assert await received(echo, 1) == [(1, "None")]
        assert await echo.ask(Describe()) == "None"


class Note(msgspec.Struct):
    n: int


class Kick(msgspec.Struct):
    target: Any
    first: int
    count: int


class Notebook(Actor):
    """Keeps, per ``Note``, who sent it (as ``describe`` spells it)."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, str]] = []

    @handler
    async def note(self, msg: Note) -> None:
        self.seen.append((msg.n, describe(self.sender)))

    @handler
    async def read(self, msg: Received) -> list[tuple[int, str]]:
        return self.seen


class Kicker(Actor):
    @handler
    async def kick(self, msg: Kick) -> None:
        for n in range(msg.first, msg.first + msg.count):
            msg.target.tell_nowait(Note(n))


@pytest.mark.asyncio
async def test_each_message_of_one_turn_has_its_own_sender() -> None:
    # One turn handles a burst from one actor, tells from outside and a burst from another
    # actor: each handler sees its own message's sender, never the one before it.
    async with ActorSystem() as system:
        book = await system.start(Notebook)
        a = await system.start(Kicker, name="a")
        b = await system.start(Kicker, name="b")
        await a.ask(Kick(book, 1, 2))  # run inline: no turn of the book's in between
        book.tell_nowait(Note(3))
        book.tell_nowait(Note(4))
        await b.ask(Kick(book, 5, 2))
        book.tell_nowait(Note(7))
        assert await book.ask(Received()) == [
            (1, "ActorRef /a"),
            (2, "ActorRef /a"),
            (3, "None"),
            (4, "None"),
            (5, "ActorRef /b"),
            (6, "ActorRef /b"),
            (7, "None"),
        ]


@pytest.mark.asyncio
async def test_an_ask_handler_sees_the_asking_actor_and_the_ask_returns_its_value() -> None:
    class Asker(Actor):
        @handler
        async def ask_it(self, msg: Call) -> str:
            answer: str = await msg.target.ask(Describe(), timeout=5.0)
            return answer

    async with ActorSystem() as system:
        echo = await system.start(Echo)
        asker = await system.start(Asker, name="asker")
        assert await asker.ask(Call(echo, 0)) == "ActorRef /asker"  # inline (echo was idle)
        # Queued behind a busy handler: the same sender once it runs.
        gate = asyncio.Event()

        class Slow(Echo):
            @handler
            async def wait(self, msg: int) -> None:
                await gate.wait()

        slow = await system.start(Slow)
        await slow.tell(1)
        pending = asyncio.create_task(asker.ask(Call(slow, 0)))
        await asyncio.sleep(0)
        gate.set()
        assert await pending == "ActorRef /asker"


@pytest.mark.asyncio
async def test_reply_to_names_another_ref_as_the_sender() -> None:
    async with ActorSystem() as system:
        echo = await system.start(Echo, name="echo")
        collector = await system.start(Echo, name="collector")
        await echo.tell(Ping(1), reply_to=collector)  # from outside
        await echo.tell(Ping(2), collector)  # positional, as Akka's tell(msg, sender)
        echo.tell_nowait(Ping(3), reply_to=collector)
        assert sorted(await received(collector, 3)) == [(n, "ActorRef /echo") for n in (1, 2, 3)]

        class Forwarder(Actor):
            @handler
            async def forward(self, msg: Call) -> None:  # from an actor: reply_to wins
                await msg.target.tell(Ping(msg.n), reply_to=collector)

        forwarder = await system.start(Forwarder)
        await forwarder.tell(Call(echo, 4))
        assert (await received(collector, 4))[-1] == (4, "ActorRef /echo")


@pytest.mark.asyncio
async def test_reply_to_must_be_a_ref() -> None:
    async with ActorSystem() as system:
        echo = await system.start(Echo)
        with pytest.raises(InvalidArgumentError, match="reply_to must be an actor ref"):
            await echo.tell(Ping(1), reply_to="/collector")  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError, match="reply_to must be an actor ref"):
            echo.tell_nowait(Ping(1), reply_to=42)  # type: ignore[arg-type]
        virtual = system.virtual(Echo, "v")
        with pytest.raises(InvalidArgumentError):
            await virtual.tell(Ping(1), reply_to=object())  # type: ignore[arg-type]
        assert echo.stats().processed == 0  # nothing was sent


@pytest.mark.asyncio
async def test_a_virtual_actor_s_sender_is_its_virtual_ref() -> None:
    async with ActorSystem() as system:
        echo = await system.start(Echo, name="echo")
        session = system.virtual(Echo, "user-7")
        await session.tell(Call(echo, 5))
        # The reply went to the virtual actor through its VirtualRef (not its activation).
        assert await received(session, 1) == [(5, "ActorRef /echo")]
        await echo.tell(Call(session, 6))  # echo -> session: session's reply reaches echo
        assert await received(echo, 1) == [(6, "VirtualRef /Echo:user-7")]

        class Keep(Actor):
            def __init__(self) -> None:
                self.seen: Any = None

            @handler
            async def keep(self, msg: Ping) -> None:
                self.seen = self.sender

            @handler
            async def get(self, msg: Describe) -> Any:
                return self.seen

        keeper = await system.start(Keep)
        await session.tell(Call(keeper, 7))
        await until_async(lambda: _is_set(keeper), 5.0, "the keeper got a sender")
        seen = await keeper.ask(Describe())
        assert seen == session
        await session.passivate()  # a reply after passivation activates it again
        assert not session.is_active
        await seen.tell(Pong(8, "late"))
        assert await received(session, 1) == [(8, "None")]  # a fresh activation; from outside


async def _is_set(ref: Any) -> bool:
    return await ref.ask(Describe()) is not None


@pytest.mark.asyncio
async def test_outside_handlers_and_for_timers_the_sender_is_none() -> None:
    seen: dict[str, str] = {}

    class Child(Actor):
        async def on_start(self) -> None:
            seen["child on_start"] = describe(self.sender)

    class Watcher(Actor):
        async def on_start(self) -> None:
            seen["on_start"] = describe(self.sender)
            self.timers.start_single("t", Tick(), delay=0)

        async def on_stop(self) -> None:
            seen["on_stop"] = describe(self.sender)

        @handler
        async def tick(self, msg: Tick) -> None:
            seen["timer"] = describe(self.sender)

        @handler
        async def spawn(self, msg: Ping) -> None:
            seen["handler"] = describe(self.sender)
            await self.start_child(Child)  # its on_start runs inside this handler

    async with ActorSystem() as system:
        echo = await system.start(Echo, name="echo")
        watcher = await system.start(Watcher, name="watcher")
        await echo.tell(Call(watcher, 1))
        await until_async(lambda: _has(seen, "child on_start", "timer"), 5.0, "all ran")
        await watcher.stop()
    assert seen == {
        "on_start": "None",
        "timer": "None",
        "handler": "ActorRef /echo",
        "child on_start": "None",
        "on_stop": "None",
    }
    assert Watcher().sender is None  # an instance the runtime never started


async def _has(seen: dict[str, str], *keys: str) -> bool:
    return all(key in seen for key in keys)


@pytest.mark.asyncio
async def test_each_handler_call_keeps_its_own_sender_across_suspensions() -> None:
    """The sender is per handler call (a context variable), not per actor.

    ``Later``'s handler starts a task that replies after the actor has gone on to handle a
    message from another sender: the task still replies to the first one. An attribute set
    for each message would hold the second sender by then (and so would it for two handler
    calls in flight at once, with ``max_concurrency`` > 1).
    """
    release = asyncio.Event()

    class Later(Actor):
        def __init__(self) -> None:
            self.tasks: set[asyncio.Task[None]] = set()

        @handler
        async def ping(self, msg: Ping) -> None:
            sender = self.sender

            async def reply() -> None:
                await release.wait()
                assert self.sender == sender  # still this call's sender
                assert self.sender is not None
                await self.sender.tell(Pong(msg.n, describe(self.sender)))
                assert describe(sender) == f"ActorRef /{'first' if msg.n == 1 else 'second'}"

            task = asyncio.create_task(reply())  # it keeps this call's sender
            self.tasks.add(task)
            await asyncio.sleep(0)  # the handler suspends: it keeps its sender when resumed
            assert self.sender == sender

    async with ActorSystem() as system:
        later = await system.start(Later)
        first = await system.start(Echo, name="first")
        second = await system.start(Echo, name="second")
        await first.tell(Call(later, 1))
        await second.tell(Call(later, 2))
        await until_async(lambda: _processed(later, 2), 5.0, "both Pings handled")
        release.set()
        # Each reply reached the sender of its own Ping; the Pong says who that was.
        assert [n for n, _ in await received(first, 1)] == [1]
        assert [n for n, _ in await received(second, 1)] == [2]


async def _processed(ref: ActorRef[Any], count: int) -> bool:
    return ref.stats().processed >= count and not ref.stats().pending


# --- across two OS processes over NATS ------------------------------------------------------


@pytest.mark.asyncio
async def test_the_sender_across_os_processes(nats_server: NatsServer) -> None:
    name, node = unique("echo"), unique("peer")
    async with ActorSystem(nats=nats_server.url) as system, peer(nats_server.url, node, name):
        echo = await system.resolve(name, timeout=10.0)
        assert isinstance(echo, RemoteRef)
        client = await system.start(Echo, name=unique("client"))
        # A tell from an actor here to an actor there: its handler's self.sender is a
        # RemoteRef back to the client, and its reply reaches it.
        await client.tell(Call(echo, 1))
        assert await received(client, 1) == [(1, f"RemoteRef /{name}")]
        # The Ping's handler on the peer saw a RemoteRef to the client:
        await echo.tell(Call(client, 2))  # the peer's Echo tells our client; client replies
        assert await received(echo, 1) == [(2, f"RemoteRef {client.path}")]
        # An ask from an actor there sees the asker; from outside, nobody.
        assert await echo.ask(Describe(), timeout=10.0) == "None"

        class Asker(Actor):
            @handler
            async def ask_it(self, msg: Call) -> str:
                answer: str = await msg.target.ask(Describe(), timeout=10.0)
                return answer

        asker = await system.start(Asker, name=unique("asker"))
        assert await asker.ask(Call(echo, 0), timeout=15.0) == f"RemoteRef {asker.path}"
        # reply_to across nodes, from outside: the peer replies to the collector here.
        collector = await system.start(Echo, name=unique("collector"))
        await echo.tell(Ping(3), reply_to=collector)
        assert await received(collector, 1) == [(3, f"RemoteRef /{name}")]


@pytest.mark.asyncio
async def test_a_placed_actor_s_sender_across_os_processes(nats_server: NatsServer) -> None:
    name, node = unique("echo"), unique("peer")
    async with ActorSystem(nats=nats_server.url) as system, peer(nats_server.url, node, name):
        echo = await system.resolve(name, timeout=10.0)
        roamer = system.placed(Roamer, unique("roamer"))
        # A tell across nodes is at most once, and the peer joining moves shards meanwhile: a
        # Call (or its Pong) may be lost in the handover, so it is sent again until one lands.
        # The placed actor, wherever it runs, tells echo; echo's reply finds it through the
        # PlacedRef it saw as its sender (a RemoteRef to echo if the roamer runs here, its
        # ActorRef if the roamer's shard is the peer's).
        [(n, sender), *_] = await received_resending(roamer, lambda: roamer.tell(Call(echo, 4)))
        assert n == 4
        assert sender in (f"RemoteRef /{name}", f"ActorRef /{name}")
        [(n, sender), *_] = await received_resending(echo, lambda: echo.tell(Call(roamer, 5)))
        assert (n, sender) == (5, f"PlacedRef {roamer.path}")


async def received_resending(ref: Any, send: Any) -> list[tuple[int, str]]:
    """``received(ref, 1)``, sending again with ``send()`` each second until a Pong lands."""
    seen: list[tuple[int, str]] = []

    async def landed() -> bool:
        seen[:] = [tuple(pair) for pair in await ref.ask(Received(), timeout=5.0)]
        if not seen:
            await send()
        return bool(seen)

    await until_async(landed, 60.0, "a Pong received", poll=1.0)
    return seen


@pytest.mark.asyncio
async def test_a_local_virtual_sender_arrives_as_none_on_another_node(
    nats_server: NatsServer,
) -> None:
    """A ``system.virtual`` actor cannot be reached from another node: no sender, but sent."""
    async with (
        ActorSystem(nats=nats_server.url) as here,
        ActorSystem(nats=nats_server.url) as there,
    ):
        name = unique("echo")
        await there.start(Echo, name=name)
        echo = await here.resolve(name, timeout=10.0)
        session = here.virtual(Echo, "local-only")
        await session.tell(Call(echo, 6))
        seen: list[tuple[int, str]] = []

        async def pinged() -> bool:
            seen[:] = [tuple(pair) for pair in await echo.ask(Pings(), timeout=5.0)]
            return bool(seen)

        await until_async(pinged, 10.0, "echo handled the Ping")
        assert seen == [(6, "None")]


# --- on the wire ----------------------------------------------------------------------------


def test_the_origin_travels_as_a_ref_extension_and_is_optional() -> None:
    from swarm_actors._nats._wire import Ask, AskOut, Tell, TellOut, decode_frame, frame
    from swarm_actors.errors import WireFormatError
    from test_wire import FakeRef, make_codec

    codec = make_codec()
    sender = FakeRef(("node-a", "client", "/client", "echo", ("sender_peer:Echo",)))
    tell, ask, bare = decode_frame(
        frame(
            [
                TellOut("echo", "", 1, "", "/client", 0, sender),
                AskOut("echo", "", 2, "", "/client", 7, "swarm.reply.x", sender),
                TellOut("echo", "", 3, "", ""),
            ],
            codec.encoder,
        )
    )
    assert isinstance(tell, Tell)
    assert isinstance(ask, Ask)
    assert isinstance(bare, Tell)
    assert tell.origin is not None
    assert ask.origin is not None
    assert codec.origin(tell.origin).spec == sender.spec
    assert codec.origin(ask.origin).spec == sender.spec
    assert bare.origin is None  # from outside any actor: nobody to reply to
    # A frame from a node that writes no origin at all (six fields): nobody either.
    old = msgspec.msgpack.encode([[0, "echo", "", msgspec.msgpack.encode(4), "", "", 0]])
    [decoded] = decode_frame(old)
    assert isinstance(decoded, Tell)
    assert decoded.origin is None
    with pytest.raises(WireFormatError, match="bad sender ref"):
        codec.origin(msgspec.msgpack.Ext(9, b"\x90"))
    with pytest.raises(WireFormatError, match="bad sender ref"):
        codec.origin(msgspec.msgpack.Ext(1, b"\xc0"))


@pytest.mark.asyncio
async def test_a_pool_member_sees_the_sender_and_reply_to() -> None:
    async with ActorSystem() as system:
        pool = await system.pool(Echo, size=2)
        client = await system.start(Echo, name="client")
        await client.tell(Call(pool, 1))  # from client's handler, through the pool
        [(n, _)] = await received(client, 1)
        assert n == 1
        collector = await system.start(Echo, name="collector")
        await pool.tell(Ping(2), reply_to=collector)
        pool.tell_nowait(Ping(3), collector)
        assert sorted(n for n, _ in await received(collector, 2)) == [2, 3]


@pytest.mark.asyncio
async def test_with_max_concurrency_each_call_in_flight_keeps_its_sender() -> None:
    """Two calls of one actor in flight at once: the first, resumed after the second started
    (and finished), still replies to its own sender."""
    release = asyncio.Event()

    class Both(Actor, max_concurrency=2):
        @handler
        async def ping(self, msg: Ping) -> None:
            if msg.n == 1:
                await release.wait()  # in flight while the call of Ping(2) runs
            assert self.sender is not None
            await self.sender.tell(Pong(msg.n, describe(self.sender)))

    async with ActorSystem() as system:
        both = await system.start(Both)
        first = await system.start(Echo, name="first")
        second = await system.start(Echo, name="second")
        await first.tell(Call(both, 1))
        await until_async(lambda: _in_flight(both), 5.0, "Ping(1) in flight")
        await second.tell(Call(both, 2))
        assert [n for n, _ in await received(second, 1)] == [2]
        release.set()
        assert [n for n, _ in await received(first, 1)] == [1]


async def _in_flight(ref: ActorRef[Any]) -> bool:
    return ref.stats().in_flight == 1
