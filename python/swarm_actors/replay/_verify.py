"""``verify``: every link of a run's history checked, and the first broken one named.

What is checked, in journal order:

* the journal delivered every sequence (a gap is an event lost to a damaged store, or
  deleted; a message that is no event is one altered past decoding);
* each agent's events count up by one (an agent numbers every event it records, so a skipped
  number is an event of that agent missing, whatever the store says);
* each state change's ``prev_hash`` is the hash of the agent's previous change (none missing,
  inserted or reordered before it) and its ``hash`` is the hash of its own content (not
  altered): the chains ``verify_chain`` checks, checked here without stopping at the first;
* each event belongs to the run (an altered ``run_id``);
* the workspace: the starting snapshot's files are in the blob store and hash to their names,
  and each ``FileChange`` applied to the files as they are gives its recorded after hash.

The report names the first broken link (the lowest journal sequence) and lists the others
found; a journal gap is explained by the agent events it must have held when the agents'
numbering shows them. Decisions, signals, tool runs and model calls are not links of a hash
chain (an agent's chain is its state changes): a store that hands one back altered but
decodable is not caught here, only one that drops or garbles it (JetStream checks each
message's checksum when it loads its store, and drops a damaged one: a gap).
"""

from __future__ import annotations

import msgspec

from swarm_actors.errors import BlobError, PatchError
from swarm_actors.events import StateChange, state_hash
from swarm_actors.replay._patch import apply_file_change
from swarm_actors.replay._replay import RunReplay
from swarm_actors.tools import load_snapshot

__all__ = ["BrokenLink", "VerifyReport", "verify_run"]


class BrokenLink(msgspec.Struct, frozen=True, kw_only=True):
    """One link of the history that does not hold."""

    seq: int
    """Journal sequence where it shows (of the missing event, or of the event that breaks)."""
    kind: str
    """``missing``, ``undecodable``, ``altered``, ``out_of_order``, ``foreign`` (another
    run's ``run_id``), ``workspace`` (a change that does not fit the files) or ``blob``."""
    message: str
    """What is wrong, naming the event."""
    agent_id: str = ""
    """The agent concerned (empty when unknown)."""
    agent_seq: int = 0
    """The agent's sequence of the event concerned (the first missing one for a gap)."""
    event_id: str = ""
    """The id of the event that breaks (empty for a missing one)."""


class VerifyReport(msgspec.Struct, frozen=True, kw_only=True):
    """What ``verify_run`` checked and found."""

    run_id: str
    """The run."""
    ok: bool
    """Whether every link holds."""
    events: int
    """Events read."""
    state_changes: int
    """State changes whose hash was recomputed."""
    agents: int
    """Agents whose chain was checked."""
    file_changes: int
    """Workspace changes applied and checked against their after hash."""
    broken: BrokenLink | None
    """The first broken link (lowest journal sequence), or ``None``."""
    problems: tuple[BrokenLink, ...]
    """Every broken link found, in journal order (the workspace stops at its first)."""


class _Agent:
    """Where one agent's history stands during the walk."""

    __slots__ = ("head", "last", "last_seq")

    def __init__(self) -> None:
        self.last = 0  # its last event's own sequence
        self.last_seq = 0  # that event's journal sequence
        self.head = b""  # its chain's head: the hash of its last state change


class _Gap(msgspec.Struct, frozen=True):
    """Events of one agent missing between two of its events (journal sequences)."""

    agent_id: str
    first: int  # the agent's first missing sequence
    count: int
    after_seq: int
    before_seq: int


def _chains(replay: RunReplay, found: list[BrokenLink], gaps: list[_Gap]) -> tuple[int, int]:
    """Check every agent's numbering and chain; (state changes hashed, agents)."""
    agents: dict[str, _Agent] = {}
    run_id = replay.run_id
    hashed = 0
    for entry in replay.entries:
        event = entry.event
        seq = entry.sequence
        agent = event.agent_id
        state = agents.get(agent)
        if state is None:
            state = agents[agent] = _Agent()
        last = state.last
        number = event.sequence
        if run_id and event.run_id != run_id:
            found.append(
                BrokenLink(
                    seq=seq,
                    kind="foreign",
                    message=f"sequence {seq} ({agent} event {number}) names run "
                    f"{event.run_id!r}, not this run: it was altered",
                    agent_id=agent,
                    agent_seq=number,
                    event_id=event.event_id,
                )
            )
        if number != last + 1:
            if number > last:
                first = last + 1
                gaps.append(_Gap(agent, first, number - first, state.last_seq, seq))
                span = f"event {first}" if first == number - 1 else f"events {first}-{number - 1}"
                found.append(
                    BrokenLink(
                        seq=seq,
                        kind="missing",
                        message=f"{span} of {agent} missing before sequence {seq} (its "
                        f"event {number}): lost or deleted",
                        agent_id=agent,
                        agent_seq=first,
                    )
                )
            else:
                found.append(
                    BrokenLink(
                        seq=seq,
                        kind="out_of_order",
                        message=f"sequence {seq}: {agent} event {number} does not follow its "
                        f"event {last}: repeated or out of order",
                        agent_id=agent,
                        agent_seq=number,
                        event_id=event.event_id,
                    )
                )
        change = event.payload
        if type(change) is StateChange:
            hashed += 1
            if change.prev_hash != state.head:
                found.append(
                    BrokenLink(
                        seq=seq,
                        kind="missing",
                        message=f"sequence {seq} ({agent} event {number}): its prev_hash does "
                        "not name the agent's previous change: a change is missing, inserted "
                        "or out of order before it",
                        agent_id=agent,
                        agent_seq=number,
                        event_id=event.event_id,
                    )
                )
            if change.hash != state_hash(event):
                found.append(
                    BrokenLink(
                        seq=seq,
                        kind="altered",
                        message=f"sequence {seq} ({agent} event {number}, {event.event_id}): "
                        "its hash does not match its content: the event was altered",
                        agent_id=agent,
                        agent_seq=number,
                        event_id=event.event_id,
                    )
                )
            state.head = change.hash
        if number > last:
            state.last = number
            state.last_seq = seq
    return hashed, len(agents)


def _workspace(replay: RunReplay, found: list[BrokenLink]) -> int:
    """Fold every workspace step, checking hashes; the file changes applied."""
    files: dict[str, bytes] = {}
    hashes: dict[str, str] = {}
    applied = 0
    blobs = replay.blobs
    for step in replay.steps():
        seq, event, change = step.seq, step.event, step.change
        where = f"sequence {seq} ({event.agent_id} event {event.sequence}, {event.event_id})"
        try:
            if change is None:
                if blobs is None:
                    raise PatchError("the run's blob store is needed for its snapshot")
                snapshot = load_snapshot(blobs, step.snapshot)
                files = {path: blobs.get(f.sha256) for path, f in snapshot.files.items()}
                hashes = {path: f.sha256 for path, f in snapshot.files.items()}
                continue
            apply_file_change(files, change, blobs, hashes=hashes)
            applied += 1
        except (PatchError, msgspec.ValidationError, msgspec.DecodeError) as exc:
            kind, why = "workspace", f"{exc}"
        except BlobError as exc:
            kind, why = "blob", f"{type(exc).__name__}: {exc}"
        else:
            continue
        found.append(
            BrokenLink(
                seq=seq,
                kind=kind,
                message=f"{where}: {why}",
                agent_id=event.agent_id,
                agent_seq=event.sequence,
                event_id=event.event_id,
            )
        )
        break  # the files after a broken step are not the run's: stop here
    return applied


def _explain_gaps(replay: RunReplay, gaps: list[_Gap]) -> list[BrokenLink]:
    """Journal problems as links, a gap naming the agents' events it must have held."""
    links = []
    for problem in replay.problems:
        inside = [g for g in gaps if g.after_seq < problem.first and problem.last < g.before_seq]
        held = [
            f"{g.agent_id} event {g.first}"
            if g.count == 1
            else f"{g.agent_id} events {g.first}-{g.first + g.count - 1}"
            for g in inside
        ]
        span = (
            f"sequence {problem.first}"
            if problem.first == problem.last
            else f"sequences {problem.first}-{problem.last}"
        )
        if problem.kind == "gap":
            what = f"journal {span} missing (lost or deleted)"
            if held:
                what += f": it held {' or '.join(held)}"
        else:
            what = f"journal {span} is not an event (altered): {problem.message}"
            if held:
                what += f"; it was {' or '.join(held)}"
        # One agent's events only in the span: that is who lost them.
        named = inside[0] if len(inside) == 1 else None
        links.append(
            BrokenLink(
                seq=problem.first,
                kind="missing" if problem.kind == "gap" else "undecodable",
                message=what,
                agent_id=named.agent_id if named is not None else "",
                agent_seq=named.first if named is not None else 0,
            )
        )
    return links


def verify_run(replay: RunReplay) -> VerifyReport:
    """Check every link of ``replay``'s history (see the module docstring); the report."""
    found: list[BrokenLink] = []
    gaps: list[_Gap] = []
    hashed, agents = _chains(replay, found, gaps)
    applied = _workspace(replay, found)
    found = sorted(_explain_gaps(replay, gaps) + found, key=lambda link: link.seq)
    return VerifyReport(
        run_id=replay.run_id,
        ok=not found,
        events=len(replay.entries),
        state_changes=hashed,
        agents=agents,
        file_changes=applied,
        broken=found[0] if found else None,
        problems=tuple(found),
    )
