"""Every guardrail of GuardedBrain against the fake OpenAI server: real HTTP, counted requests."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from fake_openai import FakeOpenAI, Reply, fake_openai
from helpers import until
from swarm_actors.brains import (
    BrainRequest,
    BrainResponse,
    BreakerState,
    Budget,
    CircuitBreaker,
    ContextCompressor,
    GuardedBrain,
    LocalRateLimiter,
    OpenAIBrain,
    Price,
    RateLimits,
    ResponseCache,
    RetryPolicy,
    ScriptedBrain,
    SpeculativeBrain,
    estimate_tokens,
    system,
    user,
)
from swarm_actors.errors import (
    BrainConnectionError,
    BrainHTTPError,
    BrainInputTooLargeError,
    BrainRateLimitedError,
    BudgetExceededError,
    CircuitOpenError,
    InvalidArgumentError,
)


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with fake_openai() as state:
        yield state


@pytest_asyncio.fixture
async def http(server: FakeOpenAI) -> AsyncIterator[OpenAIBrain]:
    async with OpenAIBrain(base_url=server.url, api_key="k", model="m") as brain:
        yield brain


def ask(text: str = "hi", **kw: object) -> BrainRequest:
    return BrainRequest(messages=(system("Be brief."), user(text)), **kw)  # type: ignore[arg-type]


class Waits:
    """A sleep that records what it was asked to wait, and does not wait."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- cache ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_cache_answers_a_repeated_request_without_a_call(
    server: FakeOpenAI, http: OpenAIBrain
) -> None:
    cache = ResponseCache()
    brain = GuardedBrain(http, cache=cache)
    first = await brain.complete(ask("q"))
    again = await brain.complete(ask("q"))
    assert server.requests == 1
    assert (first.cache_hit, again.cache_hit, again.attempts, again.text) == (
        False,
        True,
        0,
        "hello",
    )
    await brain.complete(ask("q", temperature=0.5))  # another request: another digest
    assert server.requests == 2
    assert (cache.hits, cache.misses) == (1, 2)


@pytest.mark.asyncio
async def test_the_cache_expires_and_evicts(server: FakeOpenAI, http: OpenAIBrain) -> None:
    clock = Clock()
    cache = ResponseCache(max_entries=2, ttl=10, clock=clock)
    brain = GuardedBrain(http, cache=cache)
    for text in ("a", "b", "a", "c"):  # "b" is the least recently used when "c" arrives
        await brain.complete(ask(text))
    assert server.requests == 3
    await brain.complete(ask("b"))
    assert server.requests == 4  # evicted
    clock.now += 11
    await brain.complete(ask("c"))
    assert server.requests == 5  # expired
    assert len(cache) == 2
    with pytest.raises(InvalidArgumentError):
        ResponseCache(ttl=0)


@pytest.mark.asyncio
async def test_a_persistent_cache_outlives_its_instance(
    server: FakeOpenAI, http: OpenAIBrain, tmp_path: object
) -> None:
    directory = f"{tmp_path}/cache"
    await GuardedBrain(http, cache=ResponseCache(directory=directory)).complete(ask("p"))
    fresh = GuardedBrain(http, cache=ResponseCache(directory=directory))
    answer = await fresh.complete(ask("p"))
    assert (answer.cache_hit, server.requests) == (True, 1)


# --- retries --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_retryable_failures_are_retried_with_backoff(
    server: FakeOpenAI, http: OpenAIBrain
) -> None:
    server.push(Reply("status", status=500), Reply("cut"), Reply("status", status=503))
    waits = Waits()
    policy = RetryPolicy(attempts=5, initial_wait=1.0, max_wait=8.0)
    answer = await GuardedBrain(http, retry=policy, sleep=waits).complete(ask())
    assert answer.text == "hello"
    assert answer.attempts == 4
    assert server.requests == 4
    assert len(waits.waits) == 3
    for n, wait in enumerate(waits.waits):  # full jitter: anywhere in [0, initial * 2**n]
        assert 0 <= wait <= min(8.0, 1.0 * 2**n)


@pytest.mark.asyncio
async def test_the_backoff_is_full_jitter() -> None:
    # Exponential windows, each wait uniform in [0, window]: not the window, not a fixed part.
    errors = [BrainConnectionError("down", retryable=True) for _ in range(200)]
    waits = Waits()
    policy = RetryPolicy(attempts=201, initial_wait=0.25, max_wait=1.0, deadline=3600)
    brain = GuardedBrain(ScriptedBrain([*errors, "up"]), retry=policy, sleep=waits)
    assert (await brain.complete(ask())).attempts == 201
    assert waits.waits[0] <= 0.25
    assert waits.waits[1] <= 0.5
    late = waits.waits[10:]
    assert all(0 <= w <= 1.0 for w in late)
    assert min(late) < 0.25
    assert max(late) > 0.75


@pytest.mark.asyncio
async def test_retry_after_is_honoured(server: FakeOpenAI, http: OpenAIBrain) -> None:
    server.push(Reply("status", status=429, retry_after="7"))
    waits = Waits()
    answer = await GuardedBrain(http, retry=RetryPolicy(initial_wait=0.1), sleep=waits).complete(
        ask()
    )
    assert (answer.attempts, server.requests) == (2, 2)
    assert waits.waits == [7.0]


@pytest.mark.asyncio
async def test_a_retry_after_beyond_the_cap_ends_the_retries(
    server: FakeOpenAI, http: OpenAIBrain
) -> None:
    server.push(Reply("status", status=429, retry_after="3600"))
    with pytest.raises(BrainRateLimitedError):
        await GuardedBrain(http, sleep=Waits()).complete(ask())
    assert server.requests == 1


@pytest.mark.asyncio
async def test_only_retryable_failures_are_retried(server: FakeOpenAI, http: OpenAIBrain) -> None:
    server.push(Reply("status", status=400), Reply("malformed"))
    brain = GuardedBrain(http, sleep=Waits())
    with pytest.raises(BrainHTTPError, match="400"):
        await brain.complete(ask())
    assert server.requests == 1
    with pytest.raises(Exception, match="malformed"):
        await brain.complete(ask())
    assert server.requests == 2


@pytest.mark.asyncio
async def test_a_request_that_is_not_idempotent_is_never_sent_twice_after_it_may_have_worked(
    server: FakeOpenAI, http: OpenAIBrain
) -> None:
    brain = GuardedBrain(http, sleep=Waits())
    server.push(Reply("status", status=500))
    with pytest.raises(BrainHTTPError, match="500"):
        await brain.complete(ask(idempotent=False))
    assert server.requests == 1
    server.push(Reply("status", status=429, retry_after="1"))  # refused: it did nothing
    assert (await brain.complete(ask(idempotent=False))).attempts == 2


@pytest.mark.asyncio
async def test_retries_stop_after_the_attempts(server: FakeOpenAI, http: OpenAIBrain) -> None:
    server.push(*[Reply("status", status=502)] * 3)
    with pytest.raises(BrainHTTPError, match="502"):
        await GuardedBrain(http, retry=RetryPolicy(attempts=3), sleep=Waits()).complete(ask())
    assert server.requests == 3


@pytest.mark.asyncio
async def test_cancellation_passes_through_and_is_not_retried(
    server: FakeOpenAI, http: OpenAIBrain
) -> None:
    server.push(Reply("slow", delay=30))
    call = asyncio.ensure_future(GuardedBrain(http, sleep=Waits()).complete(ask()))
    await until(lambda: server.requests == 1)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert server.requests == 1


# --- circuit breaker ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_breaker_opens_half_opens_and_closes(
    server: FakeOpenAI, http: OpenAIBrain
) -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=2, cooldown=30, clock=clock)
    brain = GuardedBrain(http, breaker=breaker, retry=RetryPolicy(attempts=1))
    provider = http.provider
    server.push(*[Reply("status", status=500)] * 2)
    for _ in range(2):
        with pytest.raises(BrainHTTPError):
            await brain.complete(ask())
    assert breaker.state(provider) is BreakerState.OPEN
    with pytest.raises(CircuitOpenError, match="open after 2 consecutive failures") as caught:
        await brain.complete(ask())
    assert caught.value.retry_after == pytest.approx(30)
    assert server.requests == 2  # refused without a request
    clock.now += 30
    assert breaker.state(provider) is BreakerState.HALF_OPEN
    server.push(Reply("status", status=500))
    with pytest.raises(BrainHTTPError):  # the probe fails: open again
        await brain.complete(ask())
    assert breaker.state(provider) is BreakerState.OPEN
    clock.now += 30
    assert (await brain.complete(ask())).text == "hello"  # the probe succeeds: closed
    assert breaker.state(provider) is BreakerState.CLOSED
    assert server.requests == 4


@pytest.mark.asyncio
async def test_rate_limiting_and_client_errors_do_not_open_the_breaker(
    server: FakeOpenAI, http: OpenAIBrain
) -> None:
    breaker = CircuitBreaker(failure_threshold=1)
    brain = GuardedBrain(http, breaker=breaker, retry=RetryPolicy(attempts=1))
    server.push(Reply("status", status=429), Reply("status", status=400))
    for _ in range(2):
        with pytest.raises(BrainHTTPError):
            await brain.complete(ask())
    assert breaker.state(http.provider) is BreakerState.CLOSED


# --- budget ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_budget_ends_the_run_at_a_call_boundary(
    server: FakeOpenAI, http: OpenAIBrain
) -> None:
    server.default = Reply(usage=(1000, 500))
    budget = Budget(max_tokens=2000, prices={"m": Price(2.0, 8.0)})
    brain = GuardedBrain(http, budget=budget)
    answer = await brain.complete(ask())
    assert answer.cost == pytest.approx((1000 * 2.0 + 500 * 8.0) / 1e6)
    with pytest.raises(BudgetExceededError, match="budget is spent") as caught:
        await brain.complete(ask("x" * 4000))  # about 1000 tokens more: over the limit
    summary = caught.value.summary
    assert (summary.calls, summary.tokens_in, summary.tokens_out) == (1, 1000, 500)
    assert summary.cost == pytest.approx(answer.cost)
    assert server.requests == 1  # the refused call was never made
    await brain.complete(ask())  # a small one still fits
    assert budget.summary().exhausted
    with pytest.raises(BudgetExceededError):
        await brain.complete(ask())
    assert server.requests == 2


@pytest.mark.asyncio
async def test_cache_hits_are_free_once_the_budget_is_spent(
    server: FakeOpenAI, http: OpenAIBrain
) -> None:
    budget = Budget(max_tokens=18)  # one call of 11 + 7 tokens
    brain = GuardedBrain(http, budget=budget, cache=ResponseCache())
    await brain.complete(ask("a"))
    assert (await brain.complete(ask("a"))).cache_hit
    with pytest.raises(BudgetExceededError):
        await brain.complete(ask("b"))
    assert (server.requests, budget.summary().calls) == (1, 1)


@pytest.mark.asyncio
async def test_a_cost_budget(server: FakeOpenAI, http: OpenAIBrain) -> None:
    budget = Budget(max_cost=0.01, prices={"m": Price(10_000.0, 0.0)})
    brain = GuardedBrain(http, budget=budget)
    await brain.complete(ask())  # 11 tokens in: 0.11
    with pytest.raises(BudgetExceededError, match="cost"):
        await brain.complete(ask())
    assert server.requests == 1


# --- rate limiter (local) -------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_local_limiter_holds_requests_per_period(
    server: FakeOpenAI, http: OpenAIBrain
) -> None:
    limiter = LocalRateLimiter(RateLimits(requests=2, period=3600), timeout=0.2)
    agents = [GuardedBrain(http, limiter=limiter, retry=RetryPolicy(attempts=1)) for _ in range(3)]
    await agents[0].complete(ask())
    await agents[1].complete(ask())
    with pytest.raises(TimeoutError, match=r"admitted no call within 0\.2 s"):
        await agents[2].complete(ask())
    assert server.requests == 2


@pytest.mark.asyncio
async def test_the_local_limiter_holds_tokens_per_period(
    server: FakeOpenAI, http: OpenAIBrain
) -> None:
    limiter = LocalRateLimiter(RateLimits(requests=100, tokens=300, period=3600), timeout=0.2)
    brain = GuardedBrain(http, limiter=limiter, retry=RetryPolicy(attempts=1))
    await brain.complete(ask("w " * 100, max_tokens=100))  # about 100 + 100 tokens
    with pytest.raises(TimeoutError):
        await brain.complete(ask("w " * 100, max_tokens=100))
    assert server.requests == 1
    with pytest.raises(InvalidArgumentError):
        RateLimits(requests=0)


# --- compression ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_oversized_request_is_cut_in_the_middle_and_says_so(
    server: FakeOpenAI, http: OpenAIBrain
) -> None:
    server.default = Reply("echo")
    instruction = "You review code. Answer in one line."
    document = "HEAD-MARK " + "lorem ipsum " * 5000 + " TAIL-MARK"
    request = BrainRequest(messages=(system(instruction), user("old turn"), user(document)))
    compressor = ContextCompressor(max_tokens=500)
    brain = GuardedBrain(http, compressor=compressor)
    answer = await brain.complete(request)
    (body,) = server.bodies
    sent = body["messages"]
    assert sent[0] == {"role": "system", "content": instruction}  # the instruction is intact
    assert sent[1]["content"] == "old turn"
    cut = sent[2]["content"]
    assert cut.startswith("HEAD-MARK")
    assert cut.endswith("TAIL-MARK")
    assert "characters (about" in cut
    assert "cut from the middle" in cut
    assert answer.text == cut
    _, cuts = compressor.compress_with_report(request)
    assert compressor.tokens(compressor.compress(request)) <= 500
    assert [(c.index, c.original_chars) for c in cuts] == [(2, len(document))]
    assert compressor.compress(ask("short")) == ask("short")  # a request that fits is untouched


@pytest.mark.asyncio
async def test_an_instruction_too_large_to_fit_is_refused_not_dropped(
    server: FakeOpenAI, http: OpenAIBrain
) -> None:
    brain = GuardedBrain(http, compressor=ContextCompressor(max_tokens=100))
    with pytest.raises(BrainInputTooLargeError, match="instruction"):
        await brain.complete(BrainRequest(messages=(system("rule " * 500), user("hi"))))
    assert server.requests == 0


def test_the_instruction_is_never_cut_even_when_it_is_the_largest_message() -> None:
    instruction = "Follow these rules. " + "rule " * 600  # ~600 tokens, within the limit
    request = BrainRequest(messages=(system(instruction), user("data " * 500)))
    compressor = ContextCompressor(max_tokens=1000)
    out, cuts = compressor.compress_with_report(request)
    assert out.messages[0] == request.messages[0]
    assert [c.index for c in cuts] == [1]
    assert compressor.tokens(out) <= 1000


def test_compression_counts_with_a_given_tokenizer() -> None:
    words = ContextCompressor(max_tokens=60, min_keep=5, count=lambda s: len(s.split()))
    request = BrainRequest(
        messages=(system("be brief"), user(" ".join(f"w{i}" for i in range(500))))
    )
    out = words.compress(request)
    assert words.tokens(out) <= 60
    assert out.messages[1].content.startswith("w0 w1")
    assert out.messages[1].content.endswith("w499")
    assert estimate_tokens("") == 0


def test_an_installed_tokenizer_counts_once_loaded_and_estimates_until_then() -> None:
    import threading
    import types

    from swarm_actors.brains import TokenCounter, token_counter
    from swarm_actors.brains._compress import _tiktoken_loader

    release = threading.Event()

    def load() -> Any:
        release.wait(10)  # a tokenizer still fetching its files
        return lambda text: 1000 * len(text)

    counter = TokenCounter(load)
    assert counter("four words in here") == estimate_tokens("four words in here")  # not blocked
    assert counter.tokenizer == "estimate"
    release.set()
    assert counter.wait(10)
    assert counter("ab") == 2000
    assert counter.tokenizer == "tiktoken:cl100k_base"

    def broken() -> Any:
        raise OSError("offline: cannot fetch the encoding")

    failed = TokenCounter(broken)
    assert failed.wait(10)
    assert failed("four words in here") == estimate_tokens("four words in here")

    # tiktoken importable: its cl100k_base is what gets loaded (a stand-in module here).
    class Encoding:
        def encode(self, text: str, disallowed_special: Any = None) -> list[int]:
            return [0] * len(text)

    fake = types.ModuleType("tiktoken")
    fake.get_encoding = lambda name: Encoding() if name == "cl100k_base" else None  # type: ignore[attr-defined]
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "tiktoken", fake)
        loader = _tiktoken_loader()
        assert loader is not None
        assert loader()("abc") == 3
        mp.setitem(sys.modules, "tiktoken", None)  # not installed
        assert _tiktoken_loader() is None
    assert isinstance(token_counter(), TokenCounter)
    assert token_counter() is token_counter()  # loaded once per process


# --- speculation ----------------------------------------------------------------------------


class Stuck:
    """A brain that never answers, and takes its time to unwind when cancelled."""

    provider = "stuck"

    def __init__(self) -> None:
        self.cancelled = asyncio.Event()
        self.unwind = asyncio.Event()

    async def complete(self, request: BrainRequest) -> BrainResponse:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            await self.unwind.wait()  # a race that awaited its loser would hang here
            raise
        raise AssertionError("unreachable")


@pytest.mark.asyncio
async def test_the_first_answer_wins_and_the_loser_is_cancelled_not_awaited(
    server: FakeOpenAI, http: OpenAIBrain
) -> None:
    stuck = Stuck()
    race = SpeculativeBrain(stuck, http)
    answer = await asyncio.wait_for(race.complete(ask()), 10)
    assert (answer.text, answer.speculative) == ("hello", True)
    await asyncio.wait_for(stuck.cancelled.wait(), 10)
    assert race.losers_cancelled == 1
    stuck.unwind.set()


@pytest.mark.asyncio
async def test_a_failed_racer_does_not_end_the_race(server: FakeOpenAI, http: OpenAIBrain) -> None:
    failing = ScriptedBrain([BrainConnectionError("down", retryable=True)])
    answer = await SpeculativeBrain(failing, http).complete(ask())
    assert answer.text == "hello"
    both_fail = SpeculativeBrain(
        ScriptedBrain([BrainConnectionError("first", retryable=True)]),
        ScriptedBrain([BrainConnectionError("second", retryable=True)]),
    )
    with pytest.raises(BrainConnectionError):
        await both_fail.complete(ask())


@pytest.mark.asyncio
async def test_a_request_that_is_not_idempotent_is_not_raced(
    server: FakeOpenAI, http: OpenAIBrain
) -> None:
    other = ScriptedBrain([])
    answer = await SpeculativeBrain(http, other).complete(ask(idempotent=False))
    assert (answer.speculative, server.requests, other.requests) == (False, 1, [])
    with pytest.raises(InvalidArgumentError):
        SpeculativeBrain(http)
