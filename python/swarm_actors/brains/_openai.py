"""An OpenAI-compatible chat client: the protocol vLLM, llama.cpp, Ollama and hosted APIs speak.

One ``POST {base_url}/chat/completions`` per ``complete``, with ``httpx`` (not the ``openai``
SDK: the SDK brings its own retry loop, pydantic models and a much larger import for one
endpoint; with httpx the guardrails' loop is the only one, and the reply is read as bytes
under a size cap before anything parses it). No retries here: ``GuardedBrain`` retries what
the errors mark ``retryable``.

Every failure is a typed ``BrainError``: ``BrainConfigError`` for a missing key or model (at
construction, naming the argument and environment variable), ``BrainConnectionError`` for a
refused or broken connection (a body cut mid-stream), ``BrainTimeoutError`` for a slow or
stalled reply, ``BrainHTTPError`` / ``BrainRateLimitedError`` (with ``Retry-After``) for
error statuses, ``BrainReplyError`` for a wrong content type, malformed JSON, no choices,
empty content, or a body over ``max_reply_bytes``.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec

from swarm_actors._exceptions import (
    BrainConfigError,
    BrainConnectionError,
    BrainHTTPError,
    BrainRateLimitedError,
    BrainReplyError,
    BrainTimeoutError,
)
from swarm_actors._log import get_logger
from swarm_actors.brains._types import BrainRequest, BrainResponse, Usage

__all__ = ["DEFAULT_BASE_URL", "OpenAIBrain"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
"""The base URL used when neither ``base_url=`` nor ``OPENAI_BASE_URL`` gives one."""

log = get_logger("swarm_actors.brains")


class _Choice(msgspec.Struct):
    message: dict[str, Any] = {}
    finish_reason: str | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _Completion(msgspec.Struct):
    choices: list[_Choice] = []
    usage: _Usage | None = None
    model: str = ""


_decoder = msgspec.json.Decoder(_Completion)
_encoder = msgspec.json.Encoder()


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class OpenAIBrain:
    """A brain that asks an OpenAI-compatible chat-completions endpoint.

    ``base_url`` (default ``OPENAI_BASE_URL``, else ``DEFAULT_BASE_URL``), ``api_key``
    (default ``OPENAI_API_KEY``; ``""`` sends none, for a local server that needs none) and
    ``model`` (default ``SWARM_MODEL``, else ``OPENAI_MODEL``) come from the arguments or the
    environment; a missing key or model is a ``BrainConfigError`` here, not at the first call.
    ``connect_timeout`` bounds reaching the server (an unreachable base URL fails within it),
    ``timeout`` the whole call. ``client`` shares an ``httpx.AsyncClient`` (else the brain
    owns one; ``aclose`` it, or use ``async with``).
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        model: str | None = None,
        provider: str | None = None,
        timeout: float = 120.0,
        connect_timeout: float = 5.0,
        max_reply_bytes: int = 8 * 1024 * 1024,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        base = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BrainConfigError(
                f"invalid base URL {base!r}: give an http(s) URL such as "
                f"{DEFAULT_BASE_URL!r} (base_url= or OPENAI_BASE_URL)"
            )
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        if key is None:
            raise BrainConfigError(
                "no API key: pass api_key= or set OPENAI_API_KEY "
                "(api_key='' for a local server that needs none)"
            )
        name = model or os.environ.get("SWARM_MODEL") or os.environ.get("OPENAI_MODEL")
        if not name:
            raise BrainConfigError("no model: pass model= or set SWARM_MODEL (or OPENAI_MODEL)")
        if timeout <= 0 or connect_timeout <= 0 or max_reply_bytes <= 0:
            raise BrainConfigError("timeout, connect_timeout and max_reply_bytes must be > 0")
        self._url = base.rstrip("/") + "/chat/completions"
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        self.model = name
        """The default model."""
        self._provider = provider or parts.hostname
        self._timeout = timeout
        self._max_reply = max_reply_bytes
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=connect_timeout)
        )

    @property
    def provider(self) -> str:
        """The provider's name: ``provider=``, else the base URL's host."""
        return self._provider

    @property
    def url(self) -> str:
        """The chat-completions URL requests go to."""
        return self._url

    def body(self, request: BrainRequest) -> bytes:
        """The JSON body sent for ``request``."""
        body: dict[str, Any] = {
            "model": request.model or self.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.stop:
            body["stop"] = list(request.stop)
        if request.json_output:
            body["response_format"] = {"type": "json_object"}
        return _encoder.encode(body)

    async def complete(self, request: BrainRequest) -> BrainResponse:
        """One request to the endpoint; its answer, or a typed ``BrainError``."""
        started = time.perf_counter_ns()
        try:
            async with asyncio.timeout(self._timeout):
                status, headers, data = await self._post(self.body(request))
        except TimeoutError:
            raise BrainTimeoutError(
                f"no complete reply from {self._url} within {self._timeout} s",
                provider=self._provider,
                retryable=True,
            ) from None
        response = self._parse(status, headers, data, request)
        return msgspec.structs.replace(response, latency_ns=time.perf_counter_ns() - started)

    async def _post(self, body: bytes) -> tuple[int, httpx.Headers, bytes]:
        p = self._provider
        try:
            async with self._client.stream(
                "POST", self._url, content=body, headers=self._headers
            ) as reply:
                chunks: list[bytes] = []
                size = 0
                async for chunk in reply.aiter_bytes():
                    size += len(chunk)
                    if size > self._max_reply:
                        raise BrainReplyError(
                            f"the reply from {self._url} is over {self._max_reply} bytes "
                            "(max_reply_bytes=)",
                            provider=p,
                        )
                    chunks.append(chunk)
                return reply.status_code, reply.headers, b"".join(chunks)
        except httpx.ConnectTimeout as exc:
            raise BrainConnectionError(
                f"cannot reach {self._url} within the connect timeout "
                "(check base_url= / OPENAI_BASE_URL and that the server is up)",
                provider=p,
                retryable=True,
            ) from exc
        except httpx.TimeoutException as exc:
            raise BrainTimeoutError(
                f"{type(exc).__name__} from {self._url}: the server is slow or stalled",
                provider=p,
                retryable=True,
            ) from exc
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
            raise BrainConnectionError(
                f"cannot reach {self._url} or the reply was cut: {exc!r} "
                "(check base_url= / OPENAI_BASE_URL and that the server is up)",
                provider=p,
                retryable=True,
            ) from exc
        except httpx.HTTPError as exc:
            raise BrainConnectionError(
                f"HTTP failure talking to {self._url}: {exc!r}", provider=p, retryable=True
            ) from exc

    def _parse(
        self, status: int, headers: httpx.Headers, data: bytes, request: BrainRequest
    ) -> BrainResponse:
        p = self._provider
        if status == 429:
            after = _retry_after(headers.get("retry-after"))
            raise BrainRateLimitedError(
                f"{self._url} is rate limiting (429), retry after {after} s",
                status=status,
                provider=p,
                retryable=True,
                retry_after=after,
            )
        if status >= 400:
            raise BrainHTTPError(
                f"{self._url} answered {status}: {data[:200].decode(errors='replace')}",
                status=status,
                provider=p,
                retryable=status >= 500 or status == 408,
                retry_after=_retry_after(headers.get("retry-after")),
            )
        ctype = headers.get("content-type", "")
        if not ctype.startswith("application/json"):
            raise BrainReplyError(
                f"{self._url} answered with content type {ctype!r}, not application/json "
                "(is base_url the API's, ending in /v1?)",
                provider=p,
            )
        try:
            completion = _decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise BrainReplyError(
                f"malformed reply from {self._url}: {exc}; body starts {data[:80]!r}", provider=p
            ) from exc
        if not completion.choices:
            raise BrainReplyError(f"the reply from {self._url} has no choices", provider=p)
        choice = completion.choices[0]
        text = choice.message.get("content")
        if not isinstance(text, str) or not text.strip():
            raise BrainReplyError(
                f"the reply from {self._url} has no content (finish reason "
                f"{choice.finish_reason!r})",
                provider=p,
            )
        usage = completion.usage or _Usage()
        response = BrainResponse(
            text=text,
            usage=Usage(usage.prompt_tokens, usage.completion_tokens),
            finish_reason=choice.finish_reason or "stop",
            model=completion.model or request.model or self.model,
            provider=p,
        )
        if request.json_output:
            response.json()  # BrainReplyError if the model ignored the request for JSON
        return response

    async def aclose(self) -> None:
        """Close the HTTP client if this brain owns it."""
        if self._own_client:
            await self._client.aclose()

    async def __aenter__(self) -> OpenAIBrain:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"OpenAIBrain({self._url!r}, model={self.model!r})"
