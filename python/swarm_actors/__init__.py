"""swarm-actors: an asyncio actor framework for agent swarms, with a Rust core.

The top level is the actor API: ``Actor`` and ``@handler``, ``ActorSystem`` and its
configuration objects, the refs users hold (and ``Ref``, the protocol every kind implements),
supervision, death watch (``Terminated``), timers, capabilities and the errors that API
raises. Specialised parts are public submodules, imported with the package:

* ``swarm_actors.space``: the tuple space (``TupleSpace``, ``ANY``, ``Capability``...).
* ``swarm_actors.hilbert``: n-dimensional Hilbert mapping.
* ``swarm_actors.tree``: the agent hierarchy (``AgentTree``...).
* ``swarm_actors.cluster``: systems across processes over NATS (``Cluster``, ``NatsOptions``,
  ``Placement``, ``PlacedRef``, ``RemoteRef``...).
* ``swarm_actors.events``: events, hash chains, journals.
* ``swarm_actors.tools``: the swarm's effectors: a confined ``Workspace``, ``GitRun``, ``Checks``.
* ``swarm_actors.errors``: every exception, as one tree under ``SwarmError``.
* ``swarm_actors.testing`` (imported on demand): clocks, probes, NATS servers for tests.

Everything else lives in private modules.
"""

from swarm_actors import cluster as cluster
from swarm_actors import errors as errors
from swarm_actors import events as events
from swarm_actors import hilbert as hilbert
from swarm_actors import space as space
from swarm_actors import tools as tools
from swarm_actors import tree as tree
from swarm_actors._config import Passivation, Signals, Timeouts, Tracing
from swarm_actors._core._actor import Actor, SpaceGrant, handler
from swarm_actors._core._capability import MessageGrant
from swarm_actors._core._contract import Ref
from swarm_actors._core._messages import register_message_type
from swarm_actors._core._pool import PoolRef
from swarm_actors._core._ref import ActorRef, MailboxStats
from swarm_actors._core._supervision import AllForOne, Backoff, Directive, OneForOne
from swarm_actors._core._timers import Timers
from swarm_actors._core._topics import TopicStats
from swarm_actors._core._virtual import VirtualBatch, VirtualRef, VirtualStats
from swarm_actors._core._watch import Terminated
from swarm_actors._public import publish as _publish
from swarm_actors._system import ActorSystem
from swarm_actors._tuplecore import __version__ as __version__
from swarm_actors.errors import (
    ActorDeadError,
    ActorError,
    ActorNameError,
    AskCycleError,
    EscalatedError,
    InvalidArgumentError,
    MailboxFullError,
    MessageCapabilityError,
    SwarmError,
    SystemStoppedError,
    UnhandledMessageError,
    WrongLoopError,
)

__all__ = [
    "Actor",
    "ActorDeadError",
    "ActorError",
    "ActorNameError",
    "ActorRef",
    "ActorSystem",
    "AllForOne",
    "AskCycleError",
    "Backoff",
    "Directive",
    "EscalatedError",
    "InvalidArgumentError",
    "MailboxFullError",
    "MailboxStats",
    "MessageCapabilityError",
    "MessageGrant",
    "OneForOne",
    "Passivation",
    "PoolRef",
    "Ref",
    "Signals",
    "SpaceGrant",
    "SwarmError",
    "SystemStoppedError",
    "Terminated",
    "Timeouts",
    "Timers",
    "TopicStats",
    "Tracing",
    "UnhandledMessageError",
    "VirtualBatch",
    "VirtualRef",
    "VirtualStats",
    "WrongLoopError",
    "handler",
    "register_message_type",
]

# The errors are named by ``swarm_actors.errors``, their one complete home.
_publish(__name__, *(globals()[n] for n in __all__ if n not in errors.__all__))
