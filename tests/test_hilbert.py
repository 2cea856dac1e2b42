"""Hilbert mapping through the extension, checked against the `hilbertcurve` package.

`hilbertcurve` (galtay, 2.0.5) is an independent, pure-Python transcription of Skilling's
AxesToTranspose / TransposeToAxes with the same MSB-first interleaving of the transpose, so its
indices must equal ours bit for bit for every dims and bits.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from hilbertcurve.hilbertcurve import HilbertCurve
from hypothesis import given
from hypothesis import strategies as st

from swarm_actors._exceptions import ArityError, CoordinateError, SwarmError
from swarm_actors._tuplecore import (
    hilbert_decode,
    hilbert_decode_batch,
    hilbert_encode,
    hilbert_encode_batch,
)


def max_bits(dims: int) -> int:
    """Largest bits for dims: 64, or 128 // dims, and 128 for the 1-d identity curve."""
    return 128 if dims == 1 else min(64, 128 // dims)


@st.composite
def shapes(draw: st.DrawFn, max_dims: int = 8) -> tuple[int, int]:
    dims = draw(st.integers(1, max_dims))
    bits = draw(st.integers(1, max_bits(dims)))
    return dims, bits


@st.composite
def points(draw: st.DrawFn, max_dims: int = 8) -> tuple[tuple[int, ...], int]:
    dims, bits = draw(shapes(max_dims))
    coordinate = st.integers(0, 2**bits - 1)
    return tuple(draw(st.lists(coordinate, min_size=dims, max_size=dims))), bits


@st.composite
def indices(draw: st.DrawFn) -> tuple[int, int, int]:
    dims, bits = draw(shapes())
    return draw(st.integers(0, 2 ** (dims * bits) - 1)), dims, bits


def small_grids() -> Iterator[tuple[int, int]]:
    for dims in range(1, 5):
        for bits in range(1, 7):
            if dims * bits <= 12:
                yield dims, bits


# -- agreement with the reference implementation ---------------------------------------------


@given(points())
def test_encode_matches_hilbertcurve(case: tuple[tuple[int, ...], int]) -> None:
    point, bits = case
    expected = HilbertCurve(bits, len(point)).distance_from_point(list(point))
    assert hilbert_encode(point, bits) == expected


@given(indices())
def test_decode_matches_hilbertcurve(case: tuple[int, int, int]) -> None:
    index, dims, bits = case
    expected = HilbertCurve(bits, dims).point_from_distance(index)
    assert hilbert_decode(index, dims, bits) == tuple(expected)


@given(
    shapes().flatmap(
        lambda shape: st.tuples(
            st.lists(
                st.lists(
                    st.integers(0, 2 ** shape[1] - 1), min_size=shape[0], max_size=shape[0]
                ).map(tuple),
                max_size=20,
            ),
            st.just(shape[1]),
        )
    )
)
def test_batch_matches_hilbertcurve_and_scalar(case: tuple[list[tuple[int, ...]], int]) -> None:
    batch, bits = case
    indices = hilbert_encode_batch(batch, bits)
    assert indices == [hilbert_encode(point, bits) for point in batch]
    if batch:
        curve = HilbertCurve(bits, len(batch[0]))
        assert indices == curve.distances_from_points([list(p) for p in batch])
        assert hilbert_decode_batch(indices, len(batch[0]), bits) == batch


def test_known_orientation() -> None:
    # Order 1 in 2-d goes up first; order 2 starts along axis 0 (the paper's curve flips its
    # first step with the parity of bits). 3-d order 1 is the reflected Gray code.
    assert [hilbert_decode(h, 2, 1) for h in range(4)] == [(0, 0), (0, 1), (1, 1), (1, 0)]
    assert [hilbert_decode(h, 2, 2) for h in range(4)] == [(0, 0), (1, 0), (1, 1), (0, 1)]
    assert hilbert_decode(15, 2, 2) == (3, 0)
    assert [hilbert_decode(h, 3, 1) for h in range(8)] == [
        (0, 0, 0),
        (0, 0, 1),
        (0, 1, 1),
        (0, 1, 0),
        (1, 1, 0),
        (1, 1, 1),
        (1, 0, 1),
        (1, 0, 0),
    ]


# -- curve properties ------------------------------------------------------------------------


@pytest.mark.parametrize(("dims", "bits"), list(small_grids()))
def test_small_grid_is_a_bijection_of_neighbours(dims: int, bits: int) -> None:
    cells = 2 ** (dims * bits)
    decoded = hilbert_decode_batch(range(cells), dims, bits)
    grid = set(itertools.product(range(2**bits), repeat=dims))
    assert set(decoded) == grid
    assert len(decoded) == cells
    assert decoded[0] == (0,) * dims
    for a, b in itertools.pairwise(decoded):
        assert sum(abs(x - y) for x, y in zip(a, b, strict=True)) == 1, (a, b)
    assert hilbert_encode_batch(decoded, bits) == list(range(cells))
    assert [hilbert_encode(p, bits) for p in decoded] == list(range(cells))


@pytest.mark.parametrize(
    ("dims", "bits"), [(1, 128), (1, 64), (2, 64), (3, 42), (4, 32), (8, 16), (16, 8), (128, 1)]
)
def test_round_trip_at_the_widest_indices(dims: int, bits: int) -> None:
    top = 2 ** (dims * bits) - 1
    for index in (0, 1, top // 3, top - 1, top):
        point = hilbert_decode(index, dims, bits)
        assert len(point) == dims
        assert all(0 <= v < 2**bits for v in point)
        assert hilbert_encode(point, bits) == index
    corner = (2**bits - 1,) * dims
    assert hilbert_decode(hilbert_encode(corner, bits), dims, bits) == corner
    batch = [hilbert_decode(i, dims, bits) for i in (top, 0, top // 7)]
    assert hilbert_encode_batch(batch, bits) == [top, 0, top // 7]
    assert hilbert_decode_batch([top, 0, top // 7], dims, bits) == batch


@given(points())
def test_decode_inverts_encode(case: tuple[tuple[int, ...], int]) -> None:
    point, bits = case
    index = hilbert_encode(point, bits)
    assert 0 <= index < 2 ** (len(point) * bits)
    assert hilbert_decode(index, len(point), bits) == point


def test_large_batch_releasing_the_gil_equals_scalar_calls() -> None:
    # Above the size where the batch is encoded with the GIL released.
    batch = [(i * 7919 % 2**21, i * 104729 % 2**21, i % 2**21) for i in range(20_000)]
    indices = hilbert_encode_batch(batch, 21)
    sample = batch[::97]
    assert [indices[i] for i in range(0, len(batch), 97)] == [hilbert_encode(p, 21) for p in sample]
    assert hilbert_decode_batch(indices, 3, 21) == batch
    wide = [((i * 2**30 + 3) % 2**42, i, 2**42 - 1 - i) for i in range(5_000)]
    wide_indices = hilbert_encode_batch(wide, 42)
    assert wide_indices[::50] == [hilbert_encode(p, 42) for p in wide[::50]]
    assert hilbert_decode_batch(wide_indices, 3, 42) == wide


# -- accepted input forms --------------------------------------------------------------------


class Index:
    """Not an int, but usable as one through ``__index__`` (like numpy integers)."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value


def test_sequences_iterables_and_index_objects_are_accepted() -> None:
    expected = hilbert_encode((1, 2, 3), 4)
    assert hilbert_encode([1, 2, 3], 4) == expected
    assert hilbert_encode(iter((1, 2, 3)), 4) == expected  # type: ignore[arg-type]
    assert hilbert_encode((Index(1), 2, Index(3)), Index(4)) == expected
    rows = [(1, 2, 3), [1, 2, 3], range(1, 4)]
    assert hilbert_encode_batch(rows, 4) == [expected] * 3
    assert hilbert_encode_batch(tuple(rows), 4) == [expected] * 3
    assert hilbert_encode_batch((r for r in rows), 4) == [expected] * 3
    assert hilbert_decode_batch((i for i in [expected]), 3, 4) == [(1, 2, 3)]
    assert hilbert_decode(Index(expected), 3, 4) == (1, 2, 3)
    assert hilbert_encode_batch([], 4) == []
    assert hilbert_decode_batch([], 3, 4) == []


def test_numpy_arrays_and_integers_are_accepted() -> None:
    np = pytest.importorskip("numpy")  # installed with hilbertcurve
    array = np.array([[1, 2, 3], [7, 0, 5], [2**21 - 1, 0, 9]], dtype=np.uint64)
    expected = hilbert_encode_batch([tuple(int(v) for v in row) for row in array], 21)
    assert hilbert_encode_batch(array, 21) == expected
    assert hilbert_encode(array[1], np.int32(21)) == expected[1]
    assert hilbert_decode_batch(np.array(expected, dtype=np.uint64), 3, 21) == [
        tuple(int(v) for v in row) for row in array
    ]
    with pytest.raises(CoordinateError, match=r"point 0, coordinate 1 = -2 is negative"):
        hilbert_encode_batch(np.array([[1, -2, 3]], dtype=np.int64), 21)


def test_results_are_plain_ints_and_tuples() -> None:
    assert type(hilbert_encode((1, 2), 3)) is int
    assert type(hilbert_encode((2**64 - 1, 2**64 - 1), 64)) is int
    point = hilbert_decode(5, 2, 3)
    assert type(point) is tuple
    assert all(type(v) is int for v in point)
    assert all(type(p) is tuple for p in hilbert_decode_batch([1, 2], 2, 3))


# -- errors ----------------------------------------------------------------------------------

ENCODE_ERRORS: list[tuple[object, object, type[SwarmError], str]] = [
    ((1, -1), 3, CoordinateError, r"coordinate 1 = -1 is negative"),
    ((1, True), 3, CoordinateError, r"coordinate 1 is a bool"),
    ((False, 1), 3, CoordinateError, r"coordinate 0 is a bool"),
    ((1, 2.0), 3, CoordinateError, r"coordinate 1 must be an int, got float"),
    ((1, "2"), 3, CoordinateError, r"coordinate 1 must be an int, got str"),
    ((1, None), 3, CoordinateError, r"coordinate 1 must be an int"),
    ((1, 8), 3, CoordinateError, r"coordinate 1 = 8 is out of range: must be < 2\^3"),
    ((2**64, 0), 64, CoordinateError, r"coordinate 0 = 18446744073709551616 is out of range"),
    ((2**70, 0), 8, CoordinateError, r"coordinate 0 = 1180591620717411303424 is out of range"),
    ((-(2**70), 0), 8, CoordinateError, r"coordinate 0 = -1180591620717411303424 is negative"),
    ((2**128,), 128, CoordinateError, r"coordinate 0 = 340282366920938463463374607431768211456"),
    ((8,), 3, CoordinateError, r"coordinate 0 = 8 is out of range"),
    ((), 3, CoordinateError, r"dims must be at least 1, got 0"),
    ((1, 2), 0, CoordinateError, r"bits must be between 1 and 64, got 0"),
    ((1, 2), 65, CoordinateError, r"bits must be between 1 and 64, got 65"),
    ((1,), 129, CoordinateError, r"bits must be between 1 and 128 for dims = 1, got 129"),
    ((1, 2), -1, CoordinateError, r"bits must be an int .* got -1"),
    ((1, 2), 2**40, CoordinateError, r"bits must be an int .* got 1099511627776"),
    ((1, 2), 2.0, CoordinateError, r"bits must be an int .* got 2.0"),
    ((1, 2), True, CoordinateError, r"bits must be an int .* got True"),
    ((0, 0, 0), 43, CoordinateError, r"dims \* bits must be at most 128, got 3 \* 43 = 129"),
    ((0,) * 129, 1, CoordinateError, r"dims \* bits must be at most 128, got 129 \* 1 = 129"),
    (5, 3, ArityError, r"point must be a sequence of ints, got int"),
]


@pytest.mark.parametrize(("point", "bits", "error", "message"), ENCODE_ERRORS)
def test_encode_errors(point: object, bits: object, error: type[SwarmError], message: str) -> None:
    with pytest.raises(error, match=message):
        hilbert_encode(point, bits)  # type: ignore[arg-type]
    if isinstance(point, tuple) and point:
        # The same value in a batch: same class, and the message names the point.
        with pytest.raises(error, match=message.replace("coordinate", "point 1, coordinate")):
            hilbert_encode_batch([(0,) * len(point), point], bits)  # type: ignore[arg-type]


DECODE_ERRORS: list[tuple[object, object, object, str]] = [
    (-1, 2, 3, r"index = -1 is negative"),
    (64, 2, 3, r"index = 64 is out of range for dims = 2, bits = 3: must be < 2\^6 = 64"),
    (2**64, 2, 3, r"index = 18446744073709551616 is out of range for dims = 2, bits = 3"),
    (2**128, 2, 64, r"index = 340282366920938463463374607431768211456 is out of range"),
    (2**128, 1, 128, r"index = 340282366920938463463374607431768211456 is out of range"),
    (8, 1, 3, r"index = 8 is out of range"),
    (1.0, 2, 3, r"index must be an int, got float"),
    (True, 2, 3, r"index is a bool"),
    (0, 0, 3, r"dims must be at least 1, got 0"),
    (0, -2, 3, r"dims must be an int between 1 and 128, got -2"),
    (0, 2.0, 3, r"dims must be an int"),
    (0, 129, 1, r"dims \* bits must be at most 128, got 129 \* 1 = 129"),
    (0, 2, 0, r"bits must be between 1 and 64, got 0"),
    (0, 2, 65, r"bits must be between 1 and 64, got 65"),
    (0, 1, 129, r"bits must be between 1 and 128 for dims = 1, got 129"),
    (0, 5, 26, r"dims \* bits must be at most 128, got 5 \* 26 = 130"),
]


@pytest.mark.parametrize(("index", "dims", "bits", "message"), DECODE_ERRORS)
def test_decode_errors(index: object, dims: object, bits: object, message: str) -> None:
    with pytest.raises(CoordinateError, match=message):
        hilbert_decode(index, dims, bits)  # type: ignore[arg-type]
    with pytest.raises(CoordinateError):
        hilbert_decode_batch([0, index], dims, bits)  # type: ignore[list-item, arg-type]


def test_decode_batch_errors_name_the_position() -> None:
    with pytest.raises(CoordinateError, match=r"index 2 = 64 is out of range"):
        hilbert_decode_batch([0, 1, 64], 2, 3)
    with pytest.raises(CoordinateError, match=r"index 1 = -5 is negative"):
        hilbert_decode_batch([0, -5], 2, 3)
    with pytest.raises(CoordinateError, match=r"index 1 = 2\*\*200|index 1 = 1606938"):
        hilbert_decode_batch([0, 2**200], 4, 32)
    with pytest.raises(CoordinateError, match=r"index 0 must be an int, got str"):
        hilbert_decode_batch(["0"], 2, 3)  # type: ignore[list-item]
    with pytest.raises(CoordinateError, match=r"index 1 = 8 is out of range"):
        hilbert_decode_batch([1, 8], 1, 3)
    with pytest.raises(ArityError, match=r"indices must be an iterable, got int"):
        hilbert_decode_batch(5, 2, 3)  # type: ignore[arg-type]


def test_batch_arity_errors_name_the_first_offending_point() -> None:
    with pytest.raises(ArityError, match=r"point 2 has 3 coordinates, but point 0 has 2"):
        hilbert_encode_batch([(1, 2), (3, 4), (5, 6, 7), (8,)], 4)
    with pytest.raises(ArityError, match=r"point 1 has 1 coordinates, but point 0 has 2"):
        hilbert_encode_batch([[1, 2], [3]], 4)
    with pytest.raises(ArityError, match=r"point 1 must be a sequence of ints, got int"):
        hilbert_encode_batch([(1, 2), 3], 4)  # type: ignore[list-item]
    with pytest.raises(ArityError, match=r"points must be an iterable, got int"):
        hilbert_encode_batch(3, 4)  # type: ignore[arg-type]
    with pytest.raises(CoordinateError, match=r"dims must be at least 1, got 0"):
        hilbert_encode_batch([()], 4)
    with pytest.raises(CoordinateError, match=r"bits must be between 1 and 64 \(128 when"):
        hilbert_encode_batch([], 0)


def test_errors_are_value_errors_and_leave_nothing_behind() -> None:
    with pytest.raises(ValueError, match="negative"):
        hilbert_encode((-1, 0), 2)
    with pytest.raises(ValueError, match="same dims"):
        hilbert_encode_batch([(0, 0), (0,)], 2)
    # A failed call does not poison the next one.
    assert hilbert_encode_batch([(0, 1), (1, 1)], 1) == [1, 2]


@pytest.mark.parametrize(
    "function", [hilbert_encode, hilbert_decode, hilbert_encode_batch, hilbert_decode_batch]
)
def test_functions_are_documented(function: object) -> None:
    doc = getattr(function, "__doc__", None) or ""
    assert doc.startswith("Return the ")
    assert "Raises ``" in doc
    assert "``CoordinateError``" in doc
