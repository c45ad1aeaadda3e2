"""Keeping secrets out of every response, page and log line."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
_SECRET_KEY = re.compile(r"(pass(word)?|secret|token|api[_-]?key|private[_-]?key|credential|auth)", re.I)


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def redact_url(url: str) -> str:
    """The URL with any password replaced."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", f":{MASK}@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def redact_webhook_url(url: str) -> str:
    """Only the scheme, host and port: a webhook's path and query are its secret token."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return MASK
    if not parts.scheme or not host:
        return MASK
    return f"{parts.scheme}://{host}{port}/{MASK}"


def mask_secrets(value: Any, key: str = "") -> Any:
    """A copy of a JSON-like value with secret-looking keys masked and URL passwords removed."""
    if isinstance(value, dict):
        return {k: mask_secrets(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(v, key) for v in value]
    if key and is_secret_key(key) and value not in (None, ""):
        return MASK
    if isinstance(value, str) and "://" in value:
        return redact_url(value)
    return value


class SecretScrubber:
    """Replaces known secret values (from secret-looking environment variables and URL
    passwords) in free text such as worker output, which no key-based masking can reach."""

    MIN_LENGTH = 6  # shorter values would mask ordinary words

    def __init__(self, secrets: set[str]) -> None:
        ordered = sorted((s for s in secrets if len(s) >= self.MIN_LENGTH), key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(s) for s in ordered)) if ordered else None

    @classmethod
    def from_environment(cls, env: dict[str, str]) -> SecretScrubber:
        found = {value for key, value in env.items() if is_secret_key(key) and value}
        for value in env.values():
            if "://" in value:
                try:
                    password = urlsplit(value).password
                except ValueError:
                    password = None
                if password:
                    found.add(password)
        return cls(found)

    def __call__(self, text: str) -> str:
        return self._pattern.sub(MASK, text) if self._pattern else text
