"""The public surface: what ``swarm_actors`` exports, its docstrings, and the CLI."""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

import swarm_actors
from swarm_actors import _cli, events

README = Path(__file__).resolve().parents[1] / "README.md"


def test_all_is_sorted_and_complete() -> None:
    exported = swarm_actors.__all__
    assert exported == sorted(exported)
    public = {n for n in dir(swarm_actors) if not n.startswith("_")}
    modules = {n for n in public if inspect.ismodule(getattr(swarm_actors, n))}
    assert public - modules == set(exported)


@pytest.mark.parametrize("name", swarm_actors.__all__)
def test_every_public_name_has_a_docstring(name: str) -> None:
    obj = getattr(swarm_actors, name)
    if name == "ANY":
        obj = type(obj)
    assert (obj.__doc__ or "").strip(), f"{name} has no docstring"


def test_version_is_pep440() -> None:
    parts = swarm_actors.__version__.split(".")
    assert len(parts) == 3
    assert all(p.isdigit() for p in parts)


def test_cli_has_its_commands(capsys: pytest.CaptureFixture[str]) -> None:
    # The demo itself: tests/test_cli_demo.py.
    with pytest.raises(SystemExit):
        _cli.main(["--help"])
    out = capsys.readouterr().out
    for command in ("demo", "worker", "cluster"):
        assert command in out


def test_cli_rejects_bad_arguments() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "swarm_actors._cli", "demo", "--coders", "0"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "--coders: must be >= 1" in proc.stderr


def test_events_module_all_is_sorted_and_complete() -> None:
    exported = events.__all__
    # isort order, as ruff keeps it: CONSTANTS, then Classes, then functions.
    assert exported == sorted(exported, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    public = {n for n in dir(events) if not n.startswith("_")}
    modules = {n for n in public if inspect.ismodule(getattr(events, n))}
    assert public - modules == set(exported)


@pytest.mark.parametrize("name", events.__all__)
def test_every_events_name_has_a_docstring(name: str) -> None:
    obj = getattr(events, name)
    if not (inspect.isclass(obj) or inspect.isfunction(obj)):
        return  # constants and the Payload union are documented in their defining module
    assert (obj.__doc__ or "").strip(), f"{name} has no docstring"


# --- the deliberate surface -----------------------------------------------------------------

PUBLIC_MODULES = (
    "swarm_actors",
    "swarm_actors.archive",
    "swarm_actors.brains",
    "swarm_actors.cluster",
    "swarm_actors.errors",
    "swarm_actors.events",
    "swarm_actors.hilbert",
    "swarm_actors.replay",
    "swarm_actors.memory",
    "swarm_actors.space",
    "swarm_actors.replay",
    "swarm_actors.swarm",
    "swarm_actors.testing",
    "swarm_actors.tools",
    "swarm_actors.tree",
)
FACADES = (
    "archive",
    "brains",
    "cluster",
    "errors",
    "hilbert",
    "memory",
    "replay",
    "space",
    "swarm",
    "tools",
    "tree",
)


def _exported() -> list[tuple[str, str, Any]]:
    found = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            found.append((module_name, name, getattr(module, name)))
    return found


def test_the_top_level_is_the_everyday_api() -> None:
    assert 25 <= len(swarm_actors.__all__) <= 36  # 36: TopicStats (issue 12, topics)
    for name in ("Actor", "handler", "ActorSystem", "ActorRef", "VirtualRef", "Timeouts"):
        assert name in swarm_actors.__all__
    assert "Terminated" in swarm_actors.__all__  # death watch's message (Actor.watch)
    # The specialised parts live in their submodules only.
    for name in ("TupleSpace", "AgentTree", "hilbert_encode", "PlacedRef", "NatsOptions"):
        assert not hasattr(swarm_actors, name), name


@pytest.mark.parametrize("facade", FACADES)
def test_facade_all_is_sorted_complete_and_documented(facade: str) -> None:
    module = importlib.import_module(f"swarm_actors.{facade}")
    assert (module.__doc__ or "").strip()
    exported = module.__all__
    assert exported == sorted(exported, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    public = {n for n in dir(module) if not n.startswith("_")}
    assert public == set(exported)
    for name in exported:
        obj = getattr(module, name)
        if name == "ANY":
            obj = type(obj)
        assert (obj.__doc__ or "").strip(), f"{facade}.{name} has no docstring"


@pytest.mark.parametrize(
    ("module_name", "name", "obj"),
    [e for e in _exported() if isinstance(e[2], type) or callable(e[2])],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_every_public_class_and_function_reports_a_public_importable_module(
    module_name: str, name: str, obj: Any
) -> None:
    module = obj.__module__
    assert module in PUBLIC_MODULES, f"{module_name}.{name} reports {module}"
    assert getattr(importlib.import_module(module), obj.__qualname__) is obj
    # And so it pickles by reference, under that name.
    assert pickle.loads(pickle.dumps(obj)) is obj


def test_every_class_a_facade_renames_still_resolves_its_annotations() -> None:
    """``__module__`` names the facade: postponed annotations must not be looked up there."""
    for _, _, obj in _exported():
        if isinstance(obj, type) and issubclass(obj, msgspec.Struct):
            msgspec.inspect.type_info(obj)  # raises NameError if a name cannot be resolved
    event = events.new_event(
        events.SystemSignal(kind=events.SignalKind.STARTED),
        agent_role="r",
        agent_id="/a",
        sequence=1,
    )
    assert events.decode_event(events.encode_event(event)) == event
    placement = swarm_actors.cluster.Placement(shards=16)
    data = msgspec.msgpack.encode(placement)
    assert msgspec.msgpack.decode(data, type=swarm_actors.cluster.Placement) == placement


def _package_exceptions() -> set[type[BaseException]]:
    found: set[type[BaseException]] = set()
    for info in pkgutil.walk_packages(swarm_actors.__path__, "swarm_actors."):
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if (
                isinstance(obj, type)
                and issubclass(obj, BaseException)
                and obj.__module__.startswith("swarm_actors")
            ):
                found.add(obj)
    return found


def _documented_tree(text: str) -> dict[str, tuple[str | None, tuple[str, ...]]]:
    """name -> (parent in the tree, builtin bases in parentheses), from a drawn tree."""
    tree: dict[str, tuple[str | None, tuple[str, ...]]] = {}
    stack: list[tuple[int, str]] = []
    for line in text.splitlines():
        match = re.match(r"^([ │├└─]*)(\w+Error)( \(([\w, ]+)\))?", line)
        if match is None:
            continue
        depth = len(match.group(1))
        name = match.group(2)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        builtins_ = tuple(b.strip() for b in (match.group(4) or "").split(",") if b.strip())
        tree[name] = (stack[-1][1] if stack else None, builtins_)
        stack.append((depth, name))
    return tree


def _tree_of(text: str) -> str:
    start = text.index("SwarmError\n")
    return text[start : text.index("\n\n", start)]


def test_every_exception_is_exported_and_in_the_documented_tree() -> None:
    from swarm_actors import _exceptions

    exceptions = _package_exceptions()
    assert swarm_actors.errors.NoSuchActorError in exceptions  # found where the NATS layer uses it
    exported = {getattr(swarm_actors.errors, n) for n in swarm_actors.errors.__all__}
    assert exceptions == exported
    readme = README.read_text(encoding="utf-8")
    documented = _documented_tree(_tree_of(_exceptions.__doc__ or ""))
    assert _documented_tree(_tree_of(readme)) == documented
    assert set(documented) == {cls.__name__ for cls in exceptions}
    for cls in exceptions:
        parent, builtin_bases = documented[cls.__name__]
        if parent is None:
            assert cls is swarm_actors.SwarmError
            continue
        # The tree is the real hierarchy: its parent first, then the builtins it names.
        assert cls.__bases__[0].__name__ == parent, cls
        assert tuple(b.__name__ for b in cls.__bases__[1:]) == builtin_bases, cls


def test_the_top_level_errors_are_the_ones_in_errors() -> None:
    for name in swarm_actors.__all__:
        obj = getattr(swarm_actors, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert getattr(swarm_actors.errors, name) is obj
            assert obj.__module__ == "swarm_actors.errors"


# --- ActorSystem: configuration objects and entry points --------------------------------------


class _Echo(swarm_actors.Actor):
    async def on_receive(self, message: Any) -> Any:
        return message


@pytest.mark.parametrize(
    "make",
    [
        lambda: swarm_actors.Timeouts(ask=0),
        lambda: swarm_actors.Timeouts(drain=float("nan")),
        lambda: swarm_actors.Passivation(max_active=0),
        lambda: swarm_actors.Passivation(max_active=True),
        lambda: swarm_actors.Passivation(idle_after=-1.0),
        lambda: swarm_actors.Tracing(enabled="no"),  # type: ignore[arg-type]
        lambda: swarm_actors.Tracing(provider=object()),  # type: ignore[arg-type]
        lambda: swarm_actors.Signals(health_interval=0),
        lambda: swarm_actors.Signals(virtual=1),  # type: ignore[arg-type]
        lambda: swarm_actors.cluster.Cluster(node="has.dot"),
        lambda: swarm_actors.cluster.Cluster(node="n1\n"),  # `$` would match before the newline
        lambda: swarm_actors.cluster.Cluster(node_ttl=0.5),
        lambda: swarm_actors.cluster.Cluster(replicas=6),
        lambda: swarm_actors.cluster.Cluster(placement="hilbert"),  # type: ignore[arg-type]
    ],
)
def test_a_bad_setting_fails_where_it_is_written(make: Any) -> None:
    with pytest.raises(swarm_actors.InvalidArgumentError):
        make()


BAD_SYSTEMS: list[dict[str, Any]] = [
    {"timeouts": 30.0},  # the old style: a bare number
    {"passivation": {"max_active": 1}},
    {"tracing": False},
    {"journal": "disk"},
    {"clock": 1.0},
    {"supervision": "restart"},
    {"space": object()},
    {"cluster": swarm_actors.cluster.Cluster(node="n1")},  # no nats=
    {"nats": 42},
    {"nats": "nats://127.0.0.1:4222", "cluster": swarm_actors.cluster.Cluster(data_dir="/x")},
]


@pytest.mark.parametrize("options", BAD_SYSTEMS)
def test_actor_system_refuses_a_bad_argument(options: dict[str, Any]) -> None:
    with pytest.raises(swarm_actors.InvalidArgumentError):
        swarm_actors.ActorSystem(**options)


def test_the_settings_read_back() -> None:
    cluster = swarm_actors.cluster.Cluster(node="n1", replicas=1)
    system = swarm_actors.ActorSystem(
        timeouts=swarm_actors.Timeouts(ask=1.0),
        passivation=swarm_actors.Passivation(max_active=5),
        signals=swarm_actors.Signals(health_interval=None),
        nats="nats://127.0.0.1:1",
        cluster=cluster,
    )
    assert system.timeouts == swarm_actors.Timeouts(ask=1.0)
    assert system.passivation.max_active == 5
    assert system.signals.health_interval is None
    assert system.tracing == swarm_actors.Tracing()
    assert system.cluster is cluster
    assert system.node == "n1"
    assert swarm_actors.ActorSystem().cluster is None


@pytest.mark.asyncio
async def test_virtual_and_placed_refs_are_asked_for_by_name() -> None:
    async with swarm_actors.ActorSystem() as system:
        ref = system.virtual(_Echo, "k")
        assert isinstance(ref, swarm_actors.VirtualRef)
        assert await ref.ask("hi") == "hi"
        # A position is never silently dropped: virtual() takes none, placed() needs a cluster.
        with pytest.raises(TypeError):
            system.virtual(_Echo, "k", position=(1, 2))  # type: ignore[call-arg]
        with pytest.raises(swarm_actors.errors.NotConnectedError, match="nats="):
            system.placed(_Echo, "k", position=(1, 2))
        with pytest.raises(swarm_actors.errors.NotConnectedError):
            system.placed(_Echo, "k")
        with pytest.raises(swarm_actors.InvalidArgumentError, match="position"):
            system.placed(_Echo, "k", position=(-1,))
        with pytest.raises(TypeError, match="Actor subclass"):
            system.virtual(int, "k")  # type: ignore[type-var]


@pytest.mark.asyncio
async def test_a_placed_ref_needs_a_connected_system() -> None:
    system = swarm_actors.ActorSystem(nats="nats://127.0.0.1:1")
    with pytest.raises(swarm_actors.errors.NotConnectedError, match="async with"):
        system.placed(_Echo, "k", position=(0,))
    with pytest.raises(swarm_actors.errors.NotConnectedError):
        system.placement_stats()


@pytest.mark.asyncio
async def test_a_stopped_system_refuses_every_entry_point() -> None:
    system = swarm_actors.ActorSystem()
    async with system:
        await system.start(_Echo, name="echo")
        assert system.lookup("echo") is not None
    assert system.stopped
    refused = [
        lambda: system.virtual(_Echo, "k"),
        lambda: system.placed(_Echo, "k"),
        lambda: system.batch_spawn(_Echo, depth=1, branching=2),
        lambda: system.lookup("echo"),
        system.health,
    ]
    for call in refused:
        with pytest.raises(swarm_actors.SystemStoppedError):
            call()
    with pytest.raises(swarm_actors.SystemStoppedError):
        await system.start(_Echo)
    with pytest.raises(swarm_actors.SystemStoppedError):
        await system.resolve("echo")
    with pytest.raises(swarm_actors.SystemStoppedError):
        await system.__aenter__()
