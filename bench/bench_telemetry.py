"""Actor telemetry overhead: tell (and ask) throughput with tracing off, on at 1 %, and without it.

Usage::

    python bench/bench_telemetry.py [--tells 1000000] [--asks 200000] [--batch 100] [--rounds 3]

Prints a Markdown section (``## Actor telemetry overhead``) to stdout and progress to stderr.

One sender tells ``--tells`` messages to an actor with a trivial handler and a mailbox larger
than that, then waits until all are handled; then it makes ``--asks`` sequential asks (the
inline path). Each variant runs in its own child process (OpenTelemetry's global state cannot be
reset), and the variants take turns for ``--rounds`` rounds; the best round of each counts.

Variants:

* ``baseline``: the runtime without telemetry (``--baseline-rev``, by default the newest commit
  in HEAD's history without ``_telemetry.py``), exported with ``git archive`` and run with this
  build's extension module. Later changes to the runtime widen the gap: pass a revision that
  differs from HEAD only by telemetry for a fair comparison.
* ``no SDK``: this runtime, no tracer provider configured (the API's default): the cost of the
  telemetry code paths when tracing is off. Target: within 5 % of ``baseline``.
* ``app spans, runtime off``: an SDK provider sampling 1 % of traces
  (``ParentBased(TraceIdRatioBased(0.01))``, a synchronous processor and an exporter that drops
  the spans), the sender opening a root span per ``--batch`` tells or asks, and
  ``ActorSystem(tracing=Tracing(enabled=False))``: what the application's own spans cost.
* ``SDK 1 %``: the same with the runtime's telemetry on; about 1 % of batches are sampled, so
  their tells carry context and their asks make spans. Target: within 15 % of the previous line
  (the runtime's share); the ratio to ``baseline`` includes the application's root spans too.
* ``SDK, unsampled parent``: every message sent inside one unsampled span (the common case of a
  99 %-unsampled trace): the per-message check alone.
* ``SDK, sampled parent``: every message sent inside one sampled span: every tell carries
  context and every ask makes a span. The worst case, not a target.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import fmt_rate, machine, progress, table

REPO = Path(__file__).resolve().parent.parent
TELEMETRY = "python/swarm_actors/_core/_telemetry.py"

VARIANTS: dict[str, str] = {
    # key: label
    "baseline": "baseline (before telemetry)",
    "nosdk": "no SDK (tracing off)",
    "app": "app spans 1 %, runtime telemetry off",
    "sdk1": "SDK 1 %, span per batch",
    "unsampled": "SDK, unsampled parent",
    "sampled": "SDK, sampled parent",
}


# --- child process --------------------------------------------------------------------------


def make_tracer(variant: str) -> tuple[Any, Any]:
    """(provider or None, tracer or None) for a variant."""
    if variant in ("baseline", "nosdk"):
        return None, None
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )
    from opentelemetry.sdk.trace.sampling import (
        ALWAYS_OFF,
        ALWAYS_ON,
        ParentBased,
        TraceIdRatioBased,
    )

    class Drop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    root = {"unsampled": ALWAYS_OFF, "sampled": ALWAYS_ON}.get(variant, TraceIdRatioBased(0.01))
    provider = TracerProvider(sampler=ParentBased(root))
    provider.add_span_processor(SimpleSpanProcessor(Drop()))
    return provider, provider.get_tracer("bench")


async def child_run(variant: str, tells: int, asks: int, batch: int, reps: int) -> dict[str, Any]:
    import swarm_actors
    from swarm_actors import Actor, ActorSystem

    has_telemetry = importlib.util.find_spec("swarm_actors._core._telemetry") is not None
    assert has_telemetry == (variant != "baseline"), (variant, swarm_actors.__file__)
    provider, tracer = make_tracer(variant)
    kwargs: dict[str, Any] = {}  # none for the baseline: its old package has no Tracing
    if variant == "app":
        from swarm_actors import Tracing

        kwargs = {"tracing": Tracing(enabled=False)}
    elif provider is not None:
        from swarm_actors import Tracing

        kwargs = {"tracing": Tracing(provider=provider)}

    class Sink(Actor, mailbox_size=tells + 1):
        def __init__(self) -> None:
            self.n = 0

        async def on_receive(self, message: Any) -> Any:
            self.n += 1
            return message

    async def send_tells(ref: Any) -> None:
        if tracer is None:
            for i in range(tells):
                await ref.tell(i)
        elif variant in ("unsampled", "sampled"):
            with tracer.start_as_current_span("parent"):
                for i in range(tells):
                    await ref.tell(i)
        else:
            for start in range(0, tells, batch):
                with tracer.start_as_current_span("batch"):
                    for i in range(start, min(start + batch, tells)):
                        await ref.tell(i)

    async def send_asks(ref: Any) -> None:
        if tracer is None:
            for i in range(asks):
                await ref.ask(i)
        elif variant in ("unsampled", "sampled"):
            with tracer.start_as_current_span("parent"):
                for i in range(asks):
                    await ref.ask(i)
        else:
            for start in range(0, asks, batch):
                with tracer.start_as_current_span("batch"):
                    for i in range(start, min(start + batch, asks)):
                        await ref.ask(i)

    tell_rates, ask_rates = [], []
    async with ActorSystem(**kwargs) as system:
        tracing = bool(getattr(system, "tracing", False))
        ref = await system.start(Sink)
        sink = ref._cell.actor
        target = 0
        for _ in range(reps):
            target = sink.n + tells + 1
            started = time.perf_counter()
            await send_tells(ref)
            await ref.ask(None)  # queued behind the tells: all are handled when it returns
            assert sink.n == target
            tell_rates.append(tells / (time.perf_counter() - started))
            started = time.perf_counter()
            await send_asks(ref)
            ask_rates.append(asks / (time.perf_counter() - started))
    if provider is not None:
        provider.shutdown()
    return {"tell": max(tell_rates), "ask": max(ask_rates), "tracing": tracing}


# --- parent ---------------------------------------------------------------------------------


def git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()


def default_baseline_rev() -> str:
    """The newest commit in HEAD's history without ``_telemetry.py`` (HEAD before it exists)."""
    for rev in git("log", "--format=%H", "-n", "500", "HEAD").splitlines():
        probe = subprocess.run(
            ["git", "cat-file", "-e", f"{rev}:{TELEMETRY}"], cwd=REPO, capture_output=True
        )
        if probe.returncode != 0:
            return rev
    raise ValueError("no commit without telemetry in the last 500")


def export_baseline(rev: str, into: Path) -> Path:
    """The runtime's Python package at ``rev`` with this build's extension module."""
    archive = subprocess.run(
        ["git", "archive", rev, "python/swarm_actors"], cwd=REPO, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    package = into / "python" / "swarm_actors"
    if (package / "_telemetry.py").exists():
        raise ValueError(f"{rev} already has telemetry")
    spec = importlib.util.find_spec("swarm_actors._tuplecore")
    assert spec is not None
    assert spec.origin is not None
    shutil.copy(spec.origin, package)
    return into / "python"


def run_child(variant: str, args: argparse.Namespace, pythonpath: Path | None) -> dict[str, Any]:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), env.get("PYTHONPATH")]))
    cmd = [sys.executable, __file__, "--child", variant]
    cmd += ["--tells", str(args.tells), "--asks", str(args.asks), "--batch", str(args.batch)]
    cmd += ["--reps", str(args.reps)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        raise SystemExit(f"variant {variant} failed")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def pct(x: float, base: float) -> str:
    return f"{(base / x - 1) * 100:+.1f} %"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tells", type=int, default=1_000_000)
    parser.add_argument("--asks", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=100, help="messages per root span")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reps", type=int, default=2, help="repetitions inside each child")
    parser.add_argument("--baseline-rev", help="git revision before telemetry (default: auto)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = asyncio.run(child_run(args.child, args.tells, args.asks, args.batch, args.reps))
        print(json.dumps(result))
        return 0

    variants = list(VARIANTS)
    note = ""
    with tempfile.TemporaryDirectory() as tmp:
        baseline_path = None
        try:
            rev = args.baseline_rev or default_baseline_rev()[:12]
            baseline_path = export_baseline(rev, Path(tmp))
            note = f"baseline: `{rev}` = {git('rev-parse', '--short', rev)}"
        except (OSError, subprocess.CalledProcessError, ValueError) as exc:
            variants.remove("baseline")
            note = f"baseline skipped ({exc})"
        progress(note)
        best: dict[str, dict[str, float]] = {v: {"tell": 0.0, "ask": 0.0} for v in variants}
        tracing: dict[str, bool] = {}
        for r in range(1, args.rounds + 1):
            for v in variants:
                res = run_child(v, args, baseline_path if v == "baseline" else None)
                tracing[v] = res["tracing"]
                for k in ("tell", "ask"):
                    best[v][k] = max(best[v][k], res[k])
                progress(
                    f"round {r}/{args.rounds} {v:10s} tell {fmt_rate(res['tell']):>9s}"
                    f" ask {fmt_rate(res['ask']):>9s}"
                )

    ref = "baseline" if "baseline" in best else "nosdk"
    rows = []
    for v in variants:
        b = best[v]
        rows.append(
            [
                VARIANTS[v],
                "on" if tracing[v] else "off",
                fmt_rate(b["tell"]),
                pct(b["tell"], best[ref]["tell"]),
                fmt_rate(b["ask"]),
                pct(b["ask"], best[ref]["ask"]),
            ]
        )
    tell_off = best["nosdk"]["tell"]
    runtime_share = best["sdk1"]["tell"]
    app = best["app"]["tell"]
    argv = " ".join(sys.argv[1:])
    out = [
        "## Actor telemetry overhead",
        "",
        f"`python bench/bench_telemetry.py{' ' + argv if argv else ''}` ({machine()}; "
        f"{args.tells:,} tells and {args.asks:,} sequential asks per run, trivial handler, one "
        f"sender; root span per {args.batch} messages in the 1 % rows; best of {args.rounds} "
        f"rounds x {args.reps} reps; {note}).",
        "",
        table(
            [
                "variant",
                "runtime tracing",
                "tells/s",
                f"tell time vs {ref}",
                "asks/s",
                f"ask time vs {ref}",
            ],
            rows,
        ),
        "",
        "Targets (extra time per tell):",
        "",
    ]
    if "baseline" in best:
        out.append(
            f"- no SDK vs baseline: {pct(tell_off, best['baseline']['tell'])} (target <= +5 %)"
        )
    out += [
        f"- SDK 1 % vs the same application spans with runtime telemetry off: "
        f"{pct(runtime_share, app)} (target <= +15 %); vs {ref}, application's root spans "
        f"included: {pct(runtime_share, best[ref]['tell'])}",
        "",
        "Percentages are extra time per message (positive = slower). A shared 2-core machine "
        "moves single runs by several percent; compare rows of one run only.",
    ]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
