"""The cluster-wide name registry: which node runs each named actor, and which nodes are alive.

Two JetStream key-value buckets, shared by every node attached to the same NATS:

* ``swarm_names``: actor name -> ``NameEntry`` (node id, node incarnation, path, role, class
  names). A name is claimed with a create-only write, so two nodes cannot both get it; a name
  whose holder is dead is taken over with a compare-and-set on the revision read (fencing: of
  two nodes taking over at once, one wins). Released (compare-and-set delete) when the actor
  stops.
* ``swarm_nodes``: node id -> incarnation, rewritten every ``ttl / 4`` seconds with a
  per-message TTL of ``ttl``. A node is alive while its key holds the incarnation that its
  names carry: a node that crashed disappears after ``ttl``; a node restarted under the same
  id has a new incarnation, so its old names count as dead at once. The bucket can also lose
  a live node's key: while it elects a new leader nobody can heartbeat, and the keys whose TTL
  ran out meanwhile are removed. So a node missing from it is asked directly (``probe``: the
  transport's request to ``swarm.node.<id>.live``, answered with the incarnation) before its
  names are taken over.

Every node mirrors ``swarm_names`` through a KV watch, so resolving a name is a dict lookup;
``fetch`` reads the bucket itself when the mirror may lag (after a "no such actor" answer).

Keys are names written by ``name_key`` (version ``KEY_ENCODING``: UTF-8 bytes, ``=HH``
escapes), which gives distinct names distinct keys. Entries of ``swarm_names`` under another
encoding (an earlier release's) are ignored: they are claims of nodes that have restarted since.
The state bucket (``_cluster``) is data, and reads an earlier release's keys with
``legacy_owner``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, TypeVar

import msgspec

from swarm_actors._exceptions import ActorNameError, TransportError
from swarm_actors._log import get_logger
from swarm_actors._nats._conn import placement_pending

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.js.client import JetStreamContext
    from nats.js.kv import KeyValue

__all__ = [
    "ENCODING_MARKER",
    "KEY_ENCODING",
    "NAMES_BUCKET",
    "NODES_BUCKET",
    "NameEntry",
    "Registry",
    "cluster_replicas",
    "key_name",
    "legacy_key",
    "legacy_owner",
    "name_key",
    "open_bucket",
    "settled",
    "stamp_encoding",
    "watch_bucket",
]

_log = get_logger("swarm_actors.transport")

T = TypeVar("T")

NAMES_BUCKET = "swarm_names"
NODES_BUCKET = "swarm_nodes"
_CLAIM_ATTEMPTS = 5
_CREATE_ATTEMPTS = 3
_PEERS_WAIT = 20.0  # how long bucket creation waits for a peer the meta leader sees offline
WATCH_HEARTBEAT = 1.0
"""Seconds between idle heartbeats of a node's watch of the names bucket. Its consumer lives
on one server; two heartbeats missed and nats-py recreates it on a live one. With nats-py's
5 s default, a node whose watch died with its server missed every change for 10-20 s."""
WATCH_INACTIVE = 300.0
"""Seconds after which the server removes the watch consumer of a node that went away."""
_SETTLE_SECONDS = 5.0
_KEY_SAFE = re.compile(r"[A-Za-z0-9_-]")
_KEY_PLAIN = re.compile(r"[A-Za-z0-9_-]*")
_KEY_SAFE_BYTES = [bool(_KEY_SAFE.fullmatch(chr(b))) for b in range(256)]
_KEY_ENCODED = re.compile(r"(?:[A-Za-z0-9_-]|=[0-9A-F]{2})+")
_KEY_PART = re.compile(r"([A-Za-z0-9_-]+)|=([0-9A-F]{2})")
_LEGACY_KEY = re.compile(r"(?:[A-Za-z0-9_-]|=[0-9A-F]{2})+")
_HEX_DIGITS = frozenset("0123456789ABCDEF")
_LEGACY_READINGS = 4096


class NameEntry(msgspec.Struct, array_like=True, frozen=True):
    """Where a named actor runs, and what capability checks need to know about it."""

    node: str
    incarnation: str
    path: str
    role: str
    classes: tuple[str, ...]


Probe = Callable[[str], Awaitable[str | None]]
"""``probe(node)``: the incarnation a node answers when asked directly (``None``: no answer)."""

_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(NameEntry)


def name_key(name: str) -> str:
    """The KV key of an actor name: its UTF-8 bytes, those other than ``[A-Za-z0-9_-]`` as ``=HH``.

    Actor names may hold ``. : @ + = ~`` and any other character, which KV keys (and subject
    tokens) cannot all hold. Every escape is exactly two hex digits of one byte and ``=`` is
    always escaped, so a key reads back as one byte string only, and UTF-8 maps distinct names
    to distinct byte strings: distinct names never share a key (``key_name`` inverts it). Lone
    surrogates (not valid UTF-8) are encoded as their three-byte form (``surrogatepass``),
    which no valid character encodes to.

    Before this encoding (``KEY_ENCODING`` 2), a character was escaped as its code point
    (``=20AC`` for "€", also the key of " AC"): see ``legacy_owner`` for reading what that
    version stored.
    """
    if _KEY_PLAIN.fullmatch(name):
        return name
    return "".join(
        chr(b) if _KEY_SAFE_BYTES[b] else f"={b:02X}" for b in name.encode("utf-8", "surrogatepass")
    )


def key_name(key: str) -> str:
    """The actor name of a KV key (inverse of ``name_key``); ``ValueError`` if no name has it.

    Keys that no name encodes to (lower-case or truncated escapes, bytes that are not UTF-8,
    characters ``name_key`` escapes) are refused rather than read loosely, so that two keys
    never read as the same name.
    """
    if _KEY_PLAIN.fullmatch(key):
        return key
    if not _KEY_ENCODED.fullmatch(key):
        raise ValueError(f"not a name key: {key!r}")
    data = bytearray()
    for plain, escaped in _KEY_PART.findall(key):
        data += plain.encode("ascii") if plain else bytes.fromhex(escaped)
    try:
        name = data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        raise ValueError(f"not a name key: {key!r} (not UTF-8)") from None
    if name_key(name) != key:  # e.g. "=41" for "A", which is written plain
        raise ValueError(f"not a name key: {key!r} (not the way names are written)")
    return name


KEY_ENCODING = 2
"""Version of ``name_key``'s encoding. Version 1 escaped a code point as ``=`` and its hex digits
(two or more), which let distinct names share a key."""


def legacy_key(name: str) -> str:
    """The key ``name`` had under version 1 of the encoding (what earlier releases wrote)."""
    return "".join(c if _KEY_SAFE.match(c) else f"={ord(c):02X}" for c in name)


def legacy_owner(key: str, plausible: Callable[[str], bool]) -> str | None:
    """The one plausible name whose version-1 key is ``key``; ``None`` if several, or none.

    Version 1 wrote a code point above ``0xFF`` with three to six hex digits and one up to
    ``0xFF`` with two, so a two-digit escape followed by hex digits (``=20AC``: " AC" or "€")
    could have been written for different names. Every reading of ``key`` is tried (beyond
    ``_LEGACY_READINGS`` of them the key counts as shared); ``plausible(name)`` tells the names
    that could have been stored there (a state bucket holds virtual targets only).
    """
    if not _LEGACY_KEY.fullmatch(key):
        return None
    owner: str | None = None
    for tried, name in enumerate(_legacy_readings(key)):
        if tried == _LEGACY_READINGS:
            return None
        if plausible(name):
            if owner is not None and owner != name:
                return None  # two names had this key
            owner = name
    return owner


def _legacy_readings(key: str) -> Iterator[str]:
    """Every name that version 1 could have written as ``key`` (a valid version-1 key)."""
    stack = [(0, "")]  # (position in key, name read so far)
    while stack:
        at, name = stack.pop()
        if at == len(key):
            yield name
            continue
        if key[at] != "=":
            stack.append((at + 1, name + key[at]))
            continue
        digits = key[at + 1 : at + 3]
        point = int(digits, 16)
        if not _KEY_SAFE.match(chr(point)):  # version 1 wrote safe characters plain
            stack.append((at + 3, name + chr(point)))
        if digits[0] == "0":
            continue  # a longer escape has no leading zero
        end = at + 3
        while end < len(key) and end - at <= 6 and key[end] in _HEX_DIGITS:
            end += 1
            point = int(key[at + 1 : end], 16)
            if point > 0x10FFFF:
                break
            stack.append((end, name + chr(point)))


ENCODING_MARKER = "swarm.key-encoding"
"""Key of the entry recording ``KEY_ENCODING`` in a bucket keyed by ``name_key`` (the ``.``
keeps it apart: ``name_key`` never writes one)."""


async def stamp_encoding(bucket: KeyValue, name: str) -> int:
    """Record ``KEY_ENCODING`` in ``bucket`` (once) and return the revision of that record.

    Entries of ``bucket`` with a lower revision were written before any node of this release
    opened it: with version 1 of the encoding (see ``legacy_owner``). Raises
    ``TransportError`` if the bucket records another version.
    """
    from nats.js.errors import KeyWrongLastSequenceError

    value = str(KEY_ENCODING).encode()
    try:
        return await _settled(lambda: bucket.create(ENCODING_MARKER, value))
    except KeyWrongLastSequenceError:
        pass
    entry = await _settled(lambda: bucket.get(ENCODING_MARKER))
    if entry.value != value:
        raise TransportError(
            f"bucket {name} records key encoding {entry.value!r}; this release writes "
            f"version {KEY_ENCODING}: run one release across the cluster"
        )
    return entry.revision or 0


async def open_bucket(
    js: JetStreamContext, bucket: str, *, memory: bool, replicas: int, markers: bool = False
) -> KeyValue:
    """Bind the key-value bucket ``bucket``, creating it if no node has yet.

    ``markers``: the server writes a delete marker when a key's per-message TTL expires, so
    watchers see the expiry (leases).
    """
    from nats.js.api import KeyValueConfig, StorageType
    from nats.js.errors import BadRequestError, BucketNotFoundError

    try:
        return await js.key_value(bucket)
    except BucketNotFoundError:
        pass
    config = KeyValueConfig(
        bucket=bucket,
        history=1,
        storage=StorageType.MEMORY if memory else StorageType.FILE,
        replicas=replicas,
        limit_marker_ttl=1.0 if markers else None,
    )
    from nats.errors import TimeoutError as NatsTimeoutError

    loop = asyncio.get_running_loop()
    peers_deadline = loop.time() + _PEERS_WAIT
    delay = 0.05
    timeouts = 0
    while True:
        try:
            return await js.create_key_value(config)
        except NatsTimeoutError:
            # A cluster that just formed may not answer stream creation until its meta group
            # has a leader; creating the same bucket again is harmless.
            timeouts += 1
            if timeouts == _CREATE_ATTEMPTS:
                raise
            with contextlib.suppress(BucketNotFoundError):
                return await js.key_value(bucket)  # the first attempt did create it
        except BadRequestError as e:
            if not placement_pending(e):  # another node created it in the meantime
                return await js.key_value(bucket)
            if loop.time() + delay >= peers_deadline:
                raise
            _log.info("registry.bucket_retry", bucket=bucket, error=str(e))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)


class Registry:
    """One node's view of, and writes to, the name and node buckets (see the module doc)."""

    def __init__(
        self,
        js: JetStreamContext,
        node: str,
        incarnation: str,
        ttl: float,
        *,
        replicas: int = 1,
        probe: Probe | None = None,
    ) -> None:
        self._js = js
        self._probe = probe
        self.replicas = replicas
        """Copies the cluster keeps of each bucket (a bucket made by another node keeps its own)."""
        self.node = node
        self.incarnation = incarnation
        self._ttl = max(1, round(ttl))  # the server takes whole seconds
        self._names: KeyValue | None = None
        self._nodes: KeyValue | None = None
        self._mirror: dict[str, NameEntry] = {}
        self._revisions: dict[str, int] = {}  # newest revision applied to the mirror, per name
        self._held: dict[str, int] = {}  # names this node holds -> revision of its claim
        self.version = 0
        """Bumped on every change of the mirror (refs cache their resolution against it)."""
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._watch_sub: JetStreamContext.PushSubscription | None = None

    @property
    def js(self) -> JetStreamContext:
        """The JetStream context of the buckets (the cluster's state and leases use it too)."""
        return self._js

    async def open(self, *, fresh: bool = False) -> None:
        """Create or bind the buckets, announce this node, and fill the mirror.

        ``fresh``: the server was just started for this node alone (embedded), so whatever the
        buckets hold is left over from earlier runs and is purged. Raises ``TransportError``
        if a live node already uses this node id.
        """
        self._names = await open_bucket(
            self._js, NAMES_BUCKET, memory=False, replicas=self.replicas
        )
        self._nodes = await open_bucket(self._js, NODES_BUCKET, memory=True, replicas=self.replicas)
        if fresh:
            await self._js.purge_stream(f"KV_{NAMES_BUCKET}")
        nodes = self._nodes
        with contextlib.suppress(_key_not_found()):
            entry = await _settled(lambda: nodes.get(self.node))
            if entry.value and entry.value.decode() != self.incarnation:
                raise TransportError(
                    f"node id {self.node!r} is in use by a live node (it heartbeated within "
                    f"the last {self._ttl} s); give each ActorSystem its own node="
                )
        await self._heartbeat()
        await self._watch_names()
        self._tasks.append(asyncio.get_running_loop().create_task(self._beat()))

    async def close(self) -> None:
        """Release every held name, stop heartbeating and remove this node's key."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._watch_sub is not None:
            watch, self._watch_sub = self._watch_sub, None
            with contextlib.suppress(Exception):  # a closed connection: gone anyway
                await watch.unsubscribe()
        await asyncio.gather(*(self.release(name) for name in list(self._held)))
        if self._nodes is not None:
            with contextlib.suppress(Exception):  # best effort: the TTL removes it anyway
                await self._nodes.delete(self.node)
        closed = TransportError(f"node {self.node} left NATS while waiting for a name")
        for waiters in self._waiters.values():
            for waiter in waiters:
                if not waiter.done():  # an error, not a cancellation nobody asked for
                    waiter.set_exception(closed)

    # --- reading ----------------------------------------------------------------------------

    def get(self, name: str) -> NameEntry | None:
        """The mirrored entry of ``name`` (no I/O)."""
        return self._mirror.get(name)

    def entries(self, prefix: str) -> list[tuple[str, NameEntry]]:
        """The mirrored entries whose names start with ``prefix``, sorted by name (no I/O)."""
        return sorted((n, e) for n, e in self._mirror.items() if n.startswith(prefix))

    async def fetch(self, name: str) -> NameEntry | None:
        """The entry of ``name`` as stored now (one KV read); updates the mirror."""
        names = self._names
        assert names is not None
        version = self.version
        try:
            entry = await _settled(lambda: names.get(name_key(name)))
        except _key_not_found():
            # The read may have been answered before an update the watch applied meanwhile:
            # then the mirror is newer than "not found" and keeps what it has.
            if self.version == version and self._mirror.pop(name, None) is not None:
                self.version += 1
            return self._mirror.get(name)
        self._apply(entry.key, entry.value, None, entry.revision or 0)
        return self._mirror.get(name)

    async def wait(self, name: str) -> NameEntry:
        """The entry of ``name``, waiting until some node registers it."""
        while True:
            entry = self._mirror.get(name)
            if entry is not None:
                return entry
            # Wait before reading: a registration the watch delivers while the read is under
            # way (the read answered before it) still wakes this waiter.
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(name, []).append(waiter)
            try:
                entry = await self.fetch(name)
                if entry is not None:
                    return entry
                await waiter
            finally:
                waiters = self._waiters.get(name)
                if waiters is not None and waiter in waiters:
                    waiters.remove(waiter)
                    if not waiters:
                        del self._waiters[name]

    async def is_live(self, node: str, incarnation: str) -> bool:
        """Whether ``node`` runs with ``incarnation``.

        It does if it heartbeats with it (within its TTL), or, when the node bucket says
        otherwise, if it answers the probe with it (see the module docstring: the bucket
        drops live nodes' keys when it fails over).
        """
        nodes = self._nodes
        assert nodes is not None
        try:
            entry = await _settled(lambda: nodes.get(node))
        except _key_not_found():
            pass
        else:
            if entry.value is not None and entry.value.decode() == incarnation:
                return True
        return self._probe is not None and await self._probe(node) == incarnation

    async def incarnation_of(self, node: str) -> str | None:
        """The incarnation ``node`` heartbeats with now (``None``: no heartbeat within its TTL)."""
        nodes = self._nodes
        assert nodes is not None
        try:
            entry = await _settled(lambda: nodes.get(node))
        except _key_not_found():
            return None
        return entry.value.decode(errors="replace") if entry.value else None

    async def live_nodes(self) -> set[str]:
        """Ids of the nodes that heartbeat now (one bucket listing)."""
        from nats.js.errors import NoKeysError

        nodes = self._nodes
        assert nodes is not None
        try:
            return set(await _settled(nodes.keys))
        except NoKeysError:
            return set()

    # --- writing ----------------------------------------------------------------------------

    async def claim(self, name: str, entry: NameEntry) -> None:
        """Register ``name`` for this node; ``ActorNameError`` if a live node holds it."""
        from nats.js.errors import KeyWrongLastSequenceError

        names = self._names
        assert names is not None
        key, value = name_key(name), _ENCODER.encode(entry)
        for _ in range(_CLAIM_ATTEMPTS):
            try:
                revision = await _settled(lambda: names.create(key, value))
            except KeyWrongLastSequenceError:
                pass
            else:
                self._claimed(name, entry, revision)
                return
            try:
                current = await _settled(lambda: names.get(key))
            except _key_not_found():
                continue  # released in between: create again
            holder = _decode(current.value)
            if holder is not None:
                mine = holder.node == self.node and holder.incarnation == self.incarnation
                # An entry of this very node that it no longer holds is being released:
                # take it over like a dead node's.
                if (mine and name in self._held) or (
                    not mine and await self.is_live(holder.node, holder.incarnation)
                ):
                    raise ActorNameError(
                        f"an actor named {name!r} already runs on node {holder.node}",
                        actor=holder.path,
                    )
            try:
                revision = await names.update(key, value, last=current.revision)
            except KeyWrongLastSequenceError:
                continue  # another node took it over first: look again
            _log.info("transport.name_taken_over", name=name, dead_node=holder and holder.node)
            self._claimed(name, entry, revision)
            return
        raise ActorNameError(f"could not register {name!r}: too much contention", actor=name)

    def _claimed(self, name: str, entry: NameEntry, revision: int) -> None:
        self._held[name] = revision
        self._set(name, entry, revision)

    def holds(self, name: str) -> bool:
        """Whether this node registered ``name``."""
        return name in self._held

    def forget(self, name: str) -> int | None:
        """Stop holding ``name`` now; returns the revision to ``delete`` (``None``: not held).

        Synchronous, so that a new claim of the same name right after an actor stopped takes
        over this node's old entry instead of finding it still held.
        """
        revision = self._held.pop(name, None)
        if revision is not None and self._revisions.get(name) == revision:
            self._mirror.pop(name, None)
            self.version += 1
        return revision

    async def delete(self, name: str, revision: int) -> None:
        """Delete the entry of ``name`` if it is still at ``revision`` (compare-and-set)."""
        if self._names is None:
            return
        try:
            await self._names.delete(name_key(name), last=revision)
        except Exception as exc:  # taken over meanwhile, or the connection is gone
            _log.debug("transport.release_failed", name=name, error=repr(exc))

    async def release(self, name: str) -> None:
        """Unregister ``name`` if this node still holds it."""
        revision = self.forget(name)
        if revision is not None:
            await self.delete(name, revision)

    # --- internals --------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        subject = f"$KV.{NODES_BUCKET}.{self.node}"
        value = self.incarnation.encode()
        await _settled(lambda: self._js.publish(subject, value, msg_ttl=self._ttl))

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._ttl / 4)
            try:
                await self._heartbeat()
            except Exception as exc:  # a reconnect in progress: the next beat retries
                _log.warning("transport.heartbeat_failed", node=self.node, error=repr(exc))

    async def _watch_names(self) -> None:
        """Mirror the names bucket: its entries now (before returning), then every change."""
        self._watch_sub = await watch_bucket(self._js, NAMES_BUCKET, self._apply)

    def _apply(self, key: str, value: bytes | None, operation: str | None, revision: int) -> None:
        try:
            name = key_name(key)
        except ValueError:
            # Not a name's key: written by a release before ``KEY_ENCODING`` 2 (its holder has
            # restarted since, so its claim is dead) or by something else. Names are claims
            # of live nodes, not data: it is ignored, not migrated.
            _log.warning("transport.foreign_registry_key", key=key, revision=revision)
            return
        if revision < self._revisions.get(name, 0):
            return  # older than what this node already applied (its own claim, say)
        if operation is not None or not value:  # DEL or PURGE
            self._revisions[name] = revision
            if self._mirror.pop(name, None) is not None:
                self.version += 1
            return
        entry = _decode(value)
        if entry is None:
            _log.warning("transport.bad_registry_entry", name=name, revision=revision)
            return
        self._set(name, entry, revision)

    def _set(self, name: str, entry: NameEntry, revision: int) -> None:
        self._revisions[name] = revision
        self._mirror[name] = entry
        self.version += 1
        for waiter in self._waiters.pop(name, ()):
            if not waiter.done():
                waiter.set_result(None)


def cluster_replicas(server_info: dict[str, object]) -> int:
    """Replicas for the buckets: the servers the cluster advertises (``connect_urls``), at most 3.

    One server alone cannot hold more than one copy; three copies survive the loss of any one
    server (JetStream needs a majority of a stream's replicas to accept writes).
    """
    urls = server_info.get("connect_urls")
    count = len(urls) if isinstance(urls, list) else 0
    return max(1, min(3, count))


async def watch_bucket(
    js: JetStreamContext, bucket: str, apply: Callable[[str, bytes, str | None, int], None]
) -> JetStreamContext.PushSubscription:
    """Apply every entry of ``bucket``, then every change; return once the present ones are.

    ``apply(key, value, operation, revision)`` is called for each; ``operation`` is ``None``
    for a value, else why the key went (delete, purge, or a marker the server left when a TTL
    expired). This is what nats-py's ``KeyValue.watchall`` does (an ordered push consumer
    delivering the last entry of each key, then new ones), with a short idle heartbeat: the
    consumer is held by one server, and when that server dies nats-py recreates it only after
    two heartbeats went missing.
    """
    from nats.js.api import DeliverPolicy

    loaded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    prefix = f"$KV.{bucket}."

    async def on_update(msg: Msg) -> None:
        # A bad entry (or a message forged into the watch's inbox) costs only itself: it is
        # logged, and the watch still reports the bucket loaded when its last entry came.
        try:
            meta = msg.metadata
        except Exception as exc:  # no JetStream reply subject: not from the watch's consumer
            _log.warning("transport.bad_watch_message", bucket=bucket, error=repr(exc))
            return
        try:
            headers = msg.headers or {}
            operation = headers.get("KV-Operation") or headers.get("Nats-Marker-Reason")
            apply(msg.subject[len(prefix) :], msg.data, operation, meta.sequence.stream)
        except Exception as exc:
            _log.warning(
                "transport.bad_watch_entry", bucket=bucket, subject=msg.subject, error=repr(exc)
            )
        if meta.num_pending == 0 and not loaded.done():
            loaded.set_result(None)  # the entries as they were when the watch began

    sub = await js.subscribe(
        f"{prefix}>",
        stream=f"KV_{bucket}",
        cb=on_update,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
        idle_heartbeat=WATCH_HEARTBEAT,
        inactive_threshold=WATCH_INACTIVE,
    )
    info = await sub.consumer_info()
    delivered = info.delivered.consumer_seq if info.delivered is not None else 0
    if not info.num_pending and not delivered and not loaded.done():
        loaded.set_result(None)  # an empty bucket: nothing will be delivered
    await loaded
    return sub


async def _settled(call: Callable[[], Awaitable[T]]) -> T:
    """``call()``, retried while JetStream has nobody answering for the bucket yet.

    Right after a bucket is created in a cluster, the servers a client is not attached to
    may not know its subjects for a moment: requests then get "no responders". Retried for
    up to about ``_SETTLE_SECONDS``, then the error is raised.
    """
    from nats.errors import NoRespondersError
    from nats.js.errors import NoStreamResponseError

    delay, waited = 0.02, 0.0
    while True:
        try:
            return await call()
        except (NoRespondersError, NoStreamResponseError):
            if waited >= _SETTLE_SECONDS:
                raise
        await asyncio.sleep(delay)
        waited += delay
        delay = min(delay * 2, 0.5)


settled = _settled


def _decode(value: bytes | None) -> NameEntry | None:
    try:
        return _DECODER.decode(value or b"")
    except msgspec.DecodeError:
        return None


def _key_not_found() -> type[Exception]:
    from nats.js.errors import KeyNotFoundError

    return KeyNotFoundError
