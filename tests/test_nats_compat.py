"""The nats-py internals ``swarm_actors._nats._compat`` relies on: present, and behaving.

Fails when an installed nats-py changes what ``_compat``'s docstring lists (a name, a
signature, or the behaviour), so that a new release is checked before the pin is widened.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import tomllib
from importlib.metadata import version
from pathlib import Path
from typing import cast

import pytest
from nats.aio.client import Client
from nats.aio.subscription import Subscription

from swarm_actors._nats import _compat
from swarm_actors.testing import NatsServer

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _release(text: str) -> tuple[int, int]:
    major, minor = text.split(".")[:2]
    return int(major), int(minor)


def test_the_installed_nats_py_is_a_supported_one() -> None:
    low, high = _compat.SUPPORTED
    assert low <= _release(version("nats-py")) < high


def test_pyproject_pins_the_supported_range() -> None:
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    (pin,) = [d for d in dependencies if re.match(r"nats-py\b", d)]
    low, high = _compat.SUPPORTED
    assert pin == f"nats-py>={low[0]}.{low[1]},<{high[0]}.{high[1]}"


def test_process_msg_has_the_signature_the_router_shadows() -> None:
    method = Client._process_msg
    assert inspect.iscoroutinefunction(method)
    params = list(inspect.signature(method).parameters)
    assert params == ["self", "sid", "subject", "reply", "data", "headers"]


def test_a_fresh_client_has_the_buffer_and_info_attributes() -> None:
    client = Client()
    assert client._pending == []
    assert client._pending_data_size == 0
    assert client.pending_data_size == 0  # the public view of the same counter
    assert isinstance(client._server_info, dict)
    assert "_transport" in vars(client)


def test_the_client_takes_frames_as_send_frames_hands_them() -> None:
    client = Client()
    assert _compat.supports_frames(client)
    assert inspect.iscoroutinefunction(Client._send_command)
    assert list(inspect.signature(Client._send_command).parameters)[:2] == ["self", "cmd"]
    assert inspect.iscoroutinefunction(Client._flush_pending)
    assert "_flush_queue" in vars(client)
    assert "_max_pending_size" in vars(client)
    assert client.is_draining_pubs is False
    assert {"out_msgs", "out_bytes"} <= set(client.stats)


def test_subscriptions_keep_their_sid() -> None:
    assert "id" in inspect.signature(Subscription.__init__).parameters
    assert "_id" in inspect.getsource(Subscription.__init__)


def test_status_of_reads_inline_status_headers() -> None:
    assert _compat.status_of(b"NATS/1.0 503\r\n\r\n") == b"503"
    assert _compat.status_of(b"NATS/1.0 408 Request Timeout\r\n\r\n") == b"408"
    assert _compat.status_of(b"NATS/1.0\r\nFoo: bar\r\n\r\n") is None
    assert _compat.status_of(None) is None


@pytest.mark.asyncio
async def test_a_round_trip_through_every_internal(nats_server: NatsServer) -> None:
    """Raw-bytes routing, a status message, direct writes, INFO and a synchronous publish."""
    from swarm_actors._nats._conn import connect
    from swarm_actors.cluster import NatsOptions

    client = await connect(NatsOptions(servers=nats_server.url, name="compat"))
    try:
        # 4: the server's INFO, as the registry reads it.
        info = _compat.server_info(client)
        assert info.get("server_id")
        assert "max_payload" in info

        # 1, 2: a routed subscription gets raw bytes in the read loop, others still get Msgs.
        got: asyncio.Queue[tuple[bytes, bytes, bytes, bytes | None]] = asyncio.Queue()
        sub = await _compat.fast_subscribe(client, "compat.raw", lambda *args: got.put_nowait(args))
        assert _compat.routed(client, sub)
        plain = await client.subscribe("compat.plain")
        await client.publish("compat.raw", b"hello", reply="compat.back")
        await client.publish("compat.plain", b"as usual")
        async with asyncio.timeout(5):
            assert await got.get() == (b"compat.raw", b"compat.back", b"hello", None)
            assert (await plain.next_msg(timeout=5)).data == b"as usual"

        # A status message (no responders) reaches the raw handler with its code.
        inbox = client.new_inbox()
        status_sub = await _compat.fast_subscribe(client, inbox, lambda *a: got.put_nowait(a))
        await client.publish("compat.nobody", b"?", reply=inbox, headers={"x": "1"})
        await client.flush()
        async with asyncio.timeout(5):
            subject, _, _, status = await got.get()
        assert (subject, status) == (inbox.encode(), b"503")

        # 5: a publish with room in the buffer completes without suspending.
        assert _compat.start_publish(client, "compat.raw", b"sync", "", None) is None
        # 3: and what it buffered goes to the socket at once, leaving nats-py's buffer empty.
        assert client.pending_data_size > 0
        assert _compat.write_now(client, 256 * 1024)
        assert client.pending_data_size == 0
        assert client._pending == []
        async with asyncio.timeout(5):
            assert (await got.get())[2] == b"sync"
        assert not _compat.write_now(client, 256 * 1024)  # nothing left to write

        await _compat.unsubscribe_quietly(client, sub)
        await _compat.unsubscribe_quietly(client, status_sub)
        assert not _compat.routed(client, sub)
        await plain.unsubscribe()
    finally:
        await client.close()
    await _compat.unsubscribe_quietly(client, sub)  # closed: nothing raised


@pytest.mark.asyncio
async def test_a_client_of_a_server_that_is_gone_closes_cleanly_once_its_buffer_is_dropped() -> (
    None
):
    from helpers import until
    from swarm_actors._nats._conn import connect

    async def ignore(msg: object) -> None:
        pass

    async with NatsServer() as server:
        client = await connect(server.client_options())
        sub = await client.subscribe("compat.gone", cb=ignore)
        await server.stop()
        await until(lambda: not client.is_connected, what="the client seeing the server gone")
        await client.publish("compat.gone", b"buffered while it waits to reconnect")
        assert client._pending  # 3: what nats-py's close would write to the lost socket
        _compat.discard_pending(client)
        assert client._pending == []
        assert client._pending_data_size == 0
        await client.close()  # no ConnectionResetError, and the subscription's task ends
        task = cast("asyncio.Task[None] | None", sub._wait_for_msgs_task)  # typed None in nats-py
        assert task is not None
        await until(task.done, what="the subscription's task ended")
