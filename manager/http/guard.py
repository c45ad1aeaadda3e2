"""The API's edge: one place that turns hostile or malformed requests into 4xx JSON answers.

`EdgeGuard` (an ASGI middleware, outermost) handles what must happen before any route runs:

- changes (`POST`/`PUT`/`PATCH`/`DELETE` under `/api/`) are authenticated *before* their body
  is read, so a request without a token gets 401, never 422 or 413;
- bodies over `MAX_BODY_BYTES` get 413, judged by Content-Length or, when it is absent, while
  streaming, so an oversized body is never read whole;
- API bodies must be `application/json`, valid UTF-8 and strict JSON (no NaN, Infinity, or
  numbers beyond a double's range such as 1e999): anything else is 415 or 422 (FastAPI's own
  answer to a malformed body, kept so clients see one status for every body problem);
- every response gets `X-Content-Type-Options: nosniff`, and API responses `Cache-Control: no-store`.

`install_error_handlers` maps what routes may raise (validation errors, NUL bytes and other values
Postgres rejects, a database that is down or too slow) to 4xx/503 JSON without raw error text, and
anything unforeseen to a 500 that says nothing about the internals.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from psycopg_pool import PoolTimeout
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from manager.auth import Auth

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
CLOSE = {"Connection": "close"}  # after a 413, the server stops reading the rest of the upload
CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JSON_TYPES = ("application/json",)


class BadRequest(Exception):
    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers or {}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def check_json(body: bytes) -> None:
    """Raises BadRequest unless `body` is UTF-8, strict JSON with finite numbers."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(422, "the body is not valid UTF-8") from None
    try:
        json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except ValueError as exc:
        raise BadRequest(422, f"the body is not valid JSON: {str(exc).splitlines()[0][:200]}") from None
    except RecursionError:
        raise BadRequest(422, "the body is nested too deeply") from None


def _json_response(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


class EdgeGuard:
    """ASGI middleware: authentication before the body, a body-size cap, strict JSON, and headers."""

    def __init__(self, app: ASGIApp, max_body: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        api = path.startswith("/api/")
        send = _with_headers(send, api or path in ("/healthz", "/metrics", "/openapi.json"))
        try:
            receive = await self._check(scope, receive, api)
        except BadRequest as exc:
            await _json_response(exc.status, exc.detail, exc.headers)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _check(self, scope: Scope, receive: Receive, api: bool) -> Receive:
        request = Request(scope)
        if api and scope["method"] in CHANGING:
            auth: Auth = scope["app"].state.auth
            if auth.principal(request) is None:
                raise BadRequest(
                    401,
                    "a valid token is required: send 'Authorization: Bearer <ADMIN_TOKEN>'",
                    {"WWW-Authenticate": "Bearer"},
                )
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise BadRequest(400, "Content-Length must be a number")
            if int(length) > self.max_body:
                raise BadRequest(413, f"the body is over {self.max_body} bytes", CLOSE)
        if scope["method"] not in CHANGING:
            return receive
        body = await self._read_capped(receive)
        if api and body:
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype not in JSON_TYPES:
                raise BadRequest(415, "send the body as JSON with 'Content-Type: application/json'")
            check_json(body)
        return _replay(body)

    async def _read_capped(self, receive: Receive) -> bytes:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise BadRequest(400, "the client went away")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise BadRequest(413, f"the body is over {self.max_body} bytes", CLOSE)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


def _with_headers(send: Send, api: bool) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            present = {name.lower() for name, _ in headers}
            if b"x-content-type-options" not in present:
                headers.append((b"x-content-type-options", b"nosniff"))
            if api and b"cache-control" not in present:
                headers.append((b"cache-control", b"no-store"))
            message = {**message, "headers": headers}
        await send(message)

    return wrapped


def _validation_detail(exc: RequestValidationError) -> list[dict[str, Any]]:
    """The validation errors without echoing the input (it may be huge, or hold NUL bytes)."""
    return [
        {"loc": list(error.get("loc", ())), "msg": str(error.get("msg", "invalid")), "type": error.get("type", "")}
        for error in exc.errors()
    ]


def install_error_handlers(app: FastAPI) -> None:
    """Every error a route may raise becomes a JSON answer with a status that says whose fault it is."""

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_detail(exc)}, status_code=422)

    @app.exception_handler(405)
    async def wrong_method(request: Request, exc: Exception) -> JSONResponse:
        # Starlette names only the first matching route's methods; list every route's for this path.
        allowed = sorted(
            {
                method
                for route in app.routes
                if isinstance(route, APIRoute) and route.path_regex.match(request.url.path)
                for method in route.methods or ()
            }
        )
        return _json_response(405, "method not allowed", {"Allow": ", ".join(allowed)})

    @app.exception_handler(psycopg.DataError)
    async def bad_value(_: Request, exc: psycopg.DataError) -> JSONResponse:
        return _json_response(
            400, "the database rejected a value in the request (e.g. a NUL byte or an invalid number)"
        )

    @app.exception_handler(psycopg.errors.QueryCanceled)
    async def too_slow(_: Request, exc: psycopg.errors.QueryCanceled) -> JSONResponse:
        return _json_response(503, "the query took too long; narrow it and try again", {"Retry-After": "1"})

    @app.exception_handler(PoolTimeout)
    async def busy(_: Request, exc: PoolTimeout) -> JSONResponse:
        return _json_response(503, "the manager is busy; try again shortly", {"Retry-After": "1"})

    @app.exception_handler(psycopg.OperationalError)
    async def database_down(_: Request, exc: psycopg.OperationalError) -> JSONResponse:
        return _json_response(503, "the database is unavailable; try again shortly", {"Retry-After": "2"})

    @app.exception_handler(ValueError)
    async def bad_input(_: Request, exc: ValueError) -> JSONResponse:
        # psycopg raises a plain ValueError for NUL bytes in query parameters.
        if "NUL" in str(exc):
            return _json_response(400, "the request contains a NUL byte")
        log.exception("unexpected error")
        return _json_response(500, "internal error (logged by the manager)")

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=exc)
        return _json_response(500, "internal error (logged by the manager)")
