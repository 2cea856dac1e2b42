"""What ``swarm-actors demo`` shows: live progress on stderr, the summary on stdout.

On a terminal the progress is a ``rich`` live table (each agent and what it is doing, items
done and pending, events per second), redrawn a few times a second on stderr; elsewhere it is
plain lines on stderr, one per change of what an agent does. The summary at the end is a
``rich`` table on a terminal and ``key: value`` lines otherwise. Nothing here writes progress
to stdout.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

__all__ = ["Display", "LiveDisplay", "NullDisplay", "PlainDisplay", "SummaryView", "make_display"]


class ProgressLike(Protocol):
    """The fields of ``swarm_actors.swarm.Progress`` the display reads."""

    @property
    def agent(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def activity(self) -> str: ...
    @property
    def items_done(self) -> int: ...
    @property
    def items_pending(self) -> int: ...
    @property
    def events(self) -> int: ...


@dataclass
class _State:
    """What the display knows; updated in the event loop, read by the refresh thread."""

    started: float = field(default_factory=time.monotonic)
    agents: dict[str, tuple[str, str]] = field(default_factory=dict)
    done: int = 0
    pending: int = 0
    events: int = 0
    window: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=64))

    def update(self, p: ProgressLike) -> bool:
        """Take one progress report in; whether the agent's activity changed."""
        now = time.monotonic()
        changed = self.agents.get(p.agent) != (p.role, p.activity)
        self.agents[p.agent] = (p.role, p.activity)
        self.done, self.pending, self.events = p.items_done, p.items_pending, p.events
        self.window.append((now, p.events))
        return changed

    def rate(self) -> float:
        """Events per second over the last few seconds (over the whole run before that)."""
        now = time.monotonic()
        recent = [(t, n) for t, n in self.window if now - t <= 3.0]
        if len(recent) >= 2 and recent[-1][0] > recent[0][0]:
            return (recent[-1][1] - recent[0][1]) / (recent[-1][0] - recent[0][0])
        elapsed = now - self.started
        return self.events / elapsed if elapsed > 0 else 0.0


class Display(Protocol):
    """Where progress goes while the swarm runs."""

    def __enter__(self) -> Display: ...
    def __exit__(self, *exc: object) -> None: ...
    def progress(self, p: ProgressLike) -> None:
        """One progress report from the swarm (called in the event loop's thread)."""


class NullDisplay:
    """No progress (``-q``)."""

    def __enter__(self) -> NullDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def progress(self, p: ProgressLike) -> None:
        """Drop it."""


class PlainDisplay:
    """One line on ``stream`` (stderr) each time an agent starts doing something else."""

    def __init__(self, stream: IO[str], title: str) -> None:
        self._stream = stream
        self._title = title
        self._state = _State()

    def __enter__(self) -> PlainDisplay:
        print(self._title, file=self._stream, flush=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stream.flush()

    def progress(self, p: ProgressLike) -> None:
        """Print the change, with the counters."""
        if not self._state.update(p):
            return
        s = self._state
        elapsed = time.monotonic() - s.started
        print(
            f"[{elapsed:6.1f}s] {p.agent} ({p.role}): {p.activity} "
            f"[items {s.done} done, {s.pending} pending; {s.events} events]",
            file=self._stream,
            flush=True,
        )


class LiveDisplay:
    """A ``rich`` live table on stderr, redrawn by rich's refresh thread."""

    def __init__(self, title: str, *, file: IO[str] | None = None) -> None:
        from rich.console import Console
        from rich.live import Live

        self._title = title
        self._state = _State()
        self._lock = threading.Lock()
        self._swapped: list[tuple[logging.StreamHandler[Any], Any]] = []
        self._console = Console(file=file or sys.stderr, stderr=file is None)
        self._live = Live(
            get_renderable=self._render,
            console=self._console,
            refresh_per_second=8,
            transient=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )

    def __enter__(self) -> LiveDisplay:
        self._live.start()
        # Log records (-v) go above the live table instead of through it.
        writer: Any = _ConsoleWriter(self._console)
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream in (
                sys.stderr,
                sys.stdout,
            ):
                self._swapped.append((handler, handler.stream))
                handler.setStream(writer)
        return self

    def __exit__(self, *exc: object) -> None:
        for handler, stream in self._swapped:
            handler.setStream(stream)
        self._swapped.clear()
        self._live.stop()

    def progress(self, p: ProgressLike) -> None:
        """Record it; the refresh thread draws it."""
        with self._lock:
            self._state.update(p)

    def _render(self) -> RenderableType:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        with self._lock:
            s = self._state
            agents = sorted(s.agents.items(), key=lambda kv: (_ROLE_ORDER.get(kv[1][0], 9), kv[0]))
            done, pending, events, rate = s.done, s.pending, s.events, s.rate()
            elapsed = time.monotonic() - s.started
        head = Text.assemble(
            (self._title, "bold"),
            f"  {elapsed:5.1f} s  ",
            ("items ", "dim"),
            (f"{done} done", "green"),
            ", ",
            (f"{pending} pending", "yellow"),
            ("  events ", "dim"),
            f"{events} ({rate:.0f}/s)",
        )
        table = Table(box=None, pad_edge=False, show_header=True, header_style="dim")
        table.add_column("agent", no_wrap=True)
        table.add_column("role", no_wrap=True)
        table.add_column("doing", overflow="ellipsis", no_wrap=True)
        for agent, (role, activity) in agents:
            table.add_row(agent, Text(role, style=_ROLE_STYLE.get(role, "")), activity)
        return Group(head, table)


class _ConsoleWriter:
    """A stream that prints through a rich console (above its live display)."""

    def __init__(self, console: Console) -> None:
        self._console = console

    def write(self, text: str) -> int:
        self._console.print(text, end="", markup=False, highlight=False, soft_wrap=True)
        return len(text)

    def flush(self) -> None:
        pass


_ROLE_ORDER = {"architect": 0, "coder": 1, "reviewer": 2}
_ROLE_STYLE = {"architect": "magenta", "coder": "cyan", "reviewer": "blue"}


def make_display(
    *, quiet: bool, json_out: bool, title: str, isatty: Callable[[IO[str]], bool] | None = None
) -> Display:
    """The display for this process: live when stdout and stderr are terminals, else plain.

    ``-q`` shows no progress. With ``--json`` stdout is for the JSON object only, so the
    progress stays on stderr either way (live when stderr is a terminal).
    """
    tty = isatty or (lambda stream: stream.isatty())
    if quiet:
        return NullDisplay()
    live = tty(sys.stderr) and (json_out or tty(sys.stdout))
    return LiveDisplay(title) if live else PlainDisplay(sys.stderr, title)


@dataclass(frozen=True)
class SummaryView:
    """The end of a run as the user reads it: the numbers, where the changes are, what next."""

    rows: Sequence[tuple[str, str]]
    take: Sequence[str]
    """How to take the approved changes (lines)."""
    next_steps: Sequence[str]
    """Commands to replay, verify and view the run."""
    ok: bool
    headline: str

    def print(self, stream: IO[str], *, rich_out: bool) -> None:
        """Write it to ``stream``: a rich table when ``rich_out``, else plain lines."""
        if rich_out:
            self._print_rich(stream)
            return
        print(self.headline, file=stream)
        width = max(len(k) for k, _ in self.rows)
        for key, value in self.rows:
            print(f"  {key:<{width}}  {value}", file=stream)
        for line in (*self.take, *self.next_steps):
            print(line, file=stream)
        stream.flush()

    def _print_rich(self, stream: IO[str]) -> None:  # pragma: no cover - needs a terminal
        from rich.console import Console
        from rich.table import Table

        console = Console(file=stream)
        console.print(self.headline, style="bold green" if self.ok else "bold red")
        table = Table()
        table.add_column("")
        table.add_column("", justify="right")
        table.show_header = False
        for key, value in self.rows:
            table.add_row(key, value)
        console.print(table)
        for line in self.take:
            console.print(line, markup=False, highlight=False)
        if self.next_steps:
            console.print("next:", style="bold")
            for line in self.next_steps:
                console.print(f"  {line}", markup=False, highlight=False)
