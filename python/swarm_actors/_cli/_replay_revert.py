"""``swarm-actors replay revert|rerun|run``: undo a change, fork a run, replay one without a model.

* ``revert SEQ``: undo the file change at journal sequence ``SEQ`` and the later changes
  depending on it, as new events (``swarm_actors.replay.revert``); ``--dry-run`` only says
  what it would undo. Exit 1 at a change marked irreversible or a file edited outside the
  journal (nothing is written), 2 for a bad ``SEQ``.
* ``rerun SEQ``: a new run forked from the workspace right after ``SEQ``, the brain called
  again (``--brain``, ``--model``, ``--base-url`` as for ``demo``).
* ``run``: the run re-executed from its start with its recorded model answers: no model call;
  says whether the outcome is identical to the recording (exit 1 if not).

Results on stdout (``--json``: one object), progress and errors on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from swarm_actors._cli._view import Display

__all__ = ["add_parsers"]

AddOptions = Callable[[argparse.ArgumentParser], None]


def _common(parser: argparse.ArgumentParser, add_data_dir: AddOptions) -> None:
    add_data_dir(parser)
    parser.add_argument("--run", default=None, help="the run (an id, a prefix, a path; latest)")
    parser.add_argument(
        "--nats", default=None, metavar="URL", help="the server of a run on a server of your own"
    )
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")


def _seq(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a journal sequence is a number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"a journal sequence is >= 0, got {value}")
    return value


def add_parsers(
    replay_sub: Any,
    *,
    add_data_dir: AddOptions,
    add_brain: AddOptions,
    add_verbosity: Callable[..., None],
) -> None:
    """Add ``revert``, ``rerun`` and ``run`` to the ``replay`` command's subparsers."""
    p = replay_sub.add_parser(
        "revert",
        help="undo a change and what depends on it, as new events",
        description="Undo the file change at SEQ and every later change to the same files, "
        "as new events of the operator (history is never rewritten; a revert can be reverted).",
    )
    add_verbosity(p, default=argparse.SUPPRESS)
    p.add_argument("seq", type=_seq, metavar="SEQ", help="the change's journal sequence")
    p.add_argument("--reason", default="", help="why, recorded in the operator's decision")
    p.add_argument("--dry-run", action="store_true", help="say what would be undone; write nothing")
    _common(p, add_data_dir)
    p.set_defaults(func=_cmd_revert)

    p = replay_sub.add_parser(
        "rerun",
        help="fork a new run from the workspace at SEQ, calling the brain again",
        description="A new run whose workspace is the run's right after event SEQ (0: its "
        "start); the swarm runs again and its brain is called again (unlike `replay run`).",
    )
    add_verbosity(p, default=argparse.SUPPRESS)
    p.add_argument("seq", type=_seq, metavar="SEQ", help="the event to fork after (0: the start)")
    add_brain(p)
    p.add_argument("--coders", type=int, default=None, help="coders (default: the run's)")
    _common(p, add_data_dir)
    p.set_defaults(func=_cmd_rerun)

    p = replay_sub.add_parser(
        "run",
        help="re-execute the run with its recorded model answers: no model call",
        description="A new run from the run's start, its brain answering from the run's "
        "recorded model calls (none made); says whether the outcome is the recorded one.",
    )
    add_verbosity(p, default=argparse.SUPPRESS)
    _common(p, add_data_dir)
    p.set_defaults(func=_cmd_run)


def _display(args: argparse.Namespace, title: str) -> Display:
    """Progress on stderr while the swarm runs (none with ``-q``)."""
    from swarm_actors._cli._view import make_display

    return make_display(quiet=bool(args.quiet), json_out=args.json, title=title)


def _fail(command: str, exc: BaseException | str, code: int) -> int:
    print(f"swarm-actors replay {command}: {exc}", file=sys.stderr)
    return code


def _print(args: argparse.Namespace, report: dict[str, Any], lines: list[str]) -> None:
    if args.json:
        print(json.dumps(report))
    else:
        print("\n".join(lines))


def _cmd_revert(args: argparse.Namespace) -> int:
    import msgspec

    from swarm_actors.errors import InvalidArgumentError, ReplayError, SwarmError
    from swarm_actors.replay import revert

    try:
        result = asyncio.run(
            revert(
                args.seq,
                run=args.run,
                data_dir=args.data_dir,
                nats=args.nats,
                reason=args.reason,
                dry_run=args.dry_run,
            )
        )
    except InvalidArgumentError as exc:
        return _fail("revert", exc, 2)
    except (ReplayError, SwarmError) as exc:  # irreversible, a file edited by hand, a store
        return _fail("revert", exc, 1)
    except TimeoutError as exc:  # another revert of the run held its lock all along
        return _fail("revert", exc, 1)
    report = msgspec.to_builtins(result)
    verb = "would undo" if result.dry_run else "undid"
    lines = [f"run {result.run_id}: {verb} {', '.join(map(str, result.undone))}"]
    lines += [f"  {path}: {digest[:12] or 'deleted'}" for path, digest in result.files.items()]
    if result.decision:
        lines.append(
            f"  new events: decision {result.decision}, changes "
            f"{', '.join(map(str, result.changes))} (revert one with `replay revert SEQ`)"
        )
    elif not result.dry_run:
        lines.append("  the files are already so: nothing written")
    _print(args, report, lines)
    return 0


def _brain(args: argparse.Namespace) -> Any:
    from swarm_actors._cli._demo import make_brain

    return make_brain(args)


def _cmd_rerun(args: argparse.Namespace) -> int:
    from swarm_actors.errors import InvalidArgumentError, SwarmError
    from swarm_actors.replay import rerun

    try:
        brain = _brain(args)
        if args.coders is not None and args.coders < 1:
            raise InvalidArgumentError(f"--coders must be >= 1, got {args.coders}")
        title = f"rerun from event {args.seq} (the brain is called again)"
        with _display(args, title) as display:
            new, summary = asyncio.run(
                rerun(
                    args.seq,
                    run=args.run,
                    data_dir=args.data_dir,
                    nats=args.nats,
                    brain=brain,
                    coders=args.coders,
                    on_progress=display.progress,
                )
            )
    except InvalidArgumentError as exc:
        return _fail("rerun", exc, 2)
    except SwarmError as exc:
        return _fail("rerun", exc, 1)
    except KeyboardInterrupt:
        return _fail("rerun", "interrupted", 130)
    report = json.loads(new.summary.read_text())
    forked = report["forked_from"]
    lines = [
        f"run {new.run_id}: forked from run {forked['run']} at event {forked['sequence']}",
        f"  approved {summary.approved}, rejected {summary.rejected}, escalated "
        f"{summary.escalated}; tests {'pass' if summary.ok else 'FAIL'}",
        f"  its workspace: {new.workspace}",
    ]
    _print(args, report, lines)
    return 0 if summary.ok else 1


def _cmd_run(args: argparse.Namespace) -> int:
    from swarm_actors.errors import InvalidArgumentError, SwarmError
    from swarm_actors.replay import replay_run

    try:
        with _display(args, "replay with the recorded answers (no model call)") as display:
            outcome = asyncio.run(
                replay_run(
                    run=args.run,
                    data_dir=args.data_dir,
                    nats=args.nats,
                    on_progress=display.progress,
                )
            )
    except InvalidArgumentError as exc:
        return _fail("run", exc, 2)
    except SwarmError as exc:
        return _fail("run", exc, 1)
    except KeyboardInterrupt:
        return _fail("run", "interrupted", 130)
    report = {
        "run_id": outcome.run.run_id,
        "replay_of": outcome.replay_of,
        "answers": outcome.answers,
        "identical": outcome.identical,
        "differences": list(outcome.differences),
        "seconds": round(outcome.seconds, 3),
        "run_dir": str(outcome.run.root),
    }
    same = "identical to the recording" if outcome.identical else "DIFFERENT from the recording"
    lines = [
        f"run {outcome.run.run_id}: a replay of {outcome.replay_of}, {outcome.answers} answers "
        f"from the recording, no model call; the workspace is {same}",
        *(f"  differs: {p}" for p in outcome.differences),
    ]
    _print(args, report, lines)
    return 0 if outcome.identical else 1
