"""Context compression: an oversized request is cut to fit, keeping heads and tails, saying so.

The kernel's baseline replaced long values by a digest and a preview, and so threw the
content away without telling the model. Here a request over ``max_tokens`` has the middle of
its largest non-system messages cut, each cut replaced by a marker that says how much was
cut, from where, and the SHA-256 of the whole message; the head (two thirds of what is kept)
and the tail (one third) stay. System messages (the instruction) are never cut or dropped: a
request whose instruction alone does not fit is refused (``BrainInputTooLargeError``).

Tokens are counted with ``count`` when given (e.g. a ``tiktoken`` encoding's
``lambda s: len(enc.encode(s))``), else by ``token_counter()``: ``tiktoken``'s ``cl100k_base``
when ``tiktoken`` is installed, else an estimate (``estimate_tokens``).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from typing import Any

import msgspec

from swarm_actors._exceptions import BrainInputTooLargeError, InvalidArgumentError
from swarm_actors._log import get_logger
from swarm_actors.brains._types import BrainRequest, Message, estimate_tokens

__all__ = ["ContextCompressor", "Cut", "TokenCounter", "token_counter"]

log = get_logger("swarm_actors.brains")

_PER_MESSAGE = 4  # tokens of framing per chat message (role, separators)


class TokenCounter:
    """Counts tokens with an installed tokenizer once it is loaded, estimating until then.

    ``tiktoken`` fetches its encoding files on first use, so loading it may need the network:
    it loads in a daemon thread, never in the caller, and while it loads (or when it cannot
    load, e.g. offline) counts are ``estimate_tokens``'s. ``wait(timeout)`` waits for it.
    """

    def __init__(self, load: Callable[[], Callable[[str], int]] | None) -> None:
        self._encode: Callable[[str], int] | None = None
        self._loaded = threading.Event()
        self.tokenizer = "estimate"
        """``"tiktoken:cl100k_base"`` once the tokenizer is in use, else ``"estimate"``."""
        if load is None:
            self._loaded.set()
            return
        threading.Thread(
            target=self._load, args=(load,), name="swarm-actors-tokenizer", daemon=True
        ).start()

    def _load(self, load: Callable[[], Callable[[str], int]]) -> None:
        try:
            self._encode = load()
            self.tokenizer = "tiktoken:cl100k_base"
        except Exception as exc:  # offline, a broken install: the estimate stays
            log.info("brains.tokenizer_unavailable", error=f"{type(exc).__name__}: {exc}")
        finally:
            self._loaded.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the tokenizer loaded or failed to; whether that happened in time."""
        return self._loaded.wait(timeout)

    def __call__(self, text: str) -> int:
        """Tokens in ``text``."""
        encode = self._encode
        return estimate_tokens(text) if encode is None else encode(text)


def _tiktoken_loader() -> Callable[[], Callable[[str], int]] | None:
    try:
        import tiktoken  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None

    def load() -> Callable[[str], int]:
        encoding: Any = tiktoken.get_encoding("cl100k_base")
        encode = encoding.encode
        return lambda text: len(encode(text, disallowed_special=()))

    return load


_COUNTER_LOCK = threading.Lock()
_counters: list[TokenCounter] = []  # the process's one counter (a tokenizer loads once)


def token_counter() -> TokenCounter:
    """The process's token counter: ``tiktoken`` when installed (loaded once), else estimates."""
    with _COUNTER_LOCK:
        if not _counters:
            _counters.append(TokenCounter(_tiktoken_loader()))
        return _counters[0]


class Cut(msgspec.Struct, frozen=True, kw_only=True):
    """One cut the compressor made."""

    index: int
    """The message's position in the request."""
    role: str
    """The message's role."""
    original_chars: int
    """Its length before the cut."""
    kept_chars: int
    """Characters kept (head and tail)."""
    sha256: str
    """SHA-256 hex of the whole original message."""


class ContextCompressor:
    """Fits requests into ``max_tokens`` by cutting the middle of their largest messages.

    ``min_keep`` tokens of each cut message are always kept (its head and tail). ``count``
    counts a text's tokens (default: ``token_counter()``, a tokenizer when one is installed).
    """

    def __init__(
        self,
        max_tokens: int,
        *,
        min_keep: int = 64,
        count: Callable[[str], int] | None = None,
    ) -> None:
        if max_tokens < 1 or min_keep < 0:
            raise InvalidArgumentError("ContextCompressor needs max_tokens >= 1, min_keep >= 0")
        self.max_tokens = max_tokens
        """The most tokens a request may have once compressed."""
        self._min_keep = min_keep
        self._count = count or token_counter()

    def tokens(self, request: BrainRequest) -> int:
        """The request's tokens as this compressor counts them."""
        return sum(self._count(m.content) + _PER_MESSAGE for m in request.messages)

    def compress(self, request: BrainRequest) -> BrainRequest:
        """``request`` if it fits, else a copy cut to fit (see ``compress_with_report``)."""
        return self.compress_with_report(request)[0]

    def compress_with_report(self, request: BrainRequest) -> tuple[BrainRequest, list[Cut]]:
        """The request cut to fit ``max_tokens``, and the cuts made (none if it fitted).

        Raises ``BrainInputTooLargeError`` if the system messages alone, or with every other
        message cut to ``min_keep`` tokens, do not fit.
        """
        sizes = [self._count(m.content) + _PER_MESSAGE for m in request.messages]
        excess = sum(sizes) - self.max_tokens
        if excess <= 0:
            return request, []
        instruction = sum(
            s for s, m in zip(sizes, request.messages, strict=True) if m.role == "system"
        )
        if instruction > self.max_tokens:
            raise BrainInputTooLargeError(
                f"the instruction (system messages) alone is {instruction} tokens, over the "
                f"limit of {self.max_tokens}; shorten it or raise max_tokens"
            )
        messages = list(request.messages)
        cuts: list[Cut] = []
        order = sorted(
            (i for i, m in enumerate(messages) if m.role != "system"),
            key=lambda i: sizes[i],
            reverse=True,
        )
        for i in order:
            if excess <= 0:
                break
            room = sizes[i] - _PER_MESSAGE - self._min_keep
            if room <= 0:
                continue
            target = max(self._min_keep, sizes[i] - _PER_MESSAGE - excess)
            cut_message, cut = self._cut(messages[i], i, target)
            messages[i] = cut_message
            new_size = self._count(cut_message.content) + _PER_MESSAGE
            excess -= sizes[i] - new_size
            sizes[i] = new_size
            cuts.append(cut)
        if excess > 0:
            raise BrainInputTooLargeError(
                f"the request is {sum(sizes)} tokens even with every message but the "
                f"instruction cut to {self._min_keep} tokens; the limit is {self.max_tokens}"
            )
        log.info(
            "context_compressed",
            cuts=len(cuts),
            chars_cut=sum(c.original_chars - c.kept_chars for c in cuts),
            tokens=sum(sizes),
            limit=self.max_tokens,
        )
        return msgspec.structs.replace(request, messages=tuple(messages)), cuts

    def _cut(self, message: Message, index: int, target_tokens: int) -> tuple[Message, Cut]:
        text = message.content
        digest = hashlib.sha256(text.encode()).hexdigest()
        total = max(self._count(text), 1)
        chars_per_token = len(text) / total
        marker_template = (
            "\n[... {cut} characters (about {tokens} tokens) cut from the middle of this "
            "message to fit the context limit; the head and the tail are kept; sha256 of the "
            "whole message: " + digest[:16] + " ...]\n"
        )
        marker_tokens = self._count(marker_template.format(cut=len(text), tokens=total))
        keep_chars = int(max(target_tokens - marker_tokens, 1) * chars_per_token)
        # Shrink until it fits by the counter's own measure (a tokenizer is not linear).
        for _ in range(8):
            head = keep_chars * 2 // 3
            tail = keep_chars - head
            cut_chars = len(text) - head - tail
            marker = marker_template.format(
                cut=cut_chars, tokens=max(total - int(keep_chars / chars_per_token), 0)
            )
            content = text[:head] + marker + (text[-tail:] if tail else "")
            if self._count(content) <= target_tokens or keep_chars <= 1:
                break
            keep_chars = int(keep_chars * 0.85)
        cut = Cut(
            index=index,
            role=message.role,
            original_chars=len(text),
            kept_chars=head + tail,
            sha256=digest,
        )
        return Message(message.role, content), cut
