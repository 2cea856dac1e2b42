"""The cluster-wide name registry's decisions, against in-memory buckets (no NATS server).

Which node gets a name, when a dead node's name is taken over, what the mirror shows, how
waiting for a name ends, and how buckets are opened and retried: each is a decision on what
the buckets answer, so small fakes of the KV buckets and the JetStream context stand in for
the server. ``tests/test_transport.py`` runs the same code against a real one.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import DeliverPolicy, KeyValueConfig, StorageType
from nats.js.errors import (
    BadRequestError,
    BucketNotFoundError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NoKeysError,
    NoStreamResponseError,
)

from helpers import until
from log_capture import capture_logs
from swarm_actors import ActorNameError
from swarm_actors._nats import _registry as registry_module
from swarm_actors._nats._registry import (
    ENCODING_MARKER,
    NAMES_BUCKET,
    NODES_BUCKET,
    NameEntry,
    Registry,
    _legacy_readings,
    cluster_replicas,
    key_name,
    legacy_key,
    legacy_owner,
    name_key,
    open_bucket,
    settled,
    watch_bucket,
)
from swarm_actors.errors import TransportError

HERE, INC = "here", "inc-here"


def encode(entry: NameEntry) -> bytes:
    return msgspec.msgpack.encode(entry)


def decode(value: bytes | None) -> NameEntry:
    return msgspec.msgpack.decode(value or b"", type=NameEntry)


def entry_of(node: str, incarnation: str, name: str = "x") -> NameEntry:
    return NameEntry(node, incarnation, f"/{name}", "role", ("m:C",))


# --- fakes --------------------------------------------------------------------------------


@dataclass
class Stored:
    key: str
    value: bytes | None
    revision: int | None


@dataclass
class Bucket:
    """A KV bucket in memory: revisions from one sequence, compare-and-set like the server's.

    ``before[method]``: callables run (once each, in order) before that method acts, to let
    another node write in between.
    """

    data: dict[str, tuple[bytes | None, int]] = field(default_factory=dict)
    seq: int = 0
    calls: list[tuple[str, str]] = field(default_factory=list)
    before: dict[str, list[Callable[[], None]]] = field(default_factory=dict)

    def _hook(self, method: str, key: str) -> None:
        self.calls.append((method, key))
        hooks = self.before.get(method)
        if hooks:
            hooks.pop(0)()

    def write(self, key: str, value: bytes | None) -> int:
        self.seq += 1
        self.data[key] = (value, self.seq)
        return self.seq

    def remove(self, key: str) -> None:
        self.seq += 1
        del self.data[key]

    async def get(self, key: str) -> Stored:
        self._hook("get", key)
        if key not in self.data:
            raise KeyNotFoundError
        value, revision = self.data[key]
        return Stored(key, value, revision)

    async def create(self, key: str, value: bytes) -> int:
        self._hook("create", key)
        if key in self.data:
            raise KeyWrongLastSequenceError("wrong last sequence")
        return self.write(key, value)

    async def update(self, key: str, value: bytes, last: int) -> int:
        self._hook("update", key)
        if key not in self.data or self.data[key][1] != last:
            raise KeyWrongLastSequenceError("wrong last sequence")
        return self.write(key, value)

    async def delete(self, key: str, last: int | None = None) -> None:
        self._hook("delete", key)
        if key not in self.data or (last is not None and self.data[key][1] != last):
            raise KeyWrongLastSequenceError("wrong last sequence")
        self.remove(key)

    async def keys(self) -> list[str]:
        self._hook("keys", "")
        if not self.data:
            raise NoKeysError
        return list(self.data)


class Clock:
    """Stands in for ``asyncio`` in the registry module: sleeps are recorded, not waited.

    ``loop.time()`` is the sum of the sleeps, so deadlines and backoff play out at once.
    """

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.now += delay
        await asyncio.sleep(0)

    def get_running_loop(self) -> Any:
        loop = asyncio.get_running_loop()
        clock = self

        class Loop:
            def time(self) -> float:
                return clock.now

            def __getattr__(self, name: str) -> Any:
                return getattr(loop, name)

        return Loop()

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(registry_module, "asyncio", fake)
    return fake


def make_registry(
    names: Bucket | None = None,
    nodes: Bucket | None = None,
    *,
    probe: Callable[[str], Awaitable[str | None]] | None = None,
    node: str = HERE,
    incarnation: str = INC,
) -> Registry:
    registry = Registry(cast(Any, None), node, incarnation, 1, probe=probe)
    registry._names = cast(Any, names if names is not None else Bucket())
    nodes = nodes if nodes is not None else Bucket()
    nodes.data.setdefault(node, (incarnation.encode(), 0))  # this node heartbeats
    registry._nodes = cast(Any, nodes)
    return registry


def alive(nodes: Bucket, node: str, incarnation: str) -> None:
    nodes.write(node, incarnation.encode())


def events(logs: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    """The fields of the records of ``event`` (without the logger's own)."""
    own = {"event", "log_level", "logger", "timestamp"}
    return [{k: v for k, v in e.items() if k not in own} for e in logs if e.get("event") == event]


# --- name keys ----------------------------------------------------------------------------


def test_name_keys_escape_what_keys_cannot_hold_as_upper_case_hex_bytes() -> None:
    assert name_key("Az09_-") == "Az09_-"
    assert name_key("svc.a:b@c+d=e~f") == "svc=2Ea=3Ab=40c=2Bd=3De=7Ef"
    assert name_key("\n") == "=0A"  # two digits, always
    assert name_key("é") == "=C3=A9"  # its UTF-8 bytes, one escape each
    assert name_key("€") == "=E2=82=AC"
    assert name_key("\ud800") == "=ED=A0=80"  # a lone surrogate: its three-byte form


def test_names_that_the_first_encoding_mixed_up_get_keys_of_their_own() -> None:
    # Version 1 escaped code points: "€" was "=20AC", the key of " AC" too.
    for one, other in (("€", " AC"), ("Ω1", ":91"), ("user-Ā", "user-\x100")):
        assert name_key(one) != name_key(other)
        assert key_name(name_key(one)) == one
        assert key_name(name_key(other)) == other
        assert legacy_key(one) == legacy_key(other)


def test_key_names_undo_only_the_escapes() -> None:
    assert key_name("svc=2Ea=3Ab=40c=2Bd=3De=7Ef") == "svc.a:b@c+d=e~f"
    assert key_name("=0A=C3=A9") == "\né"
    assert key_name("plain-name_1") == "plain-name_1"


@pytest.mark.parametrize(
    "key",
    [
        "=2e",  # lower-case hex is never written
        "=E9",  # not UTF-8 (version 1's "é")
        "=41",  # "A" is written plain
        "a=",  # a truncated escape
        "a=4",
        "a.b",  # "." is always escaped
        ENCODING_MARKER,
    ],
)
def test_keys_no_name_has_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match="not a name key"):
        key_name(key)


@given(st.text(st.characters(codec=None, exclude_categories=()), min_size=1, max_size=60))
def test_every_name_has_a_valid_kv_key_that_reads_back_as_it(name: str) -> None:
    key = name_key(name)
    assert re.fullmatch(r"[-_=A-Za-z0-9]+", key)
    assert key_name(key) == name  # so no other name has this key


TRICKY = " AC€Ω19:Āé=~\x00\x100\ud800\udc00\U0001f600"


@given(st.text(TRICKY, min_size=1, max_size=8), st.text(TRICKY, min_size=1, max_size=8))
def test_distinct_names_never_share_a_key(one: str, other: str) -> None:
    assert (name_key(one) == name_key(other)) == (one == other)


@given(st.text(st.characters(codec=None, exclude_categories=()), min_size=1, max_size=12))
def test_names_that_the_first_encoding_mixed_up_never_share_a_key(name: str) -> None:
    # Each name version 1 gave the same key as ``name`` (" AC" for "€") has a key of its own.
    for reading in _legacy_readings(legacy_key(name)):
        assert (name_key(reading) == name_key(name)) == (reading == name)


@given(st.from_regex(r"[A-Za-z0-9_.:@+=-][A-Za-z0-9_.:@+=~-]{0,99}", fullmatch=True))
def test_ascii_names_keep_the_key_they_had(name: str) -> None:
    assert name_key(name) == legacy_key(name)


def test_a_version_1_key_has_an_owner_only_if_no_other_plausible_name_had_it() -> None:
    anything = lambda name: True  # noqa: E731
    assert legacy_owner(legacy_key("é"), anything) == "é"
    assert legacy_owner(legacy_key("svc.a:b"), anything) == "svc.a:b"
    assert legacy_owner("=20AC", anything) is None  # " AC" or "€"
    assert legacy_owner("=20AC", str.isascii) == " AC"  # (" AC", "€" or "\u020aC")
    assert legacy_owner("user-=100", anything) is None  # "user-Ā" or "user-\x100"
    assert legacy_owner("=41", anything) is None  # version 1 wrote "A" plain
    assert legacy_owner("=C3=A9", anything) == "Ã©"  # what version 1 meant by it
    assert legacy_owner("a.b", anything) is None  # not a version-1 key
    many = "=21F" * 40  # "!F" or "\u021f", 40 times: 2^40 readings, too many to tell
    assert legacy_owner(many, lambda name: name == "!F" * 40) is None


@given(st.text(TRICKY, min_size=1, max_size=6))
def test_a_version_1_owner_is_always_a_name_with_that_key(name: str) -> None:
    owner = legacy_owner(legacy_key(name), lambda candidate: True)
    assert owner is None or legacy_key(owner) == legacy_key(name)
    if owner is not None:
        assert owner == name


# --- replicas -----------------------------------------------------------------------------


def test_buckets_keep_a_copy_per_advertised_server_up_to_three() -> None:
    assert cluster_replicas({}) == 1
    assert cluster_replicas({"connect_urls": []}) == 1
    assert cluster_replicas({"connect_urls": "a:4222"}) == 1  # not a list: one server
    assert cluster_replicas({"connect_urls": ["a"]}) == 1
    assert cluster_replicas({"connect_urls": ["a", "b"]}) == 2
    assert cluster_replicas({"connect_urls": ["a", "b", "c"]}) == 3
    assert cluster_replicas({"connect_urls": ["a", "b", "c", "d", "e"]}) == 3


# --- claims -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_free_name_is_claimed_and_mirrored() -> None:
    names = Bucket()
    registry = make_registry(names)
    entry = entry_of(HERE, INC, "team.lead")
    version = registry.version
    await registry.claim("team.lead", entry)
    value, revision = names.data["team=2Elead"]
    assert decode(value) == entry
    assert registry.get("team.lead") == entry
    assert registry.holds("team.lead")
    assert registry.version > version
    assert registry.forget("team.lead") == revision  # the revision of the claim
    assert registry.get("team.lead") is None


@pytest.mark.asyncio
async def test_a_name_a_live_node_holds_is_refused_naming_the_holder() -> None:
    names, nodes = Bucket(), Bucket()
    holder = entry_of("there", "inc-there", "svc")
    names.write("svc", encode(holder))
    alive(nodes, "there", "inc-there")
    registry = make_registry(names, nodes)
    with pytest.raises(ActorNameError) as info:
        await registry.claim("svc", entry_of(HERE, INC, "svc"))
    assert str(info.value) == "an actor named 'svc' already runs on node there"
    assert info.value.actor == "/svc"
    assert decode(names.data["svc"][0]) == holder  # untouched
    assert not registry.holds("svc")
    assert registry.get("svc") is None


@pytest.mark.asyncio
async def test_a_name_of_a_node_restarted_under_a_new_incarnation_is_taken_over() -> None:
    names, nodes = Bucket(), Bucket()
    names.write("svc", encode(entry_of("there", "inc-old", "svc")))
    alive(nodes, "there", "inc-new")  # the node runs again, without the old actor
    registry = make_registry(names, nodes)
    mine = entry_of(HERE, INC, "svc")
    await registry.claim("svc", mine)
    value, revision = names.data["svc"]
    assert decode(value) == mine
    assert revision == 2  # the compare-and-set over revision 1
    assert registry.get("svc") == mine
    assert registry.forget("svc") == revision


@pytest.mark.asyncio
async def test_a_name_of_a_node_missing_from_the_bucket_is_taken_over_only_if_it_is_silent() -> (
    None
):
    asked: list[str] = []
    answer: str | None = "inc-there"

    async def probe(node: str) -> str | None:
        asked.append(node)
        return answer

    names = Bucket()
    names.write("svc", encode(entry_of("there", "inc-there", "svc")))
    registry = make_registry(names, probe=probe)
    with pytest.raises(ActorNameError, match="already runs on node there"):
        await registry.claim("svc", entry_of(HERE, INC, "svc"))  # its key lapsed; it answers
    assert asked == ["there"]
    answer = "inc-other"  # a new incarnation answers: the old one is dead
    await registry.claim("svc", entry_of(HERE, INC, "svc"))
    assert decode(names.data["svc"][0]).node == HERE


@pytest.mark.asyncio
async def test_a_name_of_a_node_missing_from_the_bucket_and_no_probe_is_taken_over() -> None:
    names = Bucket()
    names.write("svc", encode(entry_of("there", "inc-there", "svc")))
    registry = make_registry(names)
    await registry.claim("svc", entry_of(HERE, INC, "svc"))
    assert decode(names.data["svc"][0]).node == HERE


@pytest.mark.asyncio
async def test_a_name_this_node_holds_is_refused_and_one_it_let_go_is_taken_back() -> None:
    names = Bucket()
    registry = make_registry(names)
    entry = entry_of(HERE, INC, "svc")
    await registry.claim("svc", entry)
    with pytest.raises(ActorNameError, match="'svc' already runs on node here"):
        await registry.claim("svc", entry)
    registry.forget("svc")  # the actor stopped; its release is not written yet
    await registry.claim("svc", entry)
    assert registry.holds("svc")
    assert registry.get("svc") == entry
    assert names.seq == 2  # the second claim updated the first one's entry


@pytest.mark.asyncio
async def test_a_name_held_under_another_incarnation_of_this_node_id_is_judged_like_any() -> None:
    """Only the same node *and* incarnation is this node; anything else is asked about."""
    names = Bucket()
    registry = make_registry(names)
    registry._held["a"] = 1  # bookkeeping of this node's own claims, stale or not
    registry._held["b"] = 1
    names.write("a", encode(entry_of(HERE, "inc-old", "a")))  # this id, an older run
    names.write("b", encode(entry_of("there", INC, "b")))  # another node, the same inc string
    await registry.claim("a", entry_of(HERE, INC, "a"))  # the old run is not live: taken over
    await registry.claim("b", entry_of(HERE, INC, "b"))  # "there" does not heartbeat
    assert decode(names.data["a"][0]).incarnation == INC
    assert decode(names.data["b"][0]).node == HERE


@pytest.mark.asyncio
async def test_an_unreadable_entry_is_taken_over() -> None:
    names = Bucket()
    names.write("svc", b"\xc1 not an entry")
    registry = make_registry(names)
    await registry.claim("svc", entry_of(HERE, INC, "svc"))
    assert decode(names.data["svc"][0]).node == HERE


@pytest.mark.asyncio
async def test_a_name_released_between_create_and_read_is_created_again() -> None:
    names = Bucket()
    names.write("svc", encode(entry_of("there", "inc-there", "svc")))
    names.before["get"] = [lambda: names.remove("svc")]  # its holder releases it meanwhile
    registry = make_registry(names)
    await registry.claim("svc", entry_of(HERE, INC, "svc"))
    assert [m for m, _ in names.calls] == ["create", "get", "create"]
    assert decode(names.data["svc"][0]).node == HERE


@pytest.mark.asyncio
async def test_of_two_takeovers_one_wins_and_the_other_sees_the_winner() -> None:
    names, nodes = Bucket(), Bucket()
    names.write("svc", encode(entry_of("dead", "inc-dead", "svc")))
    winner = entry_of("there", "inc-there", "svc")

    def other_node_takes_over() -> None:
        names.write("svc", encode(winner))
        alive(nodes, "there", "inc-there")

    names.before["update"] = [other_node_takes_over]
    registry = make_registry(names, nodes)
    with pytest.raises(ActorNameError, match="already runs on node there"):
        await registry.claim("svc", entry_of(HERE, INC, "svc"))
    assert decode(names.data["svc"][0]) == winner
    assert not registry.holds("svc")


@pytest.mark.asyncio
async def test_a_claim_gives_up_after_five_lost_races() -> None:
    names = Bucket()
    names.write("svc", encode(entry_of("dead", "inc-dead", "svc")))

    def another_dead_write() -> None:
        names.write("svc", encode(entry_of("dead", "inc-dead", "svc")))

    names.before["update"] = [another_dead_write] * 5
    registry = make_registry(names)
    with pytest.raises(ActorNameError) as info:
        await registry.claim("svc", entry_of(HERE, INC, "svc"))
    assert str(info.value) == "could not register 'svc': too much contention"
    assert info.value.actor == "svc"
    assert [m for m, _ in names.calls].count("update") == 5
    assert not registry.holds("svc")


@pytest.mark.asyncio
async def test_a_claim_that_wins_its_fifth_race_holds_the_name() -> None:
    names = Bucket()
    names.write("svc", encode(entry_of("dead", "inc-dead", "svc")))

    def another_dead_write() -> None:
        names.write("svc", encode(entry_of("dead", "inc-dead", "svc")))

    names.before["update"] = [another_dead_write] * 4
    registry = make_registry(names)
    await registry.claim("svc", entry_of(HERE, INC, "svc"))
    assert registry.holds("svc")


@pytest.mark.asyncio
async def test_a_takeover_is_logged_with_the_dead_node() -> None:
    names = Bucket()
    names.write("svc", encode(entry_of("dead", "inc-dead", "svc")))
    registry = make_registry(names)
    with capture_logs() as logs:
        await registry.claim("svc", entry_of(HERE, INC, "svc"))
    assert events(logs, "transport.name_taken_over") == [{"name": "svc", "dead_node": "dead"}]


# --- liveness -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_node_is_live_with_the_incarnation_it_heartbeats() -> None:
    nodes = Bucket()
    alive(nodes, "there", "inc-there")
    probed: list[str] = []

    async def probe(node: str) -> str | None:
        probed.append(node)
        return None

    registry = make_registry(nodes=nodes, probe=probe)
    assert await registry.is_live("there", "inc-there")
    assert probed == []  # the bucket sufficed
    assert not await registry.is_live("there", "inc-old")
    assert not await registry.is_live("gone", "inc-gone")
    assert probed == ["there", "gone"]


@pytest.mark.asyncio
async def test_a_node_missing_from_the_bucket_is_live_if_it_answers_the_probe() -> None:
    async def probe(node: str) -> str | None:
        return {"there": "inc-there"}.get(node)

    registry = make_registry(probe=probe)
    assert await registry.is_live("there", "inc-there")
    assert not await registry.is_live("there", "inc-old")
    assert not await registry.is_live("silent", "inc-silent")


@pytest.mark.asyncio
async def test_a_node_key_without_a_value_is_not_a_heartbeat() -> None:
    nodes = Bucket()
    nodes.data["there"] = (None, 5)
    registry = make_registry(nodes=nodes)
    assert not await registry.is_live("there", "inc-there")


@pytest.mark.asyncio
async def test_live_nodes_are_the_keys_of_the_node_bucket() -> None:
    nodes = Bucket()
    registry = make_registry(nodes=nodes)
    alive(nodes, "there", "inc-there")
    assert await registry.live_nodes() == {HERE, "there"}
    nodes.data.clear()
    assert await registry.live_nodes() == set()


# --- the mirror ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_deletes_purges_and_expiries_remove_a_name_from_the_mirror() -> None:
    registry = make_registry()
    for revision, operation in enumerate(["DEL", "PURGE", "MaxAge"], start=1):
        registry._apply("a=2Eb", encode(entry_of("n", "i")), None, 2 * revision)
        assert registry.get("a.b") == entry_of("n", "i")
        version = registry.version
        registry._apply("a=2Eb", b"", operation, 2 * revision + 1)
        assert registry.get("a.b") is None
        assert registry.version == version + 1
    version = registry.version
    registry._apply("a=2Eb", b"", "DEL", 9)  # nothing to remove: cached resolutions hold
    assert registry.version == version
    registry._apply("a=2Eb", encode(entry_of("n", "i")), None, 10)
    registry._apply("a=2Eb", b"", None, 11)  # an empty value is a removal too
    assert registry.get("a.b") is None
    registry._apply("a=2Eb", encode(entry_of("n", "i")), None, 10)  # older than the removal
    assert registry.get("a.b") is None


@pytest.mark.asyncio
async def test_an_unreadable_entry_leaves_the_mirror_as_it_was() -> None:
    registry = make_registry()
    registry._apply("a", encode(entry_of("n", "i")), None, 1)
    version = registry.version
    with capture_logs() as logs:
        registry._apply("a", b"\xc1", None, 2)
    assert registry.get("a") == entry_of("n", "i")
    assert registry.version == version
    assert events(logs, "transport.bad_registry_entry") == [{"name": "a", "revision": 2}]
    registry._apply("a", encode(entry_of("m", "j")), None, 2)  # the same revision, readable
    assert registry.get("a") == entry_of("m", "j")


@pytest.mark.asyncio
async def test_the_same_revision_applied_again_is_applied() -> None:
    """The watch may deliver the revision of this node's own claim: the mirror takes it."""
    registry = make_registry()
    registry._claimed("a", entry_of(HERE, INC, "a"), 4)
    version = registry.version
    registry._apply("a", encode(entry_of(HERE, INC, "a")), None, 4)
    assert registry.version == version + 1
    registry._apply("a", b"", "DEL", 4)
    assert registry.get("a") is None


@pytest.mark.asyncio
async def test_forgetting_a_name_drops_it_from_the_mirror_unless_someone_took_it_since() -> None:
    names = Bucket()
    registry = make_registry(names)
    await registry.claim("a", entry_of(HERE, INC, "a"))
    await registry.claim("b", entry_of(HERE, INC, "b"))
    version = registry.version
    assert registry.forget("a") == 1
    assert registry.get("a") is None
    assert registry.version == version + 1
    assert registry.forget("a") is None  # not held any more
    other = entry_of("there", "inc-there", "b")
    registry._apply("b", encode(other), None, 7)  # taken over since (we were thought dead)
    version = registry.version
    assert registry.forget("b") == 2
    assert registry.get("b") == other
    assert registry.version == version
    assert registry.forget("never") is None
    assert registry.version == version


@pytest.mark.asyncio
async def test_a_name_that_vanished_from_the_bucket_can_still_be_let_go() -> None:
    names = Bucket()
    registry = make_registry(names)
    await registry.claim("a", entry_of(HERE, INC, "a"))
    names.remove("a")  # purged behind this node's back
    assert await registry.fetch("a") is None
    assert registry.forget("a") == 1
    assert registry.get("a") is None


@pytest.mark.asyncio
async def test_a_release_deletes_only_the_entry_this_node_wrote() -> None:
    names = Bucket()
    registry = make_registry(names)
    await registry.claim("a.x", entry_of(HERE, INC, "a.x"))
    await registry.claim("b", entry_of(HERE, INC, "b"))
    names.write("b", encode(entry_of("there", "inc-there", "b")))  # taken over since
    await registry.release("a.x")
    with capture_logs() as logs:
        await registry.release("b")  # the compare-and-set fails quietly
    assert events(logs, "transport.release_failed") == [
        {"name": "b", "error": "KeyWrongLastSequenceError('wrong last sequence')"}
    ]
    assert "a=2Ex" not in names.data
    assert decode(names.data["b"][0]).node == "there"
    assert not registry.holds("a.x")
    calls = len(names.calls)
    await registry.release("a.x")  # not held: nothing written
    assert len(names.calls) == calls


@pytest.mark.asyncio
async def test_delete_without_buckets_does_nothing() -> None:
    registry = Registry(cast(Any, None), HERE, INC, 1)
    with capture_logs() as logs:
        await registry.delete("a", 1)  # not opened, or closed: no error, nothing to report
    assert logs == []


@pytest.mark.asyncio
async def test_fetch_reads_the_bucket_and_updates_the_mirror() -> None:
    names = Bucket()
    registry = make_registry(names)
    entry = entry_of("there", "inc-there", "a.b")
    names.write("a=2Eb", encode(entry))
    assert registry.get("a.b") is None
    assert await registry.fetch("a.b") == entry
    assert registry.get("a.b") == entry
    names.remove("a=2Eb")
    version = registry.version
    assert await registry.fetch("a.b") is None
    assert registry.get("a.b") is None
    assert registry.version == version + 1
    assert await registry.fetch("a.b") is None  # already gone: nothing changes
    assert registry.version == version + 1


@pytest.mark.asyncio
async def test_fetch_keeps_what_the_watch_applied_while_it_read() -> None:
    names = Bucket()
    registry = make_registry(names)
    old, new = entry_of("old", "inc-old", "a"), entry_of("new", "inc-new", "a")
    registry._apply("a", encode(old), None, 1)
    names.before["get"] = [lambda: registry._apply("a", encode(new), None, 3)]
    assert await registry.fetch("a") == new  # the read answered "not found" before it


@pytest.mark.asyncio
async def test_fetch_of_an_entry_older_than_the_mirror_keeps_the_mirror() -> None:
    names = Bucket()
    registry = make_registry(names)
    names.write("a", encode(entry_of("old", "inc-old", "a")))
    registry._apply("a", encode(entry_of("new", "inc-new", "a")), None, 5)
    assert await registry.fetch("a") == entry_of("new", "inc-new", "a")


@pytest.mark.asyncio
async def test_fetch_of_an_entry_newer_than_the_mirror_updates_it() -> None:
    names = Bucket()
    registry = make_registry(names)
    registry._apply("a", encode(entry_of("old", "inc-old", "a")), None, 1)
    names.write("a", encode(entry_of("old", "inc-old", "a")))
    names.write("a", encode(entry_of("new", "inc-new", "a")))  # the watch lags behind
    assert await registry.fetch("a") == entry_of("new", "inc-new", "a")
    assert registry.get("a") == entry_of("new", "inc-new", "a")
    registry._apply("a", encode(entry_of("old", "inc-old", "a")), None, 1)  # it catches up
    assert registry.get("a") == entry_of("new", "inc-new", "a")


@pytest.mark.asyncio
async def test_fetch_of_an_entry_without_revision_yields_to_any_watched_one() -> None:
    names = Bucket()
    registry = make_registry(names)
    names.data["a"] = (encode(entry_of("read", "i", "a")), cast(int, None))
    assert await registry.fetch("a") == entry_of("read", "i", "a")
    registry._apply("a", b"", "DEL", 1)  # the first revision the watch can deliver
    assert registry.get("a") is None


# --- waiting for a name -------------------------------------------------------------------


@pytest.mark.asyncio
async def test_waiting_for_a_mirrored_name_does_not_read_the_bucket() -> None:
    names = Bucket()
    registry = make_registry(names)
    registry._apply("a", encode(entry_of("n", "i", "a")), None, 1)
    assert await registry.wait("a") == entry_of("n", "i", "a")
    assert names.calls == []


@pytest.mark.asyncio
async def test_waiting_for_a_stored_name_reads_it() -> None:
    names = Bucket()
    names.write("a=2Eb", encode(entry_of("n", "i", "a.b")))
    registry = make_registry(names)
    assert await registry.wait("a.b") == entry_of("n", "i", "a.b")
    assert registry._waiters == {}


@pytest.mark.asyncio
async def test_waiting_for_a_name_ends_when_it_is_registered_and_leaves_no_waiter() -> None:
    names = Bucket()
    registry = make_registry(names)
    first = asyncio.ensure_future(registry.wait("a"))
    second = asyncio.ensure_future(registry.wait("a"))
    other = asyncio.ensure_future(registry.wait("b"))
    await until(
        lambda: len(registry._waiters.get("a", ())) == 2 and "b" in registry._waiters, poll=0
    )
    assert not first.done()
    registry._apply("a", encode(entry_of("n", "i", "a")), None, 1)
    assert await first == await second == entry_of("n", "i", "a")
    assert list(registry._waiters) == ["b"]
    other.cancel()
    with pytest.raises(asyncio.CancelledError):
        await other
    assert registry._waiters == {}


@pytest.mark.asyncio
async def test_a_cancelled_waiter_leaves_the_others_waiting() -> None:
    registry = make_registry()
    first = asyncio.ensure_future(registry.wait("a"))
    second = asyncio.ensure_future(registry.wait("a"))
    await until(lambda: len(registry._waiters.get("a", ())) == 2, poll=0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert len(registry._waiters["a"]) == 1
    registry._set("a", entry_of("n", "i", "a"), 1)
    assert await second == entry_of("n", "i", "a")


@pytest.mark.asyncio
async def test_a_woken_waiter_that_finds_the_name_gone_waits_again() -> None:
    names = Bucket()
    registry = make_registry(names)
    waiting = asyncio.ensure_future(registry.wait("a"))
    await until(lambda: "a" in registry._waiters, poll=0)
    registry._set("a", entry_of("n", "i", "a"), 1)
    registry._apply("a", b"", "DEL", 2)  # gone again before the waiter ran
    await until(lambda: "a" in registry._waiters, poll=0)  # it read the bucket, and waits again
    assert not waiting.done()
    registry._set("a", entry_of("m", "j", "a"), 3)
    assert await waiting == entry_of("m", "j", "a")


# --- opening and closing ------------------------------------------------------------------


class Subscription:
    def __init__(self, fail: bool = False) -> None:
        self.unsubscribed = 0
        self.fail = fail

    async def consumer_info(self) -> Any:
        return SimpleNamespace(num_pending=0, delivered=None)

    async def unsubscribe(self) -> None:
        self.unsubscribed += 1
        if self.fail:
            raise RuntimeError("connection closed")


class JetStream:
    """A JetStream context with buckets in memory (``missing``: buckets not created yet)."""

    def __init__(self, *missing: str) -> None:
        self.buckets: dict[str, Bucket] = {NAMES_BUCKET: Bucket(), NODES_BUCKET: Bucket()}
        self.missing = set(missing)
        self.created: list[KeyValueConfig] = []
        self.purged: list[str] = []
        self.published: list[tuple[str, bytes, int | None]] = []
        self.subscription = Subscription()
        self.subscribed: list[dict[str, Any]] = []
        self.publish_errors: list[Exception] = []

    async def key_value(self, bucket: str) -> Bucket:
        if bucket in self.missing:
            raise BucketNotFoundError
        return self.buckets[bucket]

    async def create_key_value(self, config: KeyValueConfig) -> Bucket:
        self.created.append(config)
        assert config.bucket is not None
        self.missing.discard(config.bucket)
        return self.buckets[config.bucket]

    async def purge_stream(self, stream: str) -> None:
        self.purged.append(stream)

    async def publish(self, subject: str, value: bytes, msg_ttl: int | None = None) -> None:
        if self.publish_errors:
            raise self.publish_errors.pop(0)
        self.published.append((subject, value, msg_ttl))
        if subject.startswith(f"$KV.{NODES_BUCKET}."):
            self.buckets[NODES_BUCKET].write(subject.split(".", 2)[2], value)

    async def subscribe(self, subject: str, **options: Any) -> Subscription:
        """Delivers the names bucket's entries (the watch's first batch) before returning."""
        self.subscribed.append({"subject": subject, **options})
        entries = sorted(self.buckets[NAMES_BUCKET].data.items(), key=lambda kv: kv[1][1])
        for left, (key, (value, revision)) in reversed(list(enumerate(reversed(entries)))):
            await options["cb"](message(f"$KV.{NAMES_BUCKET}.{key}", value or b"", revision, left))
        return self.subscription


@pytest.mark.asyncio
async def test_opening_announces_the_node_and_mirrors_the_names(clock: Clock) -> None:
    js = JetStream(NAMES_BUCKET, NODES_BUCKET)
    registry = Registry(cast(Any, js), HERE, INC, 2.6, replicas=3)
    await registry.open()
    try:
        names, nodes = js.created
        assert (names.bucket, names.storage, names.replicas) == (
            NAMES_BUCKET,
            StorageType.FILE,
            3,
        )
        assert (nodes.bucket, nodes.storage, nodes.replicas) == (
            NODES_BUCKET,
            StorageType.MEMORY,
            3,
        )
        assert js.purged == []
        assert js.published == [(f"$KV.{NODES_BUCKET}.{HERE}", INC.encode(), 3)]
        assert js.subscribed[0]["subject"] == f"$KV.{NAMES_BUCKET}.>"
        assert cast(Any, registry._watch_sub) is js.subscription
        await until(lambda: len(clock.sleeps) >= 3, poll=0)  # heartbeats every ttl / 4
        assert clock.sleeps[:3] == [0.75] * 3
        assert len(js.published) >= 3
        assert set(js.published) == {(f"$KV.{NODES_BUCKET}.{HERE}", INC.encode(), 3)}
    finally:
        await registry.close()


@pytest.mark.asyncio
async def test_buckets_a_registry_creates_keep_one_copy_unless_told(clock: Clock) -> None:
    js = JetStream(NAMES_BUCKET, NODES_BUCKET)
    registry = Registry(cast(Any, js), HERE, INC, 1)
    await registry.open()
    await registry.close()
    assert [config.replicas for config in js.created] == [1, 1]


@pytest.mark.asyncio
async def test_opening_mirrors_the_names_already_registered(clock: Clock) -> None:
    js = JetStream()
    js.buckets[NAMES_BUCKET].write("a=2Eb", encode(entry_of("there", "inc-there", "a.b")))
    js.buckets[NAMES_BUCKET].write("c", encode(entry_of("there", "inc-there", "c")))
    registry = Registry(cast(Any, js), HERE, INC, 1)
    await registry.open()
    assert registry.get("a.b") == entry_of("there", "inc-there", "a.b")
    assert registry.get("c") == entry_of("there", "inc-there", "c")
    await registry.close()


@pytest.mark.asyncio
async def test_a_fresh_server_starts_with_no_names_left_from_earlier_runs(clock: Clock) -> None:
    js = JetStream()
    registry = Registry(cast(Any, js), HERE, INC, 1)
    await registry.open(fresh=True)
    await registry.close()
    assert js.purged == [f"KV_{NAMES_BUCKET}"]
    assert js.created == []  # both buckets were there


@pytest.mark.asyncio
async def test_a_node_id_a_live_node_uses_is_refused(clock: Clock) -> None:
    js = JetStream()
    js.buckets[NODES_BUCKET].write(HERE, b"inc-other")
    registry = Registry(cast(Any, js), HERE, INC, 0.2)
    with pytest.raises(TransportError) as info:
        await registry.open()
    assert str(info.value) == (
        "node id 'here' is in use by a live node (it heartbeated within the last 1 s); "
        "give each ActorSystem its own node="
    )
    assert js.published == []
    js.buckets[NODES_BUCKET].write(HERE, INC.encode())  # this very node, reconnecting
    await registry.open()
    await registry.close()
    js.buckets[NODES_BUCKET].data[HERE] = (b"", 9)  # an expiry marker: nobody
    await registry.open()
    await registry.close()


@pytest.mark.asyncio
async def test_a_failed_heartbeat_is_retried_at_the_next_beat(clock: Clock) -> None:
    js = JetStream()
    registry = Registry(cast(Any, js), HERE, INC, 4)
    await registry.open()
    js.publish_errors.append(RuntimeError("reconnecting"))
    with capture_logs() as logs:
        await until(lambda: len(js.published) >= 2, poll=0)
    assert clock.sleeps[:2] == [1.0, 1.0]
    assert events(logs, "transport.heartbeat_failed") == [
        {"node": HERE, "error": "RuntimeError('reconnecting')"}
    ]
    await registry.close()


@pytest.mark.asyncio
async def test_closing_releases_names_removes_the_node_and_fails_waiters(clock: Clock) -> None:
    js = JetStream()
    registry = Registry(cast(Any, js), HERE, INC, 1)
    await registry.open()
    names, nodes = js.buckets[NAMES_BUCKET], js.buckets[NODES_BUCKET]
    await registry.claim("a.b", entry_of(HERE, INC, "a.b"))
    await registry.claim("c", entry_of(HERE, INC, "c"))
    waiting = asyncio.ensure_future(registry.wait("nobody"))
    done = asyncio.ensure_future(registry.wait("soon"))
    await until(lambda: "nobody" in registry._waiters and "soon" in registry._waiters, poll=0)
    soon = registry._waiters["soon"][0]
    soon.set_result(None)  # woken, not run yet
    beats = registry._tasks[:]
    await registry.close()
    assert names.data == {}
    assert HERE not in nodes.data
    assert js.subscription.unsubscribed == 1
    assert registry._watch_sub is None
    assert all(task.done() for task in beats)
    assert registry._tasks == []
    with pytest.raises(TransportError, match="node here left NATS while waiting for a name"):
        await waiting
    done.cancel()
    published = len(js.published)
    await asyncio.sleep(0)
    assert len(js.published) == published  # no more heartbeats
    await registry.close()  # twice: nothing left to do
    assert js.subscription.unsubscribed == 1


@pytest.mark.asyncio
async def test_closing_stops_the_heartbeat_before_it_returns(clock: Clock) -> None:
    js = JetStream()
    registry = Registry(cast(Any, js), HERE, INC, 1)
    await registry.open()
    beats = registry._tasks[:]
    await registry.close()
    assert beats
    assert all(task.done() for task in beats)


@pytest.mark.asyncio
async def test_closing_after_the_connection_went_is_quiet(clock: Clock) -> None:
    js = JetStream()
    js.subscription = Subscription(fail=True)
    registry = Registry(cast(Any, js), HERE, INC, 1)
    await registry.open()

    async def gone(key: str, last: int | None = None) -> None:
        raise RuntimeError("connection closed")

    js.buckets[NODES_BUCKET].delete = gone  # type: ignore[method-assign]
    await registry.close()
    assert js.subscription.unsubscribed == 1


@pytest.mark.asyncio
async def test_closing_a_registry_never_opened() -> None:
    registry = Registry(cast(Any, None), HERE, INC, 1)
    await registry.close()


# --- opening buckets ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_existing_bucket_is_bound_not_created() -> None:
    js = JetStream()
    assert await open_bucket(cast(Any, js), NAMES_BUCKET, memory=False, replicas=1) is cast(
        Any, js.buckets[NAMES_BUCKET]
    )
    assert js.created == []


@pytest.mark.asyncio
async def test_a_missing_bucket_is_created_as_configured() -> None:
    js = JetStream("leases", "plain")
    js.buckets["leases"], js.buckets["plain"] = Bucket(), Bucket()
    await open_bucket(cast(Any, js), "leases", memory=True, replicas=3, markers=True)
    await open_bucket(cast(Any, js), "plain", memory=False, replicas=2)
    leases, plain = js.created
    assert (leases.bucket, leases.history, leases.storage, leases.replicas) == (
        "leases",
        1,
        StorageType.MEMORY,
        3,
    )
    assert leases.limit_marker_ttl == 1.0
    assert (plain.bucket, plain.history, plain.storage, plain.replicas) == (
        "plain",
        1,
        StorageType.FILE,
        2,
    )
    assert plain.limit_marker_ttl is None


class Creating(JetStream):
    """``create_key_value`` fails with ``errors`` (in order), then creates."""

    def __init__(self, errors: list[Exception], *, made_by_timeout: bool = False) -> None:
        super().__init__("b")
        self.buckets["b"] = Bucket()
        self.errors = errors
        self.made_by_timeout = made_by_timeout
        self.attempts = 0
        self.lookups = 0

    async def key_value(self, bucket: str) -> Bucket:
        self.lookups += 1
        return await super().key_value(bucket)

    async def create_key_value(self, config: KeyValueConfig) -> Bucket:
        self.attempts += 1
        if self.errors:
            error = self.errors.pop(0)
            if self.made_by_timeout or not isinstance(error, NatsTimeoutError | BadRequestError):
                self.missing.discard("b")
            raise error
        return await super().create_key_value(config)


def placement_error() -> BadRequestError:
    return BadRequestError(code=400, err_code=10005, description="peer offline for placement")


@pytest.mark.asyncio
async def test_a_create_that_times_out_is_tried_three_times(clock: Clock) -> None:
    js = Creating([NatsTimeoutError(), NatsTimeoutError()])
    assert await open_bucket(cast(Any, js), "b", memory=True, replicas=1) is cast(
        Any, js.buckets["b"]
    )
    assert js.attempts == 3
    js = Creating([NatsTimeoutError()] * 3)
    with pytest.raises(NatsTimeoutError):
        await open_bucket(cast(Any, js), "b", memory=True, replicas=1)
    assert js.attempts == 3
    assert js.lookups == 3  # the first, and after each timeout but the last


@pytest.mark.asyncio
async def test_a_create_that_timed_out_but_made_the_bucket_binds_it(clock: Clock) -> None:
    js = Creating([NatsTimeoutError()], made_by_timeout=True)
    assert await open_bucket(cast(Any, js), "b", memory=True, replicas=1) is cast(
        Any, js.buckets["b"]
    )
    assert js.attempts == 1


@pytest.mark.asyncio
async def test_a_bucket_another_node_created_meanwhile_is_bound(clock: Clock) -> None:
    js = Creating([BadRequestError(code=400, err_code=10058, description="stream name in use")])
    js.made_by_timeout = True  # the error means it exists
    assert await open_bucket(cast(Any, js), "b", memory=True, replicas=1) is cast(
        Any, js.buckets["b"]
    )
    assert js.attempts == 1
    assert clock.sleeps == []


@pytest.mark.asyncio
async def test_creation_waits_with_backoff_for_offline_peers(clock: Clock) -> None:
    js = Creating([placement_error()] * 3)
    with capture_logs() as logs:
        await open_bucket(cast(Any, js), "b", memory=True, replicas=3)
    assert js.attempts == 4
    assert (
        events(logs, "registry.bucket_retry")
        == [{"bucket": "b", "error": str(placement_error())}] * 3
    )
    assert clock.sleeps == pytest.approx([0.05, 0.1, 0.2])


@pytest.mark.asyncio
async def test_creation_gives_up_on_offline_peers_after_twenty_seconds(clock: Clock) -> None:
    js = Creating([placement_error()] * 100)
    with pytest.raises(BadRequestError):
        await open_bucket(cast(Any, js), "b", memory=True, replicas=3)
    assert clock.sleeps == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.8] + [1.0] * 18)
    assert clock.now + 1.0 >= 20.0 > clock.now


# --- settling -----------------------------------------------------------------------------


def failing(errors: list[Exception], result: str = "done") -> tuple[Callable[[], Any], list[int]]:
    calls = [0]

    async def call() -> str:
        calls[0] += 1
        if errors:
            raise errors.pop(0)
        return result

    return call, calls


@pytest.mark.asyncio
async def test_settled_retries_while_nobody_answers_for_the_bucket(clock: Clock) -> None:
    call, calls = failing([NoRespondersError(), NoStreamResponseError(), NoRespondersError()])
    assert await settled(call) == "done"
    assert calls == [4]
    assert clock.sleeps == pytest.approx([0.02, 0.04, 0.08])


@pytest.mark.asyncio
async def test_settled_gives_up_after_about_five_seconds(clock: Clock) -> None:
    call, calls = failing([NoRespondersError()] * 100)
    with pytest.raises(NoRespondersError):
        await settled(call)
    assert clock.sleeps == pytest.approx([0.02, 0.04, 0.08, 0.16, 0.32] + [0.5] * 9)
    assert calls == [15]


@pytest.mark.asyncio
async def test_settled_raises_other_errors_at_once(clock: Clock) -> None:
    call, calls = failing([KeyNotFoundError()])
    with pytest.raises(KeyNotFoundError):
        await settled(call)
    assert calls == [1]
    assert clock.sleeps == []


@pytest.mark.asyncio
async def test_reads_and_claims_ride_out_a_bucket_nobody_answers_for_yet(clock: Clock) -> None:
    names, nodes = Bucket(), Bucket()
    registry = make_registry(names, nodes)

    def no_responders() -> None:
        raise NoRespondersError

    for method in ("create", "get", "keys"):
        names.before[method] = [no_responders]
        nodes.before[method] = [no_responders]
    names.write("taken", encode(entry_of("dead", "inc-dead", "taken")))
    nodes.before["get"] = [no_responders]
    await registry.claim("a", entry_of(HERE, INC, "a"))  # create retried
    await registry.claim("taken", entry_of(HERE, INC, "taken"))  # get retried; is_live too
    names.before["get"] = [no_responders]
    assert await registry.fetch("a") == entry_of(HERE, INC, "a")
    assert await registry.live_nodes() == {HERE}
    assert clock.sleeps == pytest.approx([0.02] * 5)


# --- watching a bucket --------------------------------------------------------------------


def message(subject: str, data: bytes, seq: int, pending: int, headers: Any = None) -> Any:
    meta = SimpleNamespace(sequence=SimpleNamespace(stream=seq), num_pending=pending)
    return SimpleNamespace(subject=subject, data=data, headers=headers, metadata=meta)


class Watched:
    """``js.subscribe`` of a watch: records the options; the test delivers the messages."""

    def __init__(self, pending: int, delivered: int | None) -> None:
        self.options: dict[str, Any] = {}
        self.cb: Callable[[Any], Awaitable[None]] | None = None
        self.subscribed = asyncio.Event()
        self.info = SimpleNamespace(
            num_pending=pending,
            delivered=None if delivered is None else SimpleNamespace(consumer_seq=delivered),
        )

    async def subscribe(self, subject: str, **options: Any) -> Any:
        self.options = {"subject": subject, **options}
        self.cb = options["cb"]
        self.subscribed.set()
        info = self.info

        class Sub:
            async def consumer_info(self) -> Any:
                return info

        return Sub()


def recorder() -> tuple[list[tuple[str, bytes, str | None, int]], Callable[..., None]]:
    applied: list[tuple[str, bytes, str | None, int]] = []

    def apply(key: str, value: bytes, operation: str | None, revision: int) -> None:
        applied.append((key, value, operation, revision))

    return applied, apply


@pytest.mark.asyncio
async def test_a_watch_of_an_empty_bucket_returns_at_once() -> None:
    js = Watched(pending=0, delivered=None)
    applied, apply = recorder()
    await asyncio.wait_for(watch_bucket(cast(Any, js), "bkt", apply), 2.0)
    options = js.options
    assert options["subject"] == "$KV.bkt.>"
    assert options["stream"] == "KV_bkt"
    assert options["ordered_consumer"] is True
    assert options["deliver_policy"] == DeliverPolicy.LAST_PER_SUBJECT
    assert options["idle_heartbeat"] == 1.0
    assert options["inactive_threshold"] == 300.0
    assert applied == []
    js = Watched(pending=0, delivered=0)
    await asyncio.wait_for(watch_bucket(cast(Any, js), "bkt", apply), 2.0)


@pytest.mark.asyncio
async def test_a_watch_returns_once_the_present_entries_are_applied() -> None:
    for pending, delivered in ((2, 0), (0, 2)):  # asked before, or after, their delivery began
        js = Watched(pending=pending, delivered=delivered)
        applied, apply = recorder()
        watching = asyncio.ensure_future(watch_bucket(cast(Any, js), "bkt", apply))
        await js.subscribed.wait()
        assert js.cb is not None
        for _ in range(3):
            await asyncio.sleep(0)
        assert not watching.done()
        await js.cb(message("$KV.bkt.a=2Eb", b"one", 4, 1))
        for _ in range(3):
            await asyncio.sleep(0)
        assert not watching.done()
        await js.cb(message("$KV.bkt.c", b"", 6, 0, {"KV-Operation": "DEL"}))
        await asyncio.wait_for(watching, 2.0)
        await js.cb(message("$KV.bkt.d", b"", 7, 0, {"Nats-Marker-Reason": "MaxAge"}))
        await js.cb(message("$KV.bkt.e", b"two", 8, 0, {}))
        await js.cb(message("$KV.bkt.f", b"", 9, 0, {"KV-Operation": "PURGE", "X": "y"}))
        assert applied == [
            ("a=2Eb", b"one", None, 4),
            ("c", b"", "DEL", 6),
            ("d", b"", "MaxAge", 7),
            ("e", b"two", None, 8),
            ("f", b"", "PURGE", 9),
        ]
