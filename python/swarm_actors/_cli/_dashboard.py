"""``swarm-actors dashboard``: mission control for a run, in the browser.

Finds the run (``--data-dir`` / ``--run``, as every command that reads runs), checks that it
has a journal (live through its ``live.json``, or its store) or takes ``--nats URL``, binds
the address (loopback by default; any other needs a token: ``--token``, else
``$SWARM_DASHBOARD_TOKEN``, else one made up here and printed in the URL), prints the URL on
stdout (``--json``: one object) and serves until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from swarm_actors._runs import run_dir
from swarm_actors.errors import InvalidArgumentError, RunNotFoundError

if TYPE_CHECKING:
    from swarm_actors._cli._parsers import Subparsers

__all__ = ["JAEGER_ENV", "TOKEN_ENV", "add_parser", "run_dashboard"]

TOKEN_ENV = "SWARM_DASHBOARD_TOKEN"
"""The environment variable holding the dashboard's access token when ``--token`` is not given."""

JAEGER_ENV = "SWARM_JAEGER_URL"
"""The environment variable naming the user's Jaeger UI when ``--jaeger`` is not given."""


def add_parser(sub: Subparsers) -> None:
    """Register ``dashboard`` on the command's subparsers."""
    p = sub.add_parser(
        "dashboard",
        help="mission control for a run, in the browser (live while it goes on)",
        description="Serve a local page showing a run: the agent graph, the event log, "
        "diffs and verdicts, traces, model calls, and a replay slider over the workspace.",
    )
    p.add_argument("--data-dir", default=None, help="where runs are kept")
    p.add_argument("--run", default=None, help="the run to show (default: the latest)")
    p.add_argument(
        "--nats", metavar="URL", help="read the run from this NATS server (demo --nats URL)"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback)")
    p.add_argument("--port", type=int, default=8765, help="port (default: 8765; 0: any free)")
    p.add_argument(
        "--token",
        default=None,
        help=f"access token, required off loopback (default: ${TOKEN_ENV}, else one made up)",
    )
    p.add_argument(
        "--jaeger", metavar="URL", help=f"your Jaeger UI, for trace links (default: ${JAEGER_ENV})"
    )
    p.add_argument("--json", action="store_true", help="print the URL as one JSON object")
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    try:
        return run_dashboard(args)
    except InvalidArgumentError as exc:
        print(f"swarm-actors dashboard: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _jaeger(value: str | None) -> str | None:
    value = value or os.environ.get(JAEGER_ENV) or None
    if value is not None and urlparse(value).scheme not in ("http", "https"):
        raise InvalidArgumentError(f"--jaeger must be an http(s) URL, got {value!r}")
    return value


def run_dashboard(args: argparse.Namespace) -> int:
    """Serve the dashboard for ``args`` until interrupted; the exit status."""
    try:
        from swarm_actors import _dashboard
    except ImportError as exc:  # starlette or uvicorn missing
        raise InvalidArgumentError(
            f"the dashboard needs its extra: pip install 'swarm-actors[dashboard]' ({exc})"
        ) from None
    from swarm_actors._runjournal import LIVE_FILE
    from swarm_actors.events import BlobStore

    run = run_dir(args.run, args.data_dir)
    if args.nats is None and not (
        (run.root / LIVE_FILE).exists() or (run.journal / "jetstream").is_dir()
    ):
        raise RunNotFoundError(
            f"run {run.run_id} has no journal in {run.root} (not going on, none stored): "
            "pass --nats URL for a run on a server of your own",
            run=run.run_id,
            data_dir=str(run.root.parent.parent),
        )
    jaeger = _jaeger(args.jaeger)
    loopback = _dashboard.is_loopback(args.host)
    token = args.token or os.environ.get(TOKEN_ENV) or None
    if not loopback and token is None:
        token = secrets.token_urlsafe(24)  # off loopback a token is required: make one
    sock = _dashboard.bind(args.host, args.port)
    port = sock.getsockname()[1]
    shown_host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{shown_host}:{port}/" + (f"?token={token}" if token else "")
    feed = _dashboard.Feed(
        run_id=run.run_id, blobs=BlobStore(run.blobs) if run.blobs.is_dir() else None
    )
    app = _dashboard.create_app(
        feed,
        _dashboard.follow_run(run, nats=args.nats),
        token=token,
        loopback=loopback,
        jaeger=jaeger,
        replay=_dashboard.replay_api(run, feed),
    )

    def ready() -> None:
        if args.json:
            print(json.dumps({"url": url, "run_id": run.run_id, "port": port}), flush=True)
        else:
            print(f"mission control for run {run.run_id}: {url}", flush=True)
            print("(Ctrl-C stops it)", file=sys.stderr)

    asyncio.run(_dashboard.serve(app, sock, on_ready=ready))
    return 0
