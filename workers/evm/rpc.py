"""JSON-RPC over HTTP for the EVM worker: single calls and batches, paced and counted.

One transport for everything the worker asks a node, web3.py's ENS lookups included (through
`Web3Provider`), so that every request is paced by `requests_per_second`, counted (`calls`,
`http_requests`, for the benchmark and the worker's notes) and fails the same way:

- HTTP 429 and rate-limit JSON-RPC errors raise `RateLimited` with the provider's `Retry-After`
  (seconds or an HTTP date) or Infura-style `backoff_seconds`; the base class waits it out;
- timeouts, dropped connections, 5xx answers and unreadable bodies are retried a few times with a
  short backoff, then raise `UpstreamError` (the cycle fails and the next one starts over);
- a JSON-RPC `error` member (a revert, a bad parameter) is the caller's business: `request()`
  returns the envelope, `call()` raises `RpcCallError`, `batch()` returns it in place.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Sequence
from typing import Any, cast

import httpx
from web3.providers.base import JSONBaseProvider
from web3.types import RPCEndpoint, RPCResponse

from workers.errors import RateLimited, UpstreamError
from workers.pacing import Pacer, retry_after_seconds

# JSON-RPC error codes providers use for "slow down" (EIP-1474 -32005 limit exceeded; some send 429).
RATE_LIMIT_CODES = {-32005, 429, -32090}
TRANSIENT_HTTP = {500, 502, 503, 504, 520, 522, 524}


class _Retryable(UpstreamError):
    """A failure that may pass on its own (5xx, timeout, cut-off body): retried before it surfaces."""


class RpcCallError(UpstreamError):
    """A JSON-RPC `error` member: the node understood the request and refused it."""

    def __init__(self, method: str, error: dict[str, Any]) -> None:
        self.method = method
        self.code = error.get("code")
        self.data = error.get("data")
        self.rpc_message = str(error.get("message", ""))
        super().__init__(f"{method}: {self.rpc_message} (code {self.code})")


def _rate_limit_error(error: dict[str, Any]) -> RateLimited | None:
    message = str(error.get("message", ""))
    lowered = message.lower()
    if error.get("code") in RATE_LIMIT_CODES or "rate limit" in lowered or "too many requests" in lowered:
        data = error.get("data")
        backoff = data.get("rate", {}).get("backoff_seconds") if isinstance(data, dict) else None
        return RateLimited(f"node: {message}", float(backoff) if backoff else 1.0)
    return None


class JsonRpcClient:
    """A paced, counting JSON-RPC client for one endpoint (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        requests_per_second: float = 0.0,
        max_batch: int = 100,
        retries: int = 2,
        retry_backoff: float = 0.25,
    ) -> None:
        self.url = url
        self.max_batch = max(1, int(max_batch))
        self.retries = max(0, int(retries))
        self.retry_backoff = retry_backoff
        self.pacer = Pacer.per_second(requests_per_second)
        self.http = httpx.Client(timeout=timeout, headers={"Content-Type": "application/json"})
        self._ids = itertools.count(1)
        self._count_lock = threading.Lock()
        self.calls = 0  # JSON-RPC calls (each element of a batch counts)
        self.http_requests = 0  # HTTP POSTs (a batch counts once)

    def close(self) -> None:
        self.http.close()

    # ---- transport ----------------------------------------------------------------------------

    def _post(self, payload: Any, what: str, calls: int) -> Any:
        """POST one body; retries what is worth retrying; returns the decoded JSON."""
        body = json.dumps(payload, separators=(",", ":"))
        attempt = 0
        while True:
            self.pacer.wait()
            with self._count_lock:
                self.http_requests += 1
                self.calls += calls
            try:
                response = self.http.post(self.url, content=body)
                if response.status_code == 429:
                    raise RateLimited(
                        f"{what}: HTTP 429 from {self._host()}",
                        retry_after_seconds(response.headers.get("Retry-After"), 1.0),
                    )
                if response.status_code in TRANSIENT_HTTP:
                    raise _Retryable(f"{what}: HTTP {response.status_code} from {self._host()}")
                if response.status_code >= 400 and not response.content.lstrip().startswith((b"{", b"[")):
                    raise UpstreamError(f"{what}: HTTP {response.status_code} from {self._host()}")
                try:
                    return response.json()
                except ValueError:
                    raise _Retryable(f"{what}: unreadable answer from {self._host()} (not JSON)") from None
            except (_Retryable, httpx.TransportError) as exc:
                if attempt >= self.retries:
                    if isinstance(exc, httpx.TimeoutException):
                        raise UpstreamError(f"{what}: {self._host()} timed out") from exc
                    if isinstance(exc, httpx.TransportError):
                        raise UpstreamError(f"{what}: {type(exc).__name__} talking to {self._host()}") from exc
                    raise UpstreamError(str(exc)) from None
                time.sleep(self.retry_backoff * (2**attempt))
                attempt += 1

    def _host(self) -> str:
        return httpx.URL(self.url).host or "the node"

    def _envelope(self, method: str, params: Sequence[Any]) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}

    # ---- calls --------------------------------------------------------------------------------

    def request(self, method: str, params: Sequence[Any] = ()) -> dict[str, Any]:
        """One call; returns the JSON-RPC envelope (`result` or `error`). Rate limits raise."""
        answer = self._post(self._envelope(method, params), method, 1)
        if not isinstance(answer, dict):
            raise UpstreamError(f"{method}: malformed JSON-RPC answer")
        error = answer.get("error")
        if isinstance(error, dict):
            limited = _rate_limit_error(error)
            if limited is not None:
                raise limited
        return answer

    def call(self, method: str, params: Sequence[Any] = ()) -> Any:
        """One call; returns its result or raises `RpcCallError`."""
        answer = self.request(method, params)
        if answer.get("error") is not None:
            raise RpcCallError(method, answer["error"])
        return answer.get("result")

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Many calls as JSON-RPC batches of at most `max_batch`; results in order, and an
        `RpcCallError` in place of each call that failed. Rate limits raise."""
        results: list[Any] = []
        for start in range(0, len(calls), self.max_batch):
            chunk = calls[start : start + self.max_batch]
            envelopes = [self._envelope(method, params) for method, params in chunk]
            what = f"batch of {len(chunk)} ({chunk[0][0]}...)"
            answer = self._post(envelopes, what, len(chunk))
            if isinstance(answer, dict):  # the whole batch was refused (one error object)
                error = answer.get("error") or {"message": "batch refused"}
                limited = _rate_limit_error(error)
                if limited is not None:
                    raise limited
                raise RpcCallError(what, error)
            if not isinstance(answer, list):
                raise UpstreamError(f"{what}: malformed JSON-RPC answer")
            by_id = {item.get("id"): item for item in answer if isinstance(item, dict)}
            for envelope, (method, _params) in zip(envelopes, chunk, strict=True):
                item = by_id.get(envelope["id"])
                if item is None:
                    raise UpstreamError(f"{what}: no answer for call {envelope['id']} ({method})")
                error = item.get("error")
                if isinstance(error, dict):
                    limited = _rate_limit_error(error)
                    if limited is not None:
                        raise limited
                    results.append(RpcCallError(method, error))
                else:
                    results.append(item.get("result"))
        return results


class Web3Provider(JSONBaseProvider):
    """A web3.py provider on top of a `JsonRpcClient`, so `w3.ens` shares its pacing, counting and
    error handling (a revert comes back as a JSON-RPC error, which web3 turns into its own)."""

    def __init__(self, client: JsonRpcClient) -> None:
        super().__init__()
        self.client = client

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        return cast(RPCResponse, self.client.request(str(method), list(params or [])))

    def is_connected(self, show_traceback: bool = False) -> bool:
        try:
            return "result" in self.client.request("eth_chainId")
        except UpstreamError:
            if show_traceback:
                raise
            return False
