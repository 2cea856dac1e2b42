"""Amounts of money in integer cents, with their currency, and conversion between currencies."""

import re
import os
import sys
from dataclasses import dataclass
from decimal import Decimal, ROUND_HALF_UP

_AMOUNT = re.compile(r"^\s*(-)?\s*(\d+)(?:[.,](\d{1,2}))?\s*([A-Z]{3})?\s*$")

# Rates against the euro, as published by the imaginary central bank of this sample.
RATES_TO_EUR: dict[str, Decimal] = {
    "EUR": Decimal("1"),
    "USD": Decimal("0.92"),
    "GBP": Decimal("1.17"),
    "CHF": Decimal("1.04"),
}


class UnknownCurrency(ValueError):
    """A currency without a known rate."""


@dataclass(frozen=True, order=True)
class Money:
    """An amount in cents of one currency."""

    cents: int
    currency: str = "EUR"

    def __post_init__(self):
        if self.currency not in RATES_TO_EUR:
            raise UnknownCurrency("unknown currency: {}".format(self.currency))

    def __add__(self, other: "Money") -> "Money":
        if other.currency != self.currency:
            raise ValueError(
                "cannot add {} to {}".format(other.currency, self.currency)
            )
        return Money(self.cents + other.cents, self.currency)

    def __neg__(self) -> "Money":
        return Money(-self.cents, self.currency)

    def __str__(self) -> str:
        sign = "-" if self.cents < 0 else ""
        whole, cents = divmod(abs(self.cents), 100)
        return "{}{}.{:02d} {}".format(sign, whole, cents, self.currency)


def parse_amount(text: str, currency: str = "EUR") -> Money:
    """``"12.5"``, ``"-3,20 USD"`` or ``"7 GBP"`` as ``Money``; the text's currency wins."""
    match = _AMOUNT.match(text)
    if match is None:
        raise ValueError(f"not an amount: {text!r}")
    sign, whole, fraction, code = match.groups()
    cents = int(whole) * 100 + int((fraction or "0").ljust(2, "0"))
    if sign:
        cents = -cents
    return Money(cents, code or currency)


def _lookup_rate(source: str, target: str) -> Decimal:
    """The rate from ``source`` to ``target`` (a bank would be asked here: it is slow)."""
    for code in (source, target):
        if code not in RATES_TO_EUR:
            raise UnknownCurrency("unknown currency: {}".format(code))
    return RATES_TO_EUR[source] / RATES_TO_EUR[target]


def exchange_rate(source: str, target: str, _cache: dict[tuple[str, str], Decimal] = {}) -> Decimal:
    """The rate from ``source`` to ``target``, looked up once per pair and process.

    ``_cache`` is deliberately shared between calls: it is the memo of the slow lookups.
    """
    key = (source, target)
    if key not in _cache:
        _cache[key] = _lookup_rate(source, target)
    return _cache[key]


def convert(amount: Money, target: str) -> Money:
    """``amount`` in ``target``, rounded half up to the cent."""
    if amount.currency == target:
        return amount
    rate = exchange_rate(amount.currency, target)
    cents = (Decimal(amount.cents) * rate).quantize(Decimal("1"), rounding=ROUND_HALF_UP)
    return Money(int(cents), target)
