"""The console's pages: login and logout, the overview at `/workers`, one page per worker at
`/workers/{name}`, and its static assets. The JSON its scripts poll is the API's (`manager.http`).

Pages are rendered on the server (Jinja2) and kept live by a little JavaScript that polls the JSON
API with the same session cookie. Every change goes through the API's admin-only endpoints, which
check the CSRF token that the page carries in a `<meta>` tag (the session cookie itself is HttpOnly).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from admin import present
from manager.auth import SESSION_COOKIE, SESSION_MAX_AGE_S, Auth, Principal, Role
from manager.errors import UnknownWorker
from manager.fleet import StatusView
from manager.http.trending import KINDS, WINDOWS, top_items
from manager.store import Store
from workers.features import flag_owner
from workers.redact import mask_secrets

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
LOGIN_COOKIE = "wm_login"  # the login form's own CSRF token (there is no session yet to hold one)
LOGIN_PATH = "/workers/login"

# A strict policy: only our own scripts, styles and images; no framing; forms post only here.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _asset_version() -> str:
    """A short hash of the static files, appended to their URLs so a new release is never cached stale."""
    digest = hashlib.sha256()
    for path in sorted(STATIC.iterdir()):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:10]


def _safe_next(target: str | None) -> str:
    """Only a path of this console, so the login form cannot be used to bounce users elsewhere."""
    if target and re.fullmatch(r"/workers(/[a-z0-9_]+)?", target) and target not in (LOGIN_PATH, "/workers/logout"):
        return target
    return "/workers"


def _secure(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def mount_console(app: FastAPI, view: StatusView, store: Store, auth: Auth) -> None:
    """Adds the console's pages and static files to the API's app."""
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals.update(asset_version=_asset_version(), status_of=present.status_of)
    templates.env.filters.update(present.FILTERS)
    router = APIRouter(include_in_schema=False)

    def page(
        request: Request, template: str, who: Principal | None, status_code: int = 200, **context: Any
    ) -> Response:
        context.update(
            role=who.role.value if who else None,
            is_admin=who is not None and who.role is Role.ADMIN,
            csrf_token=who.csrf if who and who.via == "cookie" else "",
            via=who.via if who else None,
        )
        return _secure(templates.TemplateResponse(request, template, context, status_code=status_code))

    def to_login(request: Request) -> Response:
        return _secure(RedirectResponse(f"{LOGIN_PATH}?next={quote(request.url.path)}", status_code=303))

    def who_for_page(request: Request) -> Principal | Response:
        """The signed-in principal, or the response that sends the browser to log in."""
        who = auth.principal(request)
        if who is not None:
            return who
        if request.headers.get("authorization"):
            return page(
                request,
                "message.html",
                None,
                401,
                title="Not signed in",
                message="The token in the Authorization header is not valid.",
            )
        return to_login(request)

    async def flags_and_settings() -> tuple[list[dict[str, Any]], list[dict[str, Any]], str | None]:
        try:
            flags = await store.flags()
            settings = await store.settings()
        except Exception as exc:  # the page still shows what memory knows
            return [], [], str(exc).splitlines()[0] if str(exc) else repr(exc)
        for row in settings:
            row["value"] = mask_secrets(row["value"], row["key"])
        return flags, settings, None

    # ---- login and logout ---------------------------------------------------------------------

    @router.get(LOGIN_PATH, response_class=HTMLResponse)
    async def login_form(request: Request, next: str | None = None) -> Response:
        if auth.principal(request) is not None:
            return _secure(RedirectResponse(_safe_next(next), status_code=303))
        return login_page(request, next, None, 200)

    def login_page(request: Request, next: str | None, error: str | None, status_code: int) -> Response:
        token = secrets.token_urlsafe(16)
        response = page(request, "login.html", None, status_code, next=_safe_next(next), error=error, login_csrf=token)
        response.set_cookie(
            LOGIN_COOKIE,
            token,
            max_age=3600,
            path=LOGIN_PATH,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    @router.post(LOGIN_PATH, response_class=HTMLResponse)
    async def login(
        request: Request,
        token: Annotated[str, Form()] = "",
        csrf_token: Annotated[str, Form()] = "",
        next: Annotated[str, Form()] = "/workers",
    ) -> Response:
        expected = request.cookies.get(LOGIN_COOKIE, "")
        if not expected or not hmac.compare_digest(expected, csrf_token):
            return login_page(request, next, "The form expired. Please sign in again.", 403)
        role = auth.role_for_token(token.strip())
        if role is None:
            await asyncio.sleep(0.25)  # slows down guessing; a real token is long and random anyway
            return login_page(request, next, "That token is not valid.", 401)
        response = _secure(RedirectResponse(_safe_next(next), status_code=303))
        response.set_cookie(
            SESSION_COOKIE,
            auth.new_session(role),
            max_age=SESSION_MAX_AGE_S,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        response.delete_cookie(LOGIN_COOKIE, path=LOGIN_PATH)
        return response

    @router.post("/workers/logout")
    async def logout(request: Request, csrf_token: Annotated[str, Form()] = "") -> Response:
        who = auth.principal(request)
        if who is not None and who.via == "cookie" and not (who.csrf and hmac.compare_digest(who.csrf, csrf_token)):
            return page(
                request,
                "message.html",
                who,
                403,
                title="Not signed out",
                message="The sign-out form was missing its security token. Reload the page and try again.",
            )
        response = _secure(RedirectResponse(LOGIN_PATH, status_code=303))
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    # ---- pages --------------------------------------------------------------------------------

    @router.get("/workers", response_class=HTMLResponse)
    async def overview(request: Request) -> Response:
        who = who_for_page(request)
        if isinstance(who, Response):
            return who
        flags, settings, db_error = await flags_and_settings()
        workers = view.status()
        return page(
            request,
            "overview.html",
            who,
            workers=workers,
            summary=present.summary(workers),
            flags=flags,
            settings=settings,
            db_error=db_error,
        )

    @router.get("/workers/trending", response_class=HTMLResponse)
    async def trending_page(request: Request, window: str = "24h") -> Response:
        who = who_for_page(request)
        if isinstance(who, Response):
            return who
        if window not in WINDOWS:
            window = "24h"
        tables, db_error = {}, None
        try:
            for kind in KINDS:
                tables[kind] = await top_items(store, window, kind, 15)
        except Exception as exc:  # the page says so instead of failing
            db_error = str(exc).splitlines()[0] if str(exc) else repr(exc)
        return page(
            request, "trending.html", who, window=window, windows=list(WINDOWS), tables=tables, db_error=db_error
        )

    @router.get("/workers/{name}", response_class=HTMLResponse)
    async def worker_page(request: Request, name: str) -> Response:
        who = who_for_page(request)
        if isinstance(who, Response):
            return who
        try:
            worker = view.worker(name)
        except UnknownWorker:
            return page(
                request,
                "message.html",
                who,
                404,
                title="No such worker",
                message=f"There is no worker named “{name}” in this manager's configuration.",
            )
        flags, _, _ = await flags_and_settings()
        features = [
            f for f in flags if f["flag_name"] != worker["flag"] and flag_owner(f["flag_name"], view.names()) == name
        ]
        try:
            alerts = await store.alert_deliveries(name, 10)
        except Exception:  # the page still shows what memory knows
            alerts = []
        return page(request, "worker.html", who, worker=worker, alerts=alerts, features=features)

    app.include_router(router)
    app.mount("/workers/static", StaticFiles(directory=str(STATIC)), name="console-static")
