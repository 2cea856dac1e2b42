"""Serving the dashboard: bind, check the address against the token rule, run uvicorn."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable

from swarm_actors._exceptions import InvalidArgumentError

__all__ = ["bind", "is_loopback", "serve"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (``port`` 0: any free port).

    Raises ``InvalidArgumentError`` naming the fix when the address cannot be had.
    """
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise InvalidArgumentError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}: pick another --port "
            "(0 takes any free one) or --host"
        ) from None
    sock.setblocking(False)
    return sock


async def serve(
    app: object, sock: socket.socket, *, on_ready: Callable[[], None] | None = None
) -> None:
    """Serve ``app`` on ``sock`` until cancelled or interrupted.

    uvicorn, its logs at warning level; in the main thread it stops on SIGINT/SIGTERM, then
    raises them again. ``on_ready`` is called once it accepts connections.
    """
    import uvicorn

    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        log_level="warning",
        lifespan="on",
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        while not server.started and not task.done():
            await asyncio.wait({task}, timeout=0.05)  # uvicorn has no "started" event to await
        if server.started and on_ready is not None:
            on_ready()
        # Shielded: a cancellation of ours must not cancel uvicorn mid-request; it is asked
        # to exit below, and shuts down (lifespan and all) in its own time.
        await asyncio.shield(task)
    finally:
        if not task.done():
            server.should_exit = True
            try:
                await asyncio.wait_for(asyncio.shield(task), 5)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
