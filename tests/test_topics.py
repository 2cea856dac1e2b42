"""Topics: publish/subscribe with NATS subject rules, locally and across OS processes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client

from helpers import instance, unique, until, until_async
from log_capture import capture_logs
from nats_sync import sync
from swarm_actors import (
    Actor,
    ActorDeadError,
    ActorSystem,
    InvalidArgumentError,
    TopicStats,
    handler,
)
from swarm_actors.cluster import Cluster, NatsOptions, write_cluster_credentials
from swarm_actors.errors import MessageTooLargeError, NotConnectedError
from swarm_actors.events import SignalKind, SwarmEvent, SystemSignal
from swarm_actors.testing import NatsServer
from topics_peer import Decide, Events, Listener, News, Publish, Seen, peer


class Inbox(Actor):
    """Keeps every message it gets, with nothing else to do."""

    def __init__(self, *patterns: str) -> None:
        self.patterns = patterns
        self.got: list[Any] = []

    async def on_start(self) -> None:
        for pattern in self.patterns:
            await self.subscribe(pattern)

    async def on_receive(self, message: Any) -> None:
        self.got.append(message)

    @handler
    async def seen(self, msg: Seen) -> list[Any]:
        return self.got


def got(ref: Any) -> list[Any]:
    return list(instance(ref).got)


# --- locally ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_patterns_match_like_nats_subjects() -> None:
    async with ActorSystem() as system:
        one = await system.start(Inbox, "a.*")
        rest = await system.start(Inbox, "a.>")
        exact = await system.start(Inbox, "a.b")
        everything = await system.start(Inbox, ">")
        second = await system.start(Inbox, "*.b")
        both = await system.start(Inbox, "a.*", "a.>")  # overlapping: once per pattern
        for topic in ("a", "a.b", "a.b.c", "x.b", "ab"):
            await system.publish(topic, topic)
        expected = {
            one: ["a.b"],
            rest: ["a.b", "a.b.c"],
            exact: ["a.b"],
            everything: ["a", "a.b", "a.b.c", "x.b", "ab"],
            second: ["a.b", "x.b"],
            both: ["a.b", "a.b", "a.b.c"],
        }
        await until(lambda: all(got(r) == want for r, want in expected.items()), what="delivery")
        # None of them hears the runtime's events (">" is the user's topics only).
        assert not any(isinstance(m, SwarmEvent) for r in expected for m in got(r))
        stats = system.topic_stats()
        assert isinstance(stats, TopicStats)
        assert (stats.patterns, stats.subscriptions) == (5, 7)
        assert (stats.published, stats.delivered, stats.dropped) == (5, 14, 0)


@pytest.mark.asyncio
async def test_unsubscribe_and_stop_end_subscriptions() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Inbox, "t.*")
        other = await system.start(Inbox, "t.*")
        actor = instance(ref)
        await actor.subscribe("t.*")  # twice: still one subscription
        assert system.topic_stats().subscriptions == 2
        await system.publish("t.1", 1)
        assert actor.unsubscribe("t.*") is True
        assert actor.unsubscribe("t.*") is False
        await system.publish("t.2", 2)
        await until(lambda: got(other) == [1, 2], what="the other subscriber got both")
        assert got(ref) == [1]
        await other.stop()
        assert system.topic_stats() == TopicStats(
            patterns=0, subscriptions=0, published=2, delivered=3, dropped=0, received=0
        )
        await system.publish("t.3", 3)  # nobody listens: nothing happens
        assert system.topic_stats().delivered == 3
        with pytest.raises(ActorDeadError, match="stopped"):
            await system.subscribe("t.*", other)


class Fragile(Actor):
    """Raises on every odd number; kept subscribed across its restarts."""

    def __init__(self, log: list[int]) -> None:
        self.log = log

    async def on_start(self) -> None:
        await self.subscribe("fragile")

    @handler
    async def number(self, msg: int) -> None:
        if msg % 2:
            raise RuntimeError(f"odd {msg}")
        self.log.append(msg)


@pytest.mark.asyncio
async def test_a_crashing_subscriber_does_not_stop_the_others() -> None:
    async with ActorSystem() as system:
        survived: list[int] = []
        fragile = await system.start(Fragile, survived)
        calm = await system.start(Inbox, "fragile")
        for n in range(10):
            await system.publish("fragile", n)
        await until(lambda: got(calm) == list(range(10)), what="the calm one got everything")
        await until(lambda: survived == [0, 2, 4, 6, 8], what="restarted, still subscribed")
        assert fragile.stats().restarts == 5
        assert system.topic_stats().subscriptions == 2  # a restart keeps its subscription


class Slow(Actor, mailbox_size=1):
    """Holds its first message until the gate opens: its one-slot mailbox then fills."""

    def __init__(self, gate: asyncio.Event) -> None:
        self.gate = gate
        self.got: list[int] = []

    async def on_start(self) -> None:
        await self.subscribe("busy")

    @handler
    async def number(self, msg: int) -> None:
        await self.gate.wait()
        self.got.append(msg)


@pytest.mark.asyncio
async def test_a_full_mailbox_drops_for_that_subscriber_only() -> None:
    async with ActorSystem() as system:
        gate = asyncio.Event()
        slow = await system.start(Slow, gate)
        fast = await system.start(Inbox, "busy")
        await system.publish("busy", 0)
        await until(lambda: slow.stats().pending == 0, what="the slow one holds the first")
        with capture_logs("swarm_actors.topics") as logs:
            for n in range(1, 11):
                system.publish_nowait("busy", n)  # never waits, whatever the mailboxes
        await until(lambda: got(fast) == list(range(11)), what="the fast one got everything")
        stats = system.topic_stats()
        assert stats.dropped == 9  # 1 queued, 9 dropped
        drops = [e for e in logs if e["event"] == "topic.dropped"]
        assert [e["dropped"] for e in drops] == [1, 2, 4, 8]  # logged sparingly
        assert drops[0]["actor"] == slow.path
        gate.set()
        await until(lambda: instance(slow).got == [0, 1], what="the slow one got 0 and 1")


@pytest.mark.parametrize(
    ("topic", "fix"),
    [
        ("", "1-200 characters"),
        ("a" * 201, "1-200 characters"),
        ("a..b", "empty token"),
        (".a", "empty token"),
        ("a.", "empty token"),
        ("a b", "printable ASCII"),
        ("a.\tb", "printable ASCII"),
        ("caf\u00e9", "printable ASCII"),
        ("a.b*", "whole tokens"),
        ("a.>x", "whole tokens"),
        ("a.>.b", "last token"),
    ],
)
@pytest.mark.asyncio
async def test_a_bad_topic_is_refused_naming_the_fix(topic: str, fix: str) -> None:
    async with ActorSystem() as system:
        ref = await system.start(Inbox)
        with pytest.raises(InvalidArgumentError, match=fix):
            await system.publish(topic, 1)
        with pytest.raises(InvalidArgumentError, match=fix):
            await system.subscribe(topic, ref)
        with pytest.raises(InvalidArgumentError, match=fix):
            await instance(ref).subscribe(topic)
        assert system.topic_stats().subscriptions == 0


@pytest.mark.asyncio
async def test_wildcards_and_events_are_for_subscribing_only() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Inbox)
        for topic in ("a.*", "a.>", ">", "events.x.decision"):
            await system.subscribe(topic, ref)  # fine as patterns
        with pytest.raises(InvalidArgumentError, match="wildcards"):
            await system.publish("a.*", 1)
        with pytest.raises(InvalidArgumentError, match="wildcards"):
            system.publish_nowait(">", 1)
        with pytest.raises(InvalidArgumentError, match="runtime's own events"):
            await system.publish("events.x.decision", 1)
        with pytest.raises(TypeError, match="str"):
            await system.publish(42, 1)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="ref"):
            await system.subscribe("a", "not a ref")  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_any_ref_can_be_subscribed_from_outside() -> None:
    async with ActorSystem() as system:
        inbox = await system.start(Inbox)
        await system.subscribe("news.>", inbox)
        virtual = system.virtual(Inbox, "v")  # activated by its first message
        await system.subscribe("news.>", virtual)
        await system.publish("news.x", "hello")
        await until(lambda: got(inbox) == ["hello"], what="the actor got it")
        assert await virtual.ask(Seen()) == ["hello"]
        stats = system.topic_stats()
        assert stats.delivered == 2
        assert system.unsubscribe("news.>", inbox) is True
        assert system.unsubscribe("news.>", virtual) is True
        assert system.unsubscribe("news.>", virtual) is False
        await system.publish("news.y", "again")
        assert system.topic_stats().delivered == 2
        # A subscribed actor that stops is unsubscribed with it.
        await system.subscribe("later", inbox)
        await inbox.stop()
        assert system.topic_stats().subscriptions == 0


class Recorder(Actor):
    @handler
    async def choose(self, msg: str) -> None:
        self.decide(msg, rationale="asked to")


@pytest.mark.asyncio
async def test_the_runtime_events_are_topics() -> None:
    async with ActorSystem() as system:
        decisions = await system.start(Inbox, "events.*.decision")
        signals = await system.start(Inbox, "events.recorder.system_signal")
        everything = await system.start(Inbox, "events.>")
        recorder = await system.start(Recorder, name="rec")
        await recorder.tell("left")
        await recorder.stop()
        await until(lambda: len(got(decisions)) == 1, what="the decision")
        (decision,) = got(decisions)
        assert isinstance(decision, SwarmEvent)
        assert decision.agent_id == "/rec"
        assert decision.payload.choice == "left"  # type: ignore[union-attr]
        await until(lambda: len(got(signals)) == 2, what="started and stopped")
        kinds = [e.payload.kind for e in got(signals) if isinstance(e.payload, SystemSignal)]
        assert kinds == [SignalKind.STARTED, SignalKind.STOPPED]
        health = system.health()  # the system's own (role "system")
        await until(lambda: health in got(everything), what="the health signal")
        # The same events the journal holds.
        assert system.journal is not None
        stored = [entry.event async for entry in system.journal.read()]
        assert decision in stored


@pytest.mark.asyncio
async def test_publish_nowait_needs_a_connected_system() -> None:
    system = ActorSystem(nats="nats://127.0.0.1:1")
    with pytest.raises(NotConnectedError, match="connected"):
        system.publish_nowait("a", 1)
    await system.stop_all()


# --- across OS processes, over NATS -------------------------------------------------------


@pytest.mark.asyncio
async def test_topics_across_two_os_processes(nats_server: NatsServer) -> None:
    topic = unique("news")
    async with (
        ActorSystem(nats=nats_server.url) as system,
        peer(nats_server.url, unique("peer"), "listener", [f"{topic}.*"]),
    ):
        there = await system.resolve("listener", timeout=10.0)
        here = await system.start(Listener, [f"{topic}.>"], name=unique("here"))
        for n in range(100):
            await system.publish(f"{topic}.a", News(n))
        await system.publish(f"{topic}.a.deep", News(100))  # only "here" matches ">"

        async def peer_got_all() -> bool:
            return bool(await there.ask(Seen(), timeout=10.0) == list(range(100)))

        await until_async(peer_got_all, what="the peer got 100 messages, in order")
        # Here: each once (delivered directly; the server's echo is dropped).
        assert await here.ask(Seen()) == list(range(101))
        # The other way: the peer publishes; its own subscriber and ours get each once.
        assert await there.ask(Publish(f"{topic}.b", 50), timeout=10.0) == 50

        async def both_got_them() -> bool:
            ours = await here.ask(Seen())
            theirs = await there.ask(Seen(), timeout=10.0)
            return bool(ours[101:] == list(range(50)) and theirs[100:] == list(range(50)))

        await until_async(both_got_them, what="both got the peer's 50, once each")
        stats = system.topic_stats()
        assert stats.received == 50
        assert stats.dropped == 0


@pytest.mark.asyncio
async def test_runtime_events_across_two_os_processes(nats_server: NatsServer) -> None:
    name = unique("listener")
    async with ActorSystem(nats=nats_server.url) as system:
        # Decisions of every node, as the nodes' journals publish them on NATS.
        watcher = await system.start(Listener, ["events.*.decision"], name=unique("watch"))
        async with peer(nats_server.url, unique("peer"), name, ["events.listener.decision"]):
            there = await system.resolve(name, timeout=10.0)
            event_id = await there.ask(Decide("go"), timeout=10.0)

            async def watched() -> bool:
                return event_id in await watcher.ask(Events())

            await until_async(watched, what="this node saw the peer's decision")

            async def peer_watched() -> bool:
                return bool(await there.ask(Events(), timeout=10.0) == [event_id])

            await until_async(peer_watched, what="the peer saw its own decision once")


@pytest.mark.asyncio
async def test_garbage_on_a_topic_subject_is_a_dead_letter(
    nats_server: NatsServer, nats_client: Client
) -> None:
    topic = unique("junk")
    async with ActorSystem(nats=nats_server.url) as system:
        inbox = await system.start(Inbox, topic)
        assert system._transport is not None
        await sync(system._transport.client)  # its SUB for the topic is live on the server
        before = system.dead_letters
        for payload in (b"\x00garbage", msgspec.msgpack.encode([[4, "n", "nope:Type", 1, "", ""]])):
            await nats_client.publish(f"swarm.topic.{topic}", payload)
        await nats_client.flush()
        await until(lambda: system.dead_letters == before + 2, what="two dead letters")
        await system.publish(topic, "still fine")
        await until(lambda: got(inbox) == ["still fine"], what="delivery goes on")


@pytest.mark.asyncio
async def test_a_message_other_nodes_cannot_get_is_refused_before_any_delivery(
    nats_server: NatsServer,
) -> None:
    topic = unique("big")
    async with ActorSystem(nats=nats_server.url) as system:
        inbox = await system.start(Inbox, topic)
        with pytest.raises(MessageTooLargeError):
            await system.publish(topic, "x" * 2_000_000)  # over the server's max_payload
        with pytest.raises(TypeError, match="cannot be sent"):
            system.publish_nowait(topic, object())
        await system.publish(topic, "small")
        await until(lambda: got(inbox) == ["small"], what="the small one, alone")
        assert system.topic_stats().published == 1


@pytest.mark.asyncio
async def test_topics_in_a_secure_cluster(tmp_path: Path) -> None:
    creds = write_cluster_credentials(["a", "b"], tmp_path / "creds")
    async with NatsServer(nkey_users=creds.users, account=creds.account) as server:
        nodes = []
        for node in ("a", "b"):
            options = NatsOptions(servers=server.url, nkeys_seed_file=creds.seed_file(node))
            nodes.append(ActorSystem(nats=options, cluster=Cluster(node=node)))
        async with nodes[0] as a, nodes[1] as b:
            listener = await b.start(Inbox, "secure.>", "events.*.decision")
            recorder = await a.start(Recorder)
            await a.publish("secure.x", "ok")
            await recorder.tell("over there")
            await until(lambda: len(got(listener)) == 2, what="a topic and an event from a")
            assert got(listener)[0] == "ok"
