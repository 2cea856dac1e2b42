"""The NATS layer: what makes an ``ActorSystem`` a node of a cluster.

Owns: the connection (``_conn``), the embedded ``nats-server`` (``_server``, ``_guard``), the wire
format (``_wire``), the transport and its outbox (``_transport``, ``_outbox``), refs to remote
actors (``_remote``), the name registry (``_registry``), placement of virtual actors and shard
leases (``_placement``, ``_shards``), the cluster state (``_cluster``), a node's settings
(``_options``: ``Cluster``), and the JetStream journal with its durable consumers
(``_jetstream``, ``_durable``).

May import: nats-py (its private internals only through one compat module),
msgspec, ``swarm_actors._core`` (the engine it plugs into), ``swarm_actors._events``,
``_exceptions``, ``_config``, ``_log`` and the Rust core. Nothing imports this layer except
``swarm_actors._system``, the public facades (``swarm_actors.cluster``, ``swarm_actors.events``)
and ``swarm_actors.testing``.
"""
