"""The dashboard's ASGI app (starlette): one page, its static modules, a JSON API and an SSE feed.

Routes::

    GET /                      the page
    GET /static/<name>         the page's modules and style, from the package (a fixed list)
    GET /api/info              the run, the feed's status, the Jaeger link template
    GET /api/rows?after=SEQ    a batch of rows after SEQ (history: the page fetches these first)
    GET /api/rows?index=I      a batch of rows from the I-th of the run
    GET /api/stream?after=SEQ  server-sent events: ``rows`` batches after SEQ, ``status``
    GET /api/event/<seq>       one event in full (a change's diff, hashes and verdicts)
    GET /api/workspace?at=SEQ  the workspace at a journal sequence (replay): files and hashes
    GET /api/file?at=SEQ&path=P one file of the workspace at SEQ

Security (:class:`Guard`, around every route): a strict Content-Security-Policy (nothing but
this origin, no inline script or style, no frames), the Host header checked against the
loopback names when bound to loopback (DNS rebinding), and when a token is set (it must be for
any other address), every request must carry it: ``?token=`` once (the page then gets it as
an HttpOnly, SameSite=Strict cookie), the cookie, or ``Authorization: Bearer``. Nothing is
served from the file system but the package's own static files (by name, from a list made at
start) and what the run's replay reconstructs: no path from a request reaches ``open``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import re
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from importlib import resources
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from swarm_actors._log import get_logger

from ._feed import Feed, FeedTask
from ._rows import event_details

__all__ = ["CSP", "TOKEN_COOKIE", "Guard", "ReplayApi", "create_app", "safe_path"]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""The page may load only this origin's scripts, styles and data: nothing from elsewhere."""

TOKEN_COOKIE = "swarm_dashboard_token"
"""The cookie that carries the access token after the first ``?token=`` visit."""

log = get_logger(__name__)

_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}
_BATCH = 5000  # rows per SSE message while catching up (about 0.6 MB)
_HISTORY_BATCH = 10_000  # rows per /api/rows answer (about 1.3 MB)
_FRAME = 0.05  # a live page gets at most this many batches a second (1 / _FRAME)
_PING = 15.0  # seconds between keep-alive comments
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]", "::1")

ReplayApi = Callable[[str, Mapping[str, str]], Awaitable[Any]]
"""The replay endpoints' implementation: ``(what, query) -> JSON-ready value``; ``what`` is
``"workspace"`` or ``"file"``. Raises ``LookupError`` (404) or ``ValueError`` (400)."""

_SAFE_SEGMENT = re.compile(r"\A[^\x00-\x1f\\:]+\Z")


def safe_path(path: str) -> str:
    """``path`` if it is a plain relative path inside a tree, else ``ValueError``.

    Refused: empty, absolute, ``.`` or ``..`` segments, empty segments, backslashes, drive
    colons and control characters.
    """
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"not a relative path inside the workspace: {path!r}")
    if not all(_SAFE_SEGMENT.match(p) for p in parts):
        raise ValueError(f"not a plain path: {path!r}")
    return path


def _static_files() -> dict[str, tuple[bytes, str]]:
    """The page's files, read once from the package: name -> (bytes, media type)."""
    found: dict[str, tuple[bytes, str]] = {}
    for item in resources.files(__package__).joinpath("static").iterdir():
        suffix = "." + item.name.rpartition(".")[2]
        if item.is_file() and suffix in _TYPES:
            found[item.name] = (item.read_bytes(), _TYPES[suffix])
    return found


class Guard:
    """ASGI middleware: security headers on every response, the Host check, the token."""

    def __init__(self, app: ASGIApp, *, token: str | None, loopback: bool) -> None:
        self.app, self.token, self.loopback = app, token, loopback

    def _allowed(self, scope: Scope) -> tuple[bool, str | None]:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        if self.loopback:
            host = headers.get("host", "")
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if name not in _LOOPBACK_NAMES:
                return False, None
        if self.token is None:
            return True, None
        query = scope.get("query_string", b"").decode("latin-1")
        offered = []
        for part in query.split("&"):
            key, _, value = part.partition("=")
            if key == "token":
                offered.append(value)
        cookies = headers.get("cookie", "")
        for part in cookies.split(";"):
            key, _, value = part.strip().partition("=")
            if key == TOKEN_COOKIE:
                offered.append(value)
        auth = headers.get("authorization", "")
        if auth.startswith("Bearer "):
            offered.append(auth[7:])
        ok = any(hmac.compare_digest(o.encode(), self.token.encode()) for o in offered)
        return ok, (self.token if ok and "token=" in query else None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ok, set_cookie = self._allowed(scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                    (b"cross-origin-resource-policy", b"same-origin"),
                ]
                if set_cookie:
                    headers.append(
                        (
                            b"set-cookie",
                            f"{TOKEN_COOKIE}={set_cookie}; HttpOnly; SameSite=Strict; "
                            "Path=/".encode(),
                        )
                    )
                message = {**message, "headers": headers}
            await send(message)

        if not ok:
            text = (
                "this dashboard needs its token: open the URL it printed (with ?token=...)"
                if self.token
                else "unknown host: open the dashboard as http://127.0.0.1:<port>/"
            )
            await Response(text, status_code=403, media_type="text/plain")(
                scope, receive, send_with_headers
            )
            return
        await self.app(scope, receive, send_with_headers)


def _json(value: Any, status: int = 200) -> Response:
    return Response(
        msgspec.json.encode(value),
        status_code=status,
        media_type="application/json",
        headers={"cache-control": "no-store"},
    )


def _int(value: str | None, name: str, default: int = 0) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


def create_app(
    feed: Feed,
    fill: FeedTask | None = None,
    *,
    token: str | None = None,
    loopback: bool = True,
    jaeger: str | None = None,
    replay: ReplayApi | None = None,
) -> ASGIApp:
    """The dashboard's ASGI app over ``feed``, which ``fill`` fills while the app runs.

    ``token``: required of every request when set (it must be for a non-loopback address:
    the caller checks). ``jaeger``: the base URL of the user's Jaeger UI, for trace links.
    ``replay``: the workspace-at-a-point endpoints (else they answer 404).
    """
    static = _static_files()

    async def page(request: Request) -> Response:
        body, media = static["index.html"]
        return Response(body, media_type=media, headers={"cache-control": "no-store"})

    async def static_file(request: Request) -> Response:
        found = static.get(request.path_params["name"])  # a name from the list, never a path
        if found is None:
            return Response("not found", status_code=404, media_type="text/plain")
        return Response(found[0], media_type=found[1], headers={"cache-control": "no-cache"})

    async def info(request: Request) -> Response:
        return _json({**feed.info(), "jaeger": jaeger or "", "replay": replay is not None})

    async def event(request: Request) -> Response:
        try:
            seq = _int(request.path_params["seq"], "seq")
        except ValueError as exc:
            return _json({"error": str(exc)}, 400)
        entry = feed.entry(seq)
        if entry is None:
            return _json({"error": f"no event at sequence {seq} in this run"}, 404)
        cause = feed.by_event_id(entry.event.causation_id) if entry.event.causation_id else None
        details = event_details(
            entry,
            verdicts=feed.verdicts(entry.event.event_id),
            blobs=feed.blobs,
            cause_sequence=cause.sequence if cause is not None else None,
        )
        return _json(details)

    async def replayed(request: Request) -> Response:
        if replay is None:
            return _json({"error": "replay is not available for this run"}, 404)
        try:
            what = request.path_params["what"]
            if "path" in request.query_params:
                safe_path(request.query_params["path"])
            return _json(await replay(what, request.query_params))
        except LookupError as exc:
            return _json({"error": str(exc)}, 404)
        except ValueError as exc:
            return _json({"error": str(exc)}, 400)
        except Exception as exc:  # a broken history (ReplayError...): say so, keep serving
            log.error("replay failed", error=repr(exc))
            return _json({"error": f"{type(exc).__name__}: {exc}"}, 500)

    async def rows(request: Request) -> Response:
        try:
            after = _int(request.query_params.get("after"), "after")
            start = _int(request.query_params.get("index"), "index", -1)
        except ValueError as exc:
            return _json({"error": str(exc)}, 400)
        # ?index=I: rows I.. of the run (the page fetches several batches at once, in
        # parallel, so that the server sends one while the page parses another).
        index = min(max(start, 0), len(feed.rows)) if start >= 0 else feed.index_after(after)
        end = min(len(feed.rows), index + _HISTORY_BATCH)
        body = b'{"n":%d,"rows":[%s]}' % (len(feed), b",".join(feed.rows[index:end]))
        return Response(body, media_type="application/json", headers={"cache-control": "no-store"})

    async def stream(request: Request) -> Response:
        try:
            after = _int(
                request.query_params.get("after") or request.headers.get("last-event-id"),
                "after",
            )
        except ValueError as exc:
            return _json({"error": str(exc)}, 400)
        return StreamingResponse(
            _sse(feed, after),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.ensure_future(fill(feed)) if fill is not None else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = Starlette(
        routes=[
            Route("/", page),
            Route("/static/{name}", static_file),
            Route("/api/info", info),
            Route("/api/rows", rows),
            Route("/api/stream", stream),
            Route("/api/event/{seq}", event),
            Route("/api/{what:str}", replayed),
        ],
        lifespan=lifespan,
    )
    return Guard(app, token=token, loopback=loopback)


async def _sse(feed: Feed, after: int) -> AsyncGenerator[bytes, None]:
    """The page's feed: its status, the rows after ``after``, then each new batch."""
    index = feed.index_after(after)
    status = None
    while True:
        info = feed.info()
        if info["status"] != status:
            status = info["status"]
            yield b"event: status\ndata: " + msgspec.json.encode(info) + b"\n\n"
        if index < len(feed.rows):
            end = min(len(feed.rows), index + _BATCH)
            last = feed.entries[end - 1].sequence
            batch = b",".join(feed.rows[index:end])
            index = end
            # n: how many rows the server has, so that the page can tell its own backlog.
            yield b'id: %d\nevent: rows\ndata: {"n":%d,"rows":[%s]}\n\n' % (last, len(feed), batch)
            continue
        if not await feed.wait(_PING):
            yield b": ping\n\n"
            continue
        if feed.status == "live":
            await asyncio.sleep(_FRAME)  # gather what else comes within one frame's time
