"""Dashboard: 100,000 events in Chromium, and a live run at 1,000 events/s.

Measured in the page with its own performance API (Debian's chromium driven by Playwright,
headless, 1500x900):

1. **History.** A feed of synthetic swarm events (``tests/dashboard_events.py``: plans, model
   calls, file changes, test runs, verdicts, linked by causation ids; 5 per item), served by
   the dashboard's app on loopback. The page opens, streams them (SSE) and renders the log, the
   graph and the tables: ``first render`` is the page's ``dashboard:history-rendered`` mark
   (navigation start to the first frame showing every event); first contentful paint beside it.
2. **Scrolling.** The log is scrolled by 100 rows a frame for 300 frames. Per frame: the work
   (the log's render and the layout it causes, forced and timed in the frame), and the
   interval between animation frames (a frame that took more than 16.7 ms shows as a longer
   interval); long tasks counted by a ``PerformanceObserver``.
3. **Live.** A fresh page on an empty run; events are appended to a ``MemoryJournal`` at
   1,000/s (10 every 10 ms) and followed into the feed through ``journal.tail`` (what the
   dashboard does with a run's journal). The page records, per batch received, its lag (now
   minus the newest event's timestamp) and its backlog (rows the server had that the page had
   not received yet). First 10 s against the last 10 s: a backlog that grows shows there.

Run: python bench/bench_dashboard.py [--events 100000] [--live-seconds 60] [--rate 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from _common import ROOT, machine, progress, table

sys.path.insert(0, str(ROOT / "tests"))
from dashboard_events import synthetic_events
from swarm_actors._dashboard import Feed, bind, create_app, serve
from swarm_actors.events import MemoryJournal

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")


@contextlib.contextmanager
def served(feed: Feed, fill: Any = None) -> Iterator[tuple[str, asyncio.AbstractEventLoop]]:
    """The dashboard app over ``feed`` on a loopback port, in a thread with its own loop."""
    sock = bind("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    task: list[asyncio.Task[None]] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        task.append(loop.create_task(serve(create_app(feed, fill), sock, on_ready=ready.set)))
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(task[0])

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if not ready.wait(30):
        raise RuntimeError("the dashboard did not start")
    try:
        yield url, loop
    finally:
        loop.call_soon_threadsafe(task[0].cancel)
        thread.join(10)


def poll(page: Any, expression: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(f"() => {expression}")
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout} s for {expression}")
        time.sleep(0.05)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


SCROLL_JS = """async (px) => {
  const log = window.dashboard.log, root = log.root;
  let longTasks = 0;
  const obs = new PerformanceObserver((list) => { longTasks += list.getEntries().length; });
  obs.observe({ type: 'longtask', buffered: false });
  root.scrollTop = 0; log.follow = false; log.dirty = true;
  const work = [], intervals = [];
  let last = 0;
  await new Promise((done) => {
    let frames = 0;
    function step(ts) {
      if (last) intervals.push(ts - last);
      last = ts;
      const t0 = performance.now();
      root.scrollTop += px;                   // a frame (rows are 20 px)
      log.dirty = true; log.render();
      void root.firstChild.offsetHeight;      // force the layout the frame would do
      work.push(performance.now() - t0);
      if (++frames < 300) requestAnimationFrame(step); else done();
    }
    requestAnimationFrame(step);
  });
  obs.disconnect();
  return { work, intervals, longTasks, top: root.scrollTop };
}"""


def history(browser: Any, events: int) -> dict[str, Any]:
    progress(f"history: building {events:,} events")
    feed = Feed(run_id="bench")
    journal = MemoryJournal()
    for event in synthetic_events(events // 5, coders=8):
        journal.append_nowait(event)
    t0 = time.perf_counter()
    for entry in journal.entries():
        feed.add(entry)
    feed_s = time.perf_counter() - t0
    feed.set_status("done")
    with served(feed) as (url, _):
        page = browser.new_page(viewport={"width": 1500, "height": 900})
        progress(f"history: opening the page on {len(feed):,} events")
        page.goto(url)
        poll(page, "performance.getEntriesByName('dashboard:history-rendered').length > 0")
        rendered = page.evaluate(
            "() => performance.getEntriesByName('dashboard:history-rendered')[0].startTime"
        )
        fcp = page.evaluate(
            "() => (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime"
        )
        first_rows = page.evaluate(
            "() => (performance.getEntriesByName('dashboard:first-rows')[0] || {}).startTime"
        )
        shown = page.evaluate("() => window.dashboard.store.rows.length")
        heap = page.evaluate("() => performance.memory ? performance.memory.usedJSHeapSize : 0")
        progress("history: scrolling")
        scroll = page.evaluate(SCROLL_JS, 2000)  # 100 rows a frame: dragging the scrollbar
        wheel = page.evaluate(SCROLL_JS, 100)  # 5 rows a frame: a fast wheel or trackpad
        page.close()
    return {
        "events": len(feed),
        "shown": shown,
        "feed_s": feed_s,
        "rendered_ms": rendered,
        "fcp_ms": fcp,
        "first_rows_ms": first_rows,
        "heap_mb": heap / 1e6,
        "scroll": scroll,
        "wheel": wheel,
    }


def live(browser: Any, seconds: float, rate: int) -> dict[str, Any]:
    journal = MemoryJournal()
    feed = Feed(run_id="bench-live")
    produced = [0]

    async def fill(feed: Feed) -> None:
        feed.set_status("live")
        async for entry in journal.tail(start_sequence=1):
            feed.add(entry)

    async def produce(stop: float) -> None:
        source = synthetic_events(10**9, coders=8)
        per_tick = rate // 100  # appended every 10 ms
        start = time.monotonic()
        n = 0
        while time.monotonic() < stop:
            for _ in range(per_tick):
                journal.append_nowait(next(source))
            n += per_tick
            produced[0] = n
            # Paced by the schedule, not by sleeping a fixed time: no drift below the rate.
            await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))

    with served(feed, fill) as (url, loop):
        page = browser.new_page(viewport={"width": 1500, "height": 900})
        page.goto(url)
        poll(page, "window.dashboard.metrics.statuses.includes('live')")
        progress(f"live: {rate:,} events/s for {seconds:.0f} s")
        stop = time.monotonic() + seconds
        future = asyncio.run_coroutine_threadsafe(produce(stop), loop)
        future.result(timeout=seconds + 60)
        total = produced[0]
        poll(page, f"window.dashboard.store.rows.length >= {total}", timeout=60)
        drained = time.monotonic() - stop
        metrics = page.evaluate(
            "() => ({lag: window.dashboard.metrics.lag, backlog: window.dashboard.metrics.backlog,"
            " frame: window.dashboard.log.lastRender})"
        )
        page.close()
    lag, backlog = metrics["lag"], metrics["backlog"]
    t_start = lag[0][0] if lag else 0

    def window(series: list[list[float]], lo: float, hi: float) -> list[float]:
        return [v for t, v in series if lo <= (t - t_start) / 1000 < hi]

    span = (lag[-1][0] - t_start) / 1000 if lag else 0
    first_w, last_w = min(10.0, span / 2), max(span - 10.0, span / 2)
    return {
        "produced": total,
        "seconds": seconds,
        "drained_s": drained,
        "batches": len(lag),
        "lag_first": window(lag, 0, first_w),
        "lag_last": window(lag, last_w, span + 1),
        "backlog_first": window(backlog, 0, first_w),
        "backlog_last": window(backlog, last_w, span + 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--live-seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=int, default=1000, help="live events per second")
    parser.add_argument("--chromium", default=os.environ.get("SWARM_CHROMIUM"))
    args = parser.parse_args()
    executable = args.chromium or shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        print("## Dashboard\n\nskipped: no chromium (apt-get install chromium)\n")
        return 0
    from playwright.sync_api import sync_playwright

    launch_args = ["--no-sandbox"] if os.geteuid() == 0 else []
    launch_args.append("--enable-precise-memory-info")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=launch_args)
        version = browser.version
        hist = history(browser, args.events)
        run = live(browser, args.live_seconds, args.rate)
        browser.close()

    ms = lambda v: f"{v:.1f} ms"  # noqa: E731
    print("## Dashboard (Chromium, the page's performance API)\n")
    print(
        f"`python bench/bench_dashboard.py --events {args.events} --live-seconds "
        f"{args.live_seconds:g} --rate {args.rate}` on {machine()}, Chromium {version} "
        f"headless, 1500x900, server and browser on the same machine; load average before: "
        f"{load}.\n"
    )
    rows: list[list[object]] = [
        [
            f"first render of {hist['events']:,} events (navigation to every event shown)",
            ms(hist["rendered_ms"]),
            "< 2000 ms",
            "met" if hist["rendered_ms"] < 2000 else "NOT met",
        ],
        ["first contentful paint", ms(hist["fcp_ms"] or 0), "", ""],
        ["first batch of rows received", ms(hist["first_rows_ms"] or 0), "", ""],
    ]
    for name, s in (
        ("dragging, 100 rows a frame", hist["scroll"]),
        ("wheel, 5 rows a frame", hist["wheel"]),
    ):
        work, intervals = s["work"], s["intervals"]
        rows += [
            [
                f"scroll ({name}): work per frame (render + layout), p50 / p95 / max",
                f"{ms(statistics.median(work))} / {ms(pct(work, 0.95))} / {ms(max(work))}",
                "< 16 ms",
                "met"
                if pct(work, 0.95) < 16
                else ("p50 met" if statistics.median(work) < 16 else "NOT met"),
            ],
            [
                f"scroll ({name}): frame interval, p50 / p95 / max",
                f"{ms(statistics.median(intervals))} / {ms(pct(intervals, 0.95))} / "
                f"{ms(max(intervals))}",
                "",
                f"{sum(i > 20 for i in intervals)} of {len(intervals)} over 20 ms",
            ],
            [f"scroll ({name}): long tasks (> 50 ms)", s["longTasks"], "0", ""],
        ]
    rows += [
        ["JS heap with every event loaded", f"{hist['heap_mb']:.0f} MB", "", ""],
        ["server: rows made (Feed.add)", f"{hist['events'] / hist['feed_s']:,.0f}/s", "", ""],
    ]
    print(table(["measure", "measured", "target", "status"], rows))
    print()

    def stats(values: list[float]) -> str:
        if not values:
            return "-"
        return f"{statistics.mean(values):.0f} / {pct(values, 0.95):.0f} / {max(values):.0f}"

    grew = (
        statistics.mean(run["backlog_last"] or [0])
        > 2 * statistics.mean(run["backlog_first"] or [0]) + args.rate * 0.1
    )
    print(
        f"Live: {run['produced']:,} events at {args.rate:,}/s for {run['seconds']:g} s; "
        f"the page had every one {run['drained_s']:.2f} s after the last was appended; "
        f"{run['batches']:,} batches received (the server sends at most 20 a second).\n"
    )
    print(
        table(
            ["window", "lag ms (mean / p95 / max)", "backlog rows (mean / p95 / max)"],
            [
                ["first 10 s", stats(run["lag_first"]), stats(run["backlog_first"])],
                ["last 10 s", stats(run["lag_last"]), stats(run["backlog_last"])],
                ["backlog growing?", "", "YES" if grew else "no"],
            ],
        )
    )
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
