"""swarm-actors: an asyncio actor framework for agent swarms, with a Rust core.

The public API is what ``__all__`` lists, plus the public submodules ``swarm_actors.events``
(events, hash chains, the journal) and ``swarm_actors.testing``; everything else lives in
private modules.
"""

from swarm_actors._actor import Actor, SpaceGrant, handler
from swarm_actors._capability import MessageGrant
from swarm_actors._cluster import PlacedRef, PlacementStats
from swarm_actors._exceptions import (
    ActorDeadError,
    ActorError,
    ActorNameError,
    AgentError,
    AgentStateError,
    ArityError,
    AuthenticationError,
    CapabilityError,
    ChainBrokenError,
    ConnectError,
    CoordinateError,
    CorruptStateError,
    EscalatedError,
    EventDecodeError,
    EventError,
    FieldTypeError,
    InvalidArgumentError,
    JournalClosedError,
    JournalFullError,
    JournalTimeoutError,
    JournalWriteError,
    MailboxFullError,
    MessageCapabilityError,
    MessageTooLargeError,
    NatsServerError,
    RemoteError,
    ReplayError,
    SchemaVersionError,
    SpaceError,
    SubjectError,
    SwarmError,
    TransportError,
    UnhandledMessageError,
    UnknownAgentError,
    WireFormatError,
)
from swarm_actors._nats_conn import NatsOptions
from swarm_actors._placement import Placement
from swarm_actors._ref import ActorRef, MailboxStats
from swarm_actors._remote import RemoteRef
from swarm_actors._space import TupleSpace
from swarm_actors._supervision import AllForOne, Backoff, Directive, OneForOne
from swarm_actors._system import ActorSystem
from swarm_actors._timers import Timers
from swarm_actors._tuplecore import (
    ANY,
    AgentInfo,
    AgentTree,
    AnyType,
    BatchInfo,
    Capability,
    SpaceStats,
    TreeStats,
    hilbert_decode,
    hilbert_decode_batch,
    hilbert_encode,
    hilbert_encode_batch,
)
from swarm_actors._tuplecore import __version__ as __version__
from swarm_actors._virtual import VirtualBatch, VirtualRef, VirtualStats
from swarm_actors._wire import register_message_type

__all__ = [
    "ANY",
    "Actor",
    "ActorDeadError",
    "ActorError",
    "ActorNameError",
    "ActorRef",
    "ActorSystem",
    "AgentError",
    "AgentInfo",
    "AgentStateError",
    "AgentTree",
    "AllForOne",
    "AnyType",
    "ArityError",
    "AuthenticationError",
    "Backoff",
    "BatchInfo",
    "Capability",
    "CapabilityError",
    "ChainBrokenError",
    "ConnectError",
    "CoordinateError",
    "CorruptStateError",
    "Directive",
    "EscalatedError",
    "EventDecodeError",
    "EventError",
    "FieldTypeError",
    "InvalidArgumentError",
    "JournalClosedError",
    "JournalFullError",
    "JournalTimeoutError",
    "JournalWriteError",
    "MailboxFullError",
    "MailboxStats",
    "MessageCapabilityError",
    "MessageGrant",
    "MessageTooLargeError",
    "NatsOptions",
    "NatsServerError",
    "OneForOne",
    "PlacedRef",
    "Placement",
    "PlacementStats",
    "RemoteError",
    "RemoteRef",
    "ReplayError",
    "SchemaVersionError",
    "SpaceError",
    "SpaceGrant",
    "SpaceStats",
    "SubjectError",
    "SwarmError",
    "Timers",
    "TransportError",
    "TreeStats",
    "TupleSpace",
    "UnhandledMessageError",
    "UnknownAgentError",
    "VirtualBatch",
    "VirtualRef",
    "VirtualStats",
    "WireFormatError",
    "handler",
    "hilbert_decode",
    "hilbert_decode_batch",
    "hilbert_encode",
    "hilbert_encode_batch",
    "register_message_type",
]
