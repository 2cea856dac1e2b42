"""Ledger entries: one ``date;description;amount;category`` line each."""

import datetime
from dataclasses import dataclass, field

from ledger.money import Money, parse_amount

CATEGORIES = ("food", "housing", "travel", "health", "other")


@dataclass(frozen=True)
class Entry:
    """One expense (a negative amount is a refund)."""

    date: datetime.date
    description: str
    amount: Money
    category: str = "other"
    tags: list[str] = field(default_factory=list)


def parse_line(line: str, currency: str = "EUR") -> Entry:
    """An ``Entry`` from ``2024-03-01;Rent;950 EUR;housing`` (the category is optional)."""
    parts = [part.strip() for part in line.split(";")]
    if not len(parts) in (3, 4):
        raise ValueError(f"expected 3 or 4 fields separated by ';', got {len(parts)}: {line!r}")
    date, description, amount = parts[:3]
    category = parts[3] if len(parts) == 4 else "other"
    tags = [word[1:] for word in description.split() if word.startswith("#")]
    return Entry(
        date=datetime.date.fromisoformat(date),
        description=description,
        amount=parse_amount(amount, currency),
        category=category or "other",
        tags=tags,
    )


def read_entries(path: str, currency: str = "EUR") -> list[Entry]:
    """The entries of a ledger file; blank lines and ``#`` comments are skipped."""
    entries = []
    with open(path, "r", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                entries.append(parse_line(line, currency))
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: {exc}") from None
    return entries


def validate(entries: list[Entry], today: datetime.date | None = None) -> tuple:
    """Check every entry; returns ``(ok, problems)`` with one message per problem found.

    Every entry is checked, so that one run reports all the problems of a ledger.
    """
    today = today or datetime.date.today()
    problems: list[str] = []

    def check(entry: Entry) -> bool:
        ok = True
        if entry.amount.cents == 0:
            problems.append(f"{entry.date}: {entry.description}: zero amount")
            ok = False
        if not entry.category in CATEGORIES:
            problems.append(f"{entry.date}: {entry.description}: category {entry.category!r}?")
            ok = False
        if entry.date > today:
            problems.append(f"{entry.date}: {entry.description}: date in the future")
            ok = False
        return ok

    ok = all([check(entry) for entry in entries])
    return ok, problems
