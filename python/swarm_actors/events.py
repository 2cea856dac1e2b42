"""The swarm's events and their journal: the public face of ``_events``, ``_chain``, ``_journal``.

Every decision ("why"), state change ("what"), lifecycle or health signal, model call
(``ModelCall``) and tool run (``ToolRun``) is a typed
``SwarmEvent``, the msgspec mirror of ``proto/swarm/events/v1/events.proto`` (the schema of
record). Events travel as msgspec msgpack on ``swarm.events.<agent_role>.<kind>`` and are
stored in a ``Journal``: ``MemoryJournal`` in process, ``JetStreamJournal`` (a JetStream stream,
with ``DurableConsumer`` for at-least-once processing) across processes.
An agent's state changes form a hash chain that ``verify_chain`` checks and ``replay_state``
folds to show the agent's state at any earlier point. Large contents (prompts, responses, tool
output) are stored once in a content-addressed ``BlobStore`` and referenced from events by
their SHA-256 digest. Errors are the ``EventError`` family of ``swarm_actors``.
"""

from types import FunctionType as _Function

from swarm_actors._events._blobs import BlobStore, blob_digest
from swarm_actors._events._chain import ReplayedState, replay_journal, replay_state, verify_chain
from swarm_actors._events._journal import (
    ALL_EVENTS,
    Journal,
    JournalEntry,
    MemoryJournal,
    subject_matches,
)
from swarm_actors._events._schema import (
    KINDS,
    SCHEMA_VERSION,
    SUBJECT_PREFIX,
    AgentDecision,
    ChangeForm,
    HealthStatus,
    ModelCall,
    Payload,
    SignalKind,
    StateChange,
    SwarmEvent,
    SystemSignal,
    ToolRun,
    check_role,
    decode_event,
    encode_event,
    from_proto_dict,
    new_event,
    new_event_id,
    now_ns,
    state_hash,
    subject_for,
    to_proto_dict,
)
from swarm_actors._nats._durable import Delivery, DurableConsumer
from swarm_actors._nats._jetstream import JetStreamJournal
from swarm_actors._public import publish as _publish

__all__ = [
    "ALL_EVENTS",
    "KINDS",
    "SCHEMA_VERSION",
    "SUBJECT_PREFIX",
    "AgentDecision",
    "BlobStore",
    "ChangeForm",
    "Delivery",
    "DurableConsumer",
    "HealthStatus",
    "JetStreamJournal",
    "Journal",
    "JournalEntry",
    "MemoryJournal",
    "ModelCall",
    "Payload",
    "ReplayedState",
    "SignalKind",
    "StateChange",
    "SwarmEvent",
    "SystemSignal",
    "ToolRun",
    "blob_digest",
    "check_role",
    "decode_event",
    "encode_event",
    "from_proto_dict",
    "new_event",
    "new_event_id",
    "now_ns",
    "replay_journal",
    "replay_state",
    "state_hash",
    "subject_for",
    "subject_matches",
    "to_proto_dict",
    "verify_chain",
]

# Not the constants, nor the ``Payload`` union: they have no module of their own.
_publish(__name__, *(o for o in map(globals().get, __all__) if isinstance(o, (type, _Function))))
