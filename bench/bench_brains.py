"""Brains: the guardrails' cost per model call, and the fairness of the shared rate limiter.

1. Per call against the same loopback fake OpenAI server (``tests/fake_openai.py``, the
   standard library's threaded ``http.server``, in a process of its own), side by side in
   one run, interleaved round by round: raw ``httpx`` (POST, read, ``json.loads``),
   ``OpenAIBrain`` alone, and ``GuardedBrain`` with every guardrail on (cache, retries,
   breaker, limiter, budget) on a cache miss (a distinct request each call) and on a cache
   hit. Medians of the rounds' means.
2. The guardrails' own cost, without HTTP noise: ``GuardedBrain`` around a brain that answers
   at once, against that brain called directly (miss: distinct requests; hit: the same one).
   Targets: a hit under 20 µs, a miss adding under 200 µs.
3. Fairness of one ``LocalRateLimiter`` shared by 32 agents that each acquire in a loop for a
   while: per-agent counts, Jain's fairness index (1.0: perfectly even), achieved rate
   against the limit. With ``--nats``, the same for ``KVRateLimiter`` on a local nats-server.

Run: python bench/bench_brains.py [--calls 300] [--rounds 5] [--agents 32] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator

import httpx

from _common import ROOT, machine, progress, table

sys.path.insert(0, str(ROOT / "tests"))
from swarm_actors.brains import (
    BrainRequest,
    BrainResponse,
    Budget,
    CircuitBreaker,
    GuardedBrain,
    LocalRateLimiter,
    OpenAIBrain,
    RateLimits,
    ResponseCache,
    RetryPolicy,
    Usage,
    system,
    user,
)


def request(i: int) -> BrainRequest:
    return BrainRequest(
        messages=(system("You are a code reviewer. Answer briefly."), user(f"review change {i}"))
    )


def guarded(inner: object) -> GuardedBrain:
    return GuardedBrain(
        inner,  # type: ignore[arg-type]
        cache=ResponseCache(max_entries=1_000_000),
        retry=RetryPolicy(),
        breaker=CircuitBreaker(),
        limiter=LocalRateLimiter(RateLimits(requests=1e9, tokens=1e12)),
        budget=Budget(max_tokens=10**15),
    )


async def per_call(n: int, call: Callable[[int], Awaitable[object]]) -> float:
    """Mean seconds per call of ``n`` sequential calls."""
    start = time.perf_counter()
    for i in range(n):
        await call(i)
    return (time.perf_counter() - start) / n


class Instant:
    """A brain that answers at once: what is left is the guardrails' own cost."""

    provider = "instant"
    answer = BrainResponse(text="ok", usage=Usage(10, 2), provider="instant")

    async def complete(self, request: BrainRequest) -> BrainResponse:
        return self.answer


@contextlib.contextmanager
def server_process() -> Iterator[str]:
    """The fake server in a process of its own (no shared GIL); its base URL."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fake_openai.py")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.kill()
        proc.wait()


async def http_section(calls: int, rounds: int) -> list[list[object]]:
    with server_process() as base:
        url = base + "/chat/completions"
        async with (
            httpx.AsyncClient() as raw,
            OpenAIBrain(base_url=base, api_key="k", model="m") as brain,
        ):
            body = brain.body(request(0))
            headers = {"Content-Type": "application/json", "Authorization": "Bearer k"}

            async def raw_call(i: int) -> object:
                reply = await raw.post(url, content=body, headers=headers)
                return json.loads(reply.content)["choices"][0]["message"]["content"]

            guard = guarded(brain)
            offset = [0]

            async def miss(i: int) -> object:
                offset[0] += 1
                return await guard.complete(request(offset[0]))

            hot = request(-1)
            await guard.complete(hot)

            async def hit(i: int) -> object:
                return await guard.complete(hot)

            async def plain(i: int) -> object:
                return await brain.complete(request(i))

            results: dict[str, list[float]] = {"raw": [], "brain": [], "miss": [], "hit": []}
            for call in (raw_call, plain, miss):  # warm up connections and caches
                await per_call(20, call)
            for r in range(rounds):
                progress(f"HTTP round {r + 1}/{rounds}")
                results["raw"].append(await per_call(calls, raw_call))
                results["brain"].append(await per_call(calls, plain))
                results["miss"].append(await per_call(calls, miss))
                results["hit"].append(await per_call(calls * 10, hit))
            stats = await raw.get(base.removesuffix("/v1") + "/stats")
            requests_made = stats.json()["requests"]
    med = {k: statistics.median(v) * 1e6 for k, v in results.items()}
    expected = 20 * 3 + 1 + rounds * calls * 3  # warm-up, the hot request, the rounds
    return [
        ["raw httpx POST + json.loads", f"{med['raw']:.0f}", "1.00x", "baseline"],
        ["OpenAIBrain.complete", f"{med['brain']:.0f}", f"{med['brain'] / med['raw']:.2f}x", ""],
        [
            "GuardedBrain, cache miss",
            f"{med['miss']:.0f}",
            f"{med['miss'] / med['raw']:.2f}x",
            f"{med['miss'] - med['raw']:+.0f} µs vs raw",
        ],
        [
            "GuardedBrain, cache hit",
            f"{med['hit']:.1f}",
            f"{med['hit'] / med['raw']:.3f}x",
            f"server saw {requests_made} requests (expected {expected})",
        ],
    ]


async def isolated_section(calls: int, rounds: int) -> tuple[list[list[object]], float, float]:
    inner = Instant()
    guard = guarded(inner)
    hot = request(-1)
    await guard.complete(hot)
    reqs = [request(i) for i in range(calls * rounds + 1)]
    pos = [0]

    async def direct(i: int) -> object:
        return await inner.complete(reqs[i])

    async def miss(i: int) -> object:
        pos[0] += 1
        return await guard.complete(reqs[pos[0]])

    async def hit(i: int) -> object:
        return await guard.complete(hot)

    times: dict[str, list[float]] = {"direct": [], "miss": [], "hit": []}
    for _ in range(rounds):
        times["direct"].append(await per_call(calls, direct))
        times["miss"].append(await per_call(calls, miss))
        times["hit"].append(await per_call(calls, hit))
    best = {k: min(v) * 1e6 for k, v in times.items()}
    added_miss = best["miss"] - best["direct"]
    rows: list[list[object]] = [
        ["instant brain, called directly", f"{best['direct']:.2f}", "baseline"],
        [
            "GuardedBrain, cache miss",
            f"{best['miss']:.1f}",
            f"+{added_miss:.1f} µs (target < 200): {'ok' if added_miss < 200 else 'MISSED'}",
        ],
        [
            "GuardedBrain, cache hit",
            f"{best['hit']:.1f}",
            f"{best['hit']:.1f} µs (target < 20): {'ok' if best['hit'] < 20 else 'MISSED'}",
        ],
    ]
    return rows, added_miss, best["hit"]


def jain(counts: list[int]) -> float:
    total = sum(counts)
    squares = sum(c * c for c in counts)
    return total * total / (len(counts) * squares) if squares else 0.0


async def fairness(
    acquire_for: Callable[[int], Callable[[], Awaitable[None]]], agents: int, seconds: float
) -> tuple[list[int], float]:
    counts = [0] * agents
    stop = time.monotonic() + seconds

    async def agent(k: int) -> None:
        acquire = acquire_for(k)
        while time.monotonic() < stop:
            await acquire()
            counts[k] += 1
            await asyncio.sleep(0)  # the call it was admitted for: at least one turn

    start = time.monotonic()
    await asyncio.gather(*(agent(k) for k in range(agents)))
    return counts, time.monotonic() - start


def fairness_row(name: str, counts: list[int], took: float, limits: RateLimits) -> list[object]:
    allowed = limits.requests + limits.requests * took / limits.period  # burst + refill
    return [
        name,
        len(counts),
        f"{sum(counts)} in {took:.1f} s",
        f"{sum(counts) / allowed:.2f}",
        f"{min(counts)} / {statistics.median(counts):.0f} / {max(counts)}",
        f"{jain(counts):.3f}",
    ]


async def limiter_section(agents: int, seconds: float, nats: bool) -> list[list[object]]:
    rows = []
    limits = RateLimits(requests=200, period=1.0)
    local = LocalRateLimiter(limits)
    counts, took = await fairness(lambda k: local.acquire, agents, seconds)
    rows.append(fairness_row("LocalRateLimiter (aiolimiter)", counts, took, limits))
    if nats:
        from nats.aio.client import Client

        from swarm_actors.brains import KVRateLimiter
        from swarm_actors.testing import NatsServer

        server = NatsServer(name="bench-brains", max_memory_store=64 << 20)
        await server.start()
        try:
            nc = Client()
            await nc.connect(server.url)
            kv_limits = RateLimits(requests=100, period=1.0)
            limiter = await KVRateLimiter.open(nc.jetstream(), kv_limits, name="bench")
            counts, took = await fairness(lambda k: limiter.acquire, agents, seconds)
            rows.append(
                fairness_row(
                    f"KVRateLimiter (JetStream KV, {limiter.conflicts} CAS conflicts)",
                    counts,
                    took,
                    kv_limits,
                )
            )
            await nc.close()
        finally:
            await server.stop()
    return rows


async def run(args: argparse.Namespace) -> None:
    progress("guardrails without HTTP")
    isolated, _, _ = await isolated_section(args.calls * 10, args.rounds)
    progress("per call over loopback HTTP")
    http = await http_section(args.calls, args.rounds)
    progress("limiter fairness")
    fair = await limiter_section(args.agents, args.seconds, args.nats)
    quick = " --quick" if args.quick else ""
    print("## Brains: guardrail overhead and limiter fairness\n")
    print(
        f"`python bench/bench_brains.py --calls {args.calls} --rounds {args.rounds} "
        f"--agents {args.agents} --seconds {args.seconds}{' --nats' if args.nats else ''}"
        f"{quick}` on {machine()}.\n"
    )
    print("The guardrails' own cost (an instant brain: no HTTP), best of the rounds:\n")
    print(table(["path", "µs per call", "verdict"], isolated))
    print()
    print("Per call over loopback HTTP to the same fake server (medians of interleaved rounds):\n")
    print(table(["path", "µs per call", "vs raw", "note"], http))
    print()
    print(
        f"One shared limiter, {args.agents} agents acquiring in a loop for {args.seconds} s "
        "(admitted / allowed: 1.00 is the limit exactly; Jain's index 1.0 is perfectly even):\n"
    )
    print(
        table(
            ["limiter", "agents", "admitted", "admitted / allowed", "min / median / max", "Jain"],
            fair,
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--agents", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--nats", action="store_true", help="also the KV limiter (nats-server)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.rounds, args.seconds = 60, 2, 1.0
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
