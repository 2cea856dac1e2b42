"""The shipped queries: named SQL files in ``queries/``, run with typed parameters.

Each file is one ``SELECT`` on the archive's tables with ClickHouse's ``{name:Type}``
placeholders, bound server-side (never formatted into the SQL). ``QUERIES`` names them and
their parameters' defaults; ``swarm-actors sql --query NAME --param value`` runs one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from swarm_actors._exceptions import InvalidArgumentError
from swarm_actors.archive._store import ArchiveStore, QueryResult

__all__ = ["QUERIES", "Query", "parse_window", "run_query"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_window(text: str) -> int:
    """Seconds in a window such as ``"30d"``, ``"12h"``, ``"90m"``, ``"45s"``, ``"2w"``."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", text)
    if not match:
        raise InvalidArgumentError(
            f"invalid window {text!r}: a number and a unit, e.g. 30d, 12h, 90m, 45s, 2w"
        )
    return int(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True)
class Query:
    """A shipped query: its name, what it answers, and its parameters' defaults."""

    name: str
    """The name (``swarm-actors sql --query NAME``), also its file's stem."""
    summary: str
    """What it answers, in one line."""
    defaults: Mapping[str, Any] = field(default_factory=dict)
    """Every parameter and its default (``run`` and ``agent``: ``""`` means all)."""

    @property
    def sql(self) -> str:
        """The SQL text."""
        return (
            resources.files("swarm_actors.archive").joinpath(f"queries/{self.name}.sql").read_text()
        )


QUERIES: Mapping[str, Query] = {
    q.name: q
    for q in (
        Query(
            "error-rate",
            "error rate per agent over a window (crashes, failed model calls, tool errors)",
            {"window": "30d", "agent": "", "run": ""},
        ),
        Query(
            "low-confidence",
            "decisions under a confidence threshold, least confident first",
            {"threshold": 0.7, "run": "", "limit": 100},
        ),
        Query("most-changed", "the resources changed most often", {"run": "", "limit": 20}),
        Query("latency", "p50/p95/max handling latency per role (cause to effect)", {"run": ""}),
        Query("tokens-cost", "model tokens and cost per run and per agent", {"run": ""}),
        Query("rejections", "rejected changes and the reasons given", {"run": "", "limit": 100}),
    )
}
"""The shipped queries by name."""


def run_query(store: ArchiveStore, name: str, **params: Any) -> QueryResult:
    """Run the shipped query ``name`` with ``params`` over its defaults.

    Raises ``InvalidArgumentError`` for an unknown query or parameter (naming the known ones).
    """
    query = QUERIES.get(name)
    if query is None:
        raise InvalidArgumentError(f"no shipped query {name!r}; known: {', '.join(QUERIES)}")
    unknown = set(params) - set(query.defaults)
    if unknown:
        known = ", ".join(query.defaults) or "none"
        raise InvalidArgumentError(
            f"query {name!r} takes no parameter {', '.join(sorted(unknown))}; it takes: {known}"
        )
    values = {**query.defaults, **{k: v for k, v in params.items() if v is not None}}
    if "window" in values:
        values["window_seconds"] = parse_window(str(values.pop("window")))
    if "threshold" in values:
        values["threshold"] = float(values["threshold"])
    if "limit" in values:
        values["limit"] = int(values["limit"])
    return store.query(query.sql, values)
