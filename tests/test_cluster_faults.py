"""Faults in a 3-server NATS cluster under three nodes that work and journal events.

Three ``ActorSystem`` nodes run in this process. Node ``i`` is attached to server ``i`` first
(``randomize=False``, the other servers after it), so whichever server dies, one node must
reconnect elsewhere. Each journals into the same replicas=3 JetStream stream through its own
``JetStreamJournal``, and runs ``Worker`` actors that record a decision and a state change per
``Work`` they are asked.

* A server holding nodes' watches of the names bucket is killed: every node's mirror of the
  registry shows a name registered afterwards within seconds.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import msgspec
import pytest
import pytest_asyncio

from swarm_actors import Actor, ActorSystem, NatsOptions, handler
from swarm_actors._jetstream import JetStreamJournal
from swarm_actors._registry import NAMES_BUCKET
from swarm_actors._transport import Transport
from swarm_actors.testing import NatsCluster

if TYPE_CHECKING:
    from nats.js.client import JetStreamContext

pytestmark = pytest.mark.asyncio

NODES = 3
NODE_TTL = 4.0  # heartbeats every second
SERVE_TIMEOUT = 20.0  # once the failover is over: generous, the machine is shared


class Work(msgspec.Struct):
    n: int


class Done(msgspec.Struct):
    node: str
    handled: int


@dataclass
class Confirmations:
    """The ids of the events a node's workers recorded, and which its journal confirmed."""

    journal: JetStreamJournal
    pending: list[tuple[str, float]] = field(default_factory=list)
    """(event id, when it was handed to the journal), not confirmed yet."""
    confirmed: dict[str, tuple[float, float]] = field(default_factory=dict)
    """event id -> (when it was handed over, when a flush confirmed it)."""
    unconfirmed: int = 0
    errors: list[str] = field(default_factory=list)

    def recorded(self, event_id: str) -> None:
        """Called right after the event was handed to the journal (``decide``, ...)."""
        self.pending.append((event_id, time.monotonic()))

    async def flush(self) -> None:
        """Confirm what was recorded before now, if the journal confirms it."""
        count = len(self.pending)
        try:
            await self.journal.flush()
        except Exception as exc:  # whatever it is, those events are not known to be stored
            self.errors.append(repr(exc))
            self.unconfirmed += len(self.pending)
            self.pending.clear()
            return
        now = time.monotonic()
        for event_id, handed in self.pending[:count]:
            self.confirmed[event_id] = (handed, now)
        del self.pending[:count]

    def confirmed_after(self, moment: float) -> int:
        """Confirmed events that were handed over after ``moment``."""
        return sum(1 for handed, _ in self.confirmed.values() if handed > moment)


class Worker(Actor, role="worker"):
    """Records a decision and a state change per ``Work``, noting their ids as it goes."""

    def __init__(self, confirmations: Confirmations) -> None:
        self.confirmations = confirmations
        self.handled = 0

    @handler
    async def work(self, msg: Work) -> Done:
        why = self.decide(f"take {msg.n}", rationale="asked to", trigger="work")
        self.confirmations.recorded(why.event_id)
        self.handled += 1
        change = self.record_change({"handled": self.handled}, resource="handled", cause=why)
        self.confirmations.recorded(change.event_id)
        node = self.system.node
        assert node is not None
        return Done(node, self.handled)


@dataclass
class Node:
    index: int
    system: ActorSystem
    journal: JetStreamJournal
    confirmations: Confirmations

    @property
    def transport(self) -> Transport:
        transport = self.system._transport
        assert transport is not None
        return transport


async def until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``condition`` until it holds; the seconds it took. Fails the test after ``timeout``."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            while not condition():  # noqa: ASYNC110 (state changed by other tasks)
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"not within {timeout:g} s: {what}")
    return time.monotonic() - started


async def until_async(condition: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    """``until`` for a condition that needs I/O (errors count as not yet)."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                with contextlib.suppress(Exception):
                    if await condition():
                        return
                await asyncio.sleep(0.1)
    except TimeoutError:
        pytest.fail(f"not within {timeout:g} s: {what}")


@pytest_asyncio.fixture
async def nodes(nats_cluster: NatsCluster) -> AsyncIterator[list[Node]]:
    """Three nodes, node ``i`` attached to server ``i`` first, each with a replicas=3 journal."""
    urls = nats_cluster.urls
    async with contextlib.AsyncExitStack() as stack:
        out = []
        for i in range(NODES):
            options = NatsOptions(
                servers=[urls[i]] + [u for j, u in enumerate(urls) if j != i],
                randomize=False,
                reconnect_wait=0.1,
            )
            # One at a time: the first creates the stream, the others find it.
            journal = await JetStreamJournal.connect(
                options, replicas=3, timeout=30.0, ack_timeout=1.0
            )
            stack.push_async_callback(journal.close)  # after its system stopped (and flushed)
            system = ActorSystem(nats=options, node=f"node{i}", node_ttl=NODE_TTL, journal=journal)
            await stack.enter_async_context(system)
            out.append(Node(i, system, journal, Confirmations(journal)))
        yield out


async def stream_leader(js: JetStreamContext, stream: str) -> str | None:
    info = await js.stream_info(stream)
    return info.cluster.leader if info.cluster is not None else None


async def step_down(js: JetStreamContext, stream: str, to: str) -> None:
    """Have ``stream``'s leader hand over to server ``to``, and wait until it has."""
    subject = f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}"
    request = json.dumps({"placement": {"preferred": to}}).encode()
    reply = json.loads((await js._nc.request(subject, request, timeout=5)).data)
    assert reply.get("success"), reply

    async def moved() -> bool:
        return await stream_leader(js, stream) == to

    await until_async(moved, SERVE_TIMEOUT, f"{to} leads {stream} after the step-down")


@pytest.mark.timeout(90)
async def test_registry_mirrors_follow_new_names_soon_after_their_watch_server_dies(
    nats_cluster: NatsCluster, nodes: list[Node]
) -> None:
    # Each node mirrors the names bucket through a watch: an ephemeral consumer that one
    # server holds. Kill a server holding watches, but not the bucket's leader (moved away
    # first), so that a new name is claimed at once: what is left to recover is each node
    # noticing that its watch went silent, and recreating it once the cluster can.
    js = nodes[0].journal.client.jetstream()
    names = f"KV_{NAMES_BUCKET}"
    host: dict[int, str] = {}  # node index -> the server holding its watch
    for node in nodes:
        watch = node.transport.registry._watch_sub
        assert watch is not None
        info = await watch.consumer_info()
        assert info.cluster is not None
        assert info.cluster.leader is not None
        host[node.index] = info.cluster.leader
    watches = collections.Counter(host.values())
    # The meta leader cannot be moved (that takes the system account); when another server
    # holds watches, that one dies, and the meta group needs no election.
    meta = await nats_cluster.meta_leader()
    victim_name = max(watches, key=lambda server: (server != meta, watches[server]))
    victim = nats_cluster.index_of(victim_name)
    blind = [n for n in nodes if host[n.index] == victim_name]
    # The name is claimed on a node that keeps its server (and, if one does, its watch): its
    # own claim shows in its mirror at once, the others must learn it through their watches.
    heir = min((n for n in nodes if n.index != victim), key=lambda n: host[n.index] == victim_name)
    if await stream_leader(js, names) == victim_name:
        await step_down(js, names, f"n{heir.index}")

    await nats_cluster.kill(victim)
    killed_at = time.monotonic()
    await heir.system.start(Worker, heir.confirmations, name="fresh")
    claimed = time.monotonic() - killed_at
    await nats_cluster.wait_meta_leader(timeout=SERVE_TIMEOUT)  # watches are made through it
    meta_back = time.monotonic() - killed_at
    await until(
        lambda: all(node.system.lookup("fresh") is not None for node in nodes),
        SERVE_TIMEOUT,
        f"every node's mirror shows a name registered after the kill (blind: {blind})",
    )
    seen = time.monotonic() - killed_at
    print(
        f"\nkilled {victim_name} (watch of {[f'node{n.index}' for n in blind]}, "
        f"meta leader: {meta}); "
        f"claimed after {claimed:.2f} s; meta leader after {meta_back:.2f} s; "
        f"seen everywhere {seen:.2f} s after the kill"
    )
    # A silent watch is recreated after two idle heartbeats missed (2-4 s), or, while the
    # meta group elects a leader, on the next check after it has one: not 10-20 s later as
    # with nats-py's default heartbeat.
    assert seen - max(claimed, meta_back) < 6.0
