"""``Cell`` is the only writer of its state machine and of its mailbox.

An AST scan of the package: outside ``_core/_cell.py`` no module assigns a cell's lifecycle
fields or appends to a cell's mailbox; they call ``Cell``'s methods (``post``, ``ask_inline``,
``install``, ``seal``, ...) instead. The scan is checked against deliberately bad code first, so
that a scan that found nothing because it looked at nothing cannot pass.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import swarm_actors

PACKAGE = Path(swarm_actors.__file__).resolve().parent
OWNER = PACKAGE / "_core" / "_cell.py"

FIELDS = frozenset({"state", "accepting", "runnable", "busy", "scheduled", "actor"})
"""The lifecycle fields only ``Cell`` assigns."""

MUTATORS = frozenset({"append", "appendleft", "extend", "extendleft", "insert", "clear"})


def _is_cell_class(node: ast.ClassDef) -> bool:
    """A class deriving from a ``...Cell`` (its ``self`` is a cell)."""
    for base in node.bases:
        name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "")
        if name.endswith("Cell"):
            return True
    return False


class _Scan(ast.NodeVisitor):
    """Collects ``line: text`` for each write to a cell's fields or mailbox."""

    def __init__(self, every_self: bool) -> None:
        self.found: list[tuple[int, str]] = []
        self.in_cell_class = [every_self]
        self.queue_aliases: list[set[str]] = [set()]

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.in_cell_class.append(self.in_cell_class[0] or _is_cell_class(node))
        self.generic_visit(node)
        self.in_cell_class.pop()

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.queue_aliases.append(set())
        self.generic_visit(node)
        self.queue_aliases.pop()

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function

    def _target(self, target: ast.expr, line: int) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self._target(element, line)
            return
        if not isinstance(target, ast.Attribute) or target.attr not in FIELDS:
            return
        owner = target.value
        if isinstance(owner, ast.Name) and owner.id == "self" and not self.in_cell_class[-1]:
            return  # another class's own attribute (e.g. an exception's ``actor``)
        self.found.append((line, f"assigns .{target.attr}"))

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._target(target, node.lineno)
            # ``queue = cell.queue``: later appends to ``queue`` are appends to the mailbox.
            if (
                isinstance(target, ast.Name)
                and isinstance(node.value, ast.Attribute)
                and node.value.attr == "queue"
            ):
                self.queue_aliases[-1].add(target.id)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._target(node.target, node.lineno)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self._target(node.target, node.lineno)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in MUTATORS:
            receiver = func.value
            if (isinstance(receiver, ast.Attribute) and receiver.attr == "queue") or (
                isinstance(receiver, ast.Name) and receiver.id in self.queue_aliases[-1]
            ):
                self.found.append((node.lineno, f"calls queue.{func.attr}"))
        self.generic_visit(node)


def writes(source: str, *, every_self: bool = False) -> list[tuple[int, str]]:
    """The writes in ``source``; ``every_self``: count ``self.<field>`` in any class too."""
    scan = _Scan(every_self)
    scan.visit(ast.parse(source))
    return scan.found


@pytest.mark.parametrize(
    "bad",
    [
        "cell.state = STOPPED",
        "target.runnable, target.busy = False, True",
        "cell.processed, cell.accepting = 1, False",
        "def f(c):\n    c.scheduled = False",
        "async def f(c):\n    c.actor = None",
        "cell.busy: bool = True",
        "cell.queue.append(message)",
        "def f(cell):\n    queue = cell.queue\n    queue.append(1)",
        "class _Manual(Cell):\n    def go(self):\n        self.runnable = False",
        "class Probe(swarm_actors.Cell):\n    def go(self):\n        self.state = 1",
    ],
)
def test_the_scan_finds_a_write(bad: str) -> None:
    assert writes(bad), f"the scan missed: {bad!r}"


@pytest.mark.parametrize(
    "fine",
    [
        "if cell.state is RUNNING and cell.runnable: cell.post(item)",
        "class Error(Exception):\n    def __init__(self, actor):\n        self.actor = actor",
        "cell.processed += 1",
        "queue = deque()\nqueue.append(1)",
        "self.queue_size = 3",
    ],
)
def test_the_scan_leaves_reads_alone(fine: str) -> None:
    assert writes(fine) == []


def test_only_the_cell_writes_its_state_machine() -> None:
    modules = sorted(PACKAGE.rglob("*.py"))
    assert OWNER in modules  # the scan looks at the real package
    assert len(modules) > 20
    found = []
    for path in modules:
        if path == OWNER:
            continue
        for line, what in writes(path.read_text()):
            found.append(f"{path.relative_to(PACKAGE)}:{line} {what}")
    assert found == [], "only _core/_cell.py may write a cell's state:\n" + "\n".join(found)


def test_the_cell_itself_writes_them() -> None:
    """The scan, run on the owner, finds its writes: it does look at real code."""
    found = {what for _, what in writes(OWNER.read_text(), every_self=True)}
    assert "assigns .state" in found
    assert "calls queue.append" in found
