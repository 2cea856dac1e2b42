"""The library's loggers: structlog's API in front, the standard ``logging`` module behind.

A library must not decide where its logs go, nor write to the application's stdout (structlog's
default configuration prints everything there). So every logger of this package is a
``structlog.stdlib.BoundLogger`` over ``logging.getLogger(name)`` with processors of its own:
structlog's global configuration (``structlog.configure``) is neither read nor changed, since it
belongs to the application. The ``swarm_actors`` logger has a ``NullHandler``: nothing is shown,
not even warnings, until the application configures ``logging`` (e.g.
``logging.basicConfig(level=logging.DEBUG)``).

A record's message is the event dict itself (``record.msg``), a ``dict`` whose ``str`` is the
event and its ``key=value`` pairs, so that any ``logging`` formatter prints the data, while
structlog's ``ProcessorFormatter`` (which recognizes records made this way, as by
``ProcessorFormatter.wrap_for_formatter``) gets the fields as they were logged.
"""

from __future__ import annotations

import logging
import os
import sys
from types import FrameType
from typing import Any

import structlog
from structlog.typing import EventDict, WrappedLogger

__all__ = ["ROOT", "Event", "get_logger"]

ROOT = "swarm_actors"
"""The logger every record of the library goes to (or to one of its children)."""

logging.getLogger(ROOT).addHandler(logging.NullHandler())

_STRUCTLOG_DIR = os.path.dirname(structlog.__file__) + os.sep
_OUT_OF_BAND = ("exc_info", "stack_info")  # passed to logging, not rendered in the message


class Event(dict[str, Any]):
    """An event dict that prints as ``event key=value ...`` (the message of its record)."""

    __slots__ = ()

    def __str__(self) -> str:
        parts = [str(self.get("event", ""))]
        for key, value in self.items():
            if key != "event" and key not in _OUT_OF_BAND:
                parts.append(f"{key}={_value(value)}")
        return " ".join(parts)


def _value(value: Any) -> str:
    if isinstance(value, str):
        plain = value and not any(c.isspace() or c in "\"'=" for c in value)
        return value if plain else repr(value)
    return repr(value) if not isinstance(value, int | float | bool | None) else str(value)


def _caller_depth() -> int:
    """How many structlog frames stand between ``Logger.<level>`` and the code that logged.

    Counted from this processor's caller (structlog's ``_process_event``, which has returned
    by the time ``logging`` looks up the caller, hence the ``- 1``), so ``logging`` can be told
    the right ``stacklevel`` and records carry the library's file, line and function.
    """
    frame: FrameType | None = sys._getframe(2)
    depth = 0
    while frame is not None and frame.f_code.co_filename.startswith(_STRUCTLOG_DIR):
        depth += 1
        frame = frame.f_back
    return max(depth - 1, 0)


def _to_logging(
    logger: WrappedLogger, method_name: str, event_dict: EventDict
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The last processor: ``Logger.<method>(Event(event_dict), exc_info=..., ...)``."""
    kwargs: dict[str, Any] = {"stacklevel": 1 + _caller_depth()}
    exc_info = event_dict.get("exc_info")
    if exc_info:
        if exc_info is True:
            exc_info = sys.exc_info()
        elif isinstance(exc_info, BaseException):
            exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
        event_dict["exc_info"] = exc_info  # the tuple, for formatters that run later
        kwargs["exc_info"] = exc_info
    else:
        event_dict.pop("exc_info", None)
    if event_dict.get("stack_info"):
        kwargs["stack_info"] = True
    # ``_logger`` and ``_name``: what ProcessorFormatter looks for in records from structlog.
    kwargs["extra"] = {"_logger": logger, "_name": method_name}
    return (Event(event_dict),), kwargs


_PROCESSORS: list[Any] = [
    structlog.stdlib.filter_by_level,  # first: below the level, nothing else is paid
    structlog.stdlib.PositionalArgumentsFormatter(),
    _to_logging,
]


def get_logger(name: str, **initial: Any) -> structlog.stdlib.BoundLogger:
    """A structlog logger writing to ``logging.getLogger(name)``, bound with ``initial``.

    Independent of ``structlog.configure``: the application's structlog setup neither sees
    nor changes these records; ``logging``'s configuration alone decides where they go.
    """
    return structlog.stdlib.BoundLogger(logging.getLogger(name), _PROCESSORS, initial)
