"""Recording every model call as a ``ModelCall`` event, and replaying a run from those events.

``RecordingBrain`` wraps any brain and appends one ``ModelCall`` event per call to a
``Journal`` (answers and errors alike), the request's canonical bytes and the answer's text
stored once in a ``BlobStore`` and referenced by digest. ``ReplayBrain`` reads those events
back and answers each request by its digest, in the order the answers were recorded: a replayed
run makes no model call at all, and a request that was never recorded is a ``ReplayMissError``.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from collections.abc import Mapping, Sequence

from swarm_actors._events._blobs import BlobStore
from swarm_actors._events._journal import Journal
from swarm_actors._events._schema import ModelCall, new_event
from swarm_actors._exceptions import BrainError, ReplayMissError
from swarm_actors.brains._types import Brain, BrainRequest, BrainResponse, Usage

__all__ = ["RecordingBrain", "ReplayBrain", "model_call_of"]

PREVIEW_CHARS = 200


def _type_name(exc: BaseException) -> str:
    kind = type(exc)
    return f"{kind.__module__}.{kind.__qualname__}"


def model_call_of(
    request: BrainRequest,
    response: BrainResponse | None,
    *,
    provider: str,
    error: BrainError | None = None,
    prompt_ref: str = "",
    response_ref: str = "",
    latency_ns: int = 0,
) -> ModelCall:
    """The ``ModelCall`` payload describing one call (its answer, or its error)."""
    if response is None:
        return ModelCall(
            provider=provider,
            model=request.model,
            request_digest=request.digest(),
            prompt_ref=prompt_ref,
            prompt_preview=request.last_user[:PREVIEW_CHARS],
            latency_ns=latency_ns,
            attempts=1,
            error_type=_type_name(error) if error is not None else "",
            error_message=str(error) if error is not None else "",
        )
    return ModelCall(
        provider=response.provider or provider,
        model=response.model or request.model,
        request_digest=request.digest(),
        prompt_ref=prompt_ref,
        response_ref=response_ref,
        prompt_preview=request.last_user[:PREVIEW_CHARS],
        response_preview=response.text[:PREVIEW_CHARS],
        tokens_in=response.usage.prompt_tokens,
        tokens_out=response.usage.completion_tokens,
        latency_ns=response.latency_ns or latency_ns,
        cache_hit=response.cache_hit,
        attempts=response.attempts,
        cost=response.cost,
        speculative=response.speculative,
        winner=response.speculative,
        finish_reason=response.finish_reason,
    )


class RecordingBrain:
    """Wraps a brain and journals every call it answers or fails as a ``ModelCall`` event.

    Events go to ``journal`` as ``agent_role`` / ``agent_id`` (default ``brain:<provider>``)
    with their own sequence from 1 (one recorder per agent id), and ``run_id``. The request's
    canonical bytes and the answer's text are put into ``blobs`` (default: a store in memory).
    A call that is cancelled is not recorded: it neither answered nor failed.

    Where it sits decides what it sees: around a ``GuardedBrain`` it records what the
    guardrails did (cache hits, attempts, cost) and the request as asked; inside one, only
    the calls that reached the model, with the request as sent (compressed). Replay through
    the same layering: a ``ReplayBrain`` matches requests by the digest recorded.
    """

    def __init__(
        self,
        brain: Brain,
        journal: Journal,
        *,
        blobs: BlobStore | None = None,
        agent_role: str = "brain",
        agent_id: str | None = None,
        run_id: str = "",
    ) -> None:
        self._brain = brain
        self._journal = journal
        self.blobs = blobs if blobs is not None else BlobStore()
        """Where prompts and answers are stored."""
        self._role = agent_role
        self._id = agent_id or f"brain:{brain.provider}"
        self._run = run_id
        self._sequence = 0

    @property
    def provider(self) -> str:
        """The wrapped brain's provider."""
        return self._brain.provider

    async def _put(self, data: bytes) -> str:
        if self.blobs.root is None:
            return self.blobs.put(data)
        return await asyncio.to_thread(self.blobs.put, data)

    async def complete(self, request: BrainRequest) -> BrainResponse:
        """The wrapped brain's answer, journalled (as is a ``BrainError``) before it returns."""
        started = time.perf_counter_ns()
        try:
            response = await self._brain.complete(request)
        except BrainError as exc:
            prompt_ref = await self._put(request.canonical())
            call = model_call_of(
                request,
                None,
                provider=self.provider,
                error=exc,
                prompt_ref=prompt_ref,
                latency_ns=time.perf_counter_ns() - started,
            )
            await self._append(call)
            raise
        prompt_ref = await self._put(request.canonical())
        response_ref = await self._put(response.text.encode())
        call = model_call_of(
            request,
            response,
            provider=self.provider,
            prompt_ref=prompt_ref,
            response_ref=response_ref,
            latency_ns=time.perf_counter_ns() - started,
        )
        await self._append(call)
        return response

    async def _append(self, call: ModelCall) -> None:
        self._sequence += 1
        event = new_event(
            call,
            agent_role=self._role,
            agent_id=self._id,
            sequence=self._sequence,
            run_id=self._run,
        )
        await self._journal.append(event)


class ReplayBrain:
    """Answers from recorded ``ModelCall`` events: a replayed run calls no model.

    Each request is answered by its digest with the answers recorded for it, in recorded
    order (the last one again once they are used up). A request never recorded (or recorded
    only as an error) raises ``ReplayMissError``. Build it with ``from_journal``.
    ``calls`` counts the requests it answered.
    """

    def __init__(self, answers: Mapping[str, Sequence[BrainResponse]]) -> None:
        self._answers = {digest: deque(found) for digest, found in answers.items() if found}
        self.calls = 0
        """Requests answered."""

    @property
    def provider(self) -> str:
        """``"replay"``."""
        return "replay"

    @property
    def recorded(self) -> int:
        """Distinct requests it can answer."""
        return len(self._answers)

    @classmethod
    async def from_journal(
        cls,
        journal: Journal,
        blobs: BlobStore,
        *,
        run_id: str | None = None,
        agent_role: str = "*",
    ) -> ReplayBrain:
        """A replay of the ``ModelCall`` events in ``journal`` (of ``run_id`` when given).

        Answers' texts are read from ``blobs`` (``BlobNotFoundError`` if one is missing,
        ``BlobCorruptError`` if it was altered).
        """
        answers: dict[str, list[BrainResponse]] = defaultdict(list)
        async for entry in journal.read(subject=f"swarm.events.{agent_role}.model_call"):
            event = entry.event
            call = event.payload
            if not isinstance(call, ModelCall) or call.error_type:
                continue
            if run_id is not None and event.run_id != run_id:
                continue
            text = (
                blobs.get(call.response_ref).decode()
                if call.response_ref
                else call.response_preview
            )
            answers[call.request_digest].append(
                BrainResponse(
                    text=text,
                    usage=Usage(call.tokens_in, call.tokens_out),
                    finish_reason=call.finish_reason or "stop",
                    model=call.model,
                    provider="replay",
                    attempts=0,
                    cost=call.cost,
                )
            )
        return cls(answers)

    async def complete(self, request: BrainRequest) -> BrainResponse:
        """The recorded answer to ``request``; ``ReplayMissError`` if there is none."""
        digest = request.digest()
        found = self._answers.get(digest)
        if found is None:
            raise ReplayMissError(
                f"request {digest[:12]}... was never recorded (it asked "
                f"{request.last_user[:80]!r}); a replay answers only what the run asked",
                digest=digest,
            )
        self.calls += 1
        return found.popleft() if len(found) > 1 else found[0]
