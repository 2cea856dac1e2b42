"""The actor engine: everything that runs actors inside one process.

Owns: ``Actor`` and ``@handler`` (``_actor``), the ``Cell`` state machine and the dispatcher
(``_cell``), local refs (``_ref``), supervision, timers, virtual-actor activation
(``_virtual``), message capabilities, the message-type registry (``_messages``), topic
subscriptions and their local fan-out (``_topics``), tracing hooks (``_telemetry``), the
recording of actors' events (``_recorder``) and clocks.

May import: the standard library, msgspec, opentelemetry-api (lazily), ``swarm_actors._events``,
``_exceptions``, ``_config``, ``_log`` and the Rust core. Never nats-py, the wire format or
anything under ``swarm_actors._nats``: the NATS layer plugs into the engine through the
interfaces the engine defines, and ``swarm_actors._system`` (the composition root, above both
layers) wires them together. Type-only imports of ``_system`` are allowed for annotations.
"""
