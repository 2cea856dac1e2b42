"""Tracing and per-actor logging, priced so that nobody pays for what is switched off.

Costs that shaped this module (a 2-core machine, OpenTelemetry 1.45): even a no-op
OpenTelemetry span costs about 4 µs, several times a whole tell (about 0.6 µs). So:

* Whether tracing is on is decided once per ``ActorSystem`` (when it binds to its loop, again on
  ``refresh_tracing``): on only when a real tracer provider is configured, i.e. neither the API's
  default ``ProxyTracerProvider`` nor a ``NoOpTracerProvider``. The decision is a ``Tracer`` (or
  ``None``) stored on every cell; when it is ``None`` the hot paths never call OpenTelemetry.
* When it is on, a sender's context travels with a message only if the sender's current span is
  valid and *sampled*; a tell then rides in the mailbox's small slotted ``Ask`` entry (with no
  future) instead of bare, an ask's entry gets the context. Reading the current context is a
  ContextVar read and the verdict is cached for the last context seen, so an unsampled sender
  pays an identity check.
* No span is made per tell. An ``ask`` from a sampled caller gets a span (``ask <Type>``) made in
  the caller's task; its context is current while the handler runs, so spans made inside the
  handler are its children. An ask from an unsampled or span-less caller makes no span: roots
  come from the application (an incoming request, or ``Actor.step``), never from the runtime.
* ``Actor.log`` binds the current trace and span ids only when it is read, i.e. when logging.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Coroutine, Generator, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Self, overload

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.util.types import AttributeValue

from swarm_actors._log import get_logger

if TYPE_CHECKING:
    from swarm_actors._core._actor import Actor

__all__ = [
    "ActorLog",
    "InContext",
    "SampledCache",
    "attach_context",
    "current_context",
    "detach_context",
    "resolve_tracer",
    "sampled_context",
    "start_ask_span",
    "step_span",
    "traceparent",
    "traceparent_context",
]

ATTR_ACTOR = "swarm.actor.path"
ATTR_MESSAGE_TYPE = "swarm.message.type"

_get_current_span = trace.get_current_span
_SAMPLED = trace.TraceFlags.SAMPLED


def resolve_tracer(provider: trace.TracerProvider | None, enabled: bool) -> trace.Tracer | None:
    """The tracer the runtime uses, or ``None`` when nothing would record its spans.

    ``provider`` is the one given to ``ActorSystem``; without it the global provider is read.
    """
    if not enabled:
        return None
    if provider is None:
        provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    from swarm_actors._tuplecore import __version__

    return provider.get_tracer("swarm_actors", __version__)


def _context_reader() -> Callable[[], Context]:
    """The cheapest reader of the current context.

    ``opentelemetry.context.get_current`` is two Python calls around a ContextVar read (about
    60 ns, a tenth of a tell); with the API's default runtime context the ContextVar's own
    ``get`` (15 ns) returns the very same object.
    """
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    var = getattr(runtime, "_current_context", None)
    if type(runtime) is ContextVarsRuntimeContext and isinstance(var, ContextVar):
        return var.get
    return otel_context.get_current


current_context = _context_reader()


def _verdict(ctx: Context) -> Context | None:
    span_context = _get_current_span(ctx).get_span_context()
    return ctx if span_context.is_valid and span_context.trace_flags & _SAMPLED else None


class SampledCache:
    """One ``ActorSystem``'s cache of the last context seen and its verdict (``sampled``).

    Per system, not per process: a process-wide cache kept the last context of a system (and
    its span) alive after the system was gone, and made systems share state.
    """

    __slots__ = ("last",)

    def __init__(self) -> None:
        # (last context seen, its verdict): one tuple so that a reader never sees a torn pair.
        # Contexts are immutable and a sender's stays the same object while its span is
        # current, so nearly every check is an identity comparison.
        self.last: tuple[Context | None, Context | None] = (None, None)

    def sampled(self) -> Context | None:
        """The current context if its span is valid and sampled (worth carrying), else ``None``."""
        ctx = current_context()
        last = self.last
        if last[0] is ctx:
            return last[1]
        verdict = _verdict(ctx)
        self.last = (ctx, verdict)
        return verdict


def sampled_context(cache: SampledCache | None = None) -> Context | None:
    """The current context if its span is valid and sampled, else ``None``.

    With ``cache`` (the sending system's), a sender whose context did not change pays an
    identity check; without, the verdict is worked out (paths that are slow anyway).
    """
    if cache is not None:
        return cache.sampled()
    return _verdict(current_context())


_PROPAGATOR: list[Any] = []  # W3C trace-context propagator, made on first use (import cost)


def _propagator() -> Any:
    if not _PROPAGATOR:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        _PROPAGATOR.append(TraceContextTextMapPropagator())
    return _PROPAGATOR[0]


def traceparent(context: Context) -> str:
    """The W3C ``traceparent`` of a context (``""`` when it holds no valid span)."""
    carrier: dict[str, str] = {}
    _propagator().inject(carrier, context=context)
    return carrier.get("traceparent", "")


def traceparent_context(value: str) -> Context:
    """The context that continues the trace of a W3C ``traceparent`` (from another process)."""
    context: Context = _propagator().extract({"traceparent": value})
    return context


def start_ask_span(tracer: trace.Tracer, path: str, message: Any, parent: Context) -> trace.Span:
    """Start the span of an ask, a child of ``parent`` (the caller's context)."""
    message_type = type(message).__qualname__
    return tracer.start_span(
        f"ask {message_type}",
        context=parent,
        attributes={ATTR_ACTOR: path, ATTR_MESSAGE_TYPE: message_type},
    )


attach_context = otel_context.attach
"""Make a traced message's context current (``Cell._step``); returns the token to detach."""

detach_context = otel_context.detach


class InContext(Coroutine[Any, Any, Any]):
    """A started coroutine whose every later step runs in ``context`` (``Context.run``).

    Resuming a suspended handler in another task would otherwise run it in that task's context:
    a handler must keep its own (trace) context, and must not leave it to the messages that the
    task goes on to handle. Only ``send``, ``throw`` and ``close`` are used (see ``_resume``).
    """

    __slots__ = ("context", "coro")

    def __init__(self, coro: Coroutine[Any, Any, Any], context: contextvars.Context) -> None:
        self.coro = coro
        self.context = context

    def send(self, value: Any) -> Any:
        return self.context.run(self.coro.send, value)

    def throw(self, *args: Any) -> Any:
        return self.context.run(self.coro.throw, *args)

    def close(self) -> None:
        self.context.run(self.coro.close)

    def __await__(self) -> Generator[Any, None, Any]:
        raise TypeError("InContext is driven by Cell._finish, not awaited")


@contextmanager
def step_span(
    tracer: trace.Tracer | None, name: str, path: str, attributes: Mapping[str, AttributeValue]
) -> Iterator[trace.Span]:
    """A span current for the duration of the block; a no-op span when tracing is off."""
    if tracer is None:
        yield trace.INVALID_SPAN
        return
    span = tracer.start_span(name, attributes={ATTR_ACTOR: path, **attributes})
    with trace.use_span(span, end_on_exit=True):
        yield span


class ActorLog:
    """``Actor.log``: a structlog logger bound with the actor's path, name and current trace.

    Its records go to ``logging.getLogger("<module>.<qualname>")`` of the actor's class (see
    ``swarm_actors._log``): the application's ``logging`` configuration decides what is shown
    and where, as for its other loggers. The trace and span ids are read from the current span
    at each read of ``self.log``, so they are those of the message being handled; nothing is
    paid unless something logs. An actor may assign its own ``log`` attribute: the instance
    attribute then wins.
    """

    @overload
    def __get__(self, actor: None, owner: type[Actor]) -> Self: ...
    @overload
    def __get__(self, actor: Actor, owner: type[Actor] | None = None) -> Any: ...
    def __get__(self, actor: Actor | None, owner: type[Actor] | None = None) -> Any:
        if actor is None:
            return self
        state = vars(actor)
        base = state.get("_swarm_log")
        if base is None:
            cls = type(actor)
            cell = state.get("_cell")
            if cell is None:  # read in __init__, before the runtime set the actor up
                return get_logger(f"{cls.__module__}.{cls.__qualname__}")
            base = get_logger(
                f"{cls.__module__}.{cls.__qualname__}", actor=cell.path, actor_name=cell.name
            )
            state["_swarm_log"] = base
        span_context = _get_current_span().get_span_context()
        if span_context.is_valid:
            return base.bind(
                trace_id=format(span_context.trace_id, "032x"),
                span_id=format(span_context.span_id, "016x"),
            )
        return base
