import datetime
import tempfile
import unittest
from pathlib import Path

from ledger.entries import Entry, parse_line, read_entries, validate
from ledger.money import Money

TODAY = datetime.date(2024, 6, 30)


class ParseLineTest(unittest.TestCase):
    def test_parse_line(self):
        entry = parse_line("2024-03-01; Rent #flat ;950 EUR;housing")
        self.assertEqual(
            entry, Entry(datetime.date(2024, 3, 1), "Rent #flat", Money(95000), "housing", ["flat"])
        )
        self.assertEqual(parse_line("2024-03-02;Misc;1").category, "other")

    def test_parse_line_rejects(self):
        for line in ["2024-03-01;Rent", "2024-03-01;a;1;b;c", "2024-13-01;x;1"]:
            with self.assertRaises(ValueError, msg=line):
                parse_line(line)


class ReadEntriesTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.dir = Path(self.tmp.name)

    def test_read_entries(self):
        path = self.dir / "june.ledger"
        path.write_text("# June\n2024-06-01;Coffee;3.50;food\n\n2024-06-02;Train;12 CHF;travel\n")
        entries = read_entries(str(path))
        self.assertEqual([e.amount for e in entries], [Money(350), Money(1200, "CHF")])

    def test_read_entries_names_the_bad_line(self):
        path = self.dir / "bad.ledger"
        path.write_text("2024-06-01;Coffee;3.50;food\n2024-06-02;Train\n")
        with self.assertRaisesRegex(ValueError, r"bad.ledger:2:"):
            read_entries(str(path))


class ValidateTest(unittest.TestCase):
    def test_validate_accepts_good_entries(self):
        entries = [parse_line("2024-06-01;Coffee;3.50;food")]
        self.assertEqual(validate(entries, today=TODAY), (True, []))

    def test_validate_reports_every_problem(self):
        entries = [
            parse_line("2024-06-01;Nothing;0;food"),
            parse_line("2024-06-02;Gift;20;presents"),
            parse_line("2024-07-02;Later;5;food"),
        ]
        ok, problems = validate(entries, today=TODAY)
        self.assertFalse(ok)
        self.assertEqual(
            problems,
            [
                "2024-06-01: Nothing: zero amount",
                "2024-06-02: Gift: category 'presents'?",
                "2024-07-02: Later: date in the future",
            ],
        )
