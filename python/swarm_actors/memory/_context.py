"""Short-term memory: one agent's conversation kept within its brain's context limit.

``ContextWindow`` holds the turns of a conversation and builds each ``BrainRequest`` from them.
Over the limit, it drops the oldest turns first (never a system message, never the newest
turn) and puts in their place one message that says what was dropped: a summary of each turn
(``summarize``, by default its first line) with its SHA-256, so the model knows that something
was there and what. What it dropped is also kept (``dropped``) for whoever needs the full
text. A newest turn too large by itself is cut by ``brains.ContextCompressor`` (head and tail
kept, the cut marked). Tokens are counted as the brains count them (``token_counter()``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import msgspec

from swarm_actors._exceptions import InvalidArgumentError
from swarm_actors._log import get_logger
from swarm_actors.brains import BrainRequest, ContextCompressor, Message, token_counter

__all__ = ["ContextWindow", "Dropped"]

log = get_logger("swarm_actors.memory")

_PER_MESSAGE = 4  # framing tokens per chat message, as brains._compress counts them
_SUMMARY_CHARS = 160
_NAMED = 20  # dropped turns named in the note; older ones only counted


class Dropped(msgspec.Struct, frozen=True, kw_only=True):
    """One turn the window dropped to stay within its limit."""

    turn: int
    """Its position in the conversation (0 = the first turn added)."""
    role: str
    tokens: int
    summary: str
    """What the window said in its place."""
    sha256: str
    """SHA-256 hex of its whole content."""
    content: str
    """Its whole content (the window keeps it; the model does not see it)."""


def first_line(text: str) -> str:
    """The default summary of a dropped turn: its first non-empty line, shortened."""
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line if len(line) <= _SUMMARY_CHARS else line[: _SUMMARY_CHARS - 3] + "..."


class ContextWindow:
    """An agent's conversation, kept within ``max_tokens`` when turned into a request.

    ``count``: a text's tokens (default ``token_counter()``). ``summarize``: a dropped turn's
    summary (default its first line; pass one that asks a brain to summarise, if you have one).
    """

    def __init__(
        self,
        max_tokens: int,
        *,
        count: Callable[[str], int] | None = None,
        summarize: Callable[[Message], str] | None = None,
    ) -> None:
        if max_tokens < 64:
            raise InvalidArgumentError(f"ContextWindow needs max_tokens >= 64, got {max_tokens}")
        self.max_tokens = max_tokens
        self._count = count or token_counter()
        self._summarize = summarize or (lambda m: first_line(m.content))
        self._turns: list[tuple[int, Message]] = []
        self._next = 0
        self.dropped: list[Dropped] = []
        """Every turn dropped so far, oldest first."""

    def add(self, message: Message) -> None:
        """Add a turn to the conversation (the window trims when a request is built)."""
        self._turns.append((self._next, message))
        self._next += 1

    @property
    def messages(self) -> tuple[Message, ...]:
        """The turns kept now (before any summary message)."""
        return tuple(m for _, m in self._turns)

    def _tokens(self, message: Message) -> int:
        return self._count(message.content) + _PER_MESSAGE

    def request(self, **options: object) -> BrainRequest:
        """A ``BrainRequest`` of the conversation within ``max_tokens`` (trimming it first).

        ``options`` are ``BrainRequest``'s other fields (``max_tokens`` of the answer...).
        """
        self._trim()
        messages = list(self.messages)
        note = self._note()
        if note is not None:
            at = sum(1 for m in messages if m.role == "system")
            messages.insert(at, note)
        request = BrainRequest(messages=tuple(messages), **options)  # type: ignore[arg-type]
        keep = min(64, self.max_tokens // 8)  # what the compressor keeps of a cut message
        return ContextCompressor(self.max_tokens, min_keep=keep, count=self._count).compress(
            request
        )

    def _note(self) -> Message | None:
        """The message standing for the dropped turns (the last 20 named, older ones counted)."""
        if not self.dropped:
            return None
        lines = [f"[{len(self.dropped)} earlier turns were dropped to fit the context limit:"]
        if len(self.dropped) > _NAMED:
            lines.append(f"- {len(self.dropped) - _NAMED} older turns, not named here")
        for d in self.dropped[-_NAMED:]:
            lines.append(f"- turn {d.turn} ({d.role}, sha256 {d.sha256[:12]}): {d.summary}")
        lines.append("]")
        return Message("user", "\n".join(lines))

    def _trim(self) -> None:
        """Drop the oldest non-system turns (not the newest) until the rest and the note fit."""
        while True:
            kept = sum(self._tokens(m) for _, m in self._turns)
            note = self._note()
            total = kept + (self._tokens(note) if note is not None else 0)
            if total <= self.max_tokens:
                return
            droppable = [i for i, (_, m) in enumerate(self._turns[:-1]) if m.role != "system"]
            if not droppable:
                return  # the newest turn alone: ContextCompressor cuts it
            turn, message = self._turns.pop(droppable[0])
            summary = self._summarize(message)
            self.dropped.append(
                Dropped(
                    turn=turn,
                    role=message.role,
                    tokens=self._tokens(message),
                    summary=summary,
                    sha256=hashlib.sha256(message.content.encode()).hexdigest(),
                    content=message.content,
                )
            )
            log.info("memory.context_dropped", turn=turn, role=message.role)
