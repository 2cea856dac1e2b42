"""Message capabilities (``may_message``): who may message whom; refusals change nothing."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from swarm_actors import (
    Actor,
    ActorError,
    ActorRef,
    ActorSystem,
    MessageCapabilityError,
    MessageGrant,
    Ref,
    Tracing,
    handler,
)
from swarm_actors._core._actor import class_names
from swarm_actors.testing import settle

pytestmark = pytest.mark.asyncio


@dataclass
class Note:
    text: str


@dataclass
class Forward:
    """Ask the receiver to send ``Note(text)`` to ``target`` (tell, or ask when ``ask``)."""

    target: Ref[Any]
    text: str
    ask: bool = False
    suspend_first: bool = False


@dataclass
class Via:
    """Ask ``via`` to handle ``inner`` (a nested, inline ask)."""

    via: ActorRef[Any]
    inner: Forward


class Sink(Actor):
    """Records what it receives; answers asks with the count so far."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    @handler
    async def note(self, msg: Note) -> int:
        self.seen.append(msg.text)
        return len(self.seen)


class Reviewer(Sink, role="reviewer"):
    pass


class Coder(Sink, role="coder"):
    pass


class Forwarder(Actor):
    """Sends wherever it is told to; the grant of its subclasses decides what is allowed."""

    @handler
    async def forward(self, msg: Forward) -> Any:
        if msg.suspend_first:
            await asyncio.sleep(0)  # continue in the actor's task, not the dispatcher's turn
        if msg.ask:
            return await msg.target.ask(Note(msg.text), timeout=5)
        await msg.target.tell(Note(msg.text))
        return None

    @handler
    async def via(self, msg: Via) -> Any:
        return await msg.via.ask(msg.inner, timeout=5)


class ReviewerRelay(Forwarder, role="reviewer"):
    pass


class ToReviewers(Forwarder, role="architect", may_message=("reviewer",)):
    pass


class ToCoderClass(Forwarder, may_message=(Coder,)):
    pass


class ToPool(Forwarder, may_message=("/pool-*",)):
    pass


class Silent(Forwarder, may_message=()):
    pass


async def test_role_grant_allows_its_role_and_refuses_others() -> None:
    async with ActorSystem() as system:
        sender = await system.start(ToReviewers, name="arch")
        reviewer = await system.start(Reviewer, name="rev")
        coder = await system.start(Coder, name="cod")
        await sender.ask(Forward(reviewer, "ok"))
        await sender.ask(Forward(reviewer, "ok-ask", ask=True))
        with pytest.raises(MessageCapabilityError) as info:
            await sender.ask(Forward(coder, "nope"))
        err = info.value
        assert isinstance(err, PermissionError)
        assert isinstance(err, ActorError)
        assert err.sender == "/arch"
        assert err.actor == "/cod"
        assert "coder" in str(err)
        with pytest.raises(MessageCapabilityError):
            await sender.ask(Forward(coder, "nope-ask", ask=True))
        await settle()
        # Nothing reached the refused target: not queued, not processed.
        assert coder.stats().processed == 0
        assert coder.stats().pending == 0
        assert reviewer.stats().processed == 2


async def test_class_and_path_grants() -> None:
    async with ActorSystem() as system:
        to_class = await system.start(ToCoderClass, name="c")
        to_pool = await system.start(ToPool, name="p")
        coder = await system.start(Coder, name="coder-1")
        pooled = await system.start(Reviewer, name="pool-7")
        await to_class.ask(Forward(coder, "by class"))
        with pytest.raises(MessageCapabilityError):
            await to_class.ask(Forward(pooled, "not a Coder"))
        await to_pool.ask(Forward(pooled, "by path"))
        with pytest.raises(MessageCapabilityError):
            await to_pool.ask(Forward(coder, "not in the pool"))
        await settle()
        assert coder.stats().processed == 1
        assert pooled.stats().processed == 1


async def test_self_messages_and_outside_senders_are_always_allowed() -> None:
    class Ticker(Silent):
        def __init__(self) -> None:
            self.ticks = 0

        @handler
        async def note(self, msg: Note) -> None:
            self.ticks += 1
            if msg.text == "again":
                await self.ref.tell(Note("done"))  # to itself: allowed by an empty grant

    async with ActorSystem() as system:
        ticker = await system.start(Ticker, name="ticker")
        sink = await system.start(Sink, name="sink")
        await ticker.tell(Note("again"))  # from outside any actor: never restricted
        await sink.tell(Note("outside"))
        await settle()
        assert ticker.stats().processed == 2
        with pytest.raises(MessageCapabilityError):
            await ticker.ask(Forward(sink, "no"))


async def test_the_running_actor_is_the_sender_not_the_inline_asker() -> None:
    # An ask to an idle actor runs its handler inline, in the asker's task: what that handler
    # sends must still be checked against the *handler's* class, in both directions.
    async with ActorSystem() as system:
        restricted = await system.start(ToReviewers, name="restricted")
        relay = await system.start(ReviewerRelay, name="relay")  # unrestricted, role reviewer
        coder = await system.start(Coder, name="coder")
        # restricted -> relay (allowed) -> coder: the relay is unrestricted, so this goes.
        await restricted.ask(Via(relay, Forward(coder, "relayed")))
        # relay (outside caller) -> restricted -> coder: refused, as restricted is the sender.
        with pytest.raises(MessageCapabilityError) as info:
            await relay.ask(Via(restricted, Forward(coder, "smuggled")))
        assert info.value.sender == "/restricted"
        await settle()
        assert coder.stats().processed == 1


async def test_grant_is_checked_after_the_handler_suspends() -> None:
    async with ActorSystem() as system:
        sender = await system.start(ToReviewers, name="arch")
        reviewer = await system.start(Reviewer, name="rev")
        coder = await system.start(Coder, name="cod")
        assert await sender.ask(Forward(reviewer, "a", ask=True, suspend_first=True)) == 1
        with pytest.raises(MessageCapabilityError):
            await sender.ask(Forward(coder, "b", suspend_first=True))
        # A queued (not inline) message that suspends: served by the actor's task.
        await sender.tell(Forward(reviewer, "c", suspend_first=True))
        await sender.tell(Forward(coder, "d", suspend_first=True))
        await settle()
        assert reviewer.stats().processed == 2
        assert coder.stats().processed == 0


async def test_grant_is_checked_with_tracing_on() -> None:
    provider = TracerProvider()
    async with ActorSystem(tracing=Tracing(provider=provider)) as system:
        assert system.is_tracing
        sender = await system.start(ToReviewers, name="arch")
        reviewer = await system.start(Reviewer, name="rev")
        coder = await system.start(Coder, name="cod")
        assert await sender.ask(Forward(reviewer, "a", ask=True, suspend_first=True)) == 1
        with pytest.raises(MessageCapabilityError):
            await sender.ask(Forward(coder, "b", suspend_first=True))
        await settle()
        assert coder.stats().processed == 0
    provider.shutdown()


async def test_sends_from_on_start_are_checked() -> None:
    class Eager(Actor, may_message=("reviewer",)):
        def __init__(self, target: ActorRef[Any]) -> None:
            self.target = target

        async def on_start(self) -> None:
            await self.target.tell(Note("hello"))

    async with ActorSystem() as system:
        reviewer = await system.start(Reviewer, name="rev")
        coder = await system.start(Coder, name="cod")
        await system.start(Eager, reviewer, name="eager-ok")
        with pytest.raises(MessageCapabilityError):
            await system.start(Eager, coder, name="eager-bad")
        assert system.lookup("eager-bad") is None
        await settle()
        assert reviewer.stats().processed == 1
        assert coder.stats().processed == 0


async def test_virtual_targets_are_checked_before_activation() -> None:
    async with ActorSystem() as system:
        sender = await system.start(ToReviewers, name="arch")
        allowed = system.virtual(Reviewer, "r1")
        refused = system.virtual(Coder, "c1")
        await sender.ask(Forward(allowed, "ok"))
        with pytest.raises(MessageCapabilityError) as info:
            await sender.ask(Forward(refused, "no"))
        assert info.value.actor == "/Coder:c1"
        with pytest.raises(MessageCapabilityError):
            await sender.ask(Forward(refused, "no", ask=True))
        await settle()
        stats = system.virtual_stats()
        assert stats.activations == 1  # only the reviewer was activated
        assert not refused.is_active


async def test_bad_declarations_are_refused_at_class_definition() -> None:
    with pytest.raises(TypeError, match="may_message must be a tuple"):

        class OneString(Actor, may_message="reviewer"):
            pass

    with pytest.raises(TypeError, match="not a role name"):

        class BadEntry(Actor, may_message=("a role",)):
            pass

    with pytest.raises(TypeError) as info:

        class NotActor(Actor, may_message=(int,)):
            pass

    assert str(info.value) == (
        "test_bad_declarations_are_refused_at_class_definition.<locals>.NotActor: may_message "
        "entry <class 'int'> is not a role name (letters, digits, _ or -), an Actor subclass, "
        "or a '/path' pattern"
    )

    with pytest.raises(ValueError, match="role must be"):

        class BadRole(Actor, role="has space"):
            pass


async def test_roles_default_to_the_class_name_and_inherit_when_explicit() -> None:
    class PlainWorker(Actor):
        pass

    class SpecialReviewer(Reviewer):
        pass

    assert PlainWorker.role == "plainworker"
    assert SpecialReviewer.role == "reviewer"
    assert Actor.message_grant is None
    grant = MessageGrant.parse("X", ("reviewer", Coder, "/a/*"), Actor)
    assert grant.allows(SpecialReviewer, "/zzz")
    assert grant.allows(Coder, "/zzz")
    assert grant.allows(PlainWorker, "/a/b/c")
    assert not grant.allows(PlainWorker, "/b")


async def test_remote_targets_are_allowed_by_role_class_name_or_path() -> None:
    """``allows_remote``: a target on another node, known by role, class names and path."""

    class SeniorCoder(Coder):
        pass

    # Named by module:qualname, the class first, down to (not including) Actor itself.
    assert class_names(SeniorCoder) == tuple(
        f"{__name__}:{name}"
        for name in (
            SeniorCoder.__qualname__,
            Coder.__qualname__,
            Sink.__qualname__,
        )
    )
    by_class = MessageGrant.parse("X", (Coder,), Actor)
    # A class grant covers the class and its subclasses, by name, whatever their role.
    assert by_class.allows_remote("other", class_names(Coder), "/zzz")
    assert by_class.allows_remote("other", class_names(SeniorCoder), "/zzz")
    assert not by_class.allows_remote("coder", class_names(Reviewer), "/zzz")
    assert not by_class.allows_remote("other", (), "/zzz")
    by_role = MessageGrant.parse("X", ("reviewer",), Actor)
    assert by_role.allows_remote("reviewer", (), "/zzz")
    assert not by_role.allows_remote("coder", class_names(Coder), "/zzz")
    by_path = MessageGrant.parse("X", ("/pool-*",), Actor)
    assert by_path.allows_remote("other", (), "/pool-7")
    assert not by_path.allows_remote("other", class_names(Coder), "/coder-1")
    # Every actor class derives from Actor: naming it grants everything, here as locally.
    anyone = MessageGrant.parse("X", (Actor,), Actor)
    assert anyone.allows(Coder, "/zzz")
    assert anyone.allows_remote("other", class_names(Coder), "/zzz")
    assert anyone.allows_remote("other", (), "/zzz")
    nothing = MessageGrant.parse("X", (), Actor)
    assert not nothing.allows_remote("coder", class_names(Coder), "/pool-7")
