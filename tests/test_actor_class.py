"""Declaring an actor class: class keywords, ``@handler`` tables, dispatch, hooks, journal."""

from __future__ import annotations

import asyncio
import typing
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, Union

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from helpers import Tick
from swarm_actors import (
    Actor,
    ActorSystem,
    AllForOne,
    MessageCapabilityError,
    MessageGrant,
    OneForOne,
    SpaceGrant,
    Tracing,
    UnhandledMessageError,
    handler,
)
from swarm_actors._core import _messages
from swarm_actors.errors import CapabilityError, NoJournalError
from swarm_actors.events import AgentDecision, ChangeForm, StateChange, SwarmEvent
from swarm_actors.testing import settle

pytestmark = pytest.mark.asyncio


T = TypeVar("T")


@dataclass
class Msg:
    n: int = 0


@dataclass
class SubMsg(Msg):
    pass


@dataclass
class Other:
    pass


@dataclass
class Reply:
    value: int


@dataclass
class Reply2:
    value: str


# --- SpaceGrant -------------------------------------------------------------------------------


async def test_space_grant_defaults_allow_everything() -> None:
    grant = SpaceGrant()
    assert grant.lanes is None
    assert (grant.read, grant.take, grant.write) == (True, True, True)


@pytest.mark.parametrize("lanes", ["jobs", b"jobs"])
async def test_space_grant_refuses_a_string_for_lanes(lanes: Any) -> None:
    with pytest.raises(TypeError, match="lanes must be") as info:
        SpaceGrant(lanes=lanes)
    assert str(info.value) == 'lanes must be a tuple of lane values, e.g. lanes=("jobs",)'


async def test_space_grant_lanes_become_a_tuple() -> None:
    grant = SpaceGrant(lanes=["jobs", "results"])  # type: ignore[arg-type]
    assert grant.lanes == ("jobs", "results")
    assert isinstance(grant.lanes, tuple)


# --- @handler ---------------------------------------------------------------------------------


async def test_handler_marks_and_returns_the_same_function() -> None:
    async def fn(self: Any, msg: Msg) -> None: ...

    assert handler(fn) is fn
    assert fn.__swarm_handler__ is True  # type: ignore[attr-defined]


async def test_a_sync_handler_is_refused_naming_the_method() -> None:
    with pytest.raises(TypeError) as info:

        class NotAsync(Actor):
            @handler  # type: ignore[type-var]
            def sync(self, msg: Msg) -> None: ...

    assert str(info.value) == (
        "test_a_sync_handler_is_refused_naming_the_method.<locals>.NotAsync.sync: "
        "a @handler must be an async def method"
    )


async def test_a_handler_taking_other_than_one_message_is_refused() -> None:
    with pytest.raises(TypeError) as info:

        class One(Actor):
            @handler
            async def h(self) -> None: ...

    assert str(info.value).endswith("<locals>.One.h: a @handler takes (self, message)")
    with pytest.raises(TypeError) as info:

        class Three(Actor):
            @handler
            async def h(self, msg: Msg, extra: Msg) -> None: ...

    assert str(info.value).endswith("<locals>.Three.h: a @handler takes (self, message)")


async def test_an_unresolvable_annotation_is_refused_with_the_cause() -> None:
    with pytest.raises(TypeError) as info:

        class Forward(Actor):
            @handler
            async def h(self, msg: NoSuchType) -> None: ...  # type: ignore[name-defined]  # noqa: F821

    text = str(info.value)
    assert "<locals>.Forward.h: cannot resolve annotations: " in text
    assert "NoSuchType" in text
    assert isinstance(info.value.__cause__, NameError)


async def test_an_unannotated_message_is_refused_with_an_example() -> None:
    with pytest.raises(TypeError) as info:

        class Bare(Actor):
            @handler
            async def bare(self, msg) -> None: ...  # type: ignore[no-untyped-def]

    assert str(info.value).endswith(
        "<locals>.Bare.bare: annotate the message parameter with its type, "
        "e.g. `async def bare(self, msg: MyMessage)`"
    )


async def test_a_non_class_annotation_is_refused() -> None:
    with pytest.raises(TypeError) as info:

        class HalfUnion(Actor):
            @handler
            async def h(self, msg: Msg | typing.Literal[1]) -> None: ...

    assert str(info.value).endswith(f"<locals>.HalfUnion.h: {typing.Literal[1]!r} is not a class")


async def test_a_handler_taking_any_is_refused_pointing_to_on_receive() -> None:
    # typing.Any is a class since Python 3.11, but no message is an instance of it: such a
    # handler was registered and then never reached (messages went to on_receive).
    with pytest.raises(TypeError) as info:

        class AnyMsg(Actor):
            @handler
            async def h(self, msg: Any) -> None: ...

    assert str(info.value).endswith(
        "<locals>.AnyMsg.h: a @handler cannot take Any; override on_receive to handle every message"
    )
    with pytest.raises(TypeError, match="cannot take Any"):

        class AnyMember(Actor):
            @handler
            async def h(self, msg: Msg | Any) -> None: ...


async def test_unions_register_every_member_and_generics_their_origin() -> None:
    # Classes made in the test: the handler tables are built when the class is.
    class Unions(Actor):
        @handler
        async def pipe(self, msg: Msg | Other) -> str:
            return "pipe"

        @handler
        async def old(self, msg: Union[int, str]) -> str:  # noqa: UP007
            return "old"

        @handler
        async def generic(self, msg: list[int]) -> str:
            return "generic"

    assert Unions._handlers == {
        Msg: "pipe",
        Other: "pipe",
        int: "old",
        str: "old",
        list: "generic",
    }
    async with ActorSystem() as system:
        ref = await system.start(Unions)
        assert await ref.ask(Msg()) == "pipe"
        assert await ref.ask(Other()) == "pipe"
        assert await ref.ask(3) == "old"
        assert await ref.ask("x") == "old"
        assert await ref.ask([1]) == "generic"


@dataclass
class WireIn:
    pass


@dataclass
class WireOut:
    pass


@dataclass
class WireOut2:
    pass


@dataclass
class Box(Generic[T]):
    item: T


async def test_handled_and_returned_types_are_registered_for_the_wire(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry: dict[str, type] = {}
    actor_classes: dict[str, type] = {}
    monkeypatch.setattr(_messages, "_TYPES", registry)
    monkeypatch.setattr(_messages, "ACTOR_CLASSES", actor_classes)

    class Wired(Actor):
        @handler
        async def h(self, msg: WireIn) -> WireOut | WireOut2 | list[int] | None:
            return None

        @handler
        async def single(self, msg: Msg) -> WireOut2:
            return WireOut2()

    assert registry == {_messages.type_name(c): c for c in (WireIn, WireOut, WireOut2, Msg)}
    assert actor_classes == {_messages.type_name(Wired): Wired}
    registry.clear()

    class Single(Actor):
        @handler
        async def h(self, msg: int) -> WireOut:
            return WireOut()

    assert registry == {_messages.type_name(WireOut): WireOut}


async def test_a_generic_handler_is_declared_and_dispatched() -> None:
    class Echo(Actor):
        @handler
        async def echo(self, msg: Box[T]) -> T:  # a return annotation that names no class
            return msg.item

    assert Echo._handlers == {Box: "echo"}
    async with ActorSystem() as system:
        ref = await system.start(Echo)
        assert await ref.ask(Box(5)) == 5


# --- class keywords ---------------------------------------------------------------------------


async def test_role_defaults_to_the_lowercased_class_name_made_safe() -> None:
    class Plain(Actor):
        pass

    assert Plain.role == "plain"
    Weird = type("Wëird.Näme", (Actor,), {})
    assert Weird.role == "w_ird_n_me"  # type: ignore[attr-defined]
    Long = type("L" * 70, (Actor,), {})
    assert Long.role == "l" * 64  # type: ignore[attr-defined]


async def test_an_explicit_role_is_kept_and_inherited() -> None:
    class Base(Actor, role="Boss-1"):
        pass

    class Child(Base):
        pass

    class Grandchild(Child, role="other"):
        pass

    class Plain(Actor):
        pass

    class PlainChild(Plain):
        pass

    assert Base.role == "Boss-1"
    assert Child.role == "Boss-1"
    assert Grandchild.role == "other"
    assert Base.role == "Boss-1"
    # A role derived from the name is not explicit: a subclass gets its own.
    assert PlainChild.role == "plainchild"


@pytest.mark.parametrize("role", ["", "a b", "x" * 65, "é", "r\n"])
async def test_a_bad_role_is_refused(role: str) -> None:
    with pytest.raises(ValueError, match="role must be") as info:

        class Bad(Actor, role=role):
            pass

    assert str(info.value) == (
        "test_a_bad_role_is_refused.<locals>.Bad: role must be 1-64 letters, digits, _ or -, "
        f"got {role!r}"
    )


async def test_a_role_of_64_characters_is_accepted() -> None:
    class Sixty(Actor, role="r" * 64):
        pass

    assert Sixty.role == "r" * 64


async def test_may_message_builds_a_grant() -> None:
    class Free(Actor):
        pass

    class Quiet(Actor, may_message=("reviewer",)):
        pass

    assert Free.message_grant is None
    assert Quiet.message_grant == MessageGrant.parse("x", ("reviewer",), Actor)
    with pytest.raises(TypeError, match=r"<locals>\.Bad: may_message must be a tuple"):

        class Bad(Actor, may_message="reviewer"):
            pass


class Target(Actor):
    @handler
    async def h(self, msg: Other) -> None:
        pass


class Mute(Actor, may_message=()):
    @handler
    async def h(self, msg: Msg) -> None:
        target = self.system.lookup("/target")
        assert target is not None
        await target.tell(Other())


async def test_a_send_outside_may_message_is_refused() -> None:
    async with ActorSystem() as system:
        await system.start(Target, name="target")
        mute = await system.start(Mute)
        with pytest.raises(MessageCapabilityError):
            await mute.ask(Msg())


async def test_space_keyword_sets_the_grant_and_refuses_other_values() -> None:
    grant = SpaceGrant(lanes=("jobs",), write=False)

    class Worker(Actor, space=grant):
        pass

    class Sub(Worker):
        pass

    assert Worker.space_grant is grant
    assert Sub.space_grant is grant
    assert Actor.space_grant is None
    with pytest.raises(TypeError) as info:

        class Bad(Actor, space=("jobs",)):  # type: ignore[arg-type]
            pass

    assert str(info.value).endswith("<locals>.Bad: space must be a SpaceGrant")


class SpaceUser(Actor, space=SpaceGrant(lanes=("jobs",), write=False)):
    @handler
    async def h(self, msg: Msg) -> Any:
        cap = self.space.capability
        assert cap is not None
        assert cap.lanes == ("jobs",)
        assert (cap.read, cap.take, cap.write) == (True, True, False)
        try:
            self.space.out(("jobs", 1))
        except CapabilityError:
            return "refused"
        return "written"


class FreeSpace(Actor):
    @handler
    async def h(self, msg: Msg) -> Any:
        self.space.out(("anything", msg.n))
        return self.space.capability


async def test_self_space_is_restricted_to_the_grant() -> None:
    async with ActorSystem() as system:
        assert await (await system.start(SpaceUser)).ask(Msg()) == "refused"
        assert await (await system.start(FreeSpace)).ask(Msg(4)) is None
        assert system.space.read_nowait(("anything", int)) == ("anything", 4)
        assert len(system.space) == 1


async def test_mailbox_size_keyword_sets_the_bound_and_refuses_bad_values() -> None:
    class One(Actor, mailbox_size=1):
        pass

    class OneChild(One):
        pass

    assert One.mailbox_size == 1
    assert OneChild.mailbox_size == 1
    assert Actor.mailbox_size == 1000
    for bad in (0, -1, 1.5, "10"):
        with pytest.raises(ValueError, match="mailbox_size") as info:

            class Bad(Actor, mailbox_size=bad):  # type: ignore[arg-type]
                pass

        assert str(info.value).endswith("<locals>.Bad: mailbox_size must be an int >= 1")


async def test_supervision_keyword_sets_the_strategy_and_refuses_other_values() -> None:
    strategy = AllForOne(max_restarts=2)

    class Boss(Actor, supervision=strategy):
        pass

    class SubBoss(Boss):
        pass

    assert Boss.supervision is strategy
    assert SubBoss.supervision is strategy
    assert isinstance(Actor.supervision, OneForOne)
    with pytest.raises(TypeError) as info:

        class Bad(Actor, supervision="one-for-one"):  # type: ignore[arg-type]
            pass

    assert str(info.value).endswith("<locals>.Bad: supervision must be OneForOne or AllForOne")


async def test_unknown_class_keywords_reach_object_and_are_refused() -> None:
    with pytest.raises(TypeError):

        class Bad(Actor, mailbox=3):
            pass


class Mixin:
    seen: typing.ClassVar[list[Any]] = []

    def __init_subclass__(cls, *, tag: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Mixin.seen.append(tag)


async def test_other_class_keywords_are_passed_on() -> None:
    class Tagged(Actor, Mixin, tag="t"):
        pass

    assert Mixin.seen[-1] == "t"


# --- handler tables and dispatch --------------------------------------------------------------


def handler_classes() -> tuple[Any, Any, Any]:
    """Fresh classes: each caches its dispatch, so a test must see it built and resolved."""

    class BaseHandlers(Actor):
        @handler
        async def on_msg(self, msg: Msg) -> str:
            return "base-msg"

        @handler
        async def on_other(self, msg: Other) -> str:
            return "base-other"

    class Derived(BaseHandlers):
        @handler
        async def on_sub(self, msg: SubMsg) -> str:
            return "derived-sub"

        async def on_other(self, msg: Other) -> str:  # overrides the method, keeps the entry
            return "derived-other"

    class Catchall(Derived):
        async def on_receive(self, message: Any) -> Any:
            return ("catchall", message)

    return BaseHandlers, Derived, Catchall


async def test_handlers_are_inherited_and_extended_per_class() -> None:
    base_class, derived_class, catchall_class = handler_classes()
    assert base_class._handlers == {Msg: "on_msg", Other: "on_other"}
    assert derived_class._handlers == {Msg: "on_msg", Other: "on_other", SubMsg: "on_sub"}
    async with ActorSystem() as system:
        base = await system.start(base_class)
        derived = await system.start(derived_class)
        assert await base.ask(SubMsg()) == "base-msg"  # the nearest base class's handler
        assert await derived.ask(SubMsg()) == "derived-sub"
        assert await derived.ask(Msg()) == "base-msg"
        assert await derived.ask(Other()) == "derived-other"
        with pytest.raises(UnhandledMessageError) as info:
            await derived.ask(3)
        assert str(info.value) == (
            f"{derived_class.__qualname__} ({derived.path}) has no handler for int"
        )
        assert info.value.actor == derived.path
        catchall = await system.start(catchall_class)
        assert await catchall.ask(3) == ("catchall", 3)
        assert await catchall.ask(SubMsg()) == "derived-sub"
        assert await catchall.ask(Other()) == "derived-other"


async def test_resolve_caches_per_class_and_a_later_subclass_starts_empty() -> None:
    base_class, _, catchall_class = handler_classes()

    class Cached(base_class):  # type: ignore[valid-type,misc]
        pass

    assert Cached._dispatch == {}
    assert Cached._resolve(SubMsg) is base_class.on_msg
    assert Cached._dispatch == {SubMsg: base_class.on_msg}
    assert Cached._resolve(int) is None
    assert Cached._dispatch[int] is None
    Cached._dispatch[Other] = catchall_class.on_receive  # a cached entry wins over the table
    assert Cached._resolve(Other) is catchall_class.on_receive

    class Later(Cached):
        pass

    assert Later._dispatch == {}
    assert Later._resolve(Other) is base_class.on_other
    assert catchall_class._resolve(float) is catchall_class.on_receive
    assert catchall_class._resolve(SubMsg) is catchall_class.on_sub
    assert catchall_class._unhandled() is False
    assert Later._unhandled() is True


async def test_a_later_handler_for_the_same_type_wins() -> None:
    class Twice(Actor):
        @handler
        async def first(self, msg: Msg) -> str:
            return "first"

        @handler
        async def second(self, msg: Msg) -> str:
            return "second"

    assert Twice._handlers == {Msg: "second"}


async def test_on_receive_without_a_cell_names_no_actor() -> None:
    with pytest.raises(UnhandledMessageError) as info:
        await Actor().on_receive(Msg())
    assert str(info.value) == "Actor has no handler for Msg"
    assert info.value.actor == ""


async def test_an_on_receive_may_pass_a_message_on_to_the_refusing_default() -> None:
    class Picky(Actor):
        async def on_receive(self, message: Any) -> Any:
            if isinstance(message, int):
                return message * 2
            return await super().on_receive(message)

    async with ActorSystem() as system:
        ref = await system.start(Picky, name="picky")
        assert await ref.ask(4) == 8
        with pytest.raises(UnhandledMessageError) as info:
            await ref.ask("x")
        assert str(info.value) == f"{Picky.__qualname__} has no handler for str"
        assert info.value.actor == "/picky"


# --- runtime attributes and hooks -------------------------------------------------------------


class Lifecycle(Actor):
    def __init__(self, events: list[str], ticked: asyncio.Event) -> None:
        self.events = events
        self.ticked = ticked

    async def on_start(self) -> None:
        self.events.append(f"start {self.ref.path} {self.system is not None}")
        self.timers.start_single("tick", Tick(), 0.0)

    @handler
    async def tick(self, msg: Tick) -> None:
        self.events.append("tick")
        self.ticked.set()

    @handler
    async def boom(self, msg: Msg) -> None:
        raise KeyError(msg.n)

    async def on_failure(self, exc: BaseException) -> None:
        self.events.append(f"failure {exc!r}")

    async def on_stop(self) -> None:
        self.events.append("stop")


async def test_hooks_run_in_order_with_ref_system_and_timers_set() -> None:
    events: list[str] = []
    ticked = asyncio.Event()
    async with ActorSystem() as system:
        ref = await system.start(Lifecycle, events, ticked, name="life")
        await asyncio.wait_for(ticked.wait(), 5)
        await ref.tell(Msg(7))
        await settle()
        await ref.stop()
    assert events[:4] == ["start /life True", "tick", "failure KeyError(7)", "stop"]
    assert events[4] == "start /life True"  # the restarted instance
    assert events[-1] == "stop"


async def test_default_hooks_do_nothing() -> None:
    actor = Actor()
    await actor.on_start()
    await actor.on_stop()
    await actor.on_failure(RuntimeError())
    assert actor.snapshot() is None
    actor.restore(object())


class Spawner(Actor):
    @handler
    async def spawn(self, msg: Msg) -> Any:
        child = await self.start_child(Holder, msg.n, name=f"c{msg.n}", label="kw")
        return child.path, await child.ask(Other())


class Holder(Actor):
    def __init__(self, n: int, *, label: str) -> None:
        self.n = n
        self.label = label

    @handler
    async def get(self, msg: Other) -> Any:
        return self.n, self.label


async def test_start_child_passes_args_name_and_parent() -> None:
    async with ActorSystem() as system:
        parent = await system.start(Spawner, name="p")
        assert await parent.ask(Msg(3)) == ("/p/c3", (3, "kw"))
        child = system.lookup("/p/c3")
        assert child is not None
        await parent.stop()
        await settle()
        assert [r.path for r in system.actors()] == []


# --- decide / record_change / step ------------------------------------------------------------


class Journaled(Actor, role="journaled"):
    @handler
    async def decide_it(self, msg: Msg) -> SwarmEvent:
        return self.decide(
            "go",
            rationale="because",
            alternatives=["stay", "wait"],
            confidence=0.75,
            trigger="msg",
            context_hash="ctx",
            memory_ids=["m1", "m2"],
            cause="cause-id",
        )

    @handler
    async def default_decision(self, msg: SubMsg) -> SwarmEvent:
        return self.decide("plain")

    @handler
    async def change(self, msg: Other) -> SwarmEvent:
        return self.record_change(
            b"raw",
            resource="res",
            target_type="kind",
            delta=True,
            reversible=True,
            content_type="text/plain",
            cause="c2",
        )

    @handler
    async def default_change(self, msg: Tick) -> SwarmEvent:
        return self.record_change({"a": 1})

    @handler
    async def bad(self, msg: int) -> Any:
        if msg == 0:
            return self.decide("x", confidence=1.5)
        return self.record_change(object())


async def test_decide_maps_every_field() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Journaled, name="j")
        event = await ref.ask(Msg())
        assert event.agent_role == "journaled"
        assert event.agent_id == "/j"
        assert event.causation_id == "cause-id"
        assert event.payload == AgentDecision(
            choice="go",
            rationale="because",
            rejected_alternatives=("stay", "wait"),
            confidence_score=0.75,
            input_trigger="msg",
            context_hash="ctx",
            memory_ids=("m1", "m2"),
        )
        plain = await ref.ask(SubMsg())
        assert plain.causation_id == ""
        assert plain.payload == AgentDecision(choice="plain")
        assert plain.sequence == event.sequence + 1
        with pytest.raises(ValueError, match="confidence"):
            await ref.ask(0)


async def test_record_change_maps_every_field() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Journaled, name="j")
        event = await ref.ask(Other())
        payload = event.payload
        assert isinstance(payload, StateChange)
        assert event.causation_id == "c2"
        assert (payload.target_resource, payload.target_type) == ("res", "kind")
        assert payload.data == b"raw"
        assert payload.form == ChangeForm.DELTA
        assert payload.is_reversible is True
        assert payload.content_type == "text/plain"
        default = (await ref.ask(Tick())).payload
        assert isinstance(default, StateChange)
        assert (default.target_resource, default.target_type) == ("", "")
        assert default.form == ChangeForm.SNAPSHOT
        assert default.is_reversible is False
        assert default.content_type == "application/msgpack"
        assert (await ref.ask(Tick())).causation_id == ""
        with pytest.raises(TypeError, match="msgspec-encodable"):
            await ref.ask(1)


async def test_recording_without_a_journal_is_refused() -> None:
    async with ActorSystem(journal=None) as system:
        ref = await system.start(Journaled)
        with pytest.raises(NoJournalError) as info:
            await ref.ask(Msg())
        assert str(info.value) == (
            "this ActorSystem keeps no journal (it was made with journal=None, or with nats= "
            "and is not connected yet)"
        )


class Stepper(Actor):
    @handler
    async def h(self, msg: Msg) -> bool:
        with self.step("plan", goal="g", n=msg.n) as span:
            return span.is_recording()


async def test_step_makes_a_span_with_the_actor_path_and_attributes() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with ActorSystem(tracing=Tracing(provider=provider)) as system:
        ref = await system.start(Stepper, name="s")
        assert await ref.ask(Msg(2)) is True
    spans = [s for s in exporter.get_finished_spans() if s.name == "plan"]
    assert len(spans) == 1
    assert dict(spans[0].attributes or {}) == {"swarm.actor.path": "/s", "goal": "g", "n": 2}
    async with ActorSystem() as system:
        ref = await system.start(Stepper)
        assert await ref.ask(Msg()) is False
