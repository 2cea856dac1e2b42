"""The package's layers: imports point downwards only, and no module imports itself in a cycle.

Every import counts, including those inside functions (they run too); only imports under
``if TYPE_CHECKING:`` are left out, because they never run. The layers (each subpackage's
docstring says the same): the event model at the bottom, then the engine, then the NATS layer,
then the composition root and the public facades.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "python" / "swarm_actors"

# What each layer may import from the package (prefixes of module names), beside itself.
BASE = ("swarm_actors._exceptions", "swarm_actors._log", "swarm_actors._config")
ALLOWED = {
    # The event model; the Rust core writes a state change's canonical bytes (its hash).
    "swarm_actors._events": (*BASE, "swarm_actors._tuplecore"),
    "swarm_actors._core": (*BASE, "swarm_actors._events", "swarm_actors._tuplecore"),
    "swarm_actors._nats": (
        *BASE,
        "swarm_actors._events",
        "swarm_actors._tuplecore",
        "swarm_actors._core",
    ),
    # Tools sit beside the engine: events, blobs and errors, never the engine or NATS (an
    # actor plugs in through an EventRecorder); _public names its public classes.
    "swarm_actors.tools": (*BASE, "swarm_actors._events", "swarm_actors._public"),
    # Model clients and their guardrails: on the event model only (ModelCall, BlobStore,
    # Journal); nats-py only for the KV rate limiter, through a JetStream context it is given.
    "swarm_actors.brains": (*BASE, "swarm_actors._events", "swarm_actors._public"),
    # Memory: on the brains (the request, the token counter, the compressor) and nothing else.
    "swarm_actors.memory": (
        *BASE,
        "swarm_actors._public",
        "swarm_actors.brains",
        "swarm_actors.tools",  # the workspace's diff, for change keys
    ),
    # The role swarm sits on top: the public facades only (the engine through ``swarm_actors``,
    # the events, tools, brains, cluster and errors), never the private layers below them.
    "swarm_actors.swarm": (
        *BASE,
        "swarm_actors._public",
        "swarm_actors.brains",
        "swarm_actors.cluster",
        "swarm_actors.errors",
        "swarm_actors.events",
        "swarm_actors.memory",
        "swarm_actors.tools",
        "swarm_actors.Actor",  # ``from swarm_actors import Actor, ActorSystem, handler``
        "swarm_actors.handler",
        "swarm_actors.Terminated",
        "swarm_actors._runjournal",  # a run announces its live server (live.json)
    ),
    # Time travel reads runs (found by _runs, opened by _runjournal) through the public facades
    # of the events and the tools; never the engine or the NATS layer. Its new runs (rerun,
    # replay_run) run the swarm through its facade, with the brains.
    "swarm_actors.replay": (
        *BASE,
        "swarm_actors._public",
        "swarm_actors._runs",
        "swarm_actors._runjournal",
        "swarm_actors.brains",
        "swarm_actors.errors",
        "swarm_actors.events",
        "swarm_actors.swarm",
        "swarm_actors.tools",
    ),
    # The SQL archive reads journals (the NATS layer's durable consumers, the run conventions)
    # and writes ClickHouse; the commands use it, nothing below it does.
    "swarm_actors.archive": (
        *BASE,
        "swarm_actors._events",
        "swarm_actors._nats",
        "swarm_actors._public",
        "swarm_actors._runjournal",
        "swarm_actors._runs",
    ),
    # Where runs live (data directory, run ids): shared by the commands, on nothing but BASE.
    "swarm_actors._runs": BASE,
    # Opening a run's journal (its live server, or a private one on its store): the one place
    # above the NATS layer that the commands read runs through.
    "swarm_actors._runjournal": (
        *BASE,
        "swarm_actors._runs",
        "swarm_actors._events",
        "swarm_actors._nats",
    ),
    # The command line is an application of the public facades (and of _runs), never of the
    # engine or the NATS layer: what it can do, a user's program can.
    "swarm_actors._cli": (
        *BASE,
        "swarm_actors._runs",
        "swarm_actors._runjournal",
        "swarm_actors.replay",
        "swarm_actors.memory",
        "swarm_actors.archive",
        "swarm_actors.swarm",
        "swarm_actors.brains",
        "swarm_actors.tools",
        "swarm_actors.cluster",
        "swarm_actors.errors",
        "swarm_actors.__version__",
        # Opening a run's journal (worker, dashboard), the dashboard's server, its events.
        "swarm_actors._runjournal",
        "swarm_actors._dashboard",
        "swarm_actors.events",
    ),
    # The dashboard's server: runs and their journals, the public events, tools and replay;
    # never the engine or the NATS layer (it reads journals through _runjournal).
    "swarm_actors._dashboard": (
        *BASE,
        "swarm_actors._runs",
        "swarm_actors._runjournal",
        "swarm_actors.events",
        "swarm_actors.tools",
        "swarm_actors.replay",
        "swarm_actors.errors",
    ),
}
# Third-party packages a layer must never import.
FORBIDDEN_THIRD_PARTY = {
    "swarm_actors._events": ("nats",),
    "swarm_actors._core": ("nats",),
    "swarm_actors.tools": ("nats",),
    "swarm_actors.memory": ("nats",),
    "swarm_actors._cli": ("nats",),
    "swarm_actors.replay": ("nats",),
}


def module_name(path: Path) -> str:
    """``swarm_actors._core._cell`` for ``.../swarm_actors/_core/_cell.py``."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_imports(tree: ast.AST, package: str) -> Iterator[str]:
    """Every module a file imports when it runs (``if TYPE_CHECKING:`` blocks skipped)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from (n for stmt in node.orelse for n in runtime_imports(stmt, package))
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing module's package
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            yield module
            # ``from swarm_actors._core import _cell`` imports the submodule too.
            yield from (f"{module}.{alias.name}" for alias in node.names)
        yield from runtime_imports(node, package)


def package_modules() -> dict[str, set[str]]:
    """Module name -> the package modules it imports at run time."""
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set(runtime_imports(ast.parse(path.read_text()), package))
        graph[name] = {m for m in found if m in files or m.startswith(("nats", "swarm_actors"))}
    return graph


GRAPH = package_modules()


def _layer(module: str) -> str | None:
    return next((layer for layer in ALLOWED if module.startswith(layer)), None)


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if _layer(m)))
def test_a_layer_imports_only_what_it_may(module: str) -> None:
    layer = _layer(module)
    assert layer is not None
    allowed = (layer, *ALLOWED[layer])
    wrong = sorted(
        m
        for m in GRAPH[module]
        if (m.startswith("swarm_actors.") and not m.startswith(allowed))
        or m.split(".")[0] in FORBIDDEN_THIRD_PARTY.get(layer, ())
    )
    assert not wrong, f"{module} imports {wrong}, outside what {layer} may import"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle among the package's modules, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_no_module_is_in_an_import_cycle() -> None:
    # Edges between a package and its own submodules are left out: importing a submodule runs
    # its package's __init__ first anyway, and an __init__ re-exporting its children is normal
    # (nor is a module's import of its own names, ``from swarm_actors import __version__``).
    def related(a: str, b: str) -> bool:
        return a == b or a.startswith(b + ".") or b.startswith(a + ".")

    graph = {m: {n for n in deps if not related(m, n)} for m, deps in GRAPH.items()}
    assert find_cycle(graph) is None


def test_the_checker_sees_a_cycle_and_a_wrong_layer() -> None:
    # The two checks above can fail: a planted cycle is found, and a function-level import of
    # the NATS layer from the engine counts.
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    source = "def f():\n    from swarm_actors._nats._wire import frame\n"
    found = set(runtime_imports(ast.parse(source), "swarm_actors._core"))
    assert "swarm_actors._nats._wire" in found
    typed = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import nats\n"
    assert "nats" not in set(runtime_imports(ast.parse(typed), "swarm_actors._core"))
