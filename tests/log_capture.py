"""Collect the structured records the library (or ``Actor.log``) sends to ``logging``."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any


class _Collect(logging.Handler):
    def __init__(self, entries: list[dict[str, Any]]) -> None:
        super().__init__(logging.DEBUG)
        self.entries = entries

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, Mapping):  # from swarm_actors._log: the event dict
            self.entries.append(
                {**record.msg, "log_level": record.levelname.lower(), "logger": record.name}
            )


@contextmanager
def capture_logs(name: str = "swarm_actors") -> Iterator[list[dict[str, Any]]]:
    """The event dicts logged under ``name`` (and its children) at any level, while active.

    Each entry also holds ``log_level`` (``"info"``, ...) and ``logger`` (the logger's name),
    like structlog's ``capture_logs``, which no longer sees the library's records: they go to
    ``logging``, not through structlog's global configuration.
    """
    entries: list[dict[str, Any]] = []
    logger = logging.getLogger(name)
    handler = _Collect(entries)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield entries
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
