"""Nodes as OS processes: a peer in a subprocess, crashes, name take-over, the embedded server."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import Add, Get, unique, until_async, until_dead
from swarm_actors import ActorNameError, ActorRef, ActorSystem
from swarm_actors.cluster import Cluster, RemoteRef
from swarm_actors.errors import NatsServerError, RemoteError
from swarm_actors.testing import NatsCluster, NatsServer
from transport_peer import AskBack, Boom, Counter, peer

PEER = Path(__file__).with_name("transport_peer.py")


@pytest.mark.asyncio
async def test_actors_talk_across_os_processes(nats_server: NatsServer) -> None:
    name, node = unique(), unique("peer")
    async with ActorSystem(nats=nats_server.url) as system, peer(nats_server.url, node, name) as p:
        assert p.pid != os.getpid()
        ref = await system.resolve(name, timeout=10.0)
        assert isinstance(ref, RemoteRef)
        assert ref.node == node
        for _ in range(1000):
            await ref.tell(Add(1))
        assert await ref.ask(Get(), timeout=10.0) == 1000
        with pytest.raises(RemoteError) as info:
            await ref.ask(Boom("across"), timeout=10.0)
        assert info.value.remote_type == "builtins.KeyError"
        # The peer asks back an actor of this process through a ref sent in a message.
        mine = await system.start(Counter)
        await mine.tell(Add(42))
        assert await ref.ask(AskBack(mine), timeout=10.0) == 42
        with pytest.raises(ActorNameError, match=node):
            await system.start(Counter, name=name)
        # A clean exit unregisters the peer's name.
        assert p.stdin is not None
        p.stdin.close()
        assert await asyncio.wait_for(p.wait(), 15.0) == 0
        await system.start(Counter, name=name)


@pytest.mark.asyncio
async def test_a_killed_process_loses_its_names_after_its_ttl(nats_server: NatsServer) -> None:
    name, node = unique(), unique("peer")
    async with ActorSystem(nats=nats_server.url) as system:
        async with peer(nats_server.url, node, name, ttl=1.0) as p:
            ref = await system.resolve(name, timeout=10.0)
            assert await ref.ask(Get(), timeout=10.0) == 0
            p.send_signal(signal.SIGKILL)
            await p.wait()
        with pytest.raises(ActorNameError):  # its heartbeat has not expired yet
            await system.start(Counter, name=name)
        await until_dead(ref)  # nobody listens on its subject any more
        mine: list[ActorRef[Counter]] = []

        async def taken_over() -> bool:
            try:
                mine.append(await system.start(Counter, name=name))
            except ActorNameError:  # until the dead node's heartbeat expires
                return False
            return True

        await until_async(taken_over, 10, "the dead node's name is free to take", poll=0.2)
        await mine[0].tell(Add(3))
        assert await ref.ask(Get(), timeout=5.0) == 3  # the ref follows the name to its new home


@pytest.mark.asyncio
async def test_nodes_on_different_servers_of_a_cluster(nats_cluster: NatsCluster) -> None:
    first, second = nats_cluster.urls[0], nats_cluster.urls[1]
    name = unique()
    async with ActorSystem(nats=first) as a, ActorSystem(nats=[second, first]) as b:
        await b.start(Counter, name=name)
        ref = await a.resolve(name, timeout=10.0)
        for _ in range(100):
            await ref.tell(Add(1))
        assert await ref.ask(Get(), timeout=10.0) == 100
        with pytest.raises(ActorNameError):
            await a.start(Counter, name=name)


@pytest.mark.asyncio
async def test_embedded_server_lives_and_dies_with_its_system(tmp_path: Path) -> None:
    data = tmp_path / "nats"
    name = unique()
    async with ActorSystem(nats="embedded", cluster=Cluster(data_dir=data, node="solo")) as system:
        url = system.nats_url
        assert url is not None
        await system.start(Counter, name=name)
        async with ActorSystem(nats=url) as other:  # another node attaches to it
            ref = await other.resolve(name, timeout=5.0)
            await ref.tell(Add(2))
            assert await ref.ask(Get(), timeout=5.0) == 2
    assert (data / "jetstream").is_dir()  # JetStream data outlives the server
    with pytest.raises(ConnectionRefusedError):  # the server is gone: nothing listens there
        socket.create_connection(("127.0.0.1", int(url.rpartition(":")[2])), timeout=1.0).close()
    # A new embedded server on the same directory starts clean: the name is free again.
    async with ActorSystem(nats="embedded", cluster=Cluster(data_dir=data, node="solo")) as system:
        await system.start(Counter, name=name)


NO_DATA_DIR = """
import asyncio, sys
import msgspec
from swarm_actors import Actor, ActorSystem, handler

class Ping(msgspec.Struct):
    pass

class Ponger(Actor):
    @handler
    async def ping(self, msg: Ping) -> str:
        return "pong"

async def main() -> None:
    async with ActorSystem(nats="embedded") as system:
        ref = await system.start(Ponger, name="ponger")  # a name in the JetStream registry
        print(system._transport.server.store_dir, await ref.ask(Ping(), timeout=10.0), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    print("done")

asyncio.run(main())
"""


def test_two_processes_embed_a_server_without_a_data_dir_at_once(tmp_path: Path) -> None:
    # Wherever a default store could be looked for is under tmp_path, and checked afterwards.
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_")}
    env.update(HOME=str(home), TMPDIR=str(tmp))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", NO_DATA_DIR],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    try:
        stores = []
        for proc in procs:  # both are running now, each holding its server
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.endswith(" pong\n"), (line, proc.communicate()[1])
            stores.append(line.split()[0])
        outputs = [proc.communicate("", timeout=30) for proc in procs]
        assert [proc.returncode for proc in procs] == [0, 0], outputs
        assert [out for out, _ in outputs] == ["done\n", "done\n"]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert stores[0] != stores[1]  # a store of its own each
    assert not any(Path(store).exists() for store in stores)  # removed when the server stopped
    assert list(home.iterdir()) == []
    assert list(tmp.iterdir()) == []


@pytest.mark.asyncio
async def test_a_data_dir_in_use_by_another_embedded_server_is_named(tmp_path: Path) -> None:
    data = tmp_path / "nats"
    async with ActorSystem(nats="embedded", cluster=Cluster(data_dir=data)):
        with pytest.raises(NatsServerError, match="in use") as info:
            async with ActorSystem(nats="embedded", cluster=Cluster(data_dir=data)):
                pass
        assert str(data) in str(info.value)
        assert "data_dir" in str(info.value)
    async with ActorSystem(nats="embedded", cluster=Cluster(data_dir=data)):  # free again
        pass


def test_local_systems_never_import_nats() -> None:
    code = (
        "import asyncio, sys\n"
        "from swarm_actors import ActorSystem\n"
        "from transport_peer import Counter, Add, Get\n"
        "async def main():\n"
        "    async with ActorSystem() as s:\n"
        "        c = await s.start(Counter, name='c')\n"
        "        await c.tell(Add(1))\n"
        "        assert await c.ask(Get()) == 1\n"
        "asyncio.run(main())\n"
        "print(sorted(m for m in sys.modules if m == 'nats' or m.startswith('nats.')))\n"
    )
    # The package under test stays importable (a source tree on PYTHONPATH, not an install).
    path = os.pathsep.join(filter(None, [str(PEER.parent), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert proc.stdout.strip().splitlines()[-1] == "[]"
