"""The operator's web console, served by the manager at `/workers` (see `admin.routes`)."""

from admin.routes import mount_console

__all__ = ["mount_console"]
