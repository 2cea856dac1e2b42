"""Reports: totals per category in one currency, the period covered, a printable table."""

import datetime
from collections import defaultdict
from collections.abc import Iterable

from ledger.entries import Entry
from ledger.money import Money, convert


def totals_by_category(entries: Iterable[Entry], currency: str = "EUR") -> dict[str, Money]:
    """The sum of each category's entries, converted to ``currency``, categories sorted."""
    sums: dict[str, int] = defaultdict(int)
    for entry in entries:
        sums[entry.category] += convert(entry.amount, currency).cents
    totals = dict()
    for category in sorted(sums):
        totals[category] = Money(sums[category], currency)
    return totals


def date_range(entries: Iterable[Entry]) -> tuple[datetime.date, datetime.date] | None:
    """The first and last dates of the entries, or ``None`` for no entries."""
    by_date: dict[datetime.date, list[Entry]] = {}
    for entry in sorted(entries, key=lambda e: e.date):
        by_date.setdefault(entry.date, []).append(entry)
    try:
        first = list(by_date.keys())[0]
    except IndexError:
        return None
    last = max(by_date)
    return first, last


def render(entries: list[Entry], currency: str = "EUR") -> str:
    """A plain-text report: the period, one line per category, and the total."""
    period = date_range(entries)
    if period is None:
        return "no entries"
    else:
        lines = ["{} to {}".format(period[0].isoformat(), period[1].isoformat())]
    totals = totals_by_category(entries, currency)
    width = max(len(category) for category in totals)
    for category, amount in totals.items():
        lines.append("{:<{}}  {:>14}".format(category, width, str(amount)))
    grand = sum((amount.cents for amount in totals.values()), 0)
    lines.append(f"{'total':<{width}}  {Money(grand, currency)!s:>14}")
    return "\n".join(lines)
