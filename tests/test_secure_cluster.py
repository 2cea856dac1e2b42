"""The secure-cluster mode: per-node nkeys with subject permissions, unforgeable answers.

Real ``nats-server`` processes on loopback. A node's credentials let it read only its own
subjects and answer only asks sent to it; a client with another node's credentials, or none,
can neither read the asks addressed to a node nor make the asker take a forged answer. Without
any credentials (an open server) a client that does not listen to everything cannot forge an
answer either: answers count only on the asker's random reply subjects, from the node asked.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import stat
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, redirect_stdout
from io import StringIO
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from helpers import Add, Get, unique, until_async
from nats_sync import sync
from swarm_actors import Actor, ActorSystem, handler
from swarm_actors._cli import main as cli
from swarm_actors._nats._auth import render_accounts
from swarm_actors._nats._conn import connect
from swarm_actors._nats._server import find_nats_server, start_embedded
from swarm_actors._nats._wire import ReplyOut, frame, type_name
from swarm_actors.cluster import (
    Cluster,
    NatsOptions,
    NkeyUser,
    Permissions,
    ResponsePermission,
    node_permissions,
    write_cluster_credentials,
)
from swarm_actors.errors import AuthenticationError, InvalidArgumentError
from swarm_actors.testing import NatsCluster, NatsServer


class Question(msgspec.Struct):
    pass


class Gate(Actor):
    """Answers ``"REAL"`` once the test opens the gate: the ask stays pending until then."""

    def __init__(self, started: asyncio.Event, release: asyncio.Event) -> None:
        self.started = started
        self.release = release

    @handler
    async def question(self, msg: Question) -> str:
        self.started.set()
        await self.release.wait()
        return "REAL"


class Counter(Actor):
    def __init__(self) -> None:
        self.n = 0

    @handler
    async def add(self, msg: Add) -> None:
        self.n += msg.n

    @handler
    async def get(self, msg: Get) -> int:
        return self.n


@asynccontextmanager
async def node(server: NatsServer, seed_file: Path, name: str) -> AsyncIterator[ActorSystem]:
    options = NatsOptions(servers=server.url, nkeys_seed_file=seed_file)
    async with ActorSystem(nats=options, cluster=Cluster(node=name)) as system:
        yield system


async def sync_as(client: Client, node: str) -> None:
    """``nats_sync.sync`` for a client with node credentials: through the node's own subject.

    (Its permissions let it publish to no inbox, not even its own.)
    """
    sub = await client.subscribe(f"swarm.node.{node}")
    await client.publish(f"swarm.node.{node}", b"")
    await sub.next_msg(timeout=10.0)
    await sub.unsubscribe()


def forged_answers(corrs: list[int]) -> bytes:
    return frame([ReplyOut(c, type_name(str), "FORGED") for c in corrs], msgspec.msgpack.Encoder())


@pytest.mark.asyncio
async def test_another_nodes_credentials_neither_read_asks_nor_forge_answers(
    tmp_path: Path,
) -> None:
    creds = write_cluster_credentials(["a", "b", "c"], tmp_path / "creds")
    async with (
        NatsServer(nkey_users=creds.users, account=creds.account) as server,
        node(server, creds.seed_file("a"), "a") as a,
        node(server, creds.seed_file("b"), "b") as b,
    ):
        started, release = asyncio.Event(), asyncio.Event()
        await b.start(Gate, started, release, name="gate")
        ref = await a.resolve("gate", timeout=10.0)

        errors: list[Exception] = []

        async def on_error(error: Exception) -> None:
            errors.append(error)

        thief = await connect(
            NatsOptions(
                servers=server.url, nkeys_seed_file=creds.seed_file("c"), inbox_prefix="_INBOX.c"
            ),
            error_cb=on_error,
        )
        try:
            seen: list[Msg] = []

            async def keep(msg: Msg) -> None:
                seen.append(msg)

            for subject in ("swarm.node.b", "swarm.reply.a.>", "_INBOX.a.>", ">"):
                await thief.subscribe(subject, cb=keep)
            await sync_as(thief, "c")
            refused = [str(e).lower() for e in errors]
            for subject in ("swarm.node.b", "swarm.reply.a.>", "_INBOX.a.>", ">"):
                assert any(f'subscription to "{subject.lower()}"' in e for e in refused), refused

            ask = asyncio.ensure_future(ref.ask(Question(), timeout=30.0))
            await asyncio.wait_for(started.wait(), 10.0)  # the ask is pending at a
            # Grant the thief everything a listener could have learned: the asker's random
            # reply prefix and the pending correlation ids.
            transport = a._transport
            assert transport is not None
            corrs = list(transport.inbox._pending)
            assert corrs
            forged = forged_answers(corrs)
            prefix = transport.reply_prefix
            for subject in (f"{prefix}.b", f"{prefix}.c", "swarm.node.a"):
                await thief.publish(subject, forged)
            await sync_as(thief, "c")  # the server has handled (and delivered) every forgery
            refused = [str(e).lower() for e in errors]
            assert any(f'publish to "{prefix}.b"' in e for e in refused), refused
            release.set()
            assert await ask == "REAL"
            assert seen == []  # the thief read nothing
        finally:
            await thief.close()

        # Nobody without credentials gets in at all.
        with pytest.raises(AuthenticationError):
            await connect(NatsOptions(servers=server.url, connect_timeout=5.0))


@pytest.mark.asyncio
async def test_a_secure_cluster_serves_names_placed_actors_journal_and_probes(
    tmp_path: Path,
) -> None:
    creds = write_cluster_credentials(["a", "b"], tmp_path / "creds")
    async with (
        NatsServer(nkey_users=creds.users, account=creds.account) as server,
        node(server, creds.seed_file("a"), "a") as a,
        node(server, creds.seed_file("b"), "b") as b,
    ):
        await b.start(Counter, name="named")
        remote = await a.resolve("named", timeout=10.0)
        await remote.tell(Add(2))
        assert await remote.ask(Get(), timeout=10.0) == 2
        key = unique("k")
        for system in (a, b, a, b):
            await system.placed(Counter, key).tell(Add(1))
        for system in (a, b):  # tells from two nodes are not ordered with a third's ask

            async def counted(system: ActorSystem = system) -> bool:
                return bool(await system.placed(Counter, key).ask(Get(), timeout=10.0) == 4)

            await until_async(counted, what="all four tells counted")
        # Liveness probes answer across nodes (allow_responses lets b answer a's inbox).
        assert a._transport is not None
        assert b._transport is not None
        assert await a._transport.probe("b") == b._transport.incarnation
        # The journal (JetStream, swarm.events.>) recorded the actors' lifecycle.
        journal = b.journal
        assert journal is not None
        assert [e async for e in journal.read()]


@pytest.mark.asyncio
async def test_a_cluster_of_servers_takes_the_same_users(tmp_path: Path) -> None:
    """Nodes on different servers of a NatsCluster: routed asks, and still no eavesdropping."""
    creds = write_cluster_credentials(["a", "b", "c"], tmp_path / "creds")
    async with NatsCluster(3, nkey_users=creds.users, account=creds.account) as servers:
        options = [
            NatsOptions(servers=url, nkeys_seed_file=creds.seed_file(n), randomize=False)
            for url, n in zip(servers.urls, "ab", strict=False)
        ]
        async with (
            ActorSystem(nats=options[0], cluster=Cluster(node="a", replicas=1)) as a,
            ActorSystem(nats=options[1], cluster=Cluster(node="b", replicas=1)) as b,
        ):
            await b.start(Counter, name="counter")
            ref = await a.resolve("counter", timeout=10.0)
            await ref.tell(Add(5))
            assert await ref.ask(Get(), timeout=10.0) == 5
            errors: list[Exception] = []

            async def on_error(error: Exception) -> None:
                errors.append(error)

            thief = await connect(
                NatsOptions(
                    servers=servers.urls[2],
                    nkeys_seed_file=creds.seed_file("c"),
                    inbox_prefix="_INBOX.c",
                ),
                error_cb=on_error,
            )
            try:
                await thief.subscribe("swarm.node.b")
                await sync_as(thief, "c")
                assert any("swarm.node.b" in str(e) for e in errors), errors
            finally:
                await thief.close()


@pytest.mark.asyncio
async def test_a_node_with_another_nodes_credentials_does_not_start(tmp_path: Path) -> None:
    creds = write_cluster_credentials(["a", "b"], tmp_path / "creds")
    async with NatsServer(nkey_users=creds.users, account=creds.account) as server:
        options = NatsOptions(servers=server.url, nkeys_seed_file=creds.seed_file("b"))
        with pytest.raises(AuthenticationError, match="node a"):
            async with ActorSystem(nats=options, cluster=Cluster(node="a")):
                pass


@pytest.mark.asyncio
async def test_without_credentials_a_blind_forger_cannot_answer_an_ask(
    nats_server: NatsServer,
) -> None:
    """On an open server, a client that does not listen to the asks guesses corr ids in vain."""
    started, release = asyncio.Event(), asyncio.Event()
    name = unique("gate")
    async with ActorSystem(nats=nats_server.url) as a, ActorSystem(nats=nats_server.url) as b:
        await b.start(Gate, started, release, name=name)
        ref = await a.resolve(name, timeout=10.0)
        forger = await connect(NatsOptions(servers=nats_server.url))
        try:
            ask = asyncio.ensure_future(ref.ask(Question(), timeout=30.0))
            await asyncio.wait_for(started.wait(), 10.0)
            # Sequential ids would be 1, 2, 3...: answer all the small ones on a's subject.
            await forger.publish(f"swarm.node.{a.node}", forged_answers(list(range(1, 1001))))
            await sync(forger)
            release.set()
            assert await ask == "REAL"
        finally:
            await forger.close()


@pytest.mark.asyncio
async def test_the_embedded_server_admits_only_its_own_process() -> None:
    async with ActorSystem(nats="embedded") as system:
        await system.start(Counter, name="here")
        url = system.nats_url
        assert url is not None
        with pytest.raises(AuthenticationError):  # another process of the host, no credentials
            await connect(NatsOptions(servers=url, connect_timeout=5.0))
        transport = system._transport
        assert transport is not None
        server = transport.server
        assert server is not None
        options = server.client_options()
        seed = options.nkeys_seed_file
        assert seed is not None
        assert stat.S_IMODE(os.stat(seed).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(Path(seed).parent).st_mode) == 0o700
        client = await connect(options)  # with the process's own credentials
        await client.close()
        # Another system of the same process attaches by the URL alone.
        async with ActorSystem(nats=url) as other:
            remote = await other.resolve("here", timeout=10.0)
            await remote.tell(Add(3))
            assert await remote.ask(Get(), timeout=10.0) == 3
    assert not await asyncio.to_thread(os.path.exists, seed)  # gone with its work directory


@pytest.mark.asyncio
async def test_without_nkeys_the_embedded_server_takes_a_random_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "nkeys" else find_spec(name, *args),
    )
    server = await start_embedded()
    try:
        options = server.client_options()
        assert options.token is not None
        assert len(options.token) >= 32
        assert options.nkeys_seed_file is None
        with pytest.raises(AuthenticationError):
            await connect(NatsOptions(servers=server.url, connect_timeout=5.0))
        client = await connect(options)
        await client.close()
    finally:
        await server.stop()


def run_cli(*args: str) -> tuple[int, str]:
    out = StringIO()
    with redirect_stdout(out):
        code = cli(list(args))
    return code, out.getvalue()


def test_cluster_init_writes_credentials_and_a_valid_server_config(tmp_path: Path) -> None:
    out = tmp_path / "creds"
    code, text = run_cli("cluster", "init", "--nodes", "a,b", "--out", str(out), "--json")
    assert code == 0
    report = json.loads(text)
    assert [n["node"] for n in report["nodes"]] == ["a", "b"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    for entry in report["nodes"]:
        seed = Path(entry["seed_file"])
        assert stat.S_IMODE(seed.stat().st_mode) == 0o600
        assert seed.read_text().startswith("SU")
        assert entry["public_key"] in Path(report["include_file"]).read_text()
    # nats-server itself accepts the configuration (and its include file).
    check = subprocess.run(
        [str(find_nats_server()), "-c", report["server_config"], "-t"],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    # The seeds are not overwritten by accident, only on request.
    before = Path(report["nodes"][0]["seed_file"]).read_text()
    assert run_cli("cluster", "init", "--nodes", "a", "--out", str(out))[0] == 2
    assert Path(report["nodes"][0]["seed_file"]).read_text() == before
    code, text = run_cli("cluster", "init", "--nodes", "a", "--out", str(out), "--force")
    assert code == 0
    assert "node a" in text
    assert Path(report["nodes"][0]["seed_file"]).read_text() != before


@pytest.mark.asyncio
async def test_cluster_init_output_admits_the_nodes_it_names(tmp_path: Path) -> None:
    """The include file is what NatsServer renders from the same value objects."""
    creds = write_cluster_credentials(["x"], tmp_path / "creds", admin=True)
    text = creds.include_file.read_text()
    assert render_accounts(creds.users, account=creds.account) in text
    assert creds.admin is not None
    async with NatsServer(nkey_users=creds.users, account=creds.account) as server:
        admin = await connect(NatsOptions(servers=server.url, nkeys_seed_file=creds.admin))
        seen: asyncio.Queue[Msg] = asyncio.Queue()
        await admin.subscribe(">", cb=seen.put)  # the administrator may read everything
        await sync(admin)
        await admin.close()


def test_permissions_are_validated_value_objects() -> None:
    permissions = node_permissions("a")
    assert "swarm.node.a" in permissions.subscribe
    assert "swarm.reply.*.*.a" in permissions.publish
    assert not any(s.startswith("_INBOX") for s in permissions.publish)  # only as responses
    more = permissions.extended(publish=["audit.>"])
    assert "audit.>" in more.publish
    assert more.allow_responses == permissions.allow_responses
    bad: list[Any] = [
        lambda: Permissions(publish=("has space",)),
        lambda: Permissions(subscribe=("a..b",)),
        lambda: ResponsePermission(max_msgs=0),
        lambda: ResponsePermission(expires=0),
        lambda: NkeyUser(nkey="SUAAAA"),  # a seed is not a public key
        lambda: node_permissions("has.dot"),
        lambda: node_permissions("a\n"),  # a newline would end the config line
        lambda: Permissions(publish=("audit.>\n",)),
        lambda: write_cluster_credentials([], "/nonexistent"),
        lambda: write_cluster_credentials(["a", "a"], "/nonexistent"),
    ]
    for make in bad:
        with pytest.raises(InvalidArgumentError):
            make()
    assert 'max: 1, expires: "1m"' in ResponsePermission(expires=60).render()
    assert 'expires: "90s"' in ResponsePermission(expires=90).render()
