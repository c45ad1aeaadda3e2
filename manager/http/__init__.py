"""The manager's HTTP API: `create_app` and one router module per resource (workers, flags,
settings, audit, search, trends, health), talking to the manager through `manager.fleet`'s
interfaces and `manager.store`."""

from manager.http.app import create_app
from manager.http.deps import Services

__all__ = ["Services", "create_app"]
