"""The exceptions swarm-actors raises.

One root, grouped by the part of the system that raises them::

    SwarmError
    ├── SpaceError                     tuple space
    │   ├── FieldTypeError (TypeError)         a field or formal of an unsupported type
    │   ├── ArityError (ValueError)            empty, too long, or mis-shaped tuple / template
    │   └── CapabilityError (PermissionError)  a restricted handle tried a forbidden operation
    ├── AgentError                     agent hierarchy
    │   ├── UnknownAgentError (LookupError)    no agent has this id
    │   ├── AgentStateError                    the agent is in the wrong state for the operation
    │   └── CorruptStateError (ValueError)     compressed state failed validation
    ├── ActorError                     actor runtime
    │   ├── ActorDeadError                     the target actor is stopped (or stopping)
    │   │   └── NoSuchActorError               the target node runs no such actor (any more)
    │   │       └── NotOwnerError              the node does not hold the actor's shard
    │   ├── MailboxFullError                   ``tell_nowait`` on a full mailbox
    │   ├── UnhandledMessageError (TypeError)  no handler for the message's type
    │   ├── ActorNameError (ValueError)        a name already taken, or not a valid name
    │   ├── MessageCapabilityError (PermissionError)  the sender's ``may_message`` refused it
    │   ├── AskCycleError                      an ask that would wait for its own asker
    │   ├── SystemStoppedError (RuntimeError)  the ActorSystem is stopped: it takes no more work
    │   ├── WrongLoopError (RuntimeError)      the ActorSystem was called from another event loop
    │   └── EscalatedError                     a child exhausted its restarts; carries the cause
    ├── EventError                     events, their hash chains and the journal
    │   ├── EventDecodeError (ValueError)      bytes or a dict that are not a valid event
    │   │   └── SchemaVersionError             written by a schema version this build cannot read
    │   ├── SubjectError (ValueError)          a role or subject filter unfit for a NATS subject
    │   ├── ChainBrokenError                   a state-change hash chain does not verify
    │   ├── ReplayError                        a replay cannot fold a change (a delta, no ``apply``)
    │   │   ├── IrreversibleChangeError        a revert reached a change marked irreversible
    │   │   └── PatchError (ValueError)        a recorded file change does not fit its files
    │   ├── NoJournalError                     the system keeps no journal to record into
    │   ├── JournalClosedError                 the journal is closed
    │   ├── JournalFullError                   ``append_nowait`` found the journal's buffer full
    │   ├── JournalGapError                    a read crossed sequences missing from the journal
    │   ├── JournalWriteError                  the journal did not confirm storing some events
    │   │   └── JournalTimeoutError (TimeoutError)  no confirmation within the append timeout
    │   └── BlobError                          the content-addressed blob store of large contents
    │       ├── BlobNotFoundError (LookupError)    no blob is stored under the digest
    │       └── BlobCorruptError (ValueError)      a stored blob no longer hashes to its digest
    ├── TransportError                 NATS connections, servers and remote calls
    │   ├── ConnectError                       no server answered within the connect timeout
    │   ├── AuthenticationError                a server refused the credentials
    │   ├── MessageTooLargeError (ValueError)  a payload over the server's ``max_payload``
    │   ├── NatsServerError                    a ``nats-server`` process is missing or failed
    │   ├── NotConnectedError                  NATS work asked of a system not connected to it
    │   ├── RemoteError                        a remote handler raised; carries its type and text
    │   └── WireFormatError (ValueError)       bytes from NATS that are not a valid frame / message
    ├── ArchiveError                   the SQL archive: no chDB, a newer archive, a failed query
    ├── BrainError                     model calls (``swarm_actors.brains``)
    │   ├── BrainConfigError (ValueError)      a missing key, model or base URL: names the fix
    │   ├── BrainConnectionError               no connection to the provider, or it broke mid-reply
    │   ├── BrainTimeoutError (TimeoutError)   no complete reply within the call's timeout
    │   ├── BrainHTTPError                     the provider answered with an error status
    │   │   └── BrainRateLimitedError          429 Too Many Requests (``retry_after`` if it said)
    │   ├── BrainReplyError (ValueError)       a malformed, empty, oversized or mistyped reply
    │   ├── BrainInputTooLargeError (ValueError)  the instruction alone exceeds the context limit
    │   ├── CircuitOpenError                   the provider's circuit breaker is open
    │   ├── BudgetExceededError                the run's token or cost budget is spent
    │   ├── ReplayMissError (LookupError)      replay: the request was never recorded
    │   └── ScriptError (AssertionError)       a scripted brain was called off its script
    ├── ToolError                      workspace files, git and checks (``swarm_actors.tools``)
    │   ├── PathEscapeError (PermissionError)  a path leading outside the workspace root
    │   ├── SpecialFileError (PermissionError)  a device, FIFO, socket or directory, not a file
    │   ├── NoSuchFileError (FileNotFoundError)  no file or directory at a workspace path
    │   ├── FileConflictError (FileExistsError)  a move onto a path that is already taken
    │   ├── FileTooLargeError (ValueError)     content over the workspace's size limit
    │   ├── GitError                           a git command failed; carries its stderr
    │   └── CheckTimeoutError (TimeoutError)   a check ran past its timeout; its group was killed
    ├── CoordinateError (ValueError)   a Hilbert point, index or order outside the curve
    └── InvalidArgumentError (ValueError)  an argument outside its documented range
        └── RunNotFoundError (LookupError)     no such run under the data directory

Each error that concerns an agent carries ``agent_id``; ``CapabilityError`` carries
``operation``; ``FieldTypeError`` carries ``position``; actor errors carry ``actor`` (the
target's path), ``MessageCapabilityError`` also ``sender`` and ``AskCycleError`` the
``cycle`` of paths; event errors carry what
they concern (``ChainBrokenError``: ``agent_id``, ``sequence``, ``event_id``;
``SchemaVersionError``: ``version``; ``JournalWriteError``: ``sequences``;
``JournalGapError``: ``first``, ``last``, ``missing``; blob errors: ``digest``);
``MessageTooLargeError`` carries ``size`` and ``limit``; ``RemoteError`` carries
``remote_type`` and ``remote_message``; ``NatsServerError`` carries the server's
``log_tail``; tool errors carry ``path`` (workspace paths, relative to the root),
``GitError`` the ``command``, ``returncode`` and ``stderr``, ``CheckTimeoutError`` the
``result`` captured until the kill; brain errors carry ``provider`` and ``retryable``
(``BrainHTTPError``: ``status``, ``retry_after``; ``BudgetExceededError``: ``summary``;
``ReplayMissError``: ``digest``); ``RunNotFoundError`` carries ``run`` and ``data_dir``.
Timeouts raise the builtin ``TimeoutError`` (``JournalTimeoutError`` is one) and cancellation
is never converted into one of these.
"""

from __future__ import annotations

from functools import partial
from typing import Any

__all__ = [
    "ActorDeadError",
    "ActorError",
    "ActorNameError",
    "AgentError",
    "AgentStateError",
    "ArityError",
    "AskCycleError",
    "AuthenticationError",
    "BlobCorruptError",
    "BlobError",
    "BlobNotFoundError",
    "BrainConfigError",
    "BrainConnectionError",
    "BrainError",
    "BrainHTTPError",
    "BrainInputTooLargeError",
    "BrainRateLimitedError",
    "BrainReplyError",
    "BrainTimeoutError",
    "BudgetExceededError",
    "CapabilityError",
    "ChainBrokenError",
    "CheckTimeoutError",
    "CircuitOpenError",
    "ConnectError",
    "CoordinateError",
    "CorruptStateError",
    "EscalatedError",
    "EventDecodeError",
    "EventError",
    "FieldTypeError",
    "FileConflictError",
    "FileTooLargeError",
    "GitError",
    "InvalidArgumentError",
    "JournalClosedError",
    "JournalFullError",
    "JournalTimeoutError",
    "JournalWriteError",
    "MailboxFullError",
    "MessageCapabilityError",
    "MessageTooLargeError",
    "NatsServerError",
    "NoJournalError",
    "NoSuchActorError",
    "NoSuchFileError",
    "NotConnectedError",
    "NotOwnerError",
    "PatchError",
    "PathEscapeError",
    "RemoteError",
    "ReplayError",
    "ReplayMissError",
    "RunNotFoundError",
    "SchemaVersionError",
    "ScriptError",
    "SpaceError",
    "SpecialFileError",
    "SubjectError",
    "SwarmError",
    "SystemStoppedError",
    "ToolError",
    "TransportError",
    "UnhandledMessageError",
    "UnknownAgentError",
    "WireFormatError",
    "WrongLoopError",
]


class SwarmError(Exception):
    """Root of every exception raised by swarm-actors."""


class SpaceError(SwarmError):
    """A tuple-space operation was refused; the space is unchanged."""


class FieldTypeError(SpaceError, TypeError):
    """A tuple field or template position has a type the space does not support.

    Supported field values are ``int``, ``float``, ``str``, ``bytes``, ``bool`` and ``None``;
    templates may also hold a type formal (one of those types) or ``ANY``.
    """

    position: int
    """Zero-based index of the offending field."""


class ArityError(SpaceError, ValueError):
    """A tuple or template is empty, too long, or not a tuple / list at all."""


class CapabilityError(SpaceError, PermissionError):
    """A restricted space handle attempted an operation or lane it was not granted."""

    operation: str
    """The refused operation: ``"read"``, ``"take"`` or ``"write"``."""


class AgentError(SwarmError):
    """An agent-hierarchy operation was refused; the hierarchy is unchanged."""

    agent_id: int
    """The id the operation was asked about."""


class UnknownAgentError(AgentError, LookupError):
    """No agent, materialized or virtual, has this id."""


class AgentStateError(AgentError):
    """The agent exists but its state (virtual, active, compressed) forbids the operation."""

    state: str
    """The agent's state when the operation was refused."""


class CorruptStateError(AgentError, ValueError):
    """A compress token failed validation: bad header, truncated, or digest mismatch."""


class CoordinateError(SwarmError, ValueError):
    """A Hilbert point, index, dimension count or order is outside the curve's domain."""


class InvalidArgumentError(SwarmError, ValueError):
    """An argument is outside its documented range (for example ``depth=0``)."""


class RunNotFoundError(InvalidArgumentError, LookupError):
    """No run matches ``--run`` under the data directory (or several do: give more of the id)."""

    run: str
    """What was looked for: an id, a prefix, ``latest`` or a path."""
    data_dir: str
    """The data directory searched."""

    def __init__(self, message: str, *, run: str = "", data_dir: str = "") -> None:
        super().__init__(message)
        self.run = run
        self.data_dir = data_dir


class ActorError(SwarmError):
    """An actor-runtime operation was refused or failed."""

    actor: str
    """Path of the actor concerned (for example ``/counter``)."""

    def __init__(self, message: str, *, actor: str = "") -> None:
        super().__init__(message)
        self.actor = actor


class ActorDeadError(ActorError):
    """The target actor is stopped or stopping: the message was not delivered."""


class NoSuchActorError(ActorDeadError):
    """The node a message was sent to runs no actor of that name (any more); nothing was delivered.

    The actor stopped, or moved with its shard, while the message was on its way. A
    ``RemoteRef`` looks its name up once more before raising this; the caller may
    ``resolve`` the name again and retry.
    """


class NotOwnerError(NoSuchActorError):
    """The receiving node does not hold the placed actor's shard (any more); nothing was delivered.

    A ``PlacedRef`` routes its messages again when it meets this; an asker can still receive
    it when the shard moved while the actor was being activated.
    """


class MailboxFullError(ActorError):
    """``tell_nowait`` found the mailbox full; the message was not enqueued."""

    capacity: int
    """The mailbox's capacity."""

    def __init__(self, message: str, *, actor: str = "", capacity: int = 0) -> None:
        super().__init__(message, actor=actor)
        self.capacity = capacity


class UnhandledMessageError(ActorError, TypeError):
    """The actor has no handler for the message's type (raised to the sender of an ``ask``)."""


class ActorNameError(ActorError, ValueError):
    """An actor name is already taken in the system, or is not a valid name."""


class AskCycleError(ActorError):
    """An ask whose target is (through a chain of asks) waiting for the asker: a deadlock.

    An actor handles one message at a time, so an actor that asks itself, or asks an actor
    that is waiting for an answer from it, would wait forever. The ask is refused at once
    (nothing is sent); ``cycle`` names the actors, asker first, ending with the asker again.
    """

    cycle: tuple[str, ...]
    """Paths of the actors in the cycle: the asker, whom it asks, ..., the asker."""

    def __init__(self, message: str, *, actor: str = "", cycle: tuple[str, ...] = ()) -> None:
        super().__init__(message, actor=actor)
        self.cycle = cycle


class SystemStoppedError(ActorError, RuntimeError):
    """The ``ActorSystem`` is stopped (its ``async with`` block has exited): nothing was done.

    A stopped system starts no actor, activates no virtual actor and resolves no name; make a
    new ``ActorSystem`` instead.
    """


class WrongLoopError(ActorError, RuntimeError):
    """The ``ActorSystem`` was called from an event loop (or thread) other than its own.

    A system belongs to the event loop it was first used on; its actors run there. From
    another thread, hand work over with ``asyncio.run_coroutine_threadsafe(coro, loop)``.
    """


class EscalatedError(ActorError):
    """A child failed more often than its restart policy allows; ``__cause__`` is its error."""


class TransportError(SwarmError):
    """A NATS connection, server or remote call failed."""


class ConnectError(TransportError):
    """No NATS server accepted a connection within the connect timeout.

    The message names the servers tried and the last error seen.
    """


class AuthenticationError(TransportError):
    """A NATS server refused the credentials (user/password, token, creds or nkey).

    Raised by the first refusal: a client with wrong credentials never retries them.
    """


class NotConnectedError(TransportError):
    """NATS work was asked of a system that is not connected to NATS; nothing was done.

    The system was made without ``nats=`` (``placed``, ``placement_stats`` need a cluster),
    or it has not connected yet: it connects in ``async with ActorSystem(nats=...)`` (or at
    its first ``start``).
    """


class MessageTooLargeError(TransportError, ValueError):
    """A payload is larger than the server accepts; it was refused before publishing."""

    size: int
    """Size of the refused payload in bytes (headers included when they count)."""
    limit: int
    """The server's ``max_payload`` in bytes."""

    def __init__(self, message: str, *, size: int, limit: int) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit

    def __reduce__(self) -> tuple[Any, ...]:
        return (partial(type(self), *self.args, size=self.size, limit=self.limit), ())


class NatsServerError(TransportError):
    """A ``nats-server`` process could not be found, started, or made ready in time."""

    message: str
    """What went wrong, without the log."""
    log_tail: str
    """The last lines of the server's log (empty when it never started)."""

    def __init__(self, message: str, *, log_tail: str = "") -> None:
        text = f"{message}\n--- nats-server log (tail) ---\n{log_tail}" if log_tail else message
        super().__init__(text)
        self.message = message
        self.log_tail = log_tail

    def __reduce__(self) -> tuple[Any, ...]:
        return (partial(type(self), self.message, log_tail=self.log_tail), ())


class RemoteError(TransportError):
    """A handler in another process raised; its exception arrives as type name and message."""

    remote_type: str
    """Qualified name of the remote exception's type (for example ``builtins.KeyError``)."""
    remote_message: str
    """``str()`` of the remote exception."""

    def __init__(self, remote_type: str, remote_message: str) -> None:
        super().__init__(f"{remote_type}: {remote_message}" if remote_message else remote_type)
        self.remote_type = remote_type
        self.remote_message = remote_message

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.remote_type, self.remote_message))


class WireFormatError(TransportError, ValueError):
    """Bytes received from NATS are not a valid frame, envelope or message of a known type.

    Raised (or sent back to an asker) instead of building anything from them: garbage,
    truncated bytes, a wrong shape, or a message type this process does not know. ``__cause__``
    is msgspec's error when it found the problem.
    """


class MessageCapabilityError(ActorError, PermissionError):
    """The sending actor's class does not grant messages to the target (``may_message``).

    Nothing was enqueued. ``actor`` is the target's path, ``sender`` the sender's.
    """

    sender: str
    """Path of the actor that tried to send."""

    def __init__(self, message: str, *, actor: str = "", sender: str = "") -> None:
        super().__init__(message, actor=actor)
        self.sender = sender


class EventError(SwarmError):
    """An event could not be decoded, verified or journalled."""


class EventDecodeError(EventError, ValueError):
    """Bytes or a dict are not a valid event: malformed, truncated, of the wrong shape or type.

    Nothing half-built escapes: decoding either returns a whole, validated event or raises this
    (``__cause__`` is msgspec's error when it found the problem).
    """


class SchemaVersionError(EventDecodeError):
    """The event was written with a schema version this build cannot read (a newer one)."""

    version: int
    """The version the event carries."""

    supported: int
    """The newest version this build reads."""

    def __init__(self, message: str, *, version: int, supported: int) -> None:
        super().__init__(message)
        self.version = version
        self.supported = supported


class SubjectError(EventError, ValueError):
    """A role token or subject filter cannot be used in a NATS subject."""

    token: str
    """The offending role token or subject filter."""

    def __init__(self, message: str, *, token: str) -> None:
        super().__init__(message)
        self.token = token


class ChainBrokenError(EventError):
    """An agent's state-change hash chain does not verify at ``sequence``.

    Either that event was altered (its ``hash`` is not the hash of its content), or its
    ``prev_hash`` does not name the agent's previous change (a change was dropped, inserted or
    reordered before it), or its sequence does not increase.
    """

    agent_id: str
    """The agent whose chain broke."""

    sequence: int
    """The agent sequence of the first event that does not verify."""

    event_id: str
    """That event's id."""

    def __init__(self, message: str, *, agent_id: str, sequence: int, event_id: str) -> None:
        super().__init__(message)
        self.agent_id = agent_id
        self.sequence = sequence
        self.event_id = event_id


class ReplayError(EventError):
    """A replay met a change it cannot fold (a delta with no ``apply`` function)."""

    sequence: int
    """The agent sequence of that change."""

    def __init__(self, message: str, *, sequence: int) -> None:
        super().__init__(message)
        self.sequence = sequence


class IrreversibleChangeError(ReplayError):
    """A revert reached a change it cannot undo: marked irreversible (``is_reversible`` false).

    ``sequence`` is that change's journal sequence, ``path`` its file; nothing was changed.
    """

    path: str
    """The file the irreversible change touched."""

    def __init__(self, message: str, *, sequence: int, path: str) -> None:
        super().__init__(message, sequence=sequence)
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (partial(type(self), *self.args, path=self.path, sequence=self.sequence), ())


class PatchError(ReplayError, ValueError):
    """A workspace ``FileChange`` does not fit the files it is applied to: the history breaks.

    The file is not as the change found it (its before hash), the diff's context does not
    match, or the result does not hash to the change's after hash. ``path`` is the file;
    ``sequence`` the journal sequence of the change when known (else 0).
    """

    path: str
    """The file the change concerns."""

    def __init__(self, message: str, *, path: str = "", sequence: int = 0) -> None:
        super().__init__(message, sequence=sequence)
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (partial(type(self), *self.args, path=self.path, sequence=self.sequence), ())


class NoJournalError(EventError):
    """The ``ActorSystem`` keeps no journal, so nothing can be recorded: nothing was.

    It was made with ``journal=None``, or it was made with ``nats=`` and has not connected
    yet (its default journal is made when it connects).
    """


class JournalClosedError(EventError):
    """The journal is closed: nothing can be appended or read."""


class JournalFullError(EventError):
    """``append_nowait`` found the journal's pending buffer full; the event was not queued."""

    capacity: int
    """The buffer's capacity (events)."""

    def __init__(self, message: str, *, capacity: int) -> None:
        super().__init__(message)
        self.capacity = capacity


class JournalGapError(EventError):
    """A journal read crossed sequences that the journal no longer holds (lost or deleted).

    A journal is append-only and gap-free as stored, so a sequence missing between two stored
    entries, or between the last entry delivered and the last sequence the journal reports, is
    an event lost to a damaged store or removed by hand. Sequences that retention removed
    (``max_age``, ``max_bytes``: always the oldest) are not gaps. The read raised it once it
    had yielded every entry before the gap; ``read(start_sequence=error.last + 1)`` goes on
    past it.

    ``first`` and ``last`` bound the gap (journal sequences, inclusive); ``missing`` is how
    many entries the read lost in it. An unfiltered read knows each missing sequence, so
    ``missing == last - first + 1``; a read with a subject filter learns from the server how
    many entries *matching its filter* it did not get between two it got, and ``missing`` may
    then be less than the span (the other sequences were of other subjects).
    """

    first: int
    """The first sequence of the gap."""

    last: int
    """The last sequence of the gap."""

    missing: int
    """How many entries the read should have had between ``first`` and ``last``."""

    def __init__(self, message: str, *, first: int, last: int, missing: int) -> None:
        super().__init__(message)
        self.first = first
        self.last = last
        self.missing = missing

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            partial(type(self), *self.args, first=self.first, last=self.last, missing=self.missing),
            (),
        )


class JournalWriteError(EventError):
    """A journal could not confirm that it stored some of the events of an append.

    ``sequences`` has one item per event given, in order: its journal sequence when the server
    confirmed it, ``None`` when it did not. Unconfirmed events may still have been stored (a
    lost acknowledgement looks the same as a lost event): appending them again with the same
    event ids is safe within the journal's duplicate window and answers their sequences.
    """

    sequences: tuple[int | None, ...]
    """Per event: its confirmed journal sequence, or ``None``."""

    def __init__(self, message: str, *, sequences: tuple[int | None, ...] = ()) -> None:
        super().__init__(message)
        self.sequences = sequences

    @property
    def unconfirmed(self) -> tuple[int, ...]:
        """Indices (into the events given) of the events without a confirmed sequence."""
        return tuple(i for i, seq in enumerate(self.sequences) if seq is None)

    def __reduce__(self) -> tuple[Any, ...]:
        return (partial(type(self), *self.args, sequences=self.sequences), ())


class JournalTimeoutError(JournalWriteError, TimeoutError):
    """The journal did not confirm every event within the append timeout (a ``TimeoutError``)."""


class BlobError(EventError):
    """The content-addressed blob store could not store or return a blob."""

    digest: str
    """The blob's SHA-256 hex digest."""

    def __init__(self, message: str, *, digest: str) -> None:
        super().__init__(message)
        self.digest = digest


class BlobNotFoundError(BlobError, LookupError):
    """No blob is stored under the digest (never put, or put into another store)."""


class BlobCorruptError(BlobError, ValueError):
    """A stored blob no longer hashes to its digest: the file was altered or damaged on disk.

    The blob is not returned. ``put`` of the original content repairs it.
    """


class ToolError(SwarmError):
    """A workspace file operation, git command or check failed; the workspace is unchanged.

    Nothing is half-written: a refused or failed write leaves the old file (or no file) and no
    temporary file behind.
    """

    path: str
    """The workspace path concerned, relative to the root (empty when none)."""

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(message)
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (partial(type(self), *self.args, path=self.path), ())


class PathEscapeError(ToolError, PermissionError):
    """A path leads outside the workspace root, so it was refused before anything was opened.

    An absolute path, ``..`` past the root, a symbolic link (anywhere on the path) whose target
    is absolute or climbs out of the root, or a mount point inside the root (``/proc`` or a
    device file system mounted there). Give a path relative to the root that stays inside it.
    """


class SpecialFileError(ToolError, PermissionError):
    """The path names a device, FIFO, socket or directory where a regular file is needed.

    Workspace reads and writes touch regular files only (reading a FIFO or a device could block
    or never end); list a directory with ``Workspace.list``.
    """


class NoSuchFileError(ToolError, FileNotFoundError):
    """No file or directory at that workspace path (or a directory on the way is missing)."""


class FileConflictError(ToolError, FileExistsError):
    """A move's destination already exists; pass ``overwrite=True`` to replace it."""


class FileTooLargeError(ToolError, ValueError):
    """Content, or a file to read, is larger than the workspace's ``max_file_size``."""

    size: int
    """Size of the content in bytes."""
    limit: int
    """The workspace's ``max_file_size`` in bytes."""

    def __init__(self, message: str, *, path: str = "", size: int = 0, limit: int = 0) -> None:
        super().__init__(message, path=path)
        self.size = size
        self.limit = limit

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            partial(type(self), *self.args, path=self.path, size=self.size, limit=self.limit),
            (),
        )


class GitError(ToolError):
    """A git command failed (or git is missing); ``stderr`` says why, as git wrote it."""

    command: tuple[str, ...]
    """The git arguments (after ``git`` and its ``-c`` options)."""
    returncode: int
    """git's exit status (-1 when git could not be started)."""
    stderr: str
    """What git wrote to its standard error (the end of it, when long)."""

    def __init__(
        self, message: str, *, command: tuple[str, ...] = (), returncode: int = -1, stderr: str = ""
    ) -> None:
        super().__init__(message)
        self.command = command
        self.returncode = returncode
        self.stderr = stderr

    def __str__(self) -> str:
        detail = self.stderr.strip()
        return f"{self.args[0]}: {detail}" if detail else str(self.args[0])

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            partial(
                type(self),
                *self.args,
                command=self.command,
                returncode=self.returncode,
                stderr=self.stderr,
            ),
            (),
        )


class CheckTimeoutError(ToolError, TimeoutError):
    """A check ran past its timeout: its whole process group was killed.

    ``result`` is what was captured until then (``timed_out`` set), and the check's event
    was recorded before this was raised.
    """

    result: Any
    """The ``CheckResult`` of the killed run (typed ``Any`` here: tools defines it)."""

    def __init__(self, message: str, *, result: Any = None) -> None:
        super().__init__(message)
        self.result = result

    def __reduce__(self) -> tuple[Any, ...]:
        return (partial(type(self), *self.args, result=self.result), ())


class ArchiveError(SwarmError):
    """The SQL archive (``swarm_actors.archive``) failed.

    Its client is not installed, its server does not answer, it was written by a newer
    build, or a query failed: the message says which, and the fix.
    """


class BrainError(SwarmError):
    """A model call (a brain's ``complete``) failed; nothing was answered.

    ``retryable`` says whether trying the same request again may succeed (a 429, a 5xx, a
    broken connection, a timeout); ``GuardedBrain`` retries only those.
    """

    provider: str
    """The provider the call went to ("" when none was reached)."""
    retryable: bool
    """Whether the same request may succeed when tried again."""

    def __init__(self, message: str, *, provider: str = "", retryable: bool = False) -> None:
        super().__init__(message)
        self.provider = provider
        self.retryable = retryable


class BrainConfigError(BrainError, ValueError):
    """A brain is missing its configuration (API key, model, base URL).

    The message names the argument and the environment variable that provide it.
    """


class BrainConnectionError(BrainError):
    """The provider could not be reached, or the connection broke mid-reply. Retryable.

    Refused, unresolvable or unreachable, or a body cut before its end.
    """


class BrainTimeoutError(BrainError, TimeoutError):
    """No complete reply arrived within the call's timeout (a slow or stalled provider)."""


class BrainHTTPError(BrainError):
    """The provider answered with an HTTP error status (retryable for 429 and 5xx)."""

    status: int
    """The HTTP status code."""
    retry_after: float | None
    """Seconds the provider asked to wait (``Retry-After``), if it said."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        provider: str = "",
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, provider=provider, retryable=retryable)
        self.status = status
        self.retry_after = retry_after


class BrainRateLimitedError(BrainHTTPError):
    """The provider refused the call for its rate limit (HTTP 429). Retryable."""


class BrainReplyError(BrainError, ValueError):
    """The reply is not a usable answer.

    Malformed JSON, no choices, empty content, over the size limit, the wrong content type,
    or not the JSON that was asked for.
    """


class BrainInputTooLargeError(BrainError, ValueError):
    """The request cannot fit the context limit without dropping its instruction.

    The system messages alone (or with every other message cut to its minimum) exceed the
    limit. Nothing was sent.
    """


class CircuitOpenError(BrainError):
    """The provider's circuit breaker is open after repeated failures: no call was made.

    Carries ``retry_after``, the seconds until the breaker lets a probe call through.
    """

    retry_after: float
    """Seconds until the breaker lets one probe call through (half-open)."""

    def __init__(self, message: str, *, provider: str, retry_after: float) -> None:
        super().__init__(message, provider=provider, retryable=False)
        self.retry_after = retry_after


class BudgetExceededError(BrainError):
    """The run's budget (tokens, or cost where prices are configured) is spent.

    The call was not made; ``summary`` says what the run used.
    """

    summary: Any
    """The budget's ``BudgetSummary`` when it ran out."""

    def __init__(self, message: str, *, summary: Any) -> None:
        super().__init__(message)
        self.summary = summary


class ReplayMissError(BrainError, LookupError):
    """A replay brain was asked a request its journal never recorded (no model is called)."""

    digest: str
    """The request's digest (``BrainRequest.digest``)."""

    def __init__(self, message: str, *, digest: str) -> None:
        super().__init__(message, provider="replay")
        self.digest = digest


class ScriptError(BrainError, AssertionError):
    """A scripted brain's script and the code under test disagree.

    It was called more often than scripted, with a request its step did not expect, or
    closed with steps unused.
    """
