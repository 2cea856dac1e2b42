"""Mission control in a real browser (Debian's chromium driven by Playwright), during a demo run.

One demo run (the deterministic brain) and one dashboard process for the module: the page is
opened while the run goes on, and follows it through the run's live.json. Screenshots go to
``$SWARM_TEST_ARTIFACTS/dashboard`` (else a temporary directory, printed).
Skips, saying why, only when Playwright or a chromium executable cannot be had.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright for Python is not installed (the test group)"
)

ROOT = Path(__file__).resolve().parent.parent
RUN = "dash-live"
ROWS = ".log-row[data-seq]:not([hidden])"  # the log's rows in view (the pool's others hide)


def chromium() -> str | None:
    """Debian's chromium (or $SWARM_CHROMIUM): Playwright must not download its own."""
    named = os.environ.get("SWARM_CHROMIUM")
    if named:
        return named if Path(named).is_file() else None
    return next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser")) if p is not None), None
    )


def wait_for(what: str, check: Any, timeout: float = 90.0) -> Any:
    """Poll ``check()`` until it is truthy (its value), failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = os.environ.get("SWARM_TEST_ARTIFACTS")
    path = Path(base) / "dashboard" if base else tmp_path_factory.mktemp("dashboard-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    print(f"dashboard screenshots: {path}", file=sys.stderr)
    return path


@pytest.fixture(scope="module")
def live_dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The URL of a dashboard following a demo run that is going on when it starts, and the
    run's directory."""
    executable = chromium()
    if executable is None:
        pytest.skip("no chromium executable (apt-get install chromium, or set $SWARM_CHROMIUM)")
    data = tmp_path_factory.mktemp("dashboard-data")
    cli = [sys.executable, "-m", "swarm_actors._cli"]
    log = (data / "demo.log").open("w")
    board_log = (data / "dashboard.log").open("w")
    demo = subprocess.Popen(
        [*cli, "demo", "--data-dir", str(data), "--run", RUN, "-q"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    board = None
    try:
        live = data / "runs" / RUN / "live.json"
        wait_for("the demo's live.json", lambda: live.exists() or demo.poll() is not None)
        assert demo.poll() is None, (data / "demo.log").read_text()
        board = subprocess.Popen(
            [*cli, "dashboard", "--data-dir", str(data), "--run", RUN, "--port", "0", "--json"],
            stdout=subprocess.PIPE,
            stderr=board_log,
            text=True,
            cwd=ROOT,
        )
        assert board.stdout is not None
        line = board.stdout.readline()
        assert line, (data / "dashboard.log").read_text()
        yield json.loads(line)["url"], data / "runs" / RUN
    finally:
        for proc in (board, demo):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
        if board is not None and board.stdout is not None:
            board.stdout.close()
        log.close()
        board_log.close()


@pytest.fixture(scope="module")
def page(browser: Any, live_dashboard: tuple[str, Path], artifacts: Path) -> Iterator[Any]:
    page = browser.new_page(viewport={"width": 1500, "height": 900})
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: (
            problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None
        ),
    )
    page.problems = problems
    page.goto(live_dashboard[0])
    yield page
    page.screenshot(path=str(artifacts / "final.png"))
    page.close()


def js(page: Any, expression: str) -> Any:
    # page.evaluate runs outside the page's CSP; wait_for_function would need 'unsafe-eval'.
    return page.evaluate(f"() => {expression}")


def test_agents_appear_while_the_run_goes_on(page: Any, artifacts: Path) -> None:
    roles = wait_for(
        "architect, coder and reviewer nodes in the graph",
        lambda: (
            {"architect", "coder", "reviewer"}
            <= set(js(page, "[...window.dashboard.store.agents.values()].map(a => a.role)"))
            and page.locator("#graph .node").count() >= 3
            and js(page, "[...window.dashboard.store.agents.values()].map(a => a.role)")
        ),
    )
    assert "live" in js(page, "window.dashboard.metrics.statuses")  # seen while it went on
    wait_for("a causal edge between agents", lambda: page.locator("#graph .edge").count() >= 1)
    assert page.locator("#status").inner_text().startswith(("live", "done"))
    page.screenshot(path=str(artifacts / "agents.png"))
    assert len(roles) >= 3
    assert not page.problems, page.problems  # no CSP violation, no script error


def test_clicking_a_change_shows_its_diff(page: Any, artifacts: Path) -> None:
    path = wait_for(
        "a file change", lambda: js(page, "window.dashboard.store.rows.find(r => r.op)?.res")
    )
    page.locator("#filters select[name=kind]").select_option("state_change")
    page.locator("#filters input[name=resource]").fill(path)
    wait_for("the change in the log", lambda: page.locator(ROWS).count() > 0)
    assert path in page.locator(ROWS).first.inner_text()
    page.locator(ROWS).first.click()
    diff = page.locator("#detail #diff")
    diff.wait_for(timeout=30_000)
    text = diff.inner_text()
    assert "@@" in text
    assert "\n+" in text or text.startswith("+")
    detail = page.locator("#detail").inner_text()
    assert "before" in detail
    assert "after" in detail
    assert any(len(w) == 64 and all(c in "0123456789abcdef" for c in w) for w in detail.split())
    page.screenshot(path=str(artifacts / "diff.png"))
    page.locator("#filters button[type=reset]").click()
    assert not page.problems, page.problems


def test_the_slider_moves_the_workspace(page: Any, artifacts: Path) -> None:
    first = wait_for(
        "a file change",
        lambda: js(page, "window.dashboard.store.rows.find(r => r.op)?.s"),
    )
    slider = page.locator("#slider")
    wait_for("the slider to reach the change", lambda: int(slider.get_attribute("max")) >= first)
    tree = page.locator("#tree")

    def view_at(seq: int) -> tuple[str, str]:
        slider.fill(str(seq))
        page.locator(f"#tree[data-at='{seq}']").wait_for(timeout=30_000)
        return tree.inner_text(), page.locator("#replay-diff").inner_text()

    before_tree, before_diff = view_at(first - 1)
    page.screenshot(path=str(artifacts / "replay-before.png"))
    after_tree, after_diff = view_at(first)
    page.screenshot(path=str(artifacts / "replay-after.png"))
    assert (before_tree, before_diff) != (after_tree, after_diff)
    assert "@@" in after_diff
    assert page.locator("#tree li.changed").count() >= 1
    assert not page.problems, page.problems


@pytest.mark.timeout(300)  # the demo takes 20 s on an idle machine, minutes on a busy one
def test_the_page_follows_the_run_to_its_end(
    page: Any, live_dashboard: tuple[str, Path], artifacts: Path
) -> None:
    # The run ends: its server goes, the dashboard reads the rest from the store, and the
    # page has every event the run recorded, none twice.
    summary = live_dashboard[1] / "summary.json"
    wait_for("the run's end", summary.exists, timeout=240)
    wait_for(
        "the page to say done",
        lambda: js(page, "window.dashboard.metrics.statuses.at(-1)") == "done",
    )
    events = json.loads(summary.read_text())["events"]
    seqs = js(page, "window.dashboard.store.rows.map(r => r.s)")
    assert len(seqs) == len(set(seqs)) >= events
    assert seqs == sorted(seqs)
    # The change selected while the run went on shows the verdict that came later.
    wait_for("the verdict on the selected change", lambda: page.locator("#detail .verdict").count())
    page.screenshot(path=str(artifacts / "done.png"))
    assert not page.problems, page.problems


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium()
    if executable is None:
        pytest.skip("no chromium executable (apt-get install chromium, or set $SWARM_CHROMIUM)")
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    # Root (a CI container) cannot use chromium's sandbox.
    args = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    with sync_api.sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(executable_path=executable, args=args)
        except sync_api.Error as exc:
            pytest.skip(f"chromium at {executable} does not start: {exc}")
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def synthetic_board() -> Iterator[str]:
    """A dashboard over synthetic events (trace ids, model calls) with a Jaeger and a token,
    served in a thread; its URL without the token."""
    import asyncio
    import contextlib
    import threading

    from dashboard_events import synthetic_events
    from swarm_actors._dashboard import Feed, bind, create_app, serve
    from swarm_actors.events import MemoryJournal

    journal = MemoryJournal()
    for event in synthetic_events(40, coders=3):
        journal.append_nowait(event)
    feed = Feed(run_id="synthetic")
    for entry in journal.entries():
        feed.add(entry)
    feed.set_status("done")
    app = create_app(feed, token="tok3n", loopback=False, jaeger="http://jaeger.example:16686")
    sock = bind("127.0.0.1", 0)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    task = loop.create_task(serve(app, sock, on_ready=ready.set))

    def run() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(task)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(30)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    loop.call_soon_threadsafe(task.cancel)
    thread.join(10)
    loop.close()


def test_token_trace_link_filters_and_model_calls(
    browser: Any, synthetic_board: str, artifacts: Path
) -> None:
    page = browser.new_page(viewport={"width": 1500, "height": 900})
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    refused = page.goto(synthetic_board)
    assert refused is not None
    assert refused.status == 403  # no token, nothing
    page.goto(synthetic_board + "?token=tok3n")  # the cookie carries it from here
    wait_for("every event", lambda: js(page, "window.dashboard.store.rows.length") == 5 + 5 * 40)
    # Model calls per agent: 3 coders, tokens and cache hits.
    wait_for("the model table", lambda: page.locator("#models tbody tr").count() == 3)
    table = page.locator("#models").inner_text()
    assert "/coder-1" in table
    assert "%" in table
    # Trace panel: a selected event's trace id, its link to Jaeger, the events of the trace.
    trace = js(page, "window.dashboard.store.rows.find(r => r.k === 'state_change').tr")
    page.locator("#filters input[name=trace]").fill(trace)
    wait_for("the trace's 5 events", lambda: page.locator(ROWS).count() == 5)
    page.locator(ROWS).nth(2).click()
    link = page.locator("#trace a")
    link.wait_for(timeout=30_000)
    assert link.get_attribute("href") == f"http://jaeger.example:16686/trace/{trace}"
    assert "5" in page.locator("#trace").inner_text()
    # Filters: by agent through the graph (a click on a node), by kind.
    page.locator("#filters button[type=reset]").click()
    page.locator("#graph .node[data-agent='/reviewer']").click()
    wait_for(
        "the reviewer's events only",
        lambda: (
            page.locator(ROWS).count() > 0
            # Right after a filter change the match list is empty until the next frame
            # filters the rows again (log.js, setFilter), while the old rows are still drawn:
            # an empty list would pass ``every``.
            and js(
                page,
                "window.dashboard.log.match.length > 0 && window.dashboard.log.match.every(i => "
                "window.dashboard.store.rows[i].a === '/reviewer')",
            )
        ),
    )
    assert js(page, "window.dashboard.log.match.length") == 1 + 2 * 40
    page.screenshot(path=str(artifacts / "synthetic.png"))
    assert not problems, problems
    page.close()
