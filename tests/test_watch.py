"""Death watch: ``self.watch(ref)`` -> ``Terminated(ref, reason)``, locally and across nodes.

Tests wait on the ``Terminated`` itself (each watcher puts what it handles into a queue), never
on time. The cross-process tests run the watched actor in another OS process
(``transport_peer``); the SIGKILL test waits for ``node_down`` with a bound well above the
node TTL: how soon it comes is measured in ``bench/bench_watch.py``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client

from helpers import Fail, Get, instance, ready_process, unique, until
from swarm_actors import (
    Actor,
    ActorSystem,
    Directive,
    InvalidArgumentError,
    OneForOne,
    Terminated,
    handler,
)
from swarm_actors._nats._watch import NOTICE, UNWATCH, WATCH
from swarm_actors._nats._wire import AskOut, Failure, TellOut, decode_frame, frame
from swarm_actors.cluster import Cluster, RemoteRef
from swarm_actors.testing import NatsServer
from transport_peer import peer

WAIT = 10.0  # a bound on a hang, not a measure
ENCODER = msgspec.msgpack.Encoder()


@dataclass
class WatchIt:
    ref: Any


@dataclass
class UnwatchIt:
    ref: Any


@dataclass
class Hold:
    """Wait for ``gate``, then unwatch ``ref`` (a Terminated may be queued meanwhile)."""

    gate: asyncio.Event
    ref: Any


class Target(Actor):
    @handler
    async def get(self, msg: Get) -> int:
        return 1

    @handler
    async def fail(self, msg: Fail) -> None:
        raise RuntimeError("failing on purpose")


class Watcher(Actor):
    def __init__(self, seen: asyncio.Queue[Terminated]) -> None:
        self.seen = seen
        self.handled: list[Terminated] = []

    @handler
    async def watch_it(self, msg: WatchIt) -> Any:
        return self.watch(msg.ref)

    @handler
    async def unwatch_it(self, msg: UnwatchIt) -> None:
        self.unwatch(msg.ref)

    @handler
    async def hold(self, msg: Hold) -> None:
        await msg.gate.wait()
        self.unwatch(msg.ref)

    @handler
    async def fail(self, msg: Fail) -> None:
        raise RuntimeError("the watcher fails")

    @handler
    async def get(self, msg: Get) -> list[Terminated]:
        return list(self.handled)

    @handler
    async def terminated(self, msg: Terminated) -> None:
        self.handled.append(msg)
        self.seen.put_nowait(msg)


class Stopper(Actor, supervision=OneForOne(decider=lambda exc: Directive.STOP)):
    """A parent that stops a failing child."""

    @handler
    async def start_target(self, msg: str) -> Any:
        return await self.start_child(Target, name=msg)


class Deaf(Actor):
    """No handler for Terminated."""

    @handler
    async def watch_it(self, msg: WatchIt) -> None:
        self.watch(msg.ref)


class Session(Actor):
    """A virtual actor that tries to watch."""

    @handler
    async def get(self, msg: Get) -> Any:
        return self.ref

    @handler
    async def watch_it(self, msg: WatchIt) -> Any:
        return self.watch(msg.ref)

    @handler
    async def terminated(self, msg: Terminated) -> None:
        pass


class Catchall(Actor):
    def __init__(self, seen: asyncio.Queue[Any]) -> None:
        self.seen = seen

    async def on_receive(self, message: Any) -> Any:
        if isinstance(message, WatchIt):
            return self.watch(message.ref)
        self.seen.put_nowait(message)
        return None


async def next_terminated(seen: asyncio.Queue[Terminated]) -> Terminated:
    async with asyncio.timeout(WAIT):
        return await seen.get()


async def watcher(system: ActorSystem) -> tuple[Any, asyncio.Queue[Terminated]]:
    seen: asyncio.Queue[Terminated] = asyncio.Queue()
    return await system.start(Watcher, seen), seen


# --- locally --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_stopped_actor_sends_terminated_with_the_watched_ref() -> None:
    async with ActorSystem() as system:
        target = await system.start(Target)
        w, seen = await watcher(system)
        assert await w.ask(WatchIt(target)) == target  # watch returns the ref
        await target.stop()
        got = await next_terminated(seen)
        assert got == Terminated(target, "stopped")
        assert got.ref == target
        assert system._dispatcher.watches.counts() == (0, 0)


@pytest.mark.asyncio
async def test_an_actor_its_supervisor_stops_after_a_failure_is_failed() -> None:
    async with ActorSystem() as system:
        parent = await system.start(Stopper)
        child = await parent.ask("child")
        w, seen = await watcher(system)
        await w.ask(WatchIt(child))
        await child.tell(Fail())
        assert await next_terminated(seen) == Terminated(child, "failed")


@pytest.mark.asyncio
async def test_a_failure_escalated_past_the_top_is_failed() -> None:
    escalate = OneForOne(decider=lambda exc: Directive.ESCALATE)
    async with ActorSystem(supervision=escalate) as system:
        target = await system.start(Target)
        w, seen = await watcher(system)
        await w.ask(WatchIt(target))
        await target.tell(Fail())
        assert await next_terminated(seen) == Terminated(target, "failed")


@pytest.mark.asyncio
async def test_a_child_stopped_with_its_parent_is_stopped() -> None:
    async with ActorSystem() as system:
        parent = await system.start(Stopper)
        child = await parent.ask("child")
        w, seen = await watcher(system)
        await w.ask(WatchIt(child))
        await parent.stop()
        assert await next_terminated(seen) == Terminated(child, "stopped")


@pytest.mark.asyncio
async def test_watching_an_actor_already_stopped_delivers_at_once() -> None:
    async with ActorSystem() as system:
        target = await system.start(Target)
        await target.stop()
        w, _seen = await watcher(system)
        await w.ask(WatchIt(target))
        # Queued at once, ahead of anything sent after the watch.
        assert await w.ask(Get()) == [Terminated(target, "already_dead")]
        assert system._dispatcher.watches.counts() == (0, 0)


@pytest.mark.asyncio
async def test_watching_the_same_ref_twice_delivers_once() -> None:
    async with ActorSystem() as system:
        target = await system.start(Target)
        w, seen = await watcher(system)
        await w.ask(WatchIt(target))
        await w.ask(WatchIt(target))
        await target.stop()
        await next_terminated(seen)
        # A second Terminated would have been queued with the first, before this ask.
        assert len(await w.ask(Get())) == 1


@pytest.mark.asyncio
async def test_after_unwatch_no_terminated_comes() -> None:
    async with ActorSystem() as system:
        target = await system.start(Target)
        w, _seen = await watcher(system)
        await w.ask(WatchIt(target))
        await w.ask(UnwatchIt(target))
        await target.stop()  # its watchers are told before stop returns: none now
        assert await w.ask(Get()) == []
        assert system._dispatcher.watches.counts() == (0, 0)
        await w.ask(UnwatchIt(target))  # not watched: nothing to do


@pytest.mark.asyncio
async def test_unwatch_withdraws_a_terminated_not_handled_yet() -> None:
    async with ActorSystem() as system:
        target = await system.start(Target)
        w, _ = await watcher(system)
        await w.ask(WatchIt(target))
        gate = asyncio.Event()
        await w.tell(Hold(gate, target))  # busy until the gate opens
        await until(lambda: w._cell.running is not None, WAIT, "the watcher holds")
        await target.stop()
        assert any(isinstance(m, Terminated) for m in w._cell.queue)  # queued behind Hold
        gate.set()  # Hold unwatches: the queued Terminated goes
        assert await w.ask(Get()) == []


@pytest.mark.asyncio
async def test_a_stopped_watcher_leaves_no_watch_behind() -> None:
    async with ActorSystem() as system:
        targets = [await system.start(Target) for _ in range(3)]
        w, seen = await watcher(system)
        for target in targets:
            await w.ask(WatchIt(target))
        assert system._dispatcher.watches.counts() == (3, 1)
        await w.stop()
        assert system._dispatcher.watches.counts() == (0, 0)
        for target in targets:
            await target.stop()
        assert seen.empty()


@pytest.mark.asyncio
async def test_watches_survive_a_restart_of_the_watcher() -> None:
    async with ActorSystem() as system:
        target = await system.start(Target)
        w, seen = await watcher(system)
        await w.ask(WatchIt(target))
        await w.tell(Fail())  # restarted by the default supervision: a new instance
        await until(lambda: w.stats().restarts == 1, WAIT, "the watcher restarted")
        await target.stop()
        assert await next_terminated(seen) == Terminated(target, "stopped")


@pytest.mark.asyncio
async def test_terminated_reaches_a_full_mailbox() -> None:
    class Small(Watcher, mailbox_size=1):
        pass

    async with ActorSystem() as system:
        target = await system.start(Target)
        seen: asyncio.Queue[Terminated] = asyncio.Queue()
        w = await system.start(Small, seen)
        await w.ask(WatchIt(target))
        gate = asyncio.Event()
        await w.tell(Hold(gate, "not watched"))
        await until(lambda: w._cell.running is not None, WAIT, "the watcher holds")
        await w.tell(Get())  # the mailbox is full now
        await target.stop()
        gate.set()
        assert await next_terminated(seen) == Terminated(target, "stopped")


@pytest.mark.asyncio
async def test_on_receive_may_handle_terminated() -> None:
    async with ActorSystem() as system:
        target = await system.start(Target)
        seen: asyncio.Queue[Any] = asyncio.Queue()
        w = await system.start(Catchall, seen)
        await w.ask(WatchIt(target))
        await target.stop()
        async with asyncio.timeout(WAIT):
            assert await seen.get() == Terminated(target, "stopped")


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_watching_what_is_not_a_ref_is_refused() -> None:
    async with ActorSystem() as system:
        w, _ = await watcher(system)
        for bad in ("counter", None, 42, Target, type(w)):  # a class is not a ref either
            with pytest.raises(InvalidArgumentError, match="watch takes the ref of a started"):
                await w.ask(WatchIt(bad))
        assert system._dispatcher.watches.counts() == (0, 0)


@pytest.mark.asyncio
async def test_virtual_actors_cannot_be_watched_nor_watch() -> None:
    async with ActorSystem() as system:
        w, _ = await watcher(system)
        session = system.virtual(Session, "user-1")
        with pytest.raises(InvalidArgumentError, match="virtual actor is never dead"):
            await w.ask(WatchIt(session))
        inner = await session.ask(Get())  # its own ActorRef, valid until it is passivated
        with pytest.raises(InvalidArgumentError, match="virtual actor: it cannot be watched"):
            await w.ask(WatchIt(inner))
        # A virtual actor cannot watch (a watch would not survive its passivation).
        target = await system.start(Target)
        with pytest.raises(InvalidArgumentError, match="cannot watch"):
            await session.ask(WatchIt(target))
        assert system._dispatcher.watches.counts() == (0, 0)


@pytest.mark.asyncio
async def test_a_watcher_without_a_handler_for_terminated_is_refused() -> None:
    async with ActorSystem() as system:
        deaf = await system.start(Deaf)
        target = await system.start(Target)
        with pytest.raises(InvalidArgumentError, match=r"no handler for Terminated.*on_terminated"):
            await deaf.ask(WatchIt(target))
        assert system._dispatcher.watches.counts() == (0, 0)


@pytest.mark.asyncio
async def test_an_actor_cannot_watch_itself() -> None:
    async with ActorSystem() as system:
        w, _ = await watcher(system)
        with pytest.raises(InvalidArgumentError, match="cannot watch itself"):
            await w.ask(WatchIt(w))


# --- across nodes ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_remote_actor_that_stops_sends_terminated(nats_server: NatsServer) -> None:
    name, node = unique(), unique("peer")
    async with ActorSystem(nats=nats_server.url) as system, peer(nats_server.url, node, name):
        ref = await system.resolve(name, timeout=WAIT)
        assert isinstance(ref, RemoteRef)
        w, seen = await watcher(system)
        await w.ask(WatchIt(ref))
        await w.ask(WatchIt(ref))  # the same ref twice: one watch
        transport = system._transport
        assert transport is not None
        assert transport.watches.counts() == (1, 0)
        await until(lambda: all(r.registered for r in transport.watches._mine.values()), WAIT)
        await ref.stop()
        got = await next_terminated(seen)
        assert got == Terminated(ref, "stopped")
        assert got.ref is ref
        assert transport.watches.counts() == (0, 0)


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_sigkill_of_the_remote_node_sends_node_down(nats_server: NatsServer) -> None:
    name, node, ttl = unique(), unique("peer"), 2.0
    async with (
        ActorSystem(nats=nats_server.url, cluster=Cluster(node_ttl=ttl)) as system,
        peer(nats_server.url, node, name, ttl=ttl) as proc,
    ):
        ref = await system.resolve(name, timeout=WAIT)
        w, seen = await watcher(system)
        await w.ask(WatchIt(ref))
        assert await ref.ask(Get(), timeout=WAIT) == 0  # the node runs it
        proc.kill()
        async with asyncio.timeout(ttl * 10):  # about ttl: see bench/bench_watch.py
            got = await seen.get()
        assert got == Terminated(ref, "node_down")
        assert system._transport is not None
        assert system._transport.watches.counts() == (0, 0)


@pytest.mark.asyncio
async def test_a_remote_node_that_shuts_down_cleanly_reports_stopped(
    nats_server: NatsServer,
) -> None:
    name, node = unique(), unique("peer")
    async with ActorSystem(nats=nats_server.url) as system, peer(nats_server.url, node, name) as p:
        ref = await system.resolve(name, timeout=WAIT)
        w, seen = await watcher(system)
        await w.ask(WatchIt(ref))
        transport = system._transport
        assert transport is not None
        await until(lambda: all(r.registered for r in transport.watches._mine.values()), WAIT)
        assert p.stdin is not None
        p.stdin.close()  # the peer stops its actors, then leaves
        assert await next_terminated(seen) == Terminated(ref, "stopped")


@pytest.mark.asyncio
async def test_watching_a_remote_actor_already_gone_delivers_at_once(
    nats_server: NatsServer,
) -> None:
    name, node = unique(), unique("peer")
    async with ActorSystem(nats=nats_server.url) as system, peer(nats_server.url, node, name):
        ref = await system.resolve(name, timeout=WAIT)
        assert isinstance(ref, RemoteRef)
        transport = system._transport
        assert transport is not None
        w, seen = await watcher(system)
        # A ref pinned to the node (as refs in messages are), to an actor it does not run:
        # the node answers "no such actor" and still answers probes.
        ghost: RemoteRef[Any] = RemoteRef(transport, unique(), node=node)
        await w.ask(WatchIt(ghost))
        assert await next_terminated(seen) == Terminated(ghost, "already_dead")
        # A ref whose name is no longer registered anywhere: at once, without asking.
        await ref.stop()
        await until(lambda: ref.node is None, WAIT, "the name is released")
        await w.ask(WatchIt(ref))
        assert (await w.ask(Get()))[-1] == Terminated(ref, "already_dead")
        assert transport.watches.counts() == (0, 0)


@pytest.mark.asyncio
async def test_a_remote_ref_to_an_actor_of_this_node_is_watched_locally(
    nats_server: NatsServer,
) -> None:
    async with ActorSystem(nats=nats_server.url) as system:
        name = unique()
        target = await system.start(Target, name=name)
        transport = system._transport
        assert transport is not None
        assert system.node is not None
        home: RemoteRef[Any] = RemoteRef(transport, name, node=system.node)  # e.g. sent back
        w, seen = await watcher(system)
        await w.ask(WatchIt(home))
        assert transport.watches.counts() == (0, 0)  # nothing went over NATS
        await target.stop()
        assert await next_terminated(seen) == Terminated(home, "stopped")
        gone: RemoteRef[Any] = RemoteRef(transport, unique(), node=system.node)
        await w.ask(WatchIt(gone))
        assert (await w.ask(Get()))[-1] == Terminated(gone, "already_dead")
        # The cluster's virtual actors neither: passivation is not death.
        with pytest.raises(InvalidArgumentError, match="virtual actor is never dead"):
            await w.ask(WatchIt(system.placed(Session, unique())))


@pytest.mark.asyncio
async def test_a_node_that_answers_no_probe_but_heartbeats_is_not_reported_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A node that misses probes (as while it reconnects) is down only once its heartbeat is."""
    ttl = 1.0
    async with (
        NatsServer() as server,
        ActorSystem(nats=server.url, cluster=Cluster(node_ttl=ttl)) as here,
        ActorSystem(nats=server.url, cluster=Cluster(node_ttl=ttl)) as there,
    ):
        name = unique()
        target = await there.start(Target, name=name)
        ref = await here.resolve(name, timeout=WAIT)
        w, seen = await watcher(here)
        await w.ask(WatchIt(ref))
        mine = here._transport
        assert mine is not None
        await until(lambda: all(r.registered for r in mine.watches._mine.values()), WAIT)

        async def no_answer(node: str) -> str | None:
            return None

        monkeypatch.setattr(mine, "probe", no_answer)
        checks = int(2 * ttl / mine.watches.suspect_interval)  # twice the node's TTL
        await until(lambda: mine.watches.suspect_checks >= checks, WAIT, "suspect checks")
        assert seen.empty()
        assert mine.watches.counts() == (1, 0)
        await target.stop()
        assert await next_terminated(seen) == Terminated(ref, "stopped")


@pytest.mark.asyncio
async def test_remote_watches_leave_nothing_behind_on_either_node() -> None:
    """Unwatch, and a watcher's stop, drop the registration on the watched actor's node."""
    async with (
        NatsServer() as server,
        ActorSystem(nats=server.url) as here,
        ActorSystem(nats=server.url) as there,
    ):
        name = unique()
        await there.start(Target, name=name)
        ref = await here.resolve(name, timeout=WAIT)
        w, seen = await watcher(here)
        mine, theirs = here._transport, there._transport
        assert mine is not None
        assert theirs is not None
        await w.ask(WatchIt(ref))
        await until(lambda: theirs.watches.counts() == (0, 1), WAIT, "the watch registered")
        await w.ask(UnwatchIt(ref))
        assert mine.watches.counts() == (0, 0)
        await until(lambda: theirs.watches.counts() == (0, 0), WAIT, "the watch dropped there")
        assert there._dispatcher.watches.counts() == (0, 0)
        await w.ask(WatchIt(ref))
        await until(lambda: theirs.watches.counts() == (0, 1), WAIT, "the watch registered")
        await w.stop()
        assert mine.watches.counts() == (0, 0)
        assert here._dispatcher.watches.counts() == (0, 0)
        await until(lambda: theirs.watches.counts() == (0, 0), WAIT, "the watch dropped there")
        assert there._dispatcher.watches.counts() == (0, 0)
        assert seen.empty()


@pytest.mark.asyncio
async def test_a_remote_actor_stopped_for_a_failure_is_failed() -> None:
    async with (
        NatsServer() as server,
        ActorSystem(nats=server.url) as here,
        ActorSystem(nats=server.url) as there,
    ):
        parent = await there.start(Stopper)
        child_name = unique()
        await parent.ask(child_name)
        # Children are reached by name across nodes only through refs; a pinned RemoteRef.
        assert there.node is not None
        assert here._transport is not None
        ref: RemoteRef[Any] = RemoteRef(here._transport, child_name, node=there.node)
        w, seen = await watcher(here)
        await w.ask(WatchIt(ref))
        theirs = there._transport
        assert theirs is not None
        await until(lambda: theirs.watches.counts() == (0, 1), WAIT, "the watch registered")
        await ref.tell(Fail())
        assert await next_terminated(seen) == Terminated(ref, "failed")
        assert instance(parent) is not None


@pytest.mark.asyncio
async def test_bad_watch_traffic_is_a_dead_letter_and_the_node_goes_on(
    nats_server: NatsServer, nats_client: Client
) -> None:
    async with (
        ActorSystem(nats=nats_server.url) as here,
        ActorSystem(nats=nats_server.url) as there,
    ):
        name = unique()
        target = await there.start(Target, name=name)
        ref = await here.resolve(name, timeout=WAIT)
        w, seen = await watcher(here)
        await w.ask(WatchIt(ref))
        theirs = there._transport
        assert theirs is not None
        await until(lambda: theirs.watches.counts() == (0, 1), WAIT, "the watch registered")
        bad = [
            TellOut(NOTICE, "", b"garbage", "", ""),  # not [id, reason]
            TellOut(NOTICE, "", [1, "exploded"], "", ""),  # an unknown reason
            TellOut(UNWATCH, "", ["node", "not an id"], "", ""),
            TellOut("!bogus", "", [1], "", ""),  # no such reserved target
        ]
        before = here.dead_letters
        await nats_client.publish(f"swarm.node.{here.node}", frame(bad, ENCODER))
        await until(lambda: here.dead_letters == before + len(bad), WAIT, "four dead letters")
        # A watch ask with a body that is not [node, id] gets an error answer, registers nothing.
        answers = await nats_client.subscribe(f"test.{unique()}")
        ask = AskOut(name, WATCH, "not a watcher", "", "", 7, answers.subject)
        await nats_client.publish(f"swarm.node.{there.node}", frame([ask], ENCODER))
        answer = decode_frame((await answers.next_msg(timeout=WAIT)).data)
        assert isinstance(answer[0], Failure)
        assert answer[0].corr == 7
        assert answer[0].error.endswith("WireFormatError")
        assert theirs.watches.counts() == (0, 1)  # the watcher's real watch only
        # A notice with an id nobody made is dropped quietly (a forged or late one).
        forged = [TellOut(NOTICE, "", [12345, "stopped"], "", "")]
        await nats_client.publish(f"swarm.node.{here.node}", frame(forged, ENCODER))
        await target.stop()
        assert await next_terminated(seen) == Terminated(ref, "stopped")
        assert here.dead_letters == before + len(bad)


# The watcher in another OS process: it watches an actor of this process and prints each
# Terminated it handles (the owner side of a watch across processes).
WATCHER = """
import asyncio, sys
from typing import Any
from swarm_actors import Actor, ActorSystem, Terminated, handler
from swarm_actors.cluster import Cluster

class Watcher(Actor):
    def __init__(self, ref: Any) -> None:
        self.target = ref

    async def on_start(self) -> None:
        self.watch(self.target)

    @handler
    async def terminated(self, msg: Terminated) -> None:
        print("terminated", msg.ref.name, msg.reason, flush=True)

async def main() -> None:
    cluster = Cluster(node_ttl=float(sys.argv[3]))
    async with ActorSystem(nats=sys.argv[1], cluster=cluster) as system:
        await system.start(Watcher, await system.resolve(sys.argv[2], timeout=10))
        print("ready", flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.mark.asyncio
async def test_a_watcher_in_another_process_hears_of_an_actor_here(
    nats_server: NatsServer,
) -> None:
    async with ActorSystem(nats=nats_server.url) as system:
        name = unique()
        target = await system.start(Target, name=name)
        transport = system._transport
        assert transport is not None
        async with ready_process("-c", WATCHER, nats_server.url, name, "10") as proc:
            await until(lambda: transport.watches.counts() == (0, 1), WAIT, "the watch registered")
            await target.stop()
            assert proc.stdout is not None
            async with asyncio.timeout(WAIT):
                line = await proc.stdout.readline()
            assert line.split() == [b"terminated", name.encode(), b"stopped"]
            assert transport.watches.counts() == (0, 0)


@pytest.mark.asyncio
async def test_the_watches_of_a_killed_watcher_process_are_dropped(nats_server: NatsServer) -> None:
    ttl = 1.0
    async with ActorSystem(nats=nats_server.url, cluster=Cluster(node_ttl=ttl)) as system:
        name = unique()
        target = await system.start(Target, name=name)
        transport = system._transport
        assert transport is not None
        async with ready_process("-c", WATCHER, nats_server.url, name, str(ttl)) as proc:
            await until(lambda: transport.watches.counts() == (0, 1), WAIT, "the watch registered")
            assert system._dispatcher.watches.counts() == (1, 0)
            proc.kill()  # its node dies without unwatching
            await until(lambda: transport.watches.counts() == (0, 0), 10 * ttl, "dropped")
            assert system._dispatcher.watches.counts() == (0, 0)
        await target.stop()  # nobody left to notify
