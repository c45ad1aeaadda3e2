"""Browser fixtures: one manager with the seven standard worker names (run as quick example
workers) per test module, Debian's Chromium driven by Playwright, and screenshots as artifacts.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.manager import ROOT, TOKEN, ManagerHandle, example_worker
from tests.support.postgres import fresh_database

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
ADMIN_TOKEN = TOKEN
VIEWER_TOKEN = "test-viewer-token"

# The standard names, each a fast example worker; `search` fails some items so errors show up.
SEVEN_WORKERS = {
    "farcaster": example_worker(description="Casts and reactions from a Farcaster Hub"),
    "reddit": example_worker(description="Posts and comments from chosen subreddits"),
    "ethereum": example_worker(description="Blocks and transfers from Ethereum"),
    "base": example_worker(description="Blocks and transfers from BASE"),
    "solana": example_worker(description="Slots and transactions from Solana"),
    "ai": example_worker(description="Embeddings and summaries of new content"),
    "search": example_worker(description="Search index upkeep", fail_items=[3, 17, 42], api_key="sk-console-secret"),
}


# Thirty minutes of earlier cycles, as a manager that has run for a while would have, so the trend
# charts have a shape.
SEED_HISTORY = """
INSERT INTO cycle_runs (worker_name, pid, started_at, finished_at, ok, items, item_errors)
SELECT %(name)s, 1, t - interval '1 second', t, true,
       round(%(base)s * (1 + 0.22 * sin(i / 3.0 + %(phase)s) + 0.06 * sin(i * 1.7)))::int,
       CASE WHEN %(errors)s AND i %% 6 = 0 THEN 1 + i %% 4 ELSE 0 END
FROM generate_series(1, 30) AS i,
     LATERAL (SELECT date_trunc('minute', now()) - make_interval(mins => i) + interval '1 second' AS t) AS m
"""


@pytest.fixture(scope="module")
def console(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagerHandle]:
    """A running manager with the seven workers, all healthy, and a viewer token configured."""
    with fresh_database(pg_admin_url) as url:
        handle = ManagerHandle(
            tmp_path_factory.mktemp("console"), url, SEVEN_WORKERS, env={"VIEWER_TOKEN": VIEWER_TOKEN}
        )
        try:
            handle.start()
            for name in SEVEN_WORKERS:
                handle.wait_worker(name, lambda w: w["healthy"] and w["itemsProcessed"] > 0, timeout=30)
            for i, name in enumerate(SEVEN_WORKERS):
                handle.sql(SEED_HISTORY, {"name": name, "base": 900 + 40 * i, "phase": i, "errors": name == "search"})
            yield handle
        finally:
            handle.close()


CRASHING = [
    sys.executable,
    "-c",
    "import sys; print('cannot reach upstream: connection refused', file=sys.stderr); sys.exit(3)",
]
EXITING = [sys.executable, "-c", "print('nothing to do')"]


@pytest.fixture(scope="module")
def troubled(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagerHandle]:
    """A manager whose workers show the unhappy states: failed, stopped, disabled, next to a healthy one."""
    workers = {
        "solana": example_worker(description="Slots and transactions from Solana"),
        "flaky": {"command": CRASHING, "heartbeat": False, "description": "Crashes at once, every time"},
        "oneshot": {"command": EXITING, "heartbeat": False, "description": "Exits 0 after one run"},
        "legacy": example_worker(enabled=False, description="Switched off in the config"),
    }
    with fresh_database(pg_admin_url) as url:
        handle = ManagerHandle(tmp_path_factory.mktemp("troubled"), url, workers)
        try:
            handle.start()
            handle.wait_worker("flaky", lambda w: w["state"] == "failed", timeout=20)
            handle.wait_worker("oneshot", lambda w: w["state"] == "stopped", timeout=10)
            handle.wait_worker("solana", lambda w: w["healthy"], timeout=20)
            yield handle
        finally:
            handle.close()


# Module scope: Playwright's sync API keeps an event loop running in this thread while it lives,
# which would break later tests that call asyncio.run() (the Solana worker does).
@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser, console: ManagerHandle) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """A fresh browser context (no cookies) pointed at the console's manager."""
    yield from _page(browser, console)


@pytest.fixture
def troubled_page(browser, troubled: ManagerHandle) -> Iterator[object]:  # type: ignore[no-untyped-def]
    yield from _page(browser, troubled)


def _page(browser, handle: ManagerHandle) -> Iterator[object]:  # type: ignore[no-untyped-def]
    context = browser.new_context(base_url=handle.base_url, viewport={"width": 1480, "height": 940})
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # The Content-Security-Policy allows only our own files: anything it blocks is a bug.
    page.on("console", lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None)
    try:
        yield page
        assert not errors, f"JavaScript errors or blocked content on the page: {errors}"
    finally:
        context.close()


def screenshot(page, name: str, full_page: bool = True) -> Path:  # type: ignore[no-untyped-def]
    """Saves a screenshot under test-artifacts/screenshots/ (git-ignored) for people to look at."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def login(page, token: str = ADMIN_TOKEN, next_path: str = "/workers") -> None:  # type: ignore[no-untyped-def]
    page.goto(f"/workers/login?next={next_path}")
    page.get_by_label("Access token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**{next_path}")
