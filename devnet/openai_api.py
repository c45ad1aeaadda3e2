"""OpenAI-compatible stand-in on loopback, so the AI worker runs and is tested with no internet or key.

It serves the three endpoints the project uses (`POST /v1/embeddings`, `POST /v1/chat/completions`,
`GET /v1/models`) with the response shapes the unchanged `openai` client parses, and answers
deterministically: the same text always gets the same vector, summary and sentiment label, so tests
can assert on exact values. The server, fault injection (429 with retry headers, 500, slow, truncated
JSON, dropped connection; from Python or over `POST /_devnet/fault`) and the request log come from
the shared `devnet.http_stub.StubServer`; this module adds the routes and OpenAI's error shapes.

Embeddings are feature-hashed bags of words and character trigrams: texts sharing words (or, through
trigrams, misspelt words) land near each other, which is enough for similarity search to behave
plausibly. `embed()` is the same function as a plain call, so other code can compute the vectors the
stand-in would return.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import os
import re
import sys
import time
from collections import defaultdict
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np

from devnet.http_stub import (
    Fault,
    Request,
    Response,
    StubServer,
    add_server_arguments,
    retry_after_headers,
    serve_until_signal,
)

DEFAULT_DIMENSIONS = 256
MAX_DIMENSIONS = 4096
EMBEDDING_MODELS = ("text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002")
CHAT_MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini")

# ---------------------------------------------------------------------------------------------------
# Text features: tokens, vectors, summary, sentiment. Pure functions, shared with callers.
# ---------------------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
_WORD_RE = re.compile(r"\w+")


def _lexicon(words: str) -> frozenset[str]:
    return frozenset(words.split())


_STOPWORDS = _lexicon(
    "a an and are as at be but by for from has have i in is it its of on or so that the this to was "
    "were will with you your we our they their he she them his her me my not no"
)
_TRIGRAM_WEIGHT = 0.8  # the trigram block weighs a bit less than the whole word it came from
_STOPWORD_WEIGHT = 0.2  # function words carry little meaning; keep them from dominating short texts


def count_tokens(text: str) -> int:
    """Approximate a BPE token count: one token per word or punctuation mark.

    Real tokenisers split long words further; this is close enough for `usage` to move with the input
    instead of being a constant, which is what budget and metrics code needs to be exercised.
    """
    return len(_TOKEN_RE.findall(text))


@lru_cache(maxsize=65536)
def _bucket(feature: str, dimensions: int) -> tuple[int, float]:
    """Index and sign of one hashed feature; blake2b, not hash(), so vectors agree across processes."""
    digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    return value % dimensions, (1.0 if (value >> 63) & 1 else -1.0)


def _features(text: str) -> dict[str, float]:
    """Weighted features of a text: each word, plus the character trigrams of each word."""
    weights: defaultdict[str, float] = defaultdict(float)
    for word in _WORD_RE.findall(text.lower()):
        weight = _STOPWORD_WEIGHT if word in _STOPWORDS else 1.0
        weights["w:" + word] += weight
        padded = f"#{word}#"
        trigrams = [padded[i : i + 3] for i in range(len(padded) - 2)]
        per_trigram = weight * _TRIGRAM_WEIGHT / math.sqrt(len(trigrams))
        for trigram in trigrams:
            weights["t:" + trigram] += per_trigram
    return weights


def embed(text: str, dimensions: int = DEFAULT_DIMENSIONS) -> np.ndarray:
    """The stand-in's embedding of `text`: an L2-normalised float32 vector of `dimensions` values.

    Deterministic across processes and runs. Similar texts (shared words, or words one typo apart)
    have a higher cosine similarity than unrelated ones. Empty text gives the zero vector.
    """
    if not 1 <= dimensions <= MAX_DIMENSIONS:
        raise ValueError(f"dimensions must be between 1 and {MAX_DIMENSIONS}, got {dimensions}")
    vector = np.zeros(dimensions, dtype=np.float64)
    for feature, weight in _features(text).items():
        index, sign = _bucket(feature, dimensions)
        vector[index] += sign * weight
    norm = float(np.linalg.norm(vector))
    if norm > 0:
        vector /= norm
    return vector.astype(np.float32)


def embed_many(texts: list[str], dimensions: int = DEFAULT_DIMENSIONS) -> np.ndarray:
    """`embed` over a batch: a (len(texts), dimensions) float32 matrix."""
    if not texts:
        return np.zeros((0, dimensions), dtype=np.float32)
    return np.stack([embed(text, dimensions) for text in texts])


_POSITIVE = _lexicon(
    "good great love loved loving like liked excellent amazing awesome fantastic wonderful happy glad "
    "best better nice beautiful brilliant success successful win winning won gain gains profit "
    "profitable bullish moon mooning pump strong thanks thank cool fun exciting excited impressive "
    "congrats congratulations perfect recommend solid up"
)
_NEGATIVE = _lexicon(
    "bad terrible awful horrible hate hated worst worse poor sad angry annoying broken fail failed "
    "failure lose losing lost loss losses bearish scam scammer rug rugged crash crashed dump dumped "
    "hack hacked exploit exploited bug buggy down disappointing disappointed useless ugly wrong fear "
    "panic rekt slow expensive problem problems"
)
_NEGATORS = frozenset({"not", "no", "never", "isn", "wasn", "don", "doesn", "didn", "aren", "hardly"})


def sentiment_label(text: str) -> str:
    """`positive`, `negative` or `neutral` from a small lexicon, flipping a word after a negator."""
    score = 0
    previous = ""
    for word in _WORD_RE.findall(text.lower()):
        polarity = (word in _POSITIVE) - (word in _NEGATIVE)
        if polarity and previous in _NEGATORS:
            polarity = -polarity
        score += polarity
        if word != "t":  # "isn't" tokenises as isn, t: keep the negator in view
            previous = word
    if score > 0:
        return "positive"
    if score < 0:
        return "negative"
    return "neutral"


_SUMMARY_WORDS = 30
_SENTENCE_END_RE = re.compile(r"(?<=[.!?])\s+")


def summarize(text: str) -> str:
    """A deterministic extractive summary: the first sentence, cut to 30 words."""
    flat = " ".join(text.split())
    if not flat:
        return ""
    first = _SENTENCE_END_RE.split(flat, maxsplit=1)[0]
    words = first.split()
    if len(words) <= _SUMMARY_WORDS:
        return first
    return " ".join(words[:_SUMMARY_WORDS]) + "…"


# A label or instruction line such as "Post:" or "Summarize this:" ahead of the material: the answer
# is about the material, not the instruction.
_INSTRUCTION_RE = re.compile(r"^[^\n]{0,300}:[ \t]*\n+(?P<subject>.+)$", re.S)
_SENTIMENT_ASK_RE = re.compile(r"\bsentiments?\b", re.I)


def _message_text(content: Any) -> str:
    """The text of a message's content: a string, or a list of parts of which the text ones count."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", "")) for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def _subject(content: str) -> str:
    match = _INSTRUCTION_RE.match(content.strip())
    subject = match.group("subject") if match else content
    return subject.strip().strip("\"'`").strip()


# ---------------------------------------------------------------------------------------------------
# Response bodies.
# ---------------------------------------------------------------------------------------------------


class ApiError(Exception):
    """An error answered with OpenAI's error body: `{"error": {message, type, param, code}}`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": type_, "param": param, "code": code}}


def embeddings_response(request: dict[str, Any], default_dimensions: int) -> dict[str, Any]:
    """The body for `POST /v1/embeddings`, honouring `encoding_format` and `dimensions`."""
    texts, prompt_tokens = _embedding_inputs(request.get("input"))
    dimensions = request.get("dimensions", default_dimensions)
    if not isinstance(dimensions, int) or isinstance(dimensions, bool) or not 1 <= dimensions <= MAX_DIMENSIONS:
        raise ApiError(400, f"Invalid 'dimensions': {dimensions!r}.", param="dimensions")
    encoding = request.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise ApiError(400, f"Invalid 'encoding_format': {encoding!r}.", param="encoding_format")
    data = []
    for index, vector in enumerate(embed_many(texts, dimensions)):
        value: Any
        if encoding == "base64":
            value = base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
        else:
            value = [float(x) for x in vector]  # float32 values, so both encodings decode alike
        data.append({"object": "embedding", "index": index, "embedding": value})
    return {
        "object": "list",
        "data": data,
        "model": request.get("model") or EMBEDDING_MODELS[0],
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


def _embedding_inputs(raw: Any) -> tuple[list[str], int]:
    """Texts to embed and their token count; token-id arrays are accepted like the real API does."""
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, "'input' must be a non-empty string or array.", param="input")
    if all(isinstance(x, int) for x in raw):  # one text given as token ids
        raw = [raw]
    texts: list[str] = []
    tokens = 0
    for item in raw:
        if isinstance(item, str):
            texts.append(item)
            tokens += count_tokens(item)
        elif isinstance(item, list) and all(isinstance(x, int) for x in item):
            texts.append(" ".join(f"tok{x}" for x in item))
            tokens += len(item)
        else:
            raise ApiError(400, "'input' items must be strings or arrays of token ids.", param="input")
    return texts, tokens


# Text containing this word is refused with a 400, as a provider's content filter would refuse it.
REFUSED_MARKER = "forbidden-topic"
REFUSED_MESSAGE = "This content violates the usage policy"


def chat_response(request: dict[str, Any]) -> dict[str, Any]:
    """The body for `POST /v1/chat/completions`.

    The answer is about the last user message (after an instruction line like "Summarize this:").
    Plain text is the summary, or `Sentiment: <label>\\nSummary: <summary>` when any message asks for
    sentiment. With `response_format` json_object the content is `{"summary", "sentiment"?}`; with
    json_schema every property is filled by name and type, so strict parsing succeeds.
    """
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' must be a non-empty array.", param="messages")
    if request.get("stream"):
        raise ApiError(400, "The devnet stand-in does not stream.", param="stream")
    texts = [_message_text(m.get("content")) if isinstance(m, dict) else "" for m in messages]
    user_texts = [t for m, t in zip(messages, texts, strict=True) if isinstance(m, dict) and m.get("role") == "user"]
    subject = _subject(user_texts[-1] if user_texts else texts[-1])
    if REFUSED_MARKER in subject.lower():  # as a provider's content filter refuses a request
        raise ApiError(400, REFUSED_MESSAGE, param="messages", code="content_policy_violation")
    wants_sentiment = any(_SENTIMENT_ASK_RE.search(t) for t in texts)
    summary, label = summarize(subject), sentiment_label(subject)

    content = _chat_content(request.get("response_format"), summary, label, wants_sentiment)
    finish_reason = "stop"
    limit = request.get("max_completion_tokens") or request.get("max_tokens")
    if isinstance(limit, int) and limit > 0 and count_tokens(content) > limit:
        content = "".join(re.findall(r"\s*(?:\w+|[^\w\s])", content)[:limit]).strip()
        finish_reason = "length"

    prompt_tokens = sum(count_tokens(t) + 4 for t in texts) + 3  # per-message framing, like the real API
    completion_tokens = count_tokens(content)
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:24]
    return {
        "id": f"chatcmpl-devnet{digest}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model") or CHAT_MODELS[0],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "service_tier": "default",
        "system_fingerprint": "fp_devnet",
    }


def _chat_content(response_format: Any, summary: str, label: str, wants_sentiment: bool) -> str:
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {}
        return json.dumps(_fill_schema(schema.get("properties") or {}, summary, label))
    if kind == "json_object":
        body = {"summary": summary}
        if wants_sentiment:
            body["sentiment"] = label
        return json.dumps(body)
    if wants_sentiment:
        return f"Sentiment: {label}\nSummary: {summary}"
    return summary


def _fill_schema(properties: dict[str, Any], summary: str, label: str) -> dict[str, Any]:
    """A value for every property: known names get the real answer, the rest a typed placeholder."""
    filled: dict[str, Any] = {}
    for name, spec in properties.items():
        kind = spec.get("type") if isinstance(spec, dict) else None
        kind = kind[0] if isinstance(kind, list) else kind
        enum = spec.get("enum") if isinstance(spec, dict) else None
        if name in ("sentiment", "label") or (enum and label in enum):
            filled[name] = label
        elif enum:
            filled[name] = enum[0]
        elif kind == "string":
            filled[name] = summary
        elif kind == "number":
            filled[name] = 0.5
        elif kind == "integer":
            filled[name] = 0
        elif kind == "boolean":
            filled[name] = False
        elif kind == "array":
            filled[name] = []
        else:
            filled[name] = {} if kind == "object" else None
    return filled


def models_response() -> dict[str, Any]:
    return {"object": "list", "data": [_model(name) for name in (*CHAT_MODELS, *EMBEDDING_MODELS)]}


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "devnet"}


# ---------------------------------------------------------------------------------------------------
# Server: routes and OpenAI-shaped errors on the shared stand-in base.
# ---------------------------------------------------------------------------------------------------


class OpenAIStub(StubServer):
    """The stand-in server: `start()`, `stop()`, `url`, `base_url`, `inject_fault(...)` (from `StubServer`).

    `api_key=None` accepts any (or no) key; otherwise requests need `Authorization: Bearer <api_key>`.
    Port 0 picks a free port. Injected 429s and 500s carry OpenAI's error body, and 429s also its
    `x-ratelimit-*` headers, so the client raises `RateLimitError` / `InternalServerError`.
    """

    name: ClassVar[str] = "openai"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str | None = None,
        dimensions: int = DEFAULT_DIMENSIONS,
    ) -> None:
        super().__init__(host, port)
        self.api_key = api_key
        self.dimensions = dimensions

    @property
    def base_url(self) -> str:
        """What to pass as the client's `base_url` (or `OPENAI_BASE_URL`)."""
        return self.url + "/v1"

    def handle(self, request: Request) -> Response:
        try:
            self._check_key(request)
            return Response.json(self._route(request))
        except ApiError as err:
            return Response.json(err.body, err.status)

    def fault_response(self, fault: Fault, request: Request) -> Response:
        if fault.kind == "429":
            reset_ms = max(1, round(fault.retry_after * 1000))
            headers = {
                **retry_after_headers(fault),
                "x-ratelimit-limit-requests": "60",
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": f"{reset_ms}ms",
            }
            message = "Rate limit reached for requests (devnet fault). Please try again later."
            error = ApiError(429, message, type_="requests", code="rate_limit_exceeded")
            return Response.json(error.body, 429, headers)
        error = ApiError(500, "The server had an error while processing your request.", type_="server_error")
        return Response.json(error.body, 500)

    def describe(self) -> dict[str, Any]:
        return {"dimensions": self.dimensions, "key_required": self.api_key is not None}

    def _route(self, request: Request) -> dict[str, Any]:
        method, path = request.method, request.path.rstrip("/")
        if method == "POST" and path == "/v1/embeddings":
            return embeddings_response(_json_object(request), self.dimensions)
        if method == "POST" and path == "/v1/chat/completions":
            return chat_response(_json_object(request))
        if method == "GET" and path == "/v1/models":
            return models_response()
        if method == "GET" and path.startswith("/v1/models/"):
            name = path.removeprefix("/v1/models/")
            if name not in (*CHAT_MODELS, *EMBEDDING_MODELS):
                raise ApiError(404, f"The model '{name}' does not exist", param="model", code="model_not_found")
            return _model(name)
        raise ApiError(404, f"Unknown request URL: {method} {path}.", code="unknown_url")

    def _check_key(self, request: Request) -> None:
        if self.api_key is None:
            return
        given = (request.header("Authorization") or "").removeprefix("Bearer ").strip()
        if given == self.api_key:
            return
        if not given:
            message = "You didn't provide an API key. Provide it as 'Authorization: Bearer YOUR_KEY'."
        else:  # like the real API, never echo a key back whole
            shown = given[:3] + "*" * max(0, len(given) - 7) + given[-4:] if len(given) > 7 else "***"
            message = f"Incorrect API key provided: {shown}."
        raise ApiError(401, message, code="invalid_api_key")


def _json_object(request: Request) -> dict[str, Any]:
    try:
        parsed = json.loads(request.body or b"{}")
    except ValueError as err:
        raise ApiError(400, f"We could not parse the JSON body of your request: {err}.") from err
    if not isinstance(parsed, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return parsed


def main(argv: list[str] | None = None) -> int:
    """`python -m devnet.openai_api --port N [--api-key KEY]`: serve until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m devnet.openai_api", description=main.__doc__)
    add_server_arguments(parser)
    parser.add_argument(
        "--api-key",
        default=os.environ.get("DEVNET_OPENAI_API_KEY") or None,
        help="require this Bearer key (default: $DEVNET_OPENAI_API_KEY, else accept any)",
    )
    parser.add_argument("--dimensions", type=int, default=DEFAULT_DIMENSIONS, help="default embedding size")
    args = parser.parse_args(argv)
    return serve_until_signal(OpenAIStub(args.host, args.port, api_key=args.api_key, dimensions=args.dimensions))


if __name__ == "__main__":
    sys.exit(main())
