"""The ``Brain`` protocol and its values: chat messages in; text, usage and finish reason out.

A request is a ``BrainRequest`` (messages and sampling parameters); its ``digest`` (SHA-256 of
its canonical JSON) is the key of the response cache and of replay. A response is a
``BrainResponse``: the text, token ``Usage``, the finish reason, and what the guardrails did
(cache hit, attempts, latency, cost), which ``RecordingBrain`` writes into ``ModelCall`` events.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal, Protocol, runtime_checkable

import msgspec

from swarm_actors._exceptions import BrainReplyError, InvalidArgumentError

__all__ = [
    "Brain",
    "BrainRequest",
    "BrainResponse",
    "Message",
    "Role",
    "Usage",
    "assistant",
    "estimate_tokens",
    "system",
    "user",
]

Role = Literal["system", "user", "assistant", "tool"]
"""Who says a message: the OpenAI chat roles."""


class Message(msgspec.Struct, frozen=True, gc=False):
    """One chat message: who says it, and what."""

    role: Role
    """``"system"`` (the instruction), ``"user"``, ``"assistant"`` or ``"tool"``."""
    content: str
    """The text."""


def system(content: str) -> Message:
    """A system message: the instruction."""
    return Message("system", content)


def user(content: str) -> Message:
    """A user message."""
    return Message("user", content)


def assistant(content: str) -> Message:
    """An assistant message (an earlier answer, in a conversation)."""
    return Message("assistant", content)


class Usage(msgspec.Struct, frozen=True, gc=False):
    """Tokens a call used, as the provider counted them (estimated where it did not say)."""

    prompt_tokens: int = 0
    """Tokens in."""
    completion_tokens: int = 0
    """Tokens out."""

    @property
    def total_tokens(self) -> int:
        """Tokens in and out."""
        return self.prompt_tokens + self.completion_tokens


_encoder = msgspec.json.Encoder(order="sorted")


class BrainRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A chat request: messages and sampling parameters.

    ``model`` empty means the brain's default. ``json_output`` asks for a JSON object (the
    OpenAI ``response_format``); the response's ``json()`` parses it. ``idempotent`` (the
    default) says the request may be sent more than once: retried after an error that may
    have reached the provider (a 5xx, a timeout), and raced by ``SpeculativeBrain``. A
    request that must not be repeated (``idempotent=False``) is retried only when it provably
    never reached the provider (a 429, a refused connection).
    """

    messages: tuple[Message, ...]
    """The conversation, instruction (``system``) first."""
    model: str = ""
    """The model to ask; empty for the brain's default."""
    temperature: float | None = None
    """Sampling temperature; ``None`` for the provider's default."""
    max_tokens: int | None = None
    """Most tokens to generate; ``None`` for the provider's default."""
    json_output: bool = False
    """Ask for a JSON object."""
    stop: tuple[str, ...] = ()
    """Stop sequences."""
    idempotent: bool = True
    """Whether the request may be sent more than once (retries, speculation)."""

    def __post_init__(self) -> None:
        if not self.messages:
            raise InvalidArgumentError("a BrainRequest needs at least one message")

    def canonical(self) -> bytes:
        """The request's normalized bytes: canonical JSON of what a provider is sent.

        ``idempotent`` is left out (it changes how the request is sent, not what it asks).
        """
        return _encoder.encode(
            {
                "messages": [(m.role, m.content) for m in self.messages],
                "model": self.model,
                "temperature": self.temperature,
                "max_tokens": self.max_tokens,
                "json_output": self.json_output,
                "stop": self.stop,
            }
        )

    def digest(self) -> str:
        """SHA-256 hex of ``canonical()``: the cache's and replay's key."""
        return hashlib.sha256(self.canonical()).hexdigest()

    @property
    def instruction(self) -> str:
        """The system messages' text, joined: what must never be dropped."""
        return "\n\n".join(m.content for m in self.messages if m.role == "system")

    @property
    def last_user(self) -> str:
        """The text of the last user message, or ``""``."""
        return next((m.content for m in reversed(self.messages) if m.role == "user"), "")


class BrainResponse(msgspec.Struct, frozen=True, kw_only=True):
    """A brain's answer, and what it took to get it."""

    text: str
    """The answer."""
    usage: Usage = Usage()
    """Tokens used."""
    finish_reason: str = "stop"
    """Why generation stopped: ``"stop"``, ``"length"``, ``"content_filter"``..."""
    model: str = ""
    """The model that answered."""
    provider: str = ""
    """Who served it: ``"openai"``, a host name, ``"scripted"``, ``"replay"``..."""
    cache_hit: bool = False
    """Answered from the response cache: no request was made."""
    attempts: int = 1
    """Requests made (retries included); 0 for a cache hit or a replay."""
    latency_ns: int = 0
    """Wall-clock time of the call, retries and waits included."""
    cost: float = 0.0
    """What it cost where prices are configured."""
    speculative: bool = False
    """The winner of a speculative race."""

    def json(self) -> Any:
        """The text parsed as JSON; ``BrainReplyError`` if it is not JSON."""
        try:
            return msgspec.json.decode(self.text)
        except msgspec.DecodeError as exc:
            raise BrainReplyError(
                f"the reply is not valid JSON ({exc}): {self.text[:80]!r}",
                provider=self.provider,
            ) from exc


@runtime_checkable
class Brain(Protocol):
    """Anything that answers chat requests: a model client, a script, a replay, rules.

    ``complete`` raises a ``BrainError`` (``swarm_actors.errors``) when it cannot answer,
    never another exception for a bad reply, and lets cancellation through. Brains compose:
    ``GuardedBrain``, ``RecordingBrain`` and ``SpeculativeBrain`` wrap others.
    """

    @property
    def provider(self) -> str:
        """Who answers: a name for events, breakers and logs."""
        ...

    async def complete(self, request: BrainRequest) -> BrainResponse:
        """The answer to ``request``."""
        ...


def estimate_tokens(text: str) -> int:
    """Tokens in ``text``: a rough estimate (4 characters a token, at least one per word).

    Used where no tokenizer is installed and the provider did not count (``token_counter()``,
    ``ContextCompressor``'s default, counts with ``tiktoken`` when it is installed).
    """
    return max(len(text) // 4, len(text.split())) if text else 0
