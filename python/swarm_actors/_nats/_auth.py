"""Who may connect to the cluster's NATS, and what each node may publish and subscribe to.

The secure-cluster mode gives every node an nkey of its own (a user of the server, known by its
public key ``U...``; the node signs the server's nonce with the private seed, which never
travels) and subject permissions that keep each node to its own traffic:

* subscribe: only ``swarm.node.<id>`` (its frames), ``swarm.node.<id>.live`` (liveness probes),
  ``swarm.reply.<id>.>`` (the answers to its asks) and ``_INBOX.<id>.>`` (its nats-py inbox:
  JetStream API answers, key-value watches, probe answers). No node reads another's asks.
  Topics are broadcast by nature: every node may subscribe and publish to ``swarm.topic.>``
  and subscribe to the events (``swarm.events.>``, which it could read through the JetStream
  API anyway), to watch them live.
* publish: frames and probes to any node (``swarm.node.*``, ``swarm.node.*.live``); topics
  (``swarm.topic.>``); answers
  only on ``swarm.reply.*.*.<id>`` (a subject that names the answering node: the asker accepts
  an answer only from the node it asked, see ``_inbox``); its own dead letters; the events
  stream and the registry's key-value buckets; the JetStream API (every node creates and reads
  the shared buckets and streams); acknowledgements and flow control of its consumers. Answers
  to a request on any other subject (a probe's inbox) are allowed once, for a minute, by
  ``allow_responses``: a node cannot publish into another node's inbox unless asked to.

The value objects here (:class:`Permissions`, :class:`NkeyUser`) are what ``NatsServer`` and
``NatsCluster`` take, and what ``swarm-actors cluster init`` writes out as a ``nats-server``
include file (:func:`render_accounts`). Nothing here imports nats-py; generating keys needs the
``nkeys`` package (``pip install swarm-actors[nkeys]``).
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from swarm_actors._core._topics import TOPIC_PREFIX
from swarm_actors._exceptions import InvalidArgumentError

__all__ = [
    "ALL_EVENTS_SUBJECTS",
    "SWARM_BUCKETS",
    "TOPIC_SUBJECTS",
    "ClusterCredentials",
    "NkeyUser",
    "Permissions",
    "ResponsePermission",
    "inbox_prefix",
    "new_user_seed",
    "node_permissions",
    "public_key",
    "render_accounts",
    "render_authorization",
    "reply_prefix",
    "write_cluster_credentials",
    "write_secret",
]

SWARM_BUCKETS = ("swarm_names", "swarm_nodes", "swarm_shards", "swarm_state")
"""The key-value buckets every node reads and writes (names, heartbeats, shard leases, state)."""
ALL_EVENTS_SUBJECTS = "swarm.events.>"
"""The subjects of the default journal (``SWARM_EVENTS``)."""
TOPIC_SUBJECTS = f"{TOPIC_PREFIX}.>"
"""The subjects of topics (``ActorSystem.publish``, ``Actor.subscribe``)."""

_NODE = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")
_SUBJECT = re.compile(r"\A[^\s.]+(\.[^\s.]+)*\Z")


def _check_node(node: str) -> str:
    if not isinstance(node, str) or not _NODE.match(node):
        raise InvalidArgumentError(f"node must be 1-64 letters, digits, _ or -, got {node!r}")
    return node


def reply_prefix(node: str) -> str:
    """A fresh reply prefix for ``node``'s asks: ``swarm.reply.<node>.<random>``.

    Answers to an ask sent to node ``d`` come back on ``<prefix>.<d>``. The random token (64
    bits from ``secrets``) is new for every connection of the node: without permissions it is
    what keeps other clients from subscribing to a node's answers without listening to
    everything (``>``); with them, only ``node`` may subscribe under ``swarm.reply.<node>``.
    """
    return f"swarm.reply.{_check_node(node)}.{secrets.token_hex(8)}"


def inbox_prefix(node: str) -> str:
    """A fresh nats-py inbox prefix for ``node``: ``_INBOX.<node>.<random>``.

    Its JetStream API answers, key-value watches and probe answers arrive under it; node
    permissions let only ``node`` subscribe to ``_INBOX.<node>.>``.
    """
    return f"_INBOX.{_check_node(node)}.{secrets.token_hex(8)}"


def _subjects(values: Iterable[str], what: str) -> tuple[str, ...]:
    if isinstance(values, str):
        values = (values,)
    result = tuple(values)
    for subject in result:
        if not isinstance(subject, str) or not _SUBJECT.match(subject):
            raise InvalidArgumentError(f"{what}: {subject!r} is not a NATS subject")
    return result


def _quote(value: str) -> str:
    # A double-quoted nats-server configuration string (JSON escapes are understood).
    return json.dumps(value, ensure_ascii=False)


def _seconds(value: float) -> str:
    return f"{value:g}s" if value < 60 or value % 60 else f"{value // 60:g}m"


@dataclass(frozen=True, kw_only=True, slots=True)
class ResponsePermission:
    """``allow_responses``: publishing to the reply subject of a request the user received.

    ``max_msgs`` answers per request (at least 1), within ``expires`` seconds of receiving it
    (``None``: no time limit; the server then keeps unanswered requests in memory).
    """

    max_msgs: int = 1
    expires: float | None = 60.0

    def __post_init__(self) -> None:
        if type(self.max_msgs) is not int or self.max_msgs < 1:
            raise InvalidArgumentError(f"max_msgs must be an int >= 1, got {self.max_msgs!r}")
        expires = self.expires
        if expires is not None and (
            isinstance(expires, bool) or not isinstance(expires, (int, float)) or not expires > 0
        ):
            raise InvalidArgumentError(f"expires must be > 0 seconds or None, got {expires!r}")

    def render(self) -> str:
        """The ``allow_responses`` value in nats-server's configuration syntax."""
        parts = [f"max: {self.max_msgs}"]
        if self.expires is not None:
            parts.append(f"expires: {_quote(_seconds(self.expires))}")
        return "{ " + ", ".join(parts) + " }"


@dataclass(frozen=True, kw_only=True, slots=True)
class Permissions:
    """Subject permissions of one user: allow lists, deny lists and ``allow_responses``.

    ``publish`` / ``subscribe``: the subjects (wildcards ``*`` and ``>`` allowed) the user may
    publish to / subscribe to; anything else is refused by the server (the client gets a
    "Permissions Violation" error, the connection stays up). ``publish_deny`` /
    ``subscribe_deny`` take subjects out of what is allowed. ``allow_responses``: answering
    requests on their reply subjects even where ``publish`` does not allow it.
    """

    publish: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()
    publish_deny: tuple[str, ...] = ()
    subscribe_deny: tuple[str, ...] = ()
    allow_responses: ResponsePermission | None = None

    def __post_init__(self) -> None:
        for name in ("publish", "subscribe", "publish_deny", "subscribe_deny"):
            object.__setattr__(self, name, _subjects(getattr(self, name), name))
        if self.allow_responses is not None and not isinstance(
            self.allow_responses, ResponsePermission
        ):
            raise InvalidArgumentError("allow_responses must be a ResponsePermission or None")

    def extended(
        self, *, publish: Iterable[str] = (), subscribe: Iterable[str] = ()
    ) -> Permissions:
        """These permissions with more subjects allowed (e.g. a journal of your own)."""
        return Permissions(
            publish=(*self.publish, *_subjects(publish, "publish")),
            subscribe=(*self.subscribe, *_subjects(subscribe, "subscribe")),
            publish_deny=self.publish_deny,
            subscribe_deny=self.subscribe_deny,
            allow_responses=self.allow_responses,
        )

    def render(self) -> str:
        """The ``permissions`` value in nats-server's configuration syntax."""

        def block(allow: tuple[str, ...], deny: tuple[str, ...]) -> str:
            parts = [f"allow: [{', '.join(_quote(s) for s in allow)}]"]
            if deny:
                parts.append(f"deny: [{', '.join(_quote(s) for s in deny)}]")
            return "{ " + ", ".join(parts) + " }"

        lines = [
            f"publish: {block(self.publish, self.publish_deny)}",
            f"subscribe: {block(self.subscribe, self.subscribe_deny)}",
        ]
        if self.allow_responses is not None:
            lines.append(f"allow_responses: {self.allow_responses.render()}")
        return "{ " + ", ".join(lines) + " }"


def node_permissions(
    node: str, *, events: str = ALL_EVENTS_SUBJECTS, buckets: Sequence[str] = SWARM_BUCKETS
) -> Permissions:
    """The permissions of cluster node ``node`` (see the module docstring).

    ``events``: the subjects of the journal's stream (published, and subscribed to for the
    ``events.`` topics); ``buckets``: the key-value buckets.
    """
    _check_node(node)
    return Permissions(
        publish=(
            "swarm.node.*",
            "swarm.node.*.live",
            f"swarm.reply.*.*.{node}",
            f"swarm.deadletter.{node}",
            events,
            TOPIC_SUBJECTS,
            *(f"$KV.{bucket}.>" for bucket in buckets),
            "$JS.API.>",
            "$JS.ACK.>",
            "$JS.FC.>",
        ),
        subscribe=(
            f"swarm.node.{node}",
            f"swarm.node.{node}.live",
            f"swarm.reply.{node}.>",
            f"_INBOX.{node}.>",
            TOPIC_SUBJECTS,
            events,
        ),
        allow_responses=ResponsePermission(max_msgs=1, expires=60.0),
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class NkeyUser:
    """A user of the server known by its public nkey (``U...``), with its permissions.

    ``permissions=None``: the user may publish and subscribe to anything (the embedded
    server's only user, an administrator). ``name``: a label written as a comment next to it.
    """

    nkey: str
    permissions: Permissions | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.nkey, str) or not re.match(r"^U[A-Z2-7]{55}$", self.nkey):
            raise InvalidArgumentError(f"nkey must be a public user nkey (U...), got {self.nkey!r}")
        if self.permissions is not None and not isinstance(self.permissions, Permissions):
            raise InvalidArgumentError("permissions must be Permissions or None")

    def render(self) -> str:
        """The user as an entry of a ``users`` list in nats-server's configuration syntax."""
        parts = [f"nkey: {_quote(self.nkey)}"]
        if self.permissions is not None:
            parts.append(f"permissions: {self.permissions.render()}")
        entry = "{ " + ", ".join(parts) + " }"
        if self.name is not None:
            label = "".join(c if c.isprintable() else "?" for c in self.name)
            entry = f"# {label}\n{entry}"
        return entry


def render_authorization(users: Sequence[NkeyUser]) -> str:
    """An ``authorization`` block admitting ``users`` (in the server's global account)."""
    entries = "\n".join(_indent(user.render(), 4) for user in users)
    return f"authorization {{\n  users: [\n{entries}\n  ]\n}}\n"


def render_accounts(users: Sequence[NkeyUser], *, account: str = "SWARM") -> str:
    """An ``accounts`` block: ``users`` in account ``account``, with JetStream enabled.

    An account of its own keeps the swarm's subjects and streams apart from anything else the
    server carries: users of other accounts see none of it.
    """
    if not re.match(r"^[A-Za-z0-9_-]{1,64}$", account):
        raise InvalidArgumentError(f"account must be 1-64 letters, digits, _ or -, got {account!r}")
    entries = "\n".join(_indent(user.render(), 6) for user in users)
    return (
        f"accounts {{\n  {account}: {{\n    jetstream: enabled\n    users: [\n{entries}\n"
        "    ]\n  }\n}\n"
    )


def _indent(text: str, spaces: int) -> str:
    pad = " " * spaces
    return "\n".join(pad + line for line in text.splitlines())


def new_user_seed() -> bytes:
    """A new random nkey user seed (``SU...``; needs the ``nkeys`` package)."""
    try:
        import nkeys
    except ImportError:
        raise InvalidArgumentError(
            "generating credentials needs the nkeys package: "
            "pip install swarm-actors[nkeys] (or pip install nkeys)"
        ) from None
    seed: bytes = nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_USER)
    return seed


def public_key(seed: bytes) -> str:
    """The public user nkey (``U...``) of ``seed``."""
    import nkeys

    pair = nkeys.from_seed(bytearray(seed))
    try:
        key: bytes = pair.public_key
        return key.decode()
    finally:
        pair.wipe()


def write_secret(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to a new file only its owner can read (mode 0600); refuse to overwrite."""
    target = Path(path)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    return target


@dataclass(frozen=True, kw_only=True, slots=True)
class ClusterCredentials:
    """What :func:`write_cluster_credentials` (``swarm-actors cluster init``) wrote.

    ``include_file``: the ``accounts`` block to ``include`` in each server's configuration;
    ``server_config``: a minimal server configuration that includes it; ``seed_files``: each
    node's nkey seed (mode 0600), to be copied to that node's host only and given to it as
    ``NatsOptions(nkeys_seed_file=...)``; ``users``: the server's users as value objects
    (``NatsServer(nkey_users=..., account=...)`` runs the same configuration); ``admin``: the
    seed of an unrestricted user, if one was asked for.
    """

    directory: Path
    account: str
    include_file: Path
    server_config: Path
    seed_files: dict[str, Path]
    users: tuple[NkeyUser, ...]
    admin: Path | None = None

    def seed_file(self, node: str) -> Path:
        """The seed file of ``node``."""
        try:
            return self.seed_files[node]
        except KeyError:
            raise InvalidArgumentError(f"no credentials for node {node!r}") from None


INCLUDE_FILE = "auth.conf"
SERVER_CONFIG = "nats-server.conf"

_SERVER_CONFIG = """\
# Written by `swarm-actors cluster init`: a starting point for one server of the cluster.
# Before exposing it beyond one host, add TLS (a `tls {{ cert_file, key_file }}` block, and
# `tls://` URLs on the nodes) and, for several servers, a `cluster {{ ... }}` block whose
# routes are authenticated too. Keep the monitoring port (`http`) off public interfaces.
listen: "0.0.0.0:{port}"
jetstream {{
  # Relative to the directory nats-server runs in.
  store_dir: "jetstream"
}}
include "{include}"
"""


def write_cluster_credentials(
    nodes: Sequence[str],
    directory: str | os.PathLike[str],
    *,
    account: str = "SWARM",
    admin: bool = False,
    port: int = 4222,
    force: bool = False,
) -> ClusterCredentials:
    """Make an nkey for each of ``nodes`` and write the server's configuration beside them.

    Writes, in ``directory`` (created with mode 0700 if missing): ``<node>.nk`` per node (its
    seed, mode 0600), ``admin.nk`` with ``admin``, the include file ``auth.conf`` (an account
    holding every node's public key and :func:`node_permissions`) and ``nats-server.conf``.
    Refuses to overwrite any of them unless ``force``. Needs the ``nkeys`` package.
    """
    names = list(nodes)
    if not names:
        raise InvalidArgumentError("give at least one node")
    for node in names:
        _check_node(node)
    if len(set(names)) != len(names):
        raise InvalidArgumentError(f"node names repeat: {names}")
    if "admin" in names and admin:
        raise InvalidArgumentError("a node named 'admin' clashes with the admin credentials")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise InvalidArgumentError(f"port must be a TCP port (1-65535), got {port!r}")
    render_accounts([], account=account)  # checks the account name
    root = Path(directory)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    targets = [root / f"{n}.nk" for n in names] + [root / INCLUDE_FILE, root / SERVER_CONFIG]
    if admin:
        targets.append(root / "admin.nk")
    existing = [str(t) for t in targets if t.exists()]
    if existing and not force:
        raise InvalidArgumentError(f"refusing to overwrite {', '.join(existing)} (use force)")
    for target in targets:
        target.unlink(missing_ok=True)
    users: list[NkeyUser] = []
    seed_files: dict[str, Path] = {}
    for node in names:
        seed = new_user_seed()
        seed_files[node] = write_secret(root / f"{node}.nk", seed + b"\n")
        users.append(
            NkeyUser(nkey=public_key(seed), permissions=node_permissions(node), name=f"node {node}")
        )
    admin_file = None
    if admin:
        seed = new_user_seed()
        admin_file = write_secret(root / "admin.nk", seed + b"\n")
        users.append(NkeyUser(nkey=public_key(seed), name="admin (unrestricted)"))
    include = root / INCLUDE_FILE
    include.write_text(
        "# Written by `swarm-actors cluster init`: the swarm's account and its users.\n"
        + render_accounts(users, account=account)
    )
    server_config = root / SERVER_CONFIG
    server_config.write_text(_SERVER_CONFIG.format(port=port, include=INCLUDE_FILE))
    return ClusterCredentials(
        directory=root,
        account=account,
        include_file=include,
        server_config=server_config,
        seed_files=seed_files,
        users=tuple(users),
        admin=admin_file,
    )
