"""Hostile input gets a 4xx JSON answer, never a 500, on every route: the routes are read from the
live manager's own OpenAPI document, so a route added later is covered without editing this file."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.support.manager import TOKEN, ManagerHandle, example_worker
from tests.support.postgres import fresh_database

HOSTILE_NAMES = ["a\x00b", "x" * 5000, "..", "UPPER", "ünï", "1leading_digit"]
HOSTILE_INTS = ["-1", "99999999999999999999", "NaN", "1e999", ""]
HOSTILE_BODIES: list[tuple[bytes, str]] = [
    (b"{not json", "application/json"),
    (b"\xff\xfe\x00garbage", "application/json"),
    (b'{"value": NaN}', "application/json"),
    (b'{"value": Infinity}', "application/json"),
    (b'{"value": -Infinity}', "application/json"),
    (b'{"value": 1e999}', "application/json"),
    (b"[" * 5000 + b"]" * 5000, "application/json"),
    (b'{"value": 1}', "text/plain"),
    (b"value=1", "application/x-www-form-urlencoded"),
    (b'{"value": 1}', ""),
]


@pytest.fixture(scope="module")
def manager(tmp_path_factory, pg_admin_url):
    with fresh_database(pg_admin_url) as url:  # one manager for the whole table
        handle = ManagerHandle(tmp_path_factory.mktemp("bad-input"), url, {"counter": example_worker()})
        handle.start()
        try:
            yield handle
        finally:
            handle.close()


def _routes(manager: Any) -> list[tuple[str, str, dict[str, Any]]]:
    schema = manager.http.get("/openapi.json").json()
    return [(method.upper(), path, op) for path, ops in schema["paths"].items() for method, op in ops.items()]


def _concrete(path: str, name: str = "counter") -> str:
    return re.sub(r"\{[^}]+\}", name, path)


def _check(response: httpx.Response, what: str) -> None:
    assert response.status_code < 500, f"{what}: {response.status_code} {response.text[:300]}"
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/json"), what
        assert "detail" in response.json(), what


def test_hostile_path_names(manager):
    for method, path, _ in _routes(manager):
        if "{" not in path:
            continue
        for name in HOSTILE_NAMES:
            response = manager.http.request(method, _concrete(path, quote(name, safe="")), headers=_auth(), json=1)
            _check(response, f"{method} {path} name={name[:20]!r}")
            assert response.status_code in (404, 422), (method, path, name[:20], response.status_code)


def test_hostile_query_values(manager):
    for method, path, op in _routes(manager):
        for param in op.get("parameters", []):
            if param["in"] != "query":
                continue
            for value in [*HOSTILE_INTS, *HOSTILE_NAMES]:
                response = manager.http.request(method, _concrete(path), params={param["name"]: value}, headers=_auth())
                _check(response, f"{method} {path} {param['name']}={value[:20]!r}")


def test_unknown_query_parameters_are_refused_on_every_api_route(manager):
    """A typo (`limt`, `window` for `minutes`) would otherwise answer with the defaults, silently."""
    for method, path, op in _routes(manager):
        if not path.startswith("/api/"):
            continue
        response = manager.http.request(method, _concrete(path), params={"limt": "5"}, headers=_auth(), json=True)
        _check(response, f"{method} {path} ?limt=5")
        assert response.status_code == 422, (method, path, response.status_code)
        (problem,) = response.json()["detail"]
        assert problem["loc"] == ["query", "limt"] and problem["type"] == "extra_forbidden"
        declared = sorted(p["name"] for p in op.get("parameters", []) if p["in"] == "query")
        assert problem["msg"].endswith(", ".join(declared) or "none"), (path, problem)
    good = manager.http.get("/api/audit", params={"limit": 5}, headers=_auth())
    assert good.status_code == 200  # declared parameters still pass
    page = manager.http.get("/workers/login", params={"utm_source": "x"})
    assert page.status_code == 200  # the console's pages are left alone


def test_hostile_bodies(manager):
    for method, path, _ in _routes(manager):
        if method not in ("PUT", "POST", "PATCH"):
            continue
        for body, ctype in HOSTILE_BODIES:
            headers = {**_auth(), **({"content-type": ctype} if ctype else {})}
            response = manager.http.request(method, _concrete(path, "counter_enabled"), content=body, headers=headers)
            _check(response, f"{method} {path} body={body[:30]!r} type={ctype!r}")
            assert response.status_code in (400, 413, 415, 422), (method, path, body[:30], response.status_code)
    # valid JSON the route cannot use: a flag that is not a boolean, a NUL byte Postgres refuses
    for path, body in [("/api/flags/counter_enabled", b'{"enabled": "maybe"}'), ("/api/settings/x", b'"nul\\u0000"')]:
        response = manager.http.put(path, content=body, headers={**_auth(), "content-type": "application/json"})
        _check(response, f"PUT {path} {body!r}")
        assert response.status_code in (400, 422)


def test_authentication_comes_before_the_body(manager):
    for method, path, _ in _routes(manager):
        if method == "GET":
            continue
        for body in (b"{not json", b"x" * (1024 * 1024)):
            response = manager.http.request(method, _concrete(path, "counter_enabled"), content=body)
            assert response.status_code == 401, (method, path, response.status_code)


def test_an_oversized_body_is_refused_without_being_read_whole(manager):
    sent = 0

    def chunks():
        nonlocal sent
        for _ in range(1024):  # up to 64 MiB, if anyone kept reading
            sent += 65536
            yield b" " * 65536

    try:
        response = manager.http.put("/api/settings/counter_x", content=chunks(), headers=_auth())
        assert response.status_code == 413 and response.json()["detail"].startswith("the body is over")
    except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError):
        pass  # the server answered 413 and closed the connection while we were still sending
    assert sent < 64 * 1024 * 1024, "the server read the whole upload"
    big = manager.http.put(
        "/api/settings/counter_x", content=b"1" * 200_000, headers={**_auth(), "content-type": "application/json"}
    )
    assert big.status_code == 413


def test_api_headers(manager):
    for path in ("/api/workers/status", "/api/flags", "/healthz", "/api/workers/nope"):
        response = manager.http.get(path, headers=_auth())
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert response.headers["cache-control"] == "no-store", path


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}
