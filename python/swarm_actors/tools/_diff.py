"""Describing a text change: the unified diff, text detection and content hashes."""

from __future__ import annotations

import difflib
import hashlib
import re

__all__ = ["is_text", "sha256_hex", "unified_diff"]

_NO_EOL = "\\ No newline at end of file\n"


def is_text(data: bytes) -> bool:
    """Whether ``data`` is UTF-8 text without NUL bytes (else it is treated as binary)."""
    if b"\0" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def sha256_hex(data: bytes | None) -> str:
    """The SHA-256 hex digest of ``data``; ``""`` for ``None`` (no file)."""
    return "" if data is None else hashlib.sha256(data).hexdigest()


_HUNK = re.compile(r"@@ -(\d+)(,\d+)? \+(\d+)(,\d+)? @@")


def unified_diff(old: list[str], new: list[str], path: str, context: int = 3) -> str:
    """``difflib.unified_diff`` of two line lists (``a/<path>`` to ``b/<path>``), made faster.

    difflib's matcher is quadratic in the worst case, and a one-line edit in a long file pays
    for every line. The common head and tail are cut off first (but ``context`` lines), the
    middle is diffed, and the hunk headers are moved back by what was cut. A line without a
    final newline is marked as ``diff`` marks it.
    """
    size = min(len(old), len(new))
    head = 0
    while head < size and old[head] == new[head]:
        head += 1
    tail = 0
    while tail < size - head and old[-1 - tail] == new[-1 - tail]:
        tail += 1
    start = max(head - context, 0)
    cut = max(tail - context, 0)
    lines = difflib.unified_diff(
        old[start : len(old) - cut],
        new[start : len(new) - cut],
        f"a/{path}",
        f"b/{path}",
        n=context,
    )
    out = []
    for line in lines:
        if start and line.startswith("@@ "):
            match = _HUNK.match(line)
            assert match is not None
            a, b = int(match[1]) + start, int(match[3]) + start
            line = f"@@ -{a}{match[2] or ''} +{b}{match[4] or ''} @@\n"
        out.append(line if line.endswith("\n") else f"{line}\n{_NO_EOL}")
    return "".join(out)
