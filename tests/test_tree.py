"""The agent hierarchy (``AgentTree``) of the Rust extension, tested directly."""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from swarm_actors._exceptions import (
    AgentError,
    AgentStateError,
    CorruptStateError,
    InvalidArgumentError,
    UnknownAgentError,
)
from swarm_actors._tuplecore import AgentInfo, AgentTree, BatchInfo, TreeStats

# Token layout (see HELPER_NOTES / the stub): magic, version, encoding, u32 length, xxh3-128
# digest, payload. An LZ4 payload starts with an 8-byte checksum of the block.
MAGIC = b"AT"
HEADER_LEN = 24

LEVELS_4x32 = [32, 32**2, 32**3, 32**4]
COUNT_4x32 = sum(LEVELS_4x32)  # 1,082,400


def snapshot(tree: AgentTree, ids: range | list[int] | None = None) -> tuple[object, ...]:
    """Everything observable about a small tree (or the listed ids of a big one)."""
    ids = range(len(tree)) if ids is None else ids
    return (
        tree.stats(),
        tree.prune(0),
        [tree.status(i) for i in ids],
        [tree.info(i) for i in ids],
        [list(tree.children(i)) for i in ids],
    )


@pytest.fixture
def tree() -> AgentTree:
    return AgentTree()


# --- construction -----------------------------------------------------------------------------


def test_new_tree_holds_only_the_root(tree: AgentTree) -> None:
    assert tree.root == 0
    assert (tree.dims, tree.bits) == (4, 32)
    info = tree.info(0)
    assert isinstance(info, AgentInfo)
    assert (info.id, info.parent, info.kind, info.depth, info.path) == (0, None, "root", 0, ())
    assert (info.hilbert, info.status) == (0, "active")
    stats = tree.stats()
    assert isinstance(stats, TreeStats)
    assert (stats.virtual, stats.active, stats.compressed) == (0, 1, 0)
    assert (stats.total, stats.materialized, stats.batches) == (1, 1, 0)
    assert len(tree) == 1
    assert 0 in tree
    assert 1 not in tree
    assert -1 not in tree
    assert "0" not in tree
    assert tree.prune(0) == []
    assert repr(tree) == "<AgentTree dims=4 bits=32 total=1 active=1 compressed=0 virtual=0>"
    assert repr(info) == (
        "AgentInfo(id=0, parent=None, kind='root', depth=0, path=(), hilbert=0, status='active')"
    )


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"dims": 0}, InvalidArgumentError),
        ({"bits": 0}, InvalidArgumentError),
        ({"bits": 65}, InvalidArgumentError),
        ({"dims": 5, "bits": 32}, InvalidArgumentError),
        ({"dims": -1}, InvalidArgumentError),
        ({"dims": 2**40}, InvalidArgumentError),
        ({"dims": "4"}, TypeError),
        ({"bits": 3.0}, TypeError),
    ],
)
def test_curve_parameters_are_validated(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        AgentTree(**kwargs)  # type: ignore[arg-type]


def test_constructor_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        AgentTree(4, 32)  # type: ignore[call-arg]
    small = AgentTree(dims=2, bits=64)
    assert (small.dims, small.bits) == (2, 64)


# --- lifecycle -------------------------------------------------------------------------------


def test_lifecycle_of_a_spawned_agent(tree: AgentTree) -> None:
    agent = tree.spawn(0, "worker")
    assert agent == 1
    assert tree.status(agent) == "active"
    state = bytes(range(64))
    tree.compress(agent, state)
    assert tree.status(agent) == "compressed"
    assert tree.stats().compressed == 1
    token = tree.token(agent)
    assert token[:2] == MAGIC
    assert len(token) == HEADER_LEN + 64  # incompressible: stored raw
    restored = tree.restore(agent)
    assert restored == state
    assert type(restored) is bytes
    assert tree.status(agent) == "active"
    assert tree.stats().compressed == 0


def test_virtual_agent_is_materialized_by_touch(tree: AgentTree) -> None:
    batch = tree.batch_spawn(0, "leaf", 2, 3)
    leaf = batch.leaf_first_id + 4
    assert tree.status(leaf) == "virtual"
    tree.touch(leaf)
    assert tree.status(leaf) == "active"
    stats = tree.stats()
    assert (stats.virtual, stats.active, stats.materialized) == (11, 2, 2)
    tree.compress(leaf, b"x" * 1000)
    assert len(tree.token(leaf)) < 100  # repetitive: LZ4
    assert tree.restore(leaf) == b"x" * 1000


def test_activate_restores_a_compressed_agent_and_touches_the_others(tree: AgentTree) -> None:
    batch = tree.batch_spawn(0, "leaf", 1, 3)
    leaf = batch.leaf_first_id + 1
    agent = tree.spawn(0, "w")
    assert tree.activate(leaf) is None  # virtual: materialized, the most recently used
    assert tree.status(leaf) == "active"
    assert tree.prune(0) == [agent, leaf]
    assert tree.activate(agent) is None  # active: the most recently used
    assert tree.prune(0) == [leaf, agent]
    state = bytes(range(100))
    tree.compress(agent, state)
    restored = tree.activate(agent)  # compressed: restored, byte-identical
    assert restored == state
    assert type(restored) is bytes
    assert tree.status(agent) == "active"
    assert tree.prune(0) == [leaf, agent]
    with pytest.raises(UnknownAgentError):
        tree.activate(99)


def test_prune_returns_least_recently_used_first_and_changes_nothing(tree: AgentTree) -> None:
    ids = [tree.spawn(0, "w") for _ in range(6)]
    tree.touch(ids[0])
    tree.touch(ids[2])
    order = [ids[1], ids[3], ids[4], ids[5], ids[0], ids[2]]
    assert tree.prune(0) == order
    assert tree.prune(1) == order  # the root counts towards max_active but is never returned
    assert tree.prune(5) == order[:2]
    assert tree.prune(7) == []
    assert tree.prune(2**64 - 1) == []
    assert all(tree.status(i) == "active" for i in ids)
    for agent in tree.prune(3):
        tree.compress(agent, b"s")
    assert tree.stats().active == 3
    assert tree.prune(0) == [ids[0], ids[2]]
    tree.restore(ids[1])
    assert tree.prune(0) == [ids[0], ids[2], ids[1]]


def test_tokens_move_agents_between_trees() -> None:
    source, target = AgentTree(), AgentTree()
    for t in (source, target):
        t.batch_spawn(0, "leaf", 3, 4)
    source.touch(50)
    source.compress(50, b"portable state")
    target.load_token(50, source.token(50))
    assert target.status(50) == "compressed"
    assert target.stats().compressed == 1
    assert target.token(50) == source.token(50)
    assert target.restore(50) == b"portable state"
    # Loading onto a compressed agent replaces its state.
    target.compress(50, b"old")
    target.load_token(50, source.token(50))
    assert target.restore(50) == b"portable state"


def test_large_states_round_trip() -> None:
    tree = AgentTree()
    ids = [tree.spawn(0, "big") for _ in range(2)]
    compressible = bytes(range(256)) * 8192  # 2 MiB
    incompressible = random.Random(7).randbytes(3 << 20)
    tree.compress(ids[0], compressible)
    tree.compress(ids[1], incompressible)
    assert len(tree.token(ids[0])) < len(compressible) // 10
    assert len(tree.token(ids[1])) == HEADER_LEN + len(incompressible)
    other = AgentTree()
    other.spawn(0, "big")
    other.spawn(0, "big")
    other.compress(1, b"placeholder")
    other.load_token(1, tree.token(ids[1]))
    assert other.restore(1) == incompressible
    assert tree.restore(ids[0]) == compressible
    bad = bytearray(tree.token(ids[1]))
    bad[-1] ^= 1
    other.compress(2, b"kept")
    with pytest.raises(CorruptStateError):
        other.load_token(2, bytes(bad))
    assert other.restore(2) == b"kept"
    with pytest.raises(AgentStateError):
        other.load_token(1, bytes(bad))  # active: the state error comes first


def test_concurrent_use_from_threads() -> None:
    tree = AgentTree()
    batch = tree.batch_spawn(0, "leaf", 2, 100)
    big = tree.spawn(0, "big")
    state = random.Random(1).randbytes(2 << 20)
    errors: list[BaseException] = []

    def toucher() -> None:
        try:
            for i in range(batch.leaf_first_id, batch.leaf_first_id + batch.leaves):
                tree.touch(i)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def compressor() -> None:
        try:
            for _ in range(5):
                tree.compress(big, state)
                assert tree.restore(big) == state
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=toucher), threading.Thread(target=compressor)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert tree.stats().active == 2 + batch.leaves


# --- batches and lazy resolution -------------------------------------------------------------


def expected_4x32(agent: int) -> tuple[int, int, tuple[int, ...]]:
    """(parent, depth, path) of a node of a depth-4/branching-32 batch under the root at id 1,
    computed independently from the level sizes."""
    offset = agent - 1
    level, start = 1, 0
    while offset >= start + LEVELS_4x32[level - 1]:
        start += LEVELS_4x32[level - 1]
        level += 1
    index = offset - start
    path = tuple((index // 32**k) % 32 for k in reversed(range(level)))
    if level == 1:
        parent = 0
    else:
        parent_start = start - LEVELS_4x32[level - 2]
        parent = 1 + parent_start + index // 32
    return parent, level, path


@pytest.fixture(scope="module")
def big_tree() -> tuple[AgentTree, BatchInfo]:
    tree = AgentTree()
    return tree, tree.batch_spawn(0, "leaf", 4, 32)


def test_million_leaf_batch_is_described_not_built(big_tree: tuple[AgentTree, BatchInfo]) -> None:
    tree, batch = big_tree
    assert isinstance(batch, BatchInfo)
    assert (batch.parent, batch.kind, batch.depth, batch.branching) == (0, "leaf", 4, 32)
    assert (batch.first_id, batch.count, batch.leaves) == (1, COUNT_4x32, 32**4)
    assert batch.leaf_first_id == 1 + 32 + 32**2 + 32**3
    assert batch.level_range(1) == range(1, 33)
    assert batch.level_range(4) == range(batch.leaf_first_id, COUNT_4x32 + 1)
    assert len(tree) == COUNT_4x32 + 1
    stats = tree.stats()
    assert (stats.virtual, stats.materialized, stats.batches) == (COUNT_4x32, 1, 1)
    assert repr(batch).startswith("BatchInfo(parent=0, kind='leaf', depth=4, branching=32,")
    for level in (0, 5, -1):
        with pytest.raises(InvalidArgumentError):
            batch.level_range(level)


@pytest.mark.parametrize("agent", [1, 32, 33, 1056, 1057, 33824, 33825, COUNT_4x32])
def test_virtual_ids_resolve_at_level_boundaries(
    big_tree: tuple[AgentTree, BatchInfo], agent: int
) -> None:
    tree, _ = big_tree
    parent, depth, path = expected_4x32(agent)
    info = tree.info(agent)
    assert (info.parent, info.depth, info.path) == (parent, depth, path)
    assert (info.kind, info.status) == ("leaf", "virtual")


def test_first_and_last_virtual_ids(big_tree: tuple[AgentTree, BatchInfo]) -> None:
    tree, _ = big_tree
    assert tree.info(1).path == (0,)
    last = tree.info(COUNT_4x32)
    assert last.path == (31, 31, 31, 31)
    assert last.parent == 1 + 32 + 1024 + 32767
    with pytest.raises(UnknownAgentError):
        tree.info(COUNT_4x32 + 1)


@given(agent=st.integers(min_value=1, max_value=COUNT_4x32))
def test_random_virtual_ids_resolve(big_tree: tuple[AgentTree, BatchInfo], agent: int) -> None:
    tree, _ = big_tree
    parent, depth, path = expected_4x32(agent)
    info = tree.info(agent)
    assert (info.parent, info.depth, info.path) == (parent, depth, path)
    assert agent in list(tree.children(parent))
    assert tree.status(agent) == "virtual"


def test_hilbert_coordinate_matches_an_independent_curve() -> None:
    hilbertcurve = pytest.importorskip("hilbertcurve.hilbertcurve")
    tree = AgentTree(dims=2, bits=3)
    batch = tree.batch_spawn(0, "w", 3, 9)  # ordinals up to 8: clamped to 7
    curve = hilbertcurve.HilbertCurve(3, 2)
    for agent in range(batch.first_id, batch.first_id + batch.count, 7):
        info = tree.info(agent)
        point = [min(x, 7) for x in (*info.path, 0, 0)[:2]]
        assert info.hilbert == curve.distance_from_point(point)
    big = AgentTree()
    big.batch_spawn(0, "w", 6, 32)
    curve = hilbertcurve.HilbertCurve(32, 4)
    for agent in (1, 40, 5000, 1_108_378_656):
        info = big.info(agent)
        assert info.hilbert == curve.distance_from_point([*info.path[:4], 0, 0, 0, 0][:4])


def test_billion_leaf_batch(tree: AgentTree) -> None:
    batch = tree.batch_spawn(0, "leaf", 6, 32)
    assert batch.leaves == 2**30
    assert batch.count == sum(32**k for k in range(1, 7))
    last = tree.info(batch.first_id + batch.count - 1)
    assert (last.depth, last.path) == (6, (31,) * 6)
    assert tree.stats().materialized == 1
    last_leaf = batch.first_id + batch.count - 1
    level5_last = batch.leaf_first_id - 1
    assert tree.child_count(level5_last) == 32
    first_three = list(itertools.islice(tree.children(level5_last), 3))
    assert first_three == [last_leaf - 31, last_leaf - 30, last_leaf - 29]
    assert list(itertools.islice(tree.children(0), 2)) == [1, 2]
    assert tree.child_count(0) == 32
    assert tree.stats().materialized == 1


def test_children_are_listed_lazily_in_ordinal_order(tree: AgentTree) -> None:
    batch = tree.batch_spawn(0, "mid", 2, 3)  # 1..3, then 4..12
    extra = tree.spawn(2, "extra")  # below a virtual node: ordinal 3
    sub = tree.batch_spawn(2, "sub", 1, 2)  # ordinals 4, 5
    late = tree.spawn(0, "late")  # root ordinal 3
    children = tree.children(2)
    assert iter(children) is children
    assert next(children) == 7
    assert list(children) == [8, 9, extra, sub.first_id, sub.first_id + 1]
    assert tree.child_count(2) == 6
    assert tree.status(2) == "virtual"
    assert tree.stats().materialized == 3  # root, extra, late: listing materialized nothing
    assert tree.info(extra).path == (1, 3)
    assert tree.info(sub.first_id + 1).path == (1, 5)
    assert tree.info(late).path == (3,)
    assert list(tree.children(0)) == [1, 2, 3, late]
    assert list(tree.children(batch.leaf_first_id)) == []
    # An iterator covers the children that existed when it was made.
    pending = tree.children(0)
    newer = tree.spawn(0, "newer")
    assert list(pending) == [1, 2, 3, late]
    assert list(tree.children(0))[-1] == newer
    many = AgentTree()
    spawned = [many.spawn(0, "w") for _ in range(1000)]
    assert list(many.children(0)) == spawned


# --- errors: class, attributes, and the tree unchanged ---------------------------------------


Populated = tuple[AgentTree, dict[str, int]]
Call = Callable[[AgentTree], object]


@pytest.fixture
def populated() -> Populated:
    tree = AgentTree()
    tree.batch_spawn(0, "leaf", 2, 3)  # ids 1..12, virtual
    active = tree.spawn(0, "worker")
    compressed = tree.spawn(0, "worker")
    tree.compress(compressed, b"original state")
    tree.touch(5)
    return tree, {"virtual": 4, "active": active, "compressed": compressed, "touched": 5}


UNKNOWN = 10**6


@pytest.mark.parametrize(
    "call",
    [
        lambda t: t.info(UNKNOWN),
        lambda t: t.status(UNKNOWN),
        lambda t: t.touch(UNKNOWN),
        lambda t: t.spawn(UNKNOWN, "w"),
        lambda t: t.batch_spawn(UNKNOWN, "w", 1, 2),
        lambda t: t.compress(UNKNOWN, b"s"),
        lambda t: t.restore(UNKNOWN),
        lambda t: t.token(UNKNOWN),
        lambda t: t.load_token(UNKNOWN, b"AT"),
        lambda t: t.children(UNKNOWN),
        lambda t: t.child_count(UNKNOWN),
    ],
)
def test_unknown_ids_raise_and_change_nothing(populated: Populated, call: Call) -> None:
    tree, _ = populated
    before = snapshot(tree)
    with pytest.raises(UnknownAgentError) as excinfo:
        call(tree)
    assert excinfo.value.agent_id == UNKNOWN
    assert isinstance(excinfo.value, LookupError)
    assert isinstance(excinfo.value, AgentError)
    assert snapshot(tree) == before


@pytest.mark.parametrize(
    ("operation", "target", "state"),
    [
        ("touch", "compressed", "compressed"),
        ("compress", "virtual", "virtual"),
        ("compress", "compressed", "compressed"),
        ("compress", "root", "active"),
        ("restore", "active", "active"),
        ("restore", "virtual", "virtual"),
        ("restore", "root", "active"),
        ("token", "active", "active"),
        ("token", "virtual", "virtual"),
        ("load_token", "active", "active"),
        ("load_token", "root", "active"),
    ],
)
def test_wrong_state_raises_and_changes_nothing(
    populated: Populated, operation: str, target: str, state: str
) -> None:
    tree, ids = populated
    ids = {**ids, "root": 0}
    agent = ids[target]
    valid_token = tree.token(ids["compressed"])
    args = {
        "touch": (),
        "compress": (b"new",),
        "restore": (),
        "token": (),
        "load_token": (valid_token,),
    }[operation]
    before = snapshot(tree)
    with pytest.raises(AgentStateError) as excinfo:
        getattr(tree, operation)(agent, *args)
    assert excinfo.value.agent_id == agent
    assert excinfo.value.state == state
    assert snapshot(tree) == before


def corrupted_variants(token: bytes) -> list[tuple[str, bytes]]:
    variants = [(f"truncated to {n}", token[:n]) for n in range(len(token))]
    variants += [
        (f"byte {i} flipped", token[:i] + bytes([token[i] ^ (1 << (i % 8))]) + token[i + 1 :])
        for i in range(len(token))
    ]
    variants += [
        ("wrong magic", b"XY" + token[2:]),
        ("wrong version", token[:2] + bytes([2]) + token[3:]),
        ("unknown encoding", token[:3] + bytes([7]) + token[4:]),
        ("wrong digest", token[:8] + bytes(16) + token[24:]),
        ("extra byte", token + b"\0"),
        ("empty", b""),
        ("garbage", b"not a token at all, just some bytes"),
    ]
    return variants


@pytest.mark.parametrize(
    "state",
    [b"", b"short", bytes(range(64)), b"abcdefgh" * 40],
    ids=["empty", "short", "raw64", "lz4"],
)
def test_corrupted_tokens_are_rejected_and_change_nothing(
    populated: Populated, state: bytes
) -> None:
    tree, ids = populated
    source = AgentTree()
    source.spawn(0, "w")
    source.compress(1, state)
    token = source.token(1)
    before = snapshot(tree)
    for name, bad in corrupted_variants(token):
        for agent in (ids["virtual"], ids["compressed"]):
            with pytest.raises(CorruptStateError) as excinfo:
                tree.load_token(agent, bad)
            assert excinfo.value.agent_id == agent, name
            assert isinstance(excinfo.value, ValueError)
    assert snapshot(tree) == before
    assert tree.restore(ids["compressed"]) == b"original state"
    tree.load_token(ids["virtual"], token)  # the intact token still loads
    assert tree.restore(ids["virtual"]) == state


def test_swapped_payload_fails_the_digest(populated: Populated) -> None:
    tree, ids = populated
    source = AgentTree()
    a, b = source.spawn(0, "w"), source.spawn(0, "w")
    source.compress(a, b"A" * 8 + bytes(range(56)))
    source.compress(b, b"B" * 8 + bytes(range(56)))
    assert len(source.token(a)) == len(source.token(b)) == HEADER_LEN + 64  # raw payloads
    forged = source.token(a)[:HEADER_LEN] + source.token(b)[HEADER_LEN:]
    before = snapshot(tree)
    with pytest.raises(CorruptStateError, match="digest"):
        tree.load_token(ids["virtual"], forged)
    assert snapshot(tree) == before


@pytest.mark.parametrize(
    "call",
    [
        lambda t: t.touch(-1),
        lambda t: t.info(-5),
        lambda t: t.spawn(-1, "w"),
        lambda t: t.touch(2**64),
        lambda t: t.prune(-1),
        lambda t: t.spawn(0, ""),
        lambda t: t.batch_spawn(0, "w", 0, 3),
        lambda t: t.batch_spawn(0, "w", 3, 0),
        lambda t: t.batch_spawn(0, "w", 65, 1),
        lambda t: t.batch_spawn(0, "w", 2**32, 2),
        lambda t: t.batch_spawn(0, "w", 3, 2**32),  # more than 2**64 nodes
        lambda t: t.batch_spawn(0, "w", 1, 2**64 - 1),  # ids would run out
        lambda t: t.batch_spawn(0, "w", -1, 2),
        lambda t: t.batch_spawn(0, "w", 2, -2),
    ],
)
def test_invalid_arguments_raise_and_change_nothing(populated: Populated, call: Call) -> None:
    tree, _ = populated
    before = snapshot(tree)
    with pytest.raises(InvalidArgumentError):
        call(tree)
    assert snapshot(tree) == before


@pytest.mark.parametrize(
    "call",
    [
        lambda t: t.touch("1"),
        lambda t: t.touch(1.0),
        lambda t: t.touch(None),
        lambda t: t.info([1]),
        lambda t: t.spawn(0, 7),
        lambda t: t.compress(13, "text"),
        lambda t: t.load_token(4, bytearray(b"AT")),
        lambda t: t.batch_spawn(0, "w", 1.5, 2),
        lambda t: t.prune("all"),
    ],
)
def test_non_int_arguments_raise_type_error(populated: Populated, call: Call) -> None:
    tree, _ = populated
    before = snapshot(tree)
    with pytest.raises(TypeError):
        call(tree)
    assert snapshot(tree) == before


def test_id_space_exhaustion() -> None:
    tree = AgentTree()
    batch = tree.batch_spawn(0, "all", 1, 2**64 - 2)
    assert batch.count == 2**64 - 2
    assert tree.stats().total == 2**64 - 1
    assert tree.info(2**64 - 2).path == (2**64 - 3,)
    before = tree.stats()
    with pytest.raises(InvalidArgumentError):
        tree.spawn(0, "one more")
    with pytest.raises(InvalidArgumentError):
        tree.batch_spawn(0, "one more", 1, 1)
    assert tree.stats() == before
    with pytest.raises(UnknownAgentError):
        tree.touch(2**64 - 1)


def test_value_objects_are_frozen_and_compare_by_value(tree: AgentTree) -> None:
    batch = tree.batch_spawn(0, "leaf", 2, 2)
    assert tree.info(3) == tree.info(3)
    assert hash(tree.info(3)) == hash(tree.info(3))
    assert tree.info(3) != tree.info(4)
    assert tree.stats() == tree.stats()
    with pytest.raises(AttributeError):
        batch.depth = 5  # type: ignore[misc]
    with pytest.raises(AttributeError):
        tree.info(3).kind = "x"  # type: ignore[misc]
    assert repr(tree.stats()) == (
        "TreeStats(virtual=6, active=1, compressed=0, total=7, materialized=1, batches=1)"
    )


# --- model-based state machine ---------------------------------------------------------------


@dataclass
class Model:
    """Every node enumerated explicitly; statuses, LRU order and states in plain containers."""

    parent: list[int | None] = field(default_factory=lambda: [None])
    kind: list[str] = field(default_factory=lambda: ["root"])
    children: list[list[int]] = field(default_factory=lambda: [[]])
    status: list[str] = field(default_factory=lambda: ["active"])
    lru: list[int] = field(default_factory=list)  # active agents but the root, oldest first
    states: dict[int, bytes] = field(default_factory=dict)
    batches: int = 0

    @property
    def total(self) -> int:
        return len(self.parent)

    def add(self, parent: int, kind: str, status: str) -> int:
        agent = self.total
        self.parent.append(parent)
        self.kind.append(kind)
        self.children.append([])
        self.status.append(status)
        self.children[parent].append(agent)
        return agent

    def path(self, agent: int) -> tuple[int, ...]:
        path: list[int] = []
        parent = self.parent[agent]
        while parent is not None:
            path.append(self.children[parent].index(agent))
            agent, parent = parent, self.parent[parent]
        return tuple(reversed(path))


states = st.one_of(
    st.binary(max_size=80),
    st.builds(lambda b, n: bytes([b]) * n, st.integers(0, 255), st.integers(0, 300)),
)
picks = st.integers(min_value=0, max_value=2**16)


@settings(stateful_step_count=40, deadline=None)
class TreeMachine(RuleBasedStateMachine):
    """Random operation sequences against the model."""

    def __init__(self) -> None:
        super().__init__()
        self.tree = AgentTree()
        self.model = Model()

    def pick(self, raw: int) -> int:
        return raw % (self.model.total + 2)  # sometimes an unknown id

    def expect(
        self, call: Callable[[], object], error: type[Exception], state: str | None = None
    ) -> None:
        with pytest.raises(error) as excinfo:
            call()
        if state is not None:
            assert isinstance(excinfo.value, AgentStateError)
            assert excinfo.value.state == state

    @rule(raw=picks, kind=st.sampled_from(["a", "b"]))
    def spawn(self, raw: int, kind: str) -> None:
        parent = self.pick(raw)
        if parent >= self.model.total:
            self.expect(lambda: self.tree.spawn(parent, kind), UnknownAgentError)
            return
        agent = self.tree.spawn(parent, kind)
        assert agent == self.model.add(parent, kind, "active")
        self.model.lru.append(agent)

    @rule(raw=picks, depth=st.integers(1, 3), branching=st.integers(1, 3))
    def batch_spawn(self, raw: int, depth: int, branching: int) -> None:
        parent = self.pick(raw)
        if parent >= self.model.total:
            self.expect(
                lambda: self.tree.batch_spawn(parent, "b", depth, branching), UnknownAgentError
            )
            return
        batch = self.tree.batch_spawn(parent, "b", depth, branching)
        assert batch.first_id == self.model.total
        level = [parent]
        for number in range(1, depth + 1):
            level = [self.model.add(p, "b", "virtual") for p in level for _ in range(branching)]
            assert batch.level_range(number) == range(level[0], level[-1] + 1)
        assert batch.leaf_first_id == level[0]
        self.model.batches += 1

    @rule(raw=picks)
    def touch(self, raw: int) -> None:
        agent = self.pick(raw)
        m = self.model
        if agent >= m.total:
            self.expect(lambda: self.tree.touch(agent), UnknownAgentError)
        elif m.status[agent] == "compressed":
            self.expect(lambda: self.tree.touch(agent), AgentStateError, "compressed")
        else:
            self.tree.touch(agent)
            if agent != 0:
                if m.status[agent] == "active":
                    m.lru.remove(agent)
                m.status[agent] = "active"
                m.lru.append(agent)

    @rule(max_active=st.integers(0, 15))
    def prune(self, max_active: int) -> None:
        active = self.model.status.count("active")
        excess = max(0, active - max(max_active, 1))
        assert self.tree.prune(max_active) == self.model.lru[:excess]

    @rule(raw=picks, state=states)
    def compress(self, raw: int, state: bytes) -> None:
        agent = self.pick(raw)
        m = self.model
        if agent >= m.total:
            self.expect(lambda: self.tree.compress(agent, state), UnknownAgentError)
        elif agent == 0 or m.status[agent] != "active":
            self.expect(lambda: self.tree.compress(agent, state), AgentStateError, m.status[agent])
        else:
            self.tree.compress(agent, state)
            m.status[agent] = "compressed"
            m.lru.remove(agent)
            m.states[agent] = state

    @rule(raw=picks)
    def restore(self, raw: int) -> None:
        agent = self.pick(raw)
        m = self.model
        if agent >= m.total:
            self.expect(lambda: self.tree.restore(agent), UnknownAgentError)
        elif m.status[agent] != "compressed":
            self.expect(lambda: self.tree.restore(agent), AgentStateError, m.status[agent])
        else:
            assert self.tree.restore(agent) == m.states.pop(agent)
            m.status[agent] = "active"
            m.lru.append(agent)

    @rule(raw_from=picks, raw_to=picks)
    def move_token(self, raw_from: int, raw_to: int) -> None:
        source, target = self.pick(raw_from), self.pick(raw_to)
        m = self.model
        if source >= m.total or m.status[source] != "compressed":
            error = UnknownAgentError if source >= m.total else AgentStateError
            self.expect(lambda: self.tree.token(source), error)
            return
        token = self.tree.token(source)
        if target >= m.total:
            self.expect(lambda: self.tree.load_token(target, token), UnknownAgentError)
        elif m.status[target] == "active":
            self.expect(lambda: self.tree.load_token(target, token), AgentStateError, "active")
        else:
            self.tree.load_token(target, token)
            m.status[target] = "compressed"
            m.states[target] = m.states[source]

    @rule(raw=picks, state=states, cut=st.integers(0, 2**16), how=st.sampled_from("tfm"))
    def load_corrupt(self, raw: int, state: bytes, cut: int, how: str) -> None:
        agent = self.pick(raw)
        source = AgentTree()
        source.spawn(0, "w")
        source.compress(1, state)
        token = bytearray(source.token(1))
        at = cut % len(token)
        if how == "t":
            del token[at:]
        elif how == "f":
            token[at] ^= 0x10
        else:
            token[0:2] = b"ZZ"
        m = self.model
        if agent >= m.total:
            error: type[Exception] = UnknownAgentError
        elif m.status[agent] == "active":
            error = AgentStateError
        else:
            error = CorruptStateError
        self.expect(lambda: self.tree.load_token(agent, bytes(token)), error)

    @invariant()
    def counts_and_statuses_match(self) -> None:
        m, stats = self.model, self.tree.stats()
        assert stats.total == len(self.tree) == m.total
        assert stats.active == m.status.count("active")
        assert stats.compressed == m.status.count("compressed")
        assert stats.virtual == m.status.count("virtual")
        assert stats.materialized == stats.active + stats.compressed
        assert stats.batches == m.batches
        assert [self.tree.status(i) for i in range(m.total)] == m.status

    def teardown(self) -> None:
        m = self.model
        for agent in range(m.total):
            info = self.tree.info(agent)
            assert info.parent == m.parent[agent]
            assert info.kind == m.kind[agent]
            assert info.path == m.path(agent)
            assert info.depth == len(info.path)
            assert list(self.tree.children(agent)) == m.children[agent]
            assert self.tree.child_count(agent) == len(m.children[agent])


test_tree_matches_model = TreeMachine.TestCase
