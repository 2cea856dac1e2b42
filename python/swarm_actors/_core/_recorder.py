"""Recording events: an actor's decisions and state changes, and the runtime's signals.

Each agent (actor path) numbers its events with its own ``sequence`` and chains its state
changes by hash. That bookkeeping lives in a small ``Ledger`` on the cell, created by the first
event, so actors that record nothing pay nothing. Events go to the system's journal with
``append_nowait``: the journal stores them at once (``MemoryJournal``) or queues them for a
background publisher (JetStream), and the runtime never waits on it in a handler.
"""

from __future__ import annotations

import os
import resource
import time
from typing import TYPE_CHECKING, Any

import msgspec
from opentelemetry import trace

from swarm_actors._events._schema import (
    AgentDecision,
    ChangeForm,
    HealthStatus,
    Payload,
    SignalKind,
    StateChange,
    SwarmEvent,
    SystemSignal,
    new_event,
)
from swarm_actors._exceptions import InvalidArgumentError
from swarm_actors._log import get_logger

if TYPE_CHECKING:
    from swarm_actors._core._cell import Cell
    from swarm_actors._events._journal import Journal

__all__ = [
    "SYSTEM_AGENT",
    "SYSTEM_ROLE",
    "HealthProbe",
    "Ledger",
    "decision",
    "record",
    "record_for",
    "record_signal",
    "state_change",
]

SYSTEM_ROLE = "system"
"""``agent_role`` of the events about the system as a whole (health)."""
SYSTEM_AGENT = "/"
"""``agent_id`` of the events about the system as a whole."""

_ENCODER = msgspec.msgpack.Encoder()
log = get_logger("swarm_actors")
_get_current_span = trace.get_current_span


class Ledger:
    """One agent's event bookkeeping: its last ``sequence`` and the ``hash`` of its last change."""

    __slots__ = ("head", "sequence")

    def __init__(self, sequence: int = 0, head: bytes = b"") -> None:
        self.sequence = sequence
        self.head = head


def _trace_ids() -> tuple[str, str]:
    context = _get_current_span().get_span_context()
    if context.is_valid:
        return format(context.trace_id, "032x"), format(context.span_id, "016x")
    return "", ""


def _store(journal: Journal, ledger: Ledger, event: SwarmEvent) -> SwarmEvent:
    # The ledger moves on only once the journal took the event (a full remote buffer raises
    # JournalFullError): a refused event leaves no gap in the sequence or the chain.
    journal.append_nowait(event)
    ledger.sequence = event.sequence
    payload = event.payload
    if type(payload) is StateChange:
        ledger.head = payload.hash
    return event


def record(
    journal: Journal,
    ledger: Ledger,
    payload: Payload,
    *,
    role: str,
    agent_id: str,
    cause: SwarmEvent | str | None = None,
) -> SwarmEvent:
    """Wrap ``payload`` in the agent's next event (sealing a state change) and journal it."""
    if type(payload) is StateChange:
        payload = msgspec.structs.replace(payload, prev_hash=ledger.head)
    trace_id, span_id = _trace_ids()
    event = new_event(
        payload,
        agent_role=role,
        agent_id=agent_id,
        sequence=ledger.sequence + 1,
        causation_id=cause.event_id if isinstance(cause, SwarmEvent) else (cause or ""),
        trace_id=trace_id,
        span_id=span_id,
    )
    return _store(journal, ledger, event)


def decision(
    choice: str,
    *,
    rationale: str,
    alternatives: tuple[str, ...],
    confidence: float,
    trigger: str,
    context_hash: str,
    memory_ids: tuple[str, ...],
) -> AgentDecision:
    """The ``AgentDecision`` payload, with its arguments checked."""
    if not isinstance(choice, str):
        raise TypeError(f"choice must be a str, got {type(choice).__name__}")
    if not 0.0 <= confidence <= 1.0:
        raise InvalidArgumentError(f"confidence must be within [0, 1], got {confidence!r}")
    return AgentDecision(
        choice=choice,
        rationale=rationale,
        rejected_alternatives=tuple(alternatives),
        confidence_score=float(confidence),
        input_trigger=trigger,
        context_hash=context_hash,
        memory_ids=tuple(memory_ids),
    )


def state_change(
    state: Any,
    *,
    resource_name: str,
    target_type: str,
    delta: bool,
    reversible: bool,
    content_type: str | None,
) -> StateChange:
    """The ``StateChange`` payload: ``bytes`` as given, anything else msgpack-encoded."""
    if isinstance(state, (bytes, bytearray, memoryview)):
        data = bytes(state)
        kind = content_type or "application/octet-stream"
    else:
        try:
            data = _ENCODER.encode(state)
        except (TypeError, msgspec.EncodeError) as exc:
            raise TypeError(f"the state must be bytes or msgspec-encodable: {exc}") from exc
        kind = content_type or "application/msgpack"
    return StateChange(
        target_type=target_type,
        target_resource=resource_name,
        data=data,
        form=ChangeForm.DELTA if delta else ChangeForm.SNAPSHOT,
        is_reversible=reversible,
        content_type=kind,
    )


def record_for(
    journal: Journal, cell: Cell, payload: Payload, cause: SwarmEvent | str | None = None
) -> SwarmEvent:
    """Journal ``payload`` as the next event of ``cell``'s agent (its ledger made on first use)."""
    ledger = cell.ledger
    if ledger is None:
        ledger = cell.ledger = Ledger()
    event = record(
        journal, ledger, payload, role=cell.actor_class.role, agent_id=cell.path, cause=cause
    )
    tap = cell.system._topics.event_tap  # None unless events are watched in this process
    if tap is not None:
        tap(event)
    return event


def record_signal(
    cell: Cell, kind: SignalKind, *, detail: str = "", error_type: str = "", restarts: int = 0
) -> SwarmEvent | None:
    """Journal a lifecycle signal about ``cell`` (``None`` when the system keeps no journal).

    The runtime calls this from its own bookkeeping, so a journal that refuses the event
    (full, closed) is logged and never breaks the actor's life cycle.
    """
    journal = cell.system._journal
    if journal is None:
        return None
    signal = SystemSignal(
        kind=kind,
        detail=detail,
        error_type=error_type,
        restart_count=restarts,
        mailbox_depth=len(cell.queue),
    )
    try:
        return record_for(journal, cell, signal)
    except Exception as exc:
        log.warning(
            "lifecycle signal not journaled", actor=cell.path, kind=kind.name, error=repr(exc)
        )
        return None


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # not Linux: the peak is what there is
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class HealthProbe:
    """Measures the process for ``HEALTH`` signals: CPU load since the last probe, RSS."""

    __slots__ = ("_cpu", "_wall")

    def __init__(self) -> None:
        self._cpu = time.process_time()
        self._wall = time.monotonic()

    def signal(self, mailbox_depth: int, full_mailboxes: int, failing: int) -> SystemSignal:
        """A ``HEALTH`` signal with a verdict.

        DEGRADED when some mailbox is full, FAILING when actors wait for their supervisor.
        """
        cpu, wall = time.process_time(), time.monotonic()
        load = 100.0 * (cpu - self._cpu) / max(wall - self._wall, 1e-9)
        self._cpu, self._wall = cpu, wall
        status = HealthStatus.OK
        notes = []
        if full_mailboxes:
            status = HealthStatus.DEGRADED
            notes.append(f"{full_mailboxes} full mailbox(es)")
        if failing:
            status = HealthStatus.FAILING
            notes.append(f"{failing} actor(s) failed and awaiting supervision")
        return SystemSignal(
            kind=SignalKind.HEALTH,
            health=status,
            detail="; ".join(notes),
            cpu_load_percent=max(load, 0.0),
            memory_bytes=_rss_bytes(),
            mailbox_depth=mailbox_depth,
        )
