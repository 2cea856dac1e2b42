"""Differential test: the Rust-backed TupleSpace against a plain-Python model."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from swarm_actors.space import ANY, TupleSpace

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(0, 2),
    st.just(2**80),
    st.sampled_from([0.0, -0.0, 1.0, math.nan]),
    st.sampled_from(["a", "b"]),
    st.just(b"x"),
)
formals = st.sampled_from([int, float, str, bytes, bool, type(None)])
fields = st.one_of(values, values, formals, st.just(ANY))
tuples = st.lists(values, min_size=1, max_size=3).map(tuple)
templates = st.lists(fields, min_size=1, max_size=3).map(tuple)


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    return bool(a == b)


def model_matches(template: tuple[Any, ...], tup: tuple[Any, ...]) -> bool:
    if len(template) != len(tup):
        return False
    for f, v in zip(template, tup, strict=True):
        if f is ANY:
            continue
        if isinstance(f, type):
            if type(v) is not f:
                return False
        elif not _same(f, v):
            return False
    return True


def same_tuple(a: tuple[Any, ...] | None, b: tuple[Any, ...] | None) -> bool:
    if a is None or b is None:
        return a is b
    return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class SpaceMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.space = TupleSpace(clock=self.clock)
        self.model: list[tuple[tuple[Any, ...], float]] = []

    def _expire(self) -> None:
        self.model = [(t, exp) for t, exp in self.model if exp > self.clock.now]

    def _find(self, template: tuple[Any, ...]) -> list[int]:
        self._expire()
        return [i for i, (t, _) in enumerate(self.model) if model_matches(template, t)]

    @rule(t=tuples, ttl=st.one_of(st.none(), st.integers(1, 5)))
    def out(self, t: tuple[Any, ...], ttl: int | None) -> None:
        self.space.out(t, ttl=ttl)
        self.model.append((t, math.inf if ttl is None else self.clock.now + ttl))

    @rule(template=templates)
    def take(self, template: tuple[Any, ...]) -> None:
        idx = self._find(template)
        want = self.model.pop(idx[0])[0] if idx else None
        assert same_tuple(self.space.take_nowait(template), want)

    @rule(template=templates)
    def read(self, template: tuple[Any, ...]) -> None:
        idx = self._find(template)
        want = self.model[idx[0]][0] if idx else None
        assert same_tuple(self.space.read_nowait(template), want)

    @rule(template=templates, limit=st.integers(0, 4))
    def take_all(self, template: tuple[Any, ...], limit: int) -> None:
        idx = self._find(template)[:limit]
        want = [self.model[i][0] for i in idx]
        for i in reversed(idx):
            del self.model[i]
        got = self.space.take_all(template, limit=limit)
        assert len(got) == len(want)
        assert all(same_tuple(g, w) for g, w in zip(got, want, strict=True))

    @rule(template=templates)
    def count(self, template: tuple[Any, ...]) -> None:
        assert self.space.count(template) == len(self._find(template))

    @precondition(lambda self: bool(self.model))
    @rule(dt=st.integers(0, 3))
    def tick(self, dt: int) -> None:
        self.clock.now += dt

    @invariant()
    def same_size(self) -> None:
        self._expire()
        assert len(self.space) == len(self.model)


TestSpaceAgainstModel = SpaceMachine.TestCase
