"""The admin console in a real browser (Debian's Chromium, driven by Playwright) against a running
manager with seven real worker processes. Screenshots land in test-artifacts/screenshots/.
"""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.e2e.conftest import ADMIN_TOKEN, SEVEN_WORKERS, VIEWER_TOKEN, login, screenshot

SECRET = "sk-console-secret"
RUNNING = re.compile(r"^(Healthy|Running)$")  # a fresh process is Running until its first heartbeat


def row(page, name: str):  # type: ignore[no-untyped-def]
    return page.locator(f'#worker-rows tr[data-worker="{name}"]')


def cell(page, name: str, key: str):  # type: ignore[no-untyped-def]
    return row(page, name).locator(f'[data-cell="{key}"]')


def fetch_status(page, method: str, path: str, body: str | None = None) -> int:  # type: ignore[no-untyped-def]
    """Sends a request from the page itself, with its session cookie and the page's CSRF token."""
    return int(
        page.evaluate(
            """async ([method, path, body]) => {
            const csrf = document.querySelector('meta[name="csrf-token"]').content;
            const r = await fetch(path, {method, body, headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf}});
            return r.status;
        }""",
            [method, path, body],
        )
    )


def test_without_login_pages_send_you_to_sign_in_and_actions_are_refused(page, console):
    before = console.worker("reddit")
    page.goto("/workers")
    expect(page).to_have_url(re.compile(r"/workers/login\?next=/workers$"))
    expect(page.get_by_role("heading", name="Sign in to the console")).to_be_visible()
    screenshot(page, "login")

    page.get_by_label("Access token").fill("not-the-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not valid")
    expect(page.get_by_label("Access token")).to_have_attribute("aria-invalid", "true")

    page.goto("/workers/reddit")
    expect(page).to_have_url(re.compile(r"/workers/login\?next=/workers/reddit$"))
    for method, path, body in [
        ("POST", "/api/workers/reddit/restart", None),
        ("POST", "/api/workers/reddit/stop", None),
        ("PUT", "/api/flags/reddit_enabled", {"enabled": False}),
        ("PUT", "/api/settings/reddit_batch_size", {"value": 1}),
    ]:
        response = page.request.fetch(path, method=method, data=body)
        assert response.status == 401, (method, path, response.status)
    assert page.request.get("/api/trends").status == 401
    after = console.worker("reddit")
    assert (after["pid"], after["restartCount"], after["state"]) == (before["pid"], before["restartCount"], "running")
    assert console.sql("SELECT enabled FROM feature_flags WHERE flag_name = 'reddit_enabled'") == [(True,)]


def test_login_gives_a_strict_httponly_session_and_changes_need_its_csrf_token(page, console):
    login(page)
    cookie = next(c for c in page.context.cookies() if c["name"] == "wm_session")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert ADMIN_TOKEN not in page.content()
    assert page.request.post("/api/workers/reddit/restart").status == 403  # the cookie alone is not enough
    assert console.worker("reddit")["restartCount"] == 0

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/workers/login$"))
    page.goto("/workers")
    expect(page).to_have_url(re.compile(r"/workers/login"))


def test_overview_shows_the_seven_workers_and_updates_live(page, console):
    login(page)
    expect(page.locator("#worker-rows tr")).to_have_count(7)
    for name in SEVEN_WORKERS:
        expect(cell(page, name, "status")).to_have_text("Healthy")
        expect(cell(page, name, "verdict")).to_have_text(re.compile(r"Healdec\s+healthy"))
        expect(cell(page, name, "pid")).to_have_text(str(console.worker(name)["pid"]))
        owner = console.worker(name)["owner"]  # the manager holding its lease
        expect(cell(page, name, "owner")).to_have_text(f"on {owner['host']} · manager {owner['managerId']}")
    expect(page.locator('[data-summary="healthy"]')).to_have_text("7")
    items = cell(page, "farcaster", "items")
    first = items.inner_text()
    expect(items).not_to_have_text(first, timeout=4000)  # live, without a reload
    expect(cell(page, "farcaster", "lastRun").locator("time")).to_have_attribute("title", re.compile(r"UTC$"))
    expect(cell(page, "farcaster", "trend").locator("svg.spark")).to_be_visible()
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    assert SECRET not in page.content()
    screenshot(page, "overview")


def test_flag_toggle_pauses_the_worker_and_back(page, console):
    login(page)
    switch = page.get_by_role("switch", name="reddit_enabled")
    expect(switch).to_have_attribute("aria-checked", "true")
    switch.click()
    expect(cell(page, "reddit", "status")).to_have_text("Paused", timeout=5000)
    assert console.worker("reddit")["state"] == "paused"
    flag = page.locator('li[data-flag="reddit_enabled"]')
    expect(flag).to_contain_text("Changed by api:admin")
    expect(row(page, "reddit").get_by_role("button", name="Restart reddit")).to_be_disabled()
    screenshot(page, "overview-reddit-paused")

    page.get_by_role("button", name="History of reddit_enabled").click()
    history = page.get_by_role("dialog", name="History of reddit_enabled")
    expect(history.locator("#audit-rows tr").first).to_contain_text("api:admin")
    expect(history.locator("#audit-rows tr").first).to_contain_text("On → Off")
    screenshot(page, "flag-history", full_page=False)
    page.keyboard.press("Escape")
    expect(history).to_be_hidden()

    switch.focus()
    page.keyboard.press("Space")  # the switch works from the keyboard too
    expect(cell(page, "reddit", "status")).to_have_text("Healthy", timeout=10_000)
    expect(switch).to_have_attribute("aria-checked", "true")


def test_restart_from_the_console_counts_a_restart(page, console):
    login(page)
    before = console.worker("ethereum")
    restarts = cell(page, "ethereum", "restarts")
    expect(restarts).to_have_text(str(before["restartCount"]))
    page.get_by_role("button", name="Restart ethereum").click()
    expect(page.locator("#toasts")).to_contain_text("Restart requested for ethereum")
    expect(restarts).to_have_text(str(before["restartCount"] + 1), timeout=5000)
    expect(cell(page, "ethereum", "status")).to_have_text(RUNNING, timeout=10_000)
    expect(cell(page, "ethereum", "pid")).not_to_have_text(str(before["pid"]))
    assert console.worker("ethereum")["restartCount"] == before["restartCount"] + 1


def test_worker_page_shows_logs_events_errors_and_masked_settings(page, console):
    login(page)
    page.get_by_role("link", name="search", exact=True).click()
    expect(page).to_have_url(re.compile(r"/workers/search$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("search")
    logs = page.locator("#logs")
    expect(logs).to_contain_text("search worker started")
    expect(logs.locator(".stream-stderr").first).to_contain_text("configured to fail")
    times = logs.locator("li.log-line time").evaluate_all("nodes => nodes.map(n => n.getAttribute('datetime'))")
    assert times == sorted(times, reverse=True), "log lines are newest first"
    expect(page.locator("#events li.event").last).to_contain_text("Started")
    expect(page.locator("#errors")).to_contain_text("item 3 is configured to fail")
    config = page.locator("#config")
    expect(config.locator("tr", has_text="api_key")).to_contain_text("hidden (secret)")
    expect(config).to_contain_text("fail_items")
    expect(page.locator("#items-chart svg.bars")).to_be_visible()
    expect(page.locator("#errors-chart svg.bars")).to_be_visible()
    assert SECRET not in page.content()
    screenshot(page, "worker-search")

    page.get_by_role("button", name="Stop", exact=True).click()
    expect(page.locator("#worker-head [data-cell=status]")).to_have_text("Stopped", timeout=8000)
    expect(page.locator("#events")).to_contain_text("Stopped")
    page.get_by_role("button", name="Start", exact=True).click()
    expect(page.locator("#worker-head [data-cell=status]")).to_have_text(RUNNING, timeout=10_000)


def test_settings_are_checked_in_the_browser_and_by_the_server(page, console):
    login(page)
    page.get_by_role("button", name="Add setting").click()
    dialog = page.get_by_role("dialog", name="Add a setting")
    dialog.get_by_label("Key").fill("reddit_batch_size")
    value = dialog.get_by_label("Value (JSON)")
    value.fill("{oops")
    expect(dialog.locator("#setting-value-error")).to_contain_text("Not valid JSON")
    expect(value).to_have_attribute("aria-invalid", "true")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_visible()
    screenshot(page, "settings-invalid-json", full_page=False)
    assert console.sql("SELECT count(*) FROM settings") == [(0,)]

    value.fill("7")
    expect(value).not_to_have_attribute("aria-invalid", "true")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()
    saved = page.locator('#settings-rows tr[data-setting="reddit_batch_size"]')
    expect(saved).to_contain_text("7")
    expect(saved).to_contain_text("api:admin")
    assert console.sql("SELECT value FROM settings WHERE key = 'reddit_batch_size'") == [(7,)]

    # The server checks too: malformed JSON sent past the form is refused and changes nothing.
    assert fetch_status(page, "PUT", "/api/settings/reddit_batch_size", "{oops") == 422
    assert console.sql("SELECT value FROM settings WHERE key = 'reddit_batch_size'") == [(7,)]

    page.get_by_role("button", name="Edit reddit_batch_size").click()
    edit = page.get_by_role("dialog", name="Edit setting")
    expect(edit.get_by_label("Value (JSON)")).to_have_value("7")
    expect(edit.get_by_label("Key")).to_have_attribute("readonly", "")
    edit.get_by_role("button", name="Cancel").click()
    page.locator("#settings").scroll_into_view_if_needed()
    screenshot(page, "settings")


def test_viewer_sees_everything_but_has_no_controls_and_every_change_is_refused(page, console):
    login(page, VIEWER_TOKEN)
    expect(page.locator("#worker-rows tr")).to_have_count(7)
    expect(page.get_by_text("Viewer · read-only")).to_be_visible()
    expect(page.locator('li[data-flag="reddit_enabled"]')).to_contain_text("On")
    assert page.get_by_role("switch").count() == 0
    assert page.locator("button[data-action]").count() == 0
    assert page.get_by_role("button", name="Add setting").count() == 0
    expect(page.get_by_role("button", name="History of reddit_enabled")).to_be_visible()
    screenshot(page, "viewer-overview")

    before = console.worker("reddit")
    for method, path, body in [
        ("POST", "/api/workers/reddit/restart", None),
        ("POST", "/api/workers/reddit/stop", None),
        ("PUT", "/api/flags/reddit_enabled", '{"enabled": false}'),
        ("PUT", "/api/settings/reddit_batch_size", '{"value": 1}'),
    ]:
        assert fetch_status(page, method, path, body) == 403, (method, path)
    after = console.worker("reddit")
    assert (after["pid"], after["restartCount"]) == (before["pid"], before["restartCount"])
    assert console.sql("SELECT enabled FROM feature_flags WHERE flag_name = 'reddit_enabled'") == [(True,)]

    page.goto("/workers/reddit")
    expect(page.locator("#logs .log-line").first).to_be_visible()
    assert page.locator("button[data-action]").count() == 0


def test_unknown_worker_page_is_a_404(page, console):
    login(page)
    response = page.goto("/workers/nope")
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", name="No such worker")).to_be_visible()


def test_console_answers_the_bearer_token_and_sends_strict_security_headers(console):
    page = console.api("GET", "/workers")
    assert page.status_code == 200 and all(f'data-worker="{name}"' in page.text for name in SEVEN_WORKERS)
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
    assert SECRET not in page.text and SECRET not in console.api("GET", "/workers/search").text
    assert console.api("GET", "/workers", token="wrong").status_code == 401
    anonymous = console.http.get("/workers", follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/workers/login?next=/workers"
    trends = console.api("GET", "/api/trends?minutes=5&worker=reddit").json()
    assert len(trends["minutes"]) == 5 and set(trends["workers"]) == {"reddit"}
    assert sum(trends["workers"]["reddit"]["items"]) > 0
    assert console.api("GET", "/api/trends?worker=nope").status_code == 404


def test_unhappy_states_are_shown_in_words_and_a_failed_worker_can_be_restarted(troubled_page, troubled):
    page = troubled_page
    login(page)
    expect(cell(page, "flaky", "status")).to_have_text("Failed")
    expect(cell(page, "flaky", "verdict")).to_contain_text("down")
    expect(cell(page, "oneshot", "status")).to_have_text("Stopped")
    expect(cell(page, "legacy", "status")).to_have_text("Disabled")
    expect(cell(page, "solana", "status")).to_have_text("Healthy")
    expect(page.locator('[data-summary="attention"]')).to_have_text("1")
    expect(row(page, "legacy").get_by_role("button", name="Restart legacy")).to_be_disabled()
    expect(row(page, "flaky").get_by_role("button", name="Start flaky", exact=True)).to_be_visible()
    screenshot(page, "overview-unhappy-states")

    page.get_by_role("link", name="flaky", exact=True).click()
    events = page.locator("#events")
    expect(events).to_contain_text("Failed: restart budget spent")
    expect(events).to_contain_text("Exited with code 3")
    expect(events).to_contain_text("Backoff: restarting in")
    expect(page.locator("#logs .stream-stderr").first).to_contain_text("connection refused")
    screenshot(page, "worker-failed")

    restarts = page.locator('#worker-head ~ section [data-cell="restarts"]')
    before = int(restarts.inner_text())
    page.get_by_role("button", name="Restart", exact=True).click()
    expect(restarts).not_to_have_text(str(before))
    expect(page.locator("#worker-head [data-cell=status]")).to_have_text("Failed", timeout=15_000)
