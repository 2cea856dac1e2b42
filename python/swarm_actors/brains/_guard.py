"""The guardrails around every model call: cache, retries, circuit breaker, limiter, budget.

``GuardedBrain`` wraps a brain. A call goes: context compression (``ContextCompressor``, if
given) -> response cache (keyed by the request's digest; a hit returns at once, free) ->
budget (refused if spent, or if the request would overrun it) -> circuit breaker of the
provider (open: ``CircuitOpenError``, no call) -> rate limiter (requests and estimated
tokens; shared by every agent of a swarm) -> the call, retried with exponential backoff and
full jitter (tenacity's ``wait_random_exponential``) for retryable failures only, honouring
``Retry-After`` -> usage charged to the budget, answer cached.

What is hand-written and why: the LRU+TTL cache (an ``OrderedDict`` is the whole of it, and
the hit path must stay under 20 µs), the circuit breaker (no maintained asyncio breaker
library; the state machine is 40 lines), the budget. Retries use tenacity: it has full jitter
and lets a wait function read ``Retry-After`` from the error; stamina's jitter is additive,
not full.
"""

from __future__ import annotations

import enum
import os
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import msgspec
import tenacity

from swarm_actors._exceptions import (
    BrainError,
    BrainHTTPError,
    BudgetExceededError,
    CircuitOpenError,
    InvalidArgumentError,
)
from swarm_actors._log import get_logger
from swarm_actors.brains._compress import ContextCompressor
from swarm_actors.brains._limiter import RateLimiter
from swarm_actors.brains._types import Brain, BrainRequest, BrainResponse, estimate_tokens

__all__ = [
    "BreakerState",
    "Budget",
    "BudgetSummary",
    "CircuitBreaker",
    "GuardedBrain",
    "Price",
    "ResponseCache",
    "RetryPolicy",
]

log = get_logger("swarm_actors.brains")


# --- response cache -----------------------------------------------------------------------


class _Entry(msgspec.Struct, array_like=True):
    stored: float  # wall-clock seconds (shared by processes through the directory)
    response: BrainResponse


_entry_codec = msgspec.msgpack.Encoder()
_entry_decoder = msgspec.msgpack.Decoder(_Entry)


class ResponseCache:
    """Answers by request digest: LRU with a time to live, optionally persistent.

    At most ``max_entries`` in memory (least recently used evicted first); an entry older
    than ``ttl`` seconds is a miss. With ``directory`` every answer is also written there
    (atomically, one file per digest) and a memory miss reads it back, so a cache outlives
    its process and is shared by processes on one machine. ``hits`` and ``misses`` count.
    """

    def __init__(
        self,
        *,
        max_entries: int = 1024,
        ttl: float = 3600.0,
        directory: str | os.PathLike[str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_entries < 1 or ttl <= 0:
            raise InvalidArgumentError("ResponseCache needs max_entries >= 1 and ttl > 0")
        self._max = max_entries
        self._ttl = ttl
        self._clock = clock
        self._items: OrderedDict[str, _Entry] = OrderedDict()
        self._dir = None if directory is None else Path(directory)
        if self._dir is not None:
            self._dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.hits = 0
        """Lookups answered."""
        self.misses = 0
        """Lookups not answered (absent or expired)."""

    def __len__(self) -> int:
        return len(self._items)

    def get(self, digest: str) -> BrainResponse | None:
        """The cached answer for ``digest``, or ``None``."""
        entry = self._items.get(digest)
        if entry is None and self._dir is not None:
            entry = self._load(digest)
        if entry is None or self._clock() - entry.stored > self._ttl:
            if entry is not None:
                self._items.pop(digest, None)
            self.misses += 1
            return None
        with self._lock:
            self._items[digest] = entry
            self._items.move_to_end(digest)
        self.hits += 1
        return entry.response

    def put(self, digest: str, response: BrainResponse) -> None:
        """Cache ``response`` as the answer for ``digest``."""
        entry = _Entry(self._clock(), response)
        with self._lock:
            self._items[digest] = entry
            self._items.move_to_end(digest)
            while len(self._items) > self._max:
                self._items.popitem(last=False)
        if self._dir is not None:
            self._store(digest, entry)

    def _path(self, digest: str) -> Path:
        assert self._dir is not None
        return self._dir / f"{digest}.msgpack"

    def _load(self, digest: str) -> _Entry | None:
        try:
            return _entry_decoder.decode(self._path(digest).read_bytes())
        except (OSError, msgspec.DecodeError):  # absent, or damaged: a miss either way
            return None

    def _store(self, digest: str, entry: _Entry) -> None:
        path = self._path(digest)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(_entry_codec.encode(entry))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


# --- circuit breaker ----------------------------------------------------------------------


class BreakerState(enum.Enum):
    """A circuit breaker's state."""

    CLOSED = "closed"
    """Calls go through; consecutive failures are counted."""
    OPEN = "open"
    """Calls are refused (``CircuitOpenError``) until the cooldown ends."""
    HALF_OPEN = "half_open"
    """One probe call goes through: success closes the breaker, failure opens it again."""


class CircuitBreaker:
    """Per-provider circuit breakers: closed, open, half-open.

    ``failure_threshold`` consecutive failures of a provider open its breaker for ``cooldown``
    seconds; then one probe call is let through (half-open): its success closes the breaker,
    its failure opens it again. Only failures that say the provider is unwell count (5xx,
    connection errors, timeouts): a 4xx, a 429 or a bad request does not. Share one instance
    among the brains that call the same providers.
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1 or cooldown <= 0:
            raise InvalidArgumentError("CircuitBreaker needs failure_threshold >= 1, cooldown > 0")
        self._threshold = failure_threshold
        self._cooldown = cooldown
        self._clock = clock
        self._failures: dict[str, int] = {}
        self._opened: dict[str, float] = {}  # provider -> when it opened
        self._probing: set[str] = set()

    def state(self, provider: str) -> BreakerState:
        """The breaker's state for ``provider``."""
        opened = self._opened.get(provider)
        if opened is None:
            return BreakerState.CLOSED
        if provider in self._probing or self._clock() - opened >= self._cooldown:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def before_call(self, provider: str) -> None:
        """Admit a call to ``provider``, or raise ``CircuitOpenError``."""
        opened = self._opened.get(provider)
        if opened is None:
            return
        left = self._cooldown - (self._clock() - opened)
        if left > 0 or provider in self._probing:
            raise CircuitOpenError(
                f"the circuit breaker of {provider!r} is open after "
                f"{self._failures.get(provider, 0)} consecutive failures; "
                f"a probe call goes through in {max(left, 0.0):.1f} s",
                provider=provider,
                retry_after=max(left, 0.0),
            )
        self._probing.add(provider)  # half-open: this call is the probe

    def record_success(self, provider: str) -> None:
        """A call to ``provider`` succeeded: the breaker closes."""
        self._failures.pop(provider, None)
        self._opened.pop(provider, None)
        self._probing.discard(provider)

    def record_failure(self, provider: str) -> None:
        """A call to ``provider`` failed in a way that counts."""
        count = self._failures.get(provider, 0) + 1
        self._failures[provider] = count
        if provider in self._probing or count >= self._threshold:
            if provider not in self._opened or provider in self._probing:
                log.warning("circuit_open", provider=provider, failures=count)
            self._opened[provider] = self._clock()
            self._probing.discard(provider)

    def release(self, provider: str) -> None:
        """A probe call ended without a verdict (cancelled, or a failure that does not count)."""
        self._probing.discard(provider)


def _counts_for_breaker(exc: BaseException) -> bool:
    if not isinstance(exc, BrainError) or not exc.retryable:
        return False
    return not (isinstance(exc, BrainHTTPError) and exc.status == 429)


# --- retries ------------------------------------------------------------------------------


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Retries of retryable failures: exponential backoff with full jitter, ``Retry-After``.

    Attempt ``n`` (from 1) waits a random time in ``[0, min(max_wait, initial_wait * 2**(n-1))]``
    (full jitter), or what the provider's ``Retry-After`` asked if that is longer (capped at
    ``max_retry_after``). At most ``attempts`` requests and ``deadline`` seconds in all. A
    request that is not ``idempotent`` is retried only when it never reached the provider
    (a 429, a refused connection), never after a failure that may have done its work.
    """

    attempts: int = 4
    """Most requests per call (1: no retries)."""
    initial_wait: float = 0.5
    """The first backoff window, in seconds."""
    max_wait: float = 30.0
    """The largest backoff window."""
    max_retry_after: float = 60.0
    """The longest ``Retry-After`` honoured; a longer one ends the retries."""
    deadline: float = 120.0
    """Seconds after which no new attempt starts."""


def _may_retry(exc: BaseException, request: BrainRequest) -> bool:
    if not isinstance(exc, BrainError) or not exc.retryable:
        return False
    if request.idempotent:
        return True
    # Not idempotent: only failures that prove the provider did nothing.
    if isinstance(exc, BrainHTTPError):
        return exc.status == 429
    cause = exc.__cause__  # the transport's own error: httpx.ConnectError / ConnectTimeout
    return cause is not None and type(cause).__name__ in _NEVER_SENT


_NEVER_SENT = frozenset({"ConnectError", "ConnectTimeout", "ConnectionRefusedError"})


# --- budget -------------------------------------------------------------------------------


class Price(msgspec.Struct, frozen=True):
    """A model's price per million tokens in and out (any one currency)."""

    input_per_million: float
    """Price of a million prompt tokens."""
    output_per_million: float
    """Price of a million completion tokens."""

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        """The cost of a call."""
        return (tokens_in * self.input_per_million + tokens_out * self.output_per_million) / 1e6


class BudgetSummary(msgspec.Struct, frozen=True, kw_only=True):
    """What a run has used of its budget."""

    calls: int
    """Model calls charged (cache hits are free)."""
    tokens_in: int
    """Prompt tokens."""
    tokens_out: int
    """Completion tokens."""
    cost: float
    """Cost where prices are configured."""
    max_tokens: int | None
    """The token limit, if any."""
    max_cost: float | None
    """The cost limit, if any."""
    exhausted: bool
    """Whether a limit is reached: the next call is refused."""


class Budget:
    """A run's budget in tokens and, where ``prices`` (by model) are given, cost.

    Checked before every call through a ``GuardedBrain`` (cache hits are free and not checked):
    once a limit is reached, or when the
    prompt's estimated tokens plus its ``max_tokens`` would pass the token limit, the call is
    refused with ``BudgetExceededError`` carrying ``summary()``. The run ends at a call boundary
    (never in the middle of one). Share one ``Budget`` among the brains of a run.
    """

    def __init__(
        self,
        *,
        max_tokens: int | None = None,
        max_cost: float | None = None,
        prices: Mapping[str, Price] | None = None,
    ) -> None:
        if (max_tokens is not None and max_tokens < 0) or (max_cost is not None and max_cost < 0):
            raise InvalidArgumentError("budget limits must be >= 0")
        self.max_tokens = max_tokens
        """The token limit, or ``None``."""
        self.max_cost = max_cost
        """The cost limit, or ``None``."""
        self.prices = dict(prices or {})
        """Prices by model name."""
        self._calls = self._in = self._out = 0
        self._cost = 0.0

    def summary(self) -> BudgetSummary:
        """What has been used so far."""
        return BudgetSummary(
            calls=self._calls,
            tokens_in=self._in,
            tokens_out=self._out,
            cost=self._cost,
            max_tokens=self.max_tokens,
            max_cost=self.max_cost,
            exhausted=self._exhausted(0),
        )

    def _exhausted(self, more_tokens: int) -> bool:
        used = self._in + self._out
        if self.max_tokens is not None and used + more_tokens > self.max_tokens:
            return True
        if self.max_tokens is not None and used >= self.max_tokens:
            return True
        return self.max_cost is not None and self._cost >= self.max_cost

    def check(self, request: BrainRequest) -> None:
        """Refuse ``request`` with ``BudgetExceededError`` if the budget cannot pay for it."""
        estimate = sum(estimate_tokens(m.content) for m in request.messages)
        estimate += request.max_tokens or 0
        if self._exhausted(estimate):
            summary = self.summary()
            raise BudgetExceededError(
                f"the run's budget is spent: {summary.tokens_in + summary.tokens_out} of "
                f"{self.max_tokens} tokens, cost {summary.cost:.4f} of {self.max_cost}, "
                f"{summary.calls} calls; this call needs about {estimate} tokens",
                summary=summary,
            )

    def charge(self, response: BrainResponse, model: str) -> float:
        """Add a call's usage; its cost (0 without a price for ``model``)."""
        price = self.prices.get(response.model) or self.prices.get(model)
        cost = (
            price.cost(response.usage.prompt_tokens, response.usage.completion_tokens)
            if price
            else 0.0
        )
        self._calls += 1
        self._in += response.usage.prompt_tokens
        self._out += response.usage.completion_tokens
        self._cost += cost
        return cost


# --- the guarded brain ----------------------------------------------------------------------


class GuardedBrain:
    """A brain behind the guardrails: compression, cache, budget, breaker, limiter, retries.

    Every guardrail is optional except retries (``RetryPolicy()`` by default; pass
    ``RetryPolicy(attempts=1)`` for none). ``sleep`` is what waits between attempts (tests
    pass one that records the waits). The answer reports ``cache_hit``, ``attempts``,
    ``latency_ns`` and ``cost``.
    """

    def __init__(
        self,
        brain: Brain,
        *,
        cache: ResponseCache | None = None,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        limiter: RateLimiter | None = None,
        budget: Budget | None = None,
        compressor: ContextCompressor | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self._brain = brain
        self.cache = cache
        """The response cache, if any."""
        self.retry = retry or RetryPolicy()
        """The retry policy."""
        self.breaker = breaker
        """The circuit breaker, if any."""
        self.limiter = limiter
        """The rate limiter, if any."""
        self.budget = budget
        """The run's budget, if any."""
        self.compressor = compressor
        """The context compressor, if any."""
        self._sleep = sleep
        self._jitter = tenacity.wait_random_exponential(
            multiplier=self.retry.initial_wait, max=self.retry.max_wait
        )

    @property
    def provider(self) -> str:
        """The wrapped brain's provider."""
        return self._brain.provider

    async def complete(self, request: BrainRequest) -> BrainResponse:
        """The answer to ``request``, through every configured guardrail."""
        started = time.perf_counter_ns()
        if self.compressor is not None:
            request = self.compressor.compress(request)
        digest = request.digest() if self.cache is not None else ""
        if self.cache is not None:
            hit = self.cache.get(digest)
            if hit is not None:  # free: the budget is not asked
                return msgspec.structs.replace(
                    hit, cache_hit=True, attempts=0, latency_ns=0, cost=0.0
                )
        if self.budget is not None:
            self.budget.check(request)  # what will be sent: the compressed request
        response, attempts = await self._call(request)
        cost = self.budget.charge(response, request.model) if self.budget is not None else 0.0
        response = msgspec.structs.replace(
            response,
            attempts=attempts,
            latency_ns=time.perf_counter_ns() - started,
            cost=cost,
        )
        if self.cache is not None:
            self.cache.put(digest, response)
        return response

    async def _attempt(self, request: BrainRequest) -> BrainResponse:
        provider = self._brain.provider
        if self.breaker is not None:
            self.breaker.before_call(provider)
        try:
            if self.limiter is not None:
                tokens = sum(estimate_tokens(m.content) for m in request.messages)
                await self.limiter.acquire(tokens + (request.max_tokens or 0))
            response = await self._brain.complete(request)
        except BaseException as exc:
            if self.breaker is not None:
                if _counts_for_breaker(exc):
                    self.breaker.record_failure(provider)
                else:
                    self.breaker.release(provider)
            raise
        if self.breaker is not None:
            self.breaker.record_success(provider)
        return response

    def _wait(self, state: tenacity.RetryCallState) -> float:
        wait = self._jitter(state)
        exc = state.outcome.exception() if state.outcome is not None else None
        after = getattr(exc, "retry_after", None)
        if isinstance(exc, BrainHTTPError) and after is not None:
            wait = max(wait, after)
        return float(wait)

    async def _call(self, request: BrainRequest) -> tuple[BrainResponse, int]:
        policy = self.retry

        def retryable(exc: BaseException) -> bool:
            if not _may_retry(exc, request):
                return False
            after = getattr(exc, "retry_after", None)
            return not (isinstance(after, float) and after > policy.max_retry_after)

        # The first attempt runs outside tenacity: a call that succeeds (most do) does not pay
        # for building a retry loop (tenacity costs about 100 µs a call, mostly inspection).
        try:
            return await self._attempt(request), 1
        except BrainError as exc:
            if policy.attempts <= 1 or not retryable(exc):
                raise
            first: list[BaseException] = [exc]

        def log_retry(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            wait = state.next_action.sleep if state.next_action is not None else 0.0
            log.info(
                "model_call_retry",
                provider=self.provider,
                attempt=state.attempt_number,
                wait_s=round(wait, 3),
                error=repr(exc),
            )

        kwargs = {} if self._sleep is None else {"sleep": self._sleep}
        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(policy.attempts)
            | tenacity.stop_after_delay(policy.deadline),
            wait=self._wait,
            retry=tenacity.retry_if_exception(retryable),
            before_sleep=log_retry,
            reraise=True,
            **kwargs,  # type: ignore[arg-type]
        )
        attempts = 1
        async for attempt in retrying:
            with attempt:
                attempts = attempt.retry_state.attempt_number
                if first:  # tenacity's attempt 1 is the one already made: its error again
                    raise first.pop()
                response = await self._attempt(request)
        return response, attempts
