"""A tiny Python project for the swarm's tests, written into a temporary directory.

Its unittest tests pass. Under ruff's ``E`` and ``F`` rules it has safe fixes (unused imports,
an f-string without placeholders) and one trap: ``flag == True`` in ``calc.is_on``, whose
unsafe fix (``if flag:``) changes what ``is_on(2)`` returns, which a test checks. Also a finding
with no fix (an ambiguous name, E741), which nobody should touch.
"""

from __future__ import annotations

from pathlib import Path

FILES = {
    "calc.py": (
        "import os\n"
        "import sys\n"
        "\n"
        "\n"
        "def add(a, b):\n"
        "    return a + b\n"
        "\n"
        "\n"
        "def label(x):\n"
        '    return f"label"\n'
        "\n"
        "\n"
        "def is_on(flag):\n"
        "    if flag == True:\n"
        '        return "on"\n'
        '    return "off"\n'
    ),
    "util.py": ("import json\n\n\ndef twice(x):\n    l = x * 2\n    return l\n"),
    "tests/__init__.py": "",
    "tests/test_calc.py": (
        "import unittest\n"
        "\n"
        "from calc import add, is_on, label\n"
        "from util import twice\n"
        "\n"
        "\n"
        "class TestCalc(unittest.TestCase):\n"
        "    def test_add(self):\n"
        "        self.assertEqual(add(1, 2), 3)\n"
        "\n"
        "    def test_label(self):\n"
        '        self.assertEqual(label(1), "label")\n'
        "\n"
        "    def test_is_on_only_for_true(self):\n"
        '        self.assertEqual(is_on(True), "on")\n'
        '        self.assertEqual(is_on(2), "off")\n'
        "\n"
        "    def test_twice(self):\n"
        "        self.assertEqual(twice(2), 4)\n"
    ),
}
TRAP = ("calc.py", "E712")
"""The file and rule of the trap."""
SELECT = ("E", "F")
"""The rules the tests lint with."""


def write_sample(root: Path) -> Path:
    """Write the project under ``root`` (created); ``root``."""
    for name, text in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root
