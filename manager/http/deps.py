"""What every router may depend on: who is asking, and the manager's narrow interfaces.

`create_app` puts one `Services` on `app.state`; routes take the part they need through the
`View`, `Commands`, `StoreDep` and `ServicesDep` annotations, so a router never sees the supervisor,
the Healdec engine or the connection pool.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, HTTPException, Request

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


Viewer = Annotated[Principal, Depends(require_viewer)]
Admin = Annotated[Principal, Depends(require_admin)]
ServicesDep = Annotated[Services, Depends(services)]
View = Annotated[StatusView, Depends(_view)]
Commands = Annotated[FleetCommands, Depends(_commands)]
StoreDep = Annotated[Store, Depends(_store)]


def not_found(exc: UnknownWorker) -> HTTPException:
    return HTTPException(404, str(exc))
