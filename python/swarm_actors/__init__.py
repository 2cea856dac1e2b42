"""swarm-actors: an asyncio actor framework for agent swarms, with a Rust core.

The public API is what ``__all__`` lists; everything else lives in private modules.
"""

from swarm_actors._exceptions import (
    AgentError,
    AgentStateError,
    ArityError,
    CapabilityError,
    CoordinateError,
    CorruptStateError,
    FieldTypeError,
    InvalidArgumentError,
    SpaceError,
    SwarmError,
    UnknownAgentError,
)
from swarm_actors._space import TupleSpace
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

__all__ = [
    "ANY",
    "AgentError",
    "AgentInfo",
    "AgentStateError",
    "AgentTree",
    "AnyType",
    "ArityError",
    "BatchInfo",
    "Capability",
    "CapabilityError",
    "CoordinateError",
    "CorruptStateError",
    "FieldTypeError",
    "InvalidArgumentError",
    "SpaceError",
    "SpaceStats",
    "SwarmError",
    "TreeStats",
    "TupleSpace",
    "UnknownAgentError",
    "hilbert_decode",
    "hilbert_decode_batch",
    "hilbert_encode",
    "hilbert_encode_batch",
]
