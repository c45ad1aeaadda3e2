"""What every router may depend on: who is asking, and the manager's narrow interfaces.

`create_app` puts one `Services` on `app.state`; routes take the part they need through the
`View`, `Commands`, `StoreDep` and `ServicesDep` annotations, so a router never sees the supervisor,
the Healdec engine or the connection pool.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Request
from pydantic import BaseModel

from manager.auth import Auth, Principal, require_admin, require_viewer
from manager.config import Config
from manager.errors import UnknownWorker
from manager.fleet import FleetCommands, StatusView
from manager.store import Store


@dataclass(frozen=True)
class Services:
    view: StatusView
    commands: FleetCommands
    store: Store
    auth: Auth
    config: Config
    extra_env: Mapping[str, str] = field(default_factory=dict)


def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def _view(request: Request) -> StatusView:
    return services(request).view


def _commands(request: Request) -> FleetCommands:
    return services(request).commands


def _store(request: Request) -> Store:
    return services(request).store


# Names in paths: the same rule the config applies to worker names, and a close one for flags and
# settings, so a NUL byte, a slash or a 10 kB name is a 422 before any lookup.
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
KEY_PATTERN = r"^[a-z][a-z0-9_.\-]{0,127}$"
WorkerName = Annotated[str, Path(pattern=NAME_PATTERN, max_length=63, description="a worker name from the config")]
FlagName = Annotated[str, Path(pattern=NAME_PATTERN, max_length=63, description="a flag name, e.g. `<worker>_enabled`")]
SettingKey = Annotated[str, Path(pattern=KEY_PATTERN, max_length=128, description="a setting key, e.g. `ai_model`")]


class ErrorBody(BaseModel):
    """Every error answer: `detail` says what is wrong (a list of problems for 422)."""

    detail: str | list[dict[str, object]]


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


# The errors any API route may answer with, documented once for the OpenAPI schema.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error("a value the database rejects (e.g. a NUL byte)"),
    401: _error("no valid token"),
    403: _error("the viewer token, or a cookie session without its CSRF token, tried to change something"),
    404: _error("no such worker, flag or setting"),
    413: _error("body over the size cap"),
    415: _error("body not sent as application/json"),
    422: _error("a parameter or the body failed validation, or the body is not UTF-8 strict JSON"),
    503: _error("the database is unavailable or too slow"),
}

Viewer = Annotated[Principal, Depends(require_viewer)]
Admin = Annotated[Principal, Depends(require_admin)]
ServicesDep = Annotated[Services, Depends(services)]
View = Annotated[StatusView, Depends(_view)]
Commands = Annotated[FleetCommands, Depends(_commands)]
StoreDep = Annotated[Store, Depends(_store)]


def not_found(exc: UnknownWorker) -> HTTPException:
    return HTTPException(404, str(exc))
