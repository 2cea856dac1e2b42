from decimal import Decimal

import pytest

from ledger import money
from ledger.money import Money, UnknownCurrency, convert, exchange_rate, parse_amount


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12", Money(1200)),
        ("12.5", Money(1250)),
        ("-3,20 USD", Money(-320, "USD")),
        ("7 GBP", Money(700, "GBP")),
        ("  0.05 ", Money(5)),
    ],
)
def test_parse_amount(text, expected):
    assert parse_amount(text) == expected


def test_parse_amount_rejects_garbage():
    with pytest.raises(ValueError, match="not an amount"):
        parse_amount("twelve")


def test_unknown_currency():
    with pytest.raises(UnknownCurrency):
        Money(100, "XXX")


def test_str_and_add():
    assert str(Money(1250) + Money(-300)) == "9.50 EUR"
    assert str(-Money(5, "USD")) == "-0.05 USD"
    with pytest.raises(ValueError, match="cannot add"):
        Money(1) + Money(1, "USD")


def test_convert_rounds_half_up():
    assert convert(Money(1000, "USD"), "EUR") == Money(920)
    assert convert(Money(1, "GBP"), "EUR") == Money(1)
    assert convert(Money(700), "EUR") == Money(700)


def test_exchange_rates_are_looked_up_once_per_pair(monkeypatch):
    calls = []

    def slow_lookup(source, target):
        calls.append((source, target))
        return Decimal("2")

    monkeypatch.setattr(money, "_lookup_rate", slow_lookup)
    assert exchange_rate("CHF", "GBP") == Decimal("2")
    assert exchange_rate("CHF", "GBP") == Decimal("2")
    assert convert(Money(100, "CHF"), "GBP") == Money(200, "GBP")
    assert calls == [("CHF", "GBP")]
