"""Running `python -m manager ...` as an operator would, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from tests.support.manager import ROOT


def cli_env(env: dict[str, str] | None = None, drop: tuple[str, ...] = ()) -> dict[str, str]:
    """The test's environment without DATABASE_URL (and `drop`), plus `env`."""
    full = {**os.environ, **(env or {})}
    for name in ("DATABASE_URL", *drop):
        full.pop(name, None)
    return full


def run_cli(
    *args: str, env: dict[str, str] | None = None, drop: tuple[str, ...] = (), timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "manager", *args],
        cwd=ROOT,
        env=cli_env(env, drop),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_cli(*args: str, env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.Popen[str]:
    """A long-running command (e.g. `logs --follow`), stdout as text lines."""
    return subprocess.Popen(
        [sys.executable, "-m", "manager", *args],
        cwd=ROOT,
        env=cli_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )
