import datetime
import unittest

from ledger.entries import parse_line
from ledger.money import Money
from ledger.report import date_range, render, totals_by_category

LINES = [
    "2024-06-03;Groceries;54.20;food",
    "2024-06-01;Rent;950;housing",
    "2024-06-09;Train;20 CHF;travel",
    "2024-06-04;Refund;-4.20;food",
]


def entries():
    return [parse_line(line) for line in LINES]


class ReportTest(unittest.TestCase):
    def test_totals_by_category(self):
        self.assertEqual(
            totals_by_category(entries()),
            {"food": Money(5000), "housing": Money(95000), "travel": Money(2080)},
        )

    def test_date_range(self):
        self.assertEqual(
            date_range(entries()), (datetime.date(2024, 6, 1), datetime.date(2024, 6, 9))
        )

    def test_date_range_of_nothing(self):
        self.assertIsNone(date_range([]))

    def test_render(self):
        self.assertEqual(
            render(entries()).splitlines(),
            [
                "2024-06-01 to 2024-06-09",
                "food          50.00 EUR",
                "housing      950.00 EUR",
                "travel        20.80 EUR",
                "total       1020.80 EUR",
            ],
        )
        self.assertEqual(render([]), "no entries")
