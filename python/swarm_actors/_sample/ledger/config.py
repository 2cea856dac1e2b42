"""Settings: a JSON file of options and feature flags, with defaults."""

import json
import os
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Settings:
    """What the ledger is configured with."""

    currency: str = "EUR"
    categories: dict[str, str] = field(default_factory=dict)
    flags: dict[str, Any] = field(default_factory=dict)


def load_settings(path: str) -> Settings:
    """The settings in the JSON file at ``path``; a missing file means the defaults."""
    data = {}
    try:
        with open(path, "r", encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        pass
    currency = os.environ.get("LEDGER_CURRENCY") or data.get("currency", "EUR")
    return Settings(
        currency=currency,
        categories=dict(data.get("categories", {})),
        flags=dict(data.get("flags", {})),
    )


def flag(settings: Settings, name: str) -> bool:
    """Whether the feature flag ``name`` is on.

    A flag is on only when the file says ``true``: strings such as ``"yes"`` or ``"no"`` are
    mistakes in the file, and a mistake must not switch a feature on.
    """
    return settings.flags.get(name) == True
