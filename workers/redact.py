"""Keeping secrets out of every response, page and log line.

Two complementary tools:

- `mask_secrets` masks by *structure*: values under secret-looking keys (and everything nested
  under them), and inside every URL its password, its key-looking path segments (`/v2/<key>`)
  and every query value; `key=value` DSNs lose their password. No list of provider names needed.
- `SecretScrubber` replaces every secret the manager *knows* (secret-named environment values,
  the parts of URLs and DSNs that `mask_secrets` would mask) wherever it appears in free text,
  also URL-encoded and base64-encoded, for worker output and recorded errors.

Keys are judged by their words, not by substrings, so `ai_max_tokens` and `oauth_url` stay visible
while `api_key`, `clientSecret` and `db_password` are masked; a key naming *where* a secret lives
(`ai_api_key_env`, `password_file`) is not itself secret.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from itertools import pairwise
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

MASK = "***"

# Words that make a key secret, and two-word phrases (joined with "_").
SECRET_WORDS = frozenset(
    {"password", "passwd", "pwd", "pass", "passphrase", "secret", "token", "apikey", "credential", "credentials"}
    | {"auth", "authorization", "cookie", "dsn", "privatekey", "mnemonic", "bearer"}
)
SECRET_PHRASES = frozenset({"api_key", "private_key", "access_key", "secret_key", "client_secret", "session_key"})
# A last word that says the key *names* or *describes* a secret rather than holding it.
REFERENCE_WORDS = frozenset({"env", "var", "file", "path", "url", "uri", "name", "type", "header", "kind", "id"})

_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")
# A path segment that looks like a key: long, one "word" of letters and digits, with both.
_KEYLIKE_SEGMENT = re.compile(r"(?=[A-Za-z0-9_\-~.]*\d)(?=[A-Za-z0-9_\-~.]*[A-Za-z])[A-Za-z0-9_\-~.]{16,}")
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s\"'<>]+")
_HOST_AFTER_AT = re.compile(r"[A-Za-z0-9.\-]+(:\d*)?(?=[/?#]|$)|\[[0-9A-Fa-f:.]+\](:\d*)?(?=[/?#]|$)")
# key=value pairs in free text or a libpq key=value DSN (value quoted or up to whitespace).
_KV_PAIR = re.compile(
    r"(?P<key>[A-Za-z_][A-Za-z0-9_\-]*)(?P<eq>\s*[=:]\s*)(?P<value>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s&,;]+)"
)


def key_words(key: str) -> list[str]:
    return [w.lower() for w in _WORD_SPLIT.split(key) if w]


def is_secret_key(key: str) -> bool:
    """Whether a setting or config key holds a secret (judged by its words)."""
    words = key_words(key)
    if not words or words[-1] in REFERENCE_WORDS:
        return False
    if any(w in SECRET_WORDS for w in words):
        return True
    return any(f"{a}_{b}" in SECRET_PHRASES for a, b in pairwise(words))


def _split_userinfo(url: str) -> tuple[str, str, str] | None:
    """(scheme://, userinfo, rest) when the URL has userinfo; tolerates `#`, `?` and `/` in passwords."""
    scheme_end = url.find("://")
    if scheme_end < 0:
        return None
    head, tail = url[: scheme_end + 3], url[scheme_end + 3 :]
    for at in [i for i, ch in enumerate(tail) if ch == "@"]:
        user = tail[:at].split(":", 1)[0]
        if re.search(r"[/?#]", user):
            return None
        if _HOST_AFTER_AT.match(tail, at + 1):
            return head, tail[:at], tail[at + 1 :]
    return None


def _mask_query(query: str) -> str:
    parts = []
    for pair in query.split("&"):
        name, eq, value = pair.partition("=")
        parts.append(f"{name}={MASK}" if eq and value else pair)
    return "&".join(parts)


def redact_url(url: str) -> str:
    """The URL with its password, key-looking path segments, query values and fragment masked."""
    prefix = ""
    split = _split_userinfo(url)
    if split:
        head, userinfo, rest = split
        user, colon, _password = userinfo.partition(":")
        prefix, url = f"{head}{user}{':' + MASK if colon else ''}@", rest
        url = "//" + url  # parse the rest as a network path
    try:
        parts = urlsplit(url)
    except ValueError:
        return prefix + MASK if prefix else MASK
    path = "/".join(MASK if _KEYLIKE_SEGMENT.fullmatch(seg) else seg for seg in parts.path.split("/"))
    masked = urlunsplit(
        parts._replace(path=path, query=_mask_query(parts.query), fragment=MASK if parts.fragment else "")
    )
    if prefix:
        return prefix + masked.removeprefix("//")
    return masked


def redact_text(text: str) -> str:
    """Free text with every URL redacted and `secret_key=value` pairs masked."""
    text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    return _KV_PAIR.sub(lambda m: f"{m['key']}{m['eq']}{MASK}" if is_secret_key(m["key"]) else m.group(0), text)


def _mask_all(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _mask_all(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_all(v) for v in value]
    return value if value in (None, "") else MASK


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
    """A copy of a JSON-like value: everything under secret-looking keys masked, and strings
    redacted by structure (URLs, key=value DSNs)."""
    if key and is_secret_key(key):
        return _mask_all(value)
    if isinstance(value, dict):
        return {k: mask_secrets(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def secrets_in(value: Any, key: str = "") -> set[str]:
    """Every secret `mask_secrets` would hide in a value: what the scrubber must also find in free text."""
    found: set[str] = set()
    if key and is_secret_key(key):
        if isinstance(value, (dict, list)):
            found.update(_leaves(value))
        elif value not in (None, ""):
            found.add(str(value))
        return found
    if isinstance(value, dict):
        for k, v in value.items():
            found |= secrets_in(v, str(k))
    elif isinstance(value, list):
        for v in value:
            found |= secrets_in(v)
    elif isinstance(value, str):
        for match in _URL_IN_TEXT.finditer(value):
            found |= _url_secrets(match.group(0))
        for match in _KV_PAIR.finditer(value):
            if is_secret_key(match["key"]):
                found.add(match["value"].strip("'\""))
    return found


def _leaves(value: Any) -> Iterable[str]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v)
    elif value not in (None, ""):
        yield str(value)


def _url_secrets(url: str) -> set[str]:
    found: set[str] = set()
    split = _split_userinfo(url)
    if split:
        _head, userinfo, rest = split
        password = userinfo.partition(":")[2]
        if password:
            found.add(password)
        url = "//" + rest
    try:
        parts = urlsplit(url)
    except ValueError:
        return found
    found.update(seg for seg in parts.path.split("/") if _KEYLIKE_SEGMENT.fullmatch(seg))
    found.update(pair.partition("=")[2] for pair in parts.query.split("&") if pair.partition("=")[2])
    if parts.fragment:
        found.add(parts.fragment)
    return found


def encoded_forms(secret: str) -> set[str]:
    """The secret as it may appear in text: plain, URL-encoded, and base64 (standard and URL-safe,
    at each of the three byte alignments, so it is found inside a longer encoded string too)."""
    forms = {secret, quote(secret, safe=""), quote_plus(secret)}
    raw = secret.encode()
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode().rstrip("=")
        start = -(-8 * shift // 6)  # characters touched by the padding bytes
        end = (8 * (shift + len(raw))) // 6  # characters entirely made of the secret's bits
        core = encoded[start:end]
        if len(core) >= SecretScrubber.MIN_LENGTH:
            forms.add(core)
            forms.add(core.replace("+", "-").replace("/", "_"))
    return forms


class SecretScrubber:
    """Replaces known secret values (secret-named environment variables, and whatever
    `mask_secrets` hides in URLs and DSNs of the environment and config) in free text such as
    worker output and recorded errors, in plain, URL-encoded and base64 forms. Text is also
    passed through `redact_text`, so URLs the manager never saw lose their keys too."""

    MIN_LENGTH = 6  # shorter values would mask ordinary words

    def __init__(self, secrets: Iterable[str]) -> None:
        forms = {form for s in secrets if len(s) >= self.MIN_LENGTH for form in encoded_forms(s)}
        ordered = sorted(forms, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(s) for s in ordered)) if ordered else None

    @classmethod
    def from_environment(cls, env: Mapping[str, str], config: Any = None) -> SecretScrubber:
        found: set[str] = set()
        for key, value in env.items():
            found |= secrets_in(value, key)
        if config is not None:
            found |= secrets_in(config)
        return cls(found)

    def __call__(self, text: str) -> str:
        text = self._pattern.sub(MASK, text) if self._pattern else text
        return redact_text(text)
