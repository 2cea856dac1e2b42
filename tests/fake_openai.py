"""A fake OpenAI-compatible server on loopback: real HTTP, scripted misbehaviour, counted requests.

The standard library's ``ThreadingHTTPServer`` in a daemon thread, HTTP/1.1 with keep-alive.
Each request to ``/v1/chat/completions`` takes the next scripted ``Reply`` (then ``default``):
an answer, an error status (with ``Retry-After``), a slow or stalled answer, malformed JSON,
a body cut mid-stream, a wrong content type, an empty answer, an oversized body. ``requests``
counts what arrived (also served as JSON on ``GET /stats``), and ``bodies`` keeps each request's
JSON. Used by the brain tests and ``bench/bench_brains.py``, which runs it as a process of its
own (``python tests/fake_openai.py`` prints the base URL, then serves until killed) so that the
server does not share the client's interpreter lock.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One scripted reply."""

    kind: str = "ok"
    """ok, status, slow, stall, malformed, cut, content_type, empty, huge, echo."""
    text: str = "hello"
    status: int = 200
    retry_after: str | None = None
    delay: float = 0.0
    finish_reason: str = "stop"
    usage: tuple[int, int] = (11, 7)


@dataclass
class FakeOpenAI:
    """The server's state, shared with its handler threads."""

    script: deque[Reply] = field(default_factory=deque)
    default: Reply = field(default_factory=Reply)
    requests: int = 0
    bodies: list[dict[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""
    keep_bodies: bool = True
    respond: Callable[[dict[str, Any]], str] | None = None
    """When set, the text of an ``ok`` reply is ``respond(request_body)`` (a model of sorts)."""

    def push(self, *replies: Reply) -> None:
        with self.lock:
            self.script.extend(replies)

    def next(self, body: dict[str, Any]) -> Reply:
        with self.lock:
            self.requests += 1
            if self.keep_bodies:
                self.bodies.append(body)
            return self.script.popleft() if self.script else self.default


def _completion(
    reply: Reply, body: dict[str, Any], respond: Callable[[dict[str, Any]], str] | None = None
) -> bytes:
    text = reply.text
    if reply.kind == "ok" and respond is not None:
        text = respond(body)
    if reply.kind == "echo":
        text = body["messages"][-1]["content"]
    content: str | None = "" if reply.kind == "empty" else text
    return json.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": body.get("model", "m"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": reply.finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": reply.usage[0],
                "completion_tokens": reply.usage[1],
                "total_tokens": sum(reply.usage),
            },
        }
    ).encode()


def _handler(state: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms stalls

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _send(
            self, status: int, data: bytes, ctype: str = "application/json", **headers: str
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name.replace("_", "-"), value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/stats":
                self._send(200, json.dumps({"requests": state.requests}).encode())
            else:
                self._send(404, b'{"error": "not found"}')

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
            except ValueError:
                body = {}
            if self.path != "/v1/chat/completions":
                self._send(404, b'{"error": "not found"}')
                return
            reply = state.next(body)
            kind = reply.kind
            if kind == "status":
                headers = (
                    {"Retry_After": reply.retry_after} if reply.retry_after is not None else {}
                )
                self._send(reply.status, b'{"error": {"message": "scripted"}}', **headers)
            elif kind == "slow":
                state.release.wait(reply.delay)
                self._send(200, _completion(reply, body))
            elif kind == "stall":
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "1000")
                self.end_headers()
                self.wfile.write(b'{"id": ')
                self.wfile.flush()
                state.release.wait(30)
                self.close_connection = True
            elif kind == "malformed":
                self._send(200, b'{"choices": [{"message": {"content": "x"')
            elif kind == "cut":
                data = _completion(reply, body)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
            elif kind == "content_type":
                self._send(200, b"<html>login</html>", ctype="text/html")
            elif kind == "huge":
                self._send(200, b'{"pad": "' + b"x" * 200_000 + b'"}')
            else:
                self._send(200, _completion(reply, body, state.respond))

    return Handler


@contextmanager
def fake_openai(*, keep_bodies: bool = True) -> Iterator[FakeOpenAI]:
    """A running fake server (``state.url`` is its base URL, ``.../v1``), stopped after."""
    state = FakeOpenAI(keep_bodies=keep_bodies)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


if __name__ == "__main__":
    with fake_openai(keep_bodies=False) as running:
        print(running.url, flush=True)
        threading.Event().wait()
