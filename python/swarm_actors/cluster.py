"""Actor systems across processes and hosts, over NATS.

``ActorSystem(nats=...)`` makes a system a *node*: ``nats`` is ``"embedded"``, server URLs,
or ``NatsOptions`` (credentials, TLS, reconnects); ``cluster=Cluster(...)`` sets the node's
id, its liveness TTL, the registry's replicas, the ``Placement`` of virtual actors and an
embedded server's data directory. Named actors of other nodes are reached through
``RemoteRef``; the cluster's virtual actors (``ActorSystem.placed``) through ``PlacedRef``,
with ``PlacementStats`` counting this node's shards and messages. Errors are the
``TransportError`` family of ``swarm_actors.errors`` (and ``NoSuchActorError``).
``swarm_actors.testing`` starts real ``nats-server`` processes for tests.

A secure cluster gives each node an nkey and subject permissions (``node_permissions``) that
keep it to its own traffic: ``write_cluster_credentials`` (``swarm-actors cluster init``)
writes them and the server configuration; ``NkeyUser``, ``Permissions`` and
``ResponsePermission`` are the server's users as value objects, which ``NatsServer`` and
``NatsCluster`` (``swarm_actors.testing``) take.
"""

from swarm_actors._nats._auth import (
    ClusterCredentials,
    NkeyUser,
    Permissions,
    ResponsePermission,
    node_permissions,
    write_cluster_credentials,
)
from swarm_actors._nats._cluster import PlacedRef, PlacementStats
from swarm_actors._nats._conn import NatsOptions
from swarm_actors._nats._options import Cluster
from swarm_actors._nats._placement import Placement
from swarm_actors._nats._remote import RemoteRef
from swarm_actors._public import publish as _publish

__all__ = [
    "Cluster",
    "ClusterCredentials",
    "NatsOptions",
    "NkeyUser",
    "Permissions",
    "PlacedRef",
    "Placement",
    "PlacementStats",
    "RemoteRef",
    "ResponsePermission",
    "node_permissions",
    "write_cluster_credentials",
]

_publish(
    __name__,
    Cluster,
    ClusterCredentials,
    NatsOptions,
    NkeyUser,
    Permissions,
    PlacedRef,
    Placement,
    PlacementStats,
    RemoteRef,
    ResponsePermission,
    node_permissions,
    write_cluster_credentials,
)
