"""Synchronous tuple-space semantics, leases, capabilities and bad input."""

from __future__ import annotations

import pickle
from enum import IntEnum
from typing import Any

import pytest

from swarm_actors import InvalidArgumentError
from swarm_actors.errors import ArityError, CapabilityError, FieldTypeError, SpaceError
from swarm_actors.space import ANY, TupleSpace


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_fifo_among_matches() -> None:
    space = TupleSpace()
    for i in range(5):
        space.out(("jobs", i))
    assert space.take_nowait(("jobs", int)) == ("jobs", 0)
    assert space.read_nowait(("jobs", ANY)) == ("jobs", 1)
    assert space.take_nowait(("jobs", 3)) == ("jobs", 3)
    assert [t[1] for t in space.take_all(("jobs", int))] == [1, 2, 4]
    assert space.take_nowait(("jobs", int)) is None
    assert len(space) == 0


@pytest.mark.parametrize(
    ("stored", "template", "hit"),
    [
        (("x", 1), ("x", 1), True),
        (("x", 1), ("x", True), False),
        (("x", True), ("x", 1), False),
        (("x", 1), ("x", 1.0), False),
        (("x", 1.0), ("x", 1), False),
        (("x", 1), ("x", bool), False),
        (("x", True), ("x", int), False),
        (("x", True), ("x", bool), True),
        (("x", None), ("x", None), True),
        (("x", None), ("x", type(None)), True),
        (("x", b"a"), ("x", "a"), False),
        (("x", "a"), ("x", str), True),
        (("x", -0.0), ("x", 0.0), True),
        (("x", float("nan")), ("x", float("nan")), True),
        (("x", 2**100), ("x", 2**100), True),
        (("x", 2**100), ("x", int), True),
        (("x", -(2**70)), ("x", 2**70), False),
        (("x", 1, 2), ("x", ANY), False),
    ],
)
def test_matching_is_by_type_and_value(
    stored: tuple[Any, ...], template: tuple[Any, ...], hit: bool
) -> None:
    space = TupleSpace()
    space.out(stored)
    assert (space.read_nowait(template) is not None) is hit
    assert space.count(template) == int(hit)


def test_values_round_trip_with_builtin_types() -> None:
    class Color(IntEnum):
        RED = 1

    space = TupleSpace()
    original = ("lane", 2**64, -(2**63), 1.5, "é", b"\x00\xff", True, None)
    space.out(original)
    got = space.take_nowait(("lane",) + (ANY,) * 7)
    assert got == original
    assert [type(x) for x in got] == [type(x) for x in original]
    space.out(("lane", Color.RED))
    assert space.take_nowait(("lane", 1)) == ("lane", 1)  # an IntEnum is stored as its int


def test_take_all_read_all_limits_and_count() -> None:
    space = TupleSpace()
    for i in range(10):
        space.out(("a", i % 2, i))
    assert space.count(("a", 0, int)) == 5
    assert [t[2] for t in space.read_all(("a", 0, int), limit=2)] == [0, 2]
    assert space.read_all(("a", ANY, ANY), limit=0) == []
    assert [t[2] for t in space.take_all(("a", 1, ANY), limit=3)] == [1, 3, 5]
    assert len(space) == 7
    assert space.stats().takes == 3


def test_mixed_signatures_merge_in_age_order() -> None:
    space = TupleSpace()
    space.out(("m", 1))
    space.out(("m", "one"))
    space.out(("m", 2.0))
    space.out(("m", 2))
    assert [t[1] for t in space.read_all(("m", ANY))] == [1, "one", 2.0, 2]
    assert space.take_nowait(("m", ANY)) == ("m", 1)
    assert space.take_nowait(("m", ANY)) == ("m", "one")


def test_leases_expire_and_are_reclaimed() -> None:
    clock = FakeClock()
    space = TupleSpace(clock=clock)
    space.out(("lease", 1), ttl=5.0)
    space.out(("lease", 2))
    clock.now += 4.9
    assert space.count(("lease", int)) == 2
    clock.now += 0.2
    assert space.read_nowait(("lease", int)) == ("lease", 2)
    assert len(space) == 1
    assert space.stats().expired == 1


def test_stats_count_operations() -> None:
    space = TupleSpace()
    space.out(("s", 1))
    space.out(("s", 2))
    space.read_nowait(("s", 1))
    space.take_nowait(("s", 2))
    stats = space.stats()
    assert (stats.tuples, stats.outs, stats.reads, stats.takes) == (1, 2, 1, 1)
    assert stats.signatures == 1
    assert "tuples=1" in repr(stats)


def _assert_unchanged(space: TupleSpace, before: list[tuple[Any, ...]]) -> None:
    assert space.read_all(("keep", ANY)) == before


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda s: s.out(()), ArityError),
        (lambda s: s.out(tuple(range(33))), ArityError),
        (lambda s: s.out(("x", [1])), FieldTypeError),
        (lambda s: s.out(("x", {"a": 1})), FieldTypeError),
        (lambda s: s.out(("x", bytearray(b"a"))), FieldTypeError),
        (lambda s: s.out(("x", ANY)), FieldTypeError),
        (lambda s: s.out(("x", int)), FieldTypeError),
        (lambda s: s.out("abc"), TypeError),
        (lambda s: s.out(("x", 1), ttl=0), InvalidArgumentError),
        (lambda s: s.out(("x", 1), ttl=float("inf")), InvalidArgumentError),
        (lambda s: s.out(("x", 1), ttl=-1), InvalidArgumentError),
        (lambda s: s.take_nowait(()), ArityError),
        (lambda s: s.take_nowait(("keep", list)), FieldTypeError),
        (lambda s: s.take_nowait(("keep", object)), FieldTypeError),
        (lambda s: s.read_nowait(("keep", [1])), FieldTypeError),
        (lambda s: s.take_all(("keep", ANY), limit=-1), InvalidArgumentError),
        (lambda s: s.take_nowait(42), TypeError),
    ],
)
def test_bad_input_is_a_typed_error_and_changes_nothing(call: Any, error: type[Exception]) -> None:
    space = TupleSpace()
    space.out(("keep", 1))
    space.out(("keep", 2))
    before = space.read_all(("keep", ANY))
    outs_before = space.stats().outs
    with pytest.raises(error) as info:
        call(space)
    assert str(info.value)
    _assert_unchanged(space, before)
    assert space.stats().outs == outs_before


def test_field_type_error_names_position_and_type() -> None:
    space = TupleSpace()
    with pytest.raises(FieldTypeError, match="list") as info:
        space.out(("x", 1, [2]))
    assert info.value.position == 2
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, SpaceError)


def test_capabilities_restrict_lanes_and_operations() -> None:
    space = TupleSpace()
    space.out(("jobs", 1))
    space.out(("secrets", 2))
    jobs = space.restrict(lanes=["jobs"])
    assert isinstance(jobs, TupleSpace)
    assert jobs.read_nowait(("jobs", int)) == ("jobs", 1)
    with pytest.raises(CapabilityError) as info:
        jobs.read_nowait(("secrets", int))
    assert info.value.operation == "read"
    with pytest.raises(CapabilityError, match="wildcard"):
        jobs.take_nowait((ANY, int))
    with pytest.raises(CapabilityError):
        jobs.out(("secrets", 3))
    readonly = jobs.restrict(take=False, write=False)
    assert readonly.capability is not None
    assert readonly.capability.lanes == ("jobs",)
    assert (readonly.capability.read, readonly.capability.take) == (True, False)
    with pytest.raises(CapabilityError):
        readonly.take_nowait(("jobs", int))
    with pytest.raises(CapabilityError):
        readonly.out(("jobs", 9))
    widened = readonly.restrict(lanes=["jobs", "secrets"], take=True)
    assert widened.capability is not None
    assert widened.capability.lanes == ("jobs",), "restricting can only narrow"
    assert not widened.capability.take
    # Nothing changed through the refused operations.
    assert space.read_all((ANY, int)) == [("jobs", 1), ("secrets", 2)]
    assert space.stats().outs == 2


def test_restrict_rejects_a_single_string_of_lanes() -> None:
    with pytest.raises(InvalidArgumentError, match="collection"):
        TupleSpace().restrict(lanes="jobs")


def test_any_is_a_picklable_singleton() -> None:
    assert pickle.loads(pickle.dumps(ANY)) is ANY
    assert repr(ANY) == "ANY"
    with pytest.raises(TypeError):
        type(ANY)()


def test_clock_must_be_callable_and_sane() -> None:
    with pytest.raises(TypeError):
        TupleSpace(clock=1.0)  # type: ignore[arg-type]
    space = TupleSpace(clock=lambda: -1.0)
    with pytest.raises(InvalidArgumentError):
        space.out(("x", 1), ttl=1.0)
    assert len(TupleSpace(clock=lambda: 1.0)) == 0


def test_a_million_resident_tuples_stay_indexed() -> None:
    space = TupleSpace()
    for i in range(200_000):
        space.out(("bulk", i))
    space.out(("needle", -1))
    assert space.take_nowait(("needle", int)) == ("needle", -1)
    assert space.take_nowait(("bulk", 199_999)) == ("bulk", 199_999)
    assert space.count(("bulk", int)) == 199_999


def test_a_tuple_is_counted_once_whatever_its_fields_hash_to() -> None:
    # Regression (found by Hypothesis): index keys of position 0 (True) and position 2 (None)
    # collided, so this tuple was counted and read twice.
    space = TupleSpace()
    space.out((True, None, None))
    for template in [(True, ANY, ANY), (ANY, ANY, None), (True, ANY, None)]:
        assert space.count(template) == 1
        assert space.read_all(template) == [(True, None, None)]
    assert space.take_all((ANY, ANY, ANY)) == [(True, None, None)]
    assert len(space) == 0
