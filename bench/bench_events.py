"""Events and the in-process journal: codec, builders, hash chain and MemoryJournal rates.

1. Encode + decode of the three payload kinds (about 200 bytes each): ``encode_event`` /
   ``decode_event`` (msgspec msgpack, array-like), next to protobuf (upb) code generated from
   the same ``.proto`` in this run, twice: bytes -> message -> bytes alone, and the
   application-level equivalent of ours (build the message from Python values, serialize,
   parse, read every field). Correctness is checked first and reported in the table.
2. Building events: ``new_event_id``, ``new_event`` (a signal), sealing a state change
   (``new_event`` with its SHA-256), ``verify_chain``.
3. ``MemoryJournal``: ``append_nowait`` of pre-built events (unbounded and with
   ``max_events``), ``await append``, ``append_many``, and ``read`` (all, and subject-filtered).

Rates are the best of ``--repeats`` runs, with the garbage collector on (as the runtime runs).

Run: python bench/bench_events.py [--events 200000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec

from _common import ROOT, fmt_rate, machine, progress, table
from swarm_actors._events._chain import verify_chain
from swarm_actors._events._journal import MemoryJournal
from swarm_actors._events._protomap import encode_proto
from swarm_actors._events._schema import (
    AgentDecision,
    ChangeForm,
    HealthStatus,
    SignalKind,
    StateChange,
    SwarmEvent,
    SystemSignal,
    decode_event,
    encode_event,
    new_event,
    new_event_id,
)

TRACE = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")


def sample_events() -> list[SwarmEvent]:
    """One event of each kind, about 200 bytes encoded, with trace context."""
    common: dict[str, Any] = {"trace_id": TRACE[0], "span_id": TRACE[1], "agent_id": "/pool/w17"}
    decision = new_event(
        AgentDecision(
            context_hash="git:4f2a9c1",
            input_trigger="task 812: add retries",
            rationale="transient failures dominate; retry with backoff",
            rejected_alternatives=("fail fast",),
            memory_ids=("mem-91",),
            confidence_score=0.82,
            choice="retry x3",
        ),
        agent_role="architect",
        sequence=41,
        **common,
    )
    change = new_event(
        StateChange(
            target_type="actor_state",
            target_resource="/pool/w17",
            prev_hash=bytes(range(32)),
            data=b"\x82\xa5count\xcd\x01\x2c\xa4mode\xa4fast" + bytes(40),
            form=ChangeForm.SNAPSHOT,
            content_type="application/msgpack",
        ),
        agent_role="coder",
        sequence=42,
        causation_id=decision.event_id,
        **common,
    )
    signal = new_event(
        SystemSignal(
            kind=SignalKind.HEALTH,
            detail="mailbox above 80 % of capacity",
            health=HealthStatus.DEGRADED,
            cpu_load_percent=73.5,
            memory_bytes=184_549_376,
            mailbox_depth=812,
        ),
        agent_role="worker",
        sequence=43,
        **common,
    )
    return [decision, change, signal]


def best_rate(count: int, repeats: int, run: Callable[[], object]) -> float:
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = max(best, count / (time.perf_counter() - start))
    return best


# --- protobuf ---------------------------------------------------------------------------------


def compile_proto(out: Path) -> ModuleType | None:
    """events_pb2 generated into ``out``, or None without grpcio-tools."""
    try:
        from grpc_tools import protoc
    except ImportError:
        return None
    proto_root = ROOT / "proto"
    args = ["protoc", f"-I{proto_root}", f"--python_out={out}", "swarm/events/v1/events.proto"]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed")
    path = out / "swarm" / "events" / "v1" / "events_pb2.py"
    spec = importlib.util.spec_from_file_location("bench_events_pb2", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Building and reading go field by field on both sides, in the same generic way, so the
# comparison is of the two libraries, not of two ways of writing the loop.
ENVELOPE = [name for name in SwarmEvent.__struct_fields__ if name != "payload"]
MEMBER = {AgentDecision: "decision", StateChange: "state_change", SystemSignal: "system_signal"}
FIELDS = {member: cls.__struct_fields__ for cls, member in MEMBER.items()}


def to_message(pb: ModuleType, ev: SwarmEvent) -> Any:
    """The protobuf message of an event, built from its values."""
    p = ev.payload
    payload = getattr(pb, type(p).__name__)(**msgspec.structs.asdict(p))
    envelope = {name: getattr(ev, name) for name in ENVELOPE}
    return pb.SwarmEvent(**envelope, **{MEMBER[type(p)]: payload})


def to_struct(ev: SwarmEvent) -> SwarmEvent:
    """The same event built again from its values (what ``to_message`` does for protobuf)."""
    p = ev.payload
    envelope = {name: getattr(ev, name) for name in ENVELOPE}
    return SwarmEvent(**envelope, payload=type(p)(**msgspec.structs.asdict(p)))


def read_message(m: Any) -> list[object]:
    """Every field of a parsed message, as a consumer of the event reads them."""
    kind = m.WhichOneof("payload")
    p = getattr(m, kind)
    return [getattr(m, name) for name in ENVELOPE] + [getattr(p, name) for name in FIELDS[kind]]


def read_struct(m: SwarmEvent) -> list[object]:
    """Every field of a decoded event (``read_message`` for Structs)."""
    p = m.payload
    fields = FIELDS[MEMBER[type(p)]]
    return [getattr(m, name) for name in ENVELOPE] + [getattr(p, name) for name in fields]


# --- sections ---------------------------------------------------------------------------------


def codec_rows(n: int, repeats: int) -> list[list[object]]:
    events = sample_events()
    blobs = [encode_event(e) for e in events]
    ok = all(decode_event(b) == e for b, e in zip(blobs, events, strict=True))
    size = sum(map(len, blobs)) / len(blobs)
    batch = events * (n // 3)
    rows: list[list[object]] = []

    def ours() -> None:
        for ev in batch:
            decode_event(encode_event(ev))

    def ours_app() -> None:
        for ev in batch:
            read_struct(decode_event(encode_event(to_struct(ev))))

    rate = best_rate(len(batch), repeats, ours)
    check = "round trip equal" if ok else "**MISMATCH**"
    rows.append(
        ["msgspec msgpack: `encode_event` + `decode_event`", fmt_rate(rate), f"{size:.0f} B", check]
    )
    rate_ours_app = best_rate(len(batch), repeats, ours_app)
    rows.append(
        [
            "msgspec msgpack: build, encode, decode, read all fields",
            fmt_rate(rate_ours_app),
            f"{size:.0f} B",
            "",
        ]
    )
    with tempfile.TemporaryDirectory() as tmp:
        pb = compile_proto(Path(tmp))
        if pb is None:
            rows.append(["protobuf", "n/a", "", "grpcio-tools not installed"])
            return rows
        messages = [to_message(pb, e) for e in events]
        same = all(
            m.SerializeToString(deterministic=True) == encode_proto(e)
            for m, e in zip(messages, events, strict=True)
        )
        pb_blobs = [m.SerializeToString() for m in messages]
        pb_size = sum(map(len, pb_blobs)) / len(pb_blobs)
        parse = pb.SwarmEvent.FromString
        pb_batch = pb_blobs * (n // 3)

        def pb_bytes() -> None:
            for b in pb_batch:
                parse(b).SerializeToString()

        def pb_app() -> None:
            for ev in batch:
                read_message(parse(to_message(pb, ev).SerializeToString()))

        note = "same bytes as `encode_proto`" if same else "**bytes differ from encode_proto**"
        rate_bytes = best_rate(len(pb_batch), repeats, pb_bytes)
        rows.append(
            [
                "protobuf (upb): parse + serialize",
                fmt_rate(rate_bytes),
                f"{pb_size:.0f} B",
                f"{note}; ours is {rate / rate_bytes:.2f}x this",
            ]
        )
        rate_app = best_rate(len(batch), repeats, pb_app)
        rows.append(
            [
                "protobuf (upb): build, serialize, parse, read all fields",
                fmt_rate(rate_app),
                f"{pb_size:.0f} B",
                f"ours is {rate_ours_app / rate_app:.2f}x this",
            ]
        )
    return rows


def builder_rows(n: int, repeats: int) -> list[list[object]]:
    signal = SystemSignal(kind=SignalKind.ACTIVATED)
    change = StateChange(target_type="actor_state", data=bytes(64), form=ChangeForm.SNAPSHOT)

    def ids() -> None:
        for _ in range(n):
            new_event_id()

    def signals() -> None:
        for i in range(n):
            new_event(signal, agent_role="worker", agent_id="/w", sequence=i)

    chain: list[SwarmEvent] = []

    def sealed() -> None:
        chain.clear()
        head = b""
        for i in range(n // 10):
            ev = new_event(
                StateChange(prev_hash=head, data=change.data, form=change.form),
                agent_role="worker",
                agent_id="/w",
                sequence=i + 1,
            )
            head = ev.payload.hash  # type: ignore[union-attr]
            chain.append(ev)

    rows: list[list[object]] = [
        ["`new_event_id` (UUIDv7)", fmt_rate(best_rate(n, repeats, ids)), ""],
        ["`new_event` (a lifecycle signal)", fmt_rate(best_rate(n, repeats, signals)), ""],
        [
            "`new_event` (a state change, sealed with SHA-256)",
            fmt_rate(best_rate(n // 10, repeats, sealed)),
            "64-byte snapshot",
        ],
    ]
    rate = best_rate(len(chain), repeats, lambda: verify_chain(chain))
    rows.append(["`verify_chain`", fmt_rate(rate), f"{len(chain):,} changes"])
    return rows


def journal_rows(n: int, repeats: int) -> list[list[object]]:
    roles = ["worker", "coder", "architect", "reviewer"]
    signal = SystemSignal(kind=SignalKind.ACTIVATED)
    events = [
        new_event(signal, agent_role=roles[i % 4], agent_id=f"/w{i}", sequence=1) for i in range(n)
    ]
    rows: list[list[object]] = []

    def appender(max_events: int | None) -> Callable[[], None]:
        def run() -> None:
            append = MemoryJournal(max_events=max_events).append_nowait
            for ev in events:
                append(ev)

        return run

    for label, max_events in [("unbounded", None), (f"`max_events={n // 4}`", n // 4)]:
        rate = best_rate(n, repeats, appender(max_events))
        rows.append([f"`append_nowait`, {label}", fmt_rate(rate), f"{1e9 / rate:.0f} ns each"])

    async def awaited() -> None:
        journal = MemoryJournal()
        for ev in events:
            await journal.append(ev)

    async def many() -> None:
        journal = MemoryJournal()
        for i in range(0, n, 256):
            await journal.append_many(events[i : i + 256])

    rate = best_rate(n, repeats, lambda: asyncio.run(awaited()))
    rows.append(["`await append`", fmt_rate(rate), f"{1e9 / rate:.0f} ns each"])
    rate = best_rate(n, repeats, lambda: asyncio.run(many()))
    rows.append(["`await append_many` (256 a call)", fmt_rate(rate), f"{1e9 / rate:.0f} ns each"])

    full = MemoryJournal()
    for ev in events:
        full.append_nowait(ev)

    async def read(subject: str) -> int:
        count = 0
        async for _ in full.read(subject=subject):
            count += 1
        return count

    rate = best_rate(n, repeats, lambda: asyncio.run(read("swarm.events.>")))
    rows.append(["`read`, every entry", fmt_rate(rate), f"{n:,} entries"])
    rate = best_rate(n, repeats, lambda: asyncio.run(read("swarm.events.coder.>")))
    rows.append(["`read`, one role in four (rate over entries scanned)", fmt_rate(rate), ""])
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    n, repeats = args.events, args.repeats
    progress(f"codec: {n:,} events")
    codec = codec_rows(n, repeats)
    progress("builders")
    builders = builder_rows(n, repeats)
    progress("MemoryJournal")
    journal = journal_rows(n, repeats)
    print("## Events and the in-process journal\n")
    print(f"`python bench/bench_events.py --events {n} --repeats {repeats}` on {machine()}.\n")
    print("Encode + decode of the three payload kinds, in turn (one event: one of each):\n")
    print(table(["codec", "events/s", "mean size", "check"], codec))
    print()
    print(table(["building events", "rate", "detail"], builders))
    print()
    print(table(["MemoryJournal", "rate", "detail"], journal))
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
