import unittest
from decimal import Decimal
from unittest import mock

from ledger import money
from ledger.money import Money, UnknownCurrency, convert, exchange_rate, parse_amount


class ParseAmountTest(unittest.TestCase):
    def test_parse_amount(self):
        cases = [
            ("12", Money(1200)),
            ("12.5", Money(1250)),
            ("-3,20 USD", Money(-320, "USD")),
            ("7 GBP", Money(700, "GBP")),
            ("  0.05 ", Money(5)),
        ]
        for text, expected in cases:
            self.assertEqual(parse_amount(text), expected, text)

    def test_parse_amount_rejects_garbage(self):
        with self.assertRaisesRegex(ValueError, "not an amount"):
            parse_amount("twelve")


class MoneyTest(unittest.TestCase):
    def test_unknown_currency(self):
        with self.assertRaises(UnknownCurrency):
            Money(100, "XXX")

    def test_str_and_add(self):
        self.assertEqual(str(Money(1250) + Money(-300)), "9.50 EUR")
        self.assertEqual(str(-Money(5, "USD")), "-0.05 USD")
        with self.assertRaisesRegex(ValueError, "cannot add"):
            Money(1) + Money(1, "USD")


class ConvertTest(unittest.TestCase):
    def test_convert_rounds_half_up(self):
        self.assertEqual(convert(Money(1000, "USD"), "EUR"), Money(920))
        self.assertEqual(convert(Money(1, "GBP"), "EUR"), Money(1))
        self.assertEqual(convert(Money(700), "EUR"), Money(700))

    def test_exchange_rates_are_looked_up_once_per_pair(self):
        calls = []

        def slow_lookup(source, target):
            calls.append((source, target))
            return Decimal("2")

        with mock.patch.object(money, "_lookup_rate", slow_lookup):
            self.assertEqual(exchange_rate("CHF", "GBP"), Decimal("2"))
            self.assertEqual(exchange_rate("CHF", "GBP"), Decimal("2"))
            self.assertEqual(convert(Money(100, "CHF"), "GBP"), Money(200, "GBP"))
        self.assertEqual(calls, [("CHF", "GBP")])
