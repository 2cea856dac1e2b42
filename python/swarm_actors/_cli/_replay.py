"""``swarm-actors replay list|show|checkout|diff|verify``: time travel over a run's journal.

Every subcommand reads the ``--run`` run (default: the latest) of ``--data-dir`` through
``swarm_actors.replay.load_run``: a finished run's store, a live run's embedded server, or
``--nats URL``. Nothing calls a model and nothing is written to the journal.

* ``list``: the timeline; ``--json`` prints one JSON object per event (``seq``, ``time``,
  ``agent_role``, ``agent_id``, ``kind``, ``resource``, ``summary`` and the ids); filters
  ``--agent``, ``--role``, ``--kind``, ``--resource`` (shell patterns), ``--since``/``--until``.
* ``show SEQ``: one event in full (its rationale or diff, its cause, its trace id).
* ``checkout SEQ --to DIR``: the workspace as it was right after event ``SEQ`` (0: as the
  run started), written into a new (or empty) directory.
* ``diff A [B]``: what changed in the workspace from after ``A`` to after ``B`` (default:
  the end).
* ``verify``: every hash chain and every change; exit 1 naming the first broken link.

Exit status: 0, 1 when ``verify`` finds a broken link, 2 for bad input (no such run or
sequence, a busy ``--to``), with a message naming the fix.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
from typing import TYPE_CHECKING, Any

from swarm_actors.errors import InvalidArgumentError, ReplayError, SwarmError

if TYPE_CHECKING:
    from swarm_actors.replay import RunReplay, TimelineRow

__all__ = ["add_replay_parser", "run_replay"]


def _time(text: str) -> int:
    """``--since`` / ``--until``: ISO 8601 (``Z`` or an offset; naive is UTC) or epoch seconds."""
    try:
        return int(float(text) * 1e9)
    except ValueError:
        pass
    try:
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (use ISO 8601, e.g. 2026-12-02T13:37:15Z, or epoch seconds)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return int(when.timestamp() * 1e9)


def _seq(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a sequence number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"a sequence is >= 0, got {value}")
    return value


def add_replay_parser(sub: Any, common: Any) -> Any:
    """Add ``replay`` and its subcommands to the ``swarm-actors`` parser; its subparsers.

    ``common(parser)`` adds the options every command takes (verbosity, ``--data-dir``).
    More subcommands (``_replay_revert``) are added to the subparsers returned.
    """
    p = sub.add_parser(
        "replay",
        help="time travel: a run's timeline, any event, the workspace at any event, verify",
        description="Replay a run from its journal (no model is called): list its events, "
        "show one, rebuild the workspace at any event, diff two points, verify every hash "
        "chain.",
    )
    cmds = p.add_subparsers(dest="replay_command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        c: argparse.ArgumentParser = cmds.add_parser(name, help=help_text, description=help_text)
        common(c)
        c.add_argument(
            "--run", default=None, help="the run: an id, a prefix, a path (default: latest)"
        )
        c.add_argument(
            "--nats", default=None, metavar="URL", help="read the run from this NATS server"
        )
        return c

    c_list = command("list", "the run's events in order, one line each")
    c_list.add_argument("--json", action="store_true", help="one JSON object per event")
    c_list.add_argument("--agent", help="agent id pattern, e.g. 'coder-*'")
    c_list.add_argument("--role", help="agent role pattern, e.g. reviewer")
    c_list.add_argument(
        "--kind", help="decision, state_change, system_signal, model_call or tool_run (a pattern)"
    )
    c_list.add_argument("--resource", help="resource pattern, e.g. 'src/*.py'")
    c_list.add_argument("--since", type=_time, help="from this time (ISO 8601 or epoch seconds)")
    c_list.add_argument("--until", type=_time, help="up to this time (inclusive)")
    c_show = command("show", "one event in full: its rationale or diff, cause and trace id")
    c_show.add_argument("seq", type=_seq, metavar="SEQ", help="the event's sequence (from list)")
    c_show.add_argument("--json", action="store_true", help="one JSON object")
    c_out = command("checkout", "write the workspace as it was right after event SEQ")
    c_out.add_argument("seq", type=_seq, metavar="SEQ", help="the event (0: the start)")
    c_out.add_argument("--to", required=True, metavar="DIR", help="a new or empty directory")
    c_diff = command("diff", "what changed in the workspace between two events")
    c_diff.add_argument("a", type=_seq, metavar="A", help="from right after this event")
    c_diff.add_argument("b", type=_seq, nargs="?", metavar="B", help="to after this (default: end)")
    c_verify = command("verify", "check every hash chain and every change; name the first break")
    c_verify.add_argument("--json", action="store_true", help="the report as one JSON object")
    p.set_defaults(func=run_replay)
    return cmds


async def _load(args: argparse.Namespace) -> RunReplay:
    from swarm_actors.replay import load_run

    # Progress on a terminal only (stderr): a long run takes seconds to read.
    show = sys.stderr.isatty() and not getattr(args, "quiet", False)
    if show:  # pragma: no cover - needs a terminal
        print(f"reading run {args.run or 'latest'}...", end="\r", file=sys.stderr, flush=True)
    replay = await load_run(args.run, data_dir=args.data_dir, nats=args.nats)
    if show:  # pragma: no cover - needs a terminal
        print(f"run {replay.run_id}: {len(replay.entries)} events", file=sys.stderr)
    return replay


def run_replay(args: argparse.Namespace) -> int:
    """Run ``swarm-actors replay ...``; the exit status."""
    name = f"swarm-actors replay {args.replay_command}"
    try:
        if args.replay_command == "checkout":  # one stored snapshot plus the tail
            return _checkout(args)
        replay = asyncio.run(_load(args))
        return _COMMANDS[args.replay_command](replay, args)
    except InvalidArgumentError as exc:  # no such run or sequence, a busy --to
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    except ReplayError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    except SwarmError as exc:
        print(f"{name}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _plain_row(row: TimelineRow) -> str:
    return (
        f"{row.seq:>6}  {row.time[11:23]}  {row.agent_id:<18} {row.kind:<13} "
        f"{row.resource[:28]:<28} {row.summary}"
    )


def _list(replay: RunReplay, args: argparse.Namespace) -> int:
    import msgspec

    rows = replay.timeline(
        agent=args.agent,
        role=args.role,
        kind=args.kind,
        resource=args.resource,
        since_ns=args.since,
        until_ns=args.until,
    )
    out = sys.stdout
    if args.json:
        encode = msgspec.json.Encoder().encode
        for row in rows:
            out.write(encode(row).decode() + "\n")
        return 0
    if out.isatty():  # pragma: no cover - needs a terminal
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"run {replay.run_id}: {len(rows)} events")
        for col in ("seq", "time", "agent", "kind", "resource", "summary"):
            table.add_column(col, overflow="fold")
        for r in rows:
            table.add_row(str(r.seq), r.time[11:23], r.agent_id, r.kind, r.resource, r.summary)
        Console(file=out).print(table)
        return 0
    for row in rows:
        out.write(_plain_row(row) + "\n")
    return 0


def _show(replay: RunReplay, args: argparse.Namespace) -> int:
    detail = replay.show(args.seq)
    data = detail.to_builtins()
    if args.json:
        print(json.dumps(data))
        return 0
    lines = [_plain_row(detail.row), ""]
    for key in ("event_id", "trace_id", "span_id", "causation_id", "run_id"):
        if data.get(key):
            lines.append(f"{key}: {data[key]}")
    if detail.cause is not None:
        lines.append(f"cause: {_plain_row(detail.cause)}")
    lines.append(f"agent sequence: {detail.row.agent_seq}")
    payload = dict(data["payload"])
    data.pop("diff", None)
    for key in ("rationale", "choice", "rejected_alternatives", "memory_ids"):
        if payload.get(key):
            lines.append(f"{key}: {payload.pop(key)}")
    for key, value in payload.items():
        if value not in ("", 0, [], None, False):
            lines.append(f"{key}: {value}")
    change = detail.change
    if change is not None:
        lines.append(
            f"{change.op} {change.path}{' -> ' + change.to_path if change.to_path else ''}: "
            f"{change.before_sha256[:12] or 'none'} ({change.before_size} B) -> "
            f"{change.after_sha256[:12] or 'none'} ({change.after_size} B)"
        )
        if detail.diff:
            lines.extend(["", detail.diff.rstrip("\n")])
        elif change.after_blob or change.before_blob:
            lines.append(f"content in the blob store: {change.after_blob or change.before_blob}")
    print("\n".join(lines))
    return 0


def _checkout(args: argparse.Namespace) -> int:
    from swarm_actors.replay import checkout_run

    path = asyncio.run(
        checkout_run(args.run, args.seq, args.to, data_dir=args.data_dir, nats=args.nats)
    )
    files = sum(1 for p in path.rglob("*") if p.is_file())
    print(f"the workspace after event {args.seq}: {files} files in {path}")
    return 0


def _diff(replay: RunReplay, args: argparse.Namespace) -> int:
    sys.stdout.write(replay.diff(args.a, args.b))
    return 0


def _verify(replay: RunReplay, args: argparse.Namespace) -> int:
    import msgspec

    from swarm_actors.replay import verify_run

    report = verify_run(replay)
    if args.json:
        print(msgspec.json.encode(report).decode())
    elif report.ok:
        print(
            f"run {report.run_id}: ok: {report.events} events, {report.state_changes} state "
            f"changes in {report.agents} agents' chains, {report.file_changes} workspace "
            "changes replayed, every hash as recorded"
        )
    else:
        assert report.broken is not None
        print(
            f"run {report.run_id}: BROKEN at sequence {report.broken.seq}: {report.broken.message}"
        )
        for link in report.problems[1:]:
            print(f"  then sequence {link.seq}: {link.message}")
    return 0 if report.ok else 1


_COMMANDS = {
    "list": _list,
    "show": _show,
    "diff": _diff,
    "verify": _verify,
}
