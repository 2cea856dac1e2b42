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
def live_dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a dashboard following a demo run that is going on when it starts."""
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
        yield json.loads(line)["url"]
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
def page(live_dashboard: str, artifacts: Path) -> Iterator[Any]:
    executable = chromium()
    assert executable is not None
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    args = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    with sync_api.sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(executable_path=executable, args=args)
        except sync_api.Error as exc:
            pytest.skip(f"chromium at {executable} does not start: {exc}")
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
        page.goto(live_dashboard)
        yield page
        page.screenshot(path=str(artifacts / "final.png"))
        browser.close()


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
    assert page.locator("#graph .edge").count() >= 1  # causation between agents
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
    wait_for("the change in the log", lambda: page.locator(".log-row[data-seq]").count() > 0)
    assert path in page.locator(".log-row[data-seq]").first.inner_text()
    page.locator(".log-row[data-seq]").first.click()
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
