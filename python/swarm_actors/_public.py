"""How the public facades name what they export: the public module, still introspectable.

Tracebacks, reprs and pickles should name ``swarm_actors.errors.ActorDeadError``, not the
private module that defines it (httpx and trio rewrite ``__module__`` the same way). But
``typing.get_type_hints`` and msgspec resolve a class's postponed (string) annotations in the
module that ``__module__`` names, and a facade does not hold the defining module's names
(``Annotated``, ``Literal``, the field types...): a msgspec ``Struct`` renamed carelessly can
no longer be decoded. So each class's own string annotations are evaluated first, in its
defining module, and stored as the objects they name; only then is ``__module__`` changed.
An annotation naming something imported only for type checking stays a string (it could not
be resolved before either).
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

__all__ = ["publish"]


def _resolve_annotations(cls: type) -> None:
    # The class's own dict, changed in place (``inspect.get_annotations`` returns a copy).
    annotations = vars(cls).get("__annotations__")
    if not annotations:
        return
    module = sys.modules.get(cls.__module__)
    if module is None:  # pragma: no cover - a class always outlives its module's import
        return
    scope = dict(vars(cls))
    for key, value in list(annotations.items()):
        if isinstance(value, str):
            with contextlib.suppress(NameError):  # a name imported only under TYPE_CHECKING
                annotations[key] = eval(value, vars(module), scope)


def publish(module: str, *objects: Any) -> None:
    """Make each class or function report ``module`` (a public module that exports it)."""
    for obj in objects:
        if isinstance(obj, type):
            _resolve_annotations(obj)
        obj.__module__ = module
