"""The NATS layer: what makes an ``ActorSystem`` a node of a cluster.

Owns: the connection (``_conn``), the embedded ``nats-server`` (``_server``, ``_guard``), the
wire format (``_wire``), the node (``_transport``: connection, subscriptions, liveness) with its
outbox and inbox (``_outbox``, ``_inbox``), the nats-py internals it relies on (``_compat``),
refs to remote actors (``_remote``), topics across nodes (``_topics``), the name registry
(``_registry``), placement of virtual actors and shard leases (``_placement``, ``_shards``),
the cluster state (``_cluster.ClusterState``), a node's settings (``_options.Cluster``),
credentials and subject permissions for the secure mode (``_auth``), and the JetStream journal
with its durable consumers and its publishing (``_jetstream``, ``_durable``, ``_batch``).

May import: nats-py (its private internals only through ``_compat``, which lists them),
msgspec, ``swarm_actors._core`` (the engine it plugs into), ``swarm_actors._events``,
``_exceptions``, ``_config``, ``_log`` and the Rust core. Nothing imports this layer except
``swarm_actors._system``, the public facades (``swarm_actors.cluster``, ``swarm_actors.events``)
and ``swarm_actors.testing``.
"""
