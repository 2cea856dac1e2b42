"""``Cluster``: how an ``ActorSystem`` takes part in a cluster, as one value object.

``ActorSystem(nats=...)`` says where NATS is; ``cluster=Cluster(...)`` says who this node is
and how the cluster's virtual actors are placed. Kept apart from ``_config`` because it names
``Placement``, and the engine (which imports ``_config``) imports no NATS code.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from swarm_actors._exceptions import InvalidArgumentError
from swarm_actors._nats._placement import Placement

__all__ = ["DEFAULT_NODE_TTL", "Cluster"]

DEFAULT_NODE_TTL = 10.0
"""Seconds without a heartbeat after which a node counts as dead (its names can be taken)."""

_NODE = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")


@dataclass(frozen=True, kw_only=True, slots=True)
class Cluster:
    """How an ``ActorSystem`` takes part in a cluster; needs ``ActorSystem(nats=...)``.

    ``node``: this node's id, 1-64 letters, digits, ``_`` or ``-``, unique among live nodes
    (``None``: generated when the system connects).

    ``node_ttl``: seconds without a heartbeat after which a node counts as dead: its actor
    names can be taken over and its shards' leases expire (at least 1).

    ``replicas``: how many copies a NATS cluster keeps of the registry's key-value buckets
    (and of the default journal's stream) when this node creates them, 1-5 (``None``: one per
    server the cluster advertises, at most 3, so that losing a server loses nothing).

    ``placement``: how the cluster's virtual actors (``ActorSystem.placed``) are spread over
    shards; every node of a cluster must use the same one.

    ``data_dir``: where an embedded server (``nats="embedded"``) keeps its data, one running
    server per directory (``None``: a temporary directory of its own, removed when it stops).
    """

    node: str | None = None
    node_ttl: float = DEFAULT_NODE_TTL
    replicas: int | None = None
    placement: Placement = field(default_factory=Placement)
    data_dir: str | os.PathLike[str] | None = None

    def __post_init__(self) -> None:
        node = self.node
        if node is not None and not (isinstance(node, str) and _NODE.match(node)):
            raise InvalidArgumentError(f"node must be 1-64 letters, digits, _ or -, got {node!r}")
        ttl = self.node_ttl
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl >= 1:
            raise InvalidArgumentError(f"node_ttl must be >= 1 second, got {ttl!r}")
        replicas = self.replicas
        if replicas is not None and not (
            type(replicas) is int and 1 <= replicas <= 5  # bool is not a replica count
        ):
            raise InvalidArgumentError(f"replicas must be 1-5 or None, got {replicas!r}")
        if not isinstance(self.placement, Placement):
            raise InvalidArgumentError(f"placement must be a Placement, got {self.placement!r}")
        if self.data_dir is not None and not isinstance(self.data_dir, (str, os.PathLike)):
            raise InvalidArgumentError(f"data_dir must be a path, got {self.data_dir!r}")
