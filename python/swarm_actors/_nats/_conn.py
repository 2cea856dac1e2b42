"""Connecting to NATS: options as one value object, typed failures, quiet callbacks.

:func:`connect` wraps ``nats-py``'s client so that

* every client callback (error, disconnected, reconnected, closed, lame duck) is a structlog
  event on the ``swarm_actors.nats`` logger: nats-py's default error callback prints a
  traceback on every reconnect, which never happens here;
* a server refusing the credentials raises :class:`AuthenticationError` at its first refusal
  (nats-py would retry the same bad credentials until its attempts run out);
* no server reachable within ``connect_timeout`` raises :class:`ConnectError` naming the
  servers and the last error, and leaves no task or socket behind; cancellation propagates
  unchanged after the same clean-up.

After the first successful connection the client follows the reconnect policy of its options
(by default it reconnects forever, every ``reconnect_wait`` seconds per server) and its errors
are logged, not raised: a lost connection and the failed attempts to restore it at ``info``
(a server restarting, a followed run's server ending), a connection still lost after
``_STILL_DOWN_WARNING`` seconds once at ``warning``, any other error at ``warning``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from swarm_actors._exceptions import (
    AuthenticationError,
    ConnectError,
    InvalidArgumentError,
    MessageTooLargeError,
)
from swarm_actors._log import get_logger

if TYPE_CHECKING:
    # nats-py costs ~40 ms to import: only code that connects pays for it.
    from nats.aio.client import Client

__all__ = [
    "NatsOptions",
    "check_payload_size",
    "connect",
    "placement_pending",
    "store_creation_failed",
]

_log = get_logger("swarm_actors.nats")

_SCHEMES = frozenset({"nats", "tls", "ws", "wss"})
_AUTH_MARKERS = ("authorization violation", "authentication")

ErrorCallback = Callable[[Exception], Awaitable[None]]
EventCallback = Callable[[], Awaitable[None]]


def _norm_servers(servers: str | Sequence[str]) -> tuple[str, ...]:
    urls = (servers,) if isinstance(servers, str) else tuple(servers)
    if not urls:
        raise InvalidArgumentError("servers must name at least one NATS URL")
    for url in urls:
        if not isinstance(url, str) or not url.strip():
            raise InvalidArgumentError(f"a server URL must be a non-empty str, got {url!r}")
        parts = urlsplit(url if "://" in url else f"nats://{url}")
        if parts.scheme not in _SCHEMES:
            raise InvalidArgumentError(
                f"server URL {url!r} has scheme {parts.scheme!r}; expected one of "
                f"{', '.join(sorted(_SCHEMES))}"
            )
        try:
            parts.port  # noqa: B018  (raises ValueError for a bad port)
        except ValueError:
            raise InvalidArgumentError(f"server URL {url!r} has an invalid port") from None
        if not parts.hostname:
            raise InvalidArgumentError(f"server URL {url!r} has no host")
    return urls


@dataclass(frozen=True, kw_only=True, slots=True)
class NatsOptions:
    """How to reach a NATS server or cluster; every field is keyword-only and validated.

    Authentication: at most one of ``user``/``password``, ``token``, ``creds_file`` (a JWT
    ``.creds`` file) and ``nkeys_seed`` / ``nkeys_seed_file`` (the last two need the ``nkeys``
    package: ``pip install swarm-actors[nkeys]``). TLS: an ``ssl.SSLContext`` in ``tls``, or
    ``tls_ca_file`` (and optionally ``tls_cert_file`` + ``tls_key_file`` for a client
    certificate) from which one is built; ``tls://`` URLs or a server requiring TLS also need
    one of them. Secrets are left out of ``repr``.

    ``connect_timeout`` bounds the whole initial connection (all servers, all attempts).
    Afterwards a lost connection is re-established when ``reconnect`` is true: up to
    ``max_reconnect_attempts`` per server (``-1``: forever), ``reconnect_wait`` seconds apart.
    Servers are tried in a random order (as nats-py does by default: a cluster's clients spread
    over its servers); with ``randomize=False`` in the order given, on connecting and on each
    reconnect (the next one after the server that was lost), e.g. the local server first.

    A node of a secure cluster (see ``swarm-actors cluster init``) connects with its own nkey
    seed file in ``nkeys_seed_file``; its permissions let it subscribe to its own inbox only,
    so a node picks ``inbox_prefix`` itself (``_INBOX.<node>.<random>``) unless one is given.
    """

    servers: str | Sequence[str] = "nats://127.0.0.1:4222"
    """One URL or several (a cluster); normalized to a tuple. ``host:port`` means ``nats://``."""
    user: str | None = None
    """User name, with ``password``."""
    password: str | None = field(default=None, repr=False)
    """Password, with ``user``."""
    token: str | None = field(default=None, repr=False)
    """Authorization token."""
    creds_file: str | os.PathLike[str] | None = None
    """A NATS ``.creds`` file (user JWT and nkey seed)."""
    nkeys_seed: str | None = field(default=None, repr=False)
    """An nkey user seed (``SU...``), given inline."""
    nkeys_seed_file: str | os.PathLike[str] | None = None
    """A file holding an nkey user seed."""
    tls: ssl.SSLContext | None = None
    """A ready TLS context (exclusive with the ``tls_*_file`` fields)."""
    tls_ca_file: str | os.PathLike[str] | None = None
    """CA bundle that signs the server's certificate."""
    tls_cert_file: str | os.PathLike[str] | None = None
    """Client certificate (with ``tls_key_file``) for mutual TLS."""
    tls_key_file: str | os.PathLike[str] | None = None
    """Private key of ``tls_cert_file``."""
    tls_hostname: str | None = None
    """Host name to verify the server certificate against (default: the URL's host)."""
    tls_handshake_first: bool = False
    """Start TLS before the server's INFO (servers configured with ``handshake_first``)."""
    name: str | None = None
    """Connection name shown in the server's monitoring."""
    connect_timeout: float = 5.0
    """Seconds allowed for the initial connection, all attempts included."""
    reconnect: bool = True
    """Reconnect after a lost connection."""
    max_reconnect_attempts: int = -1
    """Reconnect attempts per server; ``-1`` retries forever."""
    reconnect_wait: float = 2.0
    """Seconds between attempts on the same server."""
    ping_interval: float = 20.0
    """Seconds between client pings (a dead connection is noticed after a few)."""
    max_outstanding_pings: int = 3
    """Unanswered pings before the connection is declared dead."""
    randomize: bool = True
    """Try the servers in a random order; ``False``: in the order of ``servers``."""
    inbox_prefix: str | None = None
    """Prefix of the client's reply inboxes (``None``: ``_INBOX``; a node: its own, above)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "servers", _norm_servers(self.servers))
        if (self.user is None) != (self.password is None):
            raise InvalidArgumentError("user and password must be given together")
        schemes = [
            self.user is not None,
            self.token is not None,
            self.creds_file is not None,
            self.nkeys_seed is not None or self.nkeys_seed_file is not None,
        ]
        if sum(schemes) > 1:
            raise InvalidArgumentError(
                "give one authentication scheme: user/password, token, creds_file or nkeys"
            )
        if self.nkeys_seed is not None and self.nkeys_seed_file is not None:
            raise InvalidArgumentError("give nkeys_seed or nkeys_seed_file, not both")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise InvalidArgumentError("tls_cert_file and tls_key_file must be given together")
        if self.tls is not None and (self.tls_ca_file or self.tls_cert_file):
            raise InvalidArgumentError("give either an ssl.SSLContext in tls, or TLS files")
        if self.tls is not None and not isinstance(self.tls, ssl.SSLContext):
            raise InvalidArgumentError(f"tls must be an ssl.SSLContext, got {self.tls!r}")
        if not self.connect_timeout > 0:
            raise InvalidArgumentError(f"connect_timeout must be > 0, got {self.connect_timeout}")
        if not self.reconnect_wait >= 0:
            raise InvalidArgumentError(f"reconnect_wait must be >= 0, got {self.reconnect_wait}")
        if self.max_reconnect_attempts < -1:
            raise InvalidArgumentError("max_reconnect_attempts must be >= 0, or -1 for forever")
        if not self.ping_interval > 0 or self.max_outstanding_pings < 1:
            raise InvalidArgumentError("ping_interval must be > 0, max_outstanding_pings >= 1")
        prefix = self.inbox_prefix
        if prefix is not None and not (
            isinstance(prefix, str)
            and all(t.isprintable() and t and not set(t) & set(" *>") for t in prefix.split("."))
        ):
            raise InvalidArgumentError(
                f"inbox_prefix must be a subject without wildcards, got {prefix!r}"
            )

    @property
    def urls(self) -> tuple[str, ...]:
        """The server URLs as a tuple."""
        servers = self.servers
        assert isinstance(servers, tuple)
        return servers

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context to connect with: ``tls``, one built from the files, or ``None``."""
        if self.tls is not None:
            return self.tls
        if self.tls_ca_file is None and self.tls_cert_file is None:
            return None
        for path in (self.tls_ca_file, self.tls_cert_file, self.tls_key_file):
            if path is not None and not Path(path).is_file():
                raise InvalidArgumentError(f"TLS file not found: {os.fspath(path)!r}")
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.tls_ca_file)
        if self.tls_cert_file is not None and self.tls_key_file is not None:
            context.load_cert_chain(self.tls_cert_file, self.tls_key_file)
        return context


def _client_kwargs(options: NatsOptions) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "servers": list(options.urls),
        "name": options.name,
        "connect_timeout": options.connect_timeout,
        "allow_reconnect": options.reconnect,
        "max_reconnect_attempts": options.max_reconnect_attempts,
        "reconnect_time_wait": options.reconnect_wait,
        "ping_interval": options.ping_interval,
        "max_outstanding_pings": options.max_outstanding_pings,
        "dont_randomize": not options.randomize,
        "user": options.user,
        "password": options.password,
        "token": options.token,
    }
    needs_nkeys = (
        options.creds_file is not None
        or options.nkeys_seed is not None
        or options.nkeys_seed_file is not None
    )
    if needs_nkeys and importlib.util.find_spec("nkeys") is None:
        raise InvalidArgumentError(
            "creds and nkeys authentication need the nkeys package: "
            "pip install swarm-actors[nkeys] (or pip install nkeys)"
        )
    for path in (options.creds_file, options.nkeys_seed_file):
        if path is not None and not Path(path).is_file():
            raise InvalidArgumentError(f"credentials file not found: {os.fspath(path)!r}")
    if options.creds_file is not None:
        kwargs["user_credentials"] = os.fspath(options.creds_file)
    if options.nkeys_seed_file is not None:
        kwargs["nkeys_seed"] = os.fspath(options.nkeys_seed_file)
    if options.nkeys_seed is not None:
        kwargs["nkeys_seed_str"] = options.nkeys_seed
    if options.inbox_prefix is not None:
        kwargs["inbox_prefix"] = options.inbox_prefix
    context = options.ssl_context()
    if context is not None:
        kwargs["tls"] = context
        kwargs["tls_hostname"] = options.tls_hostname
        kwargs["tls_handshake_first"] = options.tls_handshake_first
    return kwargs


def _is_auth_error(error: BaseException) -> bool:
    from nats.errors import AuthorizationError

    if isinstance(error, AuthorizationError):
        return True
    text = str(error).lower()
    return any(marker in text for marker in _AUTH_MARKERS)


_STILL_DOWN_WARNING = 10.0
"""Seconds a lost connection may take to come back before it is worth a warning."""


def _is_connection_error(error: BaseException) -> bool:
    """The connection dropped, or an attempt to reconnect found no server (or timed out)."""
    from nats.errors import StaleConnectionError, UnexpectedEOF

    return isinstance(error, OSError | TimeoutError | UnexpectedEOF | StaleConnectionError)


def _describe(error: BaseException | None) -> str:
    if error is None:
        return "no error reported"
    text = str(error).removeprefix("nats: ").strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


async def connect(
    options: NatsOptions,
    *,
    error_cb: ErrorCallback | None = None,
    disconnected_cb: EventCallback | None = None,
    reconnected_cb: EventCallback | None = None,
    closed_cb: EventCallback | None = None,
) -> Client:
    """A connected nats-py client, with its callbacks logged (``swarm_actors.nats`` logger).

    The optional callbacks run after the logging, for code that must react to connection
    changes (they must be ``async def``). Raises :class:`AuthenticationError` when a server
    refuses the credentials, :class:`ConnectError` when no server accepts a connection within
    ``options.connect_timeout``, and :class:`InvalidArgumentError` for unusable options (a
    missing credentials or TLS file, nkeys auth without the ``nkeys`` package).
    """
    if not isinstance(options, NatsOptions):
        raise InvalidArgumentError(f"options must be NatsOptions, got {type(options).__name__}")
    from nats.aio.client import Client

    kwargs = _client_kwargs(options)
    log = _log.bind(connection=options.name) if options.name else _log
    client = Client()
    loop = asyncio.get_running_loop()
    refused: asyncio.Future[Exception] = loop.create_future()
    state = {"connecting": True, "abandoned": False}
    last_error: list[BaseException] = []
    # While the connection is lost: since when (loop time), and whether that was warned about.
    down: dict[str, Any] = {"since": None, "warned": False}

    async def on_error(e: Exception) -> None:
        if state["abandoned"]:
            return
        if state["connecting"]:
            last_error[:] = [e]
            if _is_auth_error(e) and not refused.done():
                refused.set_result(e)
            log.debug("nats.connect_attempt_failed", error=_describe(e))
        elif _is_connection_error(e):
            # The connection dropped, or a reconnect attempt failed: expected while a server
            # restarts, and at the end of a run whose embedded server a reader follows
            # ("nats.disconnected" says it happened). Still lost after a while: warned once.
            log.info("nats.connection_error", error=_describe(e))
            since = down["since"]
            if since is not None and not down["warned"]:
                waited = loop.time() - since
                if waited >= _STILL_DOWN_WARNING:
                    down["warned"] = True
                    log.warning(
                        "nats.still_disconnected", seconds=round(waited, 1), error=_describe(e)
                    )
        else:
            log.warning("nats.error", error=_describe(e))
        if error_cb is not None:
            await error_cb(e)

    async def on_disconnected() -> None:
        if state["abandoned"]:
            return
        if down["since"] is None:
            down["since"], down["warned"] = loop.time(), False
        log.info("nats.disconnected")
        if disconnected_cb is not None:
            await disconnected_cb()

    async def on_reconnected() -> None:
        url = client.connected_url
        down["since"] = None
        log.info("nats.reconnected", server=url.netloc if url else None)
        if reconnected_cb is not None:
            await reconnected_cb()

    async def on_closed() -> None:
        if state["abandoned"]:
            return
        log.debug("nats.closed")
        if closed_cb is not None:
            await closed_cb()

    async def on_lame_duck() -> None:
        log.warning("nats.lame_duck_mode", server=_server_netloc(client))

    attempt = asyncio.ensure_future(
        client.connect(
            **kwargs,
            error_cb=on_error,
            disconnected_cb=on_disconnected,
            reconnected_cb=on_reconnected,
            closed_cb=on_closed,
            lame_duck_mode_cb=on_lame_duck,
        )
    )
    servers = ", ".join(options.urls)
    try:
        await asyncio.wait(
            (attempt, refused),
            timeout=options.connect_timeout,
            return_when=asyncio.FIRST_COMPLETED,
        )
    except asyncio.CancelledError:
        await _abandon(client, attempt, state)
        raise
    if refused.done():
        await _abandon(client, attempt, state)
        raise AuthenticationError(
            f"NATS server refused the credentials ({servers}): {_describe(refused.result())}"
        )
    if not attempt.done():
        await _abandon(client, attempt, state)
        last = last_error[0] if last_error else None
        raise ConnectError(
            f"could not connect to NATS ({servers}) within {options.connect_timeout:g} s; "
            f"last error: {_describe(last)}"
        )
    error = attempt.exception()
    if error is not None:
        await _abandon(client, attempt, state)
        cause = last_error[0] if last_error else error
        if _is_auth_error(cause):
            raise AuthenticationError(
                f"NATS server refused the credentials ({servers}): {_describe(cause)}"
            ) from error
        raise ConnectError(f"could not connect to NATS ({servers}): {_describe(cause)}") from error
    state["connecting"] = False
    log.debug("nats.connected", server=_server_netloc(client))
    return client


def _server_netloc(client: Client) -> str | None:
    url = client.connected_url
    return url.netloc if url else None


async def _abandon(client: Client, attempt: asyncio.Future[None], state: dict[str, bool]) -> None:
    """Stop a connection attempt and release everything it holds, without logging it."""
    state["abandoned"] = True
    attempt.cancel()
    # asyncio.wait does not raise the attempt's outcome, but does raise our own cancellation.
    await asyncio.wait((attempt,))
    with contextlib.suppress(Exception):
        await client.close()


def check_payload_size(client: Client, size: int) -> None:
    """Raise :class:`MessageTooLargeError` if ``size`` bytes exceed the server's max payload.

    ``size`` should include the encoded headers: the server counts them against the limit.
    """
    limit = client.max_payload
    if size > limit:
        raise MessageTooLargeError(
            f"message of {size} bytes exceeds the server's max_payload of {limit} bytes",
            size=size,
            limit=limit,
        )


# JetStream's "no suitable peers for placement" (err_code 10005). Only the "peer offline"
# variant is retried: a cluster formed moments ago, or one electing after a node died, has
# peers its meta leader has not heard from yet. Other variants (not enough servers, no
# storage left) do not heal by waiting.
_NO_PEERS_ERR_CODE = 10005

# JetStream's "error creating store for stream" (err_code 10049, code 500). The server
# hides the cause (it goes to its own log only); seen once in CI on a loaded machine, for a
# stream name never used before, and other projects retry it too. Creating the stream is
# idempotent, so trying again within the caller's timeout loses nothing.
_STORE_FAILED_ERR_CODE = 10049


def placement_pending(error: BaseException) -> bool:
    """True when JetStream refused a stream only because a peer is not yet known online."""
    from nats.js.errors import APIError

    return (
        isinstance(error, APIError)
        and error.err_code == _NO_PEERS_ERR_CODE
        and "peer offline" in (error.description or "")
    )


def store_creation_failed(error: BaseException) -> bool:
    """True when JetStream answered "error creating store for stream" (worth one more try)."""
    from nats.js.errors import APIError

    return isinstance(error, APIError) and error.err_code == _STORE_FAILED_ERR_CODE
