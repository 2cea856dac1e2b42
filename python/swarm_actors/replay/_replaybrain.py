"""``RunReplayBrain``: a run's recorded model answers, served again with no model call.

Built from a run's ``ModelCall`` events and its blob store (the request's canonical bytes and
the answer's text are there, by digest), so a replay needs nothing but the run's directory.

A request is matched first by its exact digest (what ``ReplayBrain`` does). A re-executed
swarm does not always ask byte for byte the same: the test output a reviewer shows its brain
holds timings, and coders working side by side may see a file's other fixes in another order.
So a request that was not recorded exactly is matched by its subject: the ``task`` and
``item`` of the JSON object the roles ask with (``swarm.plan``; ``swarm.review`` of one file
and rules). Answers of one key are served in recorded order, the last one again once used
up. A request matching neither raises ``ReplayMissError``: a replay never falls back on a
model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from swarm_actors.brains import BrainRequest, BrainResponse, Usage
from swarm_actors.errors import BlobError, ReplayMissError
from swarm_actors.events import BlobStore, ModelCall, SwarmEvent

__all__ = ["RunReplayBrain", "request_subject"]


def request_subject(last_user: str) -> str | None:
    """The subject of a request whose last user message is a JSON task, else ``None``."""
    if not last_user.startswith("{"):
        return None
    try:
        body = json.loads(last_user)
    except ValueError:
        return None
    if not isinstance(body, dict) or not isinstance(body.get("task"), str):
        return None
    return json.dumps({"task": body["task"], "item": body.get("item")}, sort_keys=True)


class _Request(msgspec.Struct):
    messages: list[tuple[str, str]]


@dataclass
class _Answer:
    response: BrainResponse
    used: bool = False


@dataclass
class _Queue:
    answers: list[_Answer] = field(default_factory=list)

    def take(self) -> _Answer | None:
        for answer in self.answers:
            if not answer.used:
                return answer
        return self.answers[-1] if self.answers else None


class RunReplayBrain:
    """Answers from a run's recorded ``ModelCall`` events (see the module docstring).

    ``calls`` counts the requests answered, ``exact`` those matched by digest.
    """

    def __init__(self) -> None:
        self._by_digest: dict[str, _Queue] = {}
        self._by_subject: dict[str, _Queue] = {}
        self.calls = 0
        """Requests answered."""
        self.exact = 0
        """Of those, the ones matched by their exact digest."""

    @property
    def provider(self) -> str:
        """``"replay"``."""
        return "replay"

    @property
    def recorded(self) -> int:
        """Answers it holds."""
        return sum(len(q.answers) for q in self._by_digest.values())

    @classmethod
    def from_events(cls, events: Iterable[SwarmEvent], blobs: BlobStore) -> RunReplayBrain:
        """The answers of the ``ModelCall`` events among ``events`` (errors are left out).

        Raises ``BlobNotFoundError`` / ``BlobCorruptError`` for a missing or altered answer.
        """
        brain = cls()
        for event in events:
            call = event.payload
            if not isinstance(call, ModelCall) or call.error_type or not call.response_ref:
                continue
            answer = _Answer(
                BrainResponse(
                    text=blobs.get(call.response_ref).decode(),
                    usage=Usage(call.tokens_in, call.tokens_out),
                    finish_reason=call.finish_reason or "stop",
                    model=call.model,
                    provider="replay",
                    attempts=0,
                    cost=call.cost,
                )
            )
            brain._by_digest.setdefault(call.request_digest, _Queue()).answers.append(answer)
            subject = _subject_of(call, blobs)
            if subject is not None:
                brain._by_subject.setdefault(subject, _Queue()).answers.append(answer)
        return brain

    async def complete(self, request: BrainRequest) -> BrainResponse:
        """The recorded answer to ``request``; ``ReplayMissError`` if there is none."""
        digest = request.digest()
        queue = self._by_digest.get(digest)
        answer = queue.take() if queue is not None else None
        if answer is not None:
            self.exact += 1
        else:
            subject = request_subject(request.last_user)
            queue = self._by_subject.get(subject) if subject is not None else None
            answer = queue.take() if queue is not None else None
        if answer is None:
            raise ReplayMissError(
                f"request {digest[:12]}... was never recorded (it asked "
                f"{request.last_user[:80]!r}); a replay answers only what the run asked",
                digest=digest,
            )
        answer.used = True
        self.calls += 1
        return answer.response


def _subject_of(call: ModelCall, blobs: BlobStore) -> str | None:
    if not call.prompt_ref:
        return request_subject(call.prompt_preview)
    try:
        request = msgspec.json.decode(blobs.get(call.prompt_ref), type=_Request)
    except (BlobError, msgspec.DecodeError):
        return None
    users = [content for role, content in request.messages if role == "user"]
    return request_subject(users[-1]) if users else None
