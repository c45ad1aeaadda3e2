"""Sessions end when the token they were made with changes; sign-in guesses are throttled per
client; search highlights are inert HTML."""

from __future__ import annotations

from starlette.requests import Request

from manager.auth import SESSION_COOKIE, Auth, LoginThrottle, Role
from workers.search.query import inert_highlight


def _request(cookie: str) -> Request:
    return Request(
        {"type": "http", "method": "GET", "path": "/", "headers": [(b"cookie", f"{SESSION_COOKIE}={cookie}".encode())]}
    )


def test_a_session_ends_when_its_token_changes():
    auth = Auth("admin-token-1", "viewer-token-1")
    admin, viewer = auth.new_session(Role.ADMIN), auth.new_session(Role.VIEWER)
    assert auth.principal(_request(admin)).role is Role.ADMIN
    assert auth.principal(_request(viewer)).role is Role.VIEWER
    rotated_viewer = Auth("admin-token-1", "viewer-token-2")
    assert rotated_viewer.principal(_request(viewer)) is None  # the viewer token changed
    assert rotated_viewer.principal(_request(admin)).role is Role.ADMIN  # the admin's did not
    assert Auth("admin-token-1", None).principal(_request(viewer)) is None  # viewer token removed
    assert Auth("admin-token-2", "viewer-token-1").principal(_request(admin)) is None


def test_login_throttle_is_per_client():
    throttle = LoginThrottle()
    for _ in range(LoginThrottle.MAX_FAILURES - 1):
        throttle.failed("10.0.0.1")
    assert throttle.retry_after_s("10.0.0.1") == 0
    throttle.failed("10.0.0.1")
    assert 0 < throttle.retry_after_s("10.0.0.1") <= LoginThrottle.WINDOW_S
    assert throttle.retry_after_s("10.0.0.2") == 0
    throttle.succeeded("10.0.0.1")
    assert throttle.retry_after_s("10.0.0.1") == 0


def test_highlights_escape_everything_but_mark():
    headline = '<mark>gm</mark> <script>alert(1)</script> <img src=x onerror="y"> <mark class="x">'
    assert inert_highlight(headline) == (
        "<mark>gm</mark> &lt;script&gt;alert(1)&lt;/script&gt; &lt;img src=x onerror=&quot;y&quot;&gt; "
        "&lt;mark class=&quot;x&quot;&gt;"
    )
    assert inert_highlight(None) is None
