"""Message capabilities: which actors an actor class may send to (the seed design's hookwall).

An actor class declares its grant with the ``may_message`` class keyword; every ``tell``,
``tell_nowait`` and ``ask`` made while one of its handlers (or ``on_start`` / ``on_stop``) runs
is checked against it *before* anything is enqueued, so a refused send has no effect at all.

The sender is known through a context variable the engine sets while it runs an actor's code
(``CURRENT_SENDER``); its cell carries its class's grant (``Cell.grant``). A send is checked
only when the running actor has a grant (``checks_sends``): enforcement belongs to the sender,
so nothing is shared between two systems in a process, and a sender without a grant (or code
outside any actor) pays one context-variable read per send.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from swarm_actors._exceptions import MessageCapabilityError

if TYPE_CHECKING:
    from swarm_actors._core._actor import Actor
    from swarm_actors._core._cell import Cell

__all__ = [
    "CURRENT_SENDER",
    "MessageGrant",
    "check_send",
    "check_send_remote",
    "checks_sends",
    "current_sender",
    "valid_role",
]

CURRENT_SENDER: ContextVar[Cell | None] = ContextVar("swarm_actors_sender", default=None)
"""The cell whose code is running (``None`` outside any actor)."""

current_sender = CURRENT_SENDER.get
"""``CURRENT_SENDER.get``, bound once: called as a global it costs about 400 instructions less
than ``CURRENT_SENDER.get()`` per call on CPython 3.11 (callgrind, ``bench/RESULTS.md``); every
send reads it."""


def checks_sends() -> bool:
    """Whether the running actor's sends are checked: it has a ``may_message`` grant."""
    sender = current_sender()
    return sender is not None and sender.grant is not None


_ROLE = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")


def valid_role(role: object) -> bool:
    """Whether ``role`` is a usable role name: 1-64 letters, digits, ``_`` or ``-``.

    Roles become NATS subject tokens in event subjects, hence the narrow alphabet.
    """
    return isinstance(role, str) and _ROLE.match(role) is not None


@dataclass(frozen=True, slots=True)
class MessageGrant:
    """The actors one actor class may message: by role, by class, or by path pattern.

    Built from the ``may_message`` class keyword, whose entries are:

    * a role name (``"reviewer"``): any actor whose class has that ``role``;
    * an ``Actor`` subclass: instances of it and of its subclasses;
    * a path pattern starting with ``/`` (``"/architect"``, ``"/pool/*"``): actor paths matched
      with shell-style wildcards (``fnmatch``; ``*`` also crosses ``/``).

    An actor may always message itself (timers, self-tells). An empty grant allows nothing else.
    """

    roles: frozenset[str]
    classes: tuple[type[Actor], ...]
    paths: tuple[str, ...]
    every_actor: bool = False
    """``Actor`` itself is among ``classes``: every actor may be messaged."""

    @classmethod
    def parse(cls, owner: str, spec: Iterable[Any], base: type[Actor]) -> MessageGrant:
        """Build a grant from a ``may_message`` value; ``TypeError`` names a bad entry.

        ``base`` is ``Actor`` itself (passed in by the class being defined: this module sits
        below ``_actor`` and does not import it).
        """
        if isinstance(spec, (str, bytes)) or not isinstance(spec, Iterable):
            raise TypeError(
                f"{owner}: may_message must be a tuple of roles, Actor classes or '/path' "
                f'patterns, e.g. may_message=("reviewer",), got {spec!r}'
            )
        roles: set[str] = set()
        classes: list[type[Actor]] = []
        paths: list[str] = []
        for entry in spec:
            if isinstance(entry, type) and issubclass(entry, base):
                classes.append(entry)
            elif isinstance(entry, str) and entry.startswith("/"):
                paths.append(entry)
            elif valid_role(entry):
                roles.add(entry)
            else:
                raise TypeError(
                    f"{owner}: may_message entry {entry!r} is not a role name "
                    "(letters, digits, _ or -), an Actor subclass, or a '/path' pattern"
                )
        return cls(frozenset(roles), tuple(classes), tuple(paths), base in classes)

    def allows(self, target_class: type[Actor], target_path: str) -> bool:
        """Whether the actor of class ``target_class`` at ``target_path`` may be messaged."""
        if target_class.role in self.roles:
            return True
        if self.classes and issubclass(target_class, self.classes):
            return True
        return any(fnmatch.fnmatchcase(target_path, pattern) for pattern in self.paths)

    def allows_remote(self, role: str, classes: tuple[str, ...], path: str) -> bool:
        """``allows`` for an actor on another node, known by its role, class names and path.

        ``classes`` are the ``module:qualname`` of the target's class and its ``Actor``
        ancestors, so a grant naming a class also covers remote instances of its subclasses
        (``Actor`` itself, which ``classes`` leaves out, covers every actor, as ``allows`` does).
        """
        if role in self.roles:
            return True
        if self.every_actor:
            return True
        if self.classes and not {class_name(c) for c in self.classes}.isdisjoint(classes):
            return True
        return any(fnmatch.fnmatchcase(path, pattern) for pattern in self.paths)


def class_name(cls: type) -> str:
    """``module:qualname`` of a class (how remote capability checks name actor classes)."""
    return f"{cls.__module__}:{cls.__qualname__}"


def check_send(target_class: type[Actor], target_path: str) -> None:
    """Raise ``MessageCapabilityError`` if the running actor may not message the target.

    Outside any actor, or from an actor without a grant, every send is allowed.
    """
    sender = CURRENT_SENDER.get()
    if sender is None:
        return
    grant = sender.actor_class.message_grant
    if grant is None or sender.path == target_path or grant.allows(target_class, target_path):
        return
    raise MessageCapabilityError(
        f"{sender.actor_class.__qualname__} ({sender.path}) may not message {target_path} "
        f"(role {target_class.role!r}); its may_message grant does not include it",
        actor=target_path,
        sender=sender.path,
    )


def check_send_remote(role: str, classes: tuple[str, ...], path: str, node: str) -> None:
    """``check_send`` for a target on another node (``node``), known by role, classes and path.

    A remote actor is never the sender itself, so the self-message exemption does not apply.
    """
    sender = CURRENT_SENDER.get()
    if sender is None:
        return
    grant = sender.actor_class.message_grant
    if grant is None or grant.allows_remote(role, classes, path):
        return
    raise MessageCapabilityError(
        f"{sender.actor_class.__qualname__} ({sender.path}) may not message {path} on node "
        f"{node} (role {role!r}); its may_message grant does not include it",
        actor=path,
        sender=sender.path,
    )
