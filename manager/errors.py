"""Errors meant for users: each carries a message that says what is wrong and what to do.

The CLI prints the message and exits with `exit_code`; the API maps them to status codes.
Tracebacks are reserved for bugs.
"""

from __future__ import annotations


class ManagerError(Exception):
    """Base of every error the manager reports to a person."""

    exit_code = 1


class ConfigError(ManagerError):
    """The configuration file cannot be read, parsed or validated."""

    exit_code = 2


class DatabaseUnavailable(ManagerError):
    """Postgres cannot be reached (after retrying)."""

    exit_code = 3


class UnknownWorker(ManagerError):
    """A command named a worker that is not in the configuration."""

    exit_code = 2


class ManagerNotRunning(ManagerError):
    """The CLI could not reach the running manager's HTTP API."""

    exit_code = 3


class WorkerConflict(ManagerError):
    """A command cannot be carried out in the worker's present state (the API answers 409)."""

    exit_code = 1
