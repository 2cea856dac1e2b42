"""State-change hash chains: verification, and replay of an agent's state at an earlier point.

Each agent's ``StateChange`` events form a chain: a change's ``prev_hash`` is the ``hash`` of
the agent's previous change (empty for the first), and its ``hash`` is ``state_hash(event)``, a
SHA-256 over ``prev_hash`` and the event's canonical protobuf bytes. Decisions and signals are
not links (they may interleave, the agent ``sequence`` counts every event, so chain sequences
increase but are not contiguous).

A replay ("time travel") folds an agent's changes, in order, up to a sequence or a time, and
verifies every link it folds, so the state it returns is the one the agent recorded:

* ``SNAPSHOT``: the state becomes ``data``;
* ``DELTA``: the state becomes ``apply(state, data)`` with a function the caller supplies
  (a patch tool for ``text/x-diff``, a JSON patch...).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import msgspec

from swarm_actors._events._schema import ChangeForm, StateChange, SwarmEvent, state_hash
from swarm_actors._exceptions import ChainBrokenError, ReplayError

if TYPE_CHECKING:
    from swarm_actors._events._journal import Journal

__all__ = ["ReplayedState", "replay_journal", "replay_state", "verify_chain"]


class ReplayedState(msgspec.Struct, frozen=True, kw_only=True):
    """An agent's state as a replay found it, and where in its chain that was."""

    state: bytes
    """The folded state (``initial`` if no change was folded)."""
    sequence: int
    """Agent sequence of the last change verified (0 if none)."""
    hash: bytes
    """Chain head at that point: the last verified change's ``hash`` (empty if none)."""
    timestamp_ns: int
    """Timestamp of that change (0 if none)."""
    changes: int
    """How many changes were folded into ``state``."""


class _Link:
    """The verified head of one agent's chain."""

    __slots__ = ("agent_id", "head", "sequence", "started")

    def __init__(self, agent_id: str, *, from_genesis: bool) -> None:
        self.agent_id = agent_id
        self.head = b""
        self.sequence = 0
        self.started = from_genesis  # without genesis, the first change anchors the chain

    def check(self, event: SwarmEvent, change: StateChange) -> None:
        """Verify that ``event`` is the next link; raise ``ChainBrokenError`` if not."""
        seq = event.sequence
        if seq <= self.sequence:
            self._broken(event, f"sequence {seq} does not follow {self.sequence}")
        if self.started and change.prev_hash != self.head:
            where = f"sequence {self.sequence}" if self.sequence else "none: genesis expected"
            self._broken(
                event,
                f"prev_hash does not name the agent's previous change ({where}): a change is "
                "missing, inserted or out of order",
            )
        if change.hash != state_hash(event):
            self._broken(event, "hash does not match the event's content: the event was altered")
        self.started = True
        self.head = change.hash
        self.sequence = seq

    def _broken(self, event: SwarmEvent, why: str) -> None:
        raise ChainBrokenError(
            f"chain of agent {self.agent_id!r} broken at sequence {event.sequence}: {why}",
            agent_id=self.agent_id,
            sequence=event.sequence,
            event_id=event.event_id,
        )


def verify_chain(events: Iterable[SwarmEvent], *, from_genesis: bool = True) -> dict[str, bytes]:
    """Verify the state-change chain of every agent in ``events``; its head hash per agent.

    ``events`` in journal order (other payloads are skipped). Raises ``ChainBrokenError`` at the
    first change that does not verify: its ``hash`` is not the hash of its content (it was
    altered), its ``prev_hash`` is not the previous change's ``hash`` (one was dropped, inserted
    or reordered before it), or its sequence does not increase. With ``from_genesis=False`` an
    agent's first change may continue an earlier chain (a journal whose retention dropped the
    start): its ``prev_hash`` is taken as given.
    """
    links: dict[str, _Link] = {}
    for event in events:
        change = event.payload
        if type(change) is not StateChange:
            continue
        link = links.get(event.agent_id)
        if link is None:
            link = links[event.agent_id] = _Link(event.agent_id, from_genesis=from_genesis)
        link.check(event, change)
    return {agent: link.head for agent, link in links.items()}


def replay_state(
    events: Iterable[SwarmEvent],
    agent_id: str,
    *,
    until_sequence: int | None = None,
    until_time_ns: int | None = None,
    resource: str | None = None,
    apply: Callable[[bytes, bytes], bytes] | None = None,
    initial: bytes = b"",
    from_genesis: bool = True,
) -> ReplayedState:
    """The state of ``agent_id`` after its changes up to ``until_sequence`` / ``until_time_ns``.

    Folds the agent's ``StateChange`` events from ``events`` (journal order) whose sequence is
    at most ``until_sequence`` and whose timestamp is at most ``until_time_ns`` (both inclusive,
    either or neither given), stopping at the first later one. Every change up to there is
    verified as ``verify_chain`` does (``ChainBrokenError``); changes after it are not read.
    With ``resource``, only changes of that ``target_resource`` are folded (all are verified).
    A ``DELTA`` needs ``apply(state, delta) -> state`` (else ``ReplayError``).
    """
    link = _Link(agent_id, from_genesis=from_genesis)
    state = initial
    changes = 0
    timestamp_ns = 0
    for event in events:
        change = event.payload
        if type(change) is not StateChange or event.agent_id != agent_id:
            continue
        if until_sequence is not None and event.sequence > until_sequence:
            break
        if until_time_ns is not None and event.timestamp_ns > until_time_ns:
            break
        link.check(event, change)
        timestamp_ns = event.timestamp_ns
        if resource is not None and change.target_resource != resource:
            continue
        if change.form is ChangeForm.SNAPSHOT:
            state = change.data
        elif apply is None:
            raise ReplayError(
                f"change {event.sequence} of {agent_id!r} is a delta and no apply function was "
                "given",
                sequence=event.sequence,
            )
        else:
            state = apply(state, change.data)
        changes += 1
    return ReplayedState(
        state=state,
        sequence=link.sequence,
        hash=link.head,
        timestamp_ns=timestamp_ns,
        changes=changes,
    )


async def replay_journal(
    journal: Journal,
    agent_id: str,
    *,
    agent_role: str = "*",
    until_sequence: int | None = None,
    until_time_ns: int | None = None,
    resource: str | None = None,
    apply: Callable[[bytes, bytes], bytes] | None = None,
) -> ReplayedState:
    """``replay_state`` over a journal's state changes (of ``agent_role``'s subject if given).

    Reads ``swarm.events.<agent_role>.state_change`` from the start of the journal; a journal
    whose retention dropped the agent's first change cannot be replayed from genesis, and the
    chain check says so (``ChainBrokenError`` at the first change left).
    """
    events: list[SwarmEvent] = []
    async for entry in journal.read(subject=f"swarm.events.{agent_role}.state_change"):
        if entry.event.agent_id == agent_id:
            events.append(entry.event)
    return replay_state(
        events,
        agent_id,
        until_sequence=until_sequence,
        until_time_ns=until_time_ns,
        resource=resource,
        apply=apply,
    )
