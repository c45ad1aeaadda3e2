"""`${VAR}` and `${VAR:-default}` in config values: a module of its own so that the quick CLI
paths (`status`) can read a config value without loading the config models (pydantic)."""

from __future__ import annotations

import os
import re

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(text: str, environ: dict[str, str] | None = None) -> str:
    """Replace `${VAR}` and `${VAR:-default}`; an unset `${VAR}` without default is an error."""
    env = os.environ if environ is None else environ

    def substitute(match: re.Match[str]) -> str:
        name, default = match[1], match[2]
        value = env.get(name)
        if value:
            return value
        if default is not None:
            return default
        if name in env:
            return ""
        raise KeyError(name)

    return _ENV_REF.sub(substitute, text)
