"""No module reads another module's objects' private attributes (issue 9, item 4).

An AST scan of the package: every ``x._name`` where ``x`` is not ``self`` / ``cls`` and no
class of the same module defines ``_name`` (in ``__slots__``, as a method or class attribute, or
by assigning ``self._name``) is a read of another module's private state. Each must be in
``ALLOWED`` with the reason it is there. Defining the same private name in two modules hides a
read from this scan; it is a heuristic, not a type checker.
"""

from __future__ import annotations

import ast
from pathlib import Path

import swarm_actors

PACKAGE = Path(swarm_actors.__file__).resolve().parent

NATS_PY = "nats-py internals, all in _compat (listed in its docstring, tests/test_nats_compat.py)"
STDLIB = "the standard library's public API, spelled with an underscore"
ENGINE = "engine and composition root: outside the NATS layer, for their owners to remove"

ALLOWED: dict[tuple[str, str], str] = {
    # The NATS layer: only the compat module, and only nats-py's objects.
    ("_nats/_compat.py", "_process_msg"): NATS_PY,
    ("_nats/_compat.py", "_id"): NATS_PY,
    ("_nats/_compat.py", "_transport"): NATS_PY,
    ("_nats/_compat.py", "_io_writer"): NATS_PY,
    ("_nats/_compat.py", "_pending"): NATS_PY,
    ("_nats/_compat.py", "_pending_data_size"): NATS_PY,
    ("_nats/_compat.py", "_max_pending_size"): NATS_PY,
    ("_nats/_compat.py", "_send_command"): NATS_PY,
    ("_nats/_compat.py", "_flush_queue"): NATS_PY,
    ("_nats/_compat.py", "_flush_pending"): NATS_PY,
    ("_nats/_guard.py", "_exit"): STDLIB,  # os._exit
    ("_log.py", "_getframe"): STDLIB,  # sys._getframe
    ("_events/_protomap.py", "_replace"): STDLIB,  # namedtuple._replace
    # Not the NATS layer's: Cell, the actor, virtual activation and the system reading each
    # other's fields.
    ("_core/_actor.py", "_journal"): ENGINE,
    ("_core/_actor.py", "_space_for"): ENGINE,
    ("_core/_actor.py", "_start"): ENGINE,
    ("_core/_cell.py", "_dispatcher"): ENGINE,
    ("_core/_cell.py", "_dispatch"): ENGINE,
    ("_core/_cell.py", "_tracer"): ENGINE,
    ("_core/_cell.py", "_cell"): ENGINE,
    ("_core/_cell.py", "_resolve"): ENGINE,
    ("_core/_cell.py", "_spawn"): ENGINE,
    ("_core/_cell.py", "_unregister"): ENGINE,
    ("_core/_cell.py", "_dead_letter"): ENGINE,
    ("_core/_pool.py", "_start"): ENGINE,  # a pool starts its members as start_child does
    ("_core/_pool.py", "_cell"): ENGINE,
    ("_core/_pool.py", "_spawn"): ENGINE,
    ("_core/_pool.py", "_dead_letter"): ENGINE,
    ("_core/_recorder.py", "_journal"): ENGINE,
    ("_core/_recorder.py", "_topics"): ENGINE,
    ("_core/_virtual.py", "_dispatcher"): ENGINE,
    ("_core/_virtual.py", "_loop"): ENGINE,
    ("_core/_virtual.py", "_spawn"): ENGINE,
    ("_core/_virtual.py", "_tracer"): ENGINE,
    ("_system.py", "_cell"): ENGINE,
    ("testing/__init__.py", "_start"): ENGINE,
}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _own_names(tree: ast.Module) -> set[str]:
    """Private names the module's own classes define."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    names.add(item.name)
                elif isinstance(item, ast.Assign | ast.AnnAssign):
                    targets = item.targets if isinstance(item, ast.Assign) else [item.target]
                    for target in targets:
                        if not isinstance(target, ast.Name):
                            continue
                        names.add(target.id)
                        if target.id == "__slots__" and item.value is not None:
                            names.update(
                                c.value
                                for c in ast.walk(item.value)
                                if isinstance(c, ast.Constant) and isinstance(c.value, str)
                            )
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("self", "cls")
        ):
            names.add(node.attr)
    return names


def foreign_reads(source: str) -> list[tuple[int, str]]:
    """``(line, "x._name")`` for each private attribute of another module's object used."""
    tree = ast.parse(source)
    own = _own_names(tree)
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and _private(node.attr)):
            continue
        if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            continue
        if node.attr not in own:
            found.append((node.lineno, f"{ast.unparse(node.value)}.{node.attr}"))
    return sorted(found)


def _scan() -> dict[tuple[str, str], list[str]]:
    found: dict[tuple[str, str], list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        for line, expr in foreign_reads(path.read_text()):
            attr = expr.rpartition(".")[2]
            found.setdefault((module, attr), []).append(f"{module}:{line}: {expr}")
    return found


def test_no_module_reads_another_modules_private_attributes() -> None:
    found = _scan()
    unexpected = [where for key, wheres in found.items() if key not in ALLOWED for where in wheres]
    assert unexpected == [], "private attributes of another module's objects:\n" + "\n".join(
        unexpected
    )


def test_the_nats_layers_allowances_are_all_still_needed() -> None:
    """An allowance nobody uses any more goes (the NATS layer's; others' owners keep theirs)."""
    found = _scan()
    stale = [key for key in ALLOWED if key[0].startswith("_nats/") and key not in found]
    assert stale == []


def test_the_scan_sees_a_foreign_read_and_ignores_own_fields() -> None:
    source = (
        "class Mine:\n"
        "    __slots__ = ('_slot',)\n"
        "    def __init__(self, other):\n"
        "        self._field = other._theirs\n"
        "    def _helper(self, peer: 'Mine'):\n"
        "        return peer._field, peer._slot, peer._helper, self._anything\n"
    )
    assert foreign_reads(source) == [(4, "other._theirs")]
