"""A small expense ledger."""

from ledger.config import Settings, flag, load_settings
from ledger.entries import Entry, parse_line, read_entries, validate
from ledger.money import Money, UnknownCurrency, convert, exchange_rate, parse_amount
from ledger.report import date_range, render, totals_by_category

__all__ = [
    "Entry",
    "Money",
    "Settings",
    "UnknownCurrency",
    "convert",
    "date_range",
    "exchange_rate",
    "flag",
    "load_settings",
    "parse_amount",
    "parse_line",
    "read_entries",
    "render",
    "totals_by_category",
    "validate",
]
