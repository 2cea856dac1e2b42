"""The event model: typed swarm events, their codec, hash chains and the journal API.

Owns: the msgspec mirror of ``proto/swarm/events/v1/events.proto`` (``_schema``, driven by
``_protomap``), state-change hash chains (``_chain``), and the ``Journal`` contract with the
in-process ``MemoryJournal`` (``_journal``), and the content-addressed ``BlobStore`` that
holds large contents events refer to (``_blobs``).

May import: the standard library, msgspec, ``_exceptions`` and ``_log``. Nothing else from the
package: the engine and the NATS layer both build on it. Its public face is
``swarm_actors.events``, which adds the JetStream journal from the NATS layer.
"""
