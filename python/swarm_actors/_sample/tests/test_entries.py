import datetime

import pytest

from ledger.entries import Entry, parse_line, read_entries, validate
from ledger.money import Money

TODAY = datetime.date(2024, 6, 30)


def test_parse_line():
    entry = parse_line("2024-03-01; Rent #flat ;950 EUR;housing")
    assert entry == Entry(
        datetime.date(2024, 3, 1), "Rent #flat", Money(95000), "housing", ["flat"]
    )
    assert parse_line("2024-03-02;Misc;1").category == "other"


@pytest.mark.parametrize("line", ["2024-03-01;Rent", "2024-03-01;a;1;b;c", "2024-13-01;x;1"])
def test_parse_line_rejects(line):
    with pytest.raises(ValueError):
        parse_line(line)


def test_read_entries(tmp_path):
    path = tmp_path / "june.ledger"
    path.write_text("# June\n2024-06-01;Coffee;3.50;food\n\n2024-06-02;Train;12 CHF;travel\n")
    entries = read_entries(str(path))
    assert [e.amount for e in entries] == [Money(350), Money(1200, "CHF")]


def test_read_entries_names_the_bad_line(tmp_path):
    path = tmp_path / "bad.ledger"
    path.write_text("2024-06-01;Coffee;3.50;food\n2024-06-02;Train\n")
    with pytest.raises(ValueError, match=r"bad.ledger:2:"):
        read_entries(str(path))


def test_validate_accepts_good_entries():
    entries = [parse_line("2024-06-01;Coffee;3.50;food")]
    assert validate(entries, today=TODAY) == (True, [])


def test_validate_reports_every_problem():
    entries = [
        parse_line("2024-06-01;Nothing;0;food"),
        parse_line("2024-06-02;Gift;20;presents"),
        parse_line("2024-07-02;Later;5;food"),
    ]
    ok, problems = validate(entries, today=TODAY)
    assert not ok
    assert problems == [
        "2024-06-01: Nothing: zero amount",
        "2024-06-02: Gift: category 'presents'?",
        "2024-07-02: Later: date in the future",
    ]
