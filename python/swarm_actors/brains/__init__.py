"""Brains: model clients behind real guardrails, and brains that need no model.

A ``Brain`` answers chat requests (``BrainRequest``: messages in; ``BrainResponse``: text,
``Usage`` and finish reason out; JSON output optional). The brains:

* ``OpenAIBrain``: an OpenAI-compatible chat client (vLLM, llama.cpp, Ollama, hosted APIs);
  base URL, model and key from arguments or ``OPENAI_BASE_URL``, ``SWARM_MODEL``,
  ``OPENAI_API_KEY``.
* ``ScriptedBrain``: ordered answers for tests; off-script calls and unused steps fail.
* ``RecordingBrain`` journals every call as a ``ModelCall`` event (contents in a
  ``BlobStore``); ``ReplayBrain`` answers from those events with no model call, and raises
  ``ReplayMissError`` for a request never recorded.
* ``DeterministicBrain``: rules, no model: plans from what tools report.
* ``GuardedBrain`` puts any brain behind the guardrails: ``ResponseCache`` (LRU + TTL,
  optionally persistent), ``RetryPolicy`` (exponential backoff, full jitter, ``Retry-After``),
  ``CircuitBreaker`` (per provider), a ``RateLimiter`` shared by a swarm (``LocalRateLimiter``
  in a process, ``KVRateLimiter`` across nodes over NATS), ``ContextCompressor`` and a per-run
  ``Budget``. ``SpeculativeBrain`` races brains and cancels the losers.

Failures are the ``BrainError`` family of ``swarm_actors.errors``. Owns: nothing below it
depends on it. May import: the event model (``_events``), ``_exceptions``, ``_log``, httpx,
tenacity, aiolimiter and nats-py (the KV limiter).
"""

from types import FunctionType as _Function

from swarm_actors._public import publish as _publish
from swarm_actors.brains._compress import ContextCompressor, Cut, TokenCounter, token_counter
from swarm_actors.brains._deterministic import (
    DeterministicBrain,
    Finding,
    diff_review_rule,
    findings_in,
    plan_from_findings,
    request_plan_rule,
    tool_report_rule,
)
from swarm_actors.brains._guard import (
    BreakerState,
    Budget,
    BudgetSummary,
    CircuitBreaker,
    GuardedBrain,
    Price,
    ResponseCache,
    RetryPolicy,
)
from swarm_actors.brains._limiter import KVRateLimiter, LocalRateLimiter, RateLimiter, RateLimits
from swarm_actors.brains._openai import DEFAULT_BASE_URL, OpenAIBrain
from swarm_actors.brains._record import RecordingBrain, ReplayBrain
from swarm_actors.brains._scripted import ScriptedBrain
from swarm_actors.brains._speculate import SpeculativeBrain
from swarm_actors.brains._types import (
    Brain,
    BrainRequest,
    BrainResponse,
    Message,
    Usage,
    assistant,
    estimate_tokens,
    system,
    user,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "Brain",
    "BrainRequest",
    "BrainResponse",
    "BreakerState",
    "Budget",
    "BudgetSummary",
    "CircuitBreaker",
    "ContextCompressor",
    "Cut",
    "DeterministicBrain",
    "Finding",
    "GuardedBrain",
    "KVRateLimiter",
    "LocalRateLimiter",
    "Message",
    "OpenAIBrain",
    "Price",
    "RateLimiter",
    "RateLimits",
    "RecordingBrain",
    "ReplayBrain",
    "ResponseCache",
    "RetryPolicy",
    "ScriptedBrain",
    "SpeculativeBrain",
    "TokenCounter",
    "Usage",
    "assistant",
    "diff_review_rule",
    "estimate_tokens",
    "findings_in",
    "plan_from_findings",
    "request_plan_rule",
    "system",
    "token_counter",
    "tool_report_rule",
    "user",
]

# Classes and functions report this module (a constant cannot).
_publish(__name__, *(o for o in map(globals().get, __all__) if isinstance(o, (type, _Function))))
