"""What the subcommands' modules register their parsers on (one type for all of them)."""

from __future__ import annotations

import argparse
from typing import Any, Protocol

__all__ = ["Subparsers"]


class Subparsers(Protocol):
    """The object ``ArgumentParser.add_subparsers()`` returns, as far as a command uses it.

    A protocol rather than argparse's own class, which is private (``_SubParsersAction``).
    """

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        """Add the parser of the subcommand ``name``."""
        ...
