"""The README's Python examples run as written (a broken quick start is a broken promise)."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_prints_only_what_its_comments_show(index: int) -> None:
    """In a fresh interpreter, as a user runs it: stdout holds the commented lines, nothing else.

    (A library that logs to stdout, or prints, fails here.)
    """
    code = BLOCKS[index]
    expected = [
        comment.strip() for comment in re.findall(r"print\(.*\)\s+# (.+)$", code, re.MULTILINE)
    ]
    assert len(expected) == len(re.findall(r"^\s*print\(", code, re.MULTILINE)), (
        "every print in the README has a comment showing its output"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stderr
    printed = run.stdout.splitlines()
    assert len(printed) == len(expected), (printed, expected)
    for line, comment in zip(printed, expected, strict=True):
        assert comment == line or comment.startswith(line + ":"), (line, comment)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index: int) -> None:
    code = BLOCKS[index]
    out = io.StringIO()
    namespace: dict[str, object] = {"__name__": f"readme_example_{index}"}
    with contextlib.redirect_stdout(out):
        exec(compile(code, f"README.md[python block {index}]", "exec"), namespace)
    # A print's comment is its expected output, or that output, a colon and an explanation.
    printed = out.getvalue().splitlines()
    for comment in re.findall(r"print\(.*\)\s+# (.+)$", code, re.MULTILINE):
        expected = comment.strip()
        assert any(expected == line or expected.startswith(line + ":") for line in printed), (
            expected,
            printed,
        )
