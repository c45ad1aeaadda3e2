"""Who is asking: the admin token (may change things), the optional viewer token (may look),
or nobody. Tokens come as `Authorization: Bearer <token>` or in the console's session cookie.

Cookie sessions also carry a CSRF token that every state-changing request must echo in the
`X-CSRF-Token` header (or a `csrf_token` form field), so a cross-site form cannot act for an operator.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from fastapi import HTTPException, Request, status
from itsdangerous import BadSignature, URLSafeTimedSerializer

SESSION_COOKIE = "wm_session"
SESSION_MAX_AGE_S = 12 * 3600


class Role(StrEnum):
    ADMIN = "admin"
    VIEWER = "viewer"


@dataclass(frozen=True)
class Principal:
    role: Role
    via: str  # "bearer" | "cookie"
    csrf: str | None = None

    @property
    def actor(self) -> str:
        return f"api:{self.role.value}"


class Auth:
    def __init__(self, admin_token: str, viewer_token: str | None = None) -> None:
        self.admin_token = admin_token
        self.viewer_token = viewer_token or None
        # The session signing key derives from the admin token: rotating the token logs everyone out.
        key = hashlib.sha256(b"worker-manager-session:" + admin_token.encode()).hexdigest()
        self._sessions = URLSafeTimedSerializer(key, salt="session")

    @classmethod
    def from_environment(cls) -> tuple[Auth, bool]:
        """Tokens from ADMIN_TOKEN / VIEWER_TOKEN; generates an admin token when unset."""
        token = os.environ.get("ADMIN_TOKEN", "")
        generated = not token
        return cls(token or secrets.token_urlsafe(24), os.environ.get("VIEWER_TOKEN")), generated

    def role_for_token(self, token: str) -> Role | None:
        if token and hmac.compare_digest(token.encode(), self.admin_token.encode()):
            return Role.ADMIN
        if self.viewer_token and token and hmac.compare_digest(token.encode(), self.viewer_token.encode()):
            return Role.VIEWER
        return None

    def _fingerprint(self, role: Role) -> str:
        """A digest of the token a session was made with: when that token changes, its sessions end."""
        token = self.admin_token if role is Role.ADMIN else (self.viewer_token or "")
        return hashlib.sha256(b"worker-manager-token:" + token.encode()).hexdigest()[:16]

    def new_session(self, role: Role) -> str:
        return self._sessions.dumps(
            {"role": role.value, "csrf": secrets.token_urlsafe(16), "token": self._fingerprint(role)}
        )

    def principal(self, request: Request) -> Principal | None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer":
            role = self.role_for_token(token.strip())
            return Principal(role, "bearer") if role else None
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            try:
                data = self._sessions.loads(cookie, max_age=SESSION_MAX_AGE_S)
                role = Role(data["role"])
            except (BadSignature, KeyError, ValueError, TypeError):
                return None
            if role is Role.VIEWER and not self.viewer_token:
                return None
            if not hmac.compare_digest(str(data.get("token", "")), self._fingerprint(role)):
                return None
            return Principal(role, "cookie", data.get("csrf"))
        return None


class LoginThrottle:
    """Failed sign-ins per client: after MAX_FAILURES within WINDOW_S, that client waits out the
    window (429) however good its next guess; other clients are unaffected."""

    MAX_FAILURES = 5
    WINDOW_S = 60.0
    MAX_CLIENTS = 10_000  # bounded memory under a spray from many addresses

    def __init__(self) -> None:
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self._failures.get(client, deque())
        while times and now - times[0] >= self.WINDOW_S:
            times.popleft()
        return times

    def retry_after_s(self, client: str) -> float:
        """0 when the client may try; else how long until it may."""
        now = time.monotonic()
        times = self._recent(client, now)
        if len(times) < self.MAX_FAILURES:
            return 0.0
        return max(self.WINDOW_S - (now - times[0]), 0.1)

    def failed(self, client: str) -> None:
        now = time.monotonic()
        if client not in self._failures and len(self._failures) >= self.MAX_CLIENTS:
            self._failures.pop(next(iter(self._failures)))
        times = self._recent(client, now)
        times.append(now)
        self._failures[client] = times

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)


def _auth(request: Request) -> Auth:
    return request.app.state.auth  # type: ignore[no-any-return]


def authenticated(request: Request) -> Principal:
    """Any valid token (admin or viewer); 401 otherwise."""
    who = _auth(request).principal(request)
    if who is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "a valid token is required: send 'Authorization: Bearer <ADMIN_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return who


async def require_viewer(request: Request) -> Principal:
    """FastAPI dependency: any valid token (async, so it runs on the event loop, not a thread)."""
    return authenticated(request)


async def require_admin(request: Request) -> Principal:
    """The admin token; 401 without a token, 403 for the viewer token or a missing CSRF token."""
    who = authenticated(request)
    if who.role is not Role.ADMIN:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the viewer token cannot change anything")
    if who.via == "cookie":
        sent = request.headers.get("x-csrf-token")
        if sent is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            sent = str((await request.form()).get("csrf_token") or "")
        if not who.csrf or not sent or not hmac.compare_digest(sent, who.csrf):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong CSRF token")
    return who
