"""A scripted brain for tests: ordered answers; a failure when script and code disagree."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeAlias

from swarm_actors._exceptions import BrainError, ScriptError
from swarm_actors.brains._types import BrainRequest, BrainResponse, Usage, estimate_tokens

__all__ = ["ScriptedBrain", "Step"]

Step: TypeAlias = "str | BrainResponse | BrainError | Callable[[BrainRequest], str | BrainResponse]"
"""One scripted answer: its text, a whole response, an error to raise, or a function of the
request that returns either of the first two."""


class ScriptedBrain:
    """Answers from a script, in order: one step per call.

    A step is a text, a ``BrainResponse``, a ``BrainError`` to raise, or a function of the
    request. ``expect`` (one substring per step, ``None`` for any) checks what each call asks:
    one of its messages must contain it. A call past the end
    of the script, or one that does not contain what its step expects, raises ``ScriptError``
    (an ``AssertionError``: the test fails there). ``verify()`` raises ``ScriptError`` if a step
    was left unused; ``with`` / ``async with`` the brain to verify on leaving. ``requests`` holds
    every request it was asked, in order.
    """

    def __init__(
        self,
        steps: Iterable[Step],
        *,
        expect: Iterable[str | None] | None = None,
        provider: str = "scripted",
    ) -> None:
        self._steps = list(steps)
        self._expect = list(expect) if expect is not None else [None] * len(self._steps)
        if len(self._expect) != len(self._steps):
            raise ScriptError(
                f"expect= has {len(self._expect)} entries for {len(self._steps)} steps"
            )
        self._next = 0
        self._provider = provider
        self.requests: list[BrainRequest] = []
        """Every request the brain was asked, in order."""

    @property
    def provider(self) -> str:
        """``"scripted"`` unless given."""
        return self._provider

    @property
    def remaining(self) -> int:
        """Steps not used yet."""
        return len(self._steps) - self._next

    async def complete(self, request: BrainRequest) -> BrainResponse:
        """The next step's answer (or error)."""
        self.requests.append(request)
        index = self._next
        if index >= len(self._steps):
            raise ScriptError(
                f"call {index + 1} of a script of {len(self._steps)} steps; it asked: "
                f"{request.last_user[:120]!r}"
            )
        self._next += 1
        wanted = self._expect[index]
        if wanted is not None and not any(wanted in m.content for m in request.messages):
            raise ScriptError(
                f"step {index + 1} expected a request containing {wanted!r}; it asked: "
                f"{request.last_user[:120]!r}"
            )
        step = self._steps[index]
        if isinstance(step, BrainError):
            raise step
        answer = step(request) if callable(step) else step
        if isinstance(answer, BrainResponse):
            return answer
        prompt = sum(estimate_tokens(m.content) for m in request.messages)
        return BrainResponse(
            text=answer,
            usage=Usage(prompt, estimate_tokens(answer)),
            model=request.model or "scripted",
            provider=self._provider,
        )

    def verify(self) -> None:
        """Raise ``ScriptError`` if a scripted step was not used."""
        if self.remaining:
            raise ScriptError(
                f"{self.remaining} of {len(self._steps)} scripted steps were never used "
                f"(the code asked {self._next} times)"
            )

    def __enter__(self) -> ScriptedBrain:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if kind is None:
            self.verify()

    async def __aenter__(self) -> ScriptedBrain:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if kind is None:
            self.verify()
